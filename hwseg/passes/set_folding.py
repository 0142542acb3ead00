"""Choose the folding (PE output channels × SIMD window elements in parallel) of every convolution.

Requires: every Conv2d has ``groups == 1`` (grouped convolutions have no hardware yet).
Ensures: every Conv2d node carries ``pe`` dividing its output channels and ``simd``
dividing its window size ``kh·kw·C_in``.

The pass balances the pipeline: it looks for the smallest per-frame cycle target ``T``
such that, when each convolution takes the fewest multipliers that compute its frame in
at most ``T`` cycles, the multipliers of all convolutions fit in ``max_multipliers``.
There is no point in going below the pixel rate of the sliding windows (one padded
position per cycle), so ``T`` never drops below the largest padded frame. Nodes whose
``pe``/``simd`` are already set (a manual folding) are kept as they are.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import Conv2d, Graph, MaxPool

__all__ = ["apply", "divisors", "window_size"]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def window_size(op: Conv2d) -> int:
    kh, kw = op.kernel
    return kh * kw * op.in_channels // op.groups


def _padded_positions(graph: Graph, node) -> int:
    x = graph.input_types(node.name)[0]
    ph, pw = node.op.padding
    return (x.height + 2 * ph) * (x.width + 2 * pw)


def _choices(graph: Graph, node):
    """(multipliers, cycles, pe, simd) for every legal folding, fewest multipliers first."""
    op = node.op
    windows = graph.types[node.name].pixels
    out = []
    for pe in divisors(op.out_channels):
        for simd in divisors(window_size(op)):
            folds = (op.out_channels // pe) * (window_size(op) // simd)
            out.append((pe * simd, windows * folds, pe, simd))
    return sorted(out, key=lambda c: (c[0], c[1], -c[3]))


def _cheapest_within(choices, target):
    for choice in choices:
        if choice[1] <= target:
            return choice
    return None


def apply(graph: Graph, *, max_multipliers: int) -> tuple[Graph, bool]:
    convs = [n for n in graph if isinstance(n.op, Conv2d)]
    for node in convs:
        if node.op.groups != 1:
            raise UnsupportedError(f"layer {node.name!r}: grouped convolution (groups={node.op.groups}) "
                                   f"has no hardware yet; use groups=1")
    free = [n for n in convs if "pe" not in n.attrs or "simd" not in n.attrs]
    if not free:
        return graph, False
    fixed_multipliers = sum(n.attrs["pe"] * n.attrs["simd"] for n in convs if n not in free)
    floor = max([_padded_positions(graph, n) for n in graph if isinstance(n.op, (Conv2d, MaxPool))]
                + [graph.input_type.pixels])
    choices = {n.name: _choices(graph, n) for n in free}
    targets = sorted({c[1] for cs in choices.values() for c in cs if c[1] >= floor} | {floor})
    budget = max_multipliers - fixed_multipliers
    picked = None
    for target in targets:
        picks = {name: _cheapest_within(cs, target) for name, cs in choices.items()}
        if all(picks.values()) and sum(p[0] for p in picks.values()) <= budget:
            picked = picks
            break
    if picked is None:
        # Even fully folded (one multiplier per convolution) does not fit: take that and let
        # the resource check report by how much.
        picked = {name: min(cs, key=lambda c: (c[0], c[1])) for name, cs in choices.items()}
    nodes = [n.with_attrs(pe=picked[n.name][2], simd=picked[n.name][3]) if n.name in picked else n
             for n in graph]
    result = graph.replace(nodes)
    for node in result:
        if isinstance(node.op, Conv2d):
            assert node.op.out_channels % node.attrs["pe"] == 0
            assert window_size(node.op) % node.attrs["simd"] == 0
    return result, True

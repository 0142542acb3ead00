"""Choose the folding (PE output channels × SIMD window elements in parallel) of every convolution.

Requires: every Conv2d and ConvTranspose2d has ``groups == 1`` (grouped convolutions have no
hardware yet), except channelwise 1×1 convolutions (``Conv2d.channelwise``), which are not folded.
Ensures: every Conv2d node carries ``pe`` dividing its output channels and ``simd``
dividing its window size ``kh·kw·C_in``; every ConvTranspose2d ``pe`` dividing its output
channels and ``simd`` dividing its input channels (it folds over the taps of each output phase).

The pass balances the pipeline: it looks for the smallest per-frame cycle target ``T``
such that, when each convolution takes its cheapest folding that computes a frame in at
most ``T`` cycles, the summed cost of all convolutions stays within ``budget`` for every
resource. ``cost(node, pe, simd)`` gives a folding's resources as a mapping (the flow passes
the analytic estimate; a pass sees the IR only); "cheapest" means the smallest largest share
of any budgeted resource. There is no point in going below the pixel rate of the sliding
windows (one padded position per cycle), so ``T`` never drops below the largest padded
frame (nor below any layer's output pixels). Nodes whose ``pe``/``simd`` are already set (a manual folding) are kept as they are.
"""

from __future__ import annotations

from typing import Callable, Mapping

from ..errors import UnsupportedError
from ..ir import AvgPool, Conv2d, ConvTranspose2d, Graph, MaxPool

__all__ = ["apply", "divisors", "window_size", "cycles"]

Cost = Callable[[object, int, int], Mapping[str, float]]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def window_size(op) -> int:
    """The vector ``simd`` divides: a Conv2d's window ``kh·kw·C_in``, a ConvTranspose2d's ``C_in``."""
    if isinstance(op, ConvTranspose2d):
        return op.in_channels // op.groups
    kh, kw = op.kernel
    return kh * kw * op.in_channels // op.groups


def _transposed_folds(size_out: int, kernel: int, stride: int, padding: int) -> int:
    slots = [max(-(-(kernel - r) // stride), 1) for r in range(stride)]
    return sum(slots[(o + padding) % stride] for o in range(size_out))


def cycles(graph: Graph, node, pe: int, simd: int) -> int:
    """Compute cycles of a frame at this folding: one fold per cycle, ``NF·SF`` folds per window
    (per tap of the output pixel's phase for a transposed convolution)."""
    op, out = node.op, graph.types[node.name]
    folds = (op.out_channels // pe) * (window_size(op) // simd)
    if isinstance(op, ConvTranspose2d):
        return folds * (_transposed_folds(out.height, op.kernel[0], op.stride[0], op.padding[0])
                        * _transposed_folds(out.width, op.kernel[1], op.stride[1], op.padding[1]))
    return out.pixels * folds


def _padded_positions(graph: Graph, node) -> int:
    x = graph.input_types(node.name)[0]
    ph, pw = node.op.padding
    return (x.height + 2 * ph) * (x.width + 2 * pw)


def _choices(graph: Graph, node, cost: Cost, budget: Mapping[str, float]):
    """(share, cycles, pe, simd, cost) for every legal folding, cheapest first."""
    out = []
    for pe in divisors(node.op.out_channels):
        for simd in divisors(window_size(node.op)):
            spent = cost(node, pe, simd)
            share = max(spent.get(key, 0) / limit for key, limit in budget.items())
            out.append((share, cycles(graph, node, pe, simd), pe, simd, spent))
    return sorted(out, key=lambda c: (c[0], c[1], -c[3]))


def _cheapest_within(choices, target):
    for choice in choices:
        if choice[1] <= target:
            return choice
    return None


def _fits(picks, fixed, budget) -> bool:
    for key, limit in budget.items():
        if fixed.get(key, 0) + sum(p[4].get(key, 0) for p in picks) > limit:
            return False
    return True


def apply(graph: Graph, *, cost: Cost, budget: Mapping[str, float]) -> tuple[Graph, bool]:
    if not budget or any(limit <= 0 for limit in budget.values()):
        raise ValueError(f"the folding budget needs positive limits, not {dict(budget)!r}")
    # a channelwise 1×1 convolution is one multiplier per lane of a whole pixel: nothing to fold
    convs = [n for n in graph if isinstance(n.op, (Conv2d, ConvTranspose2d))
             and not (isinstance(n.op, Conv2d) and n.op.channelwise)]
    for node in convs:
        if node.op.groups != 1:
            raise UnsupportedError(f"layer {node.name!r}: grouped convolution (groups={node.op.groups}) "
                                   f"has no hardware yet; use groups=1")
    free = [n for n in convs if "pe" not in n.attrs or "simd" not in n.attrs]
    if not free:
        return graph, False
    fixed: dict[str, float] = {}
    for node in convs:
        if node not in free:
            for key, value in cost(node, node.attrs["pe"], node.attrs["simd"]).items():
                fixed[key] = fixed.get(key, 0) + value
    # every stream moves at most a beat per cycle: no layer beats its padded frame or its output pixels
    floor = max([_padded_positions(graph, n) for n in graph if isinstance(n.op, (Conv2d, MaxPool, AvgPool))]
                + [graph.types[n.name].pixels for n in graph])
    choices = {n.name: _choices(graph, n, cost, budget) for n in free}
    targets = sorted({c[1] for cs in choices.values() for c in cs if c[1] >= floor} | {floor})
    picked = None
    for target in targets:
        picks = {name: _cheapest_within(cs, target) for name, cs in choices.items()}
        if all(picks.values()) and _fits(picks.values(), fixed, budget):
            picked = picks
            break
    if picked is None:
        # Even fully folded it does not fit: take the cheapest and let the resource check say by how much.
        picked = {name: cs[0] for name, cs in choices.items()}
    nodes = [n.with_attrs(pe=picked[n.name][2], simd=picked[n.name][3]) if n.name in picked else n
             for n in graph]
    result = graph.replace(nodes)
    folded = {n.name for n in convs}
    for node in result:
        if node.name in folded:
            assert node.op.out_channels % node.attrs["pe"] == 0
            assert window_size(node.op) % node.attrs["simd"] == 0
    return result, True

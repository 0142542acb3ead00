"""Choose the folding (PE output channels × SIMD window elements in parallel) of every convolution.

Requires: every Conv2d and ConvTranspose2d has ``groups == 1`` (grouped convolutions have no
hardware yet), except channelwise 1×1 convolutions (``Conv2d.channelwise``).
Ensures: every Conv2d node carries ``pe`` dividing its output channels and ``simd``
dividing its window size ``kh·kw·C_in / groups`` (a channelwise convolution: ``pe`` is the channels it
takes per beat, its lanes, and ``simd`` is 1); every ConvTranspose2d ``pe`` dividing its output
channels and ``simd`` dividing its input channels (it folds over the taps of each output phase).

Every folding of a convolution has a cost (``cost(node, pe, simd)``: resources as a mapping; the
flow passes the analytic estimate of everything that changes with the folding, a pass sees the
IR only) and a frame time (``cycles(node, pe, simd)``, by default one fold per output pixel
and cycle). Foldings are compared by their cost weighted by the scarcity of each resource
(``Σ_r cost_r / budget_r``); a resource that overflows the budget is weighted up until the
convolutions fit or no reweighting helps.

A convolution whose MAC array can be built in more than one way at a folding (``variants(node, pe)``: the
attributes of each, from the flow's estimate — ``{}``, ``{"pack": 2}`` for two PEs' products per DSP,
``{"multiplier": "logic"}`` for products in LUTs; by default only ``{}``) has a choice for each: the node the
cost sees carries the variant's attributes, and the pick sets them — the cheaper by the same weighting, at the
same frame time (the first variant on a tie).

The pipeline is balanced: for a per-frame cycle target ``T``, each convolution takes its
cheapest folding that computes a frame in at most ``T`` cycles — no layer is folded faster than
it needs (:meth:`Folder.pick`; the flow's ``--fps`` gives ``T``). :func:`apply` looks for the
smallest ``T`` whose foldings fit ``budget`` (the highest throughput, :meth:`Folder.fastest`);
there is no point in going below the pixel rate of the streams (one padded position or output
pixel per cycle), so ``T`` never drops below :func:`floor_cycles`. Nodes whose ``pe`` and
``simd`` are both set (a manual folding, :func:`with_manual`) are kept as they are; a node with
only one of them set takes the best folding with that value.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, Mapping

from ..errors import FoldingError, UnsupportedError
from ..ir import Add, AvgPool, Conv2d, ConvTranspose2d, Graph, MaxPool, MulShift, Node, Threshold
from .choose_windows import has_window

__all__ = ["apply", "divisors", "window_size", "pixel_cycles", "foldable", "pointwise", "standalone_requantizer",
           "floor_cycles", "with_manual", "Choice", "VARIANT_KEYS",
           "Folder"]

Cost = Callable[[object, int, int], Mapping[str, float]]
Cycles = Callable[[object, int, int], int]
Variants = Callable[[object, int], tuple]

#: The node attributes a MAC variant sets (:data:`Variants`).
VARIANT_KEYS = ("pack", "multiplier")

#: How often the resources that overflow are weighted up (×4 each time) before a target counts as unreachable.
REWEIGHTS = 6


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def window_size(op) -> int:
    """The vector ``simd`` divides: a Conv2d's window ``kh·kw·C_in / groups``, a ConvTranspose2d's ``C_in``,
    1 for a pointwise layer (a requantizer, an Add)."""
    if isinstance(op, (MulShift, Threshold, Add)):
        return 1
    if isinstance(op, ConvTranspose2d):
        return op.in_channels // op.groups
    kh, kw = op.kernel
    return kh * kw * op.in_channels // op.groups


def _transposed_folds(size_out: int, kernel: int, stride: int, padding: int) -> int:
    slots = [max(-(-(kernel - r) // stride), 1) for r in range(stride)]
    return sum(slots[(o + padding) % stride] for o in range(size_out))


def pixel_cycles(graph: Graph, node, pe: int, simd: int) -> int:
    """Compute cycles of a frame at this folding: one fold per cycle, ``NF·SF`` folds per window
    (per tap of the output pixel's phase for a transposed convolution)."""
    op, out = node.op, graph.types[node.name]
    folds = (out.channels // pe) * (window_size(op) // simd)
    if isinstance(op, ConvTranspose2d):
        return folds * (_transposed_folds(out.height, op.kernel[0], op.stride[0], op.padding[0])
                        * _transposed_folds(out.width, op.kernel[1], op.stride[1], op.padding[1]))
    return out.pixels * folds


def foldable(graph: Graph) -> list:
    """The layers that take a folding: the convolutions (a channelwise 1×1 convolution too: ``pe`` of its
    channels per beat, one multiplier each), the residual additions (``pe`` channels of both inputs per beat)
    and the requantizers that do not follow a convolution (after a pool, an upsampler, a join or the input:
    ``pe`` channels per beat; a requantizer after a convolution works on that convolution's ``pe`` lanes)."""
    return [n for n in graph if isinstance(n.op, (Conv2d, ConvTranspose2d, Add)) or standalone_requantizer(graph, n)]


def pointwise(graph: Graph, node) -> bool:
    """A foldable layer without a window: a channelwise convolution, an Add, a requantizer with its own folding
    (``pe`` channels per beat)."""
    op = node.op
    return isinstance(op, Add) or isinstance(op, Conv2d) and op.channelwise or standalone_requantizer(graph, node)


def standalone_requantizer(graph: Graph, node) -> bool:
    """A MulShift or Threshold whose input is not a convolution's accumulators: it takes its own folding."""
    return (isinstance(node.op, (MulShift, Threshold))
            and not isinstance(graph[node.inputs[0]].op, (Conv2d, ConvTranspose2d)))


def floor_cycles(graph: Graph) -> int:
    """Every stream moves at most a beat per cycle: no layer beats its padded frame or its output pixels."""
    def padded(node):
        x = graph.input_types(node.name)[0]
        ph, pw = node.op.padding
        return (x.height + 2 * ph) * (x.width + 2 * pw)
    return max([padded(n) for n in graph if isinstance(n.op, (Conv2d, MaxPool, AvgPool))]
               + [graph.types[n.name].pixels for n in graph])


def _window_text(op) -> str:
    if isinstance(op, (MulShift, Threshold, Add)):
        return "1 (a pointwise layer has no window)"
    if isinstance(op, ConvTranspose2d):
        return f"its {op.in_channels} input channels"
    kh, kw = op.kernel
    return f"its window of {window_size(op)} ({kh}×{kw} kernel × {op.in_channels} channels)"


def with_manual(graph: Graph, folding: Mapping) -> Graph:
    """``graph`` with the folding ``{"layer": {"pe": 4, "simd": 9}, ...}`` set on those layers (either key
    may be left out: the pass then chooses the other). Every entry is checked; a bad one is a
    :class:`FoldingError` naming the legal choices."""
    if not isinstance(folding, Mapping):
        raise FoldingError(f'a folding maps layer names to {{"pe": P, "simd": S}}, not {type(folding).__name__}')
    convs = {n.name: n for n in foldable(graph)}
    nodes = {n.name: n for n in graph}
    attrs = {}
    for name, entry in folding.items():
        if name not in convs:
            what = (f"layer {name!r} ({type(nodes[name].op).__name__}) has no folding" if name in nodes
                    else f"unknown layer {name!r}")
            raise FoldingError(f"folding: {what}; the foldable layers are {', '.join(convs) or 'none'}")
        if not isinstance(entry, Mapping) or not entry:
            raise FoldingError(f'folding of layer {name!r}: expected {{"pe": P, "simd": S}}, not {entry!r}')
        op, channels = convs[name].op, graph.types[name].channels
        legal = {"pe": (divisors(channels), f"its {channels} output channels"),
                 "simd": (divisors(window_size(op)), _window_text(op))}
        entry = dict(entry)
        window = entry.pop("window", None)
        if window is not None:
            _check_window_request(name, op, window, entry.get("simd"))
        for key, value in entry.items():
            if key not in legal:
                raise FoldingError(f"folding of layer {name!r}: unknown key {key!r}; use pe, simd and window")
            values, what = legal[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FoldingError(f"folding of layer {name!r}: {key} must be a positive integer, not {value!r}")
            if value not in values:
                raise FoldingError(f"folding of layer {name!r}: {key} {value} does not divide {what}; "
                                   f"legal {key}: {', '.join(map(str, values))}")
        attrs[name] = {**entry, **({"window_request": window} if window is not None else {})}
    return graph.replace([n.with_attrs(**attrs[n.name]) if n.name in attrs else n for n in graph])


def _check_window_request(name: str, op, window, simd) -> None:
    """A manual window kind: "register" for any convolution with a window; "folded" (served from memory,
    ``hwseg.hw.folded_window``; a pointwise one's vector too) for one whose ``simd``, given with it, divides its
    input channels."""
    if window not in ("register", "folded"):
        raise FoldingError(f"folding of layer {name!r}: window must be \"register\" or \"folded\", not {window!r}")
    pointwise_ = isinstance(op, Conv2d) and not op.channelwise and not has_window(op)
    if not isinstance(op, Conv2d) or op.channelwise or (pointwise_ and window == "register"):
        raise FoldingError(f"folding of layer {name!r}: it has no sliding window; leave out window"
                           + (" (or ask for \"folded\")" if pointwise_ else ""))
    if window == "folded":
        channels = op.in_channels
        if not isinstance(simd, int) or isinstance(simd, bool) or channels % simd:
            raise FoldingError(f"folding of layer {name!r}: window \"folded\" needs simd set beside it to a "
                               f"divisor of its {channels} input channels ({', '.join(map(str, divisors(channels)))})")


@dataclass(frozen=True)
class Choice:
    """One folding of a convolution: its frame time and what it costs."""

    pe: int
    simd: int
    cycles: int
    spent: Mapping[str, float]
    #: the MAC variant's node attributes, as sorted pairs (empty: the plain array)
    variant: tuple = ()
    #: its place among the variants offered (ties go to the earlier)
    rank: int = 0


class Folder:
    """Every legal folding of every free convolution of ``graph``, and the choice among them.

    ``free`` lists the convolutions without a complete manual folding; ``fixed_cycles`` is the
    frame time of the manually folded ones (0 if none)."""

    def __init__(self, graph: Graph, *, cost: Cost, cycles: Cycles | None = None, variants: Variants | None = None):
        self.graph = graph
        self.variants = variants or (lambda node, pe: ({},))
        self.cost = cost
        convs = foldable(graph)
        for node in convs:
            if getattr(node.op, "groups", 1) != 1 and not (isinstance(node.op, Conv2d) and node.op.channelwise):
                raise UnsupportedError(f"layer {node.name!r}: grouped convolution (groups={node.op.groups}) "
                                       f"has no hardware yet; use groups=1")
        self.frame_time = frame_time = cycles or (lambda node, pe, simd: pixel_cycles(graph, node, pe, simd))
        self.free = [n for n in convs if "pe" not in n.attrs or "simd" not in n.attrs]
        self.manual = [n for n in convs if "pe" in n.attrs and "simd" in n.attrs]
        self.fixed_cycles = max((frame_time(n, n.attrs["pe"], n.attrs["simd"]) for n in self.manual), default=0)
        self.floor = max(floor_cycles(graph), self.fixed_cycles)
        self.choices: dict[str, list[Choice]] = {}
        for node in self.free:
            pes = [node.attrs["pe"]] if "pe" in node.attrs else divisors(graph.types[node.name].channels)
            simds = [node.attrs["simd"]] if "simd" in node.attrs else divisors(window_size(node.op))
            self.choices[node.name] = [Choice(pe, simd, frame_time(node, pe, simd), spent, variant, rank)
                                       for pe in pes for simd in simds
                                       for rank, (variant, spent) in enumerate(self._variants(node, pe, simd))]
        #: the frame times worth trying: every choice's at or above the floor, and the floor
        self.targets = sorted({c.cycles for cs in self.choices.values() for c in cs if c.cycles >= self.floor}
                              | {self.floor})
        #: the least frame time every free convolution can meet
        self.fastest_cycles = max([min(c.cycles for c in cs) for cs in self.choices.values()] + [self.floor])

    def _variants(self, node, pe: int, simd: int) -> list[tuple[int, dict]]:
        """``(variant, cost)`` of each MAC variant the node may take at ``pe`` × ``simd`` (a variant as sorted
        attribute pairs; the cost of the node with those attributes and without another variant's)."""
        plain = _without_variant(node)
        return [(tuple(sorted(attrs.items())), dict(self.cost(plain.with_attrs(**attrs), pe, simd)))
                for attrs in self.variants(node, pe)]

    def with_manual_variants(self, budget: Mapping[str, float]) -> "Folder":
        """This folder, or one over the graph whose manually folded convolutions take their cheapest MAC variant by
        the budget's weights (a manual folding names ``pe`` and ``simd``, not the variant)."""
        weights = _scarcity(budget)
        chosen = {}
        for node in self.manual:
            variants = self._variants(node, node.attrs["pe"], node.attrs["simd"])
            if len(variants) > 1:
                chosen[node.name] = min(enumerate(variants), key=lambda v: (
                    _weighted(v[1][1], weights), v[0]))[1][0]
        graph = self.graph.replace([_with_variant(n, chosen[n.name]) if n.name in chosen else n for n in self.graph])
        if all(graph[name].attrs == self.graph[name].attrs for name in chosen):
            return self
        return Folder(graph, cost=self.cost, cycles=self.frame_time, variants=self.variants)

    @staticmethod
    def spent(picks: Mapping[str, Choice]) -> dict[str, float]:
        """The summed cost of some picks."""
        total: dict[str, float] = {}
        for choice in picks.values():
            for key, value in choice.spent.items():
                total[key] = total.get(key, 0) + value
        return total

    def pick(self, target: float, budget: Mapping[str, float]) -> tuple[dict[str, Choice], dict[str, float]]:
        """The cheapest folding of each free convolution that meets ``target`` cycles per frame, and the
        resources by which the picks overflow ``budget`` (empty: they fit). Resources that overflow
        are weighted up and the picks taken again, a few times, before the overflow is returned."""
        weights = _scarcity(budget)
        best = None
        for _ in range(REWEIGHTS + 1):
            picks = {}
            for name, choices in self.choices.items():
                within = [c for c in choices if c.cycles <= target]
                if not within:
                    return {}, {"cycles": min(c.cycles for c in choices) - target}
                picks[name] = min(within, key=lambda c: (_weighted(c.spent, weights), c.cycles, -c.simd, c.rank))
            spent = self.spent(picks)
            over = {key: spent.get(key, 0) - limit for key, limit in budget.items() if spent.get(key, 0) > limit}
            if not over:
                return picks, {}
            worst = max(over[key] / max(budget[key], 1) for key in over)
            if best is None or worst < best[0]:
                best = (worst, picks, over)
            for key in over:
                weights[key] *= 4
        picks = self._repair(best[1], target, budget)
        spent = self.spent(picks)
        over = {key: spent.get(key, 0) - limit for key, limit in budget.items() if spent.get(key, 0) > limit}
        return (picks, {}) if not over else (best[1], best[2])

    def _repair(self, picks: Mapping[str, Choice], target: float, budget: Mapping[str, float]) -> dict[str, Choice]:
        """``picks`` changed one layer at a time towards fitting ``budget``: each step takes the change (another
        choice meeting ``target``) that removes the most overflow per share of the budget it adds elsewhere,
        never overflowing another resource. Reweighting moves every layer at once, from one resource's overflow
        to another's; this trades a few layers (say, some MAC arrays into logic while the rest keep DSPs)."""
        picks = dict(picks)
        for _ in range(4 * len(picks)):
            spent = self.spent(picks)
            over = {key for key, limit in budget.items() if spent.get(key, 0) > limit}
            if not over:
                break
            best = None
            for name, current in picks.items():
                for choice in self.choices[name]:
                    if choice.cycles > target or choice is current:
                        continue
                    delta = {key: choice.spent.get(key, 0) - current.spent.get(key, 0) for key in budget}
                    relief = sum(-delta[key] / max(budget[key], 1e-9) for key in over)
                    if relief <= 0 or any(key not in over and spent.get(key, 0) + delta[key] > budget[key]
                                          for key in budget):
                        continue
                    added = sum(max(delta[key], 0) / max(budget[key], 1e-9) for key in budget if key not in over)
                    score = relief / (added + 1e-9)
                    if best is None or score > best[0]:
                        best = (score, name, choice)
            if best is None:
                break
            picks[best[1]] = best[2]
        return picks

    def fully_folded(self) -> dict[str, Choice]:
        """Every free convolution at its least folding: one output channel and one window element per cycle
        (or the manual one of the two, where one is given)."""
        return {name: min(choices, key=lambda c: (c.pe, c.simd, c.rank)) for name, choices in self.choices.items()}

    def cheapest_in(self, key: str, budget: Mapping[str, float]) -> dict[str, Choice]:
        """Each free convolution's folding that spends the least of ``key``, then the least of the rest
        (weighted by ``budget``), then the fastest."""
        weights = {k: 1 / max(limit, 1e-9) for k, limit in budget.items() if k != key}
        return {name: min(choices, key=lambda c: (c.spent.get(key, 0), sum(c.spent.get(k, 0) * w for k, w in
                                                                             weights.items()), c.cycles, c.rank))
                for name, choices in self.choices.items()}

    def fastest(self, budget: Mapping[str, float]) -> tuple[int, dict[str, Choice]] | None:
        """The smallest target (the highest throughput) whose picks fit ``budget``, with its picks; None
        if even the slowest does not fit."""
        targets = self.targets[bisect_left(self.targets, self.fastest_cycles):]
        fits = lambda index: not self.pick(targets[index], budget)[1]
        if not targets or not fits(len(targets) - 1):
            return None
        low, high = 0, len(targets) - 1        # fits(high); search the first that fits
        while low < high:
            middle = (low + high) // 2
            if fits(middle):
                high = middle
            else:
                low = middle + 1
        while low > 0 and fits(low - 1):       # the picks are not strictly monotone in the target
            low -= 1
        return targets[low], self.pick(targets[low], budget)[0]

    def faster_than(self, target: int) -> int | None:
        """The next smaller target worth trying, None if ``target`` is already the fastest."""
        index = bisect_left(self.targets, target)
        if index == 0 or self.targets[index - 1] < self.fastest_cycles:
            return None
        return self.targets[index - 1]

    def assign(self, picks: Mapping[str, Choice]) -> Graph:
        """The graph with the picks' folding (and MAC variant) set on the free convolutions."""
        def folded(node):
            choice = picks[node.name]
            return _with_variant(node, choice.variant).with_attrs(pe=choice.pe, simd=choice.simd)
        return self.graph.replace([folded(n) if n.name in picks else n for n in self.graph])


def _scarcity(budget: Mapping[str, float]) -> dict[str, float]:
    """The weight of each resource in a cost comparison: one over its budget."""
    return {key: 1 / max(limit, 1e-9) for key, limit in budget.items()}


def _weighted(spent: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """``Σ_r spent_r · weight_r``."""
    return sum(spent.get(key, 0) * weight for key, weight in weights.items())


def _without_variant(node):
    """``node`` without MAC variant attributes."""
    return Node(node.name, node.op, node.inputs, {k: v for k, v in node.attrs.items() if k not in VARIANT_KEYS})


def _with_variant(node, variant):
    """``node`` with the MAC variant ``variant`` (sorted attribute pairs) and no other."""
    return _without_variant(node).with_attrs(**dict(variant))


def apply(graph: Graph, *, cost: Cost, budget: Mapping[str, float],
          cycles: Cycles | None = None, variants: Variants | None = None) -> tuple[Graph, bool]:
    """Fold every free convolution to the highest throughput whose summed cost stays within ``budget``.
    Without a fitting folding every convolution takes its cheapest one (the flow's resource check then
    says by how much it does not fit)."""
    if not budget or any(limit <= 0 for limit in budget.values()):
        raise ValueError(f"the folding budget needs positive limits, not {dict(budget)!r}")
    folder = Folder(graph, cost=cost, cycles=cycles, variants=variants).with_manual_variants(budget)
    if not folder.free:
        return folder.graph, folder.graph is not graph
    found = folder.fastest(budget)
    picks = found[1] if found else folder.pick(float("inf"), budget)[0]
    result = folder.assign(picks)
    for node in foldable(result):
        assert result.types[node.name].channels % node.attrs["pe"] == 0
        assert window_size(node.op) % node.attrs["simd"] == 0
    return result, True

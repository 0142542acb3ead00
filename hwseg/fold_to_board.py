"""Fold a network to a board: the parallelism of every convolution, chosen against the board's resources.

:func:`fold` picks each convolution's ``pe``/``simd`` (with :mod:`.passes.set_folding`) so that the
whole design — the MAC arrays and requantizers the folding sizes, plus what it does not (line
buffers, FIFOs, joins, lane converters), from full estimates — fits the board: at the highest frame
rate that fits, or at the cheapest folding meeting ``fps``. It says in one line what limits the
frame rate (``NetworkEstimate.limit``), and when nothing fits, which resource is short by how much
and what would fit.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from .boards import Board, known_boards
from .errors import DoesNotFitError, FoldingError, HwsegError
from .estimate import NetworkEstimate, estimate_graph
from .estimate.cycles import can_fold_window, layer_cycles, window_kind
from .estimate.dataflow import dataflow
from .estimate.network import component_estimate, conv_compute, mac_variants
from .estimate.report import resource_label
from .ir import Conv2d, ConvTranspose2d, Graph, MulShift, Threshold
from .estimate.offchip import uses_dram
from .offchip import pair_weight_rams, size_staging
from .passes import lanes_for_hardware, prepare_for_hardware, register_ready, set_folding, size_fifos

__all__ = ["fold", "read_folding", "FIT_ROUNDS", "MULTIPLIERS"]

#: Where products may go: ``auto`` (on DSPs, and in logic where DSPs alone hold the frame rate back, see
#: ``_best_fit``) or ``dsp`` (on DSPs only)
MULTIPLIERS = ("auto", "dsp")

#: Full estimates tried while the folding learns what the rest of the design takes (see ``_fit``).
FIT_ROUNDS = 8


def _folding_cost(graph: Graph, board: Board):
    """``cost(node, pe, simd)`` for :mod:`.passes.set_folding`: what changes with a layer's folding on
    ``board`` — a convolution's MAC array and window, and the requantizer after it, which works on its ``pe``
    lanes; a pointwise layer's (an Add, a requantizer with its own folding) component at ``pe`` lanes."""
    family, uram = board.family, bool(board.uram)
    convs = {n.name for n in set_folding.foldable(graph)}
    # any folding will do to give every stream its lanes; each requantizer is then estimated at pe lanes
    seeded = graph.replace([n.with_attrs(pe=n.attrs.get("pe", 1), simd=n.attrs.get("simd", 1)) if n.name in convs
                            else n for n in graph])
    lanes = lanes_for_hardware(seeded, window_kind=window_kind)
    requantizers = {name: [n for n in lanes.consumers(name) if isinstance(n.op, (MulShift, Threshold))]
                    for name in convs}
    cache = {}

    def own(node, pe):
        """A pointwise layer's own component at ``pe`` lanes."""
        if (node.name, pe) not in cache:
            cache[node.name, pe] = component_estimate(lanes, node.with_attrs(in_lanes=pe, out_lanes=pe), family, uram)
        return cache[node.name, pe]

    def cost(node, pe, simd):
        if not isinstance(node.op, (Conv2d, ConvTranspose2d)):     # a pointwise layer: its own folding
            return own(node, pe).as_dict()
        spent = conv_compute(graph, node, pe, simd, family, uram)
        for reader in requantizers[node.name]:
            spent = spent + own(reader, pe)
        return spent.as_dict()
    return cost


#: A pointwise layer folded to fewer lanes than channels (an Add, a channelwise convolution, a requantizer with
#: its own folding) has no FIFO in front of it to smooth its producer's bursts (a strided or padded window
#: layer emits its rows unevenly): it is folded only as far as keeps this many times the pace the frame
#: needs, so that it catches up after a burst. At exactly the pace an FPL-style net at 16×16 ran 11 % slower
#: than estimated.
POINTWISE_HEADROOM = 2


def _folding_cycles(graph: Graph):
    """``cycles(node, pe, simd)``: a layer's frame time at that folding, by the cycle model (a folded pointwise
    layer's times :data:`POINTWISE_HEADROOM`, the pace it must keep)."""
    def cycles(node, pe, simd):
        frame = layer_cycles(graph, node.with_attrs(pe=pe, simd=simd))
        folded_pointwise = set_folding.pointwise(graph, node) and pe < graph.types[node.name].channels
        return frame * POINTWISE_HEADROOM if folded_pointwise else frame
    return cycles


@dataclass(frozen=True)
class _Fit:
    """A folding and its estimate: ``target`` is the frame time its convolutions meet (None: it does not
    fit); ``rest`` what the design holds besides the folding costs (from the estimates made)."""

    prepared: Graph | None
    estimate: NetworkEstimate | None
    target: int | None
    rest: dict


def _estimate(folder, picks, board, *, folded_windows: bool = False):
    """The prepared graph and full estimate of ``picks`` (``folded_windows``: every convolution that can
    serves its windows from memory, whatever its frame time)."""
    graph = folder.assign(picks)
    if folded_windows:
        graph = graph.replace([n.with_attrs(window_request="folded")
                               if "window_request" not in n.attrs and "simd" in n.attrs and can_fold_window(graph, n)
                               else n for n in graph])
    prepared = prepare_for_hardware(graph, budget=dict(board.resources), dataflow=dataflow, window_kind=window_kind,
                                    cost=lambda node, pe, simd: {})   # every convolution is folded already
    return _paired(size_staging(prepared, _frame_cycles(folder, picks)), board)


def _paired(prepared, board):
    """``prepared`` with its loaded weights paired in UltraRAM (:func:`hwseg.offchip.pair_weight_rams`), and its
    estimate: pairs that only save UltraRAM always; where block RAM overflows and UltraRAM does not, also pairs
    that move weights from block RAM into the UltraRAM the design leaves."""
    prepared = pair_weight_rams(prepared, board)
    estimate = estimate_graph(prepared, board)
    over = estimate.overflows()
    if "bram" in over and "uram" not in over and board.uram:
        traded = pair_weight_rams(prepared, board, spare_uram=board.uram - estimate.total.uram)
        if traded is not prepared:
            prepared, estimate = traded, estimate_graph(traded, board)
    return prepared, estimate


def _frame_cycles(folder, picks) -> int:
    """The frame time ``picks`` meet (their slowest convolution, or the rest of the design's floor)."""
    return max([choice.cycles for choice in picks.values()] + [folder.floor])




def _quick_estimate(folder, picks, board):
    """The estimate without the FIFOs on the inputs of joins (the slow part of the passes)."""
    graph = lanes_for_hardware(folder.assign(picks), window_kind=window_kind)
    graph, _ = size_fifos.apply(graph)
    graph, _ = register_ready.apply(graph)
    return _paired(size_staging(graph, _frame_cycles(folder, picks)), board)[1]


def _rest(folder, picks, estimate) -> dict:
    """What the design holds, of each of the board's resources, besides the picks' folding costs."""
    total, spent = estimate.total.as_dict(), folder.spent(picks)
    return {key: total.get(key, 0) - spent.get(key, 0) for key in estimate.board.resources}


def _fit(folder, board, target: int | None = None) -> _Fit:
    """Fold to ``target`` cycles per frame, or without one to the highest throughput that fits ``board``.

    The convolutions' folding costs may take the board less the rest of the design (line buffers,
    FIFOs, joins, lane converters). That rest is first taken from a quick estimate without the skip
    FIFOs, then from the full estimate of each folding tried (it grows with faster foldings: deeper
    skip FIFOs), until the whole design fits. Without a target and when nothing fits, the result is
    the cheapest folding (``target`` None)."""
    available = dict(board.resources)
    cheapest, _ = folder.pick(math.inf, available)
    rest = _rest(folder, cheapest, _quick_estimate(folder, cheapest, board))
    for _ in range(FIT_ROUNDS):
        budget = {key: available[key] - rest[key] for key in available}
        if target is None:
            found = folder.fastest(budget)
        else:
            picks, over = folder.pick(target, budget)
            found = None if over else (target, picks)
        if found is None:
            break
        prepared, estimate = _estimate(folder, found[1], board)
        rest = {key: max(value, _rest(folder, found[1], estimate)[key]) for key, value in rest.items()}
        if not estimate.overflows():
            return _Fit(prepared, estimate, found[0], rest)
    if target is not None:
        return _Fit(None, None, None, rest)
    return _cheapest(folder, board, rest)


def _overflow(estimate) -> float:
    """How far a design is from fitting: its largest need ÷ have over the resources it overflows (0: fits)."""
    return max([need / have for need, have in estimate.overflows().values()] + [0.0])


def _cheapest(folder, board, rest) -> _Fit:
    """Nothing fits at the highest throughput that the cost model admits: try the cheapest designs, each by
    its full estimate — the cheapest folding weighted against what is short (but not against a resource that
    the rest of the design overflows on its own: no folding helps that one), every convolution fully folded
    with its window served from memory where it can be (the leanest design, whatever it costs in cycles),
    and for each resource these overflow the folding that spends the least of it. The fastest that fits is
    the design; if none does, the one nearest to fitting (its worst resource the least over), with
    ``_Fit.target`` None."""
    available = dict(board.resources)
    weighted, _ = folder.pick(math.inf, {key: available[key] - rest[key] if rest[key] < available[key]
                                         else available[key] for key in available})
    tried: dict = {}

    def attempt(picks, folded_windows=False):
        key = (folded_windows, *sorted((name, c.pe, c.simd, c.variant) for name, c in picks.items()))
        if key not in tried:
            tried[key] = (picks, *_estimate(folder, picks, board, folded_windows=folded_windows))
        return tried[key]

    attempt(weighted)
    attempt(folder.fully_folded(), folded_windows=True)
    for key in {key for _, _, estimate in list(tried.values()) for key in estimate.overflows()}:
        attempt(folder.cheapest_in(key, available))
    fitting = [(estimate.cycles_per_frame, index) for index, (_, _, estimate) in enumerate(tried.values())
               if not estimate.overflows()]
    designs = list(tried.values())
    if fitting:
        picks, prepared, estimate = designs[min(fitting)[1]]
        return _Fit(prepared, estimate, _frame_cycles(folder, picks), rest)
    picks, prepared, estimate = min(designs, key=lambda design: (_overflow(design[2]), design[2].cycles_per_frame))
    return _Fit(prepared, estimate, None, rest)


def _rate(fps: float) -> str:
    return f"{fps:,.0f}" if fps >= 100 or fps == int(fps) else f"{fps:.3g}"


def _figures(need: float, have: float) -> str:
    return f"{need:,.0f} of {have:,} (+{need - have:,.0f})"


def _limit(folder, fit: _Fit, board) -> str:
    """One line on what keeps ``fit`` from a higher frame rate: the stream bound, a layer at its fastest or
    manual folding, or the resources the next faster folding would overflow, with the figures."""
    estimate, clock = fit.estimate, board.clock_mhz * 1e6
    name, cycles = estimate.bottleneck, estimate.cycles_per_frame
    node, roof = folder.graph[name], estimate.roofline
    if name in {n.name for n in folder.manual}:
        return (f"the manual folding of layer {name} (pe {node.attrs['pe']}, simd {node.attrs['simd']}): "
                f"{cycles:,} cycles per frame")
    faster = _next_faster(folder, fit, board) if name in folder.choices and cycles <= fit.target else None
    if faster is None:
        if roof is not None and cycles <= roof.stream_cycles:
            return (f"the stream bound: layer {roof.stream_layer} moves {roof.stream_cycles:,} beats per frame, "
                    f"one per cycle")
        if name in folder.choices:
            return f"layer {name} at its fastest folding: {cycles:,} cycles per frame"
        return f"layer {name} ({type(node.op).__name__}): {cycles:,} cycles per frame whatever the folding"
    faster, need, over = faster
    available = dict(board.resources)
    if not over:   # the cost model let it through, the full estimate did not: name the fullest resource
        used = estimate.total.as_dict()
        key = max(available, key=lambda k: used.get(k, 0) / available[k])
        label = resource_label(key, board)
        return (f"{label}: the next faster folding ({_rate(clock / faster)} fps) did not fit the full "
                f"estimate ({used.get(key, 0):,} of {available[key]:,} {label} used now)")
    return (f"{', '.join(resource_label(key, board) for key in over)}: the next faster folding "
            f"({_rate(clock / faster)} fps) would need "
            + ", ".join(f"{_figures(need[key], available[key])} {resource_label(key, board)}" for key in over))


def _next_faster(folder, fit: _Fit, board) -> tuple[int, dict, list] | None:
    """``(cycles, need, over)`` of the next folding faster than ``fit``'s: its frame time, what it would take of
    each of the board's resources (the rest of the design and its folding costs) and those it would overflow;
    None when no folding is faster."""
    faster = folder.faster_than(fit.target)
    if faster is None:
        return None
    available = dict(board.resources)
    picks, _ = folder.pick(faster, {key: available[key] - fit.rest[key] for key in available})
    spent = folder.spent(picks)
    need = {key: fit.rest[key] + spent.get(key, 0) for key in available}
    return faster, need, [key for key in available if need[key] > available[key]]


def _folder(graph: Graph, board, *, logic: bool = False) -> set_folding.Folder:
    """The folder of ``graph`` on ``board``: each convolution's legal foldings, their costs and cycles, and the
    MAC variants offered (``logic``: products in logic too, :func:`.estimate.network.mac_variants`)."""
    folder = set_folding.Folder(graph, cost=_folding_cost(graph, board), cycles=_folding_cycles(graph),
                                variants=lambda node, pe: mac_variants(graph, node, pe, board.family, logic=logic))
    return folder.with_manual_variants(board.resources)


def _offers_logic(graph: Graph, board) -> bool:
    """Whether some convolution of ``graph`` could take its products in logic on ``board``."""
    return any(len(mac_variants(graph, node, 1, board.family, logic=True))
               > len(mac_variants(graph, node, 1, board.family, logic=False)) for node in set_folding.foldable(graph))


def _dsp_bound(folder, fit: _Fit, board) -> bool:
    """Whether DSPs alone keep ``fit`` from a faster design: the next faster folding overflows the DSPs and not
    the LUTs, or (nothing fits) the design overflows the DSPs."""
    if fit.target is None:
        return "dsp" in fit.estimate.overflows()
    faster = _next_faster(folder, fit, board)
    return faster is not None and "dsp" in faster[2] and "lut" not in faster[2]


def _best_fit(graph: Graph, board, *, logic: bool = True) -> tuple[set_folding.Folder, _Fit]:
    """The folder and the fastest design that fits ``board`` (or the nearest to fitting).

    The MAC arrays are first folded with their products on DSPs (one or two per DSP48). Only when DSPs alone
    hold that design back are products in logic offered too, and their design is taken when it fits and is
    faster: offered everywhere, they would spend LUTs where DSPs are to spare, and a design's products in logic
    cost more to simulate. ``logic=False``: never."""
    folder = _folder(graph, board)
    fit = _fit(folder, board)
    if not logic or not _offers_logic(graph, board) or not _dsp_bound(folder, fit, board):
        return folder, fit
    trading = _folder(graph, board, logic=True)
    traded = _fit(trading, board)
    if traded.target is not None and (fit.target is None
                                      or traded.estimate.cycles_per_frame < fit.estimate.cycles_per_frame):
        return trading, traded
    return folder, fit


def _granule(resize, height: int, width: int, graphs: dict) -> int:
    """The step of the input sizes the network takes (``resize`` raises an HwsegError for the others): the
    smallest power of two ``g`` such that it takes a size whose sides are odd multiples of ``g`` (near half
    the input), at most the largest power of two dividing both sides (which the input itself is a multiple
    of). The graphs made on the way are kept in ``graphs`` by size."""
    largest = math.gcd(height, width) & -math.gcd(height, width)
    granule = 1
    while granule < largest:
        size = tuple(granule * max(1, side // (2 * granule) - (side // (2 * granule) + 1) % 2)
                     for side in (height, width))
        try:
            graphs[size] = resize(size)
            return granule
        except HwsegError:
            graphs[size] = None
        granule *= 2
    return largest


def _smaller_input(resize, graph: Graph, board) -> str:
    """`` (it fits at --input HxW)`` for the largest smaller input at which the design fits ``board``, or
    nothing when even the smallest does not.

    The candidates keep the input's aspect ratio: the shorter side takes every multiple of the granule the
    network takes (:func:`_granule`) below the input's, the longer one is scaled with it and rounded down to
    a multiple of the granule. Each is checked as the flow builds it (``_fit``: the whole design, FIFOs
    included, fits), the smallest first (nothing smaller fits: no suggestion), then by bisection: a larger
    input never takes fewer resources than a smaller one folded the same way, so if one fits, so do all
    smaller ones."""
    if resize is None:
        return ""
    height, width = graph.input_type.height, graph.input_type.width
    graphs: dict = {}
    granule = _granule(resize, height, width, graphs)
    short, long = min(height, width), max(height, width)

    def size(step):
        side = step * granule
        other = max(granule, side * long // short // granule * granule)
        return (side, other) if height <= width else (other, side)

    steps = short // granule
    if size(steps) == (height, width):
        steps -= 1
    checked: dict = {}

    def fits(step):
        """True if the design fits at candidate ``step``, False if not, None if the network cannot take it."""
        if step not in checked:
            at = size(step)
            if at not in graphs:
                try:
                    graphs[at] = resize(at)
                except HwsegError:
                    graphs[at] = None
            checked[step] = None if graphs[at] is None else _fit(_folder(graphs[at], board), board).target is not None
        return checked[step]

    if steps < 1 or fits(1) is False:
        return ""
    low, high = (1 if checked[1] else 0), steps + 1   # the design fits at step low (0: none yet), not at high
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    if low == 0:
        return ""
    found = size(low)
    return f" (it fits at --input {found[0]}x{found[1]})"


def _does_not_fit(fit: _Fit, board, resize) -> str:
    """The one-line error of a design that does not fit even at its cheapest folding: what is short by how
    much, which layers take most of it, and what would make it fit (with the boards that are big enough)."""
    estimate = fit.estimate
    over = estimate.overflows()
    short = ", ".join(f"{resource_label(key, board)} {need:,} of {have:,} ({100 * need / have:.0f} %)"
                      for key, (need, have) in over.items())
    worst = max(over, key=lambda key: over[key][0] / over[key][1])
    takers = sorted((layer for layer in estimate.layers if layer.resources.as_dict().get(worst, 0)),
                    key=lambda layer: -layer.resources.as_dict()[worst])[:3]
    in_dram = uses_dram(fit.prepared)
    boards = [b.name for b in known_boards() if b.name != board.name and (b.dram is not None or not in_dram)
              and not estimate_graph(fit.prepared, b).overflows()]
    bigger = f" (it fits {', '.join(boards)})" if boards else " (none in boards/ is big enough)"
    return (f"the design does not fit {board.name}: it needs {short}; use a smaller input"
            f"{_smaller_input(resize, fit.prepared, board)}, fewer bits, a narrower model or a bigger board{bigger}; "
            f"even fully folded {resource_label(worst, board)} is {over[worst][0] - over[worst][1]:,} short, "
            f"most of it in "
            + ", ".join(f"{layer.name} ({layer.resources.as_dict().get(worst, 0):,})" for layer in takers))


def fold(graph: Graph, board, *, fps: float | None, estimate_only: bool, resize, logic: bool = True):
    """The prepared graph and its estimate (with its ``limit``), folded to ``fps`` or to the highest
    throughput that fits; a design that does not fit is an error unless ``estimate_only``. ``logic``: products may
    go to logic where DSPs alone fall short (``_best_fit``)."""
    clock = board.clock_mhz * 1e6
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
            raise FoldingError(f"the frame-rate target must be a positive number of frames per second, not {fps!r}")
        target = math.floor(clock / fps)
        folders = [_folder(graph, board)] + ([_folder(graph, board, logic=True)]
                                             if logic and _offers_logic(graph, board) else [])
        for folder in folders:      # products in logic only where DSPs alone miss the target
            fit = _fit(folder, board, target) if target >= folder.fastest_cycles else None
            if fit is not None and fit.target is not None and fit.estimate.cycles_per_frame <= target:
                limit = (f"the requested frame rate (--fps {_rate(fps)}, {target:,} cycles per frame): each layer is "
                         f"folded no faster than it needs")
                return fit.prepared, replace(fit.estimate, limit=limit)
        folder, best = _best_fit(graph, board, logic=logic)
        if best.target is None:
            check_weights_fit(best.estimate, board)
            raise DoesNotFitError(_does_not_fit(best, board, resize))
        raise DoesNotFitError(f"--fps {_rate(fps)} is out of reach on {board.name}: the best is "
                              f"{_rate(best.estimate.fps)} fps (limit: {_limit(folder, best, board)})")
    folder, fit = _best_fit(graph, board, logic=logic)
    if fit.target is None:
        if not estimate_only:
            check_weights_fit(fit.estimate, board)
            raise DoesNotFitError(_does_not_fit(fit, board, resize))
        over = fit.estimate.overflows()
        limit = "does not fit even fully folded: " + ", ".join(
            f"{_figures(need, have)} {resource_label(key, board)}" for key, (need, have) in over.items())
        return fit.prepared, replace(fit.estimate, limit=limit)
    return fit.prepared, replace(fit.estimate, limit=_limit(folder, fit, board))


def read_folding(folding: Mapping | str | os.PathLike) -> dict:
    """A manual folding ``{"layer": {"pe": 4, "simd": 9}, ...}``: the mapping itself, or read from a JSON file."""
    if isinstance(folding, Mapping):
        return dict(folding)
    if not isinstance(folding, (str, os.PathLike)):
        raise FoldingError(f'a folding maps layer names to {{"pe": P, "simd": S}} (or names a JSON file of it), '
                           f"not {type(folding).__name__}")
    try:
        text = Path(folding).read_text()
    except OSError as error:
        raise FoldingError(f"cannot read the folding file {folding} ({error.strerror}); give a JSON file "
                           f'such as {{"conv1": {{"pe": 4, "simd": 9}}}}') from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FoldingError(f"the folding file {folding} is not JSON (line {error.lineno}: {error.msg}); write "
                           f'{{"conv1": {{"pe": 4, "simd": 9}}, ...}}') from None


def could_fit(graph: Graph, board) -> bool:
    """Whether the cheapest folding of ``graph`` could fit ``board``: its quick estimate (without the FIFOs on
    the inputs of joins) fits."""
    folder = _folder(graph, board)
    cheapest, _ = folder.pick(math.inf, dict(board.resources))
    return not _quick_estimate(folder, cheapest, board).overflows()


#: bits of an UltraRAM, in Kb
URAM_KBITS = 288


def check_weights_fit(estimate, board) -> None:
    """A :class:`DoesNotFitError` when the weights alone, in the cheapest design (``estimate``), take more block
    RAM (or URAM) than ``board`` has: weights stay on chip, so no placement of the buffers helps."""
    split = estimate.split
    if split is None:
        return
    weights = split.memory["weights"]
    bram, have = weights["bram"], board.resources["bram"]
    uram, have_uram = weights["uram"], board.uram or 0
    if bram <= have and uram <= have_uram:
        return
    bits = weights["bits"]
    need_kbits = bram * board.bram_kbits + uram * URAM_KBITS
    others = [b.name for b in known_boards()
              if b.name != board.name and b.resources["bram"] * b.bram_kbits + (b.uram or 0) * URAM_KBITS >= need_kbits]
    bigger = f"a bigger board ({', '.join(others)})" if others else "a bigger board (none in boards/ is big enough)"
    taken = f"{bram:,} of {have:,} {resource_label('bram', board)}"
    if uram or have_uram:
        taken += f" and {uram:,} of {have_uram:,} URAM"
    raise DoesNotFitError(
        f"the weights alone do not fit {board.name}: {bits / 1e6:.1f} Mb of weights take {taken} even fully "
        f"folded, and weights stay on chip (buffers can go to DRAM, weights cannot); use fewer weight bits (at 4 "
        f"bits about half) or {bigger}")

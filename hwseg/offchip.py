"""Which buffers go to DRAM (``hwseg build --offchip none|all|auto``).

Two kinds of buffer can: a convolution's line buffer (its rows, :mod:`hwseg.passes.place_line_buffers`) and a
FIFO — on a join's input, or in front of a layer (:mod:`hwseg.passes.place_fifos`). Weights always stay on chip: streamed from DRAM
per pixel they would cost far more bandwidth than the activations. On a part with UltraRAM, whenever buffers go to
DRAM, the weights of every convolution of at least :data:`WEIGHT_MIN_BITS` are written into on-chip RAM from a
weight image in DRAM after reset (:mod:`hwseg.passes.place_weights`): UltraRAM has no initial contents, and it
is most of such a part's on-chip memory.

* ``none``: everything on chip (the only choice on a board without DRAM for activations).
* ``all``: every line buffer that can move, every FIFO on a join's input however small, and every FIFO in front
  of a layer worth a block RAM (:data:`hwseg.passes.place_fifos.LAYER_MIN_BITS`) (for tests and for boards whose
  block RAM is needed elsewhere; ``auto`` never moves a buffer smaller than :data:`MIN_BITS`, one block RAM).
* ``auto`` (the default where the board has DRAM): on chip if the design fits; else the buffers of at least
  ``T`` bits go to DRAM, for ``T`` down the ladder :data:`AUTO_LADDER`, until the design fits — the biggest
  buffers save the most on-chip memory per byte of traffic (a buffer's traffic grows with its frame, its
  size with the rows or pixels it holds), and each step is a whole folding, so the ladder is short.
"""

from __future__ import annotations

from .boards import Board
from .errors import OffchipError
from .estimate.offchip import dram_buffers, loads_weights, memory_parameters, weight_store_of
from .estimate.resources import memory_mapping
from .ir import Graph
from .passes import place_line_buffers, place_weights

__all__ = ["MODES", "MIN_BITS", "AUTO_LADDER", "WEIGHT_MIN_BITS", "SLOW_BURST", "check_mode", "place", "line_buffer_bits",
           "size_staging", "pair_weight_rams"]

MODES = ("none", "all", "auto")
#: the least buffer ``auto`` moves: one 18 Kb block RAM
MIN_BITS = 18 * 1024
#: the thresholds ``auto`` tries, biggest first (bits)
AUTO_LADDER = (4 << 20, 1 << 20, 256 << 10, 64 << 10, MIN_BITS)
#: the least weights loaded from DRAM on a part with UltraRAM (a fifth of an UltraRAM; smaller ones stay in ROM)
WEIGHT_MIN_BITS = 64 * 1024


def check_mode(mode: str | None, board: Board) -> str:
    """The placement mode to use: ``mode``, or the default (``auto`` where the board has DRAM for activations,
    else ``none``); a mode the board cannot take is an :class:`OffchipError`."""
    if mode is None:
        return "auto" if board.dram is not None else "none"
    if mode not in MODES:
        raise OffchipError(f"--offchip must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "none" and board.dram is None:
        raise OffchipError(f"{board.name} has no DRAM for activations ({board.no_dram}); "
                           f"use --offchip none or a board with DRAM")
    return mode


def line_buffer_bits(graph: Graph, node) -> int:
    """Bits of the rows a convolution's window keeps: ``(kh − 1)·dh`` rows of its padded width."""
    op, x = node.op, graph.input_types(node.name)[0]
    return (op.kernel[0] - 1) * op.dilation[0] * (x.width + 2 * op.padding[1]) * x.channels * x.dtype.bits


def place(graph: Graph, board: Board, min_bits: int) -> Graph:
    """``graph`` with every movable line buffer of at least ``min_bits`` in DRAM, the weights of at least
    :data:`WEIGHT_MIN_BITS` loaded from DRAM on a part with UltraRAM, and the policy that puts the FIFOs of at
    least ``min_bits`` in DRAM once they are sized (the input node's ``offchip_fifos``)."""
    memory = memory_parameters(board.dram, board.clock_mhz)
    chosen = [name for name in place_line_buffers.movable(graph) if line_buffer_bits(graph, graph[name]) >= min_bits]
    graph, _ = place_line_buffers.apply(graph, select=chosen, memory=memory)
    if board.uram:   # (``all`` loads every weight it can, as it moves every buffer)
        least = WEIGHT_MIN_BITS if min_bits > 1 else 0
        loaded = [name for name in place_weights.movable(graph) if place_weights.weight_bits(graph[name]) >= least]
        graph, _ = place_weights.apply(graph, select=loaded, memory=memory)
    source = graph[graph.input]
    return graph.with_attrs(source.name, offchip_fifos={"min_bits": min_bits, "memory": memory})


#: the burst of a buffer read far slower than its memory answers (:func:`size_staging`)
SLOW_BURST = 16


def size_staging(graph: Graph, frame_cycles: int) -> Graph:
    """``graph`` with each DRAM buffer's read staging (``attrs["memory"]["read_buffer"]``, words per tap or FIFO)
    sized for the rate it is read at when a frame takes ``frame_cycles``. A buffer keeps the staging that covers the
    memory's latency at a word a cycle (:func:`hwseg.estimate.offchip.memory_parameters`) unless, over a long wait
    for its next burst — four round trips, and a burst of every other buffer on the shared port at the port's read
    load — it drains less than half a burst: then two bursts (one arriving while the other drains) are plenty. At
    real sizes most buffers are read at a small fraction of a word a cycle, and two bursts of a 128-bit port fit
    LUTRAM where four take four block RAMs."""
    readers, reads, buffers = {}, 0, 0
    for node in graph:
        if "memory" not in node.attrs:
            continue
        word = node.attrs["memory"]["data_bits"] // 8
        for buffer in dram_buffers(graph, node):
            if buffer.kind == "weights":
                continue
            reads += buffer.read_bytes // word
            buffers += 1
            per_reader = buffer.read_bytes // word // (node.op.taps if buffer.kind == "rows" else 1)
            readers[node.name] = max(readers.get(node.name, 0), per_reader)
    frame_cycles = max(frame_cycles, 1)
    load = min(1.0, reads / frame_cycles)
    for name, words in readers.items():
        memory = dict(graph[name].attrs["memory"])
        burst, latency = memory["burst"], memory.get("latency", 0)
        wait = 4 * latency + buffers * burst * load
        if words / frame_cycles * wait <= burst / 2:
            memory["read_buffer"] = min(memory["read_buffer"], 2 * burst)
            if burst > SLOW_BURST and words / frame_cycles * wait <= SLOW_BURST / 2:
                # read this slowly, it needs no long bursts either: bursts of SLOW_BURST words halve its staging
                # both ways (two of them fill a 32-deep LUTRAM) for the same words moved
                memory.update(burst=SLOW_BURST, read_buffer=2 * SLOW_BURST)
            graph = graph.with_attrs(name, memory=memory)
    return graph


def pair_weight_rams(graph: Graph, board: Board, spare_uram: int = 0) -> Graph:
    """``graph`` with loaded weight memories that do better two to an UltraRAM paired (``attrs["weight_ram"] =
    (first one's name, client index)``: one :class:`hwseg.hw.weights.WeightRam`, a port each, ``ram_style``
    "ultra").

    Candidates are taken in graph order, each against the last unpaired one of the same word width and the same
    place alone (the estimate's, :func:`hwseg.estimate.resources.memory_mapping`). Two that would each take
    UltraRAM pair when together they take fewer (6,144 words and 6,144 words: 3 UltraRAMs, not 2 + 2): always, it
    only saves. Two that would each take block RAM may pair in UltraRAM, spending at most ``spare_uram``
    UltraRAMs in all (the caller's: what the design leaves), those that free the most block RAM per UltraRAM first,
    and only where the UltraRAMs are worth fewer block RAMs, at the board's ratio of the two, than they free
    (1,024 words of 64 bits each: 4 + 4 RAMB18 on a KV260, 288 of them beside 64 UltraRAMs, against one UltraRAM
    worth 4.5). Smaller memories (LUTRAM) stay apart."""
    if not board.uram or board.family != "xcup":
        return graph
    ratio = board.resources["bram"] / board.uram
    waiting: dict = {}
    pairs, trades = [], []
    for node in graph:
        if not loads_weights(node) or "weight_ram" in node.attrs:
            continue
        store = weight_store_of(graph, node)
        alone = memory_mapping(store.depth, store.word_bits, board.family, uram=True)
        if alone.kind not in ("huge", "block"):
            continue
        key = (alone.kind, store.word_bits)
        if key in waiting:
            first, first_alone, first_store = waiting.pop(key)
            together = memory_mapping(first_store.depth + store.depth, store.word_bits, board.family, uram=True,
                                      ultra=True).cells
            freed = first_alone.cells + alone.cells
            if alone.kind == "huge" and together < freed:
                pairs.append((first, node.name))
                continue
            if alone.kind == "block" and together * ratio < freed:
                trades.append((-freed / together, together, first, node.name))
                continue
        waiting[key] = (node.name, alone, store)
    for _, cost, first, second in sorted(trades):
        if cost <= spare_uram:
            pairs.append((first, second))
            spare_uram -= cost
    for first, second in pairs:
        graph = graph.with_attrs(first, weight_ram=(first, 0))
        graph = graph.with_attrs(second, weight_ram=(first, 1))
    return graph

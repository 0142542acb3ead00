"""Move the FIFOs on chosen edges to DRAM (:class:`hwseg.hw.dram.DramFifo`): those on the inputs of joins
(``size_skip_fifos``) and those in front of layers (``size_fifos``, grown by ``size_skip_fifos``).

A FIFO in DRAM holds at least the depth it was given (its region, rounded up to a power of two, and its on-chip
staging besides), so the deadlock argument, which is on capacities, holds unchanged; its latency is the memory's
round trip when its reader has caught up with its writer.

Requires: every join carries ``skip_fifos`` (``size_skip_fifos``), every node ``fifo_depth`` (``size_fifos``).
Ensures: each join with a FIFO of at least ``min_bits``, and each layer with one of at least ``min_bits`` and
:data:`LAYER_MIN_BITS` (depth × the beat it was sized in), carries
``fifo_offchip`` (a tuple of bools, one per input: those FIFOs), ``fifo_lanes`` (per input, the lanes of a beat
of its FIFO in DRAM, :func:`dram_fifo_lanes`; 0 on chip) and ``memory`` (the DRAM parameters,
``hwseg.estimate.offchip.memory_parameters``). Smaller FIFOs stay on chip, where they take no block RAM or little.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import Add, Concat, Graph

__all__ = ["apply", "fifo_bits", "fifo_depths", "dram_fifo_lanes", "LAYER_MIN_BITS"]

#: A FIFO in front of a layer absorbs its bursts and is often nearly empty, and in DRAM each time its reader
#: catches up costs a round trip to the memory: only one worth a block RAM (18 Kb) moves.
LAYER_MIN_BITS = 18 * 1024


def fifo_depths(node) -> tuple[int, ...]:
    """The depth, in the node's beats, of the FIFO on each input (0: none)."""
    if isinstance(node.op, (Add, Concat)):
        return tuple(node.attrs["skip_fifos"])
    return (node.attrs.get("fifo_depth", 0),) * len(node.inputs)


def _taken(graph: Graph, node, k: int) -> int:
    """Lanes ``node`` takes on input ``k``: a Concat whole pixels, the rest ``in_lanes``."""
    return graph.input_types(node.name)[k].channels if isinstance(node.op, Concat) else node.attrs["in_lanes"]


def fifo_bits(graph: Graph, node, k: int) -> int:
    """Bits of the FIFO on input ``k`` of ``node``."""
    return fifo_depths(node)[k] * _taken(graph, node, k) * graph.input_types(node.name)[k].dtype.bits


def dram_fifo_lanes(graph: Graph, node, k: int, data_bits: int) -> int:
    """Lanes per beat of a DRAM FIFO on input ``k`` of ``node``: a multiple of the wider of the producer's and the
    consumer's lanes that divides the channels; among those whose beat takes at most two ``data_bits`` memory words
    (all of them if none does), the fewest memory words per pixel, then the fewest lanes.

    A beat is gathered and scattered in flip-flops on each side of the FIFO and again inside it: beats of about
    a word keep that small whatever the pixel. Where the element width does not divide the word (9-bit elements in
    128-bit words), whole pixels would take fewer words (9 for 128 channels, not 16) but 1,152 bits of registers
    three times over; the word-sized beat is taken, at up to twice the buffer's DRAM traffic."""
    x, taken = graph.input_types(node.name)[k], _taken(graph, node, k)
    lanes = max(taken, graph[node.inputs[k]].attrs.get("out_lanes", taken))
    widths = [g for g in range(lanes, x.channels + 1, lanes) if x.channels % g == 0]
    narrow = [g for g in widths if g * x.dtype.bits <= 2 * data_bits] or widths
    return min(narrow, key=lambda g: ((x.channels // g) * -(-g * x.dtype.bits // data_bits), g))


def apply(graph: Graph, *, min_bits: int, memory: dict) -> tuple[Graph, bool]:
    nodes, changed = [], False
    for node in graph:
        if not node.inputs:
            nodes.append(node)
            continue
        if isinstance(node.op, (Add, Concat)) and "skip_fifos" not in node.attrs:
            raise UnsupportedError(f"join {node.name!r} has no skip FIFOs yet; run size_skip_fifos first")
        least = min_bits if isinstance(node.op, (Add, Concat)) else max(min_bits, LAYER_MIN_BITS)
        chosen = tuple(bool(depth) and fifo_bits(graph, node, k) >= least
                       for k, depth in enumerate(fifo_depths(node)))
        if any(chosen):
            lanes = tuple(dram_fifo_lanes(graph, node, k, memory["data_bits"]) if offchip else 0
                          for k, offchip in enumerate(chosen))
            node = node.with_attrs(fifo_offchip=chosen, fifo_lanes=lanes, memory=dict(memory))
            changed = True
        nodes.append(node)
    return (graph.replace(nodes), True) if changed else (graph, False)

"""Which buffers go to DRAM (``hwseg build --offchip none|all|auto``).

Two kinds of buffer can: a convolution's line buffer (its rows, :mod:`hwseg.passes.place_line_buffers`) and a
FIFO — on a join's input, or in front of a layer (:mod:`hwseg.passes.place_fifos`). Weights always stay on chip: streamed from DRAM
per pixel they would cost far more bandwidth than the activations.

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
from .estimate.offchip import memory_parameters
from .ir import Graph
from .passes import place_line_buffers

__all__ = ["MODES", "MIN_BITS", "AUTO_LADDER", "check_mode", "place", "line_buffer_bits"]

MODES = ("none", "all", "auto")
#: the least buffer ``auto`` moves: one 18 Kb block RAM
MIN_BITS = 18 * 1024
#: the thresholds ``auto`` tries, biggest first (bits)
AUTO_LADDER = (4 << 20, 1 << 20, 256 << 10, 64 << 10, MIN_BITS)


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
    """``graph`` with every movable line buffer of at least ``min_bits`` in DRAM, and the policy that puts the
    FIFOs of at least ``min_bits`` there once they are sized (the input node's ``offchip_fifos``)."""
    memory = memory_parameters(board.dram, board.clock_mhz)
    chosen = [name for name in place_line_buffers.movable(graph) if line_buffer_bits(graph, graph[name]) >= min_bits]
    graph, _ = place_line_buffers.apply(graph, select=chosen, memory=memory)
    source = graph[graph.input]
    return graph.with_attrs(source.name, offchip_fifos={"min_bits": min_bits, "memory": memory})

"""Give every sliding-window layer an input FIFO deep enough to absorb its row-scale burstiness.

A strided or folded sliding window consumes its input unevenly: quickly on rows that yield
no output windows, slowly on rows whose windows keep the MAC array busy. Without a buffer
that unevenness stalls the producer and the two layers' slow phases add up instead of
overlapping. One input row of buffering lets the producer run on while the window layer
is busy, so each layer runs at its own rate and the slowest sets the pace.

Requires: ``in_lanes`` on every node (``annotate_lanes``).
Ensures: every Conv2d (but a channelwise one), MaxPool, AvgPool, ConvTranspose2d or Upsample fed by
another layer carries ``fifo_depth`` (pixels), the others ``fifo_depth = 0``. (Transposed
convolutions and upsamplers take their input in row bursts too.) A layer fed by a RowTaps (rows kept in DRAM) gets none:
the RowTaps holds its rows in DRAM as long as need be. A depth set beforehand (a manual choice) is kept.
"""

from __future__ import annotations

from ..ir import AvgPool, Conv2d, ConvTranspose2d, Graph, Input, MaxPool, RowTaps, Upsample

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    nodes, changed = [], False
    for node in graph:
        if "fifo_depth" in node.attrs:
            nodes.append(node)
            continue
        depth = 0
        bursty = isinstance(node.op, (Conv2d, MaxPool, AvgPool, ConvTranspose2d, Upsample)) and not (
            isinstance(node.op, Conv2d) and node.op.channelwise)
        if bursty and isinstance(graph[node.inputs[0]].op, RowTaps):
            # behind rows kept in DRAM, which wait there as long as need be: rows of the stacked taps on chip
            # (beats of taps·C channels) would undo the move
            depth = 0
        elif bursty and not isinstance(graph[node.inputs[0]].op, Input):
            depth = 2 * graph.input_types(node.name)[0].width
        nodes.append(node.with_attrs(fifo_depth=depth))
        changed = True
    return graph.replace(nodes), changed

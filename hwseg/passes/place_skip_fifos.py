"""Move the FIFOs on chosen join inputs to DRAM (:class:`hwseg.hw.dram.DramFifo`).

A FIFO in DRAM holds at least the depth ``size_skip_fifos`` gave it (its region, rounded up to a power of two,
and its on-chip staging besides), so the deadlock argument, which is on capacities, holds unchanged; its
latency is the memory's round trip, which only the first pixels of a frame can meet (by then the join's other
branch has long been filling its rows).

Requires: every join carries ``skip_fifos`` (``size_skip_fifos``).
Ensures: each join with a FIFO of at least ``min_bits`` (depth × the join's beat, as ``size_skip_fifos`` sized it)
carries ``skip_offchip`` (a tuple of bools, one per input: those FIFOs) and ``memory`` (the DRAM parameters,
``hwseg.estimate.offchip.memory_parameters``). Smaller FIFOs stay on chip, where they take no block RAM or little.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import Add, Concat, Graph

__all__ = ["apply", "fifo_bits"]


def fifo_bits(graph: Graph, node, k: int) -> int:
    """Bits of the FIFO ``size_skip_fifos`` put on input ``k`` of a join."""
    x = graph.input_types(node.name)[k]
    lanes = x.channels if isinstance(node.op, Concat) else node.attrs["in_lanes"]
    return node.attrs["skip_fifos"][k] * lanes * x.dtype.bits


def apply(graph: Graph, *, min_bits: int, memory: dict) -> tuple[Graph, bool]:
    nodes, changed = [], False
    for node in graph:
        if not isinstance(node.op, (Add, Concat)):
            nodes.append(node)
            continue
        if "skip_fifos" not in node.attrs:
            raise UnsupportedError(f"join {node.name!r} has no skip FIFOs yet; run size_skip_fifos first")
        chosen = tuple(bool(depth) and fifo_bits(graph, node, k) >= min_bits
                       for k, depth in enumerate(node.attrs["skip_fifos"]))
        if any(chosen):
            node = node.with_attrs(skip_offchip=chosen, memory=dict(memory))
            changed = True
        nodes.append(node)
    return (graph.replace(nodes), True) if changed else (graph, False)

"""Keep chosen convolutions' weights in RAM written from DRAM after reset, instead of in ROM.

A ROM's contents come with the bitstream; UltraScale+ UltraRAM has none, so weights bound for UltraRAM (27 Mb
of it on a ZCU104, three times its block RAM) are read once after reset from a weight image the host puts in
DRAM (:class:`hwseg.hw.weights.WeightLoader`; the MAC array holds its input until its last word is in). Where
each loaded memory goes (UltraRAM, block RAM, LUTRAM) is synthesis's choice by shape, as the estimate models it.

Requires: the weights' final layout — run after ``place_line_buffers``, which rewrites the convolutions it splits.
Ensures: each selected node carries ``weight_memory = "uram"`` and ``memory`` (the DRAM parameters,
``hwseg.estimate.offchip.memory_parameters``); a selected node that cannot load its weights (a channelwise or
binary-weight convolution, a transposed convolution, anything else) is an error naming it.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import Bipolar, Conv2d, Graph

__all__ = ["apply", "movable", "weight_bits"]


def _loadable(node) -> bool:
    op = node.op
    return isinstance(op, Conv2d) and not op.channelwise and not isinstance(op.weight_type, Bipolar)


def weight_bits(node) -> int:
    """Bits of a convolution's weights at their type's width."""
    return int(node.op.weight.size) * node.op.weight_type.bits


def movable(graph: Graph) -> list[str]:
    """The nodes whose weights may be loaded: convolutions with integer weights (MAC arrays)."""
    return [node.name for node in graph if _loadable(node)]


def apply(graph: Graph, *, select, memory: dict) -> tuple[Graph, bool]:
    chosen = set(select)
    for name in chosen:
        if name not in graph:
            raise UnsupportedError(f"there is no layer {name!r} to load weights for")
    nodes, changed = [], False
    for node in graph:
        if node.name in chosen:
            if not _loadable(node):
                raise UnsupportedError(f"layer {node.name!r} ({node.op.describe()}) cannot load its weights from DRAM: "
                                       f"only a convolution with integer weights (a MAC array) can")
            if node.attrs.get("weight_memory") != "uram":
                node = node.with_attrs(weight_memory="uram", memory=dict(memory))
                changed = True
        nodes.append(node)
    return (graph.replace(nodes), True) if changed else (graph, False)

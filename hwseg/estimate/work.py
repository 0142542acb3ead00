"""The arithmetic work of a graph: multiply-accumulates per frame and parameter counts.

A convolution costs ``C_out · (C_in/groups) · kh · kw`` MACs per output pixel; a transposed
convolution ``C_in · (C_out/groups) · kh · kw`` per *input* pixel (networks.md's convention:
no work is counted for inserted zeros). Parameters are weights plus biases.
"""

from __future__ import annotations

from ..ir import Conv2d, Graph

__all__ = ["macs_per_frame", "parameter_count", "layer_macs"]


def layer_macs(graph: Graph, name: str) -> int:
    op = graph[name].op
    if isinstance(op, Conv2d):
        return int(op.weight.size) * graph.types[name].pixels
    if type(op).__name__ == "ConvTranspose2d":
        return int(op.weight.size) * graph.input_types(name)[0].pixels
    return 0


def macs_per_frame(graph: Graph) -> int:
    return sum(layer_macs(graph, node.name) for node in graph)


def parameter_count(graph: Graph) -> int:
    total = 0
    for node in graph:
        for field in ("weight", "bias"):
            value = getattr(node.op, field, None)
            if value is not None and hasattr(value, "size"):
                total += int(value.size)
    return total

"""The registry that maps each IR op onto a hardware component.

``lower_graph`` walks a graph prepared by ``hwseg.passes.prepare_for_hardware`` and returns,
for each node, a :class:`LoweredNode`: a factory for its component and the element shapes
and lanes of its streams. A node whose op has no entry in ``LOWERINGS`` is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from amaranth import Shape, signed, unsigned

from ..errors import UnsupportedError
from ..hw.argmax import ArgMax as ArgMaxUnit
from ..hw.layers import Conv2dLayer, MaxPoolLayer
from ..hw.requant import MulShiftRequant
from ..hw.threshold import MultiThreshold
from ..ir import ArgMax, Bipolar, Conv2d, Graph, Input, MaxPool, MulShift, ScalarType, Threshold

__all__ = ["LoweredNode", "LOWERINGS", "lower_graph", "amaranth_shape"]


def amaranth_shape(dtype: ScalarType) -> Shape:
    if isinstance(dtype, Bipolar):
        return unsigned(1)
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)


@dataclass(frozen=True)
class LoweredNode:
    """One node's hardware: ``build()`` makes its component (``i_stream`` → ``o_stream``)."""

    name: str
    build: Callable[[], object] | None
    in_shape: Shape | None
    in_lanes: int
    out_shape: Shape
    out_lanes: int
    inputs: tuple[str, ...]
    fifo_depth: int = 0  # a FIFO of this many beats in front of the component (0: none)


def _conv(graph: Graph, node) -> Callable:
    op: Conv2d = node.op
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    # MacArray wants each output channel's weights in window order (ky, kx, c_in).
    weights = np.transpose(op.weight, (0, 2, 3, 1)).reshape(op.out_channels, -1).tolist()
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  kernel=op.kernel, stride=op.stride, padding=op.padding, dilation=op.dilation,
                  weights=weights, bias=op.bias.tolist(), pe=node.attrs["pe"], simd=node.attrs["simd"],
                  acc_shape=amaranth_shape(out.dtype),
                  arithmetic="popcount" if isinstance(op.weight_type, Bipolar) else "multiply")
    return lambda: Conv2dLayer(**params)


def _threshold(graph: Graph, node) -> Callable:
    op: Threshold = node.op
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    params = dict(acc_shape=amaranth_shape(x.dtype), channels=x.channels, lanes=node.attrs["in_lanes"],
                  thresholds=op.thresholds.tolist(), out_bits=out.dtype.bits)
    return lambda: MultiThreshold(**params)


def _mul_shift(graph: Graph, node) -> Callable:
    op: MulShift = node.op
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    params = dict(acc_shape=amaranth_shape(x.dtype), out_shape=amaranth_shape(out.dtype), channels=x.channels,
                  lanes=node.attrs["in_lanes"], multipliers=op.multiplier.tolist(), shift=op.shift,
                  lo=op.lo, hi=op.hi)
    return lambda: MulShiftRequant(**params)


def _max_pool(graph: Graph, node) -> Callable:
    op: MaxPool = node.op
    x = graph.input_types(node.name)[0]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  kernel=op.kernel, stride=op.stride, padding=op.padding)
    return lambda: MaxPoolLayer(**params)


def _argmax(graph: Graph, node) -> Callable:
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, index_bits=out.dtype.bits)
    return lambda: ArgMaxUnit(**params)


LOWERINGS: dict[type, Callable] = {
    Conv2d: _conv,
    MulShift: _mul_shift,
    Threshold: _threshold,
    MaxPool: _max_pool,
    ArgMax: _argmax,
}


def lower_graph(graph: Graph) -> list[LoweredNode]:
    """Every node of ``graph`` with its hardware, in topological order."""
    lowered = []
    for node in graph:
        if "out_lanes" not in node.attrs:
            raise UnsupportedError(f"layer {node.name!r} has no stream lanes; run the hardware passes first")
        if len(graph.consumers(node.name)) > 1:
            raise UnsupportedError(f"layer {node.name!r} feeds {len(graph.consumers(node.name))} layers; "
                                   f"fan-out (Fork) has no hardware yet")
        out_shape = amaranth_shape(graph.types[node.name].dtype)
        if isinstance(node.op, Input):
            lowered.append(LoweredNode(node.name, None, None, 0, out_shape, node.attrs["out_lanes"], ()))
            continue
        lowering = LOWERINGS.get(type(node.op))
        if lowering is None:
            raise UnsupportedError(f"layer {node.name!r} ({node.op.describe()}) has no hardware yet")
        in_shape = amaranth_shape(graph.input_types(node.name)[0].dtype)
        lowered.append(LoweredNode(node.name, lowering(graph, node), in_shape, node.attrs["in_lanes"],
                                   out_shape, node.attrs["out_lanes"], node.inputs, node.attrs.get("fifo_depth", 0)))
    return lowered

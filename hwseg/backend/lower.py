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
from ..hw.avgpool import AvgPoolLayer
from ..hw.channel_affine import ChannelAffine
from ..hw.dram import DramRowTaps
from ..hw.join import ChannelConcat, ElementwiseAdd
from ..hw.layers import Conv2dLayer, MaxPoolLayer
from ..hw.requant import MulShiftRequant
from ..hw.threshold import MultiThreshold
from ..hw.transposed import ConvTranspose2dLayer
from ..hw.upsample import UpsampleLayer
from ..ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift,
                  RowTaps, ScalarType, Threshold, Upsample)

__all__ = ["LoweredNode", "LOWERINGS", "lower_graph", "amaranth_shape"]


def amaranth_shape(dtype: ScalarType) -> Shape:
    if isinstance(dtype, Bipolar):
        return unsigned(1)
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)


@dataclass(frozen=True)
class LoweredNode:
    """One node's hardware: ``build()`` makes its component, whose input streams are
    :func:`input_ports` and whose output is ``o_stream``; ``build`` is ``None`` for the network
    input and for a Fork (the stitcher copies any stream read by several layers).

    Per input ``k`` (the producer ``inputs[k]``): the element shape and lanes the component takes,
    and the beats of FIFO in front of it (0: none), and whether that FIFO is in DRAM (``fifo_offchip``; its
    ``memory`` parameters then, as for a component with a memory port of its own, :func:`memory_of`).
    """

    name: str
    build: Callable[[], object] | None
    in_shapes: tuple[Shape, ...]
    in_lanes: tuple[int, ...]
    out_shape: Shape
    out_lanes: int
    inputs: tuple[str, ...]
    fifo_depths: tuple[int, ...] = ()
    fifo_offchip: tuple[bool, ...] = ()
    memory: dict | None = None
    #: per input, the lanes of a beat of its FIFO in DRAM (0: on chip)
    fifo_lanes: tuple[int, ...] = ()
    #: a convolution whose loaded weights share an UltraRAM with another's: (the first one's name, its client
    #: index), ``attrs["weight_ram"]`` (:func:`hwseg.offchip.pair_weight_rams`)
    weight_ram: tuple[str, int] | None = None
    #: per input, the lanes of the skid buffer that registers its ready (0: none; ``attrs["skid_lanes"]``,
    #: :mod:`hwseg.passes.register_ready`)
    skid_lanes: tuple[int, ...] = ()


def input_ports(component) -> list:
    """The input streams of a built component, in the order of its node's inputs."""
    ports = getattr(component, "i_streams", None)
    return list(ports) if ports is not None else [component.i_stream]


def _conv(graph: Graph, node) -> Callable:
    op: Conv2d = node.op
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    if op.channelwise:
        affine = dict(in_shape=amaranth_shape(x.dtype), acc_shape=amaranth_shape(out.dtype), channels=x.channels,
                      weights=op.weight.reshape(-1).tolist(), bias=op.bias.tolist(), lanes=node.attrs["pe"])
        return lambda: ChannelAffine(**affine)
    # MacArray wants each output channel's weights in window order (ky, kx, c_in).
    weights = np.transpose(op.weight, (0, 2, 3, 1)).reshape(op.out_channels, -1).tolist()
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  kernel=op.kernel, stride=op.stride, padding=op.padding, dilation=op.dilation,
                  weights=weights, bias=op.bias.tolist(), pe=node.attrs["pe"], simd=node.attrs["simd"],
                  acc_shape=amaranth_shape(out.dtype),
                  arithmetic="popcount" if isinstance(op.weight_type, Bipolar) else "multiply",
                  window=node.attrs.get("window", "register"),
                  # weights in RAM written from DRAM after reset (hwseg.passes.place_weights)
                  weights_loaded=node.attrs.get("weight_memory") == "uram",
                  weight_ram_style=node.attrs.get("weight_ram_style"),
                  # (shared with another convolution's: a WeightRam in the top level, which asks for UltraRAM)
                  external_weights="weight_ram" in node.attrs,
                  # the MAC variant (hwseg.estimate.network.mac_variants): two PEs' products per multiplier, or
                  # products in logic
                  pack=node.attrs.get("pack", 1), multiplier=node.attrs.get("multiplier", "dsp"))
    return lambda: Conv2dLayer(**params)


def _conv_transpose(graph: Graph, node) -> Callable:
    op: ConvTranspose2d = node.op
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, out_channels=op.out_channels,
                  height=x.height, width=x.width, kernel=op.kernel, stride=op.stride, padding=op.padding,
                  output_padding=op.output_padding, dilation=op.dilation, groups=op.groups,
                  weights=op.weight.tolist(), bias=op.bias.tolist(), pe=node.attrs["pe"], simd=node.attrs["simd"],
                  acc_shape=amaranth_shape(out.dtype))
    return lambda: ConvTranspose2dLayer(**params)


def _upsample(graph: Graph, node) -> Callable:
    op: Upsample = node.op
    x = graph.input_types(node.name)[0]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  factor=op.factor, mode=op.mode)
    return lambda: UpsampleLayer(**params)


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


def _add(graph: Graph, node) -> Callable:
    op: Add = node.op
    a, b = graph.input_types(node.name)
    params = dict(a_shape=amaranth_shape(a.dtype), b_shape=amaranth_shape(b.dtype),
                  out_shape=amaranth_shape(graph.types[node.name].dtype), lanes=node.attrs["in_lanes"],
                  lo=op.lo, hi=op.hi)
    return lambda: ElementwiseAdd(**params)


def _concat(graph: Graph, node) -> Callable:
    inputs = graph.input_types(node.name)
    params = dict(elem_shape=amaranth_shape(inputs[0].dtype), channels=[x.channels for x in inputs])
    return lambda: ChannelConcat(**params)


def _avg_pool(graph: Graph, node) -> Callable:
    op: AvgPool = node.op
    x = graph.input_types(node.name)[0]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  kernel=op.kernel, stride=op.stride, padding=op.padding)
    return lambda: AvgPoolLayer(**params)


def _row_taps(graph: Graph, node) -> Callable:
    op: RowTaps = node.op
    x, memory = graph.input_types(node.name)[0], node.attrs["memory"]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, height=x.height, width=x.width,
                  taps=op.taps, dilation=op.dilation, stride=op.stride, padding=op.padding,
                  data_bits=memory["data_bits"], address_bits=memory["address_bits"], burst=memory["burst"],
                  outstanding=memory["outstanding"], tap_buffer=memory["read_buffer"],
                  # a memory word a beat where the lanes pass chose it (hwseg.passes.annotate_lanes.word_lanes)
                  lanes=node.attrs["out_lanes"] if node.attrs["out_lanes"] < graph.types[node.name].channels else None)
    return lambda: DramRowTaps(**params)


def _argmax(graph: Graph, node) -> Callable:
    x, out = graph.input_types(node.name)[0], graph.types[node.name]
    params = dict(elem_shape=amaranth_shape(x.dtype), channels=x.channels, index_bits=out.dtype.bits)
    return lambda: ArgMaxUnit(**params)


LOWERINGS: dict[type, Callable] = {
    Conv2d: _conv,
    MulShift: _mul_shift,
    Threshold: _threshold,
    MaxPool: _max_pool,
    AvgPool: _avg_pool,
    ArgMax: _argmax,
    ConvTranspose2d: _conv_transpose,
    Upsample: _upsample,
    Add: _add,
    Concat: _concat,
    RowTaps: _row_taps,
    Fork: None,      # no component: the stitcher copies every stream read by several layers
}


def _input_lanes(graph: Graph, node) -> tuple[int, ...]:
    if isinstance(node.op, Concat):
        return tuple(x.channels for x in graph.input_types(node.name))
    return (node.attrs["in_lanes"],) * len(node.inputs)


def _fifo_depths(node) -> tuple[int, ...]:
    if "skip_fifos" in node.attrs:
        return tuple(node.attrs["skip_fifos"])
    return (node.attrs.get("fifo_depth", 0),) * len(node.inputs)


def lower_graph(graph: Graph) -> list[LoweredNode]:
    """Every node of ``graph`` with its hardware, in topological order."""
    lowered = []
    for node in graph:
        if "out_lanes" not in node.attrs:
            raise UnsupportedError(f"layer {node.name!r} has no stream lanes; run the hardware passes first")
        out_shape = amaranth_shape(graph.types[node.name].dtype)
        if isinstance(node.op, Input):
            lowered.append(LoweredNode(node.name, None, (), (), out_shape, node.attrs["out_lanes"], ()))
            continue
        if type(node.op) not in LOWERINGS:
            raise UnsupportedError(f"layer {node.name!r} ({node.op.describe()}) has no hardware yet")
        lowering = LOWERINGS[type(node.op)]
        in_shapes = tuple(amaranth_shape(x.dtype) for x in graph.input_types(node.name))
        offchip = tuple(bool(flag) for flag in node.attrs.get("fifo_offchip", ())) or (False,) * len(node.inputs)
        lowered.append(LoweredNode(node.name, lowering(graph, node) if lowering else None, in_shapes,
                                   _input_lanes(graph, node), out_shape, node.attrs["out_lanes"], node.inputs,
                                   _fifo_depths(node), offchip, node.attrs.get("memory"),
                                   tuple(node.attrs.get("fifo_lanes", ())),
                                   tuple(node.attrs["weight_ram"]) if "weight_ram" in node.attrs else None,
                                   tuple(node.attrs.get("skid_lanes", ()))))
    return lowered

"""Per-layer and whole-network estimates: resources, cycles per frame, fps, board utilization.

Requires a graph prepared for hardware (``hwseg.passes.prepare_for_hardware``): every node
carries ``in_lanes``/``out_lanes`` and every convolution its ``pe``/``simd``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..boards import RESOURCES, Board
from ..errors import UnsupportedError
from ..ir import ArgMax, Bipolar, Conv2d, Graph, Input, MaxPool, MulShift, Threshold
from . import resources as R
from .cycles import window_layer_cycles

__all__ = ["LayerEstimate", "NetworkEstimate", "estimate_graph", "conv_compute"]


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op: str
    description: str
    resources: R.Resources
    cycles: int
    folding: dict = field(default_factory=dict)
    line_buffer_bits: int = 0

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "description": self.description, **self.resources.as_dict(),
                "memory_bits": self.resources.memory_bits, "line_buffer_bits": self.line_buffer_bits,
                "cycles": self.cycles, "folding": dict(self.folding)}


@dataclass(frozen=True)
class NetworkEstimate:
    layers: list[LayerEstimate]
    board: Board

    @property
    def total(self) -> R.Resources:
        total = R.Resources()
        for layer in self.layers:
            total = total + layer.resources
        return total

    @property
    def cycles_per_frame(self) -> int:
        return max(layer.cycles for layer in self.layers)

    @property
    def bottleneck(self) -> str:
        return max(self.layers, key=lambda layer: layer.cycles).name

    @property
    def fps(self) -> float:
        return self.board.clock_mhz * 1e6 / self.cycles_per_frame

    @property
    def utilization(self) -> dict[str, float]:
        total = self.total.as_dict()
        return {key: total[key] / self.board.resources[key] for key in RESOURCES}

    def overflows(self) -> dict[str, tuple[int, int]]:
        """Resources the design exceeds: name → (needed, available)."""
        total = self.total.as_dict()
        return {key: (total[key], self.board.resources[key]) for key in RESOURCES
                if total[key] > self.board.resources[key]}


def _elem_bits(dtype) -> int:
    return dtype.bits


def _lanes(graph: Graph, name: str, elem_bits: int) -> R.Resources:
    """The lane converter the backend puts in front of node ``name`` (if its producer's lanes differ)."""
    node = graph[name]
    if not node.inputs:
        return R.Resources()
    producer = graph[node.inputs[0]]
    return R.lane_converter(in_lanes=producer.attrs["out_lanes"], out_lanes=node.attrs["in_lanes"],
                            elem_bits=elem_bits)


def conv_compute(graph: Graph, node, pe: int, simd: int) -> R.Resources:
    """Resources of a convolution's compute (its MAC array) at folding ``pe`` × ``simd``."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    k = op.kernel[0] * op.kernel[1] * x.channels
    if isinstance(op.weight_type, Bipolar):
        return R.bit_mac_array(in_count=k, in_bits=x.dtype.bits, out_channels=op.out_channels, pe=pe, simd=simd,
                               acc_bits=out.dtype.bits)
    return R.mac_array(in_count=k, in_bits=x.dtype.bits, weight_bits=op.weight_type.bits,
                       out_channels=op.out_channels, pe=pe, simd=simd, acc_bits=out.dtype.bits)


def _estimate_node(graph: Graph, node) -> LayerEstimate:
    op, out = node.op, graph.types[node.name]
    if isinstance(op, Input):
        return LayerEstimate(node.name, "Input", op.describe(),
                             R.axis_adapter(beats_per_frame=out.pixels), out.pixels)
    x = graph.input_types(node.name)[0]
    convert = _lanes(graph, node.name, _elem_bits(x.dtype))
    if node.attrs.get("fifo_depth"):
        convert = convert + R.fifo(depth=node.attrs["fifo_depth"], width=node.attrs["in_lanes"] * x.dtype.bits)
    if isinstance(op, (Conv2d, MaxPool)):
        kernel, stride, padding = op.kernel, op.stride, op.padding
        dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
        padded = (x.height + 2 * padding[0], x.width + 2 * padding[1])
        pointwise = isinstance(op, Conv2d) and kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)
        window, lb_bits = R.Resources(), 0  # a pointwise convolution takes pixels as they come
        if not pointwise:
            window = R.sliding_window(channels=x.channels, elem_bits=x.dtype.bits, kernel=kernel,
                                      dilation=dilation, padded_width=padded[1], padded_height=padded[0])
            lb_bits = R.line_buffer_bits(channels=x.channels, elem_bits=x.dtype.bits, kernel=kernel,
                                         dilation=dilation, padded_width=padded[1])
        if isinstance(op, Conv2d):
            pe, simd = node.attrs["pe"], node.attrs["simd"]
            k = kernel[0] * kernel[1] * x.channels
            compute = conv_compute(graph, node, pe, simd)
            per_window = (op.out_channels // pe) * (k // simd)
            folding = {"pe": pe, "simd": simd, "nf": op.out_channels // pe, "sf": k // simd}
        else:
            compute = R.window_max(window=kernel[0] * kernel[1], channels=x.channels, elem_bits=x.dtype.bits)
            per_window, folding = 1, {}
        cycles = window_layer_cycles(padded=padded, out=(out.height, out.width), kernel=kernel, stride=stride,
                                     dilation=dilation, cycles_per_window=per_window)
        return LayerEstimate(node.name, type(op).__name__, op.describe(), convert + window + compute, cycles,
                             folding, lb_bits)
    if isinstance(op, MulShift):
        lanes = node.attrs["in_lanes"]
        res = R.mul_shift(lanes=lanes, channels=x.channels, acc_bits=x.dtype.bits, out_bits=out.dtype.bits)
        return LayerEstimate(node.name, "MulShift", op.describe(), convert + res,
                             out.pixels * (x.channels // lanes), {"lanes": lanes})
    if isinstance(op, Threshold):
        lanes = node.attrs["in_lanes"]
        res = R.multi_threshold(lanes=lanes, channels=x.channels, acc_bits=x.dtype.bits,
                                thresholds=op.thresholds.shape[1])
        return LayerEstimate(node.name, "Threshold", op.describe(), convert + res,
                             out.pixels * (x.channels // lanes), {"lanes": lanes})
    if isinstance(op, ArgMax):
        res = R.argmax(channels=x.channels, elem_bits=x.dtype.bits, index_bits=out.dtype.bits)
        return LayerEstimate(node.name, "ArgMax", op.describe(), convert + res, out.pixels)
    raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no estimate")


def estimate_graph(graph: Graph, board: Board) -> NetworkEstimate:
    layers = [_estimate_node(graph, node) for node in graph]
    # The output adapter counts beats for tlast.
    out = graph.output_type
    tail = R.axis_adapter(beats_per_frame=out.pixels)
    last = layers[-1]
    layers[-1] = LayerEstimate(last.name, last.op, last.description, last.resources + tail, last.cycles,
                               last.folding, last.line_buffer_bits)
    return NetworkEstimate(layers, board)

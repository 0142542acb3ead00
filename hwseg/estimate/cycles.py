"""Cycle model of the streaming hardware.

Every block processes one beat per cycle at most. A sliding-window layer walks its padded
frame at one position per cycle; after emitting a window it may advance only once the
consumer has taken it, and a folded MAC array takes a window every ``F = NF·SF`` cycles.
So window ``i+1`` is taken ``max(gap_i, F)`` cycles after window ``i``, where ``gap_i`` is
the number of padded positions between the two windows, and a frame (whose gaps add up to
the padded frame size) takes ``Σ_i max(gap_i, F)`` cycles in steady state.

The network's period is that of its slowest layer; fps = clock / period.
"""

from __future__ import annotations

from math import ceil, log2

from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, Threshold,
                  Upsample)

__all__ = ["window_layer_cycles", "layer_cycles", "layer_latency", "cycles_per_window", "transposed_cycles",
           "transposed_axis_folds", "transposed_buffer_rows", "upsample_buffer_rows"]


def window_layer_cycles(*, padded: tuple[int, int], out: tuple[int, int], kernel, stride, dilation,
                        cycles_per_window: int) -> int:
    """Steady-state cycles per frame of a sliding window feeding a consumer that needs
    ``cycles_per_window`` cycles per window."""
    (hp, wp), (ho, wo), (kh, kw), (sh, sw), (dh, dw) = padded, out, kernel, stride, dilation
    f = cycles_per_window
    first_row = (kh - 1) * dh
    first_col = (kw - 1) * dw
    in_row = wo - 1                        # gaps of sw between windows of one row
    row_gap = sh * wp - (wo - 1) * sw      # last window of a row to the first of the next
    frame_gap = hp * wp - (ho - 1) * sh * wp - (wo - 1) * sw  # last window to the next frame's first
    assert first_row + (ho - 1) * sh < hp and first_col + (wo - 1) * sw < wp
    return ho * in_row * max(sw, f) + (ho - 1) * max(row_gap, f) + max(frame_gap, f)


def cycles_per_window(graph: Graph, node) -> int:
    """``NF·SF`` of a convolution at its folding (1 for a max-pool)."""
    op = node.op
    if isinstance(op, (MaxPool, AvgPool)):
        return 1
    k = op.kernel[0] * op.kernel[1] * graph.input_types(node.name)[0].channels
    return (op.out_channels // node.attrs["pe"]) * (k // node.attrs["simd"])


def layer_cycles(graph: Graph, node) -> int:
    """Steady-state cycles per frame of one layer of a graph prepared for hardware."""
    op, out = node.op, graph.types[node.name]
    if isinstance(op, Conv2d) and op.channelwise:
        return out.pixels
    if isinstance(op, (Conv2d, MaxPool, AvgPool)):
        x = graph.input_types(node.name)[0]
        padded = (x.height + 2 * op.padding[0], x.width + 2 * op.padding[1])
        dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
        return window_layer_cycles(padded=padded, out=(out.height, out.width), kernel=op.kernel, stride=op.stride,
                                   dilation=dilation, cycles_per_window=cycles_per_window(graph, node))
    if isinstance(op, ConvTranspose2d):
        return transposed_cycles(graph, node, node.attrs["pe"], node.attrs["simd"])
    if isinstance(op, (MulShift, Threshold)):
        return out.pixels * (out.channels // node.attrs["in_lanes"])
    if isinstance(op, Upsample):
        return out.pixels + (op.mode == "bilinear")
    if isinstance(op, (Input, ArgMax, Add, Concat, Fork)):
        return out.pixels
    raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no cycle model")


def transposed_cycles(graph: Graph, node, pe: int, simd: int) -> int:
    """A ConvTranspose2dLayer's frame: one fold per cycle, ``NF·SF`` folds per tap of each output
    pixel's phase, ``max(NF·SF·Σ_oy Ty'·Σ_ox Tx', H·W)`` (it also takes every input pixel)."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    nf, sf = op.out_channels // pe, x.channels // simd
    rows = transposed_axis_folds(x.height, out.height, op.kernel[0], op.stride[0], op.padding[0])
    cols = transposed_axis_folds(x.width, out.width, op.kernel[1], op.stride[1], op.padding[1])
    return max(nf * sf * rows * cols, x.pixels)


def layer_latency(graph: Graph, node) -> int:
    """Cycles from a layer taking the last input its output pixel needs to that pixel's last beat
    leaving it, FIFOs and lane converters in front of it included (the blocks' documented latencies)."""
    op = node.op
    if isinstance(op, Input):
        return 0
    front = 0
    for name in node.inputs:
        if graph[name].attrs.get("out_lanes") != node.attrs.get("in_lanes") and not isinstance(op, Concat):
            front = max(front, 1)                    # a lane converter
    if node.attrs.get("fifo_depth") or any(node.attrs.get("skip_fifos", ())):
        front += 2                                   # StreamFIFO
    if isinstance(op, Conv2d) and op.channelwise:
        return front + 1
    if isinstance(op, Conv2d):
        window = 0 if (op.kernel, op.stride, op.padding) == ((1, 1), (1, 1), (0, 0)) else 1
        x = graph.input_types(node.name)[0]
        sf = op.kernel[0] * op.kernel[1] * x.channels // node.attrs["simd"]
        nf = op.out_channels // node.attrs["pe"]
        return front + window + sf + 3 + (nf - 1) * sf        # MacArray: SF + 3, then the other NF − 1 folds
    if isinstance(op, ConvTranspose2d):
        x = graph.input_types(node.name)[0]
        nf, sf = op.out_channels // node.attrs["pe"], x.channels // node.attrs["simd"]
        taps = max(_phase_taps(op.kernel[0], op.stride[0])) * max(_phase_taps(op.kernel[1], op.stride[1]))
        return front + nf * taps * sf + 3
    if isinstance(op, Upsample):
        return front + (1 if op.mode == "nearest" else 3)
    if isinstance(op, MaxPool):
        return front + 2
    if isinstance(op, AvgPool):
        return front + 2 + op.shift // 2       # WindowMean registers every second adder level
    if isinstance(op, MulShift):
        return front + 2
    if isinstance(op, Threshold):
        return front + 2 + ceil(log2(op.thresholds.shape[1] + 1))
    if isinstance(op, (ArgMax, Add)):
        return front + 1
    if isinstance(op, (Concat, Fork)):
        return front
    raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no latency model")


def _phase_taps(kernel: int, stride: int) -> list[int]:
    """Folds per output phase of a dilation-1 transposed convolution axis: ``max(⌈(k − r)/s⌉, 1)``
    (a phase without taps still takes one fold, its output being the bias)."""
    return [max(-(-(kernel - r) // stride), 1) for r in range(stride)]


def transposed_axis_folds(size_in: int, size_out: int, kernel: int, stride: int, padding: int) -> int:
    """``Σ_o Tslots(phase(o))`` over the outputs of one axis."""
    slots = _phase_taps(kernel, stride)
    return sum(slots[(o + padding) % stride] for o in range(size_out))


def transposed_buffer_rows(*, height: int, out_height: int, kernel: int, stride: int, padding: int) -> int:
    """Input rows the ConvTranspose2dLayer's line buffer holds (``R`` of
    :class:`hwseg.hw.transposed.ConvTranspose2dLayer`; ``⌈kh/sh⌉ + 1`` in the usual configurations)."""
    span = -(-kernel // stride)
    anchor = lambda o: (o + padding) // stride
    top = max(anchor(0) - span + 1, 0)
    bottom = min(anchor(out_height - 1), height - 1)
    low_end = min(max(anchor(out_height - 1) - span + 1, top), bottom)
    first_need = min(anchor(0), height - 1)
    return min(max(span + 1, first_need - top + bottom - low_end + 2), 2 * (bottom - top + 1))


def upsample_buffer_rows(*, height: int, width: int, factor, mode: str) -> int:
    """Input rows the UpsampleLayer's line buffer holds."""
    if mode == "bilinear" and factor[0] > 1:
        return min(3, height)
    return 1 if width > 1 else (2 if mode == "nearest" else min(2, height))

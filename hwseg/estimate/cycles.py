"""Cycle model of the streaming hardware.

Every block processes one beat per cycle at most. A sliding-window layer walks its padded
frame at one position per cycle; after emitting a window it may advance only once the
consumer has taken it, and a folded MAC array takes a window every ``F = NF·SF`` cycles.
So window ``i+1`` is taken ``max(gap_i, F)`` cycles after window ``i``, where ``gap_i`` is
the number of padded positions between the two windows, and a frame (whose gaps add up to
the padded frame size) takes ``Σ_i max(gap_i, F)`` cycles in steady state.

A convolution whose ``simd`` divides its input channels may instead serve its windows from memory
(:class:`hwseg.hw.folded_window.FoldedWindow`, :func:`window_kind` "folded"): a writer stores ``CB =
C/simd`` slices per padded position, at most ``slack`` positions past the window being read, and a
reader serves each window ``NF`` times, ``SF`` slices, one per cycle (:func:`folded_window_cycles`).

The network's period is that of its slowest layer; fps = clock / period.
"""

from __future__ import annotations

from functools import lru_cache
from math import ceil, log2

import numpy as np

from ..errors import UnsupportedError
from .offchip import row_taps_of
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, RowTaps, Threshold,
                  Upsample)

__all__ = ["window_layer_cycles", "folded_window_cycles", "folded_window_steps", "folded_window_geometry",
           "window_geometry", "can_fold_window", "window_kind", "layer_cycles", "layer_latency", "cycles_per_window",
           "transposed_cycles", "transposed_axis_folds", "transposed_buffer_rows", "upsample_buffer_rows"]


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


def _folded_frames(*, padded, out, kernel, stride, dilation, beats_per_pixel, cycles_per_window, slack):
    """A FoldedWindow's schedule at full rate, frame after frame: yields ``(state, runs)`` per frame, with
    ``state`` (``ahead`` and the writer's beat within its position) when the reader starts the frame's first
    window, and ``runs`` a list of ``(step, count)``: ``count`` windows each starting ``step`` cycles after
    the one before (the first run's first step is measured from the previous frame's last window, or for
    the first frame from cycle 0).

    Exact, by the window-to-window recurrence of the hardware: the reader serves window ``i`` for ``F``
    cycles; meanwhile the writer, ``CB`` cycles per padded position, writes while it is fewer than
    ``slack`` positions past window ``i``'s newest (``ahead < slack``); moving on takes the next window's
    gap off ``ahead``, and the reader waits while ``ahead < 0``. Once an in-row window leaves the state as
    the one before it did, the rest of the row repeats it."""
    (hp, wp), (ho, wo), (kh, kw), (sh, sw), (dh, dw) = padded, out, kernel, stride, dilation
    cb, f = beats_per_pixel, cycles_per_window
    span = (kh - 1) * dh * wp + (kw - 1) * dw + 1
    next_row = sh * wp - (wo - 1) * sw
    next_frame = hp * wp - (ho - 1) * sh * wp - (wo - 1) * sw
    ahead, beat, step = 0, 0, span * cb          # the first window waits for its `span` positions
    while True:
        runs = []
        state = (ahead, beat)
        for oy in range(ho):
            ox, previous = 0, None
            while ox < wo:
                runs.append((step, 1))
                if ahead < slack:                     # the writer during the window's F cycles
                    if (slack - ahead) * cb - beat <= f:
                        ahead, beat = slack, 0
                    else:
                        done, beat = divmod(beat + f, cb)
                        ahead += done
                ahead -= sw if ox < wo - 1 else (next_row if oy < ho - 1 else next_frame)
                step = f
                if ahead < 0:                         # the reader waits for the next window's last position
                    step += -ahead * cb - beat
                    ahead, beat = 0, 0
                ox += 1
                if ox < wo - 1 and previous == (ahead, beat, step):
                    runs.append((step, wo - 1 - ox))  # windows ox .. wo − 2 repeat this step
                    ox = wo - 1
                previous = (ahead, beat, step)
        yield state, runs


@lru_cache(maxsize=4096)
def folded_window_cycles(*, padded: tuple[int, int], out: tuple[int, int], kernel, stride, dilation,
                         beats_per_pixel: int, cycles_per_window: int, slack: int) -> int:
    """Steady-state cycles per frame of a :class:`~hwseg.hw.folded_window.FoldedWindow` at full rate
    (:func:`_folded_frames`): frames are run until the state at a frame's first window repeats."""
    seen, time = {}, 0
    frames = _folded_frames(padded=padded, out=out, kernel=kernel, stride=stride, dilation=dilation,
                            beats_per_pixel=beats_per_pixel, cycles_per_window=cycles_per_window, slack=slack)
    for frame, (state, runs) in enumerate(frames):
        first_step = runs[0][0]
        if state in seen:                        # the state repeats: so does everything after it
            first_time, first_frame = seen[state]
            return -(-(time + first_step - first_time) // (frame - first_frame))
        seen[state] = (time + first_step, frame)
        time += sum(step * count for step, count in runs)


def folded_window_steps(*, padded: tuple[int, int], out: tuple[int, int], kernel, stride, dilation,
                        beats_per_pixel: int, cycles_per_window: int, slack: int, frames: int) -> np.ndarray:
    """Cycles from each window's first read to the next one's over ``frames`` frames at full rate (entry 0:
    from cycle 0 to the first window's), as :func:`_folded_frames` schedules them."""
    schedule = _folded_frames(padded=padded, out=out, kernel=kernel, stride=stride, dilation=dilation,
                              beats_per_pixel=beats_per_pixel, cycles_per_window=cycles_per_window, slack=slack)
    runs = [run for _, (_, frame_runs) in zip(range(frames), schedule) for run in frame_runs]
    steps, counts = zip(*runs)
    return np.repeat(np.array(steps, dtype=np.int64), counts)


def folded_window_geometry(*, padded: tuple[int, int], out: tuple[int, int], kernel, stride, dilation) -> dict:
    """A FoldedWindow's ``span`` (padded positions one window covers), its ``gaps`` (in a row, to the next
    row, to the next frame) and its default ``slack`` (the larger in-frame gap plus one stride), as
    :class:`hwseg.hw.folded_window.FoldedWindow` computes them."""
    (hp, wp), (ho, wo), (kh, kw), (sh, sw), (dh, dw) = padded, out, kernel, stride, dilation
    gaps = (sw, sh * wp - (wo - 1) * sw, hp * wp - (ho - 1) * sh * wp - (wo - 1) * sw)
    slack = max(gaps[0] if wo > 1 else 1, gaps[1] if ho > 1 else 1) + sw
    span = (kh - 1) * dh * wp + (kw - 1) * dw + 1
    return {"span": span, "gaps": gaps, "slack": slack, "ring_positions": span + slack}


def window_geometry(graph: Graph, node) -> dict:
    """``padded``, ``out``, ``kernel``, ``stride``, ``dilation`` of a convolution's window (the arguments of
    :func:`window_layer_cycles` and :func:`folded_window_geometry`)."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    return dict(padded=(x.height + 2 * op.padding[0], x.width + 2 * op.padding[1]), out=(out.height, out.width),
                kernel=tuple(op.kernel), stride=tuple(op.stride), dilation=tuple(op.dilation))


def _folded_cycles(graph: Graph, node) -> int:
    geometry = window_geometry(graph, node)
    cb = graph.input_types(node.name)[0].channels // node.attrs["simd"]
    return folded_window_cycles(**geometry, beats_per_pixel=cb, cycles_per_window=cycles_per_window(graph, node),
                                slack=folded_window_geometry(**geometry)["slack"])


def can_fold_window(graph: Graph, node) -> bool:
    """Whether a convolution's windows can be served from memory: it is not channelwise and its ``simd`` divides
    its input channels (a multiplying or a bit convolution: both MAC arrays take their folds serially; a pointwise
    one's window is its pixel, a 1×1 window in a ring of a few pixels instead of the vector in flip-flops)."""
    op = node.op
    return (isinstance(op, Conv2d) and not op.channelwise
            and graph.input_types(node.name)[0].channels % node.attrs["simd"] == 0)


def _pointwise(op) -> bool:
    return (op.kernel, op.stride, op.padding) == ((1, 1), (1, 1), (0, 0))


def window_kind(graph: Graph, node) -> str | None:
    """How a convolution gets its windows: ``"folded"`` (served ``simd`` elements per cycle from memory,
    the MAC array holding nothing) where it can be (:func:`can_fold_window`) and its frame takes no more
    cycles than with the register window; ``"register"`` (the whole window in flip-flops, copied into the
    MAC array) otherwise; None for a layer without a window. A node's ``window_request`` attribute
    (``"register"``, or ``"folded"`` where that is possible) overrides it. A pointwise convolution holds its
    vector (None) unless ``"folded"`` is asked for (its pixel then a 1×1 window served from a ring of a few pixels:
    lean where the pixel is wide, as in the cheapest design).

    The folded window keeps ``simd`` elements in flip-flops instead of ``2·kh·kw·C`` and the same pixels in
    memory plus ``slack``. Standalone it loses only its writer's cycles at a frame's start beyond its slack
    (0.016 % of a 3×1 convolution of 64 channels at 512×256 folded to one MAC), which :func:`layer_cycles`
    counts; but in a balanced pipeline its upstream runs at the same pace and cannot serve that burst
    (measured: int8_tiny with conv3 folded, 0.4 % slower standalone, ran 6.5 % slower as a whole). So it is
    chosen only where it is no slower at all; designs that must be lean (the cheapest design when nothing
    fits, a fully folded sweep) ask for it."""
    op = node.op
    if not isinstance(op, Conv2d) or op.channelwise:
        return None
    request = node.attrs.get("window_request")
    if request not in (None, "register", "folded"):
        raise UnsupportedError(f"layer {node.name!r}: window_request must be 'register' or 'folded', "
                               f"not {request!r}")
    if _pointwise(op):           # the vector held in flip-flops, unless a served 1×1 window is asked for
        return "folded" if request == "folded" and can_fold_window(graph, node) else None
    if not can_fold_window(graph, node):
        return "register"      # (a "folded" request is checked with its simd where it is made: set_folding)
    if request is not None:
        return request
    register = window_layer_cycles(**window_geometry(graph, node), cycles_per_window=cycles_per_window(graph, node))
    return "folded" if _folded_cycles(graph, node) <= register else "register"


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
        return out.pixels * (out.channels // node.attrs["pe"])
    if window_kind(graph, node) == "folded":
        return _folded_cycles(graph, node)
    if isinstance(op, (Conv2d, MaxPool, AvgPool)):
        x = graph.input_types(node.name)[0]
        padded = (x.height + 2 * op.padding[0], x.width + 2 * op.padding[1])
        dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
        return window_layer_cycles(padded=padded, out=(out.height, out.width), kernel=op.kernel, stride=op.stride,
                                   dilation=dilation, cycles_per_window=cycles_per_window(graph, node))
    if isinstance(op, ConvTranspose2d):
        return transposed_cycles(graph, node, node.attrs["pe"], node.attrs["simd"])
    if isinstance(op, (MulShift, Threshold)):    # (a requantizer with its own folding: its pe lanes)
        return out.pixels * (out.channels // node.attrs.get("pe", node.attrs.get("in_lanes")))
    if isinstance(op, Upsample):
        return out.pixels + (op.mode == "bilinear")
    if isinstance(op, Add):                          # pe channels of a pixel per beat
        return out.pixels * (out.channels // node.attrs.get("pe", node.attrs.get("in_lanes", out.channels)))
    if isinstance(op, RowTaps):
        return row_taps_of(graph, node).cycles_per_frame
    if isinstance(op, (Input, ArgMax, Concat, Fork)):
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
        # (a folded window's 2 cycles to its first slice and the serial MacArray's 3 stages after the
        # SF-th slice add up to the same: 1 + SF + 3)
        window = 0 if _pointwise(op) and node.attrs.get("window") != "folded" else 1
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
    if isinstance(op, (Concat, Fork, RowTaps)):      # (RowTaps: its output beat is its input beat and the taps)
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

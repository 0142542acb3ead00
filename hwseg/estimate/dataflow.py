"""When can a layer emit an output pixel? The input each output waits for, for sizing skip FIFOs.

``inputs_needed(graph, node)`` gives, for every output pixel ``j`` of a frame (raster order), the
number of input pixels of the same frame the node must have taken before it can emit pixel ``j``:

* a sliding-window layer (Conv2d with a window, MaxPool, AvgPool) walks its padded frame in raster order
  (:class:`hwseg.hw.window.SlidingWindow`); window ``(oy, ox)`` completes at padded position
  ``(oy·sh + (kh−1)·dh, ox·sw + (kw−1)·dw)``, so it needs every in-frame pixel up to that position;
* a transposed convolution or an upsampler waits for the input rows its output row reads
  (:func:`transposed_inputs_needed`, :func:`upsample_inputs_needed`);
* every other supported layer (pointwise convolution, MulShift, Threshold, ArgMax, Add, Concat)
  emits pixel ``j`` once it has input pixel ``j``: ``j + 1``.

Composing these along the graph gives, for every node, the pixels of the *network input* its
output ``j`` waits for (:func:`input_pixels_needed`); with each path's pipeline latency
(:func:`dataflow`) the skip-FIFO pass sizes the FIFOs on the inputs of joins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, Threshold,
                  Upsample)
from .cycles import layer_cycles, layer_latency

__all__ = ["window_inputs_needed", "transposed_inputs_needed", "upsample_inputs_needed", "inputs_needed", "input_pixels_needed", "Dataflow", "dataflow"]


def window_inputs_needed(*, height: int, width: int, kernel, stride, padding, dilation) -> np.ndarray:
    """Input pixels a sliding window over a ``height × width`` frame needs before each window (int64,
    one entry per output pixel in raster order)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    last_row = np.arange(out_h, dtype=np.int64) * sh + (kh - 1) * dh     # padded coordinates
    last_col = np.arange(out_w, dtype=np.int64) * sw + (kw - 1) * dw
    rows_before = np.clip(last_row - ph, 0, height)
    in_frame = (last_row >= ph) & (last_row < ph + height)
    cols = np.clip(last_col - pw + 1, 0, width)
    return (rows_before[:, None] * width + np.where(in_frame[:, None], cols[None, :], 0)).ravel()


def _raster_max(counts: np.ndarray, total: int) -> np.ndarray:
    """Output pixels leave in raster order: each waits for what any earlier one waited for; the
    frame's last waits for the whole frame."""
    need = np.maximum.accumulate(counts.ravel())
    need[-1] = total
    return need


def transposed_inputs_needed(*, height: int, width: int, kernel, stride, padding, output_padding) -> np.ndarray:
    """:class:`~hwseg.hw.transposed.ConvTranspose2dLayer`: output ``(oy, ox)`` reads input rows up to
    its anchor ``qy = (oy + ph) div sh`` (columns likewise), so it waits for input pixel
    ``(min(qy, H − 1), min(qx, W − 1))``."""
    (kh, kw), (sh, sw), (ph, pw), (oph, opw) = kernel, stride, padding, output_padding
    out_h, out_w = (height - 1) * sh - 2 * ph + kh + oph, (width - 1) * sw - 2 * pw + kw + opw
    qy = np.minimum((np.arange(out_h) + ph) // sh, height - 1)
    qx = np.minimum((np.arange(out_w) + pw) // sw, width - 1)
    return _raster_max(qy[:, None] * width + qx[None, :] + 1, height * width)


def _bilinear_low(size: int, factor: int) -> np.ndarray:
    """torch ``align_corners=False``: the lower source sample of each output along one axis."""
    source = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
    return np.minimum(np.floor(source).astype(np.int64), size - 1)


def upsample_inputs_needed(*, height: int, width: int, factor, mode: str) -> np.ndarray:
    """:class:`~hwseg.hw.upsample.UpsampleLayer`. Nearest: output ``(y, x)`` reads input
    ``(y div fh, x div fw)``. Bilinear: the output step of ``(y, x)`` with lower column ``k`` reads
    the next *target* — ``(y, k + 1)``, or ``(y + 1, 0)`` after a row's last column — and target
    ``(y, c)`` needs input row ``i1(y) = min(i0(y) + 1, H − 1)`` (``i0(y)`` when ``fh = 1``) up to column ``c``."""
    fh, fw = factor
    out_h, out_w = height * fh, width * fw
    if mode == "nearest":
        rows, cols = np.arange(out_h) // fh, np.arange(out_w) // fw
        return _raster_max(rows[:, None] * width + cols[None, :] + 1, height * width)
    # a factor-1 axis is the identity: its second sample has weight 0 and is never read
    upper = np.minimum(_bilinear_low(height, fh) + (fh > 1), height - 1)
    low_col = _bilinear_low(width, fw)
    y = np.repeat(np.arange(out_h), out_w).reshape(out_h, out_w)
    k = np.broadcast_to(low_col, (out_h, out_w))
    wraps = k == width - 1
    target_row = np.where(wraps, np.minimum(y + 1, out_h - 1), y)
    target_col = np.where(wraps, np.where(y + 1 < out_h, 0, width - 1), k + 1)
    counts = upper[target_row] * width + target_col + 1
    return _raster_max(counts, height * width)


def _is_window(op) -> bool:
    if isinstance(op, (MaxPool, AvgPool)):
        return True
    return isinstance(op, Conv2d) and not (op.kernel == (1, 1) and op.stride == (1, 1) and op.padding == (0, 0))


def inputs_needed(graph: Graph, node) -> np.ndarray:
    """Input pixels ``node`` needs before each of its output pixels (see the module docstring)."""
    op, out = node.op, graph.types[node.name]
    if _is_window(op):
        x = graph.input_types(node.name)[0]
        dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
        return window_inputs_needed(height=x.height, width=x.width, kernel=op.kernel, stride=op.stride,
                                    padding=op.padding, dilation=dilation)
    if isinstance(op, ConvTranspose2d):
        x = graph.input_types(node.name)[0]
        return transposed_inputs_needed(height=x.height, width=x.width, kernel=op.kernel, stride=op.stride,
                                        padding=op.padding, output_padding=op.output_padding)
    if isinstance(op, Upsample):
        x = graph.input_types(node.name)[0]
        return upsample_inputs_needed(height=x.height, width=x.width, factor=op.factor, mode=op.mode)
    if isinstance(op, (Conv2d, MulShift, Threshold, ArgMax, Add, Concat, Fork)):
        return np.arange(1, out.pixels + 1, dtype=np.int64)
    raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no dataflow model")


def input_pixels_needed(graph: Graph, source: str | None = None) -> dict[str, np.ndarray]:
    """For every node downstream of ``source`` (default: the network input): the pixels of
    ``source``'s stream its output pixel ``j`` waits for (int64 per pixel)."""
    source = source or next(n.name for n in graph if isinstance(n.op, Input))
    needed: dict[str, np.ndarray] = {source: np.arange(1, graph.types[source].pixels + 1, dtype=np.int64)}
    for node in graph:
        if node.name in needed or not node.inputs or any(name not in needed for name in node.inputs):
            continue
        own = inputs_needed(graph, node)
        per_input = []
        for name in node.inputs:
            upstream = needed[name]
            per_input.append(np.where(own > 0, upstream[np.maximum(own - 1, 0)], 0))
        needed[node.name] = np.max(per_input, axis=0)
    return needed


@dataclass(frozen=True)
class Dataflow:
    """What the skip-FIFO pass needs to know of a graph prepared for hardware.

    ``needed[n][j]``: network-input pixels node ``n``'s output pixel ``j`` waits for;
    ``needed_from(f)``: the same in pixels of node ``f``'s stream, for the nodes ``f`` dominates;
    ``latency[n]``: cycles along the slowest path from the network input to ``n``'s output
    (:func:`~hwseg.estimate.cycles.layer_latency` summed); ``period[n]``: cycles per frame of the
    slowest layer up to and including ``n`` — ``n``'s stream never runs faster than a frame per
    ``period[n]`` cycles.
    """

    needed: dict
    latency: dict
    period: dict
    graph: Graph

    def needed_from(self, source: str) -> dict:
        return input_pixels_needed(self.graph, source)

    def stalls(self, capacity: dict, frames: int = 2) -> list[tuple[str, int]]:
        """Run ``frames`` frames through the graph as pixel counts and return the edges that are
        full when it stops short: ``[]`` when every frame comes out.

        A conservative abstraction of the hardware: edge ``(node, k)`` (input ``k`` of ``node``)
        holds ``capacity[(node, k)]`` pixels the producer emitted and the consumer has not taken
        (its FIFO and the producer's output register); a node takes on each input only what its
        next output pixel waits for (:func:`inputs_needed`) and emits a pixel once it has that
        and every edge it feeds has room (a fork moves only when all its readers can take).
        """
        graph = self.graph
        own = {node.name: inputs_needed(graph, node) for node in graph if node.inputs}
        frame_in = {node.name: [graph.types[name].pixels for name in node.inputs] for node in graph}
        readers: dict[str, list] = {node.name: [] for node in graph}
        for node in graph:
            for k, name in enumerate(node.inputs):
                readers[name].append((node.name, k))
        total = {node.name: frames * graph.types[node.name].pixels for node in graph}
        produced = {node.name: 0 for node in graph}
        taken = {(node.name, k): 0 for node in graph for k in range(len(node.inputs))}

        def need(name, k, j):      # input pixels (edge k) output j of a multi-frame stream waits for
            per_frame = own[name]
            frame, index = divmod(j, per_frame.shape[0])
            return int(per_frame[index]) + frame * frame_in[name][k]

        def outputs_enabled(name, k, count):   # outputs whose need on edge k is within count
            per_frame, p_in = own[name], frame_in[name][k]
            frame, rest = divmod(count, p_in)
            return frame * per_frame.shape[0] + int(np.searchsorted(per_frame, rest, side="right"))

        progress = True
        while progress:
            progress = False
            for node in graph:
                name = node.name
                if node.inputs:
                    for k, src in enumerate(node.inputs):
                        wanted = need(name, k, produced[name]) if produced[name] < total[name] else taken[(name, k)]
                        have = min(produced[src], max(wanted, taken[(name, k)]))
                        if have > taken[(name, k)]:
                            taken[(name, k)] = have
                            progress = True
                    limit = min(outputs_enabled(name, k, taken[(name, k)]) for k in range(len(node.inputs)))
                else:
                    limit = total[name]
                room = min((taken[edge] + capacity.get(edge, 1) for edge in readers[name]), default=total[name])
                new = min(limit, room, total[name])
                if new > produced[name]:
                    produced[name] = new
                    progress = True
        if produced[graph.output] >= total[graph.output]:
            return []
        return [edge for name in produced for edge in readers[name]
                if produced[name] - taken[edge] >= capacity.get(edge, 1)]


def dataflow(graph: Graph) -> Dataflow:
    latency: dict[str, int] = {}
    period: dict[str, int] = {}
    for node in graph:
        latency[node.name] = max((latency[name] for name in node.inputs), default=0) + layer_latency(graph, node)
        period[node.name] = max([layer_cycles(graph, node)] + [period[name] for name in node.inputs])
    return Dataflow(input_pixels_needed(graph), latency, period, graph)

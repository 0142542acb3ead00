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
output ``j`` waits for (:func:`input_pixels_needed`).

Two models of a graph prepared for hardware build on these, for the FIFO pass
(:mod:`hwseg.passes.size_skip_fifos`):

* :class:`PixelCounts`, the graph as pixel counts (no time): does it deadlock with given FIFO
  capacities, and what is the least capacity of one FIFO that keeps it moving? Solved exactly
  by eliminating variables, in milliseconds (no step-by-step simulation);
* :class:`StreamTiming`, the cycle of every pixel of every stream over a few frames, from each
  block's documented timing (sliding-window walker, MAC folds, pipeline latencies, lane
  converters, FIFO latency), computed with NumPy recurrences: the earliest schedule, the latest
  one that still meets it, and the FIFO occupancy of a full-rate schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

import numpy as np

from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, Threshold,
                  Upsample, RowTaps)
from .offchip import row_taps_of
from .cycles import (_phase_taps, folded_window_geometry, folded_window_steps, layer_cycles, layer_latency,
                     transposed_buffer_rows, upsample_buffer_rows, window_geometry)

__all__ = ["window_inputs_needed", "transposed_inputs_needed", "upsample_inputs_needed", "inputs_needed",
           "input_pixels_needed", "PixelCounts", "StreamTiming", "Dataflow", "dataflow"]


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
    if isinstance(op, RowTaps):
        # its newest tap's pixel, read back once the burst holding it is written
        x = graph.input_types(node.name)[0]
        needed = window_inputs_needed(height=x.height, width=x.width, kernel=(op.taps, 1), stride=(op.stride, 1),
                                      padding=(op.padding, 0), dilation=(op.dilation, 1))
        geometry, burst = row_taps_of(graph, node), node.attrs["memory"]["burst"]
        words = geometry.words_per_beat
        column = (needed - 1) % x.width
        burst_end = np.minimum(((column + 1) * words - 1) // burst * burst + burst, geometry.row_words)
        return needed - 1 - column + np.minimum(-(-burst_end // words), x.width)
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


#: An edge of the graph: input ``k`` of node ``consumer``, fed by node ``producer``.
Edge = tuple  # (consumer, k, producer)


def _edges(graph: Graph) -> list:
    return [(node.name, k, source) for node in graph for k, source in enumerate(node.inputs)]


def _is_join(op) -> bool:
    return isinstance(op, (Add, Concat))


class PixelCounts:
    """The graph as pixel counts over ``frames`` frames: when does it deadlock?

    Node ``n`` has emitted ``p_n`` pixels (of ``T_n``, ``frames`` frames). Edge ``e`` from ``s`` to
    input ``k`` of ``r`` holds ``capacity[(r, k)]`` pixels that ``s`` emitted and ``r`` has not taken
    (its FIFO and ``s``'s output register). ``r`` takes on each input only what its next output
    waits for (:func:`inputs_needed`), a join (Add, Concat) its inputs' pixel ``j`` as it emits its
    own; a node emits once it has that and every edge it feeds has room (a fork moves only when
    all its readers can take). That is, with ``N_e(y)`` the pixels output ``y`` of ``r`` waits for
    and ``E_e(x)`` the outputs ``x`` pixels of ``s`` let ``r`` emit::

        p_r ≤ E_e(p_s)          (data)        p_s ≤ N_e(p_r) + capacity_e      (room)

    The graph runs as far as the least solution of these bounds (every node at ``T_n``: every
    frame comes out). Each bound is a monotone function of one other node's count, held as an
    array, so nodes are eliminated one by one (Bekić): the bounds through ``m`` compose into
    bounds between its neighbours, a bound of a node on itself becomes the constant
    ``min{x : f(x) ≤ x}``; a constant below ``T_n`` is a deadlock. Exact for this abstraction and
    fast (array compositions, no simulation); :meth:`least_capacity` keeps the two ends of one
    edge and solves for its capacity. A deadlock closes a cycle of the undirected graph, so only
    the edges of the edge's biconnected component take part.
    """

    def __init__(self, graph: Graph, frames: int = 2):
        self.graph, self.frames = graph, frames
        self.total = {node.name: frames * graph.types[node.name].pixels for node in graph}
        self.edges = _edges(graph)
        self.need, self.enabled = {}, {}
        for node in graph:
            if not node.inputs:
                continue
            own = inputs_needed(graph, node)
            for k, source in enumerate(node.inputs):
                per_frame = graph.types[source].pixels
                need = (own[None, :] + per_frame * np.arange(frames)[:, None]).ravel()
                edge = (node.name, k, source)
                self.enabled[edge] = np.cumsum(np.bincount(need, minlength=self.total[source] + 1))
                # pixels of s held back by r when it has emitted y (a join takes pixel y with output y)
                self.need[edge] = np.append(need, self.total[source]) - _is_join(node.op)
        self._component = _biconnected_components(graph, self.edges)
        self._rooms: dict = {}

    def flows(self, capacity: dict) -> bool:
        """Do all frames come out with these capacities (pixels per edge ``(consumer, k)``)?"""
        return self._eliminate(self._bounds(capacity, self.edges)) is not None

    def least_capacity(self, edge: Edge, capacity: dict) -> int | None:
        """The least capacity of ``edge`` (pixels, at least 1) with which every frame comes out, the
        other edges holding ``capacity``; ``None`` when no capacity of this edge alone suffices."""
        return self.least_capacities([edge], capacity)[edge]

    def least_capacities(self, edges: list, capacity: dict) -> dict:
        """:meth:`least_capacity` of each of ``edges``. The rest of each biconnected component is
        eliminated once, down to the ends of these edges, then each edge's own ends are solved."""
        found = {}
        for component in sorted({self._component[edge] for edge in edges}):
            asked = [edge for edge in edges if self._component[edge] == component]
            part = [edge for edge in self.edges if self._component[edge] == component]
            ends = {name for consumer, _, producer in asked for name in (consumer, producer)}
            skeleton = self._eliminate(self._bounds(capacity, part, without=set(asked)), keep=ends)
            for edge in asked:
                found[edge] = None if skeleton is None else self._solve(edge, skeleton, asked, capacity)
        return found

    def _solve(self, edge: Edge, skeleton, asked: list, capacity: dict) -> int | None:
        consumer, _, producer = edge
        arcs = {name: dict(bounds) for name, bounds in skeleton[0].items()}
        for other in asked:
            if other != edge:
                _tighten(arcs[other[2]], other[0], self._room(other, capacity))
        solved = self._eliminate(arcs, keep=(consumer, producer), const=skeleton[1])
        if solved is None:
            return None
        arcs, const = solved
        if const[consumer] < self.total[consumer] or const[producer] < self.total[producer]:
            return None
        data = arcs[consumer][producer]                      # consumer bounded by producer
        room = arcs[producer].get(consumer)                  # producer bounded by consumer, other paths
        outputs = np.arange(self.total[consumer])
        if room is not None and (data[room[outputs]] <= outputs).any():
            return None
        # y outputs of the consumer need the producer past `first[y]` pixels, which the edge must hold
        first = np.searchsorted(data, outputs, side="right")
        return max(1, int((first - self.need[edge][:-1]).max()))

    def _room(self, edge: Edge, capacity: dict) -> np.ndarray:
        consumer, k, producer = edge
        key = (edge, capacity[(consumer, k)])
        if key not in self._rooms:
            self._rooms[key] = np.minimum(self.need[edge] + capacity[(consumer, k)], self.total[producer])
        return self._rooms[key]

    def _bounds(self, capacity: dict, edges: list, without=()) -> dict:
        arcs = {}
        for edge in edges:
            consumer, _, producer = edge
            _tighten(arcs.setdefault(consumer, {}), producer, self.enabled[edge])
            arcs.setdefault(producer, {})
            if edge not in without:
                _tighten(arcs[producer], consumer, self._room(edge, capacity))
        return arcs

    def _eliminate(self, arcs: dict, keep=(), const: dict | None = None):
        """Eliminate every node but ``keep``: ``(arcs among keep, constants)``, or ``None`` on a deadlock."""
        total = self.total
        const = {name: (const or total)[name] for name in arcs}
        bounded_by = {name: set() for name in arcs}          # m -> nodes with a bound through m
        for name, bounds in arcs.items():
            for other in bounds:
                bounded_by[other].add(name)
        remaining = set(arcs) - set(keep)
        while remaining:
            m = min(remaining, key=lambda name: (len(arcs[name].keys() | bounded_by[name]), name))
            remaining.discard(m)
            through = arcs.pop(m)
            if m in through:
                const[m] = min(const[m], _least_fixpoint(through.pop(m)))
            if const[m] < total[m]:
                return None
            for u in bounded_by.pop(m) - {m}:
                via = arcs[u].pop(m)
                const[u] = min(const[u], int(via[const[m]]))
                for w, bound in through.items():
                    composed = via[bound]
                    if w == u:
                        const[u] = min(const[u], _least_fixpoint(composed))
                    else:
                        bounded_by[w].add(u)
                        _tighten(arcs[u], w, composed)
                if const[u] < total[u]:
                    return None
            for w in through:
                bounded_by[w].discard(m)
        return arcs, const


def _tighten(bounds: dict, other: str, bound: np.ndarray) -> None:
    old = bounds.get(other)
    bounds[other] = bound if old is None else np.minimum(old, bound)


def _least_fixpoint(bound: np.ndarray) -> int:
    """``min{x : bound[x] ≤ x}``: where a node bounded by itself stops (its last entry is the total)."""
    return int(np.argmax(bound <= np.arange(bound.shape[0])))


def _biconnected_components(graph: Graph, edges: list) -> dict:
    """Edge → index of its biconnected component in the undirected multigraph (Tarjan, iterative)."""
    adjacent: dict[str, list] = {node.name: [] for node in graph}
    for edge in edges:
        consumer, _, producer = edge
        adjacent[consumer].append((producer, edge))
        adjacent[producer].append((consumer, edge))
    order, low, component = {}, {}, {}
    stack, count = [], 0
    for root in adjacent:
        if root in order:
            continue
        order[root] = low[root] = len(order)
        walk = [(root, None, iter(adjacent[root]))]
        while walk:
            node, via, neighbours = walk[-1]
            for other, edge in neighbours:
                if edge == via:
                    continue
                if other not in order:
                    stack.append(edge)
                    order[other] = low[other] = len(order)
                    walk.append((other, edge, iter(adjacent[other])))
                    break
                if order[other] < order[node]:
                    stack.append(edge)
                    low[node] = min(low[node], order[other])
            else:
                walk.pop()
                if walk:
                    parent = walk[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] >= order[parent]:
                        while True:
                            edge = stack.pop()
                            component[edge] = count
                            if edge == via:
                                break
                        count += 1
    return component


#: A time no event reaches (cycles): the deadline of what nothing waits for.
NEVER = np.int64(1) << 50


def _earliest(base: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x[j] = max(x[j−1] + step[j], base[j])``: events in order, each ``step`` after the previous
    one at the earliest; ``offset`` holds the running sums of the steps (:func:`_offsets`)."""
    return offset + np.maximum.accumulate(base - offset)


def _latest(deadline: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``y[j] = min(y[j+1] − step[j+1], deadline[j])``: the same chain of events, each as late as the
    deadlines of it and of every later event allow."""
    return offset + np.minimum.accumulate((deadline - offset)[::-1])[::-1]


def _offsets(count: int, step) -> np.ndarray:
    """Running sums of the steps between events (``step`` a number, or an array whose entry 0 is unused)."""
    if np.isscalar(step):
        return np.arange(count, dtype=np.int64) * int(step)
    return np.concatenate([[0], np.cumsum(step[1:], dtype=np.int64)])


class StreamTiming:
    """The cycle at which every pixel of every stream moves, over ``frames`` frames.

    Per block (its documented timing, ``hwseg/hw``), for a pixel (its last beat):

    * sliding window + MAC array / window max / window mean: the walker pushes one padded position
      per cycle, an in-frame one once its pixel is there; window ``i`` (at position ``p_i``) is
      taken ``max(1 cycle after its push, F = NF·SF after window i−1)`` and the next push waits for
      it; the output leaves ``NF·SF + 3`` (MAC), 1 (max) or ``⌊n/2⌋ + 1`` (mean) cycles later;
    * 1×1 convolution: a pixel every ``NF·SF`` cycles, out ``NF·SF + 3`` cycles after it is taken;
    * transposed convolution, upsampler: output pixels step by step (``NF·SF·Ty'·Tx'`` folds, or
      one cycle), each once the input it needs has been taken, out 3 (1 nearest) cycles after its
      last fold; input rows are taken as the ring of ``R`` rows frees;
    * requantizer, threshold, add, argmax, channelwise conv, concat: a beat per cycle after a
      pipeline of 2, ``2 + ⌈log2(n+1)⌉``, 1, 1, 1, 0 cycles;
    * on an edge, a lane converter (1 cycle, a beat per cycle on its narrow side) and a FIFO (2
      cycles when empty).

    :meth:`forward` gives the earliest schedule from given input times with every FIFO deep enough
    (checked against the hardware: cycle-exact on the FPL-style network), :meth:`backward` the
    latest one that still meets given output times, :meth:`full_rate` a schedule at the rate of
    the slowest layer and :meth:`occupancy` the pixels an edge then holds.

    ``fifos``: the edges ``(consumer, k)`` with a FIFO (default: as the graph's attributes say).
    """

    def __init__(self, graph: Graph, frames: int = 3, fifos: set | None = None):
        self.graph, self.frames = graph, frames
        self.pixels = {node.name: graph.types[node.name].pixels for node in graph}
        self.readers: dict[str, list] = {node.name: [] for node in graph}
        for node in graph:
            for k, source in enumerate(node.inputs):
                self.readers[source].append((node.name, k))
        self._ramps: dict = {}
        self._walks: dict = {}
        self.kind = {node.name: self._block(node) for node in graph}
        if fifos is None:
            fifos = {(node.name, k) for node in graph for k, depth in enumerate(_fifo_depths(node)) if depth}
        self.set_fifos(fifos)

    def set_fifos(self, fifos: set) -> None:
        """Which edges ``(consumer, k)`` have a FIFO (it adds 2 cycles of latency)."""
        self.fifos = set(fifos)
        self.edge = {(node.name, k): self._edge(node, k) for node in self.graph for k in range(len(node.inputs))}

    def _ramp(self, count: int, step: int) -> np.ndarray:
        """:func:`_offsets` of a constant step, cached."""
        if (count, step) not in self._ramps:
            self._ramps[(count, step)] = _offsets(count, step)
        return self._ramps[(count, step)]

    # -- the blocks ---------------------------------------------------------------------------

    def _block(self, node):
        graph, op, out = self.graph, node.op, self.graph.types[node.name]
        if isinstance(op, Input):
            return ("input",)
        if isinstance(op, Fork):
            return ("pointwise", 0, 0)
        if isinstance(op, Conv2d) and op.channelwise:
            return ("pointwise", out.channels // node.attrs["in_lanes"], 1)
        if isinstance(op, ArgMax):
            return ("pointwise", 1, 1)
        if isinstance(op, (MulShift, Threshold)):
            latency = 2 if isinstance(op, MulShift) else 2 + ceil(log2(op.thresholds.shape[1] + 1))
            return ("pointwise", out.channels // node.attrs["in_lanes"], latency)
        if isinstance(op, Add):
            return ("pointwise", out.channels // node.attrs["in_lanes"], 1)
        if isinstance(op, Concat):
            return ("pointwise", 1, 0)
        x = graph.input_types(node.name)[0]
        if isinstance(op, Conv2d):
            folds = (op.out_channels // node.attrs["pe"]) * (op.kernel[0] * op.kernel[1] * x.channels // node.attrs["simd"])
            if node.attrs.get("window") == "folded":     # (a pointwise one's too: a 1×1 window)
                return ("window", folds + 3, self._folded_walk(node, x.channels // node.attrs["simd"], folds))
            if not _is_window(op):
                return ("vector", folds, folds + 3)
            return ("window", folds + 3, self._walk(x, op.kernel, op.stride, op.padding, op.dilation, folds))
        if isinstance(op, MaxPool):
            return ("window", 1, self._walk(x, op.kernel, op.stride, op.padding, (1, 1), 1))
        if isinstance(op, AvgPool):
            return ("window", op.shift // 2 + 1, self._walk(x, op.kernel, op.stride, op.padding, (1, 1), 1))
        if isinstance(op, ConvTranspose2d):
            nf, sf = op.out_channels // node.attrs["pe"], x.channels // node.attrs["simd"]
            rows, cols = (np.array(_phase_taps(k, s))[(np.arange(n) + p) % s] for k, s, n, p in
                          zip(op.kernel, op.stride, (out.height, out.width), op.padding))
            steps = np.tile((nf * sf * rows[:, None] * cols[None, :]).ravel(), self.frames)
            ring = transposed_buffer_rows(height=x.height, out_height=out.height, kernel=op.kernel[0],
                                          stride=op.stride[0], padding=op.padding[0])
            return ("stepper", 3, self._steps(node, steps, ring * x.width))
        if isinstance(op, Upsample):
            steps = np.ones(self.frames * out.pixels, dtype=np.int64)
            ring = upsample_buffer_rows(height=x.height, width=x.width, factor=op.factor, mode=op.mode)
            # bilinear: each frame starts with an extra step (after the previous frame's last)
            return ("stepper", 1 if op.mode == "nearest" else 3,
                    self._steps(node, steps, ring * x.width, out.pixels if op.mode == "bilinear" else 0))
        if isinstance(op, RowTaps):
            geometry, memory = row_taps_of(self.graph, node), node.attrs["memory"]
            # out a round trip after the data is taken: the write's response, then the read
            latency = 2 * memory.get("latency", 0) + 4
            return ("stepper", latency, self._steps(node, self._row_taps_steps(node), geometry.ring_rows * x.width))
        raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no timing model")

    def _row_taps_steps(self, node) -> np.ndarray:
        """A DramRowTaps' output pixels as steps: each pixel of row time ``t`` takes its share of
        ``row_time_cycles(t)`` (the intake runs on its own, as far as the ring allows)."""
        geometry = row_taps_of(self.graph, node)
        rows = [geometry.row_time_cycles(t) // geometry.width for t in range(geometry.frame_rows)
                if geometry.output_row(t) is not None]
        return np.tile(np.repeat(np.array(rows, dtype=np.int64), geometry.width), self.frames)

    def _steps(self, node, steps: np.ndarray, ring: int, frame_start_step: int = 0) -> dict:
        """A stepper's index arrays: its steps' cycles, the input each waits for, the step that frees
        the ring slot of each input pixel (and an extra cycle before each frame's first pixel
        every ``frame_start_step`` pixels)."""
        per_frame = self.graph.input_types(node.name)[0].pixels
        needs = (inputs_needed(self.graph, node)[None, :] + per_frame * np.arange(self.frames)[:, None]).ravel()
        pixels = np.arange(self.frames * per_frame)
        after = np.concatenate([[0], steps[:-1]])
        if frame_start_step:
            after[frame_start_step::frame_start_step] += 1
        return {"steps": steps, "offset": _offsets(steps.shape[0], after), "needs": needs, "ring": ring,
                "freed_by": np.minimum(np.searchsorted(needs, pixels - ring + 1, side="left"), needs.shape[0] - 1),
                "first": np.searchsorted(needs, pixels + 1, side="left")}

    def _walk(self, x, kernel, stride, padding, dilation, folds: int) -> dict:
        """A sliding window's index arrays over the frames: the padded position of each in-frame pixel
        and of each window, the window each pixel leads to (``segment``), the running sums of the
        cycles from one window to the next (``max(gap, F)``). Layers of one shape share them."""
        walk = dict(self._geometry(x, kernel, stride, padding, dilation))
        walk["offset"] = _offsets(walk["windows"].shape[0], np.maximum(walk["gap"], folds))
        return walk

    def _geometry(self, x, kernel, stride, padding, dilation) -> dict:
        """:meth:`_walk_geometry`, cached: layers of one shape share it."""
        key = (x.height, x.width, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))
        if key not in self._walks:
            self._walks[key] = self._walk_geometry(x, kernel, stride, padding, dilation)
        return self._walks[key]

    def _folded_walk(self, node, beats: int, folds: int) -> dict:
        """A folded window's index arrays (:class:`hwseg.hw.folded_window.FoldedWindow`): the walk's
        geometry with ``scale = CB`` cycles per padded position, the windows' steps at full rate
        (:func:`.cycles.folded_window_steps`), and for each in-frame pixel the window whose last read lets
        the writer reach it (``released``, −1: none; the writer stays at most ``slack`` positions past the
        window being read) and the first position that waited for that read (``release_position``)."""
        op = node.op
        walk = dict(self._geometry(self.graph.input_types(node.name)[0], op.kernel, op.stride, op.padding,
                                   op.dilation))
        geometry = window_geometry(self.graph, node)
        slack = folded_window_geometry(**geometry)["slack"]
        steps = folded_window_steps(**geometry, beats_per_pixel=beats, cycles_per_window=folds, slack=slack,
                                    frames=self.frames)
        windows = walk["windows"]
        released = np.searchsorted(windows + slack, walk["pixels"], side="left") - 1
        walk.update(scale=beats, folds=folds, offset=_offsets(windows.shape[0], steps), released=released,
                    release_position=np.where(released >= 0, windows[np.maximum(released, 0)] + slack + 1, 0))
        return walk

    def _walk_geometry(self, x, kernel, stride, padding, dilation) -> dict:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        padded_h, padded_w = x.height + 2 * ph, x.width + 2 * pw
        positions = padded_h * padded_w
        py, px = np.divmod(np.arange(positions), padded_w)
        inside = (py >= ph) & (py < ph + x.height) & (px >= pw) & (px < pw + x.width)
        y0, x0 = dh * (kh - 1), dw * (kw - 1)
        window = (py >= y0) & ((py - y0) % sh == 0) & (px >= x0) & ((px - x0) % sw == 0)
        per_frame = int(window.sum())
        # the windows before each position: the index of the window its pixel leads to
        ahead = per_frame - np.cumsum(window[::-1])[::-1]
        frames = np.arange(self.frames)[:, None]
        pixels = (np.flatnonzero(inside)[None, :] + positions * frames).ravel()
        windows = (np.flatnonzero(window)[None, :] + positions * frames).ravel()
        segment = (ahead[inside][None, :] + per_frame * frames).ravel()
        starts = np.flatnonzero(np.diff(segment, prepend=-1))
        led = segment < windows.shape[0]
        return {"pixels": pixels, "windows": windows, "segment": segment, "starts": starts,
                "start_segments": segment[starts], "gap": np.diff(windows, prepend=-1),
                "walk": pixels - np.concatenate([[-1], windows])[segment] - 1, "led": led,
                "to_window": windows[segment[led]] - pixels[led], "spread": segment.astype(np.int64) << 40}

    def _edge(self, node, k):
        """``(cycles per pixel, lane converter latency, FIFO latency)`` between input ``k``'s producer
        and ``node``: a converter where the lanes differ (the stitcher's), a FIFO where asked."""
        source = node.inputs[k]
        channels = self.graph.types[source].channels
        out_lanes = self.graph[source].attrs.get("out_lanes", channels)
        in_lanes = channels if isinstance(node.op, Concat) else node.attrs.get("in_lanes", channels)
        step, converter = 1, 0
        if in_lanes != out_lanes:
            step = channels // min(in_lanes, out_lanes)
            # gathering: the wide beat leaves a cycle after the last piece; splitting: the last piece
            # leaves `step` cycles after the wide beat came in
            converter = 1 if in_lanes > out_lanes else channels // in_lanes
        return step, converter, 2 if (node.name, k) in self.fifos else 0

    # -- schedules ----------------------------------------------------------------------------

    def forward(self, input_times: np.ndarray, hold: dict | None = None, takes: bool = True):
        """The earliest schedule with the input's pixels at ``input_times`` and no node emitting
        pixel ``j`` before ``hold[node][j]``: ``emitted[node]``, and ``arrived``, ``taken`` per edge
        (``takes=False``: only the emissions)."""
        hold = hold or {}
        emitted, arrived, taken = {}, {}, {}
        for node in self.graph:
            name, kind = node.name, self.kind[node.name]
            if kind[0] == "input":
                emitted[name] = np.maximum(input_times, hold[name]) if name in hold else input_times
                continue
            inputs = []
            for k, source in enumerate(node.inputs):
                _, arrived[(name, k)] = self._arrival(name, k, emitted[source])
                inputs.append(arrived[(name, k)])
            out, took = self._forward_block(node, kind, inputs, takes)
            if name in hold:
                out = np.maximum.accumulate(np.maximum(out, hold[name]))
            emitted[name] = out
            for k, t in enumerate(took):
                taken[(name, k)] = t
        return emitted, arrived, taken

    def _arrival(self, name: str, k: int, emitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """When input ``k`` of ``name`` gets each pixel its producer emits at ``emitted``: after the lane
        converter (no faster than its beats allow), and then after the edge's FIFO."""
        step, converter, fifo = self.edge[(name, k)]
        a = emitted + converter
        if step > 1:
            a = _earliest(a, self._ramp(a.shape[0], step))
        return a, a + fifo

    def _forward_block(self, node, kind, inputs, takes=True):
        if kind[0] == "pointwise":
            _, beats, latency = kind
            base = (np.max(inputs, axis=0) if len(inputs) > 1 else inputs[0]) + latency
            out = _earliest(base, self._ramp(base.shape[0], beats))
            return out, [np.maximum(out - latency, a) for a in inputs] if takes else []
        arrive = inputs[0]
        if kind[0] == "vector":
            _, folds, latency = kind
            take = _earliest(arrive, self._ramp(arrive.shape[0], folds))
            return take + latency, [take]
        if kind[0] == "window":
            _, latency, walk = kind
            pixels, windows, segment = walk["pixels"], walk["windows"], walk["segment"]
            scale = walk.get("scale", 1)                   # cycles per padded position
            count = windows.shape[0]
            # the walker reaches window i from pixel q (there at a_q) scale·(p_i − pos_q) cycles later
            lead = arrive - scale * pixels
            ready = np.zeros(count + 1, dtype=np.int64)
            ready[walk["start_segments"]] = np.maximum(np.maximum.reduceat(lead, walk["starts"]), 0)
            leave = _earliest(ready[:count] + scale * windows + 1, walk["offset"])
            if not takes:
                return leave + latency, []
            if "released" in walk:
                # a folded window's writer reaches pixel q once the reader has moved on to the window that
                # lets it (the cycle after the last read of the one before), then CB cycles per position
                released = walk["released"]
                after = np.where(released >= 0, leave[np.maximum(released, 0)] + walk["folds"] + scale - 1
                                 + scale * (pixels - walk["release_position"]), -NEVER)
                return leave + latency, [np.maximum.accumulate(np.maximum(arrive, after) - scale * pixels)
                                         + scale * pixels]
            # an in-frame position is pushed once the previous window has left and its pixel is there
            after = np.concatenate([[0], leave])[segment] + walk["walk"]
            pushed = np.maximum.accumulate(lead + walk["spread"]) - walk["spread"] + pixels
            return leave + latency, [np.maximum(after, pushed)]
        _, latency, plan = kind                                            # stepper
        steps = plan["steps"]
        start = _earliest(arrive[plan["needs"] - 1] + 1, plan["offset"])
        # input pixel i enters the ring once no step still needs pixel i − ring
        ring = plan["ring"]
        freed = start[plan["freed_by"]]
        freed[:ring] = -NEVER
        take = _earliest(np.maximum(arrive, freed), self._ramp(arrive.shape[0], 1))
        return start + steps - 1 + latency, [take]

    def backward(self, due: np.ndarray) -> tuple[dict, dict]:
        """The latest schedule in which the output's pixels leave by ``due``: ``(emitted, taken)``
        deadlines of every node and edge (:data:`NEVER` for what nothing waits for)."""
        graph = self.graph
        emitted, taken = {}, {}
        for node in reversed(list(graph)):
            name, kind = node.name, self.kind[node.name]
            latest = due.copy() if name == graph.output else np.full(self.frames * self.pixels[name], NEVER)
            for reader, k in self.readers[name]:
                step, converter, fifo = self.edge[(reader, k)]
                t = taken[(reader, k)] - fifo
                if step > 1:
                    t = _latest(t, self._ramp(t.shape[0], step))
                latest = np.minimum(latest, t - converter)
            out, takes = self._backward_block(node, kind, latest)
            emitted[name] = out
            for k, t in enumerate(takes):
                taken[(name, k)] = t
        return emitted, taken

    def _backward_block(self, node, kind, latest):
        if kind[0] == "input":
            return _latest(latest, self._ramp(latest.shape[0], 1)), []
        if kind[0] == "pointwise":
            _, beats, latency = kind
            out = _latest(latest, self._ramp(latest.shape[0], beats))
            return out, [out - latency] * len(node.inputs)
        if kind[0] == "vector":
            _, folds, latency = kind
            take = _latest(latest - latency, self._ramp(latest.shape[0], folds))
            return take + latency, [take]
        if kind[0] == "window":
            _, latency, walk = kind
            leave = _latest(latest - latency, walk["offset"])
            led = walk["led"]
            take = np.full(led.shape[0], NEVER)
            take[led] = leave[walk["segment"][led]] - 1 - walk.get("scale", 1) * walk["to_window"]
            return leave + latency, [take]
        _, latency, plan = kind                                            # stepper
        steps, first = plan["steps"], plan["first"]
        start = _latest(latest - steps + 1 - latency, plan["offset"])
        needed = first < start.shape[0]
        take = np.full(first.shape[0], NEVER)
        take[needed] = start[first[needed]] - 1
        return start + steps - 1 + latency, [take]

    def full_rate(self, rounds: int = 20, lazy: bool = True):
        """A schedule at the rate of the slowest layer with as little waiting as it can: the output
        leaves as early as it can (the earliest schedule from an input always there), every layer
        works as late as that allows (:meth:`backward`), except where no FIFO decouples a reader
        from its producer (the network input's readers, a pool and its requantizer): such a reader
        takes each pixel as it comes and works as early as it then can, and its producer waits for
        it where it cannot keep up. ``(emitted, arrived, taken)``."""
        source = self.graph.input
        first, _, _ = self.forward(np.arange(self.frames * self.pixels[source], dtype=np.int64), takes=False)
        latest, latest_taken = self.backward(first[self.graph.output])
        hold: dict = {}
        for _ in range(rounds):
            if lazy:
                emitted, arrived, taken = self._settle(latest, latest_taken, hold)
            else:
                emitted, arrived, taken = self.forward(latest[source], hold)
            waited = False
            for (reader, k), (_, _, fifo) in self.edge.items():
                if fifo or _is_join(self.graph[reader].op):
                    continue
                producer = self.graph[reader].inputs[k]
                # without a FIFO the producer emits pixel j + 1 only once pixel j is taken
                late = taken[(reader, k)][:-1] > emitted[producer][1:]
                if late.any():
                    previous = hold.get(producer, np.full(emitted[producer].shape[0], -NEVER))
                    hold[producer] = np.maximum(previous, np.concatenate([[-NEVER], taken[(reader, k)][:-1]]))
                    waited = True
            if not waited:
                break
        return emitted, arrived, taken

    def _settle(self, latest: dict, latest_taken: dict, hold: dict):
        """The latest schedule, with every layer that a FIFO-less edge hands pixels faster than it
        would take them working as early as its inputs allow instead (and no node emitting pixel j
        before ``hold[node][j]``)."""
        emitted, arrived, taken = {}, {}, {}
        for node in self.graph:
            name, kind = node.name, self.kind[node.name]
            inputs, hurried = [], False
            for k, source in enumerate(node.inputs):
                a, arrived[(name, k)] = self._arrival(name, k, emitted[source])
                inputs.append(arrived[(name, k)])
                if not self.edge[(name, k)][2] and not _is_join(node.op):
                    # a producer's output register holds one pixel for it, no more
                    index = self._ramp(a.shape[0], 1)
                    hurried |= bool((np.searchsorted(a, latest_taken[(name, k)], side="right") - index > 1).any())
            if hurried:
                out, took = self._forward_block(node, kind, inputs)
            else:
                out, took = latest[name], [latest_taken[(name, k)] for k in range(len(node.inputs))]
            if name in hold:
                out = np.maximum.accumulate(np.maximum(out, hold[name]))
            emitted[name] = out
            for k, t in enumerate(took):
                taken[(name, k)] = t
        return emitted, arrived, taken

    def occupancy(self, schedule, edge: tuple) -> tuple[int, int, int]:
        """What the edge ``(consumer, k)`` holds in ``schedule``: ``(entries, waiting, slack)`` — the
        most pixels emitted and not yet taken (a FIFO's entries, those still crossing it included),
        the most that have reached the consumer and wait, the fewest cycles a pixel waits there."""
        _, arrived, taken = schedule
        arrive, take = arrived[edge], taken[edge]
        index = self._ramp(take.shape[0], 1)
        waiting = int(max(0, (np.searchsorted(arrive, take, side="right") - index).max()))
        entries = waiting
        if self.edge[edge][2]:
            entries = int(max(0, (np.searchsorted(arrive - self.edge[edge][2], take, side="right") - index).max()))
        return entries, waiting, int((take - arrive).min())

    def entries(self, schedule, edge: tuple) -> int:
        """The most pixels emitted on ``edge`` and not yet taken in ``schedule``."""
        _, arrived, taken = schedule
        take = taken[edge]
        held = np.searchsorted(arrived[edge] - self.edge[edge][2], take, side="right") - self._ramp(take.shape[0], 1)
        return int(max(0, held.max()))


def _fifo_depths(node) -> tuple:
    if "skip_fifos" in node.attrs:
        return tuple(node.attrs["skip_fifos"])
    return (node.attrs.get("fifo_depth", 0),) * len(node.inputs)


@dataclass(frozen=True)
class Dataflow:
    """What the FIFO pass needs to know of a graph prepared for hardware.

    ``needed[n][j]``: network-input pixels node ``n``'s output pixel ``j`` waits for;
    ``latency[n]``: cycles along the slowest path from the network input to ``n``'s output
    (:func:`~hwseg.estimate.cycles.layer_latency` summed); ``period[n]``: cycles per frame of the
    slowest layer up to and including ``n``; :meth:`counts` and :meth:`timing`: the two models.
    """

    needed: dict
    latency: dict
    period: dict
    graph: Graph

    def needed_from(self, source: str) -> dict:
        return input_pixels_needed(self.graph, source)

    def counts(self, graph: Graph | None = None, frames: int = 2) -> PixelCounts:
        return PixelCounts(graph or self.graph, frames)

    def timing(self, graph: Graph | None = None, frames: int = 3, fifos: set | None = None) -> StreamTiming:
        return StreamTiming(graph or self.graph, frames, fifos)


def dataflow(graph: Graph) -> Dataflow:
    latency: dict[str, int] = {}
    period: dict[str, int] = {}
    for node in graph:
        latency[node.name] = max((latency[name] for name in node.inputs), default=0) + layer_latency(graph, node)
        period[node.name] = max([layer_cycles(graph, node)] + [period[name] for name in node.inputs])
    return Dataflow(input_pixels_needed(graph), latency, period, graph)

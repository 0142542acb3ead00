"""The dataflow model (input each output waits for) vs the real SlidingWindow, and the skip-FIFO pass."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.estimate.dataflow import dataflow, transposed_inputs_needed, upsample_inputs_needed, window_inputs_needed
from hwseg.hw.transposed import ConvTranspose2dLayer
from hwseg.hw.upsample import UpsampleLayer
from hwseg.hw.window import SlidingWindow
from hwseg.ir import Add, Concat, Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt
from hwseg.passes import annotate_lanes, set_folding, size_fifos, size_skip_fifos
from hwseg.passes.size_skip_fifos import least_depth
from tests.hw.need_probe import needed_inputs, outputs_after_each_input
from tests.hw.streams import measure_full_rate

WINDOWS = [  # (height, width, kernel, stride, padding, dilation)
    (6, 7, (3, 3), (1, 1), (1, 1), (1, 1)),
    (7, 6, (3, 1), (1, 1), (2, 0), (2, 1)),
    (5, 9, (1, 3), (1, 1), (0, 4), (1, 4)),
    (8, 8, (3, 3), (2, 2), (1, 1), (1, 1)),
    (8, 9, (2, 2), (2, 2), (0, 0), (1, 1)),
    (9, 7, (5, 3), (1, 2), (2, 1), (1, 2)),
]


@pytest.mark.parametrize("height, width, kernel, stride, padding, dilation", WINDOWS)
def test_window_model_matches_the_hardware(height, width, kernel, stride, padding, dilation):
    """At full rate a window leaves the cycle after its last pixel: the inputs taken before each
    window's first valid cycle are exactly what the model says it waits for."""
    dut = SlidingWindow(elem_shape=unsigned(4), channels=1, height=height, width=width, kernel=kernel,
                        stride=stride, padding=padding, dilation=dilation)
    beats = [[v % 16] for v in range(2 * height * width)]
    per_frame = dut.out_height * dut.out_width
    in_cycles, out_cycles, _ = measure_full_rate(dut, beats, 2 * per_frame)
    taken = np.searchsorted(np.array(in_cycles), np.array(out_cycles[:per_frame]), side="left")
    model = window_inputs_needed(height=height, width=width, kernel=kernel, stride=stride, padding=padding,
                                 dilation=dilation)
    assert taken.tolist() == model.tolist()


@pytest.mark.parametrize("height, width, kernel, stride, padding, output_padding", [
    (3, 4, (3, 3), (2, 2), (1, 1), (1, 1)),      # ERFNet's upsampler
    (3, 3, (2, 2), (2, 2), (0, 0), (0, 0)),      # ERFNet's output layer
    (4, 3, (4, 4), (2, 2), (1, 1), (0, 0)),
    (3, 4, (3, 2), (1, 3), (0, 1), (0, 2)),
])
def test_transposed_model_matches_the_hardware(height, width, kernel, stride, padding, output_padding):
    rng = np.random.default_rng(0)
    dut = ConvTranspose2dLayer(elem_shape=unsigned(3), channels=1, out_channels=1, height=height, width=width,
                               kernel=kernel, stride=stride, padding=padding, output_padding=output_padding,
                               weights=rng.integers(-3, 4, size=(1, 1, *kernel)).tolist(), bias=[1], pe=1, simd=1,
                               acc_shape=signed(12))
    outputs = dut.out_height * dut.out_width
    measured = needed_inputs(outputs_after_each_input(dut, [[v % 8] for v in range(height * width)], quiet=12),
                             outputs)
    model = transposed_inputs_needed(height=height, width=width, kernel=kernel, stride=stride, padding=padding,
                                     output_padding=output_padding)
    assert measured == model.tolist()


@pytest.mark.parametrize("height, width, factor, mode", [
    (3, 4, (2, 2), "nearest"), (3, 2, (2, 3), "nearest"), (3, 4, (2, 2), "bilinear"), (4, 3, (4, 2), "bilinear"),
    (2, 3, (8, 8), "bilinear"), (3, 3, (1, 2), "bilinear"), (3, 3, (2, 1), "bilinear"),
])
def test_upsample_model_matches_the_hardware(height, width, factor, mode):
    dut = UpsampleLayer(elem_shape=unsigned(4), channels=1, height=height, width=width, factor=factor, mode=mode)
    outputs = dut.out_height * dut.out_width
    measured = needed_inputs(outputs_after_each_input(dut, [[v % 16] for v in range(height * width)], quiet=12),
                             outputs)
    assert measured == upsample_inputs_needed(height=height, width=width, factor=factor, mode=mode).tolist()


def test_least_depth_by_hand():
    # the short branch emits pixel j after input j+1; the long one needs input j+4 (rows ahead)
    short = np.arange(1, 11)
    long = np.minimum(np.arange(1, 11) + 3, 10)
    assert least_depth(short, np.maximum(short, long), 10) == 3
    assert least_depth(long, np.maximum(short, long), 10) == 0
    # at the end of a frame the long branch waits for nothing new; the next frame continues the count
    assert least_depth(np.array([5, 5, 6, 10]), np.array([6, 7, 8, 10]), 10) == 2


def _residual():
    rng = np.random.default_rng(0)
    w = lambda cout, cin, kh, kw: rng.integers(-9, 10, size=(cout, cin, kh, kw))
    return Graph([
        Node("x", Input((2, 6, 8), UInt(8))),
        Node("c", Conv2d(w(2, 2, 3, 1), np.zeros(2), Int(8), padding=(2, 0), dilation=(2, 1)), ("x",)),
        Node("q", MulShift(np.ones(2, np.int64), 4, 0, 255), ("c",)),
        Node("add", Add(0, 255), ("q", "x")),
        Node("pool", MaxPool(2), ("add",)),
        Node("cat", Concat(2), ("pool", "pool")),
    ])


def _prepared(graph):
    graph, _ = set_folding.apply(graph, cost=lambda node, pe, simd: {"lut": pe * simd}, budget={"lut": 1e9})
    graph, _ = annotate_lanes.apply(graph)
    graph, _ = size_fifos.apply(graph)
    return graph


def test_skip_fifos_cover_the_long_branch_and_its_latency():
    graph = _prepared(_residual())
    flow = dataflow(graph)
    out, changed = size_skip_fifos.apply(graph, model=dataflow)
    assert changed
    # the 3×1 dilation-2 conv needs 2 input rows ahead (2·8 pixels) before its first output;
    # the skip waits at the Add for all of them
    assert flow.needed["q"][0] == 2 * 8 + 1
    assert out["add"].attrs["skip_fifos_min"] == (0, 2 * 8)
    rate = min(1.0, 2 * 48 / flow.period["x"])      # the input runs at most a pixel per cycle
    slack = -(-(flow.latency["q"] - flow.latency["x"]) * rate // 1)
    assert out["add"].attrs["skip_fifos"] == (0, 2 * 8 + int(slack))
    assert out["cat"].attrs["skip_fifos"] == (0, 0)          # both inputs are the same stream
    again, changed = size_skip_fifos.apply(out, model=dataflow)
    assert not changed and again["add"].attrs == out["add"].attrs

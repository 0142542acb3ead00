"""The dataflow models vs the hardware, and the FIFO pass.

What each output waits for (vs the real SlidingWindow, transposed convolution, upsampler); the
pixel-count model (vs a plain step-by-step run of the same rules); the cycle model (vs the whole
accelerator in ``amaranth.sim``, cycle for cycle); the FIFOs the pass sizes (deadlock-free least
depths by hand, the full rate in simulation).
"""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwseg.backend import Accelerator, lower_graph
from hwseg.estimate.cycles import layer_cycles, window_kind
from hwseg.estimate.dataflow import (PixelCounts, dataflow, transposed_inputs_needed, upsample_inputs_needed,
                                     window_inputs_needed)
from hwseg.hw.transposed import ConvTranspose2dLayer
from hwseg.hw.upsample import UpsampleLayer
from hwseg.hw.window import SlidingWindow
from hwseg.ir import Add, AvgPool, Concat, Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt, Upsample
from hwseg.passes import lanes_for_hardware, set_folding, size_fifos, size_skip_fifos
from hwseg.passes.size_skip_fifos import _capacities
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


def _folded_pointwise():
    """A channelwise convolution behind a max-pool and a requantizer behind an average pool: folded to one lane
    each (their own folding), so a lane converter splits the pools' whole pixels in front of them."""
    rng = np.random.default_rng(2)
    c = 4
    return Graph([
        Node("x", Input((c, 8, 8), UInt(8))),
        Node("conv", Conv2d(rng.integers(-9, 10, (c, c, 3, 3)), np.zeros(c), Int(8), padding=(1, 1)), ("x",)),
        Node("q0", MulShift(np.ones(c, np.int64), 4, 0, 255), ("conv",)),
        Node("pool", MaxPool(2), ("q0",)),
        Node("cw", Conv2d(rng.integers(-9, 10, (c, 1, 1, 1)), rng.integers(-50, 50, c), Int(8), groups=c), ("pool",)),
        Node("q", MulShift(np.full(c, 3, np.int64), 2, 0, 255), ("cw",)),
        Node("avg", AvgPool(2), ("q",)),
        Node("q2", MulShift(np.full(c, 5, np.int64), 2, 0, 255), ("avg",)),
        Node("cat", Concat(2), ("q2", "q2")),
    ])


def _pyramid(size=8, channels=2, head=True):
    """FPL's pattern in miniature: a sum on the branch of another sum (``p = D_size(stem + D2) + D2``),
    a 3×1 convolution dilated by the frame's height (its walker crosses twice that many padding rows
    a frame), the stem concatenated back, a 2× bilinear ``head``."""
    rng = np.random.default_rng(1)
    c, d = channels, size

    def conv(name, source, cin, cout, kernel, **params):
        weight = rng.integers(-20, 21, size=(cout, cin, *kernel))
        return Node(name, Conv2d(weight, np.zeros(cout), Int(8), **params), (source,))

    def requant(name, source, channels):
        return Node(name, MulShift(np.full(channels, 3, np.int64), 6, 0, 255), (source,))

    nodes = [
        Node("x", Input((c, size, size), UInt(8))),
        conv("stem", "x", c, c, (3, 3), padding=1), requant("stem_q", "stem", c),
        conv("d2", "stem_q", c, c, (3, 1), padding=(2, 0), dilation=(2, 1)), requant("d2_q", "d2", c),
        Node("s2", Add(0, 255), ("stem_q", "d2_q")),
        conv("dd", "s2", c, c, (3, 1), padding=(d, 0), dilation=(d, 1)), requant("dd_q", "dd", c),
        Node("p", Add(0, 255), ("dd_q", "d2_q")),
        Node("cat", Concat(2), ("stem_q", "p")),
    ]
    if head:
        nodes += [conv("head", "cat", 2 * c, 3, (1, 1)), requant("head_q", "head", 3),
                  Node("up", Upsample(2, "bilinear"), ("head_q",))]
    return Graph(nodes, name="pyramid")


def _prepared(graph, lanes=1):
    """Folded to ``lanes`` multipliers per convolution at most (slow layers, so that rates differ)."""
    graph, _ = set_folding.apply(graph, cost=lambda node, pe, simd: {"lut": pe * simd}, budget={"lut": lanes})
    graph = lanes_for_hardware(graph, window_kind=window_kind)
    graph, _ = size_fifos.apply(graph)
    return graph


def _step_by_step(counts, capacity):
    """The pixel-count rules run round by round until nothing moves (the slow, obvious way):
    does every frame come out?"""
    graph = counts.graph
    emitted = {node.name: 0 for node in graph}
    readers = {node.name: [] for node in graph}
    for edge in counts.edges:
        readers[edge[2]].append(edge)
    moved = True
    while moved:
        moved = False
        for node in graph:
            name = node.name
            bound = counts.total[name]
            for k, source in enumerate(node.inputs):
                bound = min(bound, int(counts.enabled[(name, k, source)][emitted[source]]))
            for edge in readers[name]:
                held = int(counts.need[edge][emitted[edge[0]]])
                bound = min(bound, min(emitted[name], held) + capacity[edge[:2]])
            if bound > emitted[name]:
                emitted[name], moved = bound, True
    return all(emitted[name] == counts.total[name] for name in emitted)


@pytest.mark.parametrize("make", [_residual, _pyramid])
def test_pixel_counts_agree_with_a_step_by_step_run(make):
    graph = size_skip_fifos.apply(_prepared(make()), model=dataflow)[0]
    counts = PixelCounts(graph)
    capacity = _capacities(graph, {}, {})
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(12):
        shuffled = {edge: int(rng.integers(1, 2 * c + 2)) for edge, c in capacity.items()}
        flows = counts.flows(shuffled)
        assert flows == _step_by_step(counts, shuffled), shuffled
        outcomes.add(flows)
    assert outcomes == {True, False}               # both cases were tried


def test_least_capacity_is_the_least_that_flows():
    graph = size_skip_fifos.apply(_prepared(_pyramid()), model=dataflow)[0]
    counts = PixelCounts(graph)
    capacity = _capacities(graph, {}, {})
    edges = [edge for edge in counts.edges if capacity[edge[:2]] > 1]
    least = counts.least_capacities(edges, capacity)
    assert any(c > 1 for c in least.values())
    for edge, c in least.items():
        assert _step_by_step(counts, {**capacity, edge[:2]: c}), edge
        if c > 1:
            assert not _step_by_step(counts, {**capacity, edge[:2]: c - 1}), edge


def test_least_skip_fifo_covers_the_rows_the_long_branch_waits_for():
    graph = _prepared(_residual())
    flow = dataflow(graph)
    out, changed = size_skip_fifos.apply(graph, model=dataflow)
    assert changed
    # the 3×1 dilation-2 conv needs 2 input rows ahead (2·8 pixels) before its first output;
    # the skip waits at the Add for all of them (the Add, folded to one lane, takes a pixel in 2 beats)
    assert flow.needed["q"][0] == 2 * 8 + 1
    beats = 2 // out["add"].attrs["in_lanes"]                  # FIFO depths count beats of the Add's lanes
    assert out["add"].attrs["skip_fifos_min"] == (0, 2 * 8 * beats)
    assert out["add"].attrs["skip_fifos"][1] >= 2 * 8 * beats
    assert out["cat"].attrs["skip_fifos"] == (0, 0)          # both inputs are the same stream
    again, changed = size_skip_fifos.apply(out, model=dataflow)
    assert not changed and again["add"].attrs == out["add"].attrs


def _run_accelerator(graph, frames=3):
    """The whole accelerator in amaranth.sim, input always valid and output always ready: the cycle
    of every output beat."""
    top = Accelerator(lower_graph(graph), in_channels=graph.input_type.channels,
                      out_channels=graph.output_type.channels, out_pixels=graph.output_type.pixels)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    beats, cycles = frames * graph.input_type.pixels, []

    async def testbench(ctx):
        ctx.set(top.m_axis_tready, 1)
        sent, cycle = 0, 0
        while len(cycles) < frames * graph.output_type.pixels:
            assert cycle < 100_000, "the accelerator stopped"
            ctx.set(top.s_axis_tvalid, sent < beats)
            ctx.set(top.s_axis_tdata, sent % 251)
            *_, taken, out = await ctx.tick().sample(top.s_axis_tready, top.m_axis_tvalid)
            sent += bool(taken) and sent < beats
            if out:
                cycles.append(cycle)
            cycle += 1

    sim.add_testbench(testbench)
    sim.run()
    return np.array(cycles)


@pytest.mark.parametrize("make, lanes", [(_residual, 4), (lambda: _pyramid(6, 1), 1000), (lambda: _pyramid(6, 1), 2),
                                         (_folded_pointwise, 1)])
def test_timing_model_is_cycle_exact(make, lanes):
    """With the FIFOs the pass sizes, the hardware's output beats leave exactly when the model's
    earliest schedule (from an input always there) says (the output's lane converter aside)."""
    graph = size_skip_fifos.apply(_prepared(make(), lanes), model=dataflow)[0]
    if make is _folded_pointwise:
        assert graph["cw"].attrs["in_lanes"] == 1 and graph["q2"].attrs["in_lanes"] == 1
    timing = dataflow(graph).timing()
    model = timing.forward(np.arange(timing.frames * graph.input_type.pixels))[0][graph.output]
    measured = _run_accelerator(graph, timing.frames)
    assert measured[0] - model[0] in (0, 1)
    assert (measured - model == measured[0] - model[0]).all()


def _period(graph, frames=3):
    ends = _run_accelerator(graph, frames)[graph.output_type.pixels - 1::graph.output_type.pixels]
    return np.diff(ends)


def test_full_rate_fifos_keep_the_slowest_layers_rate():
    """The pyramid's dilation-6 walker takes nothing for 12 rows of padding a frame of 6. Sized for
    deadlock only (least join FIFOs, two rows in front of each layer), the fork behind it stalls and
    the frame takes longer than its slowest layer; sized for full rate, it takes exactly that."""
    graph = size_skip_fifos.apply(_prepared(_pyramid(6, 1, head=False), 1000), model=dataflow)[0]
    slowest = max(layer_cycles(graph, node) for node in graph)
    assert (_period(graph) == slowest).all()
    plain = _prepared(_pyramid(6, 1, head=False), 1000)
    least = graph.replace([node.with_attrs(fifo_depth=plain[node.name].attrs["fifo_depth"],
                                           **{"skip_fifos": node.attrs["skip_fifos_min"]} if "skip_fifos" in node.attrs else {})
                           for node in graph])
    assert (_period(least) > 1.05 * slowest).any()

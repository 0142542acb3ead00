# amaranth: UnusedElaboratable=no
"""WindowMax alone and after a SlidingWindow, against golden.max_pool, under random stalls.

(The first line silences Amaranth's warning for components built here only to fail validation.)
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwseg.golden import max_pool
from hwseg.hw.pool import WindowMax
from hwseg.hw.window import SlidingWindow
from tests.hw.streams import collect, send


def _elem_range(shape):
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _run(dut, beats, count, *, seed, valid_prob=0.6, ready_prob=0.6, timeout=2000):
    """Drive ``beats`` in, collect ``count`` beats out; the producer must finish too."""
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    got, sent = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=rng_in, valid_prob=valid_prob)
        sent.append(True)

    async def consumer(ctx):
        await collect(ctx, dut.o_stream, count, got, rng=rng_out, ready_prob=ready_prob, timeout=timeout)
        for _ in range(timeout):
            if sent:
                return
            await ctx.tick()
        raise AssertionError(f"input not fully taken {timeout} cycles after the last output beat")

    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return got


class MaxPool(wiring.Component):
    """SlidingWindow → WindowMax, as the backend composes a max-pool layer."""

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride, padding):
        self._params = dict(elem_shape=elem_shape, channels=channels, height=height, width=width,
                            kernel=kernel, stride=stride, padding=padding)
        pixel = data.ArrayLayout(elem_shape, channels)
        super().__init__({"i_stream": In(stream.Signature(pixel)), "o_stream": Out(stream.Signature(pixel))})

    def elaborate(self, platform):
        m = Module()
        p = self._params
        lo, _ = _elem_range(p["elem_shape"])
        m.submodules.window = window = SlidingWindow(**p, pad_value=lo)  # padding never wins
        m.submodules.max = maximum = WindowMax(elem_shape=p["elem_shape"], channels=p["channels"],
                                               window=p["kernel"][0] * p["kernel"][1])
        wiring.connect(m, wiring.flipped(self.i_stream), window.i_stream)
        wiring.connect(m, window.o_stream, maximum.i_stream)
        wiring.connect(m, maximum.o_stream, wiring.flipped(self.o_stream))
        return m


# (elem_shape, channels, height, width, kernel, stride, padding)
POOLS = {
    "2x2-s2-u8": (unsigned(8), 3, 8, 10, (2, 2), (2, 2), (0, 0)),
    "2x2-s2-s4-odd": (signed(4), 2, 7, 9, (2, 2), (2, 2), (0, 0)),
    "3x3-s2-p1-s6": (signed(6), 2, 7, 9, (3, 3), (2, 2), (1, 1)),
    "3x3-s2-p1-u4": (unsigned(4), 3, 8, 10, (3, 3), (2, 2), (1, 1)),
}


@pytest.mark.parametrize("name", list(POOLS))
def test_max_pool_matches_golden(name):
    elem_shape, channels, height, width, kernel, stride, padding = POOLS[name]
    lo, hi = _elem_range(elem_shape)
    seed = sum(map(ord, name))
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(2, channels, height, width), dtype=np.int64)
    expected = max_pool(x, kernel, stride, padding)
    n, _, ho, wo = expected.shape
    dut = MaxPool(elem_shape=elem_shape, channels=channels, height=height, width=width,
                  kernel=kernel, stride=stride, padding=padding)
    beats = [x[f, :, y, col].tolist() for f in range(n) for y in range(height) for col in range(width)]
    got = _run(dut, beats, n * ho * wo, seed=seed)
    for index, beat in enumerate(got):
        frame, rest = divmod(index, ho * wo)
        oy, ox = divmod(rest, wo)
        want = expected[frame, :, oy, ox].tolist()
        assert beat == want, f"frame {frame}, output (oy, ox) = ({oy}, {ox}): expected {want}, got {beat}"


@pytest.mark.parametrize("elem_shape, channels, window", [
    (signed(8), 3, 9), (unsigned(8), 2, 4), (signed(3), 1, 1), (unsigned(5), 4, 5), (signed(5), 2, 2)])
def test_window_max_alone(elem_shape, channels, window):
    lo, hi = _elem_range(elem_shape)
    rng = np.random.default_rng(window * 10 + channels)
    count = 60
    # Windows as a (count, C, 1, window) tensor: golden 1×window max pooling is the expected max.
    windows = rng.integers(lo, hi + 1, size=(count, channels, 1, window), dtype=np.int64)
    windows[:4] = rng.choice([lo, hi], size=(4, channels, 1, window))  # the extremes, for the signed compare
    expected = max_pool(windows, (1, window), (1, window), (0, 0))[:, :, 0, 0].tolist()
    # Window element w·C + c is windows[n, c, 0, w].
    beats = [windows[n, :, 0, :].T.reshape(-1).tolist() for n in range(count)]
    dut = WindowMax(elem_shape=elem_shape, channels=channels, window=window)
    got = _run(dut, beats, count, seed=window)
    assert got == expected


def test_window_max_full_rate():
    dut = WindowMax(elem_shape=unsigned(4), channels=2, window=4)
    beats = [[(n + k) % 16 for k in range(8)] for n in range(30)]
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    edges = []

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=random.Random(0))

    async def consumer(ctx):
        ctx.set(dut.o_stream.ready, 1)
        edge = 0
        while len(edges) < len(beats):
            _, _, valid = await ctx.tick().sample(dut.o_stream.valid)
            if valid:
                edges.append(edge)
            edge += 1

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert edges == list(range(edges[0], edges[0] + len(beats))) and edges[0] == 1


@pytest.mark.parametrize("change, error, message", [
    (dict(elem_shape="u8"), TypeError, r"^elem_shape must be an Amaranth shape unsigned\(b\) or signed\(b\) "
                                       r"with b >= 1, not 'u8'$"),
    (dict(channels=0), ValueError, r"^channels must be a positive int, not 0$"),
    (dict(window=2.5), ValueError, r"^window must be a positive int, not 2.5$"),
    (dict(window=False), ValueError, r"^window must be a positive int, not False$"),
])
def test_window_max_errors(change, error, message):
    with pytest.raises(error, match=message):
        WindowMax(**{**dict(elem_shape=signed(8), channels=2, window=9), **change})


def test_window_max_verilog():
    from amaranth.back import verilog
    text = verilog.convert(WindowMax(elem_shape=signed(8), channels=3, window=9), name="window_max", emit_src=False)
    assert "module window_max" in text

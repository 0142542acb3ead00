"""DramRowTaps vs golden ``row_taps``: two frames back to back, random stalls, random memory latency."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.sim import Simulator

from hwseg.golden import row_taps
from hwseg.hw.dram import DramRowTaps
from tests.hw.memory_model import MemoryModel
from tests.hw.streams import as_ints, collect, elem_range, send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BASE = 0x1000_0000


def run_row_taps(dut, frames, *, seed=0, valid_prob=0.7, ready_prob=0.7, latency=(20, 200), mem_ready=0.7,
                 timeout=20_000):
    """``frames`` ``(N, C, H, W)`` through ``dut``; returns the output beats and the memory model."""
    n, c, h, w = frames.shape
    beats = [list(frames[f, :, y, x]) for f in range(n) for y in range(h) for x in range(w)]
    count = n * dut.out_height * w
    lanes = dut.lanes
    if lanes is not None:            # a word a beat: each pixel in pieces of `lanes` channels
        beats = [pixel[i:i + lanes] for pixel in beats for i in range(0, c, lanes)]
        count *= dut.taps * c // lanes
    top = Module()
    top.submodules.dut = dut
    model = MemoryModel(dut.mem, data_bits=dut.data_bits, rng=random.Random(seed + 100), latency=latency,
                        ready_prob=mem_ready, base=BASE, size=dut.region_bytes)
    got = []
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def setup(ctx):
        ctx.set(dut.base, BASE)

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=random.Random(seed), valid_prob=valid_prob, timeout=timeout)

    async def consumer(ctx):
        await collect(ctx, dut.o_stream, count, got, rng=random.Random(seed + 1), ready_prob=ready_prob,
                      timeout=timeout)

    async def monitor(ctx):
        held = None
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o_stream.valid, dut.o_stream.ready,
                                                                   dut.o_stream.payload):
            assert held is None or (valid and as_ints(payload) == held), "o_stream broke the stream rule"
            held = as_ints(payload) if valid and not ready else None

    for bench in (setup, producer, consumer):
        sim.add_testbench(bench)
    sim.add_testbench(model.serve, background=True)
    sim.add_testbench(monitor, background=True)
    sim.run()
    if lanes is not None:            # the output's pixels, from their beats
        per_pixel = dut.taps * c // lanes
        got = [sum((list(b) for b in got[i:i + per_pixel]), []) for i in range(0, len(got), per_pixel)]
    return got, model


def expected_beats(frames, taps, stride, padding, dilation):
    out = row_taps(frames, taps, stride, padding, dilation)          # (N, taps·C, Ho, W)
    n, _, ho, w = out.shape
    return [list(out[f, :, y, x]) for f in range(n) for y in range(ho) for x in range(w)], out.shape


def check(got, expected, shape, channels):
    n, tc, ho, w = shape
    for k, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            f, rest = divmod(k, ho * w)
            lane = next(i for i in range(tc) if e[i] != g[i])
            raise AssertionError(f"frame {f}, pixel {divmod(rest, w)}, channel {lane} (tap {lane // channels}): "
                                 f"expected {e[lane]}, got {g[lane]}")
    assert len(got) == len(expected)


CASES = {
    # name: (elem, channels, height, width, taps, dilation, stride, padding, data_bits, burst)
    "3x1": (unsigned(8), 3, 7, 9, 3, 1, 1, 1, 32, 4),
    "dilated 4": (unsigned(8), 2, 12, 6, 3, 4, 1, 4, 32, 4),
    "dilated 2, wide pixels": (signed(8), 10, 8, 5, 3, 2, 1, 2, 32, 8),
    "stride 2": (unsigned(4), 4, 9, 7, 3, 1, 2, 1, 64, 4),
    "stride 4, dilated 2": (unsigned(8), 2, 13, 5, 3, 2, 4, 2, 32, 4),
    "stride 3 (row-time table)": (unsigned(8), 2, 10, 5, 3, 1, 3, 1, 32, 4),
    "no padding": (unsigned(8), 2, 8, 6, 3, 1, 1, 0, 32, 4),
    "5 taps, one-sided": (unsigned(8), 1, 9, 11, 5, 1, 1, 1, 32, 4),
    "dilation 3, ring rounded up": (unsigned(8), 4, 11, 4, 3, 3, 1, 3, 32, 16),
}


#: a word a beat in and out (``lanes``: the word's elements)
WORD_CASES = {
    "words: 3x1, 2 words a pixel": (unsigned(8), 8, 7, 9, 3, 1, 1, 1, 32, 4),
    "words: dilated 2, stride 2, 4 words": (unsigned(4), 32, 10, 5, 3, 2, 2, 2, 32, 8),
    "words: one word a pixel": (signed(8), 4, 8, 6, 3, 4, 1, 4, 32, 4),
    "words: 5 taps, 64-bit words": (unsigned(2), 64, 9, 7, 5, 1, 1, 2, 64, 4),
}


@pytest.mark.parametrize("case", list(CASES) + list(WORD_CASES))
@pytest.mark.parametrize("rates", [(1.0, 1.0), (0.6, 0.6)])
def test_matches_golden(case, rates):
    elem, channels, height, width, taps, dilation, stride, padding, data_bits, burst = {**CASES, **WORD_CASES}[case]
    lanes = data_bits // elem.width if case in WORD_CASES else None
    dut = DramRowTaps(elem_shape=elem, channels=channels, height=height, width=width, taps=taps, dilation=dilation,
                      stride=stride, padding=padding, data_bits=data_bits, address_bits=32, burst=burst, lanes=lanes)
    lo, hi = elem_range(elem)
    frames = np.random.default_rng(len(case)).integers(lo, hi + 1, (2, channels, height, width))
    expected, shape = expected_beats(frames, taps, stride, padding, dilation)
    got, model = run_row_taps(dut, frames, seed=len(case), valid_prob=rates[0], ready_prob=rates[1])
    check(got, expected, shape, channels)
    # reads run ahead into the next frame's top padding (from the zero row), as far as the tap buffers allow
    assert 2 * dut.read_words <= model.words_read <= 2 * dut.read_words + taps * dut.tap_buffer
    # the zero row once; the last rows of the last frame are written as the staging fills, after the output needs them
    written = model.words_written - dut.setup_write_words
    assert 2 * dut.write_words - 2 * dut.row_words - 2 * burst <= written <= 2 * dut.write_words


def test_slow_memory_and_long_rows():
    dut = DramRowTaps(elem_shape=unsigned(8), channels=4, height=6, width=40, taps=3, dilation=2, padding=2,
                      data_bits=32, address_bits=32, burst=8, tap_buffer=32)
    frames = np.random.default_rng(1).integers(0, 256, (2, 4, 6, 40))
    expected, shape = expected_beats(frames, 3, 1, 2, 2)
    got, _ = run_row_taps(dut, frames, latency=(150, 400), mem_ready=0.5, timeout=40_000)
    check(got, expected, shape, 4)


def test_full_rate_with_a_fast_memory():
    """With a memory that answers at once, the read channel sets the pace: a pixel per word of each tap
    (cycles_per_frame), the padding taps included."""
    dut = DramRowTaps(elem_shape=unsigned(8), channels=4, height=8, width=32, taps=3, dilation=1, padding=1,
                      data_bits=32, address_bits=32, burst=8)
    frames = np.random.default_rng(2).integers(0, 256, (3, 4, 8, 32))
    top = Module()
    top.submodules.dut = dut
    model = MemoryModel(dut.mem, data_bits=32, rng=random.Random(0), latency=(2, 2), ready_prob=1.0)
    beats = [list(frames[f, :, y, x]) for f in range(3) for y in range(8) for x in range(32)]
    out_cycles = []
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.base, BASE)
        ctx.set(dut.o_stream.ready, 1)
        sent, cycle = 0, 0
        while len(out_cycles) < 3 * 8 * 32:
            assert cycle < 5000
            if sent < len(beats):
                ctx.set(dut.i_stream.payload, beats[sent])
            ctx.set(dut.i_stream.valid, sent < len(beats))
            *_, iv, ir, ov = await ctx.tick().sample(dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid)
            sent += iv and ir
            if ov:
                out_cycles.append(cycle)
            cycle += 1
    sim.add_testbench(model.serve, background=True)
    sim.add_testbench(bench)
    sim.run()
    period = out_cycles[2 * 256 - 1] - out_cycles[256 - 1]
    # row time 0 gives no output (a cycle), 1…8 read three rows each (row −1 and row 8, padding, from the zero row)
    assert dut.cycles_per_frame == 1 + 32 * 8 * 3
    assert abs(period - dut.cycles_per_frame) <= dut.cycles_per_frame * 0.05, f"a frame every {period} cycles, model {dut.cycles_per_frame}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(taps=1), "taps must be an integer >= 2, not 1"),
    (dict(padding=5), r"padding must be at most \(taps - 1\)·dilation = 4, not 5"),
    (dict(height=2, padding=0), "shorter than the window"),
    (dict(channels=0), "channels must be a positive integer, not 0"),
    (dict(lanes=2), r"lanes must be None \(whole pixels\) or fill a 32-bit word and divide the 2 channels \(4 here\), "
                    "not 2"),
])
def test_rejects_bad_parameters(kwargs, match):
    options = dict(elem_shape=unsigned(8), channels=2, height=8, width=8, taps=3, dilation=2, padding=2,
                   data_bits=32, address_bits=32) | kwargs
    with pytest.raises(ValueError, match=match):
        DramRowTaps(**options)

"""LaneConverter: gather and scatter keep the element order, under random valid gaps and ready backpressure."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Elaboratable, Module, signed, unsigned

from hwseg.hw.lanes import LaneConverter
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.5, 1.0), "backpressure": (1.0, 0.5)}

# (elem_shape, in_lanes, out_lanes, channels per pixel)
CASES = {
    "gather-1to2": (unsigned(8), 1, 2, 4),
    "gather-2to6": (signed(5), 2, 6, 12),
    "gather-1to5": (unsigned(3), 1, 5, 5),
    "gather-4to16": (unsigned(1), 4, 16, 16),
    "scatter-2to1": (signed(8), 2, 1, 4),
    "scatter-6to2": (unsigned(7), 6, 2, 12),
    "scatter-5to1": (signed(3), 5, 1, 5),
    "scatter-12to3": (unsigned(4), 12, 3, 24),
    "equal-3": (signed(6), 3, 3, 6),
}


class _Clocked(Elaboratable):
    """The converter with a `sync` domain, which pass-through (pure wires) lacks, for the simulator's clock."""

    def __init__(self, dut):
        self.dut, self.i_stream, self.o_stream = dut, dut.i_stream, dut.o_stream

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.dut = self.dut
        return m


def _pixels(shape, channels, count, rng):
    lo, hi = elem_range(shape)
    return rng.integers(lo, hi + 1, size=(count, channels))


def _beats(pixels, lanes):
    """Lane i of beat b within a pixel is channel b·lanes + i."""
    return [row[b * lanes:(b + 1) * lanes].tolist() for row in pixels for b in range(len(row) // lanes)]


def _check(got, expected, lanes, per_pixel):
    assert len(got) == len(expected), f"expected {len(expected)} beats, got {len(got)}"
    for index, (e, g) in enumerate(zip(expected, got)):
        for lane, (ev, gv) in enumerate(zip(e, g)):
            assert ev == gv, (f"pixel {index // per_pixel} beat {index % per_pixel} channel "
                              f"{(index % per_pixel) * lanes + lane}: expected {ev}, got {gv}")


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(CASES))
def test_regroups(name, rate):
    shape, in_lanes, out_lanes, channels = CASES[name]
    pixels = _pixels(shape, channels, 6, np.random.default_rng(len(name)))
    dut = _Clocked(LaneConverter(elem_shape=shape, in_lanes=in_lanes, out_lanes=out_lanes))
    expected = _beats(pixels, out_lanes)
    valid_prob, ready_prob = RATES[rate]
    got = run_stream_test(dut, _beats(pixels, in_lanes), len(expected), seed=2,
                          valid_prob=valid_prob, ready_prob=ready_prob)
    _check(got, expected, out_lanes, channels // out_lanes)


@pytest.mark.parametrize("name", ["gather-2to6", "gather-1to2", "scatter-6to2", "scatter-2to1", "equal-3"])
def test_full_rate_on_the_narrow_side(name):
    shape, in_lanes, out_lanes, channels = CASES[name]
    pixels = _pixels(shape, channels, 4, np.random.default_rng(0))
    dut = LaneConverter(elem_shape=shape, in_lanes=in_lanes, out_lanes=out_lanes)
    beats, expected = _beats(pixels, in_lanes), _beats(pixels, out_lanes)
    in_cycles, out_cycles, got = measure_full_rate(_Clocked(dut), beats, len(expected), limit=1000)
    _check(got, expected, out_lanes, channels // out_lanes)
    ratio = dut.ratio
    if in_lanes == out_lanes:                       # wires
        assert in_cycles == out_cycles == list(range(len(beats)))
    elif out_lanes > in_lanes:                      # gather: a piece every cycle, the group 1 cycle after its last
        assert in_cycles == list(range(len(beats)))
        assert out_cycles == [(k + 1) * ratio for k in range(len(expected))]
    else:                                           # scatter: a piece every cycle, from 1 cycle after the input
        assert out_cycles == list(range(1, len(expected) + 1))
        assert in_cycles == [k * ratio for k in range(len(beats))]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(elem_shape="u8", in_lanes=1, out_lanes=2), TypeError, "elem_shape must be a shape, not 'u8'"),
    (dict(elem_shape=unsigned(0), in_lanes=1, out_lanes=2), ValueError, "elem_shape must be at least 1 bit wide, not unsigned(0)"),
    (dict(elem_shape=unsigned(8), in_lanes=0, out_lanes=2), ValueError, "in_lanes must be a positive integer, not 0"),
    (dict(elem_shape=unsigned(8), in_lanes=2, out_lanes=2.0), ValueError, "out_lanes must be a positive integer, not 2.0"),
    (dict(elem_shape=unsigned(8), in_lanes=4, out_lanes=6), ValueError,
     "one of in_lanes and out_lanes must divide the other, not in_lanes=4 and out_lanes=6"),
    (dict(elem_shape=unsigned(8), in_lanes=3, out_lanes=2), ValueError,
     "one of in_lanes and out_lanes must divide the other, not in_lanes=3 and out_lanes=2"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        LaneConverter(**kwargs)


def test_converts_to_verilog():
    for in_lanes, out_lanes in [(2, 6), (6, 2), (3, 3)]:
        dut = LaneConverter(elem_shape=signed(4), in_lanes=in_lanes, out_lanes=out_lanes)
        assert "module" in verilog.convert(dut, emit_src=False)

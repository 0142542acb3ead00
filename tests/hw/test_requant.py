"""MulShiftRequant against golden.mul_shift, under random valid gaps and ready backpressure."""

import re
import zlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.golden import mul_shift
from hwseg.hw.requant import MulShiftRequant
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.5, 1.0), "backpressure": (1.0, 0.5)}


# name: (acc_shape, out_shape, channels, lanes, shift, lo, hi, max |M|)
CONFIGS = {
    "relu-u8-lanes2": (signed(20), unsigned(8), 6, 2, 8, 0, 255, 300),
    "signed-s8-all-lanes": (signed(16), signed(8), 4, 4, 5, -128, 127, 100),
    "shift0-lane1": (signed(12), signed(8), 3, 1, 0, -100, 100, 3),
    "unsigned-acc": (unsigned(10), unsigned(4), 8, 2, 3, 0, 15, 20),
    "narrow-clamp-lanes3": (signed(24), signed(4), 9, 3, 12, -3, 5, 5000),
    "shift1": (signed(8), signed(8), 2, 1, 1, -128, 127, 1),
    "shift30-wide-M": (signed(24), signed(16), 4, 2, 30, -32768, 32767, 1 << 20),
}


def _stimulus(config, rng, pixels):
    acc_shape, _, channels, _, shift, _, _, mmax = config
    mult = rng.integers(-mmax, mmax + 1, size=channels)
    mult[0] = 1                                     # exact halves to round: ±(k + 1/2)
    if channels > 1:
        mult[1] = -1
    lo, hi = elem_range(acc_shape)
    acc = rng.integers(lo, hi + 1, size=(1, channels, 1, pixels))
    if shift:
        half = (np.arange(pixels) - pixels // 2) * (1 << shift) + (1 << (shift - 1))
        acc[0, : min(2, channels), 0, :] = np.clip(half, lo, hi)
    acc[0, :, 0, 0], acc[0, :, 0, -1] = lo, hi       # extremes
    return acc, mult


def _beats(x, lanes):
    _, channels, _, pixels = x.shape
    return [x[0, g * lanes:(g + 1) * lanes, 0, p].tolist() for p in range(pixels) for g in range(channels // lanes)]


def _make(config, mult):
    acc_shape, out_shape, channels, lanes, shift, lo, hi, _ = config
    return MulShiftRequant(acc_shape=acc_shape, out_shape=out_shape, channels=channels, lanes=lanes,
                           multipliers=mult.tolist(), shift=shift, lo=lo, hi=hi)


def _check(got, expected, lanes, groups):
    assert len(got) == len(expected), f"expected {len(expected)} beats, got {len(got)}"
    for index, (e, g) in enumerate(zip(expected, got)):
        for lane, (ev, gv) in enumerate(zip(e, g)):
            assert ev == gv, (f"pixel {index // groups} beat {index % groups} channel {(index % groups) * lanes + lane}: "
                              f"expected {ev}, got {gv}")


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden(name, rate):
    config = CONFIGS[name]
    _, _, channels, lanes, shift, lo, hi, _ = config
    rng = np.random.default_rng(zlib.crc32(f"{name}/{rate}".encode()))
    acc, mult = _stimulus(config, rng, pixels=12)
    dut = _make(config, mult)
    expected = _beats(mul_shift(acc, mult, shift, lo, hi), lanes)
    valid_prob, ready_prob = RATES[rate]
    beats = _beats(acc, lanes)
    got = run_stream_test(dut, beats, len(beats), seed=11, valid_prob=valid_prob, ready_prob=ready_prob)
    _check(got, expected, lanes, channels // lanes)


def test_full_rate_and_latency():
    config = CONFIGS["relu-u8-lanes2"]
    acc, mult = _stimulus(config, np.random.default_rng(1), pixels=8)
    dut = _make(config, mult)
    beats = _beats(acc, 2)
    in_cycles, out_cycles, got = measure_full_rate(dut, beats, len(beats), limit=1000)
    _check(got, _beats(mul_shift(acc, mult, 8, 0, 255), 2), 2, 3)
    assert in_cycles == list(range(len(beats)))                          # 1 beat/cycle in
    assert out_cycles == [c + dut.latency for c in range(len(beats))]    # and out, 2 cycles later
    assert dut.latency == 2


def _args(**overrides):
    args = dict(acc_shape=signed(16), out_shape=unsigned(8), channels=4, lanes=2, multipliers=[1, 2, 3, 4],
                shift=4, lo=0, hi=255)
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides,error,match", [
    (dict(acc_shape=3.5), TypeError, "acc_shape must be a shape, not 3.5"),
    (dict(out_shape=unsigned(0)), ValueError, "out_shape must be at least 1 bit wide, not unsigned(0)"),
    (dict(channels=0), ValueError, "channels must be a positive integer, not 0"),
    (dict(lanes=-2), ValueError, "lanes must be a positive integer, not -2"),
    (dict(lanes=3), ValueError, "lanes must divide channels=4, not 3"),
    (dict(multipliers=[1, 2, 3]), ValueError, "multipliers must be a list of 4 ints (one per channel), not [1, 2, 3]"),
    (dict(multipliers=[1, 2, 3, True]), ValueError, "multipliers must be a list of 4 ints (one per channel), not [1, 2, 3, True]"),
    (dict(shift=-1), ValueError, "shift must be a non-negative integer, not -1"),
    (dict(lo=-1), ValueError, "lo must be an int that fits out_shape unsigned(8) ([0, 255]), not -1"),
    (dict(hi=256), ValueError, "hi must be an int that fits out_shape unsigned(8) ([0, 255]), not 256"),
    (dict(out_shape=signed(4), lo=-9, hi=7), ValueError, "lo must be an int that fits out_shape signed(4) ([-8, 7]), not -9"),
    (dict(lo=10, hi=9), ValueError, "lo must not exceed hi, not lo=10 > hi=9"),
])
def test_constructor_errors(overrides, error, match):
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        MulShiftRequant(**_args(**overrides))


def test_converts_to_verilog():
    for overrides in [{}, dict(lanes=4, shift=0), dict(acc_shape=unsigned(9), multipliers=[-1, 0, 5, 7])]:
        assert "module" in verilog.convert(MulShiftRequant(**_args(**overrides)), emit_src=False)

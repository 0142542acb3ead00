"""ArgMax against golden.argmax (first maximum), under random valid gaps and ready backpressure."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.golden import argmax
from hwseg.hw.argmax import ArgMax
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.5, 1.0), "backpressure": (1.0, 0.5)}

# (elem_shape, channels, index_bits)
CASES = {
    "u8-21-classes": (unsigned(8), 21, 8),
    "s8-5": (signed(8), 5, 3),
    "s3-7-ties": (signed(3), 7, 3),
    "u2-8-ties": (unsigned(2), 8, 3),
    "s16-3": (signed(16), 3, 8),
    "u4-2": (unsigned(4), 2, 1),
    "s4-1-channel": (signed(4), 1, 1),
}


def _pixels(shape, channels, rng, count=40):
    lo, hi = elem_range(shape)
    x = rng.integers(lo, hi + 1, size=(count, channels))
    x[0], x[1], x[2] = lo, hi, 0                            # all tied
    if channels > 2:
        x[3] = lo
        x[3, [1, channels - 1]] = hi                        # max at two places: the first wins
        x[4] = np.arange(channels) % 2 * hi                 # max at every odd index
        x[5] = lo
        x[5, -1] = lo + 1                                   # the last one, only just
    if shape.signed:
        x[6] = np.minimum(-1, x[6])                         # all negative: signed compare
    return x


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(CASES))
def test_matches_golden(name, rate):
    shape, channels, index_bits = CASES[name]
    pixels = _pixels(shape, channels, np.random.default_rng(channels))
    expected = argmax(pixels.T[None, :, None, :])[0, 0, 0].tolist()
    dut = ArgMax(elem_shape=shape, channels=channels, index_bits=index_bits)
    valid_prob, ready_prob = RATES[rate]
    got = run_stream_test(dut, pixels.tolist(), len(pixels), seed=4, valid_prob=valid_prob, ready_prob=ready_prob)
    assert len(got) == len(expected)
    for k, (e, g) in enumerate(zip(expected, got)):
        assert g == [e], f"pixel {k} {pixels[k].tolist()}: expected index {e}, got {g[0]}"


def test_one_beat_per_cycle():
    dut = ArgMax(elem_shape=signed(6), channels=9, index_bits=4)
    pixels = _pixels(signed(6), 9, np.random.default_rng(5), count=30)
    expected = argmax(pixels.T[None, :, None, :])[0, 0, 0].tolist()
    in_cycles, out_cycles, got = measure_full_rate(dut, pixels.tolist(), len(pixels), limit=1000)
    assert got == [[e] for e in expected]
    assert in_cycles == list(range(len(pixels)))
    assert out_cycles == [c + 1 for c in range(len(pixels))]        # latency 1


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(elem_shape=None, channels=4, index_bits=2), TypeError, "elem_shape must be a shape, not None"),
    (dict(elem_shape=unsigned(0), channels=4, index_bits=2), ValueError, "elem_shape must be at least 1 bit wide, not unsigned(0)"),
    (dict(elem_shape=unsigned(8), channels=0, index_bits=2), ValueError, "channels must be a positive integer, not 0"),
    (dict(elem_shape=unsigned(8), channels=4, index_bits=0), ValueError, "index_bits must be a positive integer, not 0"),
    (dict(elem_shape=unsigned(8), channels=5, index_bits=2), ValueError,
     "index_bits must hold the largest index 4 of 5 channels, not 2"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        ArgMax(**kwargs)


def test_converts_to_verilog():
    for shape, channels in [(unsigned(8), 21), (signed(4), 1), (signed(8), 2)]:
        assert "module" in verilog.convert(ArgMax(elem_shape=shape, channels=channels, index_bits=8), emit_src=False)

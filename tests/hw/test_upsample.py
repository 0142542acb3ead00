"""UpsampleLayer (nearest and bilinear) against golden.upsample: frames back to back under random
valid gaps and ready backpressure, the full-rate cycle count, the input each output pixel needs,
and the constructor's checks.
"""

import gc
import re
import zlib

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned

from hwseg.golden import upsample
from hwseg.hw.upsample import UpsampleLayer
from tests.hw.need_probe import needed_inputs, outputs_after_each_input
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

# Components built only to read their figures or to fail validation are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unused():
    """Let the UnusedElaboratable warnings of this test's leftovers fire under this module's filter."""
    yield
    gc.collect()


# name: (elem_shape, channels, H, W, factor, mode)
CONFIGS = {
    "nearest-x2-u8-c3":      (unsigned(8), 3, 3, 4, (2, 2), "nearest"),
    "nearest-x2x3-s4-c2":    (signed(4), 2, 4, 3, (2, 3), "nearest"),
    "nearest-x3x1-u4":       (unsigned(4), 1, 3, 5, (3, 1), "nearest"),
    "nearest-x1x2-s8-c2":    (signed(8), 2, 3, 3, (1, 2), "nearest"),
    "nearest-x2-w1":         (unsigned(4), 2, 4, 1, (2, 2), "nearest"),
    "nearest-x2-1x1":        (unsigned(4), 1, 1, 1, (2, 2), "nearest"),
    "bilinear-x2-u8-c2":     (unsigned(8), 2, 4, 5, (2, 2), "bilinear"),
    "bilinear-x4-s4":        (signed(4), 1, 3, 3, (4, 4), "bilinear"),
    "bilinear-x8-u4-c2":     (unsigned(4), 2, 2, 3, (8, 8), "bilinear"),
    "bilinear-x4x2-s8-c3":   (signed(8), 3, 3, 2, (4, 2), "bilinear"),
    "bilinear-x1x2-u8-c2":   (unsigned(8), 2, 3, 4, (1, 2), "bilinear"),
    "bilinear-x2x1-s4-c2":   (signed(4), 2, 4, 3, (2, 1), "bilinear"),
    "bilinear-x2-h1":        (unsigned(8), 1, 1, 4, (2, 2), "bilinear"),
    "bilinear-x2-w1":        (signed(8), 1, 4, 1, (2, 2), "bilinear"),
}


def _make(config):
    elem_shape, channels, height, width, factor, mode = config
    return UpsampleLayer(elem_shape=elem_shape, channels=channels, height=height, width=width, factor=factor,
                         mode=mode)


def _stimulus(name, frames):
    elem_shape, channels, height, width, *_ = CONFIGS[name]
    lo, hi = elem_range(elem_shape)
    x = np.random.default_rng(zlib.crc32(name.encode())).integers(
        lo, hi + 1, size=(frames, channels, height, width), dtype=np.int64)
    x[-1, :, 0, :] = hi                               # the extremes, in the last frame
    x[-1, :, -1, ::2] = lo
    return x


def _pixel_beats(x):
    return [x[n, :, y, c].tolist() for n in range(x.shape[0]) for y in range(x.shape[2]) for c in range(x.shape[3])]


def _check(got, y):
    frames, _, ho, wo = y.shape
    assert len(got) == frames * ho * wo, f"expected {frames * ho * wo} beats, got {len(got)}"
    for index, beat in enumerate(got):
        frame, rest = divmod(index, ho * wo)
        oy, ox = divmod(rest, wo)
        want = y[frame, :, oy, ox].tolist()
        assert beat == want, f"frame {frame}, pixel (oy, ox) = ({oy}, {ox}): expected {want}, got {beat}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden_under_stalls(name):
    config = CONFIGS[name]
    x = _stimulus(name, frames=2)
    y = upsample(x, config[4], config[5])
    dut = _make(config)
    assert (dut.out_height, dut.out_width) == y.shape[2:]
    got = run_stream_test(dut, _pixel_beats(x), y.shape[0] * y.shape[2] * y.shape[3], seed=len(name),
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, y)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_full_rate_cycles(name):
    """Three frames at full rate: correct, one frame per cycles_per_frame, and the documented first latency."""
    config = CONFIGS[name]
    x = _stimulus(name, frames=3)
    y = upsample(x, config[4], config[5])
    dut = _make(config)
    frames, _, ho, wo = y.shape
    in_cycles, out_cycles, got = measure_full_rate(dut, _pixel_beats(x), frames * ho * wo)
    _check(got, y)
    starts = [out_cycles[f * ho * wo] for f in range(frames)]
    assert [b - a for a, b in zip(starts, starts[1:])] == [dut.cycles_per_frame] * (frames - 1)
    if config[3] > 1:       # (with one column, bilinear's first output step reads what its priming step read)
        assert out_cycles[0] == in_cycles[dut.inputs_needed(0, 0) - 1] + 1 + dut.latency


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inputs_needed_is_exact(name):
    """Fed one input pixel at a time, output pixel p of frame f appears exactly when
    f·H·W + inputs_needed(p) input pixels are in (two frames)."""
    config = CONFIGS[name]
    x = _stimulus(name, frames=2)
    dut = _make(config)
    frames, _, height, width = x.shape
    ho, wo = dut.out_height, dut.out_width
    needed = needed_inputs(outputs_after_each_input(dut, _pixel_beats(x), quiet=12), frames * ho * wo)
    assert needed == [f * height * width + dut.inputs_needed(oy, ox)
                      for f in range(frames) for oy in range(ho) for ox in range(wo)]


def test_inputs_needed_figures():
    nearest = _make((unsigned(8), 1, 3, 4, (2, 2), "nearest"))
    # Row 0 of the output reads source row 0 as it arrives; row 1 replays it (all 4 pixels in).
    assert [nearest.inputs_needed(0, ox) for ox in range(8)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [nearest.inputs_needed(1, ox) for ox in range(8)] == [4] * 8
    assert nearest.inputs_needed(2, 0) == 5 and nearest.inputs_needed(5, 7) == 12
    bilinear = _make((unsigned(8), 1, 3, 4, (2, 2), "bilinear"))
    # Output row 0 mixes source rows 0 and 1; each step reads one column ahead (x0 + 1), the
    # row's last x0-step column 0 of the next output row (rows 0 and 1 again).
    assert [bilinear.inputs_needed(0, ox) for ox in range(8)] == [6, 6, 6, 7, 7, 8, 8, 8]
    # Output rows 1 and 2 mix source rows 0 and 1 too; row 2's last step fetches row 3's first
    # target (rows 1 and 2, column 0); row 3 mixes rows 1 and 2.
    assert [bilinear.inputs_needed(2, ox) for ox in range(8)] == [8] * 7 + [9]
    assert [bilinear.inputs_needed(3, ox) for ox in range(8)] == [10, 10, 10, 11, 11, 12, 12, 12]
    assert bilinear.inputs_needed(5, 7) == 12
    with pytest.raises(ValueError, match=re.escape("(oy, ox) must lie in the 6×8 output, not (0, 8)")):
        bilinear.inputs_needed(0, 8)


def test_figures():
    nearest = _make((unsigned(8), 16, 32, 64, (2, 3), "nearest"))
    assert (nearest.out_height, nearest.out_width) == (64, 192)
    assert nearest.cycles_per_frame == 64 * 192 and nearest.latency == 1 and nearest.shift == 0
    assert nearest.buffer_rows == 1 and nearest.line_buffer_bits == 64 * 16 * 8
    bilinear = _make((signed(8), 20, 16, 32, (8, 4), "bilinear"))
    assert bilinear.cycles_per_frame == 128 * 128 + 1 and bilinear.latency == 3
    assert bilinear.shift == 4 + 3 and bilinear.buffer_rows == 3 and bilinear.line_buffer_bits == 3 * 32 * 20 * 8
    assert _make((signed(8), 2, 16, 32, (1, 4), "bilinear")).buffer_rows == 1
    assert _make((signed(8), 2, 16, 1, (2, 2), "nearest")).buffer_rows == 2


@pytest.mark.parametrize("mode", UpsampleLayer.MODES)
def test_emits_rtlil(mode):
    text = rtlil.convert(_make((unsigned(8), 2, 4, 6, (2, 2), mode)))
    assert "line_buffer" in text


GOOD = dict(elem_shape=unsigned(8), channels=2, height=3, width=4, factor=(2, 2), mode="bilinear")


@pytest.mark.parametrize("change, error, message", [
    (dict(elem_shape=8), TypeError,
     "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not 8"),
    (dict(channels=0), ValueError, "channels must be a positive integer, not 0"),
    (dict(height=2.5), ValueError, "height must be a positive integer, not 2.5"),
    (dict(width=None), ValueError, "width must be a positive integer, not None"),
    (dict(factor=0), ValueError, "factor must be a positive integer or a pair of positive integers, not 0"),
    (dict(factor=(2, 0)), ValueError, "factor must be a positive integer or a pair of positive integers, not (2, 0)"),
    (dict(factor=(2, 2, 2)), ValueError,
     "factor must be a positive integer or a pair of positive integers, not (2, 2, 2)"),
    (dict(mode="bicubic"), ValueError, "mode must be 'nearest' or 'bilinear', not 'bicubic'"),
    (dict(factor=(3, 2)), ValueError,
     "bilinear factors must be powers of two (1, 2, 4, …) so that the weights are exact binary fractions, "
     "not (3, 2)"),
])
def test_constructor_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        UpsampleLayer(**{**GOOD, **change})


def test_accepts_an_int_factor():
    assert _make((unsigned(8), 1, 2, 2, 3, "nearest")).factor == (3, 3)


@pytest.mark.parametrize("mode", UpsampleLayer.MODES)
def test_random_configurations(mode):
    """Seeded random small configurations: golden under stalls, and the full-rate frame period."""
    rng = np.random.default_rng(23)
    factors = [1, 2, 3, 4] if mode == "nearest" else [1, 2, 4, 8]
    for trial in range(10):
        fh, fw = (int(f) for f in rng.choice(factors, size=2))
        height, width, channels = (int(v) for v in rng.integers(1, 5, size=3))
        elem_shape = [unsigned(4), signed(5)][trial % 2]
        lo, hi = elem_range(elem_shape)
        x = rng.integers(lo, hi + 1, size=(3, channels, height, width), dtype=np.int64)
        y = upsample(x, (fh, fw), mode)
        config = (elem_shape, channels, height, width, (fh, fw), mode)
        got = run_stream_test(_make(config), _pixel_beats(x), y[0].size // channels * 3, seed=trial,
                              valid_prob=0.6, ready_prob=0.6)
        _check(got, y)
        dut = _make(config)
        pixels = y.shape[2] * y.shape[3]
        _, out_cycles, got = measure_full_rate(dut, _pixel_beats(x), 3 * pixels)
        _check(got, y)
        assert out_cycles[2 * pixels] - out_cycles[pixels] == dut.cycles_per_frame, config


@pytest.mark.synth
@pytest.mark.parametrize("factor", [2])
def test_bilinear_blends_take_no_dsp_on_xc7(factor):
    """Issue 12: each blend multiplies by its narrow weight in shift-and-add logic, so Yosys puts no
    multiplier in a DSP48E1 (it would map a ``*`` of these widths to one); the estimate says the same.
    (``python bench/upsample_synth.py`` does 64 channels: 0 DSP as well.)"""
    from amaranth.back import verilog

    from hwseg.estimate import resources as R
    from hwseg.synth import synthesize

    layer = UpsampleLayer(elem_shape=unsigned(8), channels=2, height=2, width=4, factor=factor, mode="bilinear")
    totals = synthesize(verilog.convert(layer, name="top", emit_src=False), "top", "xc7").totals
    assert totals["dsp"] == 0 and totals["lut"] > 0, totals
    estimate = R.upsampler(channels=2, elem_bits=8, bilinear=True, shift=layer.shift, rows=layer.buffer_rows,
                           factor=layer.factor, height=2, width=4, family="xc7")
    assert estimate.dsp == 0

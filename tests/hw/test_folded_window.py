# amaranth: UnusedElaboratable=no
"""FoldedWindow against golden.sliding_windows under random valid gaps and ready backpressure, and its
cycles against the estimate's recurrence (hwseg.estimate.cycles), beat for beat.

(The first line silences Amaranth's warning for components built here only to read their figures or to
fail validation, never elaborated.)
"""

import re

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.estimate.cycles import folded_window_cycles, folded_window_geometry, folded_window_steps
from hwseg.golden import sliding_windows
from hwseg.hw.folded_window import FoldedWindow
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

# name: FoldedWindow parameters (elem_shape, channels, height, width, kernel, stride, padding, dilation,
# pad_value, simd, repeats[, slack])
CONFIGS = {
    "3x3-p1-simd2-nf2":       (unsigned(4), 4, 6, 7, (3, 3), (1, 1), (1, 1), (1, 1), 0, 2, 2),
    "3x3-p1-simd1-signed":    (signed(6), 3, 5, 6, (3, 3), (1, 1), (1, 1), (1, 1), -5, 1, 1),
    "3x3-s2-p1-simd1-nf3":    (unsigned(4), 2, 12, 10, (3, 3), (2, 2), (1, 1), (1, 1), 9, 1, 3),
    "1x3-d8-p08":             (signed(5), 3, 6, 20, (1, 3), (1, 1), (0, 8), (1, 8), -3, 1, 1),
    "3x1-d3-p30-simd2":       (unsigned(3), 4, 11, 3, (3, 1), (1, 1), (3, 0), (3, 1), 0, 2, 2),
    "2x3-d32-p11-simd4":      (unsigned(3), 4, 8, 12, (2, 3), (1, 1), (1, 1), (3, 2), 5, 4, 1),
    "3x3-s3-p21-writer-bound": (unsigned(4), 2, 7, 9, (3, 3), (3, 3), (2, 1), (1, 1), 15, 2, 1),
    "5x5-s2-p21":             (unsigned(5), 3, 12, 10, (5, 5), (2, 2), (2, 1), (1, 1), 0, 1, 1),
    "3x3-frame-equals-kernel": (unsigned(4), 2, 3, 3, (3, 3), (1, 1), (0, 0), (1, 1), 0, 1, 1),
    "2x1-W1":                 (unsigned(4), 1, 7, 1, (2, 1), (1, 1), (0, 0), (1, 1), 0, 1, 2),
    "1x3-d4-s3-slack1":       (unsigned(3), 3, 4, 11, (1, 3), (3, 3), (0, 6), (1, 4), 0, 3, 3, 1),
    "3x3-p1-slack2":          (signed(4), 2, 5, 5, (3, 3), (1, 1), (1, 1), (1, 1), 0, 1, 1, 2),
}


def _make(config):
    elem_shape, channels, height, width, kernel, stride, padding, dilation, pad_value, simd, repeats, *slack = config
    return FoldedWindow(elem_shape=elem_shape, channels=channels, height=height, width=width, kernel=kernel,
                        stride=stride, padding=padding, dilation=dilation, pad_value=pad_value, simd=simd,
                        repeats=repeats, slack=slack[0] if slack else None)


def _frames(dut, *, seed, count=2):
    lo, hi = elem_range(dut.elem_shape)
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(count, dut.channels, dut.height, dut.width))
    x[-1, :, 0, :], x[-1, :, -1, :] = hi, lo
    return x


def _slice_beats(x, simd):
    """Raster order, a pixel as channels / simd beats of simd channels, frame after frame."""
    n, c, h, w = x.shape
    return [x[f, b * simd:(b + 1) * simd, y, col].tolist()
            for f in range(n) for y in range(h) for col in range(w) for b in range(c // simd)]


def _check(dut, x, got):
    """Window (oy, ox) served `repeats` times, each its slices in the order (ky, kx, channel beat)."""
    ref = np.asarray(sliding_windows(x, dut.kernel, dut.stride, dut.padding, dut.dilation, pad_value=dut.pad_value))
    frames, ho, wo, kh, kw, channels = ref.shape
    cb, sf = channels // dut.simd, dut.slices_per_window
    assert len(got) == frames * ho * wo * dut.repeats * sf, \
        f"expected {frames * ho * wo * dut.repeats * sf} beats, got {len(got)}"
    for index, beat in enumerate(got):
        window, rest = divmod(index, dut.repeats * sf)
        repeat, slice_ = divmod(rest, sf)
        frame, pixel = divmod(window, ho * wo)
        (oy, ox), (tap, b) = divmod(pixel, wo), divmod(slice_, cb)
        ky, kx = divmod(tap, kw)
        want = ref[frame, oy, ox, ky, kx, b * dut.simd:(b + 1) * dut.simd].tolist()
        assert beat == want, (f"frame {frame}, window (oy, ox) = ({oy}, {ox}), serving {repeat}, tap (ky, kx) = "
                              f"({ky}, {kx}), channels {b * dut.simd}..{(b + 1) * dut.simd - 1}: "
                              f"expected {want}, got {beat}")


def _model(dut, frames=None):
    geometry = dict(padded=(dut.padded_height, dut.padded_width), out=(dut.out_height, dut.out_width),
                    kernel=dut.kernel, stride=dut.stride, dilation=dut.dilation)
    rates = dict(beats_per_pixel=dut.beats_per_pixel, cycles_per_window=dut.repeats * dut.slices_per_window,
                 slack=dut.slack)
    if frames is None:
        return folded_window_cycles(**geometry, **rates)
    return folded_window_steps(**geometry, **rates, frames=frames)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_windows_match_golden_under_stalls(name):
    dut = _make(CONFIGS[name])
    seed = sum(map(ord, name))
    x = _frames(dut, seed=seed)
    count = x.shape[0] * dut.out_height * dut.out_width * dut.repeats * dut.slices_per_window
    got = run_stream_test(dut, _slice_beats(x, dut.simd), count, seed=seed, valid_prob=0.6, ready_prob=0.6,
                          timeout=20 * _model(dut) + 100)
    _check(dut, x, got)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_window_starts_when_the_estimate_says(name):
    """At full rate each window's first beat leaves 1 cycle after the cycle the recurrence of
    hwseg.estimate.cycles starts it, over three frames; the frame period is folded_window_cycles."""
    dut = _make(CONFIGS[name])
    x = _frames(dut, seed=1, count=3)
    per_window = dut.repeats * dut.slices_per_window
    count = x.shape[0] * dut.out_height * dut.out_width * per_window
    _, outputs, got = measure_full_rate(dut, _slice_beats(x, dut.simd), count, limit=10 * count + 1000)
    _check(dut, x, got)
    starts = np.cumsum(_model(dut, frames=3))
    assert (np.array(outputs[::per_window]) - dut.latency + 1 == starts).all()
    per_frame = dut.out_height * dut.out_width * per_window
    assert outputs[3 * per_frame - 1] - outputs[2 * per_frame - 1] == _model(dut)


def test_latency_from_the_input_that_completes_the_first_window():
    dut = _make(CONFIGS["3x3-p1-simd2-nf2"])
    x = _frames(dut, seed=2)
    inputs, outputs, _ = measure_full_rate(dut, _slice_beats(x, dut.simd), 7 * 6 * 2 * 18)
    # window (0, 0) with padding 1 needs input pixel (1, 1): its last beat is input beat (1·7 + 1)·2 + 1
    assert outputs[0] - inputs[(1 * 7 + 1) * 2 + 1] == dut.latency == 2


def test_figures():
    dut = _make(CONFIGS["3x3-p1-simd2-nf2"])   # 4 channels of 4 bits, 6×7 padded to 8×9
    assert (dut.out_height, dut.out_width, dut.beats_per_pixel, dut.slices_per_window) == (6, 7, 2, 18)
    assert dut.span == 2 * 9 + 3 and dut.gaps == (1, 3, 8 * 9 - 5 * 9 - 6)
    assert dut.slack == 3 + 1 and dut.ring_positions == 21 + 4
    assert dut.memory_shape == (25 * 2, 2 * 4)
    # the estimate's copy of the geometry agrees
    geometry = folded_window_geometry(padded=(8, 9), out=(6, 7), kernel=(3, 3), stride=(1, 1), dilation=(1, 1))
    assert (geometry["span"], geometry["gaps"], geometry["slack"]) == (dut.span, dut.gaps, dut.slack)
    dut = _make(CONFIGS["1x3-d8-p08"])         # 1×3 dilation 8: span 17 positions, not 3 rows
    assert dut.span == 17 and dut.memory_shape == ((17 + dut.slack) * 3, 5)


def test_verilog_conversion_is_deterministic():
    from amaranth.back import verilog
    dut = _make(CONFIGS["3x3-s2-p1-simd1-nf3"])
    text = verilog.convert(dut, name="folded_window", emit_src=False)
    assert "module folded_window" in text
    assert verilog.convert(dut, name="folded_window", emit_src=False) == text


GOOD = dict(elem_shape=unsigned(8), channels=4, height=5, width=6, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
            dilation=(1, 1), pad_value=0, simd=2, repeats=1)


@pytest.mark.parametrize("change, error, message", [
    (dict(simd=3), ValueError, "simd must divide the 4 channels (one of 1, 2, 4), not 3"),
    (dict(simd=0), ValueError, "simd must be a positive integer, not 0"),
    (dict(repeats=0), ValueError, "repeats must be a positive integer, not 0"),
    (dict(slack=0), ValueError, "slack must be a positive integer, not 0"),
    (dict(channels=-2), ValueError, "channels must be a positive integer, not -2"),
    (dict(pad_value=256), ValueError, "pad_value must be representable in unsigned(8) (0..255), not 256"),
    (dict(elem_shape=8), TypeError, "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not 8"),
    (dict(kernel=(7, 3), padding=(0, 0)), ValueError,
     "kernel (7, 3) with dilation (1, 1) spans 7×3 pixels, more than the padded frame 5×6 "
     "(height 5 + 2·0, width 6 + 2·0): no window fits"),
])
def test_constructor_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        FoldedWindow(**{**GOOD, **change})

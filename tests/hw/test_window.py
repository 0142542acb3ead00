# amaranth: UnusedElaboratable=no
"""SlidingWindow against golden.sliding_windows, under random valid gaps and ready backpressure.

(The first line silences Amaranth's warning for components built here only to read their
figures or to fail validation, never elaborated.)
"""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.golden import sliding_windows
from hwseg.hw.window import SlidingWindow
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test


def _frames(shape, channels, height, width, *, seed, count=2):
    lo, hi = elem_range(shape)
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(count, channels, height, width), dtype=np.int64)


def _pixel_beats(x):
    """Raster order, one whole pixel (all channels) per beat, frame after frame."""
    return [x[n, :, y, col].tolist() for n in range(x.shape[0]) for y in range(x.shape[2]) for col in range(x.shape[3])]


# (elem_shape, channels, height, width, kernel, stride, padding, dilation, pad_value)
CONFIGS = {
    "1x1":                  (unsigned(8), 3, 7, 9, (1, 1), (1, 1), (0, 0), (1, 1), 0),
    "1x1-s2-p2-padonly":    (signed(5), 1, 7, 9, (1, 1), (2, 2), (2, 2), (1, 1), -7),
    "3x3-p1":               (signed(6), 3, 7, 9, (3, 3), (1, 1), (1, 1), (1, 1), -5),
    "3x3-p0-u":             (unsigned(4), 5, 7, 9, (3, 3), (1, 1), (0, 0), (1, 1), 0),
    "3x3-s2-p1":            (unsigned(4), 1, 12, 10, (3, 3), (2, 2), (1, 1), (1, 1), 9),
    "3x3-s3-p21":           (signed(4), 1, 12, 10, (3, 3), (3, 3), (2, 1), (1, 1), 3),
    "3x3-s3-p0-c5":         (unsigned(3), 5, 12, 10, (3, 3), (3, 3), (0, 0), (1, 1), 0),
    "3x3-s12-p01":          (unsigned(5), 1, 7, 9, (3, 3), (1, 2), (0, 1), (1, 1), 31),
    "3x1-p10":              (signed(8), 5, 7, 9, (3, 1), (1, 1), (1, 0), (1, 1), -128),
    "1x3-s21-p01":          (unsigned(6), 1, 7, 9, (1, 3), (2, 1), (0, 1), (1, 1), 63),
    "5x5-p2":               (signed(5), 1, 7, 9, (5, 5), (1, 1), (2, 2), (1, 1), 7),
    "5x5-s2-p21":           (unsigned(5), 3, 12, 10, (5, 5), (2, 2), (2, 1), (1, 1), 0),
    "2x2-s2":               (unsigned(8), 3, 7, 9, (2, 2), (2, 2), (0, 0), (1, 1), 0),
    "2x2-s1-p10":           (signed(3), 1, 7, 9, (2, 2), (1, 1), (1, 0), (1, 1), -1),
    "2x2-p2-padonly":       (unsigned(4), 1, 7, 9, (2, 2), (3, 2), (2, 2), (1, 1), 15),
    "3x3-d2-p2":            (signed(4), 1, 7, 9, (3, 3), (1, 1), (2, 2), (2, 2), 0),
    "3x3-d21-p21":          (unsigned(4), 3, 7, 9, (3, 3), (1, 1), (2, 1), (2, 1), 5),
    "3x3-d12-s2-p02":       (signed(6), 1, 12, 10, (3, 3), (2, 2), (0, 2), (1, 2), -32),
    "3x3-d4-p4":            (unsigned(4), 1, 12, 10, (3, 3), (1, 1), (4, 4), (4, 4), 0),
    "3x3-d4-s3-p12":        (signed(4), 3, 12, 10, (3, 3), (3, 3), (1, 2), (4, 4), 2),
    "3x3-d8-p02":           (unsigned(4), 1, 18, 20, (3, 3), (1, 1), (0, 2), (8, 8), 0),
    # ERFNet's factorized dilated pair: gaps of dw − 1 pixels between the taps of a row in a Memory
    # (dw − 1 = 2, the least memory depth, and 7), the row delays in another
    "1x3-d8-p08":           (signed(5), 3, 6, 20, (1, 3), (1, 1), (0, 8), (1, 8), -3),
    "1x3-d3-p03-s2":        (unsigned(4), 2, 5, 9, (1, 3), (1, 2), (0, 3), (1, 3), 0),
    "2x3-d32-p11":          (unsigned(3), 1, 8, 12, (2, 3), (1, 1), (1, 1), (3, 2), 5),
    # Row delay D = dh·Wp − L of 0 (a wire) and 1 (registers instead of a Memory).
    "2x3-full-width-D0":    (unsigned(4), 1, 7, 3, (2, 3), (1, 1), (0, 0), (1, 1), 0),
    "3x3-W4-D1":            (signed(4), 3, 7, 4, (3, 3), (1, 1), (0, 0), (1, 1), 0),
    "2x1-d1-W1-D0":         (unsigned(4), 1, 7, 1, (2, 1), (1, 1), (0, 0), (1, 1), 0),
    "3x3-frame-equals-kernel": (unsigned(4), 2, 3, 3, (3, 3), (1, 1), (0, 0), (1, 1), 0),
}


def _make(config):
    elem_shape, channels, height, width, kernel, stride, padding, dilation, pad_value = config
    return SlidingWindow(elem_shape=elem_shape, channels=channels, height=height, width=width, kernel=kernel,
                         stride=stride, padding=padding, dilation=dilation, pad_value=pad_value)


def _expected(dut, x):
    ref = sliding_windows(x, dut.kernel, dut.stride, dut.padding, dut.dilation, pad_value=dut.pad_value)
    n, ho, wo = ref.shape[:3]
    return np.asarray(ref).reshape(n, ho, wo, -1)


def _check_windows(dut, expected, got):
    n, ho, wo, size = expected.shape
    assert len(got) == n * ho * wo, f"expected {n * ho * wo} windows, got {len(got)}"
    kw, channels = dut.kernel[1], dut.channels
    for index, beat in enumerate(got):
        frame, rest = divmod(index, ho * wo)
        oy, ox = divmod(rest, wo)
        want = expected[frame, oy, ox].tolist()
        if beat != want:
            e = next(e for e in range(size) if beat[e] != want[e])
            k, c = divmod(e, channels)
            ky, kx = divmod(k, kw)
            raise AssertionError(
                f"frame {frame}, window (oy, ox) = ({oy}, {ox}), element {e} (ky {ky}, kx {kx}, c {c}): "
                f"expected {want[e]}, got {beat[e]}\n expected {want}\n got      {beat}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_windows_match_golden_under_stalls(name):
    dut = _make(CONFIGS[name])
    seed = sum(map(ord, name))
    x = _frames(dut.elem_shape, dut.channels, dut.height, dut.width, seed=seed)
    expected = _expected(dut, x)
    assert expected.shape[1:3] == (dut.out_height, dut.out_width)
    got = run_stream_test(dut, _pixel_beats(x), expected.shape[0] * dut.out_height * dut.out_width, seed=seed,
                          valid_prob=0.6, ready_prob=0.6, timeout=20 * dut.cycles_per_frame + 100)
    _check_windows(dut, expected, got)


@pytest.mark.parametrize("name", ["3x3-s2-p1", "3x3-d21-p21", "2x2-s2"])
def test_cycles_per_frame_and_latency(name):
    dut = _make(CONFIGS[name])
    (kh, kw), (ph, pw), (dh, dw) = dut.kernel, dut.padding, dut.dilation
    x = _frames(dut.elem_shape, dut.channels, dut.height, dut.width, seed=1)
    per_frame = dut.out_height * dut.out_width
    inputs, outputs, got = measure_full_rate(dut, _pixel_beats(x), x.shape[0] * per_frame,
                                             limit=4 * dut.cycles_per_frame)
    _check_windows(dut, _expected(dut, x), got)

    interval = outputs[2 * per_frame - 1] - outputs[per_frame - 1]
    hp, wp = dut.height + 2 * ph, dut.width + 2 * pw
    assert interval == hp * wp == dut.cycles_per_frame

    # Unstalled, the input is consumed at one pixel per padded position: the frame's pixels
    # arrive at the padded raster positions, frame after frame, Hp·Wp cycles apart.
    first = inputs[0]
    want = [first + n * hp * wp + (y + ph) * wp + (col + pw) - (ph * wp + pw)
            for n in range(2) for y in range(dut.height) for col in range(dut.width)]
    assert len(inputs) > len(want) // 2 and inputs == want[:len(inputs)]

    # Window (0, 0) leaves 1 cycle after the transfer of its bottom-right input pixel.
    y, col = (kh - 1) * dh - ph, (kw - 1) * dw - pw
    assert 0 <= y < dut.height and 0 <= col < dut.width, "pick a configuration whose first window ends in frame"
    assert outputs[0] - inputs[y * dut.width + col] == dut.latency == 1


def test_figures():
    dut = _make(CONFIGS["3x3-p1"])  # signed(6) × 3 channels, 7×9 padded to 9×11
    assert (dut.out_height, dut.out_width) == (7, 9)
    assert dut.cycles_per_frame == 9 * 11
    assert dut.row_length == 3 and dut.row_delay == 11 - 3
    assert dut.line_buffer_bits == 2 * (11 - 3) * 3 * 6
    dut = _make(CONFIGS["3x3-d4-p4"])  # 3×3 dilation 4, 12×10 padded to 20×18, unsigned(4) × 1
    assert (dut.out_height, dut.out_width) == (12, 10)
    assert dut.row_length == 9 and dut.line_buffer_bits == 2 * (4 * 18 - 9) * 4
    assert _make(CONFIGS["3x1-p10"]).line_buffer_bits == 2 * (9 - 1) * 5 * 8
    assert _make(CONFIGS["1x3-s21-p01"]).line_buffer_bits == 0
    assert _make(CONFIGS["3x3-W4-D1"]).line_buffer_bits == 0  # D = 1: registers
    # taps every dw: with dw − 1 ≥ 2 pixels between them, only the kw taps of each row are registers
    assert _make(CONFIGS["3x3-p1"]).tap_delay_bits == 0 and _make(CONFIGS["3x3-p1"]).register_bits == 3 * 3 * 3 * 6
    dut = _make(CONFIGS["1x3-d8-p08"])  # signed(5) × 3 channels: 15-bit pixels
    assert dut.row_length == 17 and dut.line_buffer_bits == 0
    assert dut.tap_delay_bits == 1 * 2 * 7 * 15 and dut.register_bits == 1 * 3 * 15
    dut = _make(CONFIGS["3x3-d4-p4"])  # 3 rows, gaps of 3 pixels of 4 bits
    assert dut.tap_delay_bits == 3 * 2 * 3 * 4 and dut.register_bits == 3 * 3 * 4
    assert _make(CONFIGS["2x3-d32-p11"]).tap_delay_bits == 0     # dw − 1 = 1: a register per gap
    assert _make(CONFIGS["2x3-d32-p11"]).register_bits == 2 * 5 * 3


def test_verilog_conversion():
    from amaranth.back import verilog
    dut = _make(CONFIGS["3x3-d21-p21"])
    text = verilog.convert(dut, name="sliding_window", emit_src=False)
    assert "module sliding_window" in text
    assert verilog.convert(dut, name="sliding_window", emit_src=False) == text  # elaborate does not mutate


GOOD = dict(elem_shape=unsigned(8), channels=2, height=5, width=6, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
            dilation=(1, 1), pad_value=0)


@pytest.mark.parametrize("change, error, message", [
    (dict(elem_shape=8), TypeError, r"^elem_shape must be an Amaranth shape unsigned\(b\) or signed\(b\) with b >= 1, not 8$"),
    (dict(elem_shape=unsigned(0)), TypeError, r"not unsigned\(0\)$"),
    (dict(channels=0), ValueError, r"^channels must be a positive integer, not 0$"),
    (dict(channels=True), ValueError, r"^channels must be a positive integer, not True$"),
    (dict(height=2.0), ValueError, r"^height must be a positive integer, not 2.0$"),
    (dict(width=-1), ValueError, r"^width must be a positive integer, not -1$"),
    (dict(kernel=3), ValueError, r"^kernel must be a pair of positive integers, not 3$"),
    (dict(kernel=(3, 0)), ValueError, r"^kernel must be a pair of positive integers, not \(3, 0\)$"),
    (dict(stride=(1, 1, 1)), ValueError, r"^stride must be a pair of positive integers, not \(1, 1, 1\)$"),
    (dict(padding=(-1, 0)), ValueError, r"^padding must be a pair of non-negative integers, not \(-1, 0\)$"),
    (dict(dilation=(2, "1")), ValueError, r"^dilation must be a pair of positive integers, not \(2, '1'\)$"),
    (dict(pad_value=256), ValueError, r"^pad_value must be representable in unsigned\(8\) \(0..255\), not 256$"),
    (dict(pad_value=-1), ValueError, r"^pad_value must be representable in unsigned\(8\) \(0..255\), not -1$"),
    (dict(elem_shape=signed(4), pad_value=8), ValueError, r"^pad_value must be representable in signed\(4\) \(-8..7\), not 8$"),
    (dict(pad_value=1.5), TypeError, r"^pad_value must be an int, not 1.5$"),
    (dict(height=4, kernel=(5, 5), padding=(0, 1)), ValueError,
     r"^kernel \(5, 5\) with dilation \(1, 1\) spans 5×5 pixels, more than the padded frame 4×8 "
     r"\(height 4 \+ 2·0, width 6 \+ 2·1\): no window fits$"),
    (dict(dilation=(1, 4)), ValueError, r"spans 3×9 pixels, more than the padded frame 7×8"),
])
def test_constructor_errors(change, error, message):
    with pytest.raises(error, match=message):
        SlidingWindow(**{**GOOD, **change})


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        SlidingWindow(unsigned(8), 2, 5, 6, (3, 3))

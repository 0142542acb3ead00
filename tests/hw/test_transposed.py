"""ConvTranspose2dLayer against golden.conv_transpose2d: frames back to back under random valid
gaps and ready backpressure, the full-rate cycle count, the input each output pixel needs, and
the constructor's checks.
"""

import gc
import re
import zlib

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned

from hwseg.golden import conv_transpose2d
from hwseg.hw.transposed import ConvTranspose2dLayer
from hwseg.ir.ops import ConvTranspose2d
from hwseg.ir.types import Int, UInt
from tests.hw.need_probe import needed_inputs, outputs_after_each_input
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

# Components built only to read their figures or to fail validation are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unused():
    """Let the UnusedElaboratable warnings of this test's leftovers fire under this module's filter."""
    yield
    gc.collect()

# name: (elem_shape, C_in, C_out, H, W, kernel, stride, padding, output_padding, pe, simd, weight bits)
CONFIGS = {
    # ERFNet's upsampler block (3×3, stride 2, padding 1, output_padding 1) and output layer (2×2, stride 2).
    "erfnet-up-u8-pe2-simd1":   (unsigned(8), 3, 4, 3, 4, (3, 3), (2, 2), (1, 1), (1, 1), 2, 1, 8),
    "erfnet-up-s4-full":        (signed(4), 2, 3, 4, 5, (3, 3), (2, 2), (1, 1), (1, 1), 3, 2, 4),
    "erfnet-out-u4-pe1-simd2":  (unsigned(4), 4, 3, 3, 4, (2, 2), (2, 2), (0, 0), (0, 0), 1, 2, 4),
    "erfnet-out-s8-pe2-simd4":  (signed(8), 4, 4, 5, 3, (2, 2), (2, 2), (0, 0), (0, 0), 2, 4, 8),
    # FCN-style 4×4 stride 2 padding 1; stride 1 (a flipped convolution); mixed axes.
    "4x4-s2-p1-u4":             (unsigned(4), 2, 2, 3, 3, (4, 4), (2, 2), (1, 1), (0, 0), 1, 1, 4),
    "3x3-s1-p1-s4":             (signed(4), 2, 2, 4, 3, (3, 3), (1, 1), (1, 1), (0, 0), 2, 2, 4),
    "3x2-s13-p20-op02-s3":      (signed(3), 3, 2, 4, 3, (3, 2), (1, 3), (2, 0), (0, 2), 2, 3, 3),
    # Stride above the kernel: phases without taps give the bias alone.
    "1x1-s3-op21-u3":           (unsigned(3), 2, 2, 3, 3, (1, 1), (3, 3), (0, 0), (2, 1), 1, 2, 3),
    # Padding beyond the stride: rows and columns no tap reads.
    "5x4-s12-p30-op01-u4":      (unsigned(4), 2, 2, 5, 4, (5, 4), (1, 2), (3, 0), (0, 1), 2, 1, 4),
    # A 1×1 input frame.
    "erfnet-up-1x1-frame":      (unsigned(4), 2, 2, 1, 1, (3, 3), (2, 2), (1, 1), (1, 1), 2, 2, 4),
}


def _stimulus(config, rng, frames=2):
    elem_shape, cin, cout, height, width, kernel, *_, bits = config
    lo, hi = elem_range(elem_shape)
    wmax = (1 << (bits - 1)) - 1
    w4 = rng.integers(-wmax, wmax + 1, size=(cin, cout, *kernel), dtype=np.int64)
    w4[0, 0, 0, 0], w4[-1, -1, -1, -1] = wmax, -wmax
    bias = rng.integers(-100, 101, size=cout, dtype=np.int64)
    x = rng.integers(lo, hi + 1, size=(frames, cin, height, width), dtype=np.int64)
    x[-1, :, 0, :], x[-1, :, -1, :] = hi, lo          # the extremes, in the last frame
    return w4, bias, x


def _ir_op(config, w4, bias):
    *_, kernel, stride, padding, output_padding, _, _, bits = config
    return ConvTranspose2d(w4, bias, Int(bits), stride=stride, padding=padding, output_padding=output_padding)


def _acc_shape(config, w4, bias):
    """The narrowest shape for the accumulator range the IR op derives (independently of the hardware)."""
    elem_shape = config[0]
    dtype = Int(elem_shape.width) if elem_shape.signed else UInt(elem_shape.width)
    least, most = _ir_op(config, w4, bias).accumulator_bounds(dtype)
    lo, hi = int(least.min()), int(most.max())
    if lo < 0:
        return signed(max((-lo - 1).bit_length(), hi.bit_length()) + 1)
    return unsigned(max(hi.bit_length(), 1))


def _make(config, w4, bias, **changes):
    elem_shape, cin, cout, height, width, kernel, stride, padding, output_padding, pe, simd, _ = config
    params = dict(elem_shape=elem_shape, channels=cin, out_channels=cout, height=height, width=width,
                  kernel=kernel, stride=stride, padding=padding, output_padding=output_padding,
                  weights=w4.tolist(), bias=None if bias is None else bias.tolist(), pe=pe, simd=simd,
                  acc_shape=_acc_shape(config, w4, np.zeros(cout, np.int64) if bias is None else bias))
    return ConvTranspose2dLayer(**{**params, **changes})


def _golden(config, w4, bias, x):
    *_, stride, padding, output_padding, _, _, _ = config
    return conv_transpose2d(x, w4, bias, stride, padding, output_padding, (1, 1))


def _pixel_beats(x):
    """Raster order, one whole pixel (all channels) per beat, frame after frame."""
    return [x[n, :, y, c].tolist() for n in range(x.shape[0]) for y in range(x.shape[2]) for c in range(x.shape[3])]


def _check(got, acc, pe):
    """Beat n of an output pixel carries channels n·pe … n·pe + pe − 1."""
    frames, cout, ho, wo = acc.shape
    nf = cout // pe
    assert len(got) == frames * ho * wo * nf, f"expected {frames * ho * wo * nf} beats, got {len(got)}"
    for index, beat in enumerate(got):
        pixel, n = divmod(index, nf)
        frame, rest = divmod(pixel, ho * wo)
        oy, ox = divmod(rest, wo)
        for lane, value in enumerate(beat):
            c = n * pe + lane
            want = int(acc[frame, c, oy, ox])
            assert value == want, (f"frame {frame}, pixel (oy, ox) = ({oy}, {ox}), channel {c} "
                                   f"(beat {n}, lane {lane}): expected {want}, got {value}")


def _setup(name, frames=2):
    config = CONFIGS[name]
    w4, bias, x = _stimulus(config, np.random.default_rng(zlib.crc32(name.encode())), frames)
    return config, w4, bias, x, _make(config, w4, bias), _golden(config, w4, bias, x)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden_under_stalls(name):
    config, w4, bias, x, dut, acc = _setup(name)
    pe = config[9]
    frames, cout, ho, wo = acc.shape
    assert (dut.out_height, dut.out_width) == (ho, wo)
    got = run_stream_test(dut, _pixel_beats(x), frames * ho * wo * (cout // pe), seed=len(name),
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, pe)


def test_no_bias():
    config, w4, _, x, _, _ = _setup("erfnet-up-s4-full")
    dut = _make(config, w4, None)
    acc = _golden(config, w4, None, x)
    frames, cout, ho, wo = acc.shape
    got = run_stream_test(dut, _pixel_beats(x), frames * ho * wo * (cout // config[9]), seed=3,
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, config[9])


@pytest.mark.parametrize("name", ["erfnet-up-u8-pe2-simd1", "erfnet-up-s4-full", "erfnet-out-u4-pe1-simd2",
                                  "4x4-s2-p1-u4", "3x2-s13-p20-op02-s3", "1x1-s3-op21-u3", "5x4-s12-p30-op01-u4",
                                  "erfnet-up-1x1-frame"])
def test_full_rate_cycles(name):
    """Three frames at full rate: correct, one frame per cycles_per_frame, and the documented first latency."""
    config, w4, bias, x, dut, acc = _setup(name, frames=3)
    pe, nf = config[9], config[2] // config[9]
    frames, _, ho, wo = acc.shape
    beats_per_frame = ho * wo * nf
    in_cycles, out_cycles, got = measure_full_rate(dut, _pixel_beats(x), frames * beats_per_frame)
    _check(got, acc, pe)
    starts = [out_cycles[f * beats_per_frame] for f in range(frames)]
    assert [b - a for a, b in zip(starts, starts[1:])] == [dut.cycles_per_frame] * (frames - 1)
    # The first output waits for its inputs; its first beat follows after its folds and the 3 stages.
    waited_for = in_cycles[dut.inputs_needed(0, 0) - 1]
    assert out_cycles[0] == waited_for + dut.cycles_per_pixel(0, 0) // nf + dut.latency


def test_cycle_formula_of_erfnet_layers():
    """By hand: 3×3/2 p1 op1 has 1, 2, 2, 4 taps in its four phases, i.e. 9·H·W taps per frame
    (each input pixel meets each tap once); 2×2/2 has one tap per output pixel, 4·H·W."""
    up = CONFIGS["erfnet-up-u8-pe2-simd1"]
    w4, bias, _ = _stimulus(up, np.random.default_rng(0))
    dut = _make(up, w4, bias, height=8, width=16, pe=1, simd=3)
    assert dut.cycles_per_frame == 4 * 1 * 9 * 8 * 16
    assert dut.buffer_rows == 3 and dut.weight_words == 4 * 1 * 9
    out = CONFIGS["erfnet-out-u4-pe1-simd2"]
    w4, bias, _ = _stimulus(out, np.random.default_rng(0))
    dut = _make(out, w4, bias, height=8, width=16)
    assert dut.cycles_per_frame == 3 * 2 * 4 * 8 * 16
    assert dut.buffer_rows == 2 and dut.weight_words == 3 * 2 * 4


@pytest.mark.parametrize("name", ["erfnet-up-u8-pe2-simd1", "erfnet-out-s8-pe2-simd4", "3x2-s13-p20-op02-s3",
                                  "1x1-s3-op21-u3", "5x4-s12-p30-op01-u4"])
def test_inputs_needed_is_exact(name):
    """Fed one input pixel at a time, output pixel p of frame f appears exactly when
    f·H·W + inputs_needed(p) input pixels are in (two frames)."""
    config, w4, bias, x, dut, _ = _setup(name)
    nf = config[2] // config[9]
    frames, _, height, width = x.shape
    ho, wo = dut.out_height, dut.out_width
    counts = outputs_after_each_input(dut, _pixel_beats(x), quiet=2 * max(
        dut.cycles_per_pixel(y, c) for y in range(ho) for c in range(wo)) + 8)
    needed = needed_inputs(counts, frames * ho * wo * nf)
    want = [f * height * width + dut.inputs_needed(oy, ox)
            for f in range(frames) for oy in range(ho) for ox in range(wo) for _ in range(nf)]
    assert needed == want


def test_inputs_needed_figures():
    *_, dut, _ = _setup("erfnet-up-u8-pe2-simd1")
    # 3×4 input, 6×8 output: output row oy reads input rows up to (oy + 1) // 2, columns up to (ox + 1) // 2.
    assert [dut.inputs_needed(0, ox) for ox in range(8)] == [1, 2, 2, 3, 3, 4, 4, 4]
    assert [dut.inputs_needed(1, ox) for ox in range(8)] == [5, 6, 6, 7, 7, 8, 8, 8]
    assert dut.inputs_needed(2, 0) == 8 and dut.inputs_needed(5, 7) == 12
    with pytest.raises(ValueError, match=re.escape("(oy, ox) must lie in the 6×8 output, not (6, 0)")):
        dut.inputs_needed(6, 0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_accumulator_range_matches_ir(name):
    config = CONFIGS[name]
    w4, bias, _ = _stimulus(config, np.random.default_rng(1))
    dut = _make(config, w4, bias)
    elem_shape = config[0]
    dtype = Int(elem_shape.width) if elem_shape.signed else UInt(elem_shape.width)
    least, most = _ir_op(config, w4, bias).accumulator_bounds(dtype)
    assert dut.acc_range == (int(least.min()), int(most.max()))


def test_extreme_accumulators_fit():
    """Inputs at the extremes that drive every accumulator to its bound, in the narrowest acc_shape."""
    config = CONFIGS["erfnet-up-s4-full"]
    _, cin, cout, height, width, *_ = config
    lo, hi = elem_range(config[0])
    w4 = np.full((cin, cout, 3, 3), 7, np.int64)
    w4[:, 1] = -7
    bias = np.array([5, -5, 0], np.int64)
    x = np.stack([np.full((cin, height, width), hi), np.full((cin, height, width), lo)]).astype(np.int64)
    dut = _make(config, w4, bias)
    acc = _golden(config, w4, bias, x)
    assert {int(acc.min()), int(acc.max())} <= set(dut.acc_range) and acc.max() == dut.acc_range[1]
    got = run_stream_test(dut, _pixel_beats(x), 2 * dut.out_height * dut.out_width, seed=5,
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, config[9])


def test_emits_rtlil():
    config, w4, bias, *_ = _setup("erfnet-up-s4-full")
    dut = _make(config, w4, bias)
    text = rtlil.convert(dut)
    assert "line_buffer" in text and "weights" in text


def _weights_with(path, value):
    """GOOD's weights (2, 4, 3, 3), all ones, with the entry at ``path`` replaced by ``value``."""
    w = [[[[1] * 3 for _ in range(3)] for _ in range(4)] for _ in range(2)]
    target = w
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return w


GOOD = dict(elem_shape=unsigned(8), channels=2, out_channels=4, height=3, width=4, kernel=(3, 3), stride=(2, 2),
            padding=(1, 1), output_padding=(1, 1), weights=[[[[1] * 3] * 3] * 4] * 2, bias=[0] * 4, pe=2, simd=1,
            acc_shape=signed(16))


@pytest.mark.parametrize("change, error, message", [
    (dict(elem_shape=unsigned(0)), TypeError,
     "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not unsigned(0)"),
    (dict(channels=0), ValueError, "channels must be a positive integer, not 0"),
    (dict(out_channels=2.0), ValueError, "out_channels must be a positive integer, not 2.0"),
    (dict(height=-1), ValueError, "height must be a positive integer, not -1"),
    (dict(kernel=(3,)), ValueError, "kernel must be a pair of positive integers, not (3,)"),
    (dict(stride=(0, 2)), ValueError, "stride must be a pair of positive integers, not (0, 2)"),
    (dict(padding=(-1, 0)), ValueError, "padding must be a pair of non-negative integers, not (-1, 0)"),
    (dict(dilation=(2, 2)), ValueError,
     "dilation must be (1, 1) (dilated transposed convolutions are not supported), not (2, 2)"),
    (dict(groups=2), ValueError, "groups must be 1 (grouped transposed convolutions are not supported), not 2"),
    (dict(output_padding=(2, 0)), ValueError,
     "output_padding must be smaller than the stride (2, 2) on each axis (as torch requires with dilation 1), "
     "not (2, 0)"),
    (dict(padding=(4, 1)), ValueError,
     "padding (4, 1) is too large: a 3×4 input gives an empty 0×8 output for a 3×3 kernel with stride (2, 2)"),
    (dict(weights=[[[[1] * 3] * 3] * 4] * 3), ValueError,
     "weights must be a list of channels=2 lists (weights have torch's layout (C_in, C_out, kh, kw) = "
     "(2, 4, 3, 3)), not " + repr([[[[1] * 3] * 3] * 4] * 3)),
    (dict(weights=_weights_with((1, 3, 2), [1, 2])), ValueError,
     "weights[1][3][2] must be a list of kw=3 ints (weights have torch's layout (C_in, C_out, kh, kw) = "
     "(2, 4, 3, 3)), not [1, 2]"),
    (dict(weights=_weights_with((1, 3, 1, 1), 0.5)), TypeError,
     "weights[1][3][1][1] must be an int, not 0.5"),
    (dict(bias=[0] * 3), ValueError, "bias must be None or a list of 4 ints (one per output channel), not [0, 0, 0]"),
    (dict(pe=3), ValueError, "pe must divide the 4 output channels (one of 1, 2, 4), not 3"),
    (dict(simd=3), ValueError, "simd must divide the 2 input channels (one of 1, 2), not 3"),
    (dict(acc_shape=unsigned(10)), ValueError,
     "acc_shape unsigned(10) cannot hold the accumulator range [0, 2040] of these weights, bias and "
     "elem_shape, which needs unsigned(11)"),
    (dict(acc_shape="wide"), TypeError, "acc_shape must be a shape, not 'wide'"),
])
def test_constructor_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ConvTranspose2dLayer(**{**GOOD, **change})


def _random_configs(count, seed):
    """Small random configurations torch allows: every kernel/stride/padding/output_padding mix."""
    rng = np.random.default_rng(seed)
    folds = [(1, 2, 1, 1), (2, 2, 2, 1), (2, 4, 2, 2), (3, 2, 1, 3), (2, 3, 3, 2)]   # (C_in, C_out, pe, simd)
    configs = []
    while len(configs) < count:
        axes = []
        for _ in range(2):
            k, s = int(rng.integers(1, 6)), int(rng.integers(1, 4))
            axes.append((k, s, int(rng.integers(0, 4)), int(rng.integers(0, s)), int(rng.integers(1, 6))))
        (kh, sh, ph, oph, height), (kw, sw, pw, opw, width) = axes
        if (height - 1) * sh - 2 * ph + kh + oph < 1 or (width - 1) * sw - 2 * pw + kw + opw < 1:
            continue
        cin, cout, pe, simd = folds[len(configs) % len(folds)]
        elem_shape = [unsigned(3), signed(3)][len(configs) % 2]
        configs.append((elem_shape, cin, cout, height, width, (kh, kw), (sh, sw), (ph, pw), (oph, opw), pe, simd, 3))
    return configs


@pytest.mark.parametrize("index", range(3))
def test_random_configurations(index):
    """Seeded random configurations, 8 per case: golden under stalls, and the full-rate frame period."""
    for config in _random_configs(24, seed=17)[index * 8:(index + 1) * 8]:
        w4, bias, x = _stimulus(config, np.random.default_rng(index), frames=3)
        acc = _golden(config, w4, bias, x)
        pe, nf = config[9], config[2] // config[9]
        frames, _, ho, wo = acc.shape
        got = run_stream_test(_make(config, w4, bias), _pixel_beats(x), frames * ho * wo * nf, seed=index,
                              valid_prob=0.6, ready_prob=0.6)
        _check(got, acc, pe)
        dut = _make(config, w4, bias)
        _, out_cycles, got = measure_full_rate(dut, _pixel_beats(x), frames * ho * wo * nf)
        _check(got, acc, pe)
        period = out_cycles[2 * ho * wo * nf] - out_cycles[ho * wo * nf]
        assert period == dut.cycles_per_frame, f"{config}: a frame took {period} cycles, not {dut.cycles_per_frame}"

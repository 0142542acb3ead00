"""Conv2dLayer (SlidingWindow → MacArray, or MacArray alone for a pointwise 1×1) against
golden.conv2d, two frames back to back under random valid gaps and ready backpressure.
"""

import gc
import re
import zlib

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.golden import conv2d
from hwseg.hw.bitconv import BitMacArray
from hwseg.hw.layers import Conv2dLayer
from tests.hw.streams import elem_range, run_stream_test

# Layers built only to fail validation leave their blocks (built in layers.py) never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# name: (elem_shape, C_in, height, width, C_out, kernel, stride, padding, dilation, pe, simd, weight bits)
CONFIGS = {
    "3x3-p1-u8-pe2-simd9":        (unsigned(8), 3, 8, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, 9, 8),
    "3x3-p1-s4-pe1-simd1":        (signed(4), 2, 6, 5, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 4),
    "3x3-s2-p1-s4-pe3-simd6":     (signed(4), 2, 9, 7, 3, (3, 3), (2, 2), (1, 1), (1, 1), 3, 6, 4),
    "3x3-s2-p1-u8-full":          (unsigned(8), 3, 8, 9, 4, (3, 3), (2, 2), (1, 1), (1, 1), 4, 27, 8),
    "3x3-d2-p2-u8-full":          (unsigned(8), 2, 7, 8, 4, (3, 3), (1, 1), (2, 2), (2, 2), 4, 18, 8),
    "3x3-d2-p2-s4-pe2-simd3":     (signed(4), 3, 8, 6, 4, (3, 3), (1, 1), (2, 2), (2, 2), 2, 3, 4),
    "1x1-u8-pe3-simd2":           (unsigned(8), 4, 6, 5, 6, (1, 1), (1, 1), (0, 0), (1, 1), 3, 2, 8),
    "1x1-s4-pe1-simd1":           (signed(4), 3, 5, 4, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, 4),
    "1x1-s4-full":                (signed(4), 5, 4, 6, 4, (1, 1), (1, 1), (0, 0), (1, 1), 4, 5, 4),
    "1x1-s2-p1-u8-window":        (unsigned(8), 2, 5, 6, 2, (1, 1), (2, 2), (1, 1), (1, 1), 1, 2, 8),
    "5x3-s12-d12-p21-u8-pe2-simd5": (unsigned(8), 2, 10, 10, 4, (5, 3), (1, 2), (2, 1), (1, 2), 2, 5, 8),
    "5x3-s12-d12-s4-full":        (signed(4), 2, 9, 10, 3, (5, 3), (1, 2), (0, 2), (1, 2), 3, 30, 4),
}


def _window_weights(w4):
    """MacArray's weights from a (C_out, C_in, kh, kw) array, as hwseg/backend/lower.py derives them:
    row c lists the window elements in the order (ky·kw + kx)·C_in + c_in."""
    return np.transpose(w4, (0, 2, 3, 1)).reshape(w4.shape[0], -1).tolist()


def _acc_shape(w4, bias, elem_shape):
    """The narrowest shape holding every accumulator these weights and bias can produce."""
    lo, hi = elem_range(elem_shape)
    w = w4.reshape(w4.shape[0], -1)
    acc_lo = int((np.minimum(w * lo, w * hi).sum(axis=1) + bias).min())
    acc_hi = int((np.maximum(w * lo, w * hi).sum(axis=1) + bias).max())
    if acc_lo < 0:
        return signed(max((-acc_lo - 1).bit_length(), acc_hi.bit_length()) + 1)
    return unsigned(max(acc_hi.bit_length(), 1))


def _stimulus(config, rng):
    elem_shape, cin, height, width, cout, kernel, *_, bits = config
    lo, hi = elem_range(elem_shape)
    wmax = (1 << (bits - 1)) - 1 if bits > 1 else 1   # one bit: Bipolar (±1)
    w4 = (rng.choice([-1, 1], size=(cout, cin, *kernel)).astype(np.int64) if bits == 1
          else rng.integers(-wmax, wmax + 1, size=(cout, cin, *kernel), dtype=np.int64))
    w4[0, 0, 0, 0], w4[-1, -1, -1, -1] = wmax, -wmax
    bias = rng.integers(-200, 201, size=cout, dtype=np.int64)
    x = rng.integers(lo, hi + 1, size=(2, cin, height, width), dtype=np.int64)
    x[1, :, 0, :], x[1, :, -1, :] = hi, lo          # the extremes, in the second frame
    return w4, bias, x


def _make(config, w4, bias):
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, _ = config
    return Conv2dLayer(elem_shape=elem_shape, channels=cin, height=height, width=width, kernel=kernel,
                       stride=stride, padding=padding, dilation=dilation, weights=_window_weights(w4),
                       bias=bias.tolist(), pe=pe, simd=simd, acc_shape=_acc_shape(w4, bias, elem_shape))


def _pixel_beats(x):
    """Raster order, one whole pixel (all channels) per beat, frame after frame."""
    return [x[n, :, y, col].tolist() for n in range(x.shape[0]) for y in range(x.shape[2]) for col in range(x.shape[3])]


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
            assert value == want, (f"frame {frame}, pixel (oy, ox) = ({oy}, {ox}), channel {c} (beat {n}, lane {lane}): "
                                   f"expected {want}, got {value}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden_under_stalls(name):
    config = CONFIGS[name]
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, _ = config
    w4, bias, x = _stimulus(config, np.random.default_rng(zlib.crc32(name.encode())))
    dut = _make(config, w4, bias)
    pointwise = kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)
    assert (dut.sliding_window is None) == pointwise
    acc = conv2d(x, w4, bias, stride, padding, dilation)
    frames, _, ho, wo = acc.shape
    got = run_stream_test(dut, _pixel_beats(x), frames * ho * wo * (cout // pe), seed=len(name),
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, pe)


@pytest.mark.parametrize("variant", [{"pack": 2}, {"multiplier": "logic"}], ids=["packed", "logic"])
@pytest.mark.parametrize("window", ["register", "folded"])
def test_mac_variants_match_golden_under_stalls(variant, window):
    """A 3×3 convolution whose MAC array packs two PEs per multiplier or multiplies in logic, with its window in
    registers or served from memory: every channel of every output pixel as golden."""
    config = (unsigned(8), 4, 6, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, 2, 8)
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, _ = config
    w4, bias, x = _stimulus(config, np.random.default_rng(zlib.crc32(f"{variant}/{window}".encode())))
    dut = Conv2dLayer(elem_shape=elem_shape, channels=cin, height=height, width=width, kernel=kernel, stride=stride,
                      padding=padding, dilation=dilation, weights=_window_weights(w4), bias=bias.tolist(), pe=pe,
                      simd=simd, acc_shape=_acc_shape(w4, bias, elem_shape), window=window, **variant)
    acc = conv2d(x, w4, bias, stride, padding, dilation)
    frames, _, ho, wo = acc.shape
    beats = _pixel_beats(x) if window == "register" else [
        pixel[k:k + simd] for pixel in _pixel_beats(x) for k in range(0, cin, simd)]
    got = run_stream_test(dut, beats, frames * ho * wo * (cout // pe), seed=11, valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, pe)


# name: as CONFIGS, with simd dividing C_in (the folded window serves simd channels of a tap per beat)
FOLDED = {
    "3x3-p1-u8-pe2-simd1":        (unsigned(8), 4, 6, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, 1, 8),
    "3x3-p1-s4-pe1-simd2":        (signed(4), 4, 5, 6, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2, 4),
    "3x3-s2-p1-u8-pe4-simd3":     (unsigned(8), 3, 9, 8, 4, (3, 3), (2, 2), (1, 1), (1, 1), 4, 3, 8),
    "1x3-d8-p08-u8-pe1-simd1":    (unsigned(8), 2, 4, 19, 3, (1, 3), (1, 1), (0, 8), (1, 8), 1, 1, 8),
    "5x3-s12-d12-p21-s4-pe2-simd2": (signed(4), 2, 10, 10, 4, (5, 3), (1, 2), (2, 1), (1, 2), 2, 2, 4),
    # Bipolar weights (one bit): a bit convolution's serial BitMacArray (BFCN's 1×3 over 2-bit activations)
    "1x3-p01-u2-bipolar-pe1-simd1": (unsigned(2), 4, 4, 9, 3, (1, 3), (1, 1), (0, 1), (1, 1), 1, 1, 1),
    "3x3-p1-s3-bipolar-pe2-simd2":  (signed(3), 4, 5, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, 2, 1),
    # pointwise: the pixel a 1×1 window served from a ring of a few pixels (nothing holds the vector)
    "1x1-u8-pe1-simd2":             (unsigned(8), 6, 4, 5, 4, (1, 1), (1, 1), (0, 0), (1, 1), 1, 2, 8),
    "1x1-u2-bipolar-pe2-simd4":     (unsigned(2), 8, 3, 6, 4, (1, 1), (1, 1), (0, 0), (1, 1), 2, 4, 1),
}


@pytest.mark.parametrize("name", list(FOLDED))
def test_folded_window_matches_golden_under_stalls(name):
    """window="folded": FoldedWindow → serial MacArray (BitMacArray for Bipolar weights), simd channels per
    input beat."""
    config = FOLDED[name]
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, bits = config
    w4, bias, x = _stimulus(config, np.random.default_rng(zlib.crc32(name.encode())))
    dut = Conv2dLayer(elem_shape=elem_shape, channels=cin, height=height, width=width, kernel=kernel,
                      stride=stride, padding=padding, dilation=dilation, weights=_window_weights(w4),
                      bias=bias.tolist(), pe=pe, simd=simd, acc_shape=_acc_shape(w4, bias, elem_shape),
                      window="folded", arithmetic="popcount" if bits == 1 else "multiply")
    assert dut.mac_array.serial and dut.mac_array.held_bits == 0 and dut.sliding_window.simd == simd
    assert isinstance(dut.mac_array, BitMacArray) == (bits == 1)
    acc = conv2d(x, w4, bias, stride, padding, dilation)
    frames, _, ho, wo = acc.shape
    beats = [x[n, b * simd:(b + 1) * simd, y, col].tolist() for n in range(frames) for y in range(height)
             for col in range(width) for b in range(cin // simd)]
    got = run_stream_test(dut, beats, frames * ho * wo * (cout // pe), seed=len(name), valid_prob=0.6,
                          ready_prob=0.6, timeout=50_000)
    _check(got, acc, pe)


def test_no_bias():
    """bias=None: golden without a bias, through the window path."""
    config = CONFIGS["3x3-s2-p1-s4-pe3-simd6"]
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, _ = config
    w4, _, x = _stimulus(config, np.random.default_rng(3))
    dut = Conv2dLayer(elem_shape=elem_shape, channels=cin, height=height, width=width, kernel=kernel,
                      stride=stride, padding=padding, dilation=dilation, weights=_window_weights(w4),
                      bias=None, pe=pe, simd=simd, acc_shape=signed(16))
    acc = conv2d(x, w4, None, stride, padding, dilation)
    frames, _, ho, wo = acc.shape
    got = run_stream_test(dut, _pixel_beats(x), frames * ho * wo * (cout // pe), seed=9,
                          valid_prob=0.6, ready_prob=0.6)
    _check(got, acc, pe)


GOOD = dict(elem_shape=unsigned(8), channels=2, height=5, width=6, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
            dilation=(1, 1), weights=[[1] * 18] * 4, bias=[0] * 4, pe=2, simd=9, acc_shape=signed(16))


@pytest.mark.parametrize("change, error, message", [
    # MacArray's own messages
    (dict(pe=3), ValueError, "pe must divide the 4 output channels (one of 1, 2, 4), not 3"),
    (dict(simd=4), ValueError, "simd must divide in_count=18 (one of 1, 2, 3, 6, 9, 18), not 4"),
    (dict(weights=[[1] * 2] * 4), ValueError, "weights[0] must be a list of in_count=18 ints, not [1, 1]"),
    (dict(kernel=(1, 1), padding=(0, 0)), ValueError,
     "weights[0] must be a list of in_count=2 ints, not [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"),
    (dict(bias=[0] * 3), ValueError, "bias must be None or a list of 4 ints (one per output channel), not [0, 0, 0]"),
    (dict(acc_shape=unsigned(12)), ValueError,
     "acc_shape unsigned(12) cannot hold the accumulator range [0, 4590] of these weights, bias and in_shape, "
     "which needs unsigned(13)"),
    # SlidingWindow's own messages
    (dict(padding=(-1, 0)), ValueError, "padding must be a pair of non-negative integers, not (-1, 0)"),
    (dict(height=0), ValueError, "height must be a positive integer, not 0"),
    (dict(kernel=(7, 3), padding=(0, 0), weights=[[1] * 42] * 4, simd=6), ValueError,
     "kernel (7, 3) with dilation (1, 1) spans 7×3 pixels, more than the padded frame 5×6 "
     "(height 5 + 2·0, width 6 + 2·0): no window fits"),
    (dict(elem_shape=unsigned(0)), TypeError,
     "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not unsigned(0)"),
    # the window kind
    (dict(window="memory"), ValueError, "window must be 'register' or 'folded', not 'memory'"),
    (dict(window="folded"), ValueError, "simd must divide the 2 channels (one of 1, 2), not 9"),
    # MAC variants
    (dict(pack=2, pe=1), ValueError, "pack=2 pairs the PEs and needs an even pe, not 1"),
    (dict(arithmetic="popcount", weights=[[1] * 18] * 4, pack=2), ValueError,
     "a MAC variant (pack=2, multiplier='dsp') needs arithmetic='multiply', not 'popcount'"),
])
def test_constructor_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        Conv2dLayer(**{**GOOD, **change})
    # The blocks built before the error, kept alive by the traceback: let their UnusedElaboratable
    # warnings fire now, under this module's filter, not in some later test.
    gc.collect()


# the simd sweeps of issue 12: a 3×3 over 64 channels and ERFNet's dilated (d = 8) 1×3, at simd 1, 3, 8, half
# the window and the whole window; the window is folded where simd divides the channels, else in registers
SWEEPS = {
    **{f"3x3-c64-simd{simd}": ((unsigned(8), 64, 3, 4, 1, (3, 3), (1, 1), (1, 1), (1, 1), 1, simd, 8))
       for simd in (1, 3, 8, 288, 576)},
    **{f"1x3-d8-c16-simd{simd}": ((unsigned(8), 16, 2, 19, 2, (1, 3), (1, 1), (0, 8), (1, 8), 1, simd, 8))
       for simd in (1, 3, 8, 24, 48)},
}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_simd_sweep_matches_golden_under_stalls_and_the_cycle_model(name):
    from hwseg.estimate.cycles import folded_window_cycles, window_layer_cycles
    from tests.hw.streams import measure_full_rate

    config = SWEEPS[name]
    elem_shape, cin, height, width, cout, kernel, stride, padding, dilation, pe, simd, _ = config
    window = "folded" if cin % simd == 0 else "register"
    w4, bias, x = _stimulus(config, np.random.default_rng(zlib.crc32(name.encode())))
    dut = Conv2dLayer(elem_shape=elem_shape, channels=cin, height=height, width=width, kernel=kernel,
                      stride=stride, padding=padding, dilation=dilation, weights=_window_weights(w4),
                      bias=bias.tolist(), pe=pe, simd=simd, acc_shape=_acc_shape(w4, bias, elem_shape), window=window)
    acc = conv2d(x, w4, bias, stride, padding, dilation)
    frames, _, ho, wo = acc.shape
    lanes = simd if window == "folded" else cin
    beats = [x[n, b * lanes:(b + 1) * lanes, y, col].tolist() for n in range(frames) for y in range(height)
             for col in range(width) for b in range(cin // lanes)]
    count = frames * ho * wo * (cout // pe)
    _check(run_stream_test(dut, beats, count, seed=len(name), valid_prob=0.6, ready_prob=0.6, timeout=50_000),
           acc, pe)
    # unstalled, frame after frame, as many cycles as the estimate's model of this window
    _, outputs, got = measure_full_rate(dut, beats + beats, 2 * count, limit=100_000)
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    folds = (cout // pe) * kernel[0] * kernel[1] * cin // simd
    geometry = dict(padded=padded, out=(ho, wo), kernel=kernel, stride=stride, dilation=dilation)
    if window == "folded":
        model = folded_window_cycles(**geometry, beats_per_pixel=cin // simd, cycles_per_window=folds,
                                     slack=dut.sliding_window.slack)
    else:
        model = window_layer_cycles(**geometry, cycles_per_window=folds)
    per_frame = ho * wo * (cout // pe)
    assert outputs[-1] - outputs[-1 - per_frame] == model

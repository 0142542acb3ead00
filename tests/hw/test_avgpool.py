# amaranth: UnusedElaboratable=no
"""WindowMean alone and in AvgPoolLayer (after a SlidingWindow), against golden.avg_pool, under random stalls.

(The first line silences Amaranth's warning for components built here only to fail validation.)
"""

import gc
import re
import zlib

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.golden import avg_pool
from hwseg.hw.avgpool import AvgPoolLayer, WindowMean
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

# Layers built only for their figures or to fail validation leave their blocks (built in avgpool.py)
# never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# name: (elem_shape, channels, height, width, kernel, stride, padding)
POOLS = {
    "2x2-s2-u8-c3":     (unsigned(8), 3, 6, 8, (2, 2), (2, 2), (0, 0)),
    "2x2-s2-s4-c1-odd": (signed(4), 1, 5, 7, (2, 2), (2, 2), (0, 0)),
    "4x4-s4-u8-c2":     (unsigned(8), 2, 8, 8, (4, 4), (4, 4), (0, 0)),
    "4x4-s4-s6-c1":     (signed(6), 1, 9, 8, (4, 4), (4, 4), (0, 0)),
    "8x8-s8-u8-c3":     (unsigned(8), 3, 8, 16, (8, 8), (8, 8), (0, 0)),
    "8x8-s8-s8-c1":     (signed(8), 1, 16, 8, (8, 8), (8, 8), (0, 0)),
    "2x2-s1-s5-c2":     (signed(5), 2, 5, 6, (2, 2), (1, 1), (0, 0)),
    "4x2-s21-u6-c2":    (unsigned(6), 2, 8, 6, (4, 2), (2, 1), (0, 0)),
    "2x2-s2-p1-s8-c2":  (signed(8), 2, 5, 6, (2, 2), (2, 2), (1, 1)),
    "4x2-s2-p21-u4-c3": (unsigned(4), 3, 6, 5, (4, 2), (2, 2), (2, 1)),
    "1x2-s12-s3-c2":    (signed(3), 2, 3, 6, (1, 2), (1, 2), (0, 0)),
    "1x1-s2-s4-c2":     (signed(4), 2, 4, 5, (1, 1), (2, 2), (0, 0)),
}


def _make(config):
    elem_shape, channels, height, width, kernel, stride, padding = config
    return AvgPoolLayer(elem_shape=elem_shape, channels=channels, height=height, width=width,
                        kernel=kernel, stride=stride, padding=padding)


def _frames(config, rng, frames=2):
    """Random frames; the second has a top row at the maximum and a bottom row at the minimum."""
    elem_shape, channels, height, width, *_ = config
    lo, hi = elem_range(elem_shape)
    x = rng.integers(lo, hi + 1, size=(frames, channels, height, width), dtype=np.int64)
    x[1, :, 0, :], x[1, :, -1, :] = hi, lo
    return x


def _pixel_beats(x):
    """Raster order, one whole pixel (all channels) per beat, frame after frame."""
    return [x[n, :, y, col].tolist() for n in range(x.shape[0]) for y in range(x.shape[2]) for col in range(x.shape[3])]


def _check(got, expected):
    frames, _, ho, wo = expected.shape
    assert len(got) == frames * ho * wo, f"expected {frames * ho * wo} beats, got {len(got)}"
    for index, beat in enumerate(got):
        frame, rest = divmod(index, ho * wo)
        oy, ox = divmod(rest, wo)
        want = expected[frame, :, oy, ox].tolist()
        assert beat == want, f"frame {frame}, output (oy, ox) = ({oy}, {ox}): expected {want}, got {beat}"


@pytest.mark.parametrize("name", list(POOLS))
def test_avg_pool_matches_golden(name):
    config = POOLS[name]
    _, _, _, _, kernel, stride, padding = config
    seed = zlib.crc32(name.encode())
    x = _frames(config, np.random.default_rng(seed))
    expected = avg_pool(x, kernel, stride, padding)
    dut = _make(config)
    assert (dut.out_height, dut.out_width) == expected.shape[2:]
    got = run_stream_test(dut, _pixel_beats(x), expected.size // expected.shape[1], seed=seed,
                          valid_prob=0.6, ready_prob=0.6, timeout=2000)
    _check(got, expected)


@pytest.mark.parametrize("name", ["2x2-s2-p1-s8-c2", "4x4-s4-u8-c2", "8x8-s8-s8-c1", "2x2-s1-s5-c2"])
def test_avg_pool_full_rate(name):
    """Unstalled, a frame takes the sliding window's Hp·Wp cycles; an output follows the transfer
    (or padding push) of its window's last position by ``latency`` cycles."""
    config = POOLS[name]
    _, _, height, width, (kh, kw), (sh, sw), (ph, pw) = config
    x = _frames(config, np.random.default_rng(7), frames=3)
    expected = avg_pool(x, (kh, kw), (sh, sw), (ph, pw))
    frames, _, ho, wo = expected.shape
    dut = _make(config)
    period = (height + 2 * ph) * (width + 2 * pw)
    assert dut.cycles_per_frame == dut.sliding_window.cycles_per_frame == period
    in_cycles, out_cycles, got = measure_full_rate(dut, _pixel_beats(x), frames * ho * wo, limit=5000)
    _check(got, expected)
    # Frames back to back: every input and output transfer recurs exactly one frame period later.
    pixels = height * width
    assert [b - a for a, b in zip(in_cycles, in_cycles[pixels:])] == [period] * (frames - 1) * pixels
    assert [b - a for a, b in zip(out_cycles, out_cycles[ho * wo:])] == [period] * (frames - 1) * ho * wo
    # The first frame starts pushing at cycle 0, one padded position per cycle.
    start = ph * (width + 2 * pw) + pw
    assert in_cycles[0] == start
    for k in range(ho * wo):
        oy, ox = divmod(k, wo)
        last = (oy * sh + kh - 1) * (width + 2 * pw) + ox * sw + kw - 1     # padded raster position
        assert out_cycles[k] == last + dut.latency, f"output {k}"


def test_latency_and_figures():
    dut = _make(POOLS["8x8-s8-u8-c3"])
    assert (dut.window_mean.latency, dut.latency) == (4, 5)
    # 16 sums of 10 bits, 4 of 12, 1 of 14 and the 8-bit output, per channel.
    assert dut.window_mean.register_bits == 3 * (16 * 10 + 4 * 12 + 14 + 8)
    assert dut.line_buffer_bits == dut.sliding_window.line_buffer_bits > 0
    assert dut.register_bits == dut.sliding_window.register_bits + dut.window_mean.register_bits
    assert [_make(POOLS[k]).latency for k in ("1x1-s2-s4-c2", "1x2-s12-s3-c2", "2x2-s1-s5-c2", "4x2-s21-u6-c2",
                                              "4x4-s4-u8-c2")] == [2, 2, 3, 3, 4]
    del dut
    gc.collect()    # the unused blocks' warnings fire now, under this module's filter


@pytest.mark.parametrize("elem_shape, channels, window", [
    (signed(8), 3, 64), (unsigned(8), 2, 16), (signed(3), 1, 1), (unsigned(5), 4, 2), (signed(4), 2, 4),
    (signed(2), 1, 32), (unsigned(1), 3, 8)])
def test_window_mean_alone(elem_shape, channels, window):
    lo, hi = elem_range(elem_shape)
    rng = np.random.default_rng(window * 10 + channels)
    count = 40
    # Windows as a (count, C, 1, window) tensor: golden 1×window average pooling is the expected mean.
    windows = rng.integers(lo, hi + 1, size=(count, channels, 1, window), dtype=np.int64)
    windows[:4] = rng.choice([lo, hi], size=(4, channels, 1, window))  # the extremes
    windows[4, :, 0, :], windows[5, :, 0, :] = lo, hi
    expected = avg_pool(windows, (1, window), (1, window), (0, 0))[:, :, 0, 0].tolist()
    # Window element w·C + c is windows[n, c, 0, w].
    beats = [windows[n, :, 0, :].T.reshape(-1).tolist() for n in range(count)]
    dut = WindowMean(elem_shape=elem_shape, channels=channels, window=window)
    got = run_stream_test(dut, beats, count, seed=window, valid_prob=0.6, ready_prob=0.6, timeout=2000)
    assert got == expected


@pytest.mark.parametrize("window, latency", [(1, 1), (2, 1), (4, 2), (8, 2), (64, 4)])
def test_window_mean_full_rate(window, latency):
    dut = WindowMean(elem_shape=signed(4), channels=2, window=window)
    assert dut.latency == latency
    count = 12
    windows = np.random.default_rng(window).integers(-8, 8, size=(count, 2, 1, window), dtype=np.int64)
    beats = [windows[n, :, 0, :].T.reshape(-1).tolist() for n in range(count)]
    in_cycles, out_cycles, got = measure_full_rate(dut, beats, count, limit=1000)
    assert got == avg_pool(windows, (1, window), (1, window), (0, 0))[:, :, 0, 0].tolist()
    assert in_cycles == list(range(count))
    assert out_cycles == [c + latency for c in in_cycles]


GOOD = dict(elem_shape=unsigned(8), channels=2, height=6, width=8, kernel=(2, 2), stride=(2, 2), padding=(0, 0))


@pytest.mark.parametrize("change, error, message", [
    (dict(kernel=(3, 3)), ValueError,
     "kernel must have a power-of-two number of elements kh·kw, not (3, 3) (9 elements)"),
    (dict(kernel=[2, 3]), ValueError,
     "kernel must have a power-of-two number of elements kh·kw, not [2, 3] (6 elements)"),
    (dict(kernel=(2, 2, 2)), ValueError, "kernel must be a pair of positive integers, not (2, 2, 2)"),
    (dict(padding=(2, 1)), ValueError,
     "padding must be at most half the kernel (2, 2) (2·p <= k, as torch), not (2, 1)"),
    (dict(kernel=(4, 1), padding=(2, 1)), ValueError,
     "padding must be at most half the kernel (4, 1) (2·p <= k, as torch), not (2, 1)"),
    (dict(padding=(0, -1)), ValueError, "padding must be a pair of non-negative integers, not (0, -1)"),
    # SlidingWindow's own messages
    (dict(height=0), ValueError, "height must be a positive integer, not 0"),
    (dict(stride=(0, 2)), ValueError, "stride must be a pair of positive integers, not (0, 2)"),
    (dict(channels=1.5), ValueError, "channels must be a positive integer, not 1.5"),
    (dict(kernel=(8, 8)), ValueError,
     "kernel (8, 8) with dilation (1, 1) spans 8×8 pixels, more than the padded frame 6×8 "
     "(height 6 + 2·0, width 8 + 2·0): no window fits"),
    (dict(elem_shape="u8"), TypeError,
     "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not 'u8'"),
])
def test_layer_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        AvgPoolLayer(**{**GOOD, **change})
    # The blocks built before the error, kept alive by the traceback: let their UnusedElaboratable
    # warnings fire now, under this module's filter, not in some later test.
    gc.collect()


@pytest.mark.parametrize("change, error, message", [
    (dict(window=3), ValueError, "window must be a power of two, not 3"),
    (dict(window=12), ValueError, "window must be a power of two, not 12"),
    (dict(window=0), ValueError, "window must be a positive integer, not 0"),
    (dict(window=True), ValueError, "window must be a positive integer, not True"),
    (dict(channels=0), ValueError, "channels must be a positive integer, not 0"),
    (dict(elem_shape=unsigned(0)), TypeError,
     "elem_shape must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, not unsigned(0)"),
])
def test_window_mean_errors(change, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        WindowMean(**{**dict(elem_shape=signed(8), channels=2, window=4), **change})


def test_verilog():
    from amaranth.back import verilog
    text = verilog.convert(_make(POOLS["2x2-s2-p1-s8-c2"]), name="avg_pool", emit_src=False)
    assert "module avg_pool" in text

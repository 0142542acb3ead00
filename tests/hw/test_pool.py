# amaranth: UnusedElaboratable=no
"""WindowMax alone and in MaxPoolLayer (after a SlidingWindow), against golden.max_pool, under random stalls.

(The first line silences Amaranth's warning for components built here only to fail validation.)
"""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.golden import max_pool
from hwseg.hw.layers import MaxPoolLayer
from hwseg.hw.pool import WindowMax
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test


# (elem_shape, channels, height, width, kernel, stride, padding)
POOLS = {
    "2x2-s2-u8": (unsigned(8), 3, 8, 10, (2, 2), (2, 2), (0, 0)),
    "2x2-s2-s4-odd": (signed(4), 2, 7, 9, (2, 2), (2, 2), (0, 0)),
    "3x3-s2-p1-s6": (signed(6), 2, 7, 9, (3, 3), (2, 2), (1, 1)),
    "3x3-s2-p1-u4": (unsigned(4), 3, 8, 10, (3, 3), (2, 2), (1, 1)),
}


@pytest.mark.parametrize("name", list(POOLS))
def test_max_pool_matches_golden(name):
    elem_shape, channels, height, width, kernel, stride, padding = POOLS[name]
    lo, hi = elem_range(elem_shape)
    seed = sum(map(ord, name))
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(2, channels, height, width), dtype=np.int64)
    expected = max_pool(x, kernel, stride, padding)
    n, _, ho, wo = expected.shape
    dut = MaxPoolLayer(elem_shape=elem_shape, channels=channels, height=height, width=width,
                       kernel=kernel, stride=stride, padding=padding)
    beats = [x[f, :, y, col].tolist() for f in range(n) for y in range(height) for col in range(width)]
    got = run_stream_test(dut, beats, n * ho * wo, seed=seed, valid_prob=0.6, ready_prob=0.6, timeout=2000)
    for index, beat in enumerate(got):
        frame, rest = divmod(index, ho * wo)
        oy, ox = divmod(rest, wo)
        want = expected[frame, :, oy, ox].tolist()
        assert beat == want, f"frame {frame}, output (oy, ox) = ({oy}, {ox}): expected {want}, got {beat}"


@pytest.mark.parametrize("elem_shape, channels, window", [
    (signed(8), 3, 9), (unsigned(8), 2, 4), (signed(3), 1, 1), (unsigned(5), 4, 5), (signed(5), 2, 2)])
def test_window_max_alone(elem_shape, channels, window):
    lo, hi = elem_range(elem_shape)
    rng = np.random.default_rng(window * 10 + channels)
    count = 60
    # Windows as a (count, C, 1, window) tensor: golden 1×window max pooling is the expected max.
    windows = rng.integers(lo, hi + 1, size=(count, channels, 1, window), dtype=np.int64)
    windows[:4] = rng.choice([lo, hi], size=(4, channels, 1, window))  # the extremes, for the signed compare
    expected = max_pool(windows, (1, window), (1, window), (0, 0))[:, :, 0, 0].tolist()
    # Window element w·C + c is windows[n, c, 0, w].
    beats = [windows[n, :, 0, :].T.reshape(-1).tolist() for n in range(count)]
    dut = WindowMax(elem_shape=elem_shape, channels=channels, window=window)
    got = run_stream_test(dut, beats, count, seed=window, valid_prob=0.6, ready_prob=0.6, timeout=2000)
    assert got == expected


def test_window_max_full_rate():
    dut = WindowMax(elem_shape=unsigned(4), channels=2, window=4)
    beats = [[(n + k) % 16 for k in range(8)] for n in range(30)]
    _, edges, got = measure_full_rate(dut, beats, len(beats), limit=1000)
    assert got == [[max(b[0::2]), max(b[1::2])] for b in beats]
    assert edges == list(range(edges[0], edges[0] + len(beats))) and edges[0] == 1


@pytest.mark.parametrize("change, error, message", [
    (dict(elem_shape="u8"), TypeError, r"^elem_shape must be an Amaranth shape unsigned\(b\) or signed\(b\) "
                                       r"with b >= 1, not 'u8'$"),
    (dict(channels=0), ValueError, r"^channels must be a positive integer, not 0$"),
    (dict(window=2.5), ValueError, r"^window must be a positive integer, not 2.5$"),
    (dict(window=False), ValueError, r"^window must be a positive integer, not False$"),
])
def test_window_max_errors(change, error, message):
    with pytest.raises(error, match=message):
        WindowMax(**{**dict(elem_shape=signed(8), channels=2, window=9), **change})


def test_window_max_verilog():
    from amaranth.back import verilog
    text = verilog.convert(WindowMax(elem_shape=signed(8), channels=3, window=9), name="window_max", emit_src=False)
    assert "module window_max" in text

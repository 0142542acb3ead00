"""MultiThreshold against golden.threshold, both methods, under random valid gaps and ready backpressure."""

import zlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.golden import threshold
from hwseg.hw.threshold import MultiThreshold
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6)}


def _thresholds(rng, acc_shape, channels, n):
    """Ascending rows reaching past both ends of the acc range, with equal neighbours."""
    lo, hi = elem_range(acc_shape)
    t = rng.integers(lo - 20, hi + 21, size=(channels, n))
    t[0, 0] = lo - 7                                 # below the range: always passed
    t[-1, -1] = hi + 7                               # above the range: never passed
    if n > 1:
        t[0, 1] = t[0, 0]                           # equal thresholds
        t[-1, 0] = t[-1, 1]
    if channels > 2:
        t[1, :] = rng.integers(lo - 50, lo + 1, size=n)     # all at or below lo
        t[2, :] = rng.integers(hi + 1, hi + 50, size=n)     # all above hi
    return np.sort(t, axis=1)


def _accs(rng, acc_shape, t, pixels):
    """(1, C, 1, pixels): the range ends, each threshold and its neighbours (clipped), then random values."""
    lo, hi = elem_range(acc_shape)
    channels = t.shape[0]
    acc = rng.integers(lo, hi + 1, size=(1, channels, 1, pixels))
    for c in range(channels):
        edges = np.unique(np.clip(np.concatenate([t[c] - 1, t[c], t[c] + 1, [lo, hi, lo + 1, hi - 1]]), lo, hi))
        rng.shuffle(edges)
        edges = edges[:pixels]
        acc[0, c, 0, :len(edges)] = edges
    acc[0, :, 0, 0], acc[0, :, 0, -1] = lo, hi
    return acc


def _beats(x, lanes):
    _, channels, _, pixels = x.shape
    return [x[0, g * lanes:(g + 1) * lanes, 0, p].tolist() for p in range(pixels) for g in range(channels // lanes)]


def _check(got, expected, lanes, groups):
    assert len(got) == len(expected), f"expected {len(expected)} beats, got {len(got)}"
    for index, (e, g) in enumerate(zip(expected, got)):
        for lane, (ev, gv) in enumerate(zip(e, g)):
            assert ev == gv, (f"pixel {index // groups} beat {index % groups} channel {(index % groups) * lanes + lane}: "
                              f"expected {ev}, got {gv}")


def _run(acc_shape, channels, lanes, n, out_bits, method, rate, seed, pixels):
    rng = np.random.default_rng(seed)
    t = _thresholds(rng, acc_shape, channels, n)
    acc = _accs(rng, acc_shape, t, pixels)
    dut = MultiThreshold(acc_shape=acc_shape, channels=channels, lanes=lanes, thresholds=t.tolist(),
                         out_bits=out_bits, method=method)
    valid_prob, ready_prob = RATES[rate]
    beats = _beats(acc, lanes)
    got = run_stream_test(dut, beats, len(beats), seed=seed % 1000, valid_prob=valid_prob, ready_prob=ready_prob)
    _check(got, _beats(threshold(acc, t), lanes), lanes, channels // lanes)
    return dut


# name: (acc_shape, channels, lanes, thresholds per channel, out_bits)
CONFIGS = {
    "b1-n1-lanes2": (unsigned(6), 4, 2, 1, 1),
    "b2-n3-bfcn-lanes3": (signed(10), 6, 3, 3, 2),
    "b2-n2-lanes1": (signed(8), 4, 1, 2, 2),
    "b3-n7-lanes2": (signed(12), 6, 2, 7, 3),
    "b3-n5-all-lanes": (signed(6), 3, 3, 5, 3),
    "b4-n15-lanes2": (signed(10), 8, 2, 15, 4),
    "b4-n11-unsigned-all-lanes": (unsigned(9), 4, 4, 11, 4),
    "b4-n8-one-channel": (signed(7), 1, 1, 8, 4),
}


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("method", ["parallel", "search"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden(name, method, rate):
    acc_shape, channels, lanes, n, out_bits = CONFIGS[name]
    seed = zlib.crc32(f"{name}/{method}/{rate}".encode())
    dut = _run(acc_shape, channels, lanes, n, out_bits, method, rate, seed, pixels=40)
    assert dut.method == method


@pytest.mark.parametrize("rate", list(RATES))
def test_8bit_255_thresholds_by_search(rate):
    dut = _run(signed(10), 4, 2, 255, 8, "auto", rate, seed=255, pixels=160)
    assert dut.method == "search" and dut.stages == 8 and dut.latency == 8


@pytest.mark.parametrize("n,method", [(1, "parallel"), (3, "parallel"), (7, "parallel"), (8, "search"),
                                      (15, "search"), (255, "search")])
def test_auto_method(n, method):
    dut = MultiThreshold(acc_shape=signed(12), channels=2, lanes=1, thresholds=[list(range(n))] * 2,
                         out_bits=8, method="auto")
    assert dut.method == method
    assert dut.latency == (2 if method == "parallel" else n.bit_length())


def test_clamped_outside_the_range():
    """Thresholds past the acc range compare as lo (always) or hi + 1 (never); the comparators grow one bit."""
    rows = [[-1000, -128, 127, 128], [-129, -129, 500, 600], [-128, -127, 126, 127], [128, 128, 128, 128]]
    dut = MultiThreshold(acc_shape=signed(8), channels=4, lanes=2, thresholds=rows, out_bits=3, method="parallel")
    assert dut.threshold_shape == signed(9)
    assert dut.clamped_thresholds == ((-128, -128, 127, 128), (-128, -128, 128, 128), (-128, -127, 126, 127),
                            (128, 128, 128, 128))
    # The tables are as narrow as the stored values: hi + 1 = 256 needs unsigned(9) for unsigned(8), 5 only 3 bits,
    # unless the search pads its rows with "never" (hi + 1).
    for rows_, method, shape in [([[300]], "parallel", unsigned(9)), ([[5, 5]], "parallel", unsigned(3)),
                                 ([[5, 5, 5]], "search", unsigned(3)), ([[5, 5]], "search", unsigned(9)),
                                 ([[-3, 5]], "parallel", signed(4))]:
        assert MultiThreshold(acc_shape=unsigned(8) if rows_[0][0] >= 0 else signed(8), channels=1, lanes=1,
                              thresholds=rows_, out_bits=2, method=method).threshold_shape == shape
    for method in ("parallel", "search"):
        acc = np.array([-128, -127, 0, 126, 127] * 4).reshape(1, 4, 1, 5)
        beats = _beats(acc, 2)
        got = run_stream_test(MultiThreshold(acc_shape=signed(8), channels=4, lanes=2, thresholds=rows,
                                             out_bits=3, method=method),
                              beats, len(beats), seed=1, valid_prob=0.6, ready_prob=0.6)
        _check(got, _beats(threshold(acc, np.array(rows)), 2), 2, 2)


@pytest.mark.parametrize("method", ["parallel", "search"])
@pytest.mark.parametrize("acc_shape,rows", [
    (signed(5), [[0, 3, 10], [1, 15, 16]]),                  # signed acc, unsigned tables (mixed-sign compare)
    (signed(5), [[-16, -1, 0], [-20, -20, 15]]),             # the range ends, and below it
    (unsigned(4), [[0, 1, 15], [7, 7, 16]]),                 # unsigned acc, "never" at hi + 1
])
def test_every_acc_value(acc_shape, rows, method):
    """Exhaustive over the acc range: every value of the shape on every channel."""
    lo, hi = elem_range(acc_shape)
    acc = np.tile(np.arange(lo, hi + 1), (2, 1))[None, :, None, :]
    acc[0, 1] = acc[0, 1, :, ::-1]
    dut = MultiThreshold(acc_shape=acc_shape, channels=2, lanes=1, thresholds=rows, out_bits=2, method=method)
    beats = _beats(acc, 1)
    got = run_stream_test(dut, beats, len(beats), seed=4, valid_prob=0.6, ready_prob=0.6)
    _check(got, _beats(threshold(acc, np.array(rows)), 1), 1, 2)


@pytest.mark.parametrize("method,n", [("parallel", 3), ("search", 3), ("search", 15), ("parallel", 1), ("search", 1)])
def test_full_rate_and_latency(method, n):
    """One beat per cycle: inputs taken back to back, each output `latency` cycles after its input."""
    rng = np.random.default_rng(n)
    t = _thresholds(rng, signed(9), 4, n)
    acc = _accs(rng, signed(9), t, 12)
    dut = MultiThreshold(acc_shape=signed(9), channels=4, lanes=2, thresholds=t.tolist(), out_bits=4, method=method)
    beats = _beats(acc, 2)
    in_cycles, out_cycles, got = measure_full_rate(dut, beats, len(beats))
    _check(got, _beats(threshold(acc, t), 2), 2, 2)
    assert in_cycles == list(range(len(beats)))
    assert out_cycles == [k + dut.latency for k in range(len(beats))]


def _args(**overrides):
    args = dict(acc_shape=signed(8), channels=4, lanes=2, thresholds=[[-1, 0, 1]] * 4, out_bits=2)
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides,error,match", [
    (dict(acc_shape="x"), TypeError, r"acc_shape must be a shape, not 'x'"),
    (dict(acc_shape=unsigned(0)), ValueError, r"acc_shape must be at least 1 bit wide, not unsigned\(0\)"),
    (dict(channels=0), ValueError, r"channels must be a positive integer, not 0"),
    (dict(lanes=3), ValueError, r"lanes must divide channels=4, not 3"),
    (dict(lanes=False), ValueError, r"lanes must be a positive integer, not False"),
    (dict(out_bits=0), ValueError, r"out_bits must be a positive integer, not 0"),
    (dict(method="binary"), ValueError, r"method must be one of 'auto', 'parallel', 'search', not 'binary'"),
    (dict(thresholds=[[0]] * 3), ValueError, r"thresholds must be a list of 4 rows \(one per channel\), not \[\[0\], \[0\], \[0\]\]"),
    (dict(thresholds=[[0]] * 3 + [[]]), ValueError, r"thresholds\[3\] must be a non-empty list of ints, not \[\]"),
    (dict(thresholds=[[0]] * 3 + [[1.5]]), TypeError, r"thresholds\[3\]\[0\] must be an int, not 1\.5"),
    (dict(thresholds=[[0, 1, 2], [0, 2, 1], [0, 1, 2], [0, 1, 2]]), ValueError,
     r"thresholds\[1\] must be ascending \(non-decreasing\), not thresholds\[1\]\[2\]=1 after thresholds\[1\]\[1\]=2"),
    (dict(thresholds=[[0, 1, 2]] * 3 + [[0, 1]]), ValueError,
     r"every channel needs the same number of thresholds \(3, as channel 0\), not 2 in thresholds\[3\]"),
    (dict(thresholds=[[0, 1, 2, 3]] * 4), ValueError, r"out_bits=2 counts at most 3 thresholds per channel, not 4"),
])
def test_constructor_errors(overrides, error, match):
    with pytest.raises(error, match=match):
        MultiThreshold(**_args(**overrides))


def test_converts_to_verilog():
    for overrides in [dict(), dict(method="search"), dict(lanes=4), dict(lanes=4, method="search"),
                      dict(thresholds=[list(range(-7, 8))] * 4, out_bits=4)]:
        rtl = verilog.convert(MultiThreshold(**_args(**overrides)), emit_src=False)
        assert "module" in rtl

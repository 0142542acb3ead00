"""MacArray against golden.conv2d (each vector a 1×1 frame), under random valid gaps and ready backpressure."""

import re
import zlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.golden import conv2d
from hwseg.hw.mac_array import MacArray
from tests.hw.streams import elem_range, measure_full_rate, run_stream_test

# Components built only to read their figures or to fail validation are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.5, 1.0), "backpressure": (1.0, 0.5)}


def _narrow_weights(rng, cout, count, bits):
    """Narrow-range symmetric ``bits``-bit weights, with ±max present."""
    wmax = (1 << (bits - 1)) - 1
    w = rng.integers(-wmax, wmax + 1, size=(cout, count), dtype=np.int64)
    w[0, 0], w[-1, -1] = wmax, -wmax
    return w


def _golden(weights, bias, vectors):
    """Accumulators (N, C_out): each vector as a 1×1 frame of in_count channels."""
    x = np.asarray(vectors, dtype=np.int64)[:, :, None, None]
    w = np.asarray(weights, dtype=np.int64)[:, :, None, None]
    b = None if bias is None else np.asarray(bias, dtype=np.int64)
    return conv2d(x, w, b, 1, 0, 1)[:, :, 0, 0]


def _extreme_vectors(weights, in_shape):
    """Per output channel the inputs that maximize and minimize its accumulator."""
    lo, hi = elem_range(in_shape)
    w = np.asarray(weights)
    return np.concatenate([np.where(w > 0, hi, lo), np.where(w > 0, lo, hi)]).tolist()


def _tight_shape(weights, bias, in_shape):
    """The narrowest accumulator shape, from golden at the extreme inputs."""
    acc = _golden(weights, bias, _extreme_vectors(weights, in_shape))
    lo, hi = int(acc.min()), int(acc.max())
    if lo < 0:
        return signed(max((-lo - 1).bit_length(), hi.bit_length()) + 1)
    return unsigned(max(hi.bit_length(), 1))


def _beats(acc, pe):
    return [acc[n, j * pe:(j + 1) * pe].tolist() for n in range(acc.shape[0]) for j in range(acc.shape[1] // pe)]


def _check(got, acc, pe):
    expected = _beats(acc, pe)
    nf = acc.shape[1] // pe
    assert len(got) == len(expected), f"expected {len(expected)} beats, got {len(got)}"
    for index, (e, g) in enumerate(zip(expected, got)):
        for lane, (ev, gv) in enumerate(zip(e, g)):
            assert ev == gv, (f"vector {index // nf} beat {index % nf} channel {(index % nf) * pe + lane}: "
                              f"expected {ev}, got {gv}")


# name: (C_out, in_count, pe, simd, in_shape, weight bits)
FOLDINGS = {
    "pe=C_out,simd=in_count": (6, 27, 6, 27, unsigned(8), 8),
    "pe=1,simd=1": (6, 27, 1, 1, unsigned(8), 4),
    "pe2-simd9-signed": (6, 27, 2, 9, signed(8), 8),
    "pe3-simd3-2bit": (6, 27, 3, 3, unsigned(8), 2),
    "pe6-simd9-s4": (6, 27, 6, 9, signed(4), 3),
    "pe1-simd27-s8": (6, 27, 1, 27, signed(8), 5),
    "pe2-simd1": (4, 6, 2, 1, unsigned(2), 6),
    "odd-5x7-full": (5, 7, 5, 7, signed(8), 8),
    "1-channel-1-input": (1, 1, 1, 1, signed(3), 2),
}


@pytest.mark.parametrize("serial", [False, True], ids=["vector", "serial"])
@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(FOLDINGS))
def test_matches_golden(name, rate, serial):
    """serial=True: the folds come one slice per beat (as a FoldedWindow serves them), nothing is held."""
    cout, count, pe, simd, in_shape, bits = FOLDINGS[name]
    rng = np.random.default_rng(zlib.crc32(f"{'serial/' * serial}{name}/{rate}".encode()))
    weights = _narrow_weights(rng, cout, count, bits)
    bias = rng.integers(-300, 301, size=cout)
    lo, hi = elem_range(in_shape)
    vectors = np.concatenate([
        rng.integers(lo, hi + 1, size=(3, count)),
        np.full((1, count), hi), np.full((1, count), lo),
    ]).tolist()
    dut = MacArray(in_shape=in_shape, in_count=count, weights=weights.tolist(), bias=bias.tolist(),
                   pe=pe, simd=simd, acc_shape=_tight_shape(weights, bias, in_shape), serial=serial)
    assert dut.held_bits == (0 if serial else count * in_shape.width)
    acc = _golden(weights, bias, vectors)
    valid_prob, ready_prob = RATES[rate]
    beats = _serial_beats(vectors, cout // pe, simd) if serial else vectors
    got = run_stream_test(dut, beats, len(vectors) * cout // pe, seed=4 if serial else 3,
                          valid_prob=valid_prob, ready_prob=ready_prob)
    _check(got, acc, pe)


@pytest.mark.parametrize("in_shape", [unsigned(8), signed(8)], ids=["u8", "s8"])
@pytest.mark.parametrize("sign", ["all+", "all-", "mixed"])
def test_extremes_fit_the_tight_width(in_shape, sign):
    """All inputs at their limits, 8-bit weights at ±127: the exact narrowest acc_shape suffices."""
    cout, count = 4, 18
    if sign == "all+":
        weights = [[127] * count for _ in range(cout)]
    elif sign == "all-":
        weights = [[-127] * count for _ in range(cout)]
    else:
        weights = [[127 if (c + k) % 2 else -127 for k in range(count)] for c in range(cout)]
    bias = [1000, -1000, 0, 7]
    acc_shape = _tight_shape(weights, bias, in_shape)
    vectors = _extreme_vectors(weights, in_shape)
    dut = MacArray(in_shape=in_shape, in_count=count, weights=weights, bias=bias, pe=2, simd=6,
                   acc_shape=acc_shape)
    got = run_stream_test(dut, vectors, len(vectors) * 2, seed=5, valid_prob=0.6, ready_prob=0.6)
    _check(got, _golden(weights, bias, vectors), 2)
    narrower = signed(acc_shape.width - 1) if acc_shape.signed else unsigned(acc_shape.width - 1)
    with pytest.raises(ValueError, match=rf"acc_shape {re.escape(repr(narrower))} cannot hold .* needs {re.escape(repr(acc_shape))}$"):
        MacArray(in_shape=in_shape, in_count=count, weights=weights, bias=bias, pe=2, simd=6,
                 acc_shape=narrower)


# name: (C_out, in_count, pe, simd, in_shape, weight bits) of arrays whose PEs are paired on the multipliers
PACKED_FOLDINGS = {
    "pe2-simd9-u8": (6, 27, 2, 9, unsigned(8), 8),
    "pe6-simd27-s8": (6, 27, 6, 27, signed(8), 8),
    "pe4-simd1-u8-4bit": (8, 6, 4, 1, unsigned(8), 4),
    "pe2-simd3-s3-2bit": (4, 6, 2, 3, signed(3), 2),
}


def _check_variant(folding, tag, rate, serial, **variant):
    """A MAC variant on random and extreme vectors (every channel's maximum and minimum) of ``folding``, under
    the stream ``rate``, against golden; the array built."""
    cout, count, pe, simd, in_shape, bits = folding
    rng = np.random.default_rng(zlib.crc32(f"{tag}/{'serial/' * serial}/{rate}".encode()))
    weights = _narrow_weights(rng, cout, count, bits)
    bias = rng.integers(-300, 301, size=cout)
    lo, hi = elem_range(in_shape)
    vectors = np.concatenate([rng.integers(lo, hi + 1, size=(3, count)), _extreme_vectors(weights, in_shape)]).tolist()
    dut = MacArray(in_shape=in_shape, in_count=count, weights=weights.tolist(), bias=bias.tolist(), pe=pe, simd=simd,
                   acc_shape=_tight_shape(weights, bias, in_shape), serial=serial, **variant)
    beats = _serial_beats(vectors, cout // pe, simd) if serial else vectors
    got = run_stream_test(dut, beats, len(vectors) * cout // pe, seed=6, valid_prob=RATES[rate][0],
                          ready_prob=RATES[rate][1])
    _check(got, _golden(weights, bias, vectors), pe)
    return dut


@pytest.mark.parametrize("serial", [False, True], ids=["vector", "serial"])
@pytest.mark.parametrize("rate", ["full", "stalls"])
@pytest.mark.parametrize("name", list(PACKED_FOLDINGS))
def test_packed_matches_golden(name, rate, serial):
    """pack=2: two PEs' products from one multiplier, every channel of every beat as golden."""
    dut = _check_variant(PACKED_FOLDINGS[name], f"packed/{name}", rate, serial, pack=2)
    assert dut.multipliers == dut.pe * dut.simd // 2


@pytest.mark.parametrize("in_shape", [unsigned(8), signed(8)], ids=["u8", "s8"])
def test_packed_edge_values(in_shape):
    """Every pairing of the edge weights −127, 127, 0 in the low and the high lane against the edge inputs
    (0, 255 unsigned; −128, 127, 0 signed), where the low lane's borrow and the products' extremes meet."""
    edges = [-127, 127, 0, -1, 1]
    pairs = [(lo, hi) for lo in edges for hi in edges]
    count = 4
    weights = [[w] * count for pair in pairs for w in pair]           # PE 2j: the low lane, 2j+1: the high
    bias = [0] * len(weights)
    inputs = [0, 255, 1, 128] if not in_shape.signed else [-128, 127, 0, -1]
    vectors = [[x] * count for x in inputs] + [inputs]
    acc_shape = _tight_shape(weights, bias, in_shape)
    dut = MacArray(in_shape=in_shape, in_count=count, weights=weights, bias=bias, pe=len(weights), simd=2,
                   acc_shape=acc_shape, pack=2)
    # u8 × ±127 spans ±32,385 (16 bits signed), s8 × ±127 ±16,256 (15); the packed weight 8 bits above that
    spacing = 15 if in_shape.signed else 16
    assert dut.lane_spacing == spacing and dut.multiplicand_shape == signed(spacing + 8)
    got = run_stream_test(dut, vectors, len(vectors), seed=8, valid_prob=0.6, ready_prob=0.6)
    _check(got, _golden(weights, bias, vectors), len(weights))


@pytest.mark.parametrize("serial", [False, True], ids=["vector", "serial"])
@pytest.mark.parametrize("name", list(FOLDINGS))
def test_logic_multipliers_match_golden(name, serial):
    """multiplier='logic': shift-and-add products (signed and unsigned inputs, 2- to 8-bit weights) as golden."""
    _check_variant(FOLDINGS[name], f"logic/{name}", "stalls", serial, multiplier="logic")


def test_packed_and_logic_timing_equals_plain():
    """Packing or products in logic change no cycle: the same input and output cycles at full rate."""
    rng = np.random.default_rng(9)
    weights, bias = _narrow_weights(rng, 4, 6, 8).tolist(), [3, -2, 1, 0]
    vectors = rng.integers(0, 256, size=(4, 6)).tolist()
    timing = []
    for pack, multiplier in ((1, "dsp"), (2, "dsp"), (1, "logic")):
        dut = MacArray(in_shape=unsigned(8), in_count=6, weights=weights, bias=bias, pe=2, simd=3,
                       acc_shape=signed(24), pack=pack, multiplier=multiplier)
        in_cycles, out_cycles, got = measure_full_rate(dut, vectors, len(vectors) * 2)
        _check(got, _golden(weights, bias, vectors), 2)
        timing.append((in_cycles, out_cycles, dut.latency, dut.cycles_per_vector))
    assert timing[0] == timing[1] == timing[2]


def test_no_bias_and_unsigned_acc():
    weights = [[1, 2, 3], [0, 0, 1]]
    vectors = [[7, 7, 7], [0, 1, 2], [5, 0, 0]]
    dut = MacArray(in_shape=unsigned(3), in_count=3, weights=weights, bias=None, pe=1, simd=3,
                   acc_shape=unsigned(6))
    got = run_stream_test(dut, vectors, 6, seed=0, valid_prob=0.6, ready_prob=0.6)
    _check(got, _golden(weights, None, vectors), 1)


@pytest.mark.parametrize("cout,count,pe,simd", [(6, 27, 2, 9), (6, 27, 6, 27), (4, 6, 1, 1), (6, 27, 3, 27)])
def test_measured_throughput(cout, count, pe, simd):
    rng = np.random.default_rng(7)
    weights = _narrow_weights(rng, cout, count, 4)
    bias = rng.integers(-9, 10, size=cout)
    vectors = rng.integers(0, 256, size=(5, count)).tolist()
    dut = MacArray(in_shape=unsigned(8), in_count=count, weights=weights.tolist(), bias=bias.tolist(),
                   pe=pe, simd=simd, acc_shape=signed(24))
    nf, sf = dut.fold
    assert (nf, sf) == (cout // pe, count // simd) and dut.cycles_per_vector == nf * sf
    in_cycles, out_cycles, got = measure_full_rate(dut, vectors, len(vectors) * nf)
    _check(got, _golden(weights, bias, vectors), pe)
    # The next vector is taken as the previous one's last fold issues: one per NF·SF cycles.
    assert in_cycles == [n * nf * sf for n in range(len(vectors))]
    # Output beat k leaves SF cycles after beat k−1; the first one `latency` cycles after its input.
    assert out_cycles == [k * sf + dut.latency for k in range(len(vectors) * nf)]
    assert dut.latency == sf + 3
    assert out_cycles[-1] - in_cycles[0] == len(vectors) * nf * sf + 3


def test_figures():
    dut = MacArray(in_shape=unsigned(8), in_count=27, weights=[[k % 7 - 3 for k in range(27)]] * 6,
                   bias=[0] * 6, pe=2, simd=9, acc_shape=signed(16))
    assert dut.fold == (3, 3)
    assert dut.cycles_per_vector == 9
    assert dut.weight_bits == 6 * 27 * 3          # ±3 needs signed(3)


def _args(**overrides):
    args = dict(in_shape=unsigned(8), in_count=6, weights=[[1] * 6] * 4, bias=[0] * 4, pe=2, simd=3,
                acc_shape=signed(16))
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides,error,match", [
    (dict(in_shape="x"), TypeError, r"in_shape must be a shape, not 'x'"),
    (dict(in_shape=unsigned(0)), ValueError, r"in_shape must be at least 1 bit wide, not unsigned\(0\)"),
    (dict(in_count=0), ValueError, r"in_count must be a positive integer, not 0"),
    (dict(weights=[]), ValueError, r"weights must be a non-empty list of rows, not \[\]"),
    (dict(weights=[[1] * 5] * 4), ValueError, r"weights\[0\] must be a list of in_count=6 ints, not \[1, 1, 1, 1, 1\]"),
    (dict(weights=[[1] * 6] * 3 + [[1, 2, 3, 4, 5, 6.0]]), TypeError, r"weights\[3\]\[5\] must be an int, not 6\.0"),
    (dict(bias=[0] * 3), ValueError, r"bias must be None or a list of 4 ints \(one per output channel\), not \[0, 0, 0\]"),
    (dict(pe=3), ValueError, r"pe must divide the 4 output channels \(one of 1, 2, 4\), not 3"),
    (dict(pe=0), ValueError, r"pe must be a positive integer, not 0"),
    (dict(simd=4), ValueError, r"simd must divide in_count=6 \(one of 1, 2, 3, 6\), not 4"),
    (dict(simd=True), ValueError, r"simd must be a positive integer, not True"),
    (dict(acc_shape=None), TypeError, r"acc_shape must be a shape, not None"),
    (dict(pack=3), ValueError, r"pack must be 1 \(a multiplier per product\) or 2 \(two PEs per multiplier\), not 3"),
    (dict(pack=2, pe=1), ValueError, r"pack=2 pairs the PEs and needs an even pe, not 1"),
    (dict(multiplier="lut"), ValueError, r"multiplier must be 'dsp' or 'logic', not 'lut'"),
    (dict(multiplier="logic", pack=2), ValueError,
     r"products in logic \(multiplier='logic'\) are not packed: pack must be 1, not 2"),
    (dict(acc_shape=signed(11)), ValueError,
     r"acc_shape signed\(11\) cannot hold the accumulator range \[0, 1530\] .* which needs unsigned\(11\)"),
    (dict(acc_shape=unsigned(11), bias=[0, 0, 0, -1]), ValueError,
     r"acc_shape unsigned\(11\) cannot hold the accumulator range \[-1, 1530\] .* which needs signed\(12\)"),
])
def test_constructor_errors(overrides, error, match):
    with pytest.raises(error, match=match):
        MacArray(**_args(**overrides))


@pytest.mark.parametrize("bias0,acc_shape,fits", [
    (517, unsigned(11), True), (518, unsigned(11), False),          # hi = 1530 + bias0 vs 2047
    (-1, signed(12), True), (-1, unsigned(11), False),
])
def test_acc_shape_boundary(bias0, acc_shape, fits):
    args = _args(bias=[bias0, 0, 0, 0], acc_shape=acc_shape)
    if fits:
        MacArray(**args)
    else:
        with pytest.raises(ValueError, match=r"cannot hold the accumulator range"):
            MacArray(**args)


def test_negative_boundary():
    """lo = −1024 exactly fills signed(11); one more below needs signed(12)."""
    args = _args(in_shape=unsigned(1), weights=[[-1] * 6] * 4, bias=[-1018, 0, 0, 0], acc_shape=signed(11))
    assert MacArray(**args).acc_range == (-1024, 0)
    with pytest.raises(ValueError, match=r"range \[-1025, 0\] .* needs signed\(12\)$"):
        MacArray(**{**args, "bias": [-1019, 0, 0, 0]})


def test_converts_to_verilog():
    for pe, simd, bias in [(2, 3, [0] * 4), (4, 6, [1, -2, 3, 4]), (1, 1, [5, 0, 0, -5])]:
        rtl = verilog.convert(MacArray(**_args(pe=pe, simd=simd, bias=bias)), emit_src=False)
        assert "module" in rtl


def _serial_beats(vectors, nf, simd):
    """A serial MacArray's input: each vector's SF slices of simd elements, NF times over."""
    return [v[s:s + simd] for v in vectors for _ in range(nf) for s in range(0, len(v), simd)]


def test_serial_throughput_and_latency():
    rng = np.random.default_rng(8)
    weights = _narrow_weights(rng, 6, 27, 4)
    vectors = rng.integers(0, 256, size=(3, 27)).tolist()
    dut = MacArray(in_shape=unsigned(8), in_count=27, weights=weights.tolist(), bias=None, pe=2, simd=9,
                   acc_shape=signed(24), serial=True)
    nf, sf = dut.fold
    in_cycles, out_cycles, got = measure_full_rate(dut, _serial_beats(vectors, nf, 9), len(vectors) * nf)
    _check(got, _golden(weights, None, vectors), 2)
    # a slice every cycle, from the second (the weight ROM reads fold 0 at the first clock edge)
    assert in_cycles == list(range(1, 1 + len(vectors) * nf * sf))
    assert dut.latency == 3                                            # after a vector's SF-th beat
    assert out_cycles == [in_cycles[(k + 1) * sf - 1] + 3 for k in range(len(vectors) * nf)]
    with pytest.raises(TypeError, match=r"^serial must be a bool, not 1$"):
        MacArray(in_shape=unsigned(8), in_count=27, weights=weights.tolist(), bias=None, pe=2, simd=9,
                 acc_shape=signed(24), serial=1)

"""BitMacArray against golden.conv2d (each vector a 1×1 frame), under random valid gaps and ready backpressure."""

import re
import zlib

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import signed, unsigned

from hwseg.golden import conv2d
from hwseg.hw.bitconv import BitMacArray
from hwseg.hw.mac_array import MacArray
from tests.hw.streams import measure_full_rate, run_stream_test

# Components built only to read their figures or to fail validation are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6)}


def _weights(rng, cout, count, weight_bits):
    """Bipolar (±1) weights, or Int(weight_bits) over the whole two's-complement range, extremes present."""
    if weight_bits == 1:
        w = rng.choice([-1, 1], size=(cout, count))
        w[0, 0], w[-1, -1] = 1, -1
        return w
    w = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), size=(cout, count))
    w[0, 0], w[-1, -1] = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1   # the MSB plane, and all planes
    return w


def _value_range(in_bits, in_signed, in_bipolar):
    """The activation values (what golden sees)."""
    if in_bipolar:
        return -1, 1
    if in_signed:
        return -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    return 0, (1 << in_bits) - 1


def _to_beats(values, in_bipolar):
    """Payloads: Bipolar activations travel as their stored bit (1 is +1, 0 is −1)."""
    values = np.asarray(values)
    return ((values + 1) // 2 if in_bipolar else values).tolist()


def _random_values(rng, count, n, in_bits, in_signed, in_bipolar):
    lo, hi = _value_range(in_bits, in_signed, in_bipolar)
    if in_bipolar:
        return rng.choice([-1, 1], size=(n, count))
    return rng.integers(lo, hi + 1, size=(n, count))


def _golden(weights, bias, values):
    """Accumulators (N, C_out): each vector as a 1×1 frame of in_count channels."""
    x = np.asarray(values, dtype=np.int64)[:, :, None, None]
    w = np.asarray(weights, dtype=np.int64)[:, :, None, None]
    b = None if bias is None else np.asarray(bias, dtype=np.int64)
    return conv2d(x, w, b, 1, 0, 1)[:, :, 0, 0]


def _extreme_values(weights, lo, hi):
    """Per output channel the inputs that maximize and minimize its accumulator."""
    w = np.asarray(weights)
    return np.concatenate([np.where(w > 0, hi, lo), np.where(w > 0, lo, hi)])


def _tight_shape(weights, bias, lo, hi):
    """The narrowest accumulator shape, from golden at the extreme inputs."""
    acc = _golden(weights, bias, _extreme_values(weights, lo, hi))
    a, b = int(acc.min()), int(acc.max())
    if a < 0:
        return signed(max((-a - 1).bit_length(), b.bit_length()) + 1)
    return unsigned(max(b.bit_length(), 1))


def _check(got, acc, pe):
    nf = acc.shape[1] // pe
    expected = [acc[n, j * pe:(j + 1) * pe].tolist() for n in range(acc.shape[0]) for j in range(nf)]
    assert len(got) == len(expected), f"expected {len(expected)} beats, got {len(got)}"
    for index, (e, g) in enumerate(zip(expected, got)):
        for lane, (ev, gv) in enumerate(zip(e, g)):
            assert ev == gv, (f"window {index // nf} beat {index % nf} channel {(index % nf) * pe + lane}: "
                              f"expected {ev}, got {gv}")


# name: (C_out, in_count, pe, simd, in_bits, weight_bits, activation kind, bias)
CONFIGS = {
    "K1-simd1-C3-pe3": (3, 64, 3, 1, 1, 1, "uint", True),
    "K2-simd8-C5-pe1": (5, 64, 1, 8, 2, 1, "uint", True),
    "K3-simd32-C7-pe7": (7, 64, 7, 32, 3, 1, "uint", False),
    "K4-simd64-C5-pe5": (5, 128, 5, 64, 4, 1, "uint", True),
    "K2-simd64-C7-pe1": (7, 64, 1, 64, 2, 1, "uint", True),
    "K1-simd8-C9-pe3": (9, 64, 3, 8, 1, 1, "uint", True),
    "K2-simd32-C15-pe5": (15, 64, 5, 32, 2, 1, "uint", True),
    "xnor-simd32-C3-pe3": (3, 64, 3, 32, 1, 1, "bipolar", True),
    "xnor-simd8-C5-pe1": (5, 64, 1, 8, 1, 1, "bipolar", False),
    "xnor-simd1-C7-pe7": (7, 8, 7, 1, 1, 1, "bipolar", True),
    "w2-K2-simd8-C5-pe5": (5, 64, 5, 8, 2, 2, "uint", True),
    "w3-K3-simd32-C3-pe1": (3, 64, 1, 32, 3, 3, "uint", True),
    "w2-bipolar-x-simd8-C3-pe3": (3, 32, 3, 8, 1, 2, "bipolar", True),
    "int3-x-simd8-C5-pe5": (5, 32, 5, 8, 3, 1, "int", True),
    "int2-x-w2-simd8-C3-pe1": (3, 32, 1, 8, 2, 2, "int", True),
}


def _make(cout, count, pe, simd, in_bits, weight_bits, kind, weights, bias, acc_shape, serial=False):
    return BitMacArray(in_bits=in_bits, in_signed=kind == "int", in_bipolar=kind == "bipolar", in_count=count,
                       weights=weights.tolist(), weight_bits=weight_bits,
                       bias=None if bias is None else bias.tolist(), pe=pe, simd=simd, acc_shape=acc_shape,
                       serial=serial)


def _serial_beats(vectors, nf, simd):
    """A serial array's input: each vector's SF slices of simd elements, NF times over (a FoldedWindow's order)."""
    return [v[s:s + simd] for v in vectors for _ in range(nf) for s in range(0, len(v), simd)]


@pytest.mark.parametrize("serial", [False, True], ids=["vector", "serial"])
@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_golden(name, rate, serial):
    """serial=True: the folds come one slice per beat (as a FoldedWindow serves them), nothing is held."""
    cout, count, pe, simd, in_bits, weight_bits, kind, with_bias = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(f"{'serial/' * serial}{name}/{rate}".encode()))
    weights = _weights(rng, cout, count, weight_bits)
    bias = rng.integers(-50, 51, size=cout) if with_bias else None
    lo, hi = _value_range(in_bits, kind == "int", kind == "bipolar")
    values = np.concatenate([_random_values(rng, count, 3, in_bits, kind == "int", kind == "bipolar"),
                             np.full((1, count), hi), np.full((1, count), lo)])
    dut = _make(cout, count, pe, simd, in_bits, weight_bits, kind, weights, bias,
                _tight_shape(weights, bias, lo, hi), serial)
    assert dut.held_bits == (0 if serial else count * in_bits)
    valid_prob, ready_prob = RATES[rate]
    beats = _to_beats(values, kind == "bipolar")
    got = run_stream_test(dut, _serial_beats(beats, cout // pe, simd) if serial else beats,
                          len(values) * cout // pe, seed=4 if serial else 3,
                          valid_prob=valid_prob, ready_prob=ready_prob)
    _check(got, _golden(weights, bias, values), pe)


# name: (in_bits, weight_bits, activation kind, weights of one sign or mixed)
EXTREMES = {
    "K4-all+": (4, 1, "uint", "all+"),
    "K4-all-": (4, 1, "uint", "all-"),
    "K4-mixed": (4, 1, "uint", "mixed"),
    "xnor-all+": (1, 1, "bipolar", "all+"),
    "xnor-all-": (1, 1, "bipolar", "all-"),
    "w3-K3-all-min": (3, 3, "uint", "all-"),
    "w3-K3-all-max": (3, 3, "uint", "all+"),
    "w2-int3-mixed": (3, 2, "int", "mixed"),
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_extremes_fit_the_tight_width(name):
    """All inputs at their limits (all ones at max): the exact narrowest acc_shape suffices, one bit less is refused."""
    in_bits, weight_bits, kind, sign = EXTREMES[name]
    cout, count, pe, simd = 4, 64, 2, 16
    w_min = -1 if weight_bits == 1 else -(1 << (weight_bits - 1))
    w_max = 1 if weight_bits == 1 else (1 << (weight_bits - 1)) - 1
    if sign == "all+":
        weights = np.full((cout, count), w_max)
    elif sign == "all-":
        weights = np.full((cout, count), w_min)
    else:
        weights = np.array([[w_max if (c + k) % 2 else w_min for k in range(count)] for c in range(cout)])
    bias = np.array([100, -100, 0, 7])
    lo, hi = _value_range(in_bits, kind == "int", kind == "bipolar")
    acc_shape = _tight_shape(weights, bias, lo, hi)
    values = _extreme_values(weights, lo, hi)
    dut = _make(cout, count, pe, simd, in_bits, weight_bits, kind, weights, bias, acc_shape)
    got = run_stream_test(dut, _to_beats(values, kind == "bipolar"), len(values) * cout // pe, seed=5,
                          valid_prob=0.6, ready_prob=0.6)
    acc = _golden(weights, bias, values)
    _check(got, acc, pe)
    assert dut.acc_range == (int(acc.min()), int(acc.max()))
    narrower = signed(acc_shape.width - 1) if acc_shape.signed else unsigned(acc_shape.width - 1)
    with pytest.raises(ValueError, match=rf"acc_shape {re.escape(repr(narrower))} cannot hold .* "
                                         rf"needs {re.escape(repr(acc_shape))}$"):
        _make(cout, count, pe, simd, in_bits, weight_bits, kind, weights, bias, narrower)


@pytest.mark.parametrize("cout,count,pe,simd", [(5, 64, 1, 8), (3, 64, 3, 1), (7, 64, 7, 64), (6, 32, 2, 8)])
def test_timing_equals_mac_array(cout, count, pe, simd):
    """N windows at full rate: one per NF·SF cycles, first beat after `latency`; cycle for cycle as MacArray."""
    rng = np.random.default_rng(cout * count + pe)
    weights = _weights(rng, cout, count, 1)
    bias = rng.integers(-9, 10, size=cout)
    values = rng.integers(0, 4, size=(4, count))
    dut = _make(cout, count, pe, simd, 2, 1, "uint", weights, bias, signed(12))
    nf, sf = dut.fold
    assert (nf, sf) == (cout // pe, count // simd) and dut.cycles_per_vector == nf * sf
    in_cycles, out_cycles, got = measure_full_rate(dut, values.tolist(), len(values) * nf)
    _check(got, _golden(weights, bias, values), pe)
    assert in_cycles == [n * nf * sf for n in range(len(values))]
    assert dut.latency == sf + 3
    assert out_cycles == [k * sf + dut.latency for k in range(len(values) * nf)]
    # The last beat leaves N·NF·SF cycles after the first input, plus the pipeline (3 stages).
    assert out_cycles[-1] - in_cycles[0] == len(values) * nf * sf + 3
    mac = MacArray(in_shape=unsigned(2), in_count=count, weights=weights.tolist(), bias=bias.tolist(), pe=pe,
                   simd=simd, acc_shape=signed(12))
    assert (mac.fold, mac.cycles_per_vector, mac.latency) == (dut.fold, dut.cycles_per_vector, dut.latency)
    mac_in, mac_out, mac_got = measure_full_rate(mac, values.tolist(), len(values) * nf)
    assert (mac_in, mac_out, mac_got) == (in_cycles, out_cycles, got)


def test_serial_throughput_and_latency():
    """Serial: a slice every cycle from the first, each vector's NF beats 3 cycles after its slices (as a
    serial MacArray's, which starts a cycle later: its ROM reads ahead)."""
    rng = np.random.default_rng(9)
    weights = _weights(rng, 6, 27, 1)
    vectors = rng.integers(0, 4, size=(3, 27)).tolist()
    dut = _make(6, 27, 2, 9, 2, 1, "uint", weights, None, signed(12), serial=True)
    nf, sf = dut.fold
    in_cycles, out_cycles, got = measure_full_rate(dut, _serial_beats(vectors, nf, 9), len(vectors) * nf)
    _check(got, _golden(weights, None, vectors), 2)
    assert in_cycles == list(range(len(vectors) * nf * sf))
    assert dut.latency == 3
    assert out_cycles == [in_cycles[(k + 1) * sf - 1] + 3 for k in range(len(vectors) * nf)]
    with pytest.raises(TypeError, match=r"^serial must be a bool, not 1$"):
        _make(6, 27, 2, 9, 2, 1, "uint", weights, None, signed(12), serial=1)


def test_figures():
    weights = [[1 if (c + k) % 3 else -1 for k in range(72)] for c in range(16)]
    dut = BitMacArray(in_bits=2, in_count=72, weights=weights, pe=4, simd=18, acc_shape=signed(10))
    assert dut.fold == (4, 4) and dut.cycles_per_vector == 16 and dut.latency == 4 + 3
    assert dut.weight_width == 1 and dut.weight_bits == 16 * 72          # ROM bits, one per weight
    assert dut.mode == "and-shared" and dut.in_shape == unsigned(2)
    w3 = BitMacArray(in_bits=3, in_count=8, weights=[[-4, 3] * 4] * 2, weight_bits=3, pe=1, simd=4,
                     acc_shape=signed(10))
    assert w3.mode == "planes" and w3.weight_bits == 2 * 8 * 3 and w3.acc_range == (-4 * 7 * 4, 3 * 7 * 4)
    xnor = BitMacArray(in_bits=1, in_bipolar=True, in_count=8, weights=[[1] * 8, [-1] * 8], bias=[3, 0], pe=2,
                       simd=8, acc_shape=signed(5))
    assert xnor.mode == "xnor" and xnor.acc_range == (-8, 11) and xnor.in_shape == unsigned(1)


@pytest.mark.parametrize("kind,weight_bits", [("uint", 1), ("bipolar", 1), ("uint", 3), ("int", 2)])
def test_no_multiplier(kind, weight_bits):
    """Shifts and adds only: the netlist has no $mul cell (so synthesis has nothing to put in a DSP)."""
    rng = np.random.default_rng(0)
    weights = _weights(rng, 4, 16, weight_bits)
    dut = _make(4, 16, 2, 8, 1 if kind == "bipolar" else 3, weight_bits, kind, weights, np.arange(4), signed(12))
    text = rtlil.convert(dut)
    assert "$mul" not in text and "$add" in text
    # The Bipolar-weight case computes the weight-independent popcount once, shared by the PEs.
    assert text.count("shared_popcount") > 0 if dut.mode == "and-shared" else "shared_popcount" not in text


def _args(**overrides):
    args = dict(in_bits=2, in_count=6, weights=[[1, -1, 1, -1, 1, 1]] * 4, bias=[0] * 4, pe=2, simd=3,
                acc_shape=signed(8))
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides,error,match", [
    (dict(in_bits=0), ValueError, r"in_bits must be a positive integer, not 0"),
    (dict(in_signed=1), TypeError, r"in_signed must be a bool, not 1"),
    (dict(in_bipolar="yes"), TypeError, r"in_bipolar must be a bool, not 'yes'"),
    (dict(in_bipolar=True), ValueError, r"in_bipolar activations are one bit: in_bits must be 1, not 2"),
    (dict(in_bits=1, in_bipolar=True, in_signed=True), ValueError,
     r"in_bipolar and in_signed exclude each other .* not in_signed=True with in_bipolar=True"),
    (dict(in_count=0), ValueError, r"in_count must be a positive integer, not 0"),
    (dict(weight_bits=0), ValueError, r"weight_bits must be a positive integer, not 0"),
    (dict(weights=[]), ValueError, r"weights must be a non-empty list of rows, not \[\]"),
    (dict(weights=[[1] * 5] * 4), ValueError, r"weights\[0\] must be a list of in_count=6 ints, not \[1, 1, 1, 1, 1\]"),
    (dict(weights=[[1] * 6] * 3 + [[1, 1, 1, 1, 1, 1.0]]), TypeError, r"weights\[3\]\[5\] must be an int, not 1\.0"),
    (dict(weights=[[1] * 6] * 3 + [[1, 1, 0, 1, 1, 1]]), ValueError,
     r"weights\[3\]\[2\] must be -1 or \+1 \(Bipolar, weight_bits=1\), not 0"),
    (dict(weights=[[1] * 6, [1, 2, 1, 1, 1, 1]] * 2), ValueError,
     r"weights\[1\]\[1\] must be -1 or \+1 \(Bipolar, weight_bits=1\), not 2"),
    (dict(weights=[[1] * 6, [1, 2, 1, 1, 1, 1]] * 2, weight_bits=2), ValueError,
     r"weights\[1\]\[1\] must be an int in \[-2, 1\] \(weight_bits=2\), not 2"),
    (dict(weights=[[-5] + [1] * 5] * 4, weight_bits=3), ValueError,
     r"weights\[0\]\[0\] must be an int in \[-4, 3\] \(weight_bits=3\), not -5"),
    (dict(bias=[0] * 3), ValueError, r"bias must be None or a list of 4 ints \(one per output channel\), not \[0, 0, 0\]"),
    (dict(pe=3), ValueError, r"pe must divide the 4 output channels \(one of 1, 2, 4\), not 3"),
    (dict(pe=0), ValueError, r"pe must be a positive integer, not 0"),
    (dict(simd=4), ValueError, r"simd must divide in_count=6 \(one of 1, 2, 3, 6\), not 4"),
    (dict(simd=True), ValueError, r"simd must be a positive integer, not True"),
    (dict(acc_shape=None), TypeError, r"acc_shape must be a shape, not None"),
    # Rows [1, -1, 1, -1, 1, 1] on UInt(2): acc in [-6, 12].
    (dict(acc_shape=signed(4)), ValueError,
     r"acc_shape signed\(4\) cannot hold the accumulator range \[-6, 12\] .* which needs signed\(5\)"),
    (dict(acc_shape=unsigned(8)), ValueError,
     r"acc_shape unsigned\(8\) cannot hold the accumulator range \[-6, 12\] .* which needs signed\(5\)"),
])
def test_constructor_errors(overrides, error, match):
    with pytest.raises(error, match=match):
        BitMacArray(**_args(**overrides))


@pytest.mark.parametrize("bias0,acc_shape,fits", [
    (3, signed(5), True), (4, signed(5), False),            # hi = 12 + bias0 vs 15
    (-10, signed(5), True), (-11, signed(5), False),         # lo = -6 + bias0 vs -16
])
def test_acc_shape_boundary(bias0, acc_shape, fits):
    args = _args(bias=[bias0, 0, 0, 0], acc_shape=acc_shape)
    if fits:
        BitMacArray(**args)
    else:
        with pytest.raises(ValueError, match=r"cannot hold the accumulator range"):
            BitMacArray(**args)


def test_converts_to_verilog():
    for overrides in [dict(), dict(pe=4, simd=6, bias=[1, -2, 3, 4]), dict(pe=1, simd=1, bias=[5, 0, 0, -5]),
                      dict(in_bits=1, in_bipolar=True), dict(weights=[[1, -2, 1, -1, 1, 1]] * 4, weight_bits=2)]:
        rtl = verilog.convert(BitMacArray(**_args(**overrides)), emit_src=False)
        assert "module" in rtl

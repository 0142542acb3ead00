"""Unit tests of the IR: types, op validation and inference, Graph construction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwseg.ir import (ArgMax, Bipolar, Conv2d, Graph, Input, Int, IRError, MaxPool, MulShift, Node,
                      TensorType, UInt, conv_output_size, type_for_range)


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize("dtype, bits, lo, hi, signed", [
    (UInt(1), 1, 0, 1, False), (UInt(8), 8, 0, 255, False), (UInt(16), 16, 0, 65535, False),
    (Int(1), 1, -1, 0, True), (Int(2), 2, -2, 1, True), (Int(8), 8, -128, 127, True),
    (Int(32), 32, -2 ** 31, 2 ** 31 - 1, True), (Bipolar(), 1, -1, 1, True),
])
def test_type_ranges(dtype, bits, lo, hi, signed):
    assert (dtype.bits, dtype.min, dtype.max, dtype.signed) == (bits, lo, hi, signed)


def test_type_names_and_equality():
    assert str(UInt(8)) == "UInt(8)" and str(Int(4)) == "Int(4)" and str(Bipolar()) == "Bipolar"
    assert UInt(8) == UInt(8) and UInt(8) != Int(8) and Bipolar() == Bipolar()
    assert str(TensorType((3, 4, 5), UInt(8))) == "UInt(8)[3×4×5]"


@pytest.mark.parametrize("make, match", [
    (lambda: UInt(0), "UInt width must be a positive integer, not 0"),
    (lambda: Int(-3), "Int width must be a positive integer, not -3"),
    (lambda: Int(8.0), "Int width must be a positive integer, not 8.0"),
    (lambda: TensorType((3, 4), UInt(8)), r"three positive integers \(C, H, W\), not \(3, 4\)"),
    (lambda: TensorType((3, 0, 4), UInt(8)), "three positive integers"),
])
def test_type_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_tensor_type_properties():
    t = TensorType([4, 6, 10], Int(5))
    assert t.shape == (4, 6, 10) and (t.channels, t.height, t.width, t.pixels) == (4, 6, 10, 60)


@pytest.mark.parametrize("lo, hi, expected", [
    (-128, 127, Int(8)), (0, 255, UInt(8)), (-129, 0, Int(9)), (-128, 128, Int(9)), (0, 256, UInt(9)),
    (0, 0, UInt(1)), (0, 1, UInt(1)), (-1, 0, Int(1)), (-1, 1, Int(2)), (-2, 1, Int(2)), (5, 5, UInt(3)),
    (-4, -4, Int(3)), (-5, -3, Int(4)), (-(2 ** 40), 2 ** 40 - 1, Int(41)),
])
def test_type_for_range_boundaries(lo, hi, expected):
    assert type_for_range(lo, hi) == expected


def test_type_for_range_is_narrowest_by_brute_force():
    """For every range in [-70, 70]: the type holds it and no narrower type of that kind does."""
    for lo in range(-70, 71):
        for hi in range(lo, 71):
            got = type_for_range(lo, hi)
            signed = lo < 0
            assert isinstance(got, Int if signed else UInt), (lo, hi)
            bits = 1
            while True:  # the narrowest width, counted from the type definitions' ranges
                vmin, vmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
                if vmin <= lo and hi <= vmax:
                    break
                bits += 1
            assert got.bits == bits, (lo, hi, got)


def test_type_for_range_rejects_empty():
    with pytest.raises(ValueError, match=r"empty range \[3, 2\]"):
        type_for_range(3, 2)


# --------------------------------------------------------------------------- ops: validation


def conv(**kw):
    args = dict(weight=np.ones((4, 3, 3, 3), np.int64), bias=np.zeros(4, np.int64), weight_type=Int(4))
    args.update(kw)
    return Conv2d(**args)


@pytest.mark.parametrize("kw, match", [
    (dict(weight=np.ones((4, 3, 3))), "Conv2d weight must have 4 dimensions, not shape"),
    (dict(bias=np.zeros((4, 1))), "Conv2d bias must have 1 dimensions"),
    (dict(bias=np.zeros(3, np.int64)), "Conv2d bias has 3 entries for 4 output channels"),
    (dict(weight=np.full((4, 3, 3, 3), 0.5)), "Conv2d weight must hold integers"),
    (dict(weight=np.full((4, 3, 3, 3), "a")), "Conv2d weight must hold integers, not <U1"),
    (dict(stride=0), r"Conv2d stride must be ≥ 1, not \(0, 0\)"),
    (dict(stride=(1, 2, 3)), r"Conv2d stride must be an int or a pair of ints, not \(1, 2, 3\)"),
    (dict(dilation=(1, 0)), r"Conv2d dilation must be ≥ 1, not \(1, 0\)"),
    (dict(padding=-1), r"Conv2d padding must be ≥ 0, not \(-1, -1\)"),
    (dict(groups=3), "Conv2d groups must divide the 4 output channels, not 3"),
    (dict(groups=0), "Conv2d groups must divide the 4 output channels, not 0"),
    (dict(weight=np.zeros((4, 3, 3, 3)), weight_type=Bipolar()), "Conv2d weights of type Bipolar must all be \\+1 or −1"),
    (dict(weight=np.full((4, 3, 3, 3), -8), weight_type=Int(4)), "exceed the narrow range ±7 of Int\\(4\\): one is -8"),
    # NaN cast to int64 is −2**63, whose |w| overflows back to −2**63: both ends are compared
    (dict(weight=np.concatenate([np.full((1, 3, 3, 3), np.iinfo(np.int64).min), np.zeros((3, 3, 3, 3), np.int64)]),
          weight_type=Int(8)), "exceed the narrow range ±127 of Int\\(8\\): one is -9223372036854775808"),
    (dict(weight_type=UInt(4)), "Conv2d weight_type must be Int\\(b\\) or Bipolar"),
])
def test_conv2d_validation(kw, match):
    with pytest.raises(IRError, match=match):
        conv(**kw)


def test_conv2d_accepts_valid_and_freezes_arrays():
    op = conv(weight=np.full((4, 3, 2, 1), -7.0), weight_type=Int(4), stride=(1, 2), groups=1)
    assert op.weight.dtype == np.int64 and not op.weight.flags.writeable and not op.bias.flags.writeable
    assert (op.kernel, op.stride, op.padding, op.in_channels, op.out_channels) == ((2, 1), (1, 2), (0, 0), 3, 4)
    bip = conv(weight=np.where(np.arange(4 * 3 * 9).reshape(4, 3, 3, 3) % 2, 1, -1), weight_type=Bipolar())
    assert bip.describe() == "Conv2d 3→4 3×3 w Bipolar"


@pytest.mark.parametrize("x, match", [
    (TensorType((3, 8, 8), Bipolar()), "Conv2d input of type Bipolar is not supported"),
    (TensorType((2, 8, 8), UInt(8)), "Conv2d expects 3 input channels, not 2"),
    (TensorType((3, 2, 8), UInt(8)), "a 2×8 input is too small for a 3×3 convolution"),
])
def test_conv2d_infer_errors(x, match):
    with pytest.raises(IRError, match=match):
        conv().infer([x])


@pytest.mark.parametrize("kw, match", [
    (dict(shift=-1), "MulShift shift must be an integer in 0…62, not -1"),
    (dict(shift=63), "MulShift shift must be an integer in 0…62, not 63"),
    (dict(shift=2.0), "MulShift shift must be an integer in 0…62, not 2.0"),
    (dict(lo=10, hi=9), "MulShift needs lo ≤ hi, not lo=10, hi=9"),
    (dict(multiplier=np.ones((2, 2))), "MulShift multiplier must have 1 dimensions"),
    (dict(multiplier=[1.5, 2]), "MulShift multiplier must hold integers"),
])
def test_mul_shift_validation(kw, match):
    args = dict(multiplier=[3, 5], shift=4, lo=0, hi=255)
    args.update(kw)
    with pytest.raises(IRError, match=match):
        MulShift(**args)


def test_mul_shift_infer():
    op = MulShift([3, -5], 4, -8, 7)
    assert op.infer([TensorType((2, 5, 6), Int(20))]) == TensorType((2, 5, 6), Int(4))
    assert MulShift([1], 0, 0, 255).infer([TensorType((1, 2, 2), Int(9))]).dtype == UInt(8)
    with pytest.raises(IRError, match="MulShift has 2 multipliers for 3 channels"):
        op.infer([TensorType((3, 5, 6), Int(20))])
    with pytest.raises(IRError, match="MulShift input of type Bipolar is not supported"):
        op.infer([TensorType((2, 5, 6), Bipolar())])


@pytest.mark.parametrize("kw, match", [
    (dict(kernel=0), "MaxPool needs kernel, stride ≥ 1 and padding ≥ 0"),
    (dict(kernel=2, stride=(0, 1)), "MaxPool needs kernel, stride ≥ 1"),
    (dict(kernel=2, padding=-1), "padding ≥ 0"),
    (dict(kernel=(3, 2), padding=(1, 2)), r"MaxPool padding must be at most half the kernel, not \(1, 2\)"),
    (dict(kernel="ab"), "MaxPool kernel must be an int or a pair of ints"),
])
def test_max_pool_validation(kw, match):
    with pytest.raises(IRError, match=match):
        MaxPool(**kw)


def test_max_pool_infer_matches_torch():
    op = MaxPool((3, 2), (2, 3), (1, 1))
    x = TensorType((4, 11, 10), Int(6))
    shape = F.max_pool2d(torch.zeros(1, 4, 11, 10), (3, 2), (2, 3), (1, 1)).shape[1:]
    assert op.infer([x]) == TensorType(tuple(shape), Int(6))
    assert MaxPool(2).stride == (2, 2)
    with pytest.raises(IRError, match="a 1×10 input is too small for a 3×2 max-pool"):
        MaxPool((3, 2), 1, 0).infer([TensorType((4, 1, 10), Int(6))])


def test_arg_max():
    assert ArgMax().infer([TensorType((21, 5, 7), Int(8))]) == TensorType((1, 5, 7), UInt(8))
    assert ArgMax(2).infer([TensorType((4, 5, 7), Int(8))]).dtype == UInt(2)
    with pytest.raises(IRError, match="ArgMax over 5 channels needs more than 2 index bits"):
        ArgMax(2).infer([TensorType((5, 5, 7), Int(8))])
    for bits in (0, 17, 8.0):
        with pytest.raises(IRError, match=f"ArgMax index width must be 1…16 bits, not {bits!r}"):
            ArgMax(bits)


def test_input_op():
    op = Input([3, 4, 5], UInt(8))
    assert op.shape == (3, 4, 5) and op.infer([]) == TensorType((3, 4, 5), UInt(8))
    with pytest.raises(ValueError, match="three positive integers"):
        Input((3, 4), UInt(8))


def test_conv_output_size_matches_torch():
    rng = np.random.default_rng(1)
    for _ in range(100):
        k, s, p, d = (int(v) for v in rng.integers(1, 5, 4))
        size = (k - 1) * d + 1 - 2 * min(p, 3) + int(rng.integers(0, 9))
        size = max(size, 1)
        p = min(p, 3)
        out = F.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1), stride=(s, 1), padding=(p, 0),
                       dilation=(d, 1)).shape[2]
        assert conv_output_size(size, k, s, p, d) == out, (size, k, s, p, d)


# --------------------------------------------------------------------------- Conv2d accumulator width


def narrowest_int(lo, hi):
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return Int(bits)


def extreme_bounds(op, dtype):
    """Per output channel, the least and greatest accumulator, by torch on the extreme inputs.

    The input is exactly one (dilated) kernel in size, without padding, so each output is one
    full window; for output channel ``o`` the input puts the type's max where ``w > 0`` and its
    min where ``w < 0`` (and the reverse for the least value).
    """
    w = op.weight
    cout, cin_g, kh, kw = w.shape
    dh, dw = op.dilation
    cout_g = cout // op.groups
    frames = []
    for sign in (1, -1):
        for o in range(cout):
            x = np.zeros((op.in_channels, (kh - 1) * dh + 1, (kw - 1) * dw + 1))
            g = o // cout_g
            patch = np.where(sign * w[o] > 0, dtype.max, dtype.min)
            x[g * cin_g:(g + 1) * cin_g, ::dh, ::dw] = patch
            frames.append(x)
    out = F.conv2d(torch.tensor(np.array(frames)), torch.tensor(w, dtype=torch.float64), torch.tensor(op.bias, dtype=torch.float64),
                   dilation=op.dilation, groups=op.groups).numpy()[:, :, 0, 0]
    most = np.array([out[o, o] for o in range(cout)])
    least = np.array([out[cout + o, o] for o in range(cout)])
    return least.astype(np.int64), most.astype(np.int64)


def random_convs(count=40, seed=31):
    rng = np.random.default_rng(seed)
    for i in range(count):
        groups = int(rng.choice([1, 1, 2, 4]))
        cout, cin = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        if i % 4 == 0:
            wt = Bipolar()
            w = rng.choice([-1, 1], (cout, cin // groups, *kernel))
        else:
            wt = Int(int(rng.integers(2, 9)))
            limit = 2 ** (wt.bits - 1) - 1
            w = rng.integers(-limit, limit + 1, (cout, cin // groups, *kernel))
            if i % 7 == 1:
                w = np.abs(w)  # all-positive weights: an all-non-negative accumulator
        bias = rng.integers(-300, 300, cout) if i % 3 else np.zeros(cout, np.int64)
        dtype = UInt(int(rng.integers(1, 9))) if i % 2 else Int(int(rng.integers(2, 9)))
        op = Conv2d(w, bias, wt, dilation=tuple(int(v) for v in rng.integers(1, 3, 2)), groups=groups)
        yield pytest.param(op, dtype, id=f"{i}-{op.describe()}-in {dtype}")


@pytest.mark.parametrize("op, dtype", list(random_convs()))
def test_conv2d_accumulator_type_by_extreme_inputs(op, dtype):
    least, most = extreme_bounds(op, dtype)
    got_least, got_most = op.accumulator_bounds(dtype)
    assert np.array_equal(got_least, least) and np.array_equal(got_most, most)
    (kh, kw), (dh, dw) = op.kernel, op.dilation
    x = TensorType((op.in_channels, (kh - 1) * dh + 3, (kw - 1) * dw + 2), dtype)
    out = op.infer([x])
    assert out.dtype == narrowest_int(min(int(least.min()), 0), max(int(most.max()), 0))
    assert out.shape == (op.out_channels, 3, 2)


@pytest.mark.parametrize("dtype, kernel, cin, weight_type", [
    (UInt(2), (2, 1), 2, Int(3)), (Int(3), (1, 3), 1, Int(4)), (UInt(3), (2, 2), 1, Bipolar()), (Int(2), (1, 1), 4, Int(2)),
])
def test_conv2d_accumulator_type_exhaustive(dtype, kernel, cin, weight_type):
    """Every possible input window, through torch: the inferred type is exactly the narrowest."""
    rng = np.random.default_rng(cin * 10 + kernel[0])
    taps = cin * kernel[0] * kernel[1]
    if isinstance(weight_type, Bipolar):
        w = rng.choice([-1, 1], (3, cin, *kernel))
    else:
        limit = 2 ** (weight_type.bits - 1) - 1
        w = rng.integers(-limit, limit + 1, (3, cin, *kernel))
    op = Conv2d(w, np.array([5, -3, 0]), weight_type)
    values = range(dtype.min, dtype.max + 1)
    windows = np.array(list(itertools.product(values, repeat=taps)), dtype=np.float64)
    out = F.conv2d(torch.from_numpy(windows.reshape(-1, cin, *kernel)), torch.tensor(w, dtype=torch.float64),
                   torch.tensor(op.bias, dtype=torch.float64)).numpy()[:, :, 0, 0]
    least, most = op.accumulator_bounds(dtype)
    assert np.array_equal(least, out.min(axis=0)) and np.array_equal(most, out.max(axis=0))
    assert op.infer([TensorType((cin, *kernel), dtype)]).dtype == narrowest_int(min(out.min(), 0), max(out.max(), 0))


# --------------------------------------------------------------------------- Graph


def small_nodes():
    return [
        Node("x", Input((2, 6, 6), UInt(8))),
        Node("c", Conv2d(np.ones((3, 2, 3, 3), np.int64), np.zeros(3, np.int64), Int(2)), ("x",)),
        Node("r", MulShift([1, 2, 3], 2, 0, 15), ("c",)),
        Node("a", ArgMax(2), ("r",)),
    ]


def test_graph_basics():
    g = Graph(small_nodes(), name="small")
    assert [n.name for n in g] == ["x", "c", "r", "a"] and len(g) == 4 and "r" in g and "zz" not in g
    assert g.input == "x" and g.output == "a"
    assert g.input_type == TensorType((2, 6, 6), UInt(8))
    assert g.types["c"] == TensorType((3, 4, 4), Int(14))  # 0 … 18 taps · 255 = 4590 → Int(14)
    assert g.output_type == TensorType((1, 4, 4), UInt(2))
    assert g.input_types("r") == [g.types["c"]] and [n.name for n in g.consumers("c")] == ["r"]
    assert g.replace(output="r").output == "r" and g.replace().output == "a"
    tagged = g.with_attrs("c", pe=3)
    assert tagged["c"].attrs["pe"] == 3 and "pe" not in g["c"].attrs
    assert "c " in g.summary() and "Int(14)[3×4×4]" in g.summary()
    with pytest.raises(KeyError, match="no node named 'q'"):
        g["q"]


@pytest.mark.parametrize("edit, match", [
    (lambda n: n + [Node("c", ArgMax(2), ("r",))], "two nodes are named 'c'"),
    (lambda n: [n[0], Node("c", MaxPool(2), ("zz",))], "node 'c' reads 'zz', which is not defined before it"),
    (lambda n: [n[0], Node("c", MaxPool(2), ("r",))] + n[2:], "node 'c' reads 'r', which is not defined before it"),
    (lambda n: n + [Node("y", Input((1, 2, 2), UInt(8)))], "a graph needs exactly one Input node, not 2"),
    (lambda n: [], "a graph needs exactly one Input node, not 0"),
])
def test_graph_errors(edit, match):
    with pytest.raises(IRError, match=match):
        Graph(edit(small_nodes()))


def test_graph_bad_output():
    with pytest.raises(IRError, match="the output 'nope' is not a node of the graph"):
        Graph(small_nodes(), output="nope")


def test_graph_too_small_input_names_node():
    nodes = small_nodes()
    nodes[0] = Node("x", Input((2, 2, 6), UInt(8)))
    with pytest.raises(IRError, match=r"node 'c' \(Conv2d 2→3 3×3 w Int\(2\)\): a 2×6 input is too small"):
        Graph(nodes)


def test_graph_type_errors_name_node():
    nodes = small_nodes()
    nodes[3] = Node("a", ArgMax(1), ("r",))
    with pytest.raises(IRError, match=r"node 'a' \(ArgMax → UInt\(1\)\): ArgMax over 3 channels"):
        Graph(nodes)


@pytest.mark.parametrize("make, match", [
    (lambda: Node("2x", ArgMax()), "node names must be identifiers"),
    (lambda: Node("a-b", ArgMax()), "node names must be identifiers"),
    (lambda: Node("a", "conv"), "node 'a' holds 'conv', which is not an IR op"),
    (lambda: Node("a", ArgMax()), r"node 'a': ArgMax takes 1 input\(s\), not 0"),
    (lambda: Node("a", Input((1, 2, 2), UInt(8)), ("x",)), r"Input takes 0 input\(s\), not 1"),
])
def test_node_errors(make, match):
    with pytest.raises(IRError, match=match):
        make()

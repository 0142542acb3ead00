"""IR tests of Threshold, Add, Concat, AvgPool, ConvTranspose2d, Upsample, Fork, and of the
validators' handling of NumPy integers and Input dtypes: messages, shapes, types, bounds.

Shapes are checked against torch's own functions; accumulator bounds against the extreme
values torch computes on the extreme inputs (found from torch's linear map), and on every
possible input for small cases.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwseg.ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, Int,
                      IRError, MaxPool, MulShift, Node, TensorType, Threshold, UInt, Upsample,
                      conv_transpose_output_size)


def narrowest_int(lo, hi):
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return Int(bits)


def narrowest_uint(hi):
    bits = 1
    while hi > 2 ** bits - 1:
        bits += 1
    return UInt(bits)


# --------------------------------------------------------------------------- NumPy integers, Input


def test_numpy_integer_parameters_accepted():
    w = np.ones((4, 2, 3, 3), np.int64)
    op = Conv2d(w, np.zeros(4), Int(3), stride=np.int64(2), padding=np.int32(1), dilation=(np.int8(1), 2),
                groups=np.int64(2))
    assert (op.stride, op.padding, op.dilation, op.groups) == ((2, 2), (1, 1), (1, 2), 2)
    assert type(op.groups) is int and all(type(v) is int for v in op.stride)
    assert MaxPool(np.int64(2)).kernel == (2, 2) and AvgPool(np.uint8(2), np.int64(1)).stride == (1, 1)
    assert ArgMax(np.int64(4)).bits == 4 and type(ArgMax(np.int16(4)).bits) is int
    assert Concat(np.int64(3)).arity == 3 and Fork(np.int32(2)).outputs == 2
    assert Add(np.int64(-4), np.int16(3)).out_dtype == Int(3)
    assert Upsample(np.int64(2)).factor == (2, 2)
    t = ConvTranspose2d(np.ones((2, 2, 2, 2)), np.zeros(4), Int(2), stride=np.int64(2),
                        output_padding=np.int64(1), groups=np.int64(2))
    assert (t.stride, t.output_padding, t.groups) == ((2, 2), (1, 1), 2)


@pytest.mark.parametrize("make, match", [
    (lambda: MaxPool(True), "MaxPool kernel must be an int or a pair of ints, not True"),
    (lambda: MaxPool(2.0), "MaxPool kernel must be an int or a pair of ints, not 2.0"),
    (lambda: AvgPool((2, 2.0)), r"AvgPool kernel must be an int or a pair of ints, not \(2, 2.0\)"),
    (lambda: Conv2d(np.ones((2, 2, 1, 1)), np.zeros(2), Int(2), groups=2.0), "groups must divide .* not 2.0"),
    (lambda: Conv2d(np.ones((2, 2, 1, 1)), np.zeros(2), Int(2), groups=True), "not True"),
    (lambda: ArgMax(np.float64(4)), "ArgMax index width must be 1…16 bits, not"),
])
def test_non_integers_refused(make, match):
    with pytest.raises(IRError, match=match):
        make()


@pytest.mark.parametrize("dtype", ["uint8", np.uint8, 8, None, TensorType((1, 1, 1), UInt(8))])
def test_input_dtype_must_be_a_scalar_type(dtype):
    with pytest.raises(IRError, match=r"Input dtype must be UInt\(b\), Int\(b\) or Bipolar, not "):
        Input((1, 2, 2), dtype)


def test_input_accepts_every_scalar_type():
    for dtype in (UInt(8), Int(3), Bipolar()):
        assert Input((1, 2, 2), dtype).infer([]) == TensorType((1, 2, 2), dtype)


# --------------------------------------------------------------------------- Threshold


@pytest.mark.parametrize("t, match", [
    (np.array([1, 2, 3]), "Threshold thresholds must have 2 dimensions, not shape"),
    (np.array([[1.5, 2.0]]), "Threshold thresholds must hold integers"),
    (np.zeros((2, 0), np.int64), r"at least one channel and one threshold, not shape \(2, 0\)"),
    (np.zeros((0, 3), np.int64), r"not shape \(0, 3\)"),
    (np.array([[1, 2, 3], [0, 5, 4]]), r"channel 1 has T\[1, 1\] = 5 before T\[1, 2\] = 4"),
    (np.array([[2 ** 62, -(2 ** 62)]]), r"channel 0 has T\[0, 0\] = 4611686018427387904 before"),
])
def test_threshold_validation(t, match):
    with pytest.raises(IRError, match=match):
        Threshold(t)


@pytest.mark.parametrize("n, bits", [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (15, 4), (16, 5), (255, 8),
                                     (256, 9)])
def test_threshold_output_type(n, bits):
    t = np.tile(np.arange(n), (3, 1))
    op = Threshold(t)
    assert op.count == n and op.channels == 3 and op.out_dtype == UInt(bits) == narrowest_uint(n)
    assert op.infer([TensorType((3, 4, 5), Int(20))]) == TensorType((3, 4, 5), UInt(bits))
    assert op.describe() == f"Threshold {n} per channel → UInt({bits})"


def test_threshold_infer_errors_and_equal_thresholds():
    op = Threshold([[0, 0, 5], [-3, -3, -3]])  # repeated thresholds are ascending (non-decreasing)
    assert op.thresholds.dtype == np.int64 and not op.thresholds.flags.writeable
    with pytest.raises(IRError, match="Threshold has thresholds for 2 channels, not 3"):
        op.infer([TensorType((3, 4, 4), Int(8))])
    with pytest.raises(IRError, match="Threshold input of type Bipolar is not supported"):
        op.infer([TensorType((2, 4, 4), Bipolar())])


# --------------------------------------------------------------------------- Add


def test_add():
    op = Add(0, 255)
    assert op.arity == 2 and op.describe() == "Add → UInt(8) relu"
    a, b = TensorType((4, 5, 6), UInt(8)), TensorType((4, 5, 6), Int(9))
    assert op.infer([a, b]) == TensorType((4, 5, 6), UInt(8))
    assert Add(-128, 127).infer([a, a]).dtype == Int(8) and Add(-128, 127).describe() == "Add → Int(8)"
    assert Add(-5, 300).out_dtype == Int(10)
    with pytest.raises(IRError, match=r"Add needs two inputs of the same shape, not UInt\(8\)\[4×5×6\] and "
                                      r"UInt\(8\)\[4×5×7\]"):
        op.infer([a, TensorType((4, 5, 7), UInt(8))])
    with pytest.raises(IRError, match="Add input of type Bipolar is not supported"):
        op.infer([a, TensorType((4, 5, 6), Bipolar())])


@pytest.mark.parametrize("kw, match", [
    (dict(lo=3, hi=2), "Add needs lo ≤ hi, not lo=3, hi=2"),
    (dict(lo=0.5, hi=2), "Add lo must be an integer, not 0.5"),
    (dict(lo=0, hi="255"), "Add hi must be an integer, not '255'"),
])
def test_add_validation(kw, match):
    with pytest.raises(IRError, match=match):
        Add(**kw)


# --------------------------------------------------------------------------- Concat


def test_concat_infer():
    op = Concat(3)
    assert op.arity == 3 and Concat(2).arity == 2 and op.describe() == "Concat ×3"
    parts = [TensorType((c, 5, 7), UInt(4)) for c in (1, 6, 2)]
    assert op.infer(parts) == TensorType((9, 5, 7), UInt(4))


@pytest.mark.parametrize("parts, match", [
    ([TensorType((2, 5, 7), UInt(8)), TensorType((2, 5, 7), UInt(4))],
     r"same type: input 0 is UInt\(8\), input 1 is UInt\(4\)"),
    ([TensorType((2, 5, 7), Int(8)), TensorType((2, 5, 7), UInt(8))], r"input 0 is Int\(8\), input 1 is UInt\(8\)"),
    ([TensorType((2, 5, 7), UInt(8)), TensorType((1, 5, 6), UInt(8))],
     r"same height and width: input 0 is UInt\(8\)\[2×5×7\], input 1 is UInt\(8\)\[1×5×6\]"),
    ([TensorType((2, 5, 7), UInt(8))], "Concat of 2 inputs got 1"),
])
def test_concat_infer_errors(parts, match):
    with pytest.raises(IRError, match=match):
        Concat(2).infer(parts)


@pytest.mark.parametrize("count, match", [(1, "Concat count must be an integer ≥ 2, not 1"),
                                          (0, "not 0"), (2.0, "not 2.0"), ("3", "not '3'")])
def test_concat_validation(count, match):
    with pytest.raises(IRError, match=match):
        Concat(count)


def test_concat_arity_in_nodes_and_graphs():
    assert Node("c", Concat(3), ("a", "b", "d")).inputs == ("a", "b", "d")
    with pytest.raises(IRError, match=r"node 'c': Concat takes 3 input\(s\), not 2"):
        Node("c", Concat(3), ("a", "b"))
    with pytest.raises(IRError, match=r"node 'c': Concat takes 2 input\(s\), not 3"):
        Node("c", Concat(2), ("a", "b", "d"))
    # Other ops keep their fixed arity.
    assert MaxPool(2).arity == 1 and Add(0, 1).arity == 2 and Input((1, 1, 1), UInt(1)).arity == 0
    g = Graph([
        Node("x", Input((3, 8, 8), UInt(8))),
        Node("p", MaxPool(2), ("x",)),
        Node("q", AvgPool(2), ("x",)),
        Node("c", Concat(3), ("p", "q", "p")),  # an input may be repeated
    ])
    assert g.types["c"] == TensorType((9, 4, 4), UInt(8))
    bad = Graph([Node("x", Input((3, 8, 8), UInt(8))), Node("p", MaxPool(2), ("x",))]).nodes
    with pytest.raises(IRError, match=r"node 'c' \(Concat ×2\): Concat inputs must have the same height and width"):
        Graph(bad + [Node("c", Concat(2), ("x", "p"))])


# --------------------------------------------------------------------------- AvgPool


@pytest.mark.parametrize("kw, match", [
    (dict(kernel=3), "AvgPool window 3×3 has 9 elements; it must have a power-of-two number of elements"),
    (dict(kernel=(2, 3)), "AvgPool window 2×3 has 6 elements; it must have a power-of-two"),
    (dict(kernel=(1, 12)), "has 12 elements"),
    (dict(kernel=0), "AvgPool needs kernel, stride ≥ 1 and padding ≥ 0"),
    (dict(kernel=2, stride=(0, 1)), "AvgPool needs kernel, stride ≥ 1"),
    (dict(kernel=2, padding=-1), "padding ≥ 0"),
    (dict(kernel=(4, 2), padding=(2, 2)), r"AvgPool padding must be at most half the kernel, not \(2, 2\)"),
    (dict(kernel="ab"), "AvgPool kernel must be an int or a pair of ints"),
])
def test_avg_pool_validation(kw, match):
    with pytest.raises(IRError, match=match):
        AvgPool(**kw)


def test_avg_pool_infer_matches_torch():
    rng = np.random.default_rng(3)
    kernels = [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (2, 4), (4, 4), (8, 2), (1, 16)]
    for i in range(60):
        kernel = kernels[i % len(kernels)]
        stride = tuple(int(v) for v in rng.integers(1, 5, 2))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        size = tuple(max(1, k - 2 * p) + int(rng.integers(0, 7)) for k, p in zip(kernel, padding))
        op = AvgPool(kernel, stride, padding)
        shape = F.avg_pool2d(torch.zeros(1, 3, *size), kernel, stride, padding).shape[1:]
        assert op.infer([TensorType((3, *size), Int(5))]) == TensorType(tuple(shape), Int(5)), (kernel, size)
        assert 2 ** op.shift == kernel[0] * kernel[1]
    assert AvgPool(2).stride == (2, 2) and AvgPool(2).describe() == "AvgPool 2×2 stride 2"
    assert AvgPool((4, 2), (1, 2), (1, 0)).describe() == "AvgPool 4×2 stride (1, 2) pad (1, 0)"
    with pytest.raises(IRError, match="a 1×10 input is too small for a 2×2 average pool"):
        AvgPool(2).infer([TensorType((4, 1, 10), UInt(8))])
    with pytest.raises(IRError, match="AvgPool input of type Bipolar is not supported"):
        AvgPool(2).infer([TensorType((4, 4, 4), Bipolar())])


# --------------------------------------------------------------------------- Upsample


@pytest.mark.parametrize("kw, match", [
    (dict(factor=0), r"Upsample factor must be ≥ 1, not \(0, 0\)"),
    (dict(factor=(2, -1)), r"not \(2, -1\)"),
    (dict(factor=1.5), "Upsample factor must be an int or a pair of ints, not 1.5"),
    (dict(factor=2, mode="bicubic"), "Upsample mode must be 'nearest' or 'bilinear', not 'bicubic'"),
    (dict(factor=3, mode="bilinear"), r"Upsample bilinear factors must be powers of two \(1, 2, 4, …\) .* "
                                      r"not \(3, 3\)"),
    (dict(factor=(2, 6), mode="bilinear"), r"not \(2, 6\)"),
])
def test_upsample_validation(kw, match):
    with pytest.raises(IRError, match=match):
        Upsample(**kw)


@pytest.mark.parametrize("factor, mode, shift", [
    (1, "bilinear", 0), (2, "bilinear", 4), ((1, 2), "bilinear", 2), ((4, 8), "bilinear", 7), (3, "nearest", 0),
])
def test_upsample_infer(factor, mode, shift):
    op = Upsample(factor, mode)
    assert op.shift == shift
    fh, fw = op.factor
    for size in [(1, 1), (1, 5), (4, 3)]:
        shape = F.interpolate(torch.zeros(1, 2, *size), scale_factor=(float(fh), float(fw)), mode=mode).shape[1:]
        assert op.infer([TensorType((2, *size), Int(6))]) == TensorType(tuple(shape), Int(6))


def test_upsample_describe_and_bipolar():
    assert Upsample(2).describe() == "Upsample ×2 nearest"
    assert Upsample((2, 4), "bilinear").describe() == "Upsample ×(2, 4) bilinear"
    assert Upsample(3).infer([TensorType((1, 2, 2), Bipolar())]).dtype == Bipolar()
    with pytest.raises(IRError, match="Upsample bilinear input of type Bipolar is not supported"):
        Upsample(2, "bilinear").infer([TensorType((1, 2, 2), Bipolar())])


# --------------------------------------------------------------------------- Fork


def test_fork():
    op = Fork(3)
    assert op.arity == 1 and op.describe() == "Fork ×3"
    x = TensorType((4, 5, 6), Int(7))
    assert op.infer([x]) == x
    for bad in (1, 0, 2.0, None):
        with pytest.raises(IRError, match=f"Fork outputs must be an integer ≥ 2, not {bad!r}"):
            Fork(bad)


# --------------------------------------------------------------------------- ConvTranspose2d: validation


def tconv(**kw):
    args = dict(weight=np.ones((4, 3, 3, 3), np.int64), bias=np.zeros(3, np.int64), weight_type=Int(4))
    args.update(kw)
    return ConvTranspose2d(**args)


@pytest.mark.parametrize("kw, match", [
    (dict(weight=np.ones((4, 3, 3))), "ConvTranspose2d weight must have 4 dimensions, not shape"),
    (dict(bias=np.zeros((3, 1))), "ConvTranspose2d bias must have 1 dimensions"),
    (dict(bias=np.zeros(4, np.int64)), "ConvTranspose2d bias has 4 entries for 3 output channels"),
    (dict(bias=np.zeros(3, np.int64), groups=2), "ConvTranspose2d bias has 3 entries for 6 output channels"),
    (dict(weight=np.full((4, 3, 3, 3), 0.5)), "ConvTranspose2d weight must hold integers"),
    (dict(groups=3), "ConvTranspose2d groups must divide the 4 input channels, not 3"),
    (dict(groups=0), "ConvTranspose2d groups must divide the 4 input channels, not 0"),
    (dict(stride=0), r"ConvTranspose2d stride must be ≥ 1, not \(0, 0\)"),
    (dict(stride=(1, 2, 3)), r"ConvTranspose2d stride must be an int or a pair of ints, not \(1, 2, 3\)"),
    (dict(dilation=(1, 0)), r"ConvTranspose2d dilation must be ≥ 1, not \(1, 0\)"),
    (dict(padding=-1), r"ConvTranspose2d padding must be ≥ 0, not \(-1, -1\)"),
    (dict(output_padding=1), r"output_padding must be ≥ 0 and smaller than the stride or the dilation \(as torch "
                             r"requires\), not \(1, 1\) with stride \(1, 1\) and dilation \(1, 1\)"),
    (dict(stride=2, output_padding=(1, 2)), r"not \(1, 2\) with stride \(2, 2\)"),
    (dict(stride=2, output_padding=(-1, 0)), r"not \(-1, 0\)"),
    (dict(weight=np.zeros((4, 3, 3, 3)), weight_type=Bipolar()),
     "ConvTranspose2d weights of type Bipolar must all be \\+1 or −1"),
    (dict(weight=np.full((4, 3, 3, 3), -8), weight_type=Int(4)),
     "ConvTranspose2d weights exceed the narrow range ±7 of Int\\(4\\): one is -8"),
    (dict(weight_type=UInt(4)), "ConvTranspose2d weight_type must be Int\\(b\\) or Bipolar"),
])
def test_conv_transpose2d_validation(kw, match):
    with pytest.raises(IRError, match=match):
        tconv(**kw)


def test_conv_transpose2d_output_padding_matches_torch_rule():
    """output_padding < max(stride, dilation), exactly where torch accepts it."""
    x = torch.zeros(1, 1, 3, 3)
    for s, d, op in itertools.product(range(1, 4), range(1, 4), range(0, 4)):
        try:
            F.conv_transpose2d(x, torch.zeros(1, 1, 2, 2), stride=s, dilation=d, output_padding=op)
            torch_ok = True
        except RuntimeError:
            torch_ok = False
        try:
            ConvTranspose2d(np.ones((1, 1, 2, 2)), [0], Int(2), stride=s, dilation=d, output_padding=op)
            ours = True
        except IRError:
            ours = False
        assert ours == torch_ok, (s, d, op)


def test_conv_transpose2d_properties_and_describe():
    op = ConvTranspose2d(np.ones((128, 32, 3, 3)), np.zeros(64), Int(8), stride=2, padding=1, output_padding=1,
                         groups=2)
    assert (op.in_channels, op.out_channels, op.kernel) == (128, 64, (3, 3))
    assert op.weight.dtype == np.int64 and not op.weight.flags.writeable and not op.bias.flags.writeable
    assert op.describe() == "ConvTranspose2d 128→64 3×3 stride 2 pad 1 outpad 1 groups 2 w Int(8)"
    assert tconv(dilation=(1, 2), padding=(0, 1)).describe() == "ConvTranspose2d 4→3 3×3 dil (1, 2) pad (0, 1) w Int(4)"
    assert op.infer([TensorType((128, 64, 128), UInt(8))]).shape == (64, 128, 256)  # ERFNet UpsamplerBlock


@pytest.mark.parametrize("x, match", [
    (TensorType((4, 8, 8), Bipolar()), "ConvTranspose2d input of type Bipolar is not supported"),
    (TensorType((3, 8, 8), UInt(8)), "ConvTranspose2d expects 4 input channels, not 3"),
])
def test_conv_transpose2d_infer_errors(x, match):
    with pytest.raises(IRError, match=match):
        tconv().infer([x])


def test_conv_transpose2d_empty_output_refused():
    op = tconv(padding=2)  # 1×1 input: (1 − 1)·1 − 4 + 2 + 1 = −1
    with pytest.raises(IRError, match="a 1×1 input gives an empty -1×-1 output for a 3×3 transposed convolution"):
        op.infer([TensorType((4, 1, 1), UInt(8))])


def test_conv_transpose_output_size_matches_torch():
    rng = np.random.default_rng(4)
    for _ in range(200):
        k, s, d = (int(v) for v in rng.integers(1, 5, 3))
        p, size = int(rng.integers(0, 3)), int(rng.integers(1, 8))
        op = int(rng.integers(0, max(s, d)))
        expected = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if expected < 1:
            continue
        out = F.conv_transpose2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                                 padding=(p, 0), output_padding=(op, 0), dilation=(d, 1)).shape[2]
        assert conv_transpose_output_size(size, k, s, p, op, d) == out, (size, k, s, p, op, d)


# --------------------------------------------------------------------------- ConvTranspose2d: accumulator


def torch_extremes(op, dtype, size):
    """Per output channel, the least and greatest value torch produces over all inputs of ``dtype``.

    The output is linear in the input: its matrix is torch's output for one-hot inputs
    (bias 0). Each output element's extreme puts the type's max (min) where its coefficient
    is positive (negative); the extreme input of each channel's most extreme element is run
    through torch with the bias, which gives the extreme values.
    """
    cin, (h, w) = op.in_channels, size
    weight = torch.tensor(op.weight, dtype=torch.float64)
    kw = dict(stride=op.stride, padding=op.padding, output_padding=op.output_padding, groups=op.groups,
              dilation=op.dilation)
    eye = torch.eye(cin * h * w, dtype=torch.float64).view(-1, cin, h, w)
    jac = F.conv_transpose2d(eye, weight, **kw).numpy().reshape(cin * h * w, op.out_channels, -1)
    lo, hi = dtype.min, dtype.max
    frames = []
    for best, worst, pick in ((hi, lo, np.argmax), (lo, hi, np.argmin)):
        values = np.where(jac > 0, jac * best, jac * worst).sum(axis=0)   # (C_out, positions)
        for o in range(op.out_channels):
            col = jac[:, o, pick(values[o])]
            frames.append(np.where(col > 0, best, np.where(col < 0, worst, 0)).reshape(cin, h, w))
    out = F.conv_transpose2d(torch.from_numpy(np.array(frames, np.float64)), weight,
                             torch.tensor(op.bias, dtype=torch.float64), **kw).numpy()
    out = out.reshape(2, op.out_channels, op.out_channels, -1)
    cout = op.out_channels
    most = np.array([out[0, o, o].max() for o in range(cout)]).astype(np.int64)
    least = np.array([out[1, o, o].min() for o in range(cout)]).astype(np.int64)
    return least, most


def random_tconvs(count=60, seed=41):
    rng = np.random.default_rng(seed)
    fixed = [((3, 3), (2, 2), (1, 1), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),
             ((1, 1), (2, 3), (0, 0), (1, 2), (1, 1)), ((3, 2), (2, 2), (0, 1), (1, 0), (2, 2))]
    for i in range(count):
        groups = int(rng.choice([1, 1, 2, 3]))
        cin, cout_g = groups * int(rng.integers(1, 3)), int(rng.integers(1, 4))
        if i < len(fixed):
            kernel, stride, padding, output_padding, dilation = fixed[i]
        else:
            kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
            stride = tuple(int(v) for v in rng.integers(1, 4, 2))
            dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
            padding = tuple(int(v) for v in rng.integers(0, 3, 2))
            output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        if i % 5 == 0:
            wt, w = Bipolar(), rng.choice([-1, 1], (cin, cout_g, *kernel))
        else:
            wt = Int(int(rng.integers(2, 9)))
            limit = 2 ** (wt.bits - 1) - 1
            w = rng.integers(-limit, limit + 1, (cin, cout_g, *kernel))
            if i % 7 == 1:
                w = np.abs(w)
        bias = rng.integers(-300, 300, cout_g * groups) if i % 3 else np.zeros(cout_g * groups, np.int64)
        dtype = UInt(int(rng.integers(1, 9))) if i % 2 else Int(int(rng.integers(2, 9)))
        op = ConvTranspose2d(w, bias, wt, stride, padding, output_padding, dilation, groups)
        yield pytest.param(op, dtype, id=f"{i}-{op.describe()}-in {dtype}")


@pytest.mark.parametrize("op, dtype", list(random_tconvs()))
def test_conv_transpose2d_accumulator_bounds_are_exact(op, dtype):
    """On an input big enough for every phase to have an output whose taps all fall inside the
    frame, the bounds are exactly torch's extremes; on small inputs they still contain them."""
    (kh, kw), (ph, pw), (dh, dw) = op.kernel, op.padding, op.dilation
    big = ((kh - 1) * dh + 3 + ph, (kw - 1) * dw + 3 + pw)
    least, most = torch_extremes(op, dtype, big)
    got_least, got_most = op.accumulator_bounds(dtype)
    assert np.array_equal(got_least, least) and np.array_equal(got_most, most)
    out = op.infer([TensorType((op.in_channels, *big), dtype)])
    assert out.dtype == narrowest_int(min(int(least.min()), 0), max(int(most.max()), 0))
    for small in [(1, 1), (1, 3), (2, 2)]:
        if min(op.output_size(*small)) < 1:
            continue
        least, most = torch_extremes(op, dtype, small)
        assert np.all(got_least <= least) and np.all(most <= got_most), small
        out = op.infer([TensorType((op.in_channels, *small), dtype)])
        assert out.dtype.min <= least.min() and most.max() <= out.dtype.max


@pytest.mark.parametrize("dtype, kernel, stride, dilation, weight_type", [
    (UInt(2), (2, 2), (2, 2), (1, 1), Int(3)), (Int(2), (3, 1), (2, 1), (1, 1), Int(4)),
    (UInt(1), (3, 3), (2, 2), (1, 1), Bipolar()), (Int(3), (2, 1), (2, 1), (2, 1), Int(3)),
])
def test_conv_transpose2d_accumulator_type_exhaustive(dtype, kernel, stride, dilation, weight_type):
    """Every possible input frame through torch: the bounds are exactly the extremes reached."""
    rng = np.random.default_rng(kernel[0] * 7 + stride[0])
    if isinstance(weight_type, Bipolar):
        w = rng.choice([-1, 1], (1, 2, *kernel))
    else:
        limit = 2 ** (weight_type.bits - 1) - 1
        w = rng.integers(-limit, limit + 1, (1, 2, *kernel))
    op = ConvTranspose2d(w, np.array([4, -3]), weight_type, stride=stride, dilation=dilation,
                         output_padding=(1, 0) if stride[0] > 1 else 0)
    size = (3, 2) if kernel[1] > 1 else (3, 1)
    values = range(dtype.min, dtype.max + 1)
    frames = np.array(list(itertools.product(values, repeat=size[0] * size[1])), np.float64)
    out = F.conv_transpose2d(torch.from_numpy(frames.reshape(-1, 1, *size)), torch.from_numpy(w).double(),
                             torch.tensor(op.bias, dtype=torch.float64), stride=stride, dilation=dilation,
                             output_padding=op.output_padding).numpy()
    least, most = op.accumulator_bounds(dtype)
    assert np.array_equal(least, out.min(axis=(0, 2, 3))) and np.array_equal(most, out.max(axis=(0, 2, 3)))
    assert op.infer([TensorType((1, *size), dtype)]).dtype == narrowest_int(min(out.min(), 0), max(out.max(), 0))


def test_conv_transpose2d_phase_bound_is_tighter_than_all_taps():
    """3×3 stride 2: a phase holds at most 4 of the 9 taps; summing all 9 would waste bits."""
    op = ConvTranspose2d(np.full((1, 1, 3, 3), 7), [0], Int(4), stride=2, padding=1, output_padding=1)
    least, most = op.accumulator_bounds(UInt(8))
    assert (int(least[0]), int(most[0])) == (0, 4 * 7 * 255)
    assert op.infer([TensorType((1, 4, 4), UInt(8))]).dtype == Int(14)   # 7140 needs 13 bits + sign
    # stride 2, dilation 2: odd rows and columns get no tap, only the bias.
    op = ConvTranspose2d(np.full((1, 1, 2, 2), -3), [100], Int(3), stride=2, dilation=2, output_padding=1)
    least, most = op.accumulator_bounds(UInt(4))
    assert (int(least[0]), int(most[0])) == (100 - 4 * 3 * 15, 100)

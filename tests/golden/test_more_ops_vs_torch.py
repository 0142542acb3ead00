"""The golden Threshold, Add, Concat, AvgPool, ConvTranspose2d, Upsample and Fork against torch.

Expected values come from torch only: float64 ``conv_transpose2d`` / ``avg_pool2d`` /
``interpolate`` on integer-valued tensors (exact: every value involved is a binary
fraction far below 2^53), int64 comparisons, sums and clamps. Every random configuration
is drawn from a fixed seed and named in the failure message.

Rounding equivalences used below (``S`` an integer, ``n ≥ 0``):
``(S + 2^(n−1)) >> n = ⌊(S + 2^(n−1)) / 2^n⌋ = ⌊S / 2^n + 1/2⌋``, and for ``n = 0`` both sides are
``S``; so a golden "sum, add half, shift" equals ``floor(v + 0.5)`` of the torch float64 mean
``v = S / 2^n``, which is exact in float64 (a power-of-two division of an integer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hwseg.golden.ops as golden_ops
from hwseg.golden import add, avg_pool, concat, conv_transpose2d, run_graph, run_op, threshold, upsample
from hwseg.ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, Int, IRError,
                      MaxPool, MulShift, Node, TensorType, Threshold, UInt, Upsample)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.int64)).double()


def to_int(t):
    out = t.numpy()
    assert np.all(np.abs(out) < 2.0 ** 53) and np.array_equal(out, np.round(out))
    return out.astype(np.int64)


def half_up(t):
    """torch float64 values rounded half up, as int64 (the values must be exact binary fractions)."""
    out = torch.floor(t + 0.5).numpy()
    return out.astype(np.int64)


def type_range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def activations(rng, bits, signed, shape, mode="uniform"):
    lo, hi = type_range(bits, signed)
    if mode == "extreme":  # only the range ends and 0: the accumulator's worst cases
        return rng.choice(np.array(sorted({lo, 0, hi})), size=shape)
    return rng.integers(lo, hi + 1, shape)


def narrow_weights(rng, bits, shape):
    limit = (1 << (bits - 1)) - 1
    return rng.integers(-limit, limit + 1, shape)


def in_type(values, dtype):
    return values.size == 0 or (int(values.min()) >= dtype.min and int(values.max()) <= dtype.max)


# --------------------------------------------------------------------------- ConvTranspose2d


@dataclass(frozen=True)
class TConvConfig:
    seed: int
    batch: int
    cin: int
    cout: int
    groups: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    size: tuple[int, int]
    wbits: int
    abits: int
    signed: bool
    mode: str
    bias: bool

    def __str__(self):
        return (f"seed={self.seed} N={self.batch} {self.cin}→{self.cout} groups={self.groups} k={self.kernel} "
                f"s={self.stride} p={self.padding} op={self.output_padding} d={self.dilation} in={self.size} "
                f"w{self.wbits} a{self.abits}{'s' if self.signed else 'u'} {self.mode} bias={self.bias}")

    def tensors(self):
        rng = np.random.default_rng(self.seed)
        x = activations(rng, self.abits, self.signed, (self.batch, self.cin, *self.size), self.mode)
        w = narrow_weights(rng, self.wbits, (self.cin, self.cout // self.groups, *self.kernel))
        b = rng.integers(-1000, 1001, self.cout) if self.bias else None
        return x, w, b

    def op(self, w, b):
        return ConvTranspose2d(w, np.zeros(self.cout, np.int64) if b is None else b, Int(self.wbits),
                               self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    def dtype(self):
        return Int(self.abits) if self.signed else UInt(self.abits)


def tconv_out(size, k, s, p, op, d):
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def make_tconv_configs(count=150, seed=777):
    rng = np.random.default_rng(seed)
    configs = []
    # The ERFNet decoder: UpsamplerBlock 3×3 s2 p1 op1, and the final 2×2 s2 (16 → 20 classes).
    for i, (cin, cout, k, p, op) in enumerate([(8, 4, 3, 1, 1), (4, 8, 3, 1, 1), (8, 5, 2, 0, 0), (3, 8, 2, 0, 0)]):
        configs.append(TConvConfig(1000 + i, 2, cin, cout, 1, (k, k), (2, 2), (p, p), (op, op), (1, 1), (5, 7),
                                   8, 8, i % 2 == 0, "extreme" if i >= 2 else "uniform", True))
    while len(configs) < count:
        choice = str(rng.choice(["1", "1", "1", "2", "3", "4", "dw"]))
        if choice == "dw":
            cin = int(rng.integers(1, 9))
            groups, cout = cin, cin * int(rng.integers(1, 3)) if cin <= 4 else cin
        else:
            groups = int(choice)
            cin = groups * int(rng.integers(1, 8 // groups + 1))
            cout = groups * int(rng.integers(1, 8 // groups + 1))
        kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        if rng.random() < 0.4:
            kernel = (kernel[0], kernel[0])
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        size = tuple(int(v) for v in rng.integers(1, 7, 2))
        if rng.random() < 0.1:
            size = (1, size[1])  # 1×N frames
        if min(tconv_out(n, k, s, p, o, d) for n, k, s, p, o, d in
               zip(size, kernel, stride, padding, output_padding, dilation)) < 1:
            continue  # torch refuses an empty output; drawn again
        configs.append(TConvConfig(
            seed=int(rng.integers(1 << 31)), batch=int(rng.integers(1, 3)), cin=cin, cout=cout, groups=groups,
            kernel=kernel, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
            size=size, wbits=int(rng.integers(2, 9)), abits=int(rng.integers(2, 9)),
            signed=bool(rng.random() < 0.5), mode="extreme" if rng.random() < 0.25 else "uniform",
            bias=bool(rng.random() < 0.7)))
    return configs


TCONV_CONFIGS = make_tconv_configs()
TCONV_BATCHES = 4


def test_tconv_configs_cover_the_space():
    c = TCONV_CONFIGS
    assert len(c) >= 100
    assert {k for cfg in c for k in cfg.kernel} == {1, 2, 3, 4, 5}
    assert any(cfg.kernel[0] != cfg.kernel[1] for cfg in c)
    assert {s for cfg in c for s in cfg.stride} == {1, 2, 3}
    assert {p for cfg in c for p in cfg.padding} == {0, 1, 2}
    assert {d for cfg in c for d in cfg.dilation} == {1, 2}
    assert {o for cfg in c for o in cfg.output_padding} == {0, 1, 2}
    assert sum(any(cfg.output_padding) for cfg in c) >= 30
    # output_padding ≥ stride, allowed by a larger dilation
    assert any(o >= s for cfg in c for o, s in zip(cfg.output_padding, cfg.stride))
    assert {cfg.wbits for cfg in c} == set(range(2, 9)) and {cfg.abits for cfg in c} == set(range(2, 9))
    assert {cfg.signed for cfg in c} == {False, True}
    assert min(cfg.cin for cfg in c) == 1 and max(cfg.cin for cfg in c) == 8 and max(cfg.cout for cfg in c) == 8
    assert sum(cfg.groups > 1 for cfg in c) >= 20 and sum(cfg.groups == cfg.cin > 1 for cfg in c) >= 3
    assert sum(cfg.mode == "extreme" for cfg in c) >= 20 and any(cfg.size[0] == 1 for cfg in c)
    erfnet = [(cfg.kernel, cfg.stride, cfg.padding, cfg.output_padding) for cfg in c]
    assert ((3, 3), (2, 2), (1, 1), (1, 1)) in erfnet and ((2, 2), (2, 2), (0, 0), (0, 0)) in erfnet


def torch_tconv(x, w, b, cfg):
    return to_int(F.conv_transpose2d(t64(x), t64(w), None if b is None else t64(b), stride=cfg.stride,
                                     padding=cfg.padding, output_padding=cfg.output_padding, groups=cfg.groups,
                                     dilation=cfg.dilation))


def extreme_outputs(cfg, w, b, dtype):
    """Per output channel, the least and greatest value torch can produce for inputs of ``dtype``.

    The map from input to output is linear: its matrix comes from torch on one-hot inputs.
    An output's extreme puts the type's max (or min) on each input according to the sign of
    its coefficient; the extreme input of each channel's most extreme output is then run
    through torch, which gives the values themselves.
    """
    cin, (h, wd) = cfg.cin, cfg.size
    eye = np.eye(cin * h * wd).reshape(cin * h * wd, cin, h, wd)
    jac = torch_tconv(eye, w, None, cfg)                 # (inputs, C_out, Ho, Wo)
    jac = jac.reshape(cin * h * wd, -1)                  # column: one output element
    lo, hi = dtype.min, dtype.max
    cout = cfg.cout
    out_most = np.maximum(jac * lo, jac * hi).sum(axis=0).reshape(cout, -1)
    out_least = np.minimum(jac * lo, jac * hi).sum(axis=0).reshape(cout, -1)
    frames = []
    for table, pick in ((out_most, (hi, lo)), (out_least, (lo, hi))):
        for o in range(cout):
            col = jac[:, o * table.shape[1] + int(np.argmax(table[o]) if pick[0] == hi else np.argmin(table[o]))]
            frames.append(np.where(col > 0, pick[0], np.where(col < 0, pick[1], 0)).reshape(cin, h, wd))
    out = torch_tconv(np.array(frames), w, b, cfg).reshape(2 * cout, cout, -1)
    most = np.array([out[o, o].max() for o in range(cout)])
    least = np.array([out[cout + o, o].min() for o in range(cout)])
    assert np.array_equal(most - (0 if b is None else b), out_most.max(axis=1))
    return least, most


def check_tconv_batch(batch):
    failures = []
    for cfg in TCONV_CONFIGS[batch::TCONV_BATCHES]:
        x, w, b = cfg.tensors()
        expected = torch_tconv(x, w, b, cfg)
        got = conv_transpose2d(x, w, b, cfg.stride, cfg.padding, cfg.output_padding, cfg.dilation, cfg.groups)
        if got.dtype != np.int64 or got.shape != expected.shape or not np.array_equal(got, expected):
            failures.append(str(cfg))
    assert not failures, "conv_transpose2d differs from torch for:\n" + "\n".join(failures)


@pytest.mark.parametrize("batch", range(TCONV_BATCHES))
def test_conv_transpose2d_vs_torch(batch):
    check_tconv_batch(batch)


@pytest.mark.parametrize("batch", range(TCONV_BATCHES))
def test_conv_transpose2d_int64_path_and_row_chunks(batch, monkeypatch):
    """The int64 product path and one-row bands give the same integers as torch."""
    monkeypatch.setattr(golden_ops, "_FLOAT64_EXACT", 0)
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    check_tconv_batch(batch)


@pytest.mark.parametrize("batch", range(TCONV_BATCHES))
def test_conv_transpose2d_ir_type_holds_torch_extremes(batch):
    """The IR op's shape is torch's, and its accumulator type holds the most extreme torch results."""
    failures = []
    for cfg in TCONV_CONFIGS[batch::TCONV_BATCHES]:
        x, w, b = cfg.tensors()
        dtype = cfg.dtype()
        out = cfg.op(w, b).infer([TensorType((cfg.cin, *cfg.size), dtype)])
        expected = torch_tconv(x, w, b, cfg)
        least, most = extreme_outputs(cfg, w, b, dtype)
        if out.shape != expected.shape[1:] or not in_type(expected, out.dtype) or \
                not in_type(np.concatenate([least, most]), out.dtype):
            failures.append(f"{cfg}: inferred {out}, torch extremes {least.min()}…{most.max()}")
    assert not failures, "\n".join(failures)


def test_conv_transpose2d_run_op_erfnet_output_layer():
    """The ERFNet output layer (2×2 s2, 16 → 20 classes) through run_op and its IR op."""
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, (2, 16, 4, 6))
    w = narrow_weights(rng, 8, (16, 20, 2, 2))
    b = rng.integers(-5000, 5000, 20)
    op = ConvTranspose2d(w, b, Int(8), stride=2)
    expected = to_int(F.conv_transpose2d(t64(x), t64(w), t64(b), stride=2))
    got = run_op(op, [x])
    assert got.shape == (2, 20, 8, 12) and np.array_equal(got, expected)
    assert in_type(got, op.infer([TensorType((16, 4, 6), UInt(8))]).dtype)


def test_conv_transpose2d_beyond_float64_exact_range():
    """Accumulators above 2^53 take the int64 path and still equal torch, split into exact halves."""
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 40), 1 << 40, (1, 4, 5, 5))
    w = rng.integers(-(1 << 15), 1 << 15, (4, 3, 3, 3))
    hi, lo = np.divmod(x, 1 << 20)
    cfg = TConvConfig(0, 1, 4, 3, 1, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), (5, 5), 16, 16, True, "", False)
    expected = torch_tconv(hi, w, None, cfg).astype(object) * (1 << 20) + torch_tconv(lo, w, None, cfg)
    got = conv_transpose2d(x, w, None, 2, 1, 1, 1)
    assert np.abs(expected).max() > 2 ** 53
    assert np.array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize("args, match", [
    (dict(groups=2), "groups=2 does not fit"),
    (dict(w=np.zeros((4, 2, 3, 3), np.int64)), "does not fit weight"),
    (dict(b=np.zeros(3, np.int64)), r"bias must have shape \(2,\)"),
    (dict(output_padding=2), r"output_padding \(2, 2\) must be smaller than the stride \(2, 2\) or the dilation"),
    (dict(stride=0), "stride, dilation ≥ 1"),
    (dict(padding=5), "gives an empty"),
])
def test_conv_transpose2d_argument_errors(args, match):
    call = dict(x=np.zeros((1, 3, 4, 4), np.int64), w=np.zeros((3, 2, 3, 3), np.int64), b=None, stride=2,
                padding=1, output_padding=1, dilation=1, groups=1)
    call.update(args)
    with pytest.raises(IRError, match=match):
        conv_transpose2d(call["x"], call["w"], call["b"], call["stride"], call["padding"], call["output_padding"],
                         call["dilation"], call["groups"])


# --------------------------------------------------------------------------- Threshold


def threshold_configs(count=40, seed=5):
    rng = np.random.default_rng(seed)
    for i in range(count):
        channels = int(rng.integers(1, 9))
        n = int(rng.choice([1, 3, 7, 15, 255])) if i % 2 else int(rng.integers(1, 20))
        span = int(rng.choice([4, 100, 1 << 20]))
        yield pytest.param(int(rng.integers(1 << 31)), channels, n, span, id=f"C{channels}-n{n}-span{span}")


@pytest.mark.parametrize("seed, channels, n, span", list(threshold_configs()))
def test_threshold_vs_torch(seed, channels, n, span):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(-span, span + 1, (channels, n)), axis=1)  # small spans: repeated thresholds
    x = rng.integers(-span - 2, span + 3, (2, channels, 5, 7))
    x[0, :, 0, :min(n, 7)] = t[:, :min(n, 7)]  # values exactly on thresholds
    expected = (torch.from_numpy(x)[..., None] >= torch.from_numpy(t).view(1, channels, 1, 1, n)).sum(-1).numpy()
    got = threshold(x, t)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    op = Threshold(t)
    assert np.array_equal(run_op(op, [x]), expected)
    assert in_type(got, op.infer([TensorType((channels, 5, 7), Int(40))]).dtype)


def test_threshold_extreme_values_and_chunks(monkeypatch):
    big = (1 << 63) - 1
    t = np.array([[-big - 1, -5, 0, 0, big], [1, 2, 3, 4, 5]])
    x = np.array([-big - 1, -6, -5, -1, 0, 1, big - 1, big]).reshape(1, 1, 1, 8).repeat(2, axis=1)
    expected = (torch.from_numpy(x)[..., None] >= torch.from_numpy(t).view(1, 2, 1, 1, 5)).sum(-1).numpy()
    assert np.array_equal(threshold(x, t), expected)
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(-50, 50, (3, 7)), axis=1)
    x = rng.integers(-60, 60, (2, 3, 6, 5))
    expected = (torch.from_numpy(x)[..., None] >= torch.from_numpy(t).view(1, 3, 1, 1, 7)).sum(-1).numpy()
    assert np.array_equal(threshold(x, t), expected)


@pytest.mark.parametrize("t, match", [
    (np.array([[1, 2], [3, 1]]), "channel 1 has 3 before 1"),
    (np.array([[1, 2]]), r"needs \(2, n ≥ 1\) thresholds for 2 channels"),
    (np.zeros((2, 0), np.int64), r"not shape \(2, 0\)"),
])
def test_threshold_argument_errors(t, match):
    with pytest.raises(IRError, match=match):
        threshold(np.zeros((1, 2, 3, 3), np.int64), t)


# --------------------------------------------------------------------------- Add, Concat, Fork


@pytest.mark.parametrize("seed", range(12))
def test_add_vs_torch(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    abits, bbits = int(rng.integers(2, 17)), int(rng.integers(2, 17))
    a = activations(rng, abits, seed % 2 == 0, shape)
    b = activations(rng, bbits, seed % 3 == 0, shape)
    lo, hi = [(0, 255), (-128, 127), (0, 15), tuple(sorted(int(v) for v in rng.integers(-300, 300, 2)))][seed % 4]
    expected = torch.clamp(torch.from_numpy(a) + torch.from_numpy(b), lo, hi).numpy()
    got = add(a, b, lo, hi)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    op = Add(lo, hi)
    assert np.array_equal(run_op(op, [a, b]), expected)
    assert in_type(got, op.infer([TensorType(shape[1:], Int(17))] * 2).dtype)


def test_add_chunks_and_errors(monkeypatch):
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    rng = np.random.default_rng(9)
    a, b = rng.integers(-200, 200, (2, 2, 3, 6, 5))
    assert np.array_equal(add(a, b, -100, 90), torch.clamp(torch.from_numpy(a) + torch.from_numpy(b), -100, 90).numpy())
    with pytest.raises(IRError, match=r"same shape, not \(1, 1, 2, 2\) and \(1, 2, 2, 2\)"):
        add(np.zeros((1, 1, 2, 2), np.int64), np.zeros((1, 2, 2, 2), np.int64), 0, 1)
    with pytest.raises(IRError, match="lo ≤ hi"):
        add(a, b, 5, 4)
    with pytest.raises(IRError, match="could overflow int64"):
        add(np.full((1, 1, 1, 1), 1 << 62), np.full((1, 1, 1, 1), 1 << 62), 0, 1)


@pytest.mark.parametrize("count", [2, 3, 5])
def test_concat_vs_torch(count):
    rng = np.random.default_rng(count)
    parts = [rng.integers(-128, 128, (2, int(rng.integers(1, 5)), 4, 6)) for _ in range(count)]
    expected = torch.cat([torch.from_numpy(p) for p in parts], dim=1).numpy()
    assert np.array_equal(concat(parts), expected)
    assert np.array_equal(run_op(Concat(count), parts), expected)
    with pytest.raises(IRError, match="takes 3 input tensor"):
        run_op(Concat(3), parts[:2] if count != 3 else parts[:2])
    with pytest.raises(IRError, match=r"concat input 1 has shape \(2, 1, 4, 5\); input 0 has"):
        concat([parts[0], np.zeros((2, 1, 4, 5), np.int64)])


def test_fork_is_identity():
    x = np.random.default_rng(1).integers(0, 16, (2, 3, 4, 5)).astype(np.uint8)
    got = run_op(Fork(2), [x])
    assert got.dtype == np.int64 and np.array_equal(got, torch.from_numpy(x).long().numpy())
    assert Fork(3).infer([TensorType((3, 4, 5), UInt(4))]) == TensorType((3, 4, 5), UInt(4))


# --------------------------------------------------------------------------- AvgPool


POW2_KERNELS = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 4), (4, 1), (2, 4), (4, 2), (4, 4), (1, 8), (8, 1), (2, 8), (8, 2)]


def avg_pool_configs(count=60, seed=31):
    rng = np.random.default_rng(seed)
    for i in range(count):
        kernel = POW2_KERNELS[i % len(POW2_KERNELS)]
        stride = tuple(int(v) for v in rng.integers(1, 5, 2)) if i % 3 else None
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        size = tuple(max(1, k - 2 * p) + int(rng.integers(0, 7)) for k, p in zip(kernel, padding))
        bits = int(rng.integers(1, 17))
        signed = bool(rng.random() < 0.5) and bits > 1
        yield pytest.param(int(rng.integers(1 << 31)), size, kernel, stride, padding, bits, signed,
                           id=f"k{kernel}-s{stride}-p{padding}-in{size}-{'s' if signed else 'u'}{bits}")


@pytest.mark.parametrize("seed, size, kernel, stride, padding, bits, signed", list(avg_pool_configs()))
def test_avg_pool_vs_torch(seed, size, kernel, stride, padding, bits, signed):
    rng = np.random.default_rng(seed)
    x = activations(rng, bits, signed, (2, 3, *size), "extreme" if seed % 4 == 0 else "uniform")
    mean = F.avg_pool2d(t64(x), kernel, stride, padding, count_include_pad=True)
    elements = kernel[0] * kernel[1]
    sums = mean * elements
    assert torch.equal(sums, torch.round(sums))  # the float64 mean is exact: S / 2^n
    expected = half_up(mean)
    got = avg_pool(x, kernel, stride, padding)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    op = AvgPool(kernel, stride, padding)
    dtype = Int(bits) if signed else UInt(bits)
    out = op.infer([TensorType((3, *size), dtype)])
    assert out.shape == expected.shape[1:] and out.dtype == dtype and in_type(got, dtype)
    assert np.array_equal(run_op(op, [x]), expected)


def test_avg_pool_ties_round_half_up():
    """Sums exactly halfway between two multiples of 2^n round towards +∞ on both signs."""
    x = np.array([[-3, 0, 1, 0, -1, 0, 3, 0, -2, 0, 2, 0, -5, 0]]).reshape(1, 1, 1, 14)
    got = avg_pool(x, (1, 2))
    assert got.ravel().tolist() == [-1, 1, 0, 2, -1, 1, -2]
    assert np.array_equal(got, half_up(F.avg_pool2d(t64(x), (1, 2))))


def test_avg_pool_chunks_and_errors(monkeypatch):
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    x = np.random.default_rng(2).integers(-1000, 1000, (2, 3, 9, 10))
    assert np.array_equal(avg_pool(x, (2, 4), (1, 3), (1, 2)), half_up(F.avg_pool2d(t64(x), (2, 4), (1, 3), (1, 2))))
    with pytest.raises(IRError, match="window 3×3 has 9 elements; it must have a power-of-two number of elements"):
        avg_pool(x, 3)
    with pytest.raises(IRError, match="at most half the kernel"):
        avg_pool(x, 2, 2, (0, 2))


# --------------------------------------------------------------------------- Upsample


def upsample_configs(count=70, seed=8):
    rng = np.random.default_rng(seed)
    sizes = [(1, 1), (1, 2), (1, 7), (5, 1), (2, 2), (3, 5), (6, 4), (9, 11)]
    for i in range(count):
        size = sizes[i % len(sizes)] if i < 2 * len(sizes) else tuple(int(v) for v in rng.integers(1, 13, 2))
        factor = (int(rng.choice([1, 2, 4, 8])), int(rng.choice([1, 2, 4, 8])))
        bits = int(rng.integers(1, 17))
        signed = bool(rng.random() < 0.5) and i % 5 != 0 and bits > 1
        yield pytest.param(int(rng.integers(1 << 31)), size, factor, bits, signed,
                           id=f"in{size}-f{factor}-{'s' if signed else 'u'}{bits}")


@pytest.mark.parametrize("seed, size, factor, bits, signed", list(upsample_configs()))
def test_upsample_bilinear_vs_torch(seed, size, factor, bits, signed):
    rng = np.random.default_rng(seed)
    x = activations(rng, bits, signed, (2, 3, *size), "extreme" if seed % 3 == 0 else "uniform")
    v = F.interpolate(t64(x), scale_factor=tuple(float(f) for f in factor), mode="bilinear", align_corners=False)
    op = Upsample(factor, "bilinear")
    scaled = v * (1 << op.shift)
    assert torch.equal(scaled, torch.round(scaled))  # torch's value is exactly Σ w·x / 2^s
    expected = half_up(v)
    got = upsample(x, factor, "bilinear")
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    dtype = Int(bits) if signed else UInt(bits)
    out = op.infer([TensorType((3, *size), dtype)])
    assert out.shape == expected.shape[1:] and out.dtype == dtype and in_type(got, dtype)
    assert np.array_equal(run_op(op, [x]), expected)


@pytest.mark.parametrize("fh", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("fw", [1, 2, 3, 6])
def test_upsample_nearest_vs_torch(fh, fw):
    rng = np.random.default_rng(fh * 10 + fw)
    for size in [(1, 1), (1, 6), (4, 1), (5, 7)]:
        x = rng.integers(-128, 128, (2, 3, *size))
        expected = to_int(F.interpolate(t64(x), scale_factor=(float(fh), float(fw)), mode="nearest"))
        assert np.array_equal(upsample(x, (fh, fw), "nearest"), expected), size
        assert np.array_equal(run_op(Upsample((fh, fw)), [x]), expected), size


def test_upsample_rounding_is_not_trivial():
    """Half-way values occur and round up: bilinear ×2 of [0, 1] has 0.25 and 0.75 weights."""
    x = np.array([[[[0, 1, 0, -1]]]])
    v = F.interpolate(t64(x), scale_factor=(1.0, 2.0), mode="bilinear", align_corners=False)
    assert v.numpy().ravel().tolist() == [0, 0.25, 0.75, 0.75, 0.25, -0.25, -0.75, -1]
    assert upsample(x, (1, 2), "bilinear").ravel().tolist() == [0, 0, 1, 1, 0, 0, -1, -1]
    x = np.array([[[[0, 2]]]])  # 0.5 and 1.5 at ×2: exact ties
    v = F.interpolate(t64(x), scale_factor=(1.0, 2.0), mode="bilinear", align_corners=False)
    assert v.numpy().ravel().tolist() == [0, 0.5, 1.5, 2]
    assert upsample(x, (1, 2), "bilinear").ravel().tolist() == [0, 1, 2, 2]


def test_upsample_chunks_and_errors(monkeypatch):
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    x = np.random.default_rng(4).integers(-128, 128, (2, 3, 5, 6))
    for mode in ("nearest", "bilinear"):
        v = F.interpolate(t64(x), scale_factor=(4.0, 2.0), mode=mode, **({} if mode == "nearest" else
                                                                          dict(align_corners=False)))
        assert np.array_equal(upsample(x, (4, 2), mode), half_up(v)), mode
    with pytest.raises(IRError, match=r"bilinear factors must be powers of two, not \(3, 2\)"):
        upsample(x, (3, 2), "bilinear")
    with pytest.raises(IRError, match="mode must be 'nearest' or 'bilinear', not 'bicubic'"):
        upsample(x, 2, "bicubic")


# --------------------------------------------------------------------------- memory


def test_new_ops_memory_bounded(monkeypatch):
    """With a 1 MiB chunk budget, temporaries stay a few MiB on a 4 MiB input, results exact."""
    import tracemalloc

    budget = 1 << 20
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", budget)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 16, 256, 128), dtype=np.int64)  # 4 MiB
    y = rng.integers(-128, 128, x.shape, dtype=np.int64)
    w = narrow_weights(rng, 8, (16, 8, 3, 3))
    t = np.sort(rng.integers(-128, 128, (16, 15)), axis=1)

    def temporaries(fn):
        tracemalloc.start()
        try:
            result = fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return result, peak - result.nbytes

    cases = {
        "threshold": lambda: threshold(x, t),
        "add": lambda: add(x, y, -128, 127),
        "avg_pool": lambda: avg_pool(x, 2, 2),
        "conv_transpose2d": lambda: conv_transpose2d(x, w, None, 2, 1, 1, 1),
        "upsample nearest": lambda: upsample(x, 2, "nearest"),
        "upsample bilinear": lambda: upsample(x, 2, "bilinear"),
    }
    results = {}
    for name, fn in cases.items():
        results[name], temp = temporaries(fn)
        assert temp < 8 * budget, f"{name} used {temp / budget:.1f} MiB of temporaries"
    crop = slice(100, 140)  # rows across chunk boundaries, checked against torch
    # Input rows 48…71 alone: their output row r is row r + 96 of the frame (complete away from the crop's edges).
    tconv = to_int(F.conv_transpose2d(t64(x[:, :, 48:72]), t64(w), stride=2, padding=1, output_padding=1))
    assert np.array_equal(results["conv_transpose2d"][:, :, crop], tconv[:, :, 100 - 96:140 - 96])
    bil = half_up(F.interpolate(t64(x[:, :, 40:80]), scale_factor=2.0, mode="bilinear", align_corners=False))
    assert np.array_equal(results["upsample bilinear"][:, :, crop], bil[:, :, 100 - 80:140 - 80])
    assert np.array_equal(results["avg_pool"], half_up(F.avg_pool2d(t64(x), 2)))


# --------------------------------------------------------------------------- a DAG


RNG = np.random.default_rng(2025)
W1 = RNG.integers(-31, 32, (5, 3, 3, 3))        # Int(6), the downsampler conv 3 → 8 − 3
B1 = RNG.integers(-500, 500, 5)
W2 = RNG.integers(-15, 16, (11, 11, 3, 1))      # Int(5), 3×1
W3 = RNG.integers(-15, 16, (11, 11, 1, 3))      # Int(5), 1×3 dilation 2
B3 = RNG.integers(-200, 200, 11)
W4 = RNG.integers(-127, 128, (11, 6, 3, 3))     # Int(8), ConvTranspose 3×3 s2 p1 op1
B4 = RNG.integers(-3000, 3000, 6)


def torch_mul_shift(acc, m, s, lo, hi):
    y = acc * torch.as_tensor(m).view(1, -1, 1, 1)
    return torch.clamp(torch.div(y + 2 ** (s - 1), 2 ** s, rounding_mode="floor"), lo, hi)


def torch_dag(x, thresholds):
    """The DAG with torch ops only: float64 convs (exact), int64 requantization."""
    s = {"image": torch.from_numpy(x)}
    d = s["image"].double()
    s["conv1"] = F.conv2d(d, t64(W1), t64(B1), stride=2, padding=1).round().long()
    s["req1"] = torch_mul_shift(s["conv1"], np.full(5, 3), 6, 0, 255)
    s["maxpool"] = F.max_pool2d(d, 2).long()
    s["avgpool"] = torch.floor(F.avg_pool2d(d, 2) + 0.5).long()
    s["cat"] = torch.cat([s["req1"], s["maxpool"], s["avgpool"]], dim=1)
    s["fork"] = s["cat"]
    s["conv2"] = F.conv2d(s["fork"].double(), t64(W2), padding=(1, 0)).round().long()
    s["req2"] = torch_mul_shift(s["conv2"], np.full(11, 1), 7, 0, 255)
    s["conv3"] = F.conv2d(s["req2"].double(), t64(W3), t64(B3), padding=(0, 2), dilation=(1, 2)).round().long()
    s["req3"] = torch_mul_shift(s["conv3"], np.arange(11) + 1, 9, -128, 127)
    s["res"] = torch.clamp(s["fork"] + s["req3"], 0, 255)
    s["up"] = F.conv_transpose2d(s["res"].double(), t64(W4), t64(B4), stride=2, padding=1,
                                 output_padding=1).round().long()
    s["thr"] = (s["up"][..., None] >= torch.from_numpy(thresholds).view(1, 6, 1, 1, -1)).sum(-1)
    s["smooth"] = torch.floor(F.interpolate(s["thr"].double(), scale_factor=2.0, mode="bilinear",
                                            align_corners=False) + 0.5).long()
    s["near"] = F.interpolate(s["thr"].double(), scale_factor=2.0, mode="nearest").long()
    s["mix"] = torch.clamp(s["smooth"] + s["near"], 0, 7)
    s["classes"] = torch.argmax(s["mix"], dim=1, keepdim=True)
    return {k: v.numpy() for k, v in s.items()}


def build_dag(thresholds):
    return Graph([
        Node("image", Input((3, 12, 16), UInt(8))),
        Node("conv1", Conv2d(W1, B1, Int(6), stride=2, padding=1), ("image",)),
        Node("req1", MulShift(np.full(5, 3), 6, 0, 255), ("conv1",)),
        Node("maxpool", MaxPool(2), ("image",)),                       # image feeds three nodes
        Node("avgpool", AvgPool(2), ("image",)),
        Node("cat", Concat(3), ("req1", "maxpool", "avgpool")),
        Node("fork", Fork(2), ("cat",)),
        Node("conv2", Conv2d(W2, np.zeros(11), Int(5), padding=(1, 0)), ("fork",)),
        Node("req2", MulShift(np.full(11, 1), 7, 0, 255), ("conv2",)),
        Node("conv3", Conv2d(W3, B3, Int(5), padding=(0, 2), dilation=(1, 2)), ("req2",)),
        Node("req3", MulShift(np.arange(11) + 1, 9, -128, 127), ("conv3",)),
        Node("res", Add(0, 255), ("fork", "req3")),                    # residual: fork feeds two nodes
        Node("up", ConvTranspose2d(W4, B4, Int(8), stride=2, padding=1, output_padding=1), ("res",)),
        Node("thr", Threshold(thresholds), ("up",)),
        Node("smooth", Upsample(2, "bilinear"), ("thr",)),
        Node("near", Upsample(2), ("thr",)),
        Node("mix", Add(0, 7), ("smooth", "near")),
        Node("classes", ArgMax(3), ("mix",)),
    ], name="dag")


@pytest.fixture(scope="module")
def dag_case():
    images = np.random.default_rng(17).integers(0, 256, (2, 3, 12, 16))
    # Thresholds at quantiles of torch's own transposed-conv output: every level is used.
    up = torch_dag(images, np.zeros((6, 3), np.int64))["up"]
    thresholds = np.stack([np.quantile(up[:, c], [0.25, 0.5, 0.75]).round().astype(np.int64) for c in range(6)])
    return images, thresholds, torch_dag(images, thresholds)


def test_dag_types():
    g = build_dag(np.zeros((6, 3), np.int64))
    assert g.types["cat"] == TensorType((11, 6, 8), UInt(8))
    assert g.types["res"] == TensorType((11, 6, 8), UInt(8))
    assert g.types["up"].shape == (6, 12, 16) and g.types["thr"] == TensorType((6, 12, 16), UInt(2))
    assert g.types["smooth"] == TensorType((6, 24, 32), UInt(2)) and g.types["mix"].dtype == UInt(3)
    assert [n.name for n in g.consumers("fork")] == ["conv2", "res"]
    assert [n.name for n in g.consumers("image")] == ["conv1", "maxpool", "avgpool"]


def test_dag_vs_torch(dag_case):
    images, thresholds, expected = dag_case
    g = build_dag(thresholds)
    kept = run_graph(g, images, keep=True)
    assert list(kept) == [n.name for n in g]
    for name, value in kept.items():
        assert value.dtype == np.int64 and np.array_equal(value, expected[name]), name
    assert np.array_equal(run_graph(g, images), expected["classes"])
    assert np.array_equal(run_graph(g, images[1]), expected["classes"][1])
    # Not degenerate: the skip and the branch both matter, every threshold level occurs.
    assert not np.array_equal(expected["res"], expected["fork"]) and len(np.unique(expected["req3"])) > 20
    assert set(np.unique(expected["thr"])) == {0, 1, 2, 3} and len(np.unique(expected["classes"])) > 2

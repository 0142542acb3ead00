"""The golden ops against torch on integer tensors (verification ladder, step 1).

torch's float64 ``conv2d``/``max_pool2d`` on integer-valued tensors is exact below 2^53 and
is the reference; ``mul_shift`` is checked against a torch int64 formulation with floor
division. Every random configuration is drawn from a fixed seed, so a failure is
reproducible, and each failure message names the configuration.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hwseg.golden.ops as golden_ops
from hwseg.golden import argmax, conv2d, max_pool, mul_shift, sliding_windows
from hwseg.ir import IRError


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.int64)).double()


def to_int(t):
    out = t.numpy()
    assert np.all(np.abs(out) < 2.0 ** 53) and np.array_equal(out, np.round(out))
    return out.astype(np.int64)


def narrow_weights(rng, bits, shape):
    """Narrow-range symmetric weights of ``bits`` bits: −(2^(b−1)−1) … 2^(b−1)−1."""
    limit = (1 << (bits - 1)) - 1
    return rng.integers(-limit, limit + 1, shape)


def activations(rng, bits, signed, shape, mode="uniform"):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if mode == "extreme":  # only the range ends and 0: the accumulator's worst cases
        return rng.choice(np.array(sorted({lo, 0, hi})), size=shape)
    return rng.integers(lo, hi + 1, shape)


# --------------------------------------------------------------------------- conv2d


@dataclass(frozen=True)
class ConvConfig:
    seed: int
    batch: int
    cin: int
    cout: int
    groups: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    size: tuple[int, int]
    wbits: int
    abits: int
    signed: bool
    mode: str
    bias: bool

    def __str__(self):
        return (f"seed={self.seed} N={self.batch} {self.cin}→{self.cout} groups={self.groups} k={self.kernel} "
                f"s={self.stride} p={self.padding} d={self.dilation} in={self.size} w{self.wbits} "
                f"a{self.abits}{'s' if self.signed else 'u'} {self.mode} bias={self.bias}")

    def tensors(self):
        rng = np.random.default_rng(self.seed)
        x = activations(rng, self.abits, self.signed, (self.batch, self.cin, *self.size), self.mode)
        w = narrow_weights(rng, self.wbits, (self.cout, self.cin // self.groups, *self.kernel))
        b = rng.integers(-1000, 1001, self.cout) if self.bias else None
        return x, w, b


def make_conv_configs(count=240, seed=20240611):
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(count):
        choice = str(rng.choice(["1", "1", "1", "2", "3", "4", "dw"])) if i % 5 else "1"
        if choice == "dw":
            cin = int(rng.integers(1, 17))
            groups, cout = cin, cin * int(rng.integers(1, 3)) if cin <= 8 else cin
        else:
            groups = int(choice)
            cin = groups * int(rng.integers(1, 16 // groups + 1))
            cout = groups * int(rng.integers(1, 16 // groups + 1))
        kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        if rng.random() < 0.4:
            kernel = (kernel[0], kernel[0])
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 5, 2))
        padding = tuple(int(v) for v in rng.integers(0, 4, 2))
        size = tuple(max(1, (k - 1) * d + 1 - 2 * p) + int(rng.integers(0, 8))
                     for k, d, p in zip(kernel, dilation, padding))
        configs.append(ConvConfig(
            seed=int(rng.integers(1 << 31)), batch=int(rng.integers(1, 3)), cin=cin, cout=cout, groups=groups,
            kernel=kernel, stride=stride, padding=padding, dilation=dilation, size=size,
            wbits=int(rng.integers(2, 9)), abits=int(rng.integers(2, 9)), signed=bool(rng.random() < 0.5),
            mode="extreme" if rng.random() < 0.25 else "uniform", bias=bool(rng.random() < 0.7)))
    return configs


CONV_CONFIGS = make_conv_configs()
CONV_BATCHES = 8


def test_conv_configs_cover_the_space():
    """The random configurations reach every value the brief asks for."""
    c = CONV_CONFIGS
    assert len(c) >= 200
    assert {k for cfg in c for k in cfg.kernel} == {1, 2, 3, 4, 5}
    assert any(cfg.kernel[0] != cfg.kernel[1] for cfg in c)
    assert {s for cfg in c for s in cfg.stride} == {1, 2, 3}
    assert {d for cfg in c for d in cfg.dilation} == {1, 2, 3, 4}
    assert {p for cfg in c for p in cfg.padding} == {0, 1, 2, 3}
    assert {cfg.wbits for cfg in c} == set(range(2, 9))
    assert {cfg.abits for cfg in c} == set(range(2, 9))
    assert {cfg.signed for cfg in c} == {False, True}
    assert min(cfg.cin for cfg in c) == 1 and max(cfg.cin for cfg in c) == 16
    assert max(cfg.cout for cfg in c) >= 16
    assert sum(cfg.groups > 1 for cfg in c) >= 30
    assert sum(cfg.groups == cfg.cin > 1 for cfg in c) >= 5  # depthwise
    assert sum(cfg.mode == "extreme" for cfg in c) >= 30


def torch_conv(x, w, b, cfg):
    return to_int(F.conv2d(t64(x), t64(w), None if b is None else t64(b),
                           stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups))


def check_conv_batch(batch):
    failures = []
    for cfg in CONV_CONFIGS[batch::CONV_BATCHES]:
        x, w, b = cfg.tensors()
        expected = torch_conv(x, w, b, cfg)
        got = conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation, cfg.groups)
        if got.dtype != np.int64 or got.shape != expected.shape or not np.array_equal(got, expected):
            failures.append(str(cfg))
    assert not failures, "conv2d differs from torch for:\n" + "\n".join(failures)


@pytest.mark.parametrize("batch", range(CONV_BATCHES))
def test_conv2d_vs_torch(batch):
    check_conv_batch(batch)


@pytest.mark.parametrize("batch", range(CONV_BATCHES))
def test_conv2d_vs_torch_int64_path(batch, monkeypatch):
    """The int64 product path (taken above 2^53) gives the same integers as torch."""
    monkeypatch.setattr(golden_ops, "_FLOAT64_EXACT", 0)
    check_conv_batch(batch)


@pytest.mark.parametrize("batch", range(0, CONV_BATCHES, 2))
def test_conv2d_vs_torch_row_chunks(batch, monkeypatch):
    """With a tiny chunk budget every output row is its own band: still identical."""
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    check_conv_batch(batch)


def test_conv2d_frame_chunks(monkeypatch):
    """A budget of a few frames splits a batch into groups of whole frames."""
    seen = []
    chunks = golden_ops._chunks

    def recording(*args):
        for chunk in chunks(*args):
            seen.append(chunk)
            yield chunk

    monkeypatch.setattr(golden_ops, "_chunks", recording)
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 25000)  # a 3×9×8 frame costs about 11 kB
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (7, 3, 9, 8))
    w = narrow_weights(rng, 8, (4, 3, 3, 3))
    cfg = ConvConfig(0, 7, 3, 4, 1, (3, 3), (1, 1), (1, 1), (1, 1), (9, 8), 8, 8, False, "uniform", False)
    assert np.array_equal(conv2d(x, w, None, 1, 1, 1), torch_conv(x, w, None, cfg))
    assert len(seen) > 1 and all(r0 == 0 and r1 == 9 for _, _, r0, r1 in seen)
    assert any(n1 - n0 > 1 for n0, n1, _, _ in seen)


def test_conv2d_beyond_float64_exact_range():
    """Accumulators above 2^53 (int64 path) still equal torch, split into exact halves."""
    rng = np.random.default_rng(11)
    x = rng.integers(-(1 << 40), 1 << 40, (1, 4, 6, 6))
    w = rng.integers(-(1 << 15), 1 << 15, (3, 4, 3, 3))
    b = rng.integers(-(1 << 50), 1 << 50, 3)
    hi, lo = np.divmod(x, 1 << 20)  # x = hi·2^20 + lo, each half's conv exact in float64
    ref_hi = torch_conv(hi, w, None, ConvConfig(0, 1, 4, 3, 1, (3, 3), (1, 1), (1, 1), (1, 1), (6, 6),
                                                  16, 16, True, "uniform", False))
    ref_lo = torch_conv(lo, w, None, ConvConfig(0, 1, 4, 3, 1, (3, 3), (1, 1), (1, 1), (1, 1), (6, 6),
                                                  16, 16, True, "uniform", False))
    expected = np.array([[[[int(a) * (1 << 20) + int(c) + int(b[o]) for a, c in zip(ra, rc)]
                           for ra, rc in zip(pa, pc)] for o, (pa, pc) in enumerate(zip(fa, fc))]
                         for fa, fc in zip(ref_hi, ref_lo)], dtype=np.int64)
    got = conv2d(x, w, b, 1, 1, 1)
    assert np.abs(expected).max() > 2 ** 53
    assert np.array_equal(got, expected)


def test_conv2d_rejects_possible_int64_overflow():
    x = np.full((1, 2, 3, 3), 1 << 40)
    w = np.full((1, 2, 3, 3), 1 << 20)
    with pytest.raises(IRError, match="could overflow int64"):
        conv2d(x, w, None, 1, 0, 1)


@pytest.mark.parametrize("args, match", [
    (dict(x=np.zeros((2, 3, 4)),), "conv2d input must have 4 dimensions"),
    (dict(x=np.zeros((1, 3, 4, 4), np.float64)), "conv2d input must hold integers, not float64"),
    (dict(groups=2), "groups=2 does not fit"),
    (dict(w=np.zeros((4, 2, 3, 3), np.int64)), "does not fit weight"),
    (dict(b=np.zeros(3, np.int64)), r"bias must have shape \(4,\)"),
    (dict(stride=0), "stride, dilation ≥ 1"),
    (dict(stride=(1, 2, 3)), "stride must be an int or a pair"),
    (dict(x=np.zeros((1, 3, 2, 2), np.int64)), "2×2 input is too small for a 3×3 convolution"),
])
def test_conv2d_argument_errors(args, match):
    call = dict(x=np.zeros((1, 3, 4, 4), np.int64), w=np.zeros((4, 3, 3, 3), np.int64), b=None,
                stride=1, padding=0, dilation=1, groups=1)
    call.update(args)
    with pytest.raises(IRError, match=match):
        conv2d(call["x"], call["w"], call["b"], call["stride"], call["padding"], call["dilation"], call["groups"])


# --------------------------------------------------------------------------- sliding_windows


def window_configs(count=60, seed=7):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        kernel = tuple(int(v) for v in rng.integers(1, 6, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(v) for v in rng.integers(0, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        size = tuple(max(1, (k - 1) * d + 1 - 2 * p) + int(rng.integers(0, 6))
                     for k, d, p in zip(kernel, dilation, padding))
        pad_value = int(rng.choice([0, 0, -128, 7, 255]))
        yield pytest.param(int(rng.integers(1 << 31)), int(rng.integers(1, 6)), size, kernel, stride, padding,
                           dilation, pad_value,
                           id=f"k{kernel}-s{stride}-p{padding}-d{dilation}-in{size}-pad{pad_value}")


@pytest.mark.parametrize("seed, channels, size, kernel, stride, padding, dilation, pad_value",
                         list(window_configs()))
def test_sliding_windows_vs_unfold(seed, channels, size, kernel, stride, padding, dilation, pad_value):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (2, channels, *size))
    # unfold pads with 0: shift by pad_value so the padding reads pad_value after shifting back.
    cols = F.unfold(t64(x - pad_value), kernel, dilation=dilation, padding=padding, stride=stride)
    expected = to_int(cols) + pad_value  # (N, C·kh·kw, Ho·Wo), channel-major then ky, kx
    got = sliding_windows(x, kernel, stride, padding, dilation, pad_value)
    n, ho, wo, kh, kw, c = got.shape
    assert (kh, kw, c, n) == (*kernel, channels, 2)
    assert got.dtype == np.int64
    assert np.array_equal(got.transpose(0, 5, 3, 4, 1, 2).reshape(n, c * kh * kw, ho * wo), expected)


def test_sliding_windows_element_formula():
    """Spot-check the documented index formula on one configuration, element by element."""
    x = np.arange(2 * 3 * 7 * 6).reshape(2, 3, 7, 6)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (3, 2), (2, 3), (1, 2), (2, 1)
    win = sliding_windows(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), pad_value=-5)
    assert win.shape == (2, 3, 3, 3, 2, 3)
    for idx in np.ndindex(*win.shape):
        n, oy, ox, ky, kx, c = idx
        y, xx = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
        inside = 0 <= y < 7 and 0 <= xx < 6
        assert win[idx] == (x[n, c, y, xx] if inside else -5), idx


# --------------------------------------------------------------------------- mul_shift


def torch_mul_shift(acc, m, s, lo, hi):
    """Independent formulation: floor division by 2^s in torch int64, then clamp."""
    y = torch.from_numpy(acc) * torch.from_numpy(m).view(1, -1, 1, 1)
    if s > 0:
        y = torch.div(y + 2 ** (s - 1), 2 ** s, rounding_mode="floor")
    return torch.clamp(y, lo, hi).numpy()


def mul_shift_configs(count=80, seed=99):
    rng = np.random.default_rng(seed)
    for i in range(count):
        acc_bits = int(rng.integers(2, 33))
        m_bits = int(rng.integers(1, 28))
        shift = 0 if i % 8 == 0 else int(rng.integers(0, min(62, acc_bits + m_bits) + 1))
        out_bits = int(rng.integers(1, 17))
        kind = i % 3
        lo, hi = ((0, (1 << out_bits) - 1) if kind == 0 else
                  (-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1) if kind == 1 else
                  tuple(sorted(int(v) for v in rng.integers(-5000, 5000, 2))))
        yield pytest.param(int(rng.integers(1 << 31)), acc_bits, m_bits, shift, lo, hi,
                           id=f"acc{acc_bits}-m{m_bits}-s{shift}-[{lo},{hi}]")


@pytest.mark.parametrize("seed, acc_bits, m_bits, shift, lo, hi", list(mul_shift_configs()))
def test_mul_shift_vs_torch(seed, acc_bits, m_bits, shift, lo, hi):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 9))
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (2, c, 5, 4))
    m = rng.integers(-(1 << m_bits), (1 << m_bits) + 1, c)  # negative multipliers too
    got = mul_shift(acc, m, shift, lo, hi)
    assert got.dtype == np.int64
    assert np.array_equal(got, torch_mul_shift(acc, m, shift, lo, hi))


def test_mul_shift_rounds_half_up_at_ties():
    """Exact halves round towards +∞ (arithmetic shift), on both signs."""
    acc = np.array([-5, -3, -1, 1, 3, 5, -4, 4, 6, -6]).reshape(1, 1, 1, 10)
    got = mul_shift(acc, np.array([1]), 1, -100, 100)
    expected = torch_mul_shift(acc, np.array([1]), 1, -100, 100)
    assert np.array_equal(got, expected)
    assert got.ravel().tolist() == [-2, -1, 0, 1, 2, 3, -2, 2, 3, -3]


def test_mul_shift_chunked(monkeypatch):
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    rng = np.random.default_rng(3)
    acc = rng.integers(-100000, 100000, (3, 4, 6, 5))
    m = rng.integers(-300, 300, 4)
    assert np.array_equal(mul_shift(acc, m, 9, -128, 127), torch_mul_shift(acc, m, 9, -128, 127))


def test_mul_shift_overflow_guard():
    acc = np.array([1 << 31, -(1 << 31)]).reshape(1, 1, 1, 2)
    m = np.array([1 << 31])
    # |acc|·|M| = 2^62 exactly: allowed, and still exact.
    big = 1 << 62
    assert np.array_equal(mul_shift(acc, m, 62, -big, big), torch_mul_shift(acc, m, 62, -big, big))
    with pytest.raises(IRError, match="exceeds 2\\^62"):
        mul_shift(acc + 1, m, 62, -big, big)


@pytest.mark.parametrize("args, match", [
    (dict(m=np.array([1, 2])), "one multiplier per channel, 3"),
    (dict(shift=-1), "shift must be an integer in 0…62"),
    (dict(shift=63), "shift must be an integer in 0…62"),
    (dict(shift=1.0), "shift must be an integer"),
    (dict(lo=5, hi=4), "lo ≤ hi"),
    (dict(acc=np.zeros((3, 2, 2))), "must have 4 dimensions"),
])
def test_mul_shift_argument_errors(args, match):
    call = dict(acc=np.zeros((1, 3, 2, 2), np.int64), m=np.array([1, 2, 3]), shift=4, lo=0, hi=255)
    call.update(args)
    with pytest.raises(IRError, match=match):
        mul_shift(call["acc"], call["m"], call["shift"], call["lo"], call["hi"])


# --------------------------------------------------------------------------- max_pool


def max_pool_configs(count=60, seed=4242):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 5, 2))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        size = tuple(max(1, k - 2 * p) + int(rng.integers(0, 7)) for k, p in zip(kernel, padding))
        negative = bool(rng.random() < 0.4)
        yield pytest.param(int(rng.integers(1 << 31)), size, kernel, stride, padding, negative,
                           id=f"k{kernel}-s{stride}-p{padding}-in{size}-{'neg' if negative else 'signed'}")


@pytest.mark.parametrize("seed, size, kernel, stride, padding, negative", list(max_pool_configs()))
def test_max_pool_vs_torch(seed, size, kernel, stride, padding, negative):
    rng = np.random.default_rng(seed)
    # All-negative inputs: a pool that let the zero padding win would return 0 at the borders.
    x = rng.integers(-128, 0, (2, 3, *size)) if negative else rng.integers(-128, 128, (2, 3, *size))
    expected = to_int(F.max_pool2d(t64(x), kernel, stride, padding))
    got = max_pool(x, kernel, stride, padding)
    assert got.dtype == np.int64
    assert np.array_equal(got, expected)


def test_max_pool_default_stride_and_chunks(monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.integers(-1000, -1, (2, 4, 11, 9))
    expected = to_int(F.max_pool2d(t64(x), (3, 2), padding=(1, 1)))
    assert np.array_equal(max_pool(x, (3, 2), padding=(1, 1)), expected)
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    assert np.array_equal(max_pool(x, (3, 2), padding=(1, 1)), expected)


def test_max_pool_rejects_padding_over_half_kernel():
    with pytest.raises(IRError, match="at most half the kernel"):
        max_pool(np.zeros((1, 1, 8, 8), np.int64), 2, 2, (0, 2))


# --------------------------------------------------------------------------- argmax


@pytest.mark.parametrize("channels, levels", [(1, 3), (2, 2), (5, 3), (16, 2), (16, 4), (33, 5)])
def test_argmax_vs_torch_with_ties(channels, levels):
    rng = np.random.default_rng(channels * 100 + levels)
    x = rng.integers(-levels // 2, levels - levels // 2, (3, channels, 7, 6))  # few levels: many ties
    x[0, :, 0, 0] = 4  # a pixel where every channel ties
    tx = torch.from_numpy(x)
    expected = torch.argmax(tx, dim=1, keepdim=True).numpy()
    # First maximum, independently: the smallest channel index that holds the max.
    index = torch.arange(channels).view(1, -1, 1, 1).expand_as(tx)
    first = torch.where(tx == tx.max(dim=1, keepdim=True).values, index, channels).min(dim=1, keepdim=True).values
    assert np.array_equal(expected, first.numpy())
    ties = ((tx == tx.max(dim=1, keepdim=True).values).sum(dim=1) > 1).sum()
    if channels > 1:
        assert ties > 0  # the test really exercises ties
    got = argmax(x)
    assert got.shape == (3, 1, 7, 6) and got.dtype == np.int64
    assert np.array_equal(got, expected)
    assert got[0, 0, 0, 0] == 0


def test_argmax_chunked(monkeypatch):
    monkeypatch.setattr(golden_ops, "_CHUNK_BYTES", 1)
    x = np.random.default_rng(2).integers(0, 3, (2, 6, 5, 4))
    assert np.array_equal(argmax(x), torch.argmax(torch.from_numpy(x), dim=1, keepdim=True).numpy())


# --------------------------------------------------------------------------- memory


def test_big_frame_memory_bounded():
    """128 channels × 512×256: every op's temporaries stay far below 256 MB, results exact."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 128, 512, 256), dtype=np.int64)  # 128 MiB
    w = narrow_weights(rng, 4, (2, 128, 3, 3))
    limit = 256 << 20

    def peak_temporaries(fn):
        tracemalloc.start()
        try:
            result = fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return result, peak - result.nbytes

    out, temp = peak_temporaries(lambda: conv2d(x, w, None, 1, 1, 1))
    assert temp < limit, f"conv2d used {temp >> 20} MiB of temporaries"
    # torch on row crops (across chunk boundaries and both frame edges), padded by hand.
    for a, b in [(0, 48), (60, 100), (470, 512)]:
        top, bottom = max(0, a - 1), min(512, b + 1)
        crop = np.pad(x[:, :, top:bottom], ((0, 0), (0, 0), (top - (a - 1), (b + 1) - bottom), (0, 0)))
        expected = to_int(F.conv2d(t64(crop), t64(w), padding=(0, 1)))
        assert np.array_equal(out[:, :, a:b], expected), (a, b)

    out, temp = peak_temporaries(lambda: mul_shift(x, np.arange(128) - 64, 3, -128, 127))
    assert temp < limit, f"mul_shift used {temp >> 20} MiB of temporaries"
    out, temp = peak_temporaries(lambda: max_pool(x, 3, 2, 1))
    assert temp < limit, f"max_pool used {temp >> 20} MiB of temporaries"
    out, temp = peak_temporaries(lambda: argmax(x))
    assert temp < limit, f"argmax used {temp >> 20} MiB of temporaries"

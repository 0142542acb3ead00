"""Weight quantizers (binary, pow2), activation clip modes (fixed, learned PACT, pow2), gradient quantizer.

Expected values come from NumPy / plain torch formulas written out here, never from hwseg.quant."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hwseg.quant import (QAct, QConv2d, QReLU, binary_weight, calibrate, fake_quantize_weight, pow2_ceil,
                         quantize_grad, quantize_pow2, quantize_weight)


def _np(t):
    return t.detach().double().numpy()


# ----------------------------------------------------------------------------- binary weights

def test_binary_weights_are_sign_times_layer_mean_abs():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3)
    w[0, 0, 0, 0] = 0.0                                   # sign(0) is +1: Bipolar has no 0
    w_int, e = quantize_weight(w, 8, "binary")
    ref_e = np.abs(_np(w)).mean()                         # E = mean|W| over the whole layer
    assert w_int.dtype == torch.int64 and set(w_int.unique().tolist()) == {-1, 1}
    assert np.array_equal(w_int.numpy(), np.where(_np(w) >= 0, 1, -1))
    assert e.shape == (5,) and np.allclose(e.numpy(), ref_e, rtol=1e-12)
    fq = fake_quantize_weight(w, 1, "binary")
    assert np.allclose(_np(fq), np.where(_np(w) >= 0, 1.0, -1.0) * ref_e, rtol=1e-6)
    assert torch.equal(binary_weight(torch.zeros(2, 1, 1, 1))[1], torch.zeros(2, dtype=torch.float64))


def test_binary_qconv2d_forward_and_straight_through_gradient():
    torch.manual_seed(1)
    conv = QConv2d(3, 4, 3, padding=1, weight_quant="binary")
    assert conv.weight_bits == 1
    x = torch.randn(2, 3, 6, 6)
    y = conv(x)
    e = conv.weight.detach().abs().mean()
    w_ref = (torch.where(conv.weight.detach() >= 0, 1.0, -1.0) * e).requires_grad_(True)
    ref = F.conv2d(x, w_ref, conv.bias, padding=1)
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g)
    assert torch.allclose(conv.weight.grad, w_ref.grad, atol=1e-5)    # d(sign(w)·E)/dw := identity


# ----------------------------------------------------------------------------- pow2 weights

def test_pow2_weights_on_the_fixed_2_to_minus_7_grid_saturate():
    w = torch.tensor([0.0, 0.004, 0.0039, -0.3, 0.99, 1.5, -2.0, 0.5 / 128]).view(8, 1, 1, 1)
    w_int, scale = quantize_weight(w, 8, "pow2", exponent=-7)
    ref = np.clip(np.rint(_np(w).ravel() * 128), -127, 127)            # clip(round(w·2^7)) on ±127
    assert np.array_equal(w_int.view(-1).numpy(), ref)
    assert torch.all(scale == 2.0 ** -7)
    fq = fake_quantize_weight(w, 8, "pow2", -7).view(-1)
    assert np.array_equal(_np(fq), ref / 128)                         # exactly on the grid, even saturated
    w.requires_grad_(True)
    fake_quantize_weight(w, 8, "pow2", -7).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))                    # STE, also where saturated


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pow2_dynamic_exponent_is_the_smallest_that_clips_nothing(bits):
    torch.manual_seed(bits)
    qmax = 2 ** (bits - 1) - 1
    for peak in (0.37, 1.0, 3.0, 127 / 128, 0.02):
        w = torch.rand(4, 2, 3, 3) * 2 - 1
        w = w / w.abs().max() * peak
        w_int, scale = quantize_weight(w, bits, "pow2")
        step = float(scale[0])
        e = math.log2(step)
        assert e == round(e) and torch.all(scale == step)              # one power of two per layer
        assert peak <= qmax * step * (1 + 1e-7) and peak > qmax * step / 2 * (1 + 1e-7)
        assert np.array_equal(w_int.numpy(), np.clip(np.rint(_np(w) / step), -qmax, qmax))


def test_qconv2d_modes_and_refusals():
    conv = QConv2d(2, 3, 1, weight_quant="pow2", weight_exponent=-7)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.30, -0.011, 2.0, 0.5, 0.25, -0.126]).view(3, 2, 1, 1))
    w_int, _ = conv.quantized_weight()
    assert w_int.view(-1).tolist() == [38, -1, 127, 64, 32, -16]
    with pytest.raises(ValueError, match="weight_quant must be one of"):
        QConv2d(2, 3, 1, weight_quant="ternary")
    with pytest.raises(ValueError, match="weight_exponent is an integer for weight_quant='pow2' only"):
        QConv2d(2, 3, 1, weight_exponent=-7)
    with pytest.raises(ValueError, match="binary weights has 1-bit weights"):
        QConv2d(2, 3, 1, weight_quant="binary", weight_bits=4)


# ----------------------------------------------------------------------------- activations

@pytest.mark.parametrize("bits", range(1, 9))
def test_unsigned_fixed_clip_levels(bits):
    hi = 2 ** bits - 1
    act = QReLU(bits, clip=1.5)
    assert act.clip_mode == "fixed"
    x = torch.linspace(-1, 3, 4001, dtype=torch.float64)
    y = act.train()(x)                        # a fixed clip never moves, even in training mode
    assert float(act.clip) == 1.5
    ref = np.clip(np.round(np.clip(x.numpy(), 0, 1.5) / (1.5 / hi)), 0, hi) * (1.5 / hi)
    assert np.allclose(y.numpy(), ref, atol=1e-12)
    assert len(np.unique(np.round(y.numpy() / (1.5 / hi)))) == hi + 1


@pytest.mark.parametrize("bits", range(2, 9))
def test_signed_narrow_levels(bits):
    hi = 2 ** (bits - 1) - 1
    act = QAct(bits, signed=True, clip=2.0).eval()
    q = np.round(act(torch.linspace(-5, 5, 4001, dtype=torch.float64)).numpy() / (2.0 / hi))
    assert q.min() == -hi and q.max() == hi and len(np.unique(q)) == 2 * hi + 1


def test_pow2_activation_scale_rounds_up_to_a_power_of_two():
    act = QAct(8, pow2=True, clip=1.3)
    assert act.scale == 2.0 ** -7                         # 1.3/255 = 0.0051 → 2^−7 = 0.0078
    act = QAct(4, signed=True, pow2=True, clip=0.7)
    assert act.scale == 0.125                              # 0.7/7 = 0.1 → 2^−3
    y = act(torch.tensor([0.06, 0.07, -10.0, 0.8], dtype=torch.float64))
    assert y.tolist() == [0.0, 0.125, -7 * 0.125, 0.75]   # 0.06/0.125 = 0.48 → 0
    assert [pow2_ceil(v) for v in (1.0, 0.75, 3.0, 2.0 ** -20 + 2.0 ** -40)] == [1.0, 1.0, 4.0, 2.0 ** -19]


def test_ema_clip_default_is_unchanged_and_calibrate_leaves_fixed_and_learned_clips_alone():
    ema, fixed, learned = QAct(8), QAct(8, clip=0.5), QAct(8, learn_clip=True, clip=2.0)
    assert ema.clip_mode == "ema" and not isinstance(ema.clip, torch.nn.Parameter)
    assert isinstance(learned.clip, torch.nn.Parameter) and learned.clip_mode == "learned"
    model = torch.nn.Sequential(ema, fixed, learned)
    calibrate(model, [torch.tensor([3.0, 9.0])])
    assert float(ema.clip) == 9.0 and float(fixed.clip) == 0.5 and float(learned.clip.detach()) == 2.0
    assert "clip_mode='learned'" in repr(learned)
    with pytest.raises(ValueError, match="clip must be None or a finite number"):
        QAct(8, clip=0.0)


@pytest.mark.parametrize("signed", [False, True])
def test_pact_gradient(signed):
    alpha = 1.25                      # exact in float32: the boundaries below are exact
    bits = 3
    act = QAct(bits, signed=signed, learn_clip=True, clip=alpha)
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    x = torch.tensor([-2.0, -1.3, -0.5, 0.0, 0.3, 0.61, 1.19, 1.26, 1.7, 4.0], dtype=torch.float64,
                     requires_grad=True)
    g = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], dtype=torch.float64)
    y = act(x)
    step = alpha / hi
    lo = -alpha if signed else 0.0
    xs = x.detach().numpy()
    ref = np.round(np.clip(xs, lo, alpha) / step) * step
    assert np.allclose(y.detach().numpy(), ref, atol=1e-12)
    y.backward(g)
    above, below = xs >= alpha, xs <= lo
    # PACT: dy/dα = 1 where x ≥ α (and −1 where x ≤ −α when signed); dy/dx = 1 strictly inside
    ref_alpha = g.numpy()[above].sum() - (g.numpy()[below].sum() if signed else 0.0)
    assert float(act.clip.grad) == pytest.approx(ref_alpha)
    assert np.array_equal(x.grad.numpy(), np.where(~above & ~below, g.numpy(), 0.0))


def test_pact_clip_learns_to_grow_when_outputs_saturate():
    act = QAct(4, learn_clip=True, clip=0.5)
    opt = torch.optim.SGD(act.parameters(), lr=0.2)
    x = torch.linspace(0, 2, 200)
    for _ in range(60):
        opt.zero_grad()
        ((act(x) - x) ** 2).mean().backward()
        opt.step()
    assert float(act.clip.detach()) > 1.7


# ----------------------------------------------------------------------------- gradients

def _pow2_ref(g: np.ndarray, bits: int) -> np.ndarray:
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(g).max()
    e = math.ceil(math.log2(peak / qmax))
    if peak > qmax * 2.0 ** e:
        e += 1
    if peak <= qmax * 2.0 ** (e - 1):
        e -= 1
    return np.clip(np.rint(g / 2.0 ** e), -qmax, qmax) * 2.0 ** e


@pytest.mark.parametrize("bits", [4, 8])
def test_quantize_grad_is_identity_forward_and_pow2_backward(bits):
    torch.manual_seed(bits)
    x = torch.randn(3, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 50, dtype=torch.float64) * 1e-3
    y = quantize_grad(x, bits)
    assert torch.equal(y, x)
    y.backward(g)
    assert np.array_equal(x.grad.numpy(), _pow2_ref(g.numpy(), bits))
    q, e = quantize_pow2(torch.tensor([0.0, 0.0]), 8)
    assert torch.equal(q, torch.zeros(2)) and e == 0


def test_stochastic_gradient_rounding_is_on_the_grid_and_unbiased():
    gen = torch.Generator().manual_seed(0)
    g = torch.full((20000,), 0.3, dtype=torch.float64)
    g[0] = 127.0                                              # the peak: step 1
    q, e = quantize_pow2(g, 8, stochastic=True, generator=gen)
    assert e == 0 and torch.all(q[1:] == torch.round(q[1:])) and set(q[1:].tolist()) <= {0.0, 1.0}
    assert float(q[1:].mean()) == pytest.approx(0.3, abs=0.02)

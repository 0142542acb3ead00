"""Quantizers: ranges, narrow weights, calibration and straight-through gradients."""

import pytest
import torch
from torch.nn import functional as F

from hwseg.quant import ArgMax, QAct, QConv2d, QReLU, QuantInput, fake_quantize_weight, quantization, quantize_weight
from hwseg.quant.layers import MIN_CLIP


def test_quant_input_is_the_image_over_255():
    x = torch.arange(256.0).view(1, 1, 16, 16)
    assert torch.equal(QuantInput()(x), x / 255)
    assert QuantInput.scale == 1 / 255 and QuantInput.bits == 8


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_are_narrow_symmetric_per_channel(bits):
    torch.manual_seed(bits)
    w = torch.randn(6, 3, 3, 3) * torch.tensor([0.01, 0.1, 1, 3, 0.5, 0]).view(6, 1, 1, 1)
    w_int, s_w = quantize_weight(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert w_int.dtype == torch.int64
    assert int(w_int.abs().max()) == qmax and int(w_int.min()) >= -qmax
    # every non-zero channel reaches ±qmax, and its scale is max|w| / qmax
    peaks = w_int[:5].abs().flatten(1).amax(1)
    assert torch.equal(peaks, torch.full((5,), qmax))
    assert torch.allclose(s_w[:5], w[:5].abs().flatten(1).amax(1).double() / qmax)
    # quantization error at most half a step per channel
    err = (w_int.double() * s_w.view(-1, 1, 1, 1) - w.double()).abs().flatten(1).amax(1)
    assert torch.all(err[:5] <= s_w[:5] / 2 + 1e-12)
    # an all-zero channel: zero integers, a finite scale
    assert torch.equal(w_int[5], torch.zeros_like(w_int[5])) and s_w[5] == 1.0


def test_qconv2d_forward_uses_fake_quantized_weights_and_gradient_passes_straight_through():
    torch.manual_seed(1)
    conv = QConv2d(3, 4, 3, padding=1, dilation=1, weight_bits=4)
    x = torch.randn(2, 3, 8, 8)
    y = conv(x)
    w_fq = fake_quantize_weight(conv.weight, 4).detach().requires_grad_(True)
    ref = F.conv2d(x, w_fq, conv.bias, padding=1)
    assert torch.allclose(y, ref)
    assert len(torch.unique(w_fq[0])) <= 15            # 4-bit narrow: at most 15 levels per channel
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    ref.backward(grad_out)
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert torch.allclose(conv.weight.grad, w_fq.grad)  # STE: d w_fq / d w = identity


def test_qconv2d_refuses_string_padding_and_bad_bits():
    with pytest.raises(ValueError, match="padding must be integers"):
        QConv2d(3, 4, 3, padding="same")
    with pytest.raises(ValueError, match="weight_bits must be an integer in 2…16"):
        QConv2d(3, 4, 3, weight_bits=1)


def test_qact_unsigned_range_and_levels():
    act = QAct(8).eval()
    act.clip.fill_(2.0)
    x = torch.linspace(-3, 5, 10001)
    y = act(x)
    q = y / act.scale
    assert torch.allclose(q, q.round(), atol=1e-4)
    assert float(y.min()) == 0 and float(y.max()) == pytest.approx(2.0)
    assert len(torch.unique(q.round())) == 256
    assert act.scale == pytest.approx(2.0 / 255)


def test_qact_signed_is_narrow():
    act = QAct(4, signed=True).eval()
    act.clip.fill_(1.4)
    y = act(torch.linspace(-10, 10, 1001))
    q = (y / act.scale).round()
    assert act.qrange == (-7, 7) and act.scale == pytest.approx(0.2)
    assert int(q.min()) == -7 and int(q.max()) == 7 and len(torch.unique(q)) == 15


def test_qrelu_is_unsigned_qact():
    act = QReLU(3)
    assert isinstance(act, QAct) and not act.signed and act.qrange == (0, 7)
    with pytest.raises(ValueError, match="bits must be an integer in 2…16 for a signed"):
        QAct(1, signed=True)


def test_qact_clip_is_an_ema_of_the_batch_max_in_training_and_fixed_in_eval():
    act = QAct(8, momentum=0.25)
    assert float(act.clip) == 1.0 and not bool(act.calibrated)
    act(torch.tensor([-9.0, 1.0, 3.0]))          # first batch sets the clip
    assert float(act.clip) == pytest.approx(3.0)
    act(torch.tensor([0.0, 7.0]))                 # then EMA: 0.75·3 + 0.25·7
    assert float(act.clip) == pytest.approx(4.0)
    act.eval()
    act(torch.tensor([100.0]))
    assert float(act.clip) == pytest.approx(4.0)
    signed = QAct(8, signed=True)
    signed(torch.tensor([-6.0, 2.0]))             # signed calibrates on |x|
    assert float(signed.clip) == pytest.approx(6.0)
    dead = QAct(8)
    dead(torch.tensor([-1.0, -2.0]))              # all negative: the clip floor keeps a positive scale
    assert float(dead.clip) == pytest.approx(MIN_CLIP) and dead.scale > 0


def test_qact_gradient_is_straight_through_inside_the_range_and_zero_outside():
    act = QAct(4).eval()
    act.clip.fill_(1.5)
    x = torch.tensor([-0.5, 0.03, 0.77, 1.2, 2.0], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_argmax_takes_the_first_maximum():
    x = torch.tensor([[1, 3, 3, 0], [5, 5, 5, 5]]).T.reshape(1, 4, 1, 2).float()
    assert ArgMax().eval()(x).tolist() == [[[[1, 0]]]]


def test_argmax_passes_logits_while_training():
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(ArgMax().train()(x), x)


def test_quantization_off_runs_float_and_is_restored():
    conv, act = QConv2d(2, 3, 3, padding=1), QAct(4)
    model = torch.nn.Sequential(conv, act).eval()
    act.clip.fill_(1.0)
    x = torch.randn(1, 2, 5, 5)
    with quantization(model, enabled=False):
        assert torch.equal(model(x), torch.relu(torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)))
    quantized = model(x)
    assert len(torch.unique(quantized)) <= 16  # back on the 4-bit grid
    assert conv.quantize and act.quantize

"""L1BatchNorm2d: statistics vs NumPy, running estimates, gradients, folding and exact lowering."""

import numpy as np
import pytest
import torch
from torch import nn

from hwseg.frontend import to_graph
from hwseg.golden import run_graph
from hwseg.ir import MulShift
from hwseg.quant import (ConvStep, L1BatchNorm2d, QAct, QConv2d, QReLU, QuantInput, RequantStep, calibrate,
                         integer_forward, lower_model)

from .random_models import random_images


def _np_l1bn(x, gamma, beta, eps):
    mean = x.mean(axis=(0, 2, 3))
    mad = np.abs(x - mean[None, :, None, None]).mean(axis=(0, 2, 3))
    y = (x - mean[None, :, None, None]) / (mad + eps)[None, :, None, None] * gamma[None, :, None, None] \
        + beta[None, :, None, None]
    return y, mean, mad


def test_training_statistics_and_output_match_numpy():
    torch.manual_seed(0)
    bn = L1BatchNorm2d(3, eps=1e-3, momentum=0.25).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 0.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 2.0
    y = bn(x)
    ref, mean, mad = _np_l1bn(x.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), 1e-3)
    assert np.allclose(y.detach().numpy(), ref, atol=1e-12)
    # running estimates: r ← 0.75·r + 0.25·batch, from mean 0 and MAD 1
    assert np.allclose(bn.running_mean.numpy(), 0.25 * mean)
    assert np.allclose(bn.running_mad.numpy(), 0.75 + 0.25 * mad)
    x2 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    bn(x2)
    _, mean2, mad2 = _np_l1bn(x2.numpy(), np.ones(3), np.zeros(3), 1e-3)
    assert np.allclose(bn.running_mean.numpy(), 0.75 * 0.25 * mean + 0.25 * mean2)
    assert np.allclose(bn.running_mad.numpy(), 0.75 * (0.75 + 0.25 * mad) + 0.25 * mad2)
    # eval: the per-channel affine map with the running estimates
    bn.eval()
    rm, rd = bn.running_mean.numpy(), bn.running_mad.numpy()
    g, b = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    ref_eval = (x2.numpy() - rm[None, :, None, None]) / (rd + 1e-3)[None, :, None, None] * g[None, :, None, None] \
        + b[None, :, None, None]
    assert np.allclose(bn(x2).detach().numpy(), ref_eval, atol=1e-12)
    a, off = bn.folded_affine()
    assert np.allclose(a, g / (rd + 1e-3)) and np.allclose(off, b - g / (rd + 1e-3) * rm)


def test_momentum_none_is_the_plain_average_of_the_batches():
    bn = L1BatchNorm2d(2, momentum=None).double()
    batches = [torch.randn(3, 2, 4, 4, dtype=torch.float64) * (i + 1) for i in range(3)]
    for x in batches:
        bn(x)
    stats = [_np_l1bn(x.numpy(), np.ones(2), np.zeros(2), 1e-5)[1:] for x in batches]
    assert np.allclose(bn.running_mean.numpy(), np.mean([m for m, _ in stats], axis=0))
    assert np.allclose(bn.running_mad.numpy(), np.mean([d for _, d in stats], axis=0))
    assert int(bn.num_batches_tracked) == 3


def test_calibrate_resets_and_averages_l1bn_statistics():
    model = nn.Sequential(QuantInput(), QConv2d(3, 2, 1, bias=False), L1BatchNorm2d(2, momentum=0.3), QReLU(8))
    model[2].running_mean.fill_(5.0)
    batches = [random_images(s, (3, 6, 6), 3) for s in range(3)]
    calibrate(model, batches)
    with torch.no_grad():
        convs = [model[1](model[0](x)).double().numpy() for x in batches]
    stats = [_np_l1bn(c, np.ones(2), np.zeros(2), 1e-5)[1:] for c in convs]
    assert np.allclose(model[2].running_mean.numpy(), np.mean([m for m, _ in stats], axis=0), rtol=1e-5)
    assert np.allclose(model[2].running_mad.numpy(), np.mean([d for _, d in stats], axis=0), rtol=1e-5)
    assert model[2].momentum == 0.3 and not model.training


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    bn = L1BatchNorm2d(2, eps=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.3, -0.7]))
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: bn(t), (x,), eps=1e-6, atol=1e-6)
    w = bn.weight.detach().clone().requires_grad_(True)
    b = bn.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w, b: torch.func.functional_call(bn, {"weight": w, "bias": b}, (x.detach(),)), (w, b),
        eps=1e-6, atol=1e-6)


def _chain(norm, gamma, seed=3, relu_act=True):
    torch.manual_seed(seed)
    model = nn.Sequential(QuantInput(), QConv2d(3, 4, 3, padding=1), norm,
                          QReLU(8) if relu_act else QAct(8, signed=True))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor(gamma))
        model[2].bias.copy_(torch.tensor([0.3, -0.2, 0.25, -0.1]))
    return calibrate(model, [random_images(s, (3, 12, 12), 4) for s in range(3)])


@pytest.mark.parametrize("relu_act", [True, False])
def test_l1bn_chain_lowers_like_the_batchnorm_chain(relu_act):
    model = _chain(L1BatchNorm2d(4, eps=1e-3), [1.0, -0.8, 0.0, 2.0], relu_act=relu_act)
    steps = lower_model(model).steps
    assert [type(s) for s in steps][1:] == [ConvStep, RequantStep]
    conv = steps[1].conv
    assert conv.constant.tolist() == [False, False, True, False]          # γ = 0: a constant channel
    assert steps[2].requant.multiplier[1] < 0                             # negative γ: negative M
    # the folded multipliers are a·s_in·s_w/s_out with a = γ/(MAD + eps) from the running MAD
    bn, act = model[2], model[3]
    s_w = model[1].weight.detach().double().abs().flatten(1).amax(1).numpy() / 127
    a = bn.weight.detach().double().numpy() / (bn.running_mad.double().numpy() + 1e-3)
    real = a * s_w / 255 / act.scale
    r = steps[2].requant
    live = [0, 1, 3]
    assert np.allclose(r.multiplier[live] / 2.0 ** r.shift, real[live], rtol=2e-4)
    # integer model vs float model codes, and the golden graph
    x = random_images(9, (3, 12, 12), 3)
    with torch.no_grad():
        codes = torch.round(model(x).double() / act.scale).long()
    got = integer_forward(model, x)
    assert float((got == codes).double().mean()) >= 0.95 and int((got - codes).abs().max()) <= 1
    graph = to_graph(model, (3, 12, 12))
    assert isinstance(graph[steps[2].name].op, MulShift)
    assert np.array_equal(run_graph(graph, x.numpy().astype(np.int64)), got.numpy())


def test_l1bn_in_integer_training_mode_uses_grid_statistics():
    bn = L1BatchNorm2d(3, stat_bits=16, param_bits=8).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 0.3, -2.2]))
        bn.bias.copy_(torch.tensor([0.01, -0.5, 0.33]))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64) * 3 + 1
    y = bn(x)
    _, mean, mad = _np_l1bn(x.numpy(), np.ones(3), np.zeros(3), 1e-5)

    def grid(v, bits):        # signed pow2 grid with the exponent from the max
        qmax = 2 ** (bits - 1) - 1
        e = int(np.ceil(np.log2(np.abs(v).max() / qmax)))
        e = e + 1 if np.abs(v).max() > qmax * 2.0 ** e else e
        return np.clip(np.rint(v / 2.0 ** e), -qmax, qmax) * 2.0 ** e

    g, b = grid(bn.weight.detach().numpy(), 8), grid(bn.bias.detach().numpy(), 8)
    mq, dq = grid(mean, 16), grid(mad, 16)
    ref = (x.numpy() - mq[None, :, None, None]) / (dq + 1e-5)[None, :, None, None] * g[None, :, None, None] \
        + b[None, :, None, None]
    assert np.allclose(y.detach().numpy(), ref, atol=1e-12)
    bn.eval()
    m, d, gg, bb = (t.detach().numpy() for t in bn.statistics())
    assert np.array_equal(m, grid(bn.running_mean.numpy(), 16)) and np.array_equal(d, grid(bn.running_mad.numpy(), 16))
    assert np.array_equal(gg, g) and np.array_equal(bb, b)

"""Integer-training mode: a tiny model trains on a toy problem and every weight, activation, error,
gradient and BN quantity it uses lies on its grid; the trained model lowers bit-exactly."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwseg.frontend import to_graph
from hwseg.golden import run_graph
from hwseg.quant import (L1BatchNorm2d, QAct, QConv2d, QReLU, QuantInput, integer_forward, integer_training,
                         on_pow2_grid)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def on_grid(t: torch.Tensor, bits: int) -> bool:
    """Independent check: every value is q·2^e, one integer e, integers |q| ≤ 2^(bits−1) − 1."""
    v = t.detach().double().numpy()
    peak = np.abs(v).max()
    if peak == 0:
        return True
    qmax = 2 ** (bits - 1) - 1
    for e in range(math.floor(math.log2(peak / qmax)) - 1, math.ceil(math.log2(peak / qmax)) + 2):
        q = v / 2.0 ** e
        if np.all(q == np.round(q)) and np.abs(q).max() <= qmax:
            return True
    return False


def _model():
    torch.manual_seed(0)
    return nn.Sequential(QuantInput(), QConv2d(3, 8, 3, padding=1), L1BatchNorm2d(8), QReLU(8),
                         QConv2d(8, 8, 3, padding=1, bias=False), L1BatchNorm2d(8), QReLU(6),
                         QConv2d(8, 2, 1), QAct(8, signed=True))


def _batch(gen):
    x = torch.randint(0, 256, (8, 3, 8, 8), generator=gen).float()
    return x, (x[:, 0] > x[:, 1]).long()              # per pixel: is red brighter than green?


def test_integer_training_trains_and_everything_lies_on_its_grid():
    model = _model()
    seen = {"errors": [], "convs": [], "acts": []}

    def record(module, args, out):
        if isinstance(module, QConv2d):
            seen["convs"].append((module, args[0].detach(), out.detach()))
        if isinstance(module, QAct):
            seen["acts"].append((module, out.detach()))
        if out.requires_grad:
            out.register_hook(lambda g: seen["errors"].append(g.detach()))

    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    with integer_training(model) as it:
        hooks = [m.register_forward_hook(record) for m in model if not isinstance(m, QuantInput)]
        for step in range(30):
            x, y = _batch(gen)
            opt.zero_grad()
            for key in seen:
                seen[key].clear()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
            if step % 10 == 0 or step == 29:
                # errors: the gradient arriving at every layer's output
                assert len(seen["errors"]) == 8
                assert all(on_grid(g, 8) for g in seen["errors"])
                # weight gradients, incl. BN γ/β
                for name, p in model.named_parameters():
                    assert on_grid(p.grad, 8), name
                # the weights the convolutions used: clamp(round(w·2^7), ±127)·2^−7; biases on 8-bit grids
                for conv, inp, out in seen["convs"]:
                    w_ref = torch.clamp(torch.round(conv.weight.detach() * 128), -127, 127) / 128
                    bias = conv.effective_bias()
                    assert bias is None or on_grid(bias, 8)
                    ref = F.conv2d(inp, w_ref, None if bias is None else bias.detach(), padding=conv.padding)
                    assert torch.allclose(out, ref, atol=1e-5)
                # activations: integers times a power-of-two scale
                for act, out in seen["acts"]:
                    assert math.log2(act.scale) == round(math.log2(act.scale))
                    q = out.double() / act.scale
                    assert torch.equal(q, torch.round(q)) and q.abs().max() <= 255
                # BN: statistics 16-bit, γ/β 8-bit
                for m in model:
                    if isinstance(m, L1BatchNorm2d):
                        mean, mad, gamma, beta = m.statistics()
                        assert on_grid(mean, 16) and on_grid(mad, 16) and on_grid(gamma, 8) and on_grid(beta, 8)
            opt.step()
        for h in hooks:
            h.remove()
    assert not it.handles
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)

    # the hooks are gone: gradients are no longer quantized
    x, y = _batch(gen)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert not all(on_grid(p.grad, 8) for p in model.parameters())

    # the trained model folds exactly (golden graph = integer_forward) and agrees with its float self
    model.eval()
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=gen).float()
    graph = to_graph(model, (3, 8, 8))
    ours = integer_forward(model, x)
    assert np.array_equal(run_graph(graph, x.numpy().astype(np.int64)), ours.numpy())
    with torch.no_grad():
        codes = torch.round(model(x).double() / model[8].scale).long()
    assert float(((ours - codes).abs() <= 1).double().mean()) >= 0.98
    w_int = graph["n1"].op.weight
    assert np.array_equal(w_int, torch.clamp(torch.round(model[1].weight.detach().double() * 128), -127, 127).numpy())


def test_integer_training_configures_layers_and_refuses_plain_batchnorm():
    model = _model()
    with integer_training(model) as it:
        assert model[1].weight_quant == "pow2" and model[1].weight_exponent == -7 and model[1].bias_bits == 8
        assert model[4].bias_bits is None and model[3].pow2 and model[2].stat_bits == 16
        it.snap_weights_()
        assert on_pow2_grid(model[1].weight, 8)
        w = model[1].weight.detach().double().numpy()
        assert np.array_equal(w * 128, np.round(w * 128)) and np.abs(w).max() <= 127 / 128
    with pytest.raises(ValueError, match=r"layer '2' is a BatchNorm2d: integer training normalizes with"):
        integer_training(nn.Sequential(QuantInput(), QConv2d(3, 2, 1), nn.BatchNorm2d(2), QReLU()))
    with pytest.raises(ValueError, match="quantizes to 12 bits"):
        integer_training(nn.Sequential(QuantInput(), QConv2d(3, 2, 1), QReLU(12)))


def test_on_pow2_grid():
    assert on_pow2_grid(torch.tensor([0.5, -0.25, 127 * 2.0 ** -3]), 8)
    assert not on_pow2_grid(torch.tensor([0.5, 0.3]), 8)
    assert not on_pow2_grid(torch.tensor([255.0, 1.0]), 8)       # needs 9 bits at step 1, loses 1 at step 2

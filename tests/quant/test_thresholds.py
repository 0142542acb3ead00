"""Threshold folding (BFCN path): equivalence with the float layer, negative γ, γ = 0, ties, and
exact lowering (golden Graph vs integer_forward) of random low-bit models."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from hwseg.errors import UnsupportedError
from hwseg.frontend.convert import program_to_nodes
from hwseg.golden import run_graph
from hwseg.ir import Bipolar, Conv2d, Graph, MulShift, Threshold, UInt
from hwseg.quant import (ConvStep, L1BatchNorm2d, QAct, QConv2d, QReLU, QuantInput, ThresholdStep, calibrate,
                         fold_thresholds, integer_forward, lower_model, threshold_levels)

from .random_models import random_images, random_model

IN_SCALE, IN_RANGE = 1.0 / 15, (0, 15)        # the layer reads a 4-bit activation


def _weight_scale_ref(w: np.ndarray, mode: str, bits: int) -> np.ndarray:
    """s_w per output channel, written out from the quantizer definitions."""
    qmax = 2 ** (bits - 1) - 1
    if mode == "binary":
        return np.full(w.shape[0], np.abs(w).mean())
    if mode == "pow2":
        e = math.ceil(math.log2(np.abs(w).max() / qmax))
        e = e + 1 if np.abs(w).max() > qmax * 2.0 ** e else e
        return np.full(w.shape[0], 2.0 ** e)
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1) / qmax


def _layer(norm: str, mode: str, act, gamma, seed: int):
    torch.manual_seed(seed)
    conv = QConv2d(5, 6, 3, weight_bits=1 if mode == "binary" else 3, weight_quant=mode, bias=True)
    bn = None
    if norm != "none":
        bn = nn.BatchNorm2d(6) if norm == "bn" else L1BatchNorm2d(6, eps=1e-3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor(gamma))
            bn.bias.uniform_(-0.6, 0.6)
            bn.bias[5] = 40.0                     # saturated whatever the input: thresholds clamp to −B − 1
            bn.running_mean.uniform_(-0.3, 0.3)
            (bn.running_var if norm == "bn" else bn.running_mad).uniform_(0.05, 0.4)
    return conv, bn.eval().double() if bn is not None else None, act.double().eval()


CASES = [("bn", "int", "relu2"), ("l1bn", "binary", "relu1"), ("l1bn", "pow2", "relu4"),
         ("bn", "binary", "signed3"), ("none", "int", "relu3"), ("l1bn", "int", "relu2")]


@pytest.mark.parametrize("norm, mode, kind", CASES)
def test_thresholds_reproduce_the_float_layer_on_random_accumulators(norm, mode, kind):
    seed = CASES.index((norm, mode, kind))
    bits = int(kind[-1])
    relu = kind.startswith("signed")
    act = QAct(bits, signed=True, clip=0.9) if relu else QReLU(bits, clip=0.7)
    gamma = [1.2, -0.8, 0.0, 2.5, -3.0, 0.6]                 # negative and zero scales
    conv, bn, act = _layer(norm, mode, act, gamma, seed)
    folded = fold_thresholds("layer", conv, bn, act, IN_SCALE, IN_RANGE, relu=relu)
    t = folded.requant.thresholds
    levels = act.qrange[1]
    assert t.shape == (6, levels) and np.all(np.diff(t, axis=1) >= 0)  # ascending
    assert not folded.bias.any()

    w = conv.weight.detach().double().numpy()
    s_w = _weight_scale_ref(w, mode, conv.weight_bits)
    w_int = folded.weight * np.where(folded.requant.flipped, -1, 1)[:, None, None, None]
    bound = np.abs(folded.weight).reshape(6, -1).sum(1) * 15
    assert np.all(np.abs(t) <= bound[:, None] + 1)                      # as narrow as the accumulator
    if norm != "none":
        # a negative BN scale negates the channel's weights (thresholds stay ascending)
        assert folded.requant.flipped.tolist() == [g < 0 for g in gamma]

    # random accumulators, including the extremes; the float layer in float64
    rng = np.random.default_rng(seed)
    # random accumulators, the extremes, and every threshold's neighbours T − 1, T, T + 1 (in the
    # accumulator's own sign), where a wrong threshold would show
    sign = np.where(folded.requant.flipped, -1, 1)
    edges = np.clip(np.concatenate([t - 1, t, t + 1], axis=1).T * sign, -bound, bound)
    acc = np.concatenate([[-bound, bound], edges, rng.integers(-bound, bound + 1, size=(4000, 6))])
    count = acc.shape[0]
    conv_out = torch.from_numpy(acc * IN_SCALE * s_w + conv.bias.detach().double().numpy())
    z = conv_out.view(count, 6, 1, 1)
    if bn is not None:
        with torch.no_grad():
            z = bn(z)
    if relu:
        z = torch.relu(z)
    ref = torch.round(act(z) / act.scale).view(count, 6).detach().numpy()
    # the threshold unit on the (possibly negated) accumulator
    signed_acc = acc * sign
    got = (signed_acc[:, :, None] >= t[None]).sum(axis=2)
    v = z.view(count, 6).detach().numpy() / act.scale
    tie = np.abs(v - np.floor(v) - 0.5) < 1e-9
    assert np.array_equal(got[~tie], ref[~tie])
    assert np.all(np.abs(got - ref)[tie] <= 1)
    # the fold's weights are the conv's integer weights, up to the flips
    if mode == "binary":
        assert np.array_equal(np.abs(w_int), np.ones_like(w_int)) and folded.bipolar
    elif norm != "none":
        live = np.array(gamma) != 0
        assert np.allclose(w_int[live] * s_w[live, None, None, None], w[live], atol=s_w.max() / 2 + 1e-12) \
            or mode == "pow2"
    # γ = 0 (channel 2, with a norm): a constant output, thresholds beyond the accumulator range
    if norm != "none":
        assert np.all(t[5] == -bound[5] - 1) and np.all(got[:, 5] == levels)
        q = np.clip(np.rint(float(bn.bias[2].detach()) / act.scale), 0, levels)
        assert np.all(got[:, 2] == q)
        assert set(t[2].tolist()) <= {-bound[2] - 1, bound[2] + 1}
        assert int((t[2] == -bound[2] - 1).sum()) == q


def test_ties_round_half_up_and_everything_else_matches_round():
    acc = np.arange(-10, 11)
    for unit, offset in ((0.5, 0.0), (-0.5, 1.0), (0.25, 0.5), (-0.75, 0.5)):
        t, flipped = threshold_levels(np.array([unit]), np.array([offset]), 1.0, 3, np.array([10]))
        a = -acc if flipped[0] else acc
        got = (a[:, None] >= t[0][None]).sum(1)
        z = unit * acc + offset
        assert np.array_equal(got, np.clip(np.floor(z + 0.5), 0, 3))          # half up, as MulShift
        ties = (z - np.floor(z)) == 0.5
        assert ties.any() and np.array_equal(got[~ties], np.clip(np.rint(z), 0, 3)[~ties])
        assert flipped[0] == (unit < 0)
    # a constant channel: q = round(offset) thresholds at −B−1, the rest at B+1
    t, _ = threshold_levels(np.array([0.0]), np.array([1.6]), 1.0, 3, np.array([7]))
    assert t.tolist() == [[-8, -8, 8]]


def test_signed_activation_without_relu_is_not_threshold_folded():
    conv, bn, act = _layer("bn", "int", QAct(3, signed=True, clip=1.0), [1.0] * 6, 0)
    with pytest.raises(UnsupportedError, match="signed activation without a ReLU cannot be folded into thresholds"):
        fold_thresholds("layer", conv, bn, act, IN_SCALE, IN_RANGE)


def _bfcn(seed: int):
    """A small 1-2 BFCN-style model: 8-bit first and last layers, binary weights and 1–3-bit
    activations in between, BN or L1BN with random (negative, zero) γ."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    c1, c2 = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    a_bits = [int(rng.integers(1, 3)), int(rng.integers(1, 4))]
    norm = (lambda c: L1BatchNorm2d(c)) if rng.random() < 0.5 else (lambda c: nn.BatchNorm2d(c))
    model = nn.Sequential(
        QuantInput(),
        QConv2d(3, c1, 3, padding=1), nn.BatchNorm2d(c1), QReLU(a_bits[0]),
        QConv2d(c1, c2, 3, padding=int(rng.integers(0, 3)), dilation=int(rng.integers(1, 3)), weight_quant="binary"),
        norm(c2), QReLU(a_bits[1]),
        nn.MaxPool2d(2),
        QConv2d(c2, c2, 3, padding=1, bias=False, weight_quant="binary"), L1BatchNorm2d(c2), nn.ReLU(),
        QAct(3, signed=True),
        QConv2d(c2, 3, 1), QAct(8, signed=True),
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, L1BatchNorm2d)):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.weight[int(rng.integers(m.num_features))] = 0.0 if rng.random() < 0.5 else m.weight[0]
    shape = (3, 14, 14)
    return calibrate(model, [random_images(seed + i, shape, 4) for i in range(3)]), shape


def _graph(model, shape, threshold_bits):
    program = lower_model(model, shape[0], threshold_bits=threshold_bits)
    return Graph(program_to_nodes(program, shape), output=program.output), program


def _assert_exact(model, shape, x, threshold_bits=4):
    graph, program = _graph(model, shape, threshold_bits)
    golden = run_graph(graph, x.numpy().astype(np.int64), keep=True)
    ours = integer_forward(model, x, all_outputs=True, threshold_bits=threshold_bits)
    assert list(golden) == list(ours)
    for name in golden:
        assert np.array_equal(golden[name], ours[name].numpy()), f"node {name!r} differs"
    return graph, program, ours


@pytest.mark.parametrize("seed", range(4))
def test_random_bfcn_models_lower_to_threshold_graphs_bit_exactly(seed):
    model, shape = _bfcn(seed)
    x = random_images(100 + seed, shape, 2)
    graph, program, ours = _assert_exact(model, shape, x)
    kinds = [type(n.op) for n in graph]
    assert kinds.count(Threshold) == 3 and kinds.count(MulShift) == 1
    convs = [n for n in graph if isinstance(n.op, Conv2d)]
    assert [isinstance(n.op.weight_type, Bipolar) for n in convs] == [False, True, True, False]
    assert graph.types[graph.nodes[2].name].dtype == UInt(model[3].bits)
    # the first threshold layer reads the exact image: it equals the float QAT model's codes except on ties
    codes = {}
    hook = model[3].register_forward_hook(lambda m, i, o: codes.__setitem__("a", torch.round(o.double() / m.scale)))
    with torch.no_grad():
        model(x)
    hook.remove()
    step = next(s for s in program if s.module == "3")
    assert isinstance(step, ThresholdStep)
    assert float((ours[step.name] == codes["a"].long()).double().mean()) >= 0.995


@pytest.mark.parametrize("seed", range(12))
def test_random_models_with_threshold_folding_are_bit_exact(seed):
    model, shape = random_model(seed)
    _assert_exact(model, shape, random_images(seed + 50, shape, 2))


def test_threshold_bits_chooses_which_layers_fold():
    model, shape = _bfcn(0)
    kinds = lambda bits: [type(s).__name__ for s in lower_model(model, 3, threshold_bits=bits)]   # noqa: E731
    assert "ThresholdStep" not in kinds(0)
    assert kinds(4).count("ThresholdStep") == 3
    assert kinds(1).count("ThresholdStep") == sum(m.qrange == (0, 1) for m in model if isinstance(m, QReLU))
    with pytest.raises(ValueError, match="threshold_bits must be an integer in 0…16"):
        lower_model(model, 3, threshold_bits=-1)
    assert isinstance(next(iter(lower_model(model, 3, threshold_bits=4).steps[1:])), ConvStep)

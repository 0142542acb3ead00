"""The QAT layers for DAG models: QConvTranspose2d, tied QAct scales (share= / tie_scale), QAvgPool2d and
QUpsample; and the sequential layer table's new entries."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwseg.errors import CheckpointError
from hwseg.models import build_model
from hwseg.quant import (QAct, QAvgPool2d, QConvTranspose2d, QReLU, QUpsample, calibrate, integer_forward,
                         integer_training, quantization, tie_scale)
from hwseg.quant.layers import in_major, out_major


def test_out_major_and_in_major_are_inverse_layouts():
    w = torch.arange(6 * 4 * 2 * 3, dtype=torch.float64).reshape(6, 4, 2, 3)   # C_in 6, C_out/G 4, groups 2
    om = out_major(w, 2)
    assert om.shape == (8, 3, 2, 3)
    # output channel o = g·4 + j holds weight[g·3 + i, j] for its group's inputs i
    assert torch.equal(om[5, 1], w[3 + 1, 1]) and torch.equal(om[2, 0], w[0, 2])
    assert torch.equal(in_major(om, 2), w)


@pytest.mark.parametrize("mode, groups", [("int", 1), ("int", 2), ("pow2", 2), ("binary", 1)])
def test_qconvtranspose2d_quantizes_per_output_channel_and_convolves_like_torch(mode, groups):
    torch.manual_seed(0)
    layer = QConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=groups, weight_quant=mode,
                             weight_bits=1 if mode == "binary" else 6)
    w_int, scale = layer.quantized_weight()
    assert w_int.shape == layer.weight.shape and scale.shape == (6,)
    om, om_scale = layer.quantized_weight(out_major_layout=True)
    assert torch.equal(in_major(om, groups), w_int) and torch.equal(om_scale, scale)
    if mode == "int":      # every output channel's largest weight maps to ±31
        assert torch.equal(om.abs().reshape(6, -1).amax(dim=1), torch.full((6,), 31))
    grid = in_major(om.double() * om_scale.view(-1, 1, 1, 1), groups).float()
    x = torch.randn(2, 4, 5, 3, requires_grad=True)
    y = layer(x)
    expected = F.conv_transpose2d(x, grid, layer.bias, 2, 1, 1, groups)
    assert y.shape == (2, 6, 10, 6) and torch.allclose(y, expected, atol=1e-5)
    y.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0      # straight through
    with quantization(layer, False):
        assert torch.allclose(layer(x), F.conv_transpose2d(x, layer.weight, layer.bias, 2, 1, 1, groups))
    assert "weight_quant" in repr(layer) or mode == "int"


def test_qconvtranspose2d_refuses_what_it_cannot_quantize():
    with pytest.raises(ValueError, match=r"^QConvTranspose2d weight_quant must be one of 'int', 'pow2', 'binary'"):
        QConvTranspose2d(2, 2, 2, weight_quant="ternary")
    with pytest.raises(ValueError, match=r"^QConvTranspose2d takes no output_size"):
        QConvTranspose2d(2, 2, 2, stride=2)(torch.zeros(1, 2, 3, 3), output_size=(7, 7))


def test_a_tied_qact_uses_its_leaders_scale_and_its_own_range():
    leader = QReLU(8)
    follower = QAct(9, signed=True, share=leader)
    assert follower.clip_mode == "tied" and follower.tied_to is leader and follower.qrange == (-255, 255)
    model = nn.Sequential(leader, follower)
    calibrate(model, [torch.rand(4, 3, 5, 5) * 3])
    assert 2.5 < float(leader.clip) <= 3 and follower.scale == leader.scale
    assert not bool(follower.calibrated)                                    # it never observes
    x = torch.linspace(-5, 5, 101)
    s = leader.scale
    assert torch.equal(follower(x), torch.round(x.clamp(-255 * s, 255 * s) / s) * s)
    leader.clip.fill_(1.0)                                                  # follows the leader
    assert follower.scale == 1 / 255
    pow2 = QAct(8, pow2=True, clip=0.3)
    assert tie_scale(QAct(4), pow2).scale == pow2.scale == 2 ** -9
    assert "scale tied" in repr(follower)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]          # the leader is no submodule of it


def test_bad_ties_are_refused():
    a, b = QAct(8), QAct(8)
    tie_scale(b, a)
    with pytest.raises(ValueError, match=r"^tie_scale would tie a QAct to itself"):
        tie_scale(a, b)
    with pytest.raises(ValueError, match=r"^a QAct with share= takes its scale from the shared QAct; give it no clip"):
        QAct(8, clip=2.0, share=a)
    with pytest.raises(ValueError, match=r"^QAct share must be another QAct, not ReLU"):
        QAct(8, share=nn.ReLU())


def test_integer_training_leaves_tied_qacts_tied_and_takes_transposed_convs():
    leader = QAct(8)
    model = nn.Sequential(QConvTranspose2d(2, 2, 2, stride=2), leader, QAct(8, share=leader))
    with integer_training(model):
        assert model[0].weight_quant == "pow2" and model[0].weight_exponent == -7
        assert leader.pow2 and model[2].tied_to is leader and model[2].scale == leader.scale
    binary = nn.Sequential(QConvTranspose2d(2, 2, 2, weight_quant="binary"))
    with pytest.raises(ValueError, match=r"^layer '0' has binary weights"):
        integer_training(binary)


def test_qavgpool_and_qupsample_round_half_up_on_their_grid():
    grid = QAct(8, signed=True, clip=1.27)                                 # scale 0.01
    q = torch.tensor([[[[1., 2.], [0., 0.]], [[-1., -2.], [0., 0.]]]])     # sums 3 and −3: 0.75, −0.75
    pool = QAvgPool2d(2, grid=grid)
    out = pool(q * grid.scale) / grid.scale
    assert torch.allclose(out.flatten(), torch.tensor([1., -1.]), atol=1e-6)   # (3 + 2) >> 2, (−3 + 2) >> 2
    assert torch.allclose(nn.AvgPool2d(2)(q * grid.scale).flatten() / grid.scale, torch.tensor([.75, -.75]))
    up = QUpsample(2, "bilinear", grid=grid)
    row = torch.tensor([[[[0., 1.]]]])                    # ×2: 0, .25, .75, 1 → rounded half up: 0, 0, 1, 1
    assert torch.allclose(up(row * grid.scale)[0, 0, 0] / grid.scale, torch.tensor([0., 0., 1., 1.]), atol=1e-6)
    with quantization(up, False):
        assert torch.allclose(up(row)[0, 0, 0], torch.tensor([0., .25, .75, 1.]))
    with pytest.raises(ValueError, match=r"^QAvgPool2d averages a power-of-two number of elements, not 3×2"):
        QAvgPool2d((3, 2))
    with pytest.raises(ValueError, match=r"^QUpsample grid must be the QAct \(or QuantInput\) whose output it reads"):
        QUpsample(2, "bilinear", grid=nn.ReLU())


def test_sequential_table_builds_the_new_layers_and_options():
    layers = [
        {"type": "QuantInput"},
        {"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1, "weight_quant": "pow2",
         "weight_exponent": -7, "bias": False},
        {"type": "L1BatchNorm2d", "channels": 4, "stat_bits": 16, "param_bits": 8},
        {"type": "QReLU", "bits": 8, "pow2": True},
        {"type": "QConvTranspose2d", "in": 4, "out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1,
         "weight_quant": "binary", "weight_bits": 1},
        {"type": "BatchNorm2d", "channels": 4},
        {"type": "QAct", "bits": 2, "clip": 1.0},
        {"type": "AvgPool2d", "kernel": 2},
        {"type": "Upsample", "scale_factor": 2, "mode": "bilinear"},
        {"type": "Dropout", "p": 0.1},
        {"type": "QConv2d", "in": 4, "out": 3, "kernel": 1, "bias_bits": 8},
        {"type": "QAct", "bits": 8, "signed": True, "learn_clip": True},
        {"type": "ArgMax"},
    ]
    model = build_model("sequential", {"layers": layers})
    assert model[1].weight_quant == "pow2" and model[1].weight_exponent == -7 and model[2].stat_bits == 16
    assert model[3].pow2 and model[4].weight_quant == "binary" and model[4].output_padding == (1, 1)
    assert model[6].clip_mode == "fixed" and model[10].bias_bits == 8 and model[11].clip_mode == "learned"
    calibrate(model, [torch.randint(0, 256, (2, 3, 8, 8)).float()])
    assert integer_forward(model, torch.randint(0, 256, (1, 3, 8, 8))).shape == (1, 1, 16, 16)
    with pytest.raises(CheckpointError, match=r"^layer 1 \(QConv2d\): field 'weight_bits' must be an integer in "
                                              r"2…16, not 1 \(1 only with weight_quant 'binary'\)"):
        build_model("sequential", {"layers": [{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3},
                                              {"type": "QConv2d", "in": 4, "out": 4, "kernel": 3, "weight_bits": 1}]})
    with pytest.raises(CheckpointError, match=r"^layer 0 \(QConv2d\): field 'weight_exponent' is for weight_quant "
                                              r"'pow2' only"):
        build_model("sequential", {"layers": [{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3,
                                               "weight_exponent": -7}]})
    with pytest.raises(CheckpointError, match=r"^layer 0 \(Dropout\): field 'p' must be a number in \[0, 1\), not 1"):
        build_model("sequential", {"layers": [{"type": "Dropout", "p": 1}]})
    assert math.isclose(build_model("sequential", {"layers": [{"type": "QAct", "clip": 2}]})[0].scale, 2 / 255)


def test_a_deep_copy_keeps_its_ties_inside_the_copy():
    import copy

    leader = QReLU(8)
    model = nn.Sequential(leader, QAct(9, signed=True, share=leader))
    clone = copy.deepcopy(model)
    assert clone[1].tied_to is clone[0] and clone[1].tied_to is not leader
    clone[0].clip.fill_(5.0)
    assert clone[1].scale == 5.0 / 255 and model[1].scale == leader.scale

"""Integer folding vs the float QAT model, shift selection, constant channels, integer_forward."""

import numpy as np
import pytest
import torch

from hwseg.errors import UnsupportedError
from hwseg.models import build_model
from hwseg.quant import (ConvStep, QAct, RequantStep, calibrate, choose_shift, integer_forward, lower_model)
from hwseg.quant.fold import MAX_SHIFT, MULTIPLIER_MAX

from .random_models import random_images, random_model


def _float_codes(model, x):
    """The float QAT model's QAct outputs divided by their scales: {module name: int64 codes}."""
    codes, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, QAct):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: codes.__setitem__(name, torch.round(o.double() / m.scale).long())))
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return codes, out


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = build_model("int8_tiny", {})
    g = torch.Generator().manual_seed(seed)
    return calibrate(model, [torch.randint(0, 256, (8, 3, 32, 32), generator=g).float() for _ in range(4)]), (3, 32, 32)


@pytest.mark.parametrize("which", ["int8_tiny", 0, 1, 2, 3, 4, 5])
def test_integer_model_matches_float_qat_model_within_a_step(which):
    model, shape = _tiny() if which == "int8_tiny" else random_model(which, min_bits=8)
    x = random_images(1000 + (0 if which == "int8_tiny" else which), shape, 6)
    codes, float_out = _float_codes(model, x)
    ints = integer_forward(model, x, all_outputs=True)
    names = {s.module: s.name for s in lower_model(model, shape[0])}
    live = [m for m in codes if float((ints[names[m]] != 0).double().mean()) > 0.1]
    assert live, "every quantized activation is (nearly) all zero: the comparison would be vacuous"
    for module, code in codes.items():
        got = ints[names[module]]
        diff = (got - code).abs()
        assert float((diff == 0).double().mean()) >= 0.9, f"{module}: integer and float models disagree"
        assert float((diff <= 1).double().mean()) >= 0.98, f"{module}: off by more than one step"
    if which == "int8_tiny":
        assert float((ints["argmax"] == float_out).double().mean()) >= 0.9


def _single_layer(gamma, weight_rows_zero=(), signed=True, relu=False):
    layers = [{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1},
              {"type": "BatchNorm2d", "channels": 4}]
    if relu:
        layers.append({"type": "ReLU"})
    layers.append({"type": "QAct", "bits": 8, "signed": signed})
    torch.manual_seed(3)
    model = build_model("sequential", {"layers": layers})
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor(gamma))
        model[2].bias.copy_(torch.tensor([0.3, -0.4, 0.25, -0.1]))
        for r in weight_rows_zero:
            model[1].weight[r] = 0
    return calibrate(model, [random_images(s, (3, 12, 12), 4) for s in range(3)])


def test_constant_channels_zero_gamma_and_zero_weights_are_exact():
    model = _single_layer([1.0, 0.0, -0.7, 0.9], weight_rows_zero=(2,))
    x = random_images(7, (3, 12, 12), 3)
    codes, _ = _float_codes(model, x)
    ints = integer_forward(model, x, all_outputs=True)
    conv = next(s for s in lower_model(model) if isinstance(s, ConvStep)).conv
    assert conv.constant.tolist() == [False, True, True, False]
    assert not conv.weight[1].any() and not conv.weight[2].any()
    for c in (1, 2):                       # constant channels equal the float model exactly
        assert torch.equal(ints["n3"][:, c], codes["3"][:, c])
        assert len(torch.unique(ints["n3"][:, c])) == 1
    # γ = 0: the channel is β = −0.4 quantized
    assert int(ints["n3"][0, 1, 0, 0]) == max(-127, min(127, round(-0.4 / model[3].scale)))


def test_a_collapsed_bn_scale_folds_to_a_constant_not_a_huge_bias():
    # γ ≈ 1e-25: the bias alone would be ~1e23 accumulator steps (beyond exact float64); the channel's
    # whole input range maps to one output, so it folds as a constant and exports exactly.
    model = _single_layer([1.0, 1e-25, -1e-22, 0.9])
    x = random_images(11, (3, 12, 12), 3)
    codes, _ = _float_codes(model, x)
    conv = next(s for s in lower_model(model) if isinstance(s, ConvStep)).conv
    assert conv.constant.tolist() == [False, True, True, False]
    assert int(np.abs(conv.bias).max()) < 1 << 40
    ints = integer_forward(model, x, all_outputs=True)
    for c in (1, 2):
        assert torch.equal(ints["n3"][:, c], codes["3"][:, c])
    assert float((ints["n3"] == codes["3"]).double().mean()) >= 0.95


def test_negative_bn_scale_gives_negative_multipliers_and_still_matches():
    model = _single_layer([-1.0, -0.5, -2.0, 0.8])
    requant = next(s for s in lower_model(model) if isinstance(s, RequantStep)).requant
    assert (requant.multiplier[:3] < 0).all() and requant.multiplier[3] > 0
    x = random_images(8, (3, 12, 12), 3)
    codes, _ = _float_codes(model, x)
    got = integer_forward(model, x, all_outputs=True)["n3"]
    assert float((got == codes["3"]).double().mean()) >= 0.95


def test_relu_between_bn_and_signed_qact_folds_into_lo():
    model = _single_layer([1.0, 0.5, 2.0, 0.8], relu=True)
    requant = next(s for s in lower_model(model) if isinstance(s, RequantStep)).requant
    assert (requant.lo, requant.hi) == (0, 127)
    x = random_images(9, (3, 12, 12), 2)
    codes, _ = _float_codes(model, x)
    got = integer_forward(model, x, all_outputs=True)["n4"]
    assert int(got.min()) == 0 and float((got == codes["4"]).double().mean()) >= 0.95


@pytest.mark.parametrize("real", [[1e-5, -3e-6, 2.5e-5], [0.7, 0.01], [300.0, -12.0], [1e-19]])
def test_choose_shift_uses_the_largest_shift_that_fits_16_bits(real):
    m, s = choose_shift(np.array(real), "layer")
    assert 0 <= s <= MAX_SHIFT and np.abs(m).max() <= MULTIPLIER_MAX
    if s < MAX_SHIFT:   # one more bit would overflow
        assert np.abs(np.rint(np.ldexp(np.array(real), s + 1))).max() > MULTIPLIER_MAX
    assert np.allclose(m / 2.0 ** s, real, rtol=2.0 ** -14, atol=2.0 ** -s)


def test_choose_shift_refuses_a_multiplier_beyond_16_bits():
    with pytest.raises(UnsupportedError, match=r"layer 'conv9': its requantization multiplier 4e\+04 does not fit 16"):
        choose_shift(np.array([40000.0]), "conv9")


def test_every_multiplier_fits_16_signed_bits():
    for seed in range(6):
        model, shape = random_model(seed)
        for step in lower_model(model, shape[0]):
            if isinstance(step, RequantStep):
                assert np.abs(step.requant.multiplier).max() <= MULTIPLIER_MAX and step.requant.shift >= 0


def test_integer_forward_takes_frames_and_checks_pixels():
    model, shape = _tiny()
    x = random_images(5, shape, 2)
    batch = integer_forward(model, x)
    assert batch.shape == (2, 1, 8, 8) and batch.dtype == torch.int64
    assert torch.equal(integer_forward(model, x[1]), batch[1])
    assert torch.equal(integer_forward(model, x.to(torch.uint8)), batch)
    with pytest.raises(ValueError, match="integer pixel values"):
        integer_forward(model, x + 0.5)
    with pytest.raises(ValueError, match=r"pixel values must lie in 0…255, not 0…256"):
        integer_forward(model, x.clamp(max=255) + (x == x.max()).float())

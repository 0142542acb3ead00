"""The architecture registry, the sequential layer table and the bundled int8_tiny example."""

from pathlib import Path

import pytest
import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.frontend import load_checkpoint, to_graph
from hwseg.models import ARCHITECTURES, LAYER_TYPES, build_model, normalize_layers
from hwseg.quant import QAct, QConv2d, QReLU, QuantInput, integer_forward

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_registry_and_layer_table():
    assert {"sequential", "int8_tiny", "bfcn", "int_fcn", "erfnet", "fpl"} <= set(ARCHITECTURES)
    assert {"QuantInput", "QConv2d", "QConvTranspose2d", "BatchNorm2d", "L1BatchNorm2d", "QReLU", "QAct", "MaxPool2d",
            "ArgMax", "Conv2d", "ReLU", "Upsample", "AvgPool2d", "Dropout", "Sigmoid"} <= set(LAYER_TYPES)
    with pytest.raises(CheckpointError, match=r"^unknown architecture 'vgg'; known architectures: bfcn, erfnet, "
                                              r"fpl, int8_tiny, int_fcn, sequential"):
        build_model("vgg", {})


def test_int8_tiny_structure():
    model = build_model("int8_tiny", {})
    assert model.input_shape == (3, 32, 32)
    assert [name for name, _ in model.named_children()] == [
        "input", "conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "pool", "classifier",
        "logits", "argmax"]
    assert isinstance(model.input, QuantInput) and isinstance(model.act1, QReLU)
    assert (model.conv2.stride, model.conv3.dilation, model.conv3.padding) == ((2, 2), (2, 2), (2, 2))
    assert model.classifier.out_channels == 4 and model.classifier.bias is not None
    assert model.logits.signed and model.logits.bits == 8
    out = model.eval()(torch.randint(0, 256, (2, 3, 32, 32)).float())
    assert out.shape == (2, 1, 8, 8) and out.dtype == torch.int64
    wide = build_model("int8_tiny", {"classes": 6, "width": 2, "input_size": 24})
    assert wide.conv3.in_channels == 4 and wide.classifier.out_channels == 6 and wide.input_shape == (3, 24, 24)


def test_sequential_builds_from_data_with_defaults_and_names():
    spec = normalize_layers([{"type": "QuantInput"},
                             {"type": "QConv2d", "in": 3, "out": 8, "kernel": [3, 1], "padding": [1, 0]},
                             {"type": "BatchNorm2d", "channels": 8, "name": "bn"},
                             {"type": "QAct", "bits": 4, "signed": True}])
    assert spec[1] == {"type": "QConv2d", "name": "1", "in": 3, "out": 8, "kernel": [3, 1], "stride": 1,
                       "padding": [1, 0], "dilation": 1, "groups": 1, "bias": True, "weight_bits": 8,
                       "weight_quant": "int", "weight_exponent": None, "bias_bits": None}
    model = build_model("sequential", {"layers": spec})
    assert isinstance(model[1], QConv2d) and model[1].kernel_size == (3, 1) and isinstance(model.bn, nn.BatchNorm2d)
    assert isinstance(model[3], QAct) and model[3].qrange == (-7, 7)


def test_float_and_not_yet_lowerable_layers_build_and_run():
    model = build_model("sequential", {"layers": [
        {"type": "QuantInput"}, {"type": "Conv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1}, {"type": "ReLU"},
        {"type": "AvgPool2d", "kernel": 2}, {"type": "Upsample", "scale_factor": 2, "mode": "bilinear"},
        {"type": "Sigmoid"}]})
    assert model(torch.rand(1, 3, 8, 8) * 255).shape == (1, 4, 8, 8)


@pytest.mark.parametrize("layers, message", [
    ("conv", r"^sequential: 'layers' must be a non-empty list of layer specs"),
    ([{"type": "QuantInput"}, {"type": "Linear"}], r"^layer 1 has unknown type 'Linear'; known types: QuantInput, "),
    ([{"kind": "QuantInput"}], r"^layer 0 has no 'type'; known types"),
    ([{"type": "QuantInput"}, "QReLU"], r"^layer 1: a layer spec must be a dict with a 'type', not str"),
    ([{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 4}], r"^layer 1 \(QConv2d\): missing field 'kernel'"),
    ([{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 4, "kernel": "3"}],
     r"^layer 1 \(QConv2d\): field 'kernel' must be an integer in 1…255 or a pair \[h, w\] of them, not '3'"),
    ([{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "bias": 1}],
     r"^layer 0 \(QConv2d\): field 'bias' must be true or false, not 1"),
    ([{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "weight_bits": 1}],
     r"^layer 0 \(QConv2d\): field 'weight_bits' must be an integer in 2…16, not 1"),
    ([{"type": "QReLU", "signed": True}],
     r"^layer 0 \(QReLU\): unknown field 'signed'; its fields: bits, momentum, clip, learn_clip, pow2"),
    ([{"type": "QAct", "bits": 1, "signed": True}],
     r"^layer 0 \(QAct\): field 'bits' must be at least 2 for a signed activation"),
    ([{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3}, {"type": "BatchNorm2d", "channels": 8}],
     r"^layer 1 \(BatchNorm2d\): field 'channels' is 8 but the layer's input has 4 channels"),
    ([{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3}, {"type": "QReLU"},
      {"type": "QConv2d", "in": 8, "out": 4, "kernel": 3}],
     r"^layer 2 \(QConv2d\): field 'in' is 8 but the layer's input has 4 channels"),
    ([{"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "groups": 2}],
     r"^layer 0 \(QConv2d\): field 'groups' \(2\) must divide 'in' \(3\)"),
    ([{"type": "MaxPool2d", "kernel": 2, "padding": 2}],
     r"^layer 0 \(MaxPool2d\): field 'padding' must be at most half the kernel"),
    ([{"type": "QuantInput", "name": "a"}, {"type": "QReLU", "name": "a"}],
     r"^layer 1 \(QReLU\): field 'name' 'a' is already used by layer 0"),
    ([{"type": "QuantInput", "name": "a.b"}], r"^layer 0 \(QuantInput\): field 'name' must be an identifier"),
    # sizes are bounded before torch allocates anything (10**9 channels asked for 108 GB)
    ([{"type": "QConv2d", "in": 3, "out": 10**9, "kernel": 3}],
     r"^layer 0 \(QConv2d\): field 'out' must be an integer in 1…16384, not 1000000000"),
    ([{"type": "QConv2d", "in": 8000, "out": 16000, "kernel": 3}],
     r"^layer 0 \(QConv2d\): field 'out' gives the layer 1,152,000,000 weights, more than hwseg takes in one layer"),
    ([{"type": "Upsample", "scale_factor": 10**6}],
     r"^layer 0 \(Upsample\): field 'scale_factor' must be an integer in 1…255, not 1000000"),
])
def test_bad_specs_name_the_layer_type_and_field(layers, message):
    with pytest.raises(CheckpointError, match=message):
        build_model("sequential", {"layers": layers})


def test_bad_int8_tiny_arguments():
    with pytest.raises(CheckpointError, match=r"^architecture 'int8_tiny': arch_args 'width' must be an integer in "
                                              r"1…1024, not 0"):
        build_model("int8_tiny", {"width": 0})
    with pytest.raises(CheckpointError, match=r"^architecture 'int8_tiny': unknown argument 'depth' in arch_args"):
        build_model("int8_tiny", {"depth": 2})
    with pytest.raises(CheckpointError, match=r"^architecture 'sequential': arch_args must be a dict"):
        build_model("sequential", [1])


def test_bundled_example_is_the_trained_int8_tiny_preset():
    """examples/int8_tiny.pt comes from `python examples/zoo.py --presets int8_tiny` (README)."""
    path = EXAMPLES / "int8_tiny.pt"
    assert path.stat().st_size < 200_000
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "int8_tiny" and ckpt.input_shape == (3, 32, 32)
    history = ckpt.meta["train"]["history"]
    assert ckpt.meta["train"]["quantized"] and len(history) == ckpt.meta["train"]["epochs_done"] >= 1
    assert history[-1]["miou"] > 0.5
    graph = to_graph(ckpt.model, ckpt.input_shape, name="int8_tiny")
    assert graph.output_type.shape == (1, 8, 8)
    images = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(123)).float()
    outputs = integer_forward(ckpt.model, images, all_outputs=True)
    for name in ("act1", "act2", "act3", "logits"):
        y = outputs[name]
        assert 0.02 < float((y != 0).double().mean()), f"{name} is (nearly) all zero"
        assert len(torch.unique(y)) > 8, f"{name} uses few levels"



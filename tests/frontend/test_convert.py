"""Ladder item 4: the exported Graph on the golden model equals integer_forward, node by node;
and every refusal of the frontend, with its message."""

import numpy as np
import pytest
import torch
from torch import nn

from hwseg.errors import InputSizeError, UnsupportedError
from hwseg.golden import run_graph
from hwseg.ir import ArgMax, Conv2d, Input, Int, MaxPool, MulShift, UInt
from hwseg.models import build_model
from hwseg.frontend import to_graph
from hwseg.quant import QAct, QConv2d, QReLU, QuantInput, calibrate, integer_forward

from tests.quant.random_models import random_images, random_model


def _tiny(seed=0, **arch_args):
    torch.manual_seed(seed)
    model = build_model("int8_tiny", arch_args)
    g = torch.Generator().manual_seed(seed)
    size = arch_args.get("input_size", 32)
    return calibrate(model, [torch.randint(0, 256, (8, 3, size, size), generator=g).float() for _ in range(3)])


def assert_bit_exact(model, shape, x):
    graph = to_graph(model, shape)
    golden = run_graph(graph, x.numpy().astype(np.int64), keep=True)
    ours = integer_forward(model, x, all_outputs=True)
    assert list(golden) == list(ours) == [n.name for n in graph]
    for name in golden:
        assert np.array_equal(golden[name], ours[name].numpy()), f"node {name!r} differs"
    return graph, golden


def test_int8_tiny_graph_is_bit_exact_with_integer_forward():
    model = _tiny()
    graph, golden = assert_bit_exact(model, (3, 32, 32), random_images(1, (3, 32, 32), 3))
    assert [n.name for n in graph] == ["input", "conv1", "act1", "conv2", "act2", "conv3", "act3", "pool",
                                       "classifier", "logits", "argmax"]
    kinds = [type(n.op) for n in graph]
    assert kinds == [Input, Conv2d, MulShift, Conv2d, MulShift, Conv2d, MulShift, MaxPool, Conv2d, MulShift, ArgMax]
    assert graph.input_type.dtype == UInt(8) and graph.input_type.shape == (3, 32, 32)
    assert graph.output_type.shape == (1, 8, 8) and graph.output_type.dtype == UInt(8)
    assert graph.types["pool"].dtype == UInt(8) and graph.types["logits"].dtype == Int(8)
    assert graph["conv3"].op.dilation == (2, 2) and graph["conv2"].op.stride == (2, 2)
    assert graph["conv1"].attrs["module"] == "conv1"
    # not a vacuous comparison: activations vary and the class map uses several classes
    assert len(np.unique(golden["act3"])) > 50 and len(np.unique(golden["argmax"])) > 1


def test_frames_of_another_size_and_one_frame():
    model = _tiny(width=4, classes=3)
    x = random_images(2, (3, 20, 28), 1)
    graph, golden = assert_bit_exact(model, (3, 20, 28), x)
    assert graph.output_type.shape == (1, 5, 7)
    assert np.array_equal(run_graph(graph, x[0].numpy().astype(np.int64)), integer_forward(model, x[0]).numpy())


@pytest.mark.parametrize("seed", range(12))
def test_random_sequential_models_are_bit_exact(seed):
    model, shape = random_model(seed)
    assert_bit_exact(model, shape, random_images(seed + 50, shape, 2))


def test_node_names_are_deterministic_identifiers():
    model, shape = random_model(3)
    names = [n.name for n in to_graph(model, shape)]
    assert names == [n.name for n in to_graph(model, shape)]
    assert all(n.isidentifier() for n in names) and names[0] == "n0"

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(QuantInput(), QConv2d(3, 2, 1), QReLU(8))
            self.head = nn.ModuleDict({"out": nn.Sequential(QConv2d(2, 2, 1), QAct(8, signed=True))})

        def forward(self, x):
            return self.head["out"](self.features(x))

    graph = to_graph(Nested().eval(), (3, 4, 4))
    assert [n.name for n in graph] == ["features_0", "features_1", "features_2", "head_out_0", "head_out_1"]


def _seq(*layers):
    torch.manual_seed(0)
    return build_model("sequential", {"layers": [{"type": "QuantInput"}, *layers]}).eval()


CONV = {"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1}


@pytest.mark.parametrize("layers, message", [
    ([{"type": "Conv2d", "in": 3, "out": 4, "kernel": 3, "name": "stem"}, {"type": "QReLU"}],
     r"^layer 'stem' is an unquantized float Conv2d: use hwseg\.quant\.QConv2d followed by a QAct"),
    ([CONV, {"type": "QReLU"}, {"type": "Upsample", "scale_factor": 3, "mode": "bilinear", "name": "up"}],
     r"^layer 'up' \(Upsample\) is a bilinear upsampling by 3; hwseg needs a power-of-two factor \(2, 4, 8, …\) "
     r"for bilinear"),
    ([CONV, {"type": "QReLU"}, {"type": "AvgPool2d", "kernel": 3}],
     r"^layer '3' \(AvgPool2d\) averages 3×3 = 9 elements; hwseg averages windows of a power-of-two number"),
    ([CONV, {"type": "Sigmoid"}, {"type": "QReLU"}],
     r"^layer '2' \(Sigmoid\) is not supported by hwseg yet; supported: QuantInput, QConv2d, QConvTranspose2d, "
     r"BatchNorm2d, L1BatchNorm2d, ReLU, QAct, QReLU, MaxPool2d, AvgPool2d, Upsample, ArgMax"),
    ([CONV, {"type": "BatchNorm2d", "channels": 4}],
     r"^the model's output is the unquantized output of layer '2' \(QConv2d '1'\); every QConv2d output must be "
     r"quantized by a QAct"),
    ([CONV, {"type": "MaxPool2d", "kernel": 2}, {"type": "QReLU"}],
     r"^layer '2' \(MaxPool2d\) reads the unquantized output of layer '1' \(QConv2d '1'\)"),
    ([CONV, {"type": "QConv2d", "in": 4, "out": 2, "kernel": 1}, {"type": "QReLU"}],
     r"^layer '2' \(QConv2d\) reads the unquantized output of layer '1'"),
    ([CONV, {"type": "QReLU"}, {"type": "BatchNorm2d", "channels": 4}, {"type": "QReLU"}],
     r"^layer '3' \(BatchNorm2d\) must directly follow a QConv2d \(or a torch\.cat\) to be folded into it"),
    ([CONV, {"type": "QReLU"}, {"type": "ArgMax"}, {"type": "QReLU"}],
     r"^layer '4' \(QReLU\) reads the class map of ArgMax '3'; ArgMax must be the last layer"),
])
def test_unsupported_models_are_refused_by_name(layers, message):
    with pytest.raises(UnsupportedError, match=message):
        to_graph(_seq(*layers), (3, 8, 8))


def test_a_model_without_quant_input_is_refused():
    model = nn.Sequential(QConv2d(3, 4, 3), QReLU())
    with pytest.raises(UnsupportedError, match=r"^the model has no QuantInput: layer '0' \(QConv2d\) reads the raw "
                                               r"model input; start the model with hwseg\.quant\.QuantInput\(\)"):
        to_graph(model, (3, 8, 8))


def test_functions_in_forward_are_refused_by_name():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.input = QuantInput()
            self.conv = QConv2d(3, 3, 3, padding=1)
            self.act = QReLU(clip=2.0)

        def forward(self, x):
            x = self.input(x)
            return self.act(self.conv(x)) + x

    with pytest.raises(UnsupportedError, match=r"^the function 'add' \(traced as 'add'\) adds tensors of "
                                               r"different scales: 'act' has scale 0\.00784314 and 'input' has scale "
                                               r"0\.00392157; the integer Add needs one scale"):
        to_graph(Residual().eval(), (3, 8, 8))

    class Sub(Residual):
        def forward(self, x):
            x = self.input(x)
            return self.act(self.conv(x)) - x

    with pytest.raises(UnsupportedError, match=r"^the model's forward uses the function 'sub' \(traced as 'sub'\), "
                                               r"which hwseg cannot lower yet"):
        to_graph(Sub(), (3, 8, 8))

    class Flatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.input = QuantInput()

        def forward(self, x):
            return self.input(x).flatten(1)

    with pytest.raises(UnsupportedError, match=r"tensor method '\.flatten\(\)'"):
        to_graph(Flatten(), (3, 8, 8))


def test_a_conv_feeding_two_layers_or_none_is_refused():
    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.input, self.conv, self.a, self.b = QuantInput(), QConv2d(3, 3, 1), QReLU(), QReLU()

        def forward(self, x):
            y = self.conv(self.input(x))
            self.a(y)
            return self.b(y)

    with pytest.raises(UnsupportedError, match=r"^the unquantized output of layer 'conv' feeds 2 layers"):
        to_graph(Fork(), (3, 4, 4))


def test_input_sizes_the_network_cannot_take():
    model = _tiny()
    with pytest.raises(InputSizeError, match=r"^the network cannot take a 3×2×2 input: layer 'pool' \(its input is "
                                             r"UInt\(8\)\[16×1×1\]\): a 1×1 input is too small for a 2×2 max-pool"):
        to_graph(model, (3, 2, 2))
    with pytest.raises(InputSizeError, match=r"^the network cannot take a 1-channel input: layer 'conv1' \(QConv2d\) "
                                             r"expects 3 input channels"):
        to_graph(model, (1, 32, 32))
    with pytest.raises(InputSizeError, match=r"^the input shape must be three positive integers \(channels, height, "
                                             r"width\), not \(3, 32\)"):
        to_graph(model, (3, 32))
    small = _seq({"type": "QConv2d", "in": 3, "out": 2, "kernel": 5, "dilation": 3, "name": "wide"}, {"type": "QReLU"})
    with pytest.raises(InputSizeError, match=r"^the network cannot take a 3×9×30 input: layer 'wide' .*too small for a "
                                             r"5×5 convolution"):
        to_graph(small, (3, 9, 30))

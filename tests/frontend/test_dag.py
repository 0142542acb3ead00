"""DAG lowering patterns (residual Add, Concat, BatchNorm pushed through a torch.cat, transposed convs,
upsampling, average pooling, fan-out): bit-exact on small models and random DAG models, and every
refusal with its message."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwseg.errors import UnsupportedError
from hwseg.frontend import to_graph
from hwseg.golden import run_graph
from hwseg.ir import Add, AvgPool, Concat, Conv2d, ConvTranspose2d, Int, MaxPool, MulShift, Threshold, UInt, Upsample
from hwseg.quant import (ArgMax, QAct, QAvgPool2d, QConv2d, QConvTranspose2d, QReLU, QuantInput, QUpsample, calibrate,
                         integer_forward, lower_model)

from tests.quant.random_models import random_dag_model, random_images


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exact(model, shape, count=2, seed=5, threshold_bits=0):
    x = random_images(seed, shape, count)
    graph = to_graph(model, shape, threshold_bits=threshold_bits)
    golden = run_graph(graph, x.numpy().astype(np.int64), keep=True)
    ours = integer_forward(model, x, all_outputs=True, threshold_bits=threshold_bits)
    assert list(golden) == list(ours) == [n.name for n in graph]
    for name in golden:
        assert np.array_equal(golden[name], ours[name].numpy()), f"node {name!r} differs"
    return graph, golden


def agrees(model, shape, names, seed=6, within=0.9):
    """The float QAT forward and the integer model agree on the named QActs' outputs (in steps, ±0.5) at
    ``within`` of the elements at least: the folding is right, not only self-consistent."""
    x = random_images(seed, shape, 2)
    ints = integer_forward(model, x, all_outputs=True)
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
               for n in names]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    for name in names:
        steps = seen[name].double() / model.get_submodule(name).scale
        close = ((steps - ints[name].double()).abs() < 0.5 + 1e-6).double().mean()
        assert close >= within, f"{name}: float and integer agree on {float(close):.3f} only"


def ready(model, shape, seed=0):
    """Deterministic weights (whatever ran before), random BN affine parameters, calibrated."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.reset_parameters()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return calibrate(model, [random_images(seed + i, shape, 4) for i in range(2)])


class Residual(nn.Module):
    """conv → QReLU (the skip); branch conv → BN → signed 9-bit QAct tied to the skip; ReLU(branch + skip) →
    QReLU tied to the skip (``tied``), or a QAct of its own scale (``free``)."""

    def __init__(self, variant="tied", functional="operator"):
        super().__init__()
        self.variant, self.functional = variant, functional
        self.input = QuantInput()
        self.conv = QConv2d(3, 4, 3, padding=1)
        self.skip = QReLU(8)
        self.branch_conv = QConv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.branch = QAct(9, signed=True, share=self.skip)
        self.out = QReLU(8, share=self.skip) if variant == "tied" else QAct(8, signed=True)

    def forward(self, x):
        s = self.skip(self.conv(self.input(x)))
        b = self.branch(self.bn(self.branch_conv(s)))
        total = {"operator": lambda: b + s, "torch.add": lambda: torch.add(s, b), "method": lambda: s.add(b)}
        y = total[self.functional]()
        return self.out(F.relu(y) if self.variant == "tied" else y)


@pytest.mark.parametrize("functional", ["operator", "torch.add", "method"])
def test_residual_add_at_a_tied_scale_is_one_add(functional):
    model = ready(Residual("tied", functional), (3, 10, 12))
    graph, golden = exact(model, (3, 10, 12))
    assert [type(n.op) for n in graph][-1] is Add
    add = graph[graph.output]
    assert (add.op.lo, add.op.hi) == (0, 255) and add.inputs == (("branch", "skip") if functional == "operator"
                                                                  else ("skip", "branch"))
    assert add.name == "out" and graph.types["branch"].dtype == Int(9) and graph.types["out"].dtype == UInt(8)
    assert model.out.scale == model.branch.scale == model.skip.scale
    assert golden["out"].max() > 0 and (golden["out"] == 0).any()
    agrees(model, (3, 10, 12), ["skip", "branch", "out"])


def test_an_add_quantized_at_another_scale_is_add_then_mulshift():
    model = ready(Residual("free"), (3, 10, 12))
    graph, golden = exact(model, (3, 10, 12))
    add, out = graph.nodes[-2], graph.nodes[-1]
    assert isinstance(add.op, Add) and isinstance(out.op, MulShift)
    assert (add.op.lo, add.op.hi) == (-255, 510) and graph.types[add.name].dtype == Int(10)   # the exact sum
    assert out.inputs == (add.name,) and (out.op.lo, out.op.hi) == (-127, 127)
    agrees(model, (3, 10, 12), ["out"])


def test_an_add_of_different_scales_is_refused_naming_both_layers():
    model = ready(Residual("tied"), (3, 10, 12))
    model.branch = QAct(9, signed=True, clip=3.0)               # no longer tied
    with pytest.raises(UnsupportedError, match=r"^the function 'add' \(traced as 'add'\) adds tensors of "
                                               r"different scales: 'branch' has scale 0\.0117647 and 'skip' has scale "
                                               r"0\.\d+; the integer Add needs one scale: quantize the branch's last "
                                               r"QAct at the skip's scale \(QAct\(\.\.\., share=\.\.\.\) or "
                                               r"hwseg\.quant\.tie_scale\)"):
        to_graph(model, (3, 10, 12))


class Cat(nn.Module):
    """cat([conv(x), pool(x)]) → BN → [ReLU] → QAct (ERFNet's downsampler) when ``bn``; otherwise a cat of
    two activations of one (tied) scale, read by a conv."""

    def __init__(self, bn=True, relu=True, signed=False, order=("conv", "pool")):
        super().__init__()
        self.bn_on, self.relu, self.order = bn, relu, order
        self.input = QuantInput()
        self.stem = QConv2d(3, 3, 3, padding=1)
        self.stem_act = QReLU(8)
        self.conv = QConv2d(3, 5, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        if bn:
            self.bn = nn.BatchNorm2d(8, eps=1e-3)
            self.act = QAct(8, signed=signed)
        else:
            self.conv_act = QReLU(8, share=self.stem_act)
        self.head = QConv2d(8, 2, 1)
        self.logits = QAct(8, signed=True)

    def forward(self, x):
        x = self.stem_act(self.stem(self.input(x)))
        if self.bn_on:
            parts = {"conv": self.conv(x), "pool": self.pool(x)}
            y = self.bn(torch.cat([parts[k] for k in self.order], 1))
            y = self.act(F.relu(y) if self.relu else y)
        else:
            y = torch.cat([self.conv_act(self.conv(x)), self.pool(x)], dim=1)
        return self.logits(self.head(y))


@pytest.mark.parametrize("relu, signed, order", [(True, False, ("conv", "pool")), (False, True, ("pool", "conv")),
                                                 (True, True, ("pool", "conv"))])
def test_batchnorm_after_a_cat_is_pushed_into_both_branches(relu, signed, order):
    model = ready(Cat(True, relu, signed, order), (3, 12, 16))
    graph, _ = exact(model, (3, 12, 16))
    concat = graph["act"]
    assert isinstance(concat.op, Concat) and len(concat.inputs) == 2
    branches = {graph[graph[name].inputs[0]].attrs["module"]: graph[name] for name in concat.inputs}
    conv, unit = graph["conv"], graph[f"bn_{order.index('pool')}"]
    assert isinstance(conv.op, Conv2d) and conv.op.stride == (2, 2)
    assert isinstance(unit.op, Conv2d) and unit.op.groups == 3 and unit.op.kernel == (1, 1)
    assert unit.inputs == ("pool",) and isinstance(graph["pool"].op, MaxPool)
    k = int(unit.op.weight.max())
    # one power of two (a real weight of 1); 0 on a channel the BN + ReLU make constant over the input range
    assert np.all((unit.op.weight == k) | (unit.op.weight == 0)) and k > 0 and k & (k - 1) == 0
    assert set(branches) == {"conv", "bn.%d" % order.index("pool")}
    assert all(isinstance(b.op, MulShift) for b in branches.values())
    lo = 0 if relu or not signed else -127
    assert all((b.op.lo, b.op.hi) == (lo, 255 if not signed else 127) for b in branches.values())
    assert [graph[graph[n].inputs[0]].name for n in concat.inputs] == (
        ["conv", unit.name] if order == ("conv", "pool") else [unit.name, "conv"])
    agrees(model, (3, 12, 16), ["act", "logits"])


def test_a_cat_pushed_through_thresholds():
    model = Cat(True, True)
    model.act = QAct(2)
    model = ready(model, (3, 12, 16))
    graph, _ = exact(model, (3, 12, 16), threshold_bits=2)
    assert [type(graph[n].op) for n in graph["act"].inputs] == [Threshold, Threshold]


def test_a_cat_of_one_scale_and_type_is_one_concat():
    model = ready(Cat(bn=False), (3, 12, 16))
    graph, _ = exact(model, (3, 12, 16))
    (concat,) = [n for n in graph if isinstance(n.op, Concat)]
    assert concat.inputs == ("conv_act", "pool") and concat.name == "cat" and graph["head"].inputs == ("cat",)


def test_concatenations_of_different_scales_or_types_are_refused():
    model = ready(Cat(bn=False), (3, 12, 16))
    model.conv_act = QReLU(8, clip=2.0)
    with pytest.raises(UnsupportedError, match=r"^the function 'cat' \(traced as 'cat'\) joins tensors of "
                                               r"different scales: 'conv_act' has scale 0\.00784314 and 'pool' has "
                                               r"scale 0\.\d+; the integer Concat needs one scale: tie their QActs"):
        to_graph(model, (3, 12, 16))
    model.conv_act = QAct(8, signed=True, share=model.stem_act)
    with pytest.raises(UnsupportedError, match=r"^the function 'cat' \(traced as 'cat'\) joins tensors of "
                                               r"different types: 'conv_act' is Int\(8\) and 'pool' is UInt\(8\); the "
                                               r"integer Concat needs one type: give their QActs the same bits and "
                                               r"signedness"):
        to_graph(model, (3, 12, 16))


def test_cats_quantized_by_a_qact_requantize_each_branch():
    class Requant(nn.Module):
        def __init__(self):
            super().__init__()
            self.input, self.conv, self.a = QuantInput(), QConv2d(3, 2, 1), QReLU(6)
            self.act = QReLU(8)

        def forward(self, x):
            x = self.input(x)
            return self.act(torch.cat([self.a(self.conv(x)), x], 1))

    model = ready(Requant(), (3, 8, 8))
    graph, _ = exact(model, (3, 8, 8))
    assert [type(graph[n].op) for n in graph["act"].inputs] == [MulShift, MulShift]
    assert graph[graph["act"].inputs[1]].inputs == ("input",)
    agrees(model, (3, 8, 8), ["act"])


class Decoder(nn.Module):
    def __init__(self, up, pool=None):
        super().__init__()
        self.input = QuantInput()
        self.conv = QConv2d(3, 4, 3, padding=1)
        self.act = QAct(8, signed=True)
        self.pool = pool if pool is not None else nn.Identity()
        self.up = up if isinstance(up, nn.Module) else None
        self.fn = None if isinstance(up, nn.Module) else up          # a function (F.interpolate)
        self.head = QConv2d(4, 3, 1)
        self.logits = QAct(8, signed=True)
        self.argmax = ArgMax()

    def forward(self, x):
        y = self.pool(self.act(self.conv(self.input(x))))
        y = self.fn(y) if self.fn is not None else self.up(y)
        return self.argmax(self.logits(self.head(y)))


@pytest.mark.parametrize("up, factor, mode", [
    (nn.Upsample(scale_factor=3), (3, 3), "nearest"),
    (nn.Upsample(scale_factor=(2, 1), mode="nearest"), (2, 1), "nearest"),
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (2, 2), "bilinear"),
    (nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False), (4, 4), "bilinear"),
    (lambda y: F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False), (2, 2), "bilinear"),
    (lambda y: F.interpolate(y, scale_factor=(1, 2), mode="nearest"), (1, 2), "nearest"),
])
def test_upsampling_keeps_the_scale(up, factor, mode):
    model = ready(Decoder(up), (3, 6, 7))
    graph, golden = exact(model, (3, 6, 7))
    (node,) = [n for n in graph if isinstance(n.op, Upsample)]
    assert node.op.factor == factor and node.op.mode == mode and node.inputs == ("act",)
    assert graph.types[node.name].dtype == Int(8)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(4, stride=2, padding=2), nn.AvgPool2d((1, 2)),
                                  nn.AvgPool2d(2, stride=1, padding=1)])
def test_average_pooling_keeps_the_scale(pool):
    model = ready(Decoder(nn.Identity(), pool), (3, 12, 16))
    graph, _ = exact(model, (3, 12, 16))
    (node,) = [n for n in graph if isinstance(n.op, AvgPool)]
    assert node.inputs == ("act",) and graph.types[node.name].dtype == Int(8)


def test_qavgpool_and_qupsample_round_in_float_as_the_integers_do():
    """On grid inputs the float forward of QAvgPool2d / QUpsample is the integer result times the scale,
    to the last bit; so the float QAT model agrees with the integer model there (not with plain layers)."""
    model = ready(Decoder(QUpsample(2, "bilinear"), None), (3, 8, 8))
    model.pool = QAvgPool2d(2, grid=model.act)
    object.__setattr__(model.up, "_grid", model.act)
    x = random_images(3, (3, 8, 8), 2)
    ints = integer_forward(model, x, all_outputs=True)
    seen = {}
    model.pool.register_forward_hook(lambda m, i, o: seen.__setitem__("pool", o))
    model.up.register_forward_hook(lambda m, i, o: seen.__setitem__("up", o))
    model.eval()(x)
    scale = model.act.scale
    assert torch.equal(torch.round(seen["pool"].double() / scale).long(), ints["pool"])
    assert torch.allclose(seen["pool"].double(), ints["pool"].double() * scale, rtol=1e-6, atol=0)
    assert torch.equal(torch.round(seen["up"].double() / scale).long(), ints["up"])
    model.up = QUpsample(2, "bilinear", grid=model.logits)
    with pytest.raises(UnsupportedError, match=r"^layer 'up' \(QUpsample\) rounds on the grid of 'logits' \(scale "
                                               r"[0-9.e-]+\), but it reads 'pool' of scale [0-9.e-]+; give it the QAct "
                                               r"that produces its input"):
        to_graph(model, (3, 8, 8))


@pytest.mark.parametrize("up, message", [
    (nn.Upsample(scale_factor=3, mode="bilinear", align_corners=False),
     r"^layer 'up' \(Upsample\) is a bilinear upsampling by 3; hwseg needs a power-of-two factor"),
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
     r"^layer 'up' \(Upsample\) uses align_corners=True; hwseg's bilinear upsampling is align_corners=False"),
    (nn.Upsample(scale_factor=1.5), r"^layer 'up' \(Upsample\) scales by 1\.5; hwseg upsamples by integer factors"),
    (nn.Upsample(size=(8, 8)), r"^layer 'up' \(Upsample\) resizes to a given size"),
    (nn.Upsample(scale_factor=2, mode="bicubic"), r"^layer 'up' \(Upsample\) uses mode 'bicubic'"),
    (lambda y: F.interpolate(y, scale_factor=6, mode="bilinear"),
     r"^the function 'interpolate' \(traced as 'interpolate'\) is a bilinear upsampling by 6"),
    (nn.AvgPool2d(3), r"^layer 'up' \(AvgPool2d\) averages 3×3 = 9 elements; hwseg averages windows of a "
                      r"power-of-two number of elements"),
    (nn.AvgPool2d(2, ceil_mode=True), r"^layer 'up' \(AvgPool2d\) uses ceil_mode, count_include_pad=False"),
    (nn.AvgPool2d(2, padding=1, count_include_pad=False), r"^layer 'up' \(AvgPool2d\) uses ceil_mode"),
    (nn.ConvTranspose2d(4, 4, 2), r"^layer 'up' is an unquantized float ConvTranspose2d: use "
                                  r"hwseg\.quant\.QConvTranspose2d"),
])
def test_resampling_hwseg_cannot_lower_is_refused(up, message):
    model = Decoder(up).eval()
    with pytest.raises(UnsupportedError, match=message):
        to_graph(model, (3, 6, 8))


def test_functions_are_checked_too():
    class Bad(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind, self.input, self.conv, self.act = kind, QuantInput(), QConv2d(3, 3, 1), QReLU(8)

        def forward(self, x):
            y = self.act(self.conv(self.input(x)))
            if self.kind == "cat0":
                return torch.cat([y, y], 0)
            if self.kind == "alpha":
                return torch.add(y, y, alpha=2)
            if self.kind == "constant":
                return y + 1
            return torch.cat([self.conv(self.input(x)), y], 1)

    with pytest.raises(UnsupportedError, match=r"^the function 'cat' \(traced as 'cat'\) concatenates along "
                                               r"dimension 0; hwseg concatenates channels \(dim=1\)"):
        to_graph(Bad("cat0").eval(), (3, 4, 4))
    with pytest.raises(UnsupportedError, match=r"is not a plain sum of two tensors"):
        to_graph(Bad("alpha").eval(), (3, 4, 4))
    with pytest.raises(UnsupportedError, match=r"takes the constant 1 as its input"):
        to_graph(Bad("constant").eval(), (3, 4, 4))
    with pytest.raises(UnsupportedError, match=r"^the model's output is the unquantized output of the function "
                                               r"'cat' \(traced as 'cat'\) \(after 'cat'\)"):
        to_graph(Bad("acc").eval(), (3, 4, 4))


class Transposed(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.input = QuantInput()
        self.conv = QConv2d(3, 4, 3, padding=1)
        self.act = QReLU(8)
        self.up = QConvTranspose2d(4, kwargs.pop("out", 6), **kwargs)
        self.bn = nn.BatchNorm2d(self.up.out_channels)
        self.up_act = QAct(8, signed=True)

    def forward(self, x):
        return self.up_act(self.bn(self.up(self.act(self.conv(self.input(x))))))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),                       # ERFNet's upsampler
    dict(kernel_size=2, stride=2),                                                    # ERFNet's output
    dict(kernel_size=4, stride=2, padding=1, groups=2, bias=False, weight_quant="pow2", weight_exponent=-7),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2), out=4,
         weight_quant="binary"),
])
def test_transposed_convolutions_fold_exactly(kwargs):
    model = ready(Transposed(**kwargs), (3, 5, 6))
    graph, _ = exact(model, (3, 5, 6))
    node = graph["up"]
    assert isinstance(node.op, ConvTranspose2d) and graph["up_act"].inputs == ("up",)
    up = model.up
    assert node.op.weight.shape == tuple(up.weight.shape)                          # torch's layout
    assert (node.op.stride, node.op.padding, node.op.output_padding, node.op.dilation, node.op.groups) == (
        up.stride, up.padding, up.output_padding, up.dilation, up.groups)
    assert graph.types["up_act"].shape[1:] == tuple(model(torch.zeros(1, 3, 5, 6)).shape[2:])
    agrees(model, (3, 5, 6), ["up_act"])


def test_a_tensor_read_by_several_layers_is_read_by_several_nodes():
    class Fan(nn.Module):
        def __init__(self):
            super().__init__()
            self.input, self.conv, self.act = QuantInput(), QConv2d(3, 4, 3, padding=1), QReLU(8)
            self.a, self.a_act = QConv2d(4, 2, 1), QReLU(8, share=self.act)
            self.b, self.b_act = QConv2d(4, 2, 3, padding=1), QReLU(8, share=self.act)
            self.drop, self.same = nn.Dropout(0.5), nn.Identity()

        def forward(self, x):
            y = self.drop(self.act(self.conv(self.input(x))))
            return torch.cat([self.a_act(self.a(y)), y, self.b_act(self.b(y)), self.same(y)], 1)

    model = ready(Fan(), (3, 6, 6))
    graph, _ = exact(model, (3, 6, 6))
    assert [n.name for n in graph.consumers("act")] == ["a", "b", "cat"]
    assert graph["cat"].inputs == ("a_act", "act", "b_act", "act")
    assert all(type(n.op).__name__ not in ("Fork", "Identity", "Dropout") for n in graph)


def test_threshold_bits_reach_the_graph():
    model = ready(Residual("tied"), (3, 8, 8))
    model.skip.bits = 3
    model.out.bits = 3
    graph = to_graph(model, (3, 8, 8), threshold_bits=3)
    assert isinstance(graph["skip"].op, Threshold) and isinstance(to_graph(model, (3, 8, 8))["skip"].op, MulShift)
    assert lower_model(model, 3, threshold_bits=3).steps[2].name == "skip"


@pytest.mark.parametrize("seed", range(24))
def test_random_dag_models_are_bit_exact(seed):
    model, shape = random_dag_model(seed)
    exact(model, shape, seed=seed + 50, threshold_bits=8 if seed % 3 == 0 else 0)


def test_functions_are_named_after_the_module_that_calls_them():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act = QConv2d(3, 3, 1), QReLU(8, clip=3.0)

        def forward(self, x):
            return self.act(self.conv(x)) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.input, self.body = QuantInput(), nn.Sequential(Block())

        def forward(self, x):
            return self.body(self.input(x))

    with pytest.raises(UnsupportedError, match=r"^the function 'add' in 'body\.0' \(traced as 'add'\) adds tensors "
                                               r"of different scales: 'body\.0\.act' has scale 0\.0117647 and 'input'"):
        to_graph(Net().eval(), (3, 4, 4))
    model = Net().eval()
    model.body[0].act = QReLU(8, share=QReLU(8, clip=1.0))                 # 1/255: the input's scale
    graph = to_graph(model, (3, 4, 4))
    assert graph.nodes[-1].name == "body_0_add" and graph.nodes[-1].attrs["module"] == "body.0.add"

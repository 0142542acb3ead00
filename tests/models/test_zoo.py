"""The model zoo: every architecture exports to a Graph whose golden execution equals the torch model's
integer inference bit for bit (ladder item 4), on its tiny preset and on a second, seeded random
configuration; the float QAT model agrees with it; ERFNet has the paper's structure and size."""

import random

import numpy as np
import pytest
import torch

from hwseg.errors import CheckpointError
from hwseg.estimate.work import macs_per_frame
from hwseg.frontend import load_checkpoint, save_checkpoint, to_graph
from hwseg.golden import run_graph
from hwseg.ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Input, Int, MaxPool, MulShift,
                      Threshold, Upsample)
from hwseg.models import ARCHITECTURES, PRESETS, SegNet, build_model
from hwseg.quant import QAct, calibrate, integer_forward

from tests.quant.random_models import random_images

ARCHS = ("bfcn", "int_fcn", "erfnet", "fpl")
TINY = {arch: f"{arch}_tiny" for arch in ARCHS}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is faster, and immune to a second process on the other core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_config(arch: str, seed: int = 2) -> dict:
    """A seeded random configuration of ``arch`` (arguments and input size) other than its tiny preset."""
    rng = random.Random(f"{arch}-{seed}")
    if arch == "bfcn":
        stages = rng.randint(1, 3)
        args = {"classes": rng.randint(2, 8), "width": rng.choice([2, 4, 6]), "stages": stages,
                "convs": rng.randint(1, 2), "scheme": rng.choice(["w1a2", "w2a2"]),
                "downsample": rng.choice(["pool", "stride"]), "upsample": rng.choice(["bilinear", "nearest", "deconv"]),
                "out_stride": rng.choice([1, 2]), "skips": rng.random() < 0.5}
        stride = 1 << stages
    elif arch == "int_fcn":
        stages = rng.randint(2, 4)
        args = {"classes": rng.randint(2, 8), "width": rng.choice([2, 4, 6]), "stages": stages,
                "convs": rng.randint(1, 2), "skips": rng.randint(0, stages - 1), "integer_bn": rng.random() < 0.5}
        stride = 1 << stages
    elif arch == "erfnet":
        args = {"classes": rng.randint(2, 8), "width": rng.choice([0.25, 0.3, 0.375]),
                "blocks": [rng.randint(0, 2), rng.randint(1, 4), rng.randint(0, 2), rng.randint(0, 2)],
                "dropout": rng.random() < 0.5}
        stride = 8
    else:
        args = {"classes": rng.randint(2, 8), "width": rng.choice([10, 15]),
                "blocks": [rng.randint(0, 2) for _ in range(3)]}
        stride = 8
    side = [stride * rng.randint(max(1, 16 // stride), max(2, 48 // stride)) for _ in range(2)]
    args["input_size"] = side
    return args


#: Extra BFCN configurations covering the options the seeded draw does not: transposed-conv decoder,
#: strided downsampling, 2-bit weights, nearest upsampling, half-resolution output.
BFCN_MORE = [
    {"classes": 5, "width": 4, "stages": 2, "convs": 2, "scheme": "w1a2", "downsample": "stride",
     "upsample": "deconv", "out_stride": 1, "skips": True, "input_size": [32, 24]},
    {"classes": 3, "width": 4, "stages": 3, "convs": 1, "scheme": "w2a2", "downsample": "pool",
     "upsample": "nearest", "out_stride": 2, "skips": False, "input_size": [24, 40]},
]


def configs():
    for arch in ARCHS:
        preset = PRESETS[TINY[arch]]
        yield pytest.param(arch, dict(preset.arch_args), id=f"{arch}-tiny")
        yield pytest.param(arch, random_config(arch), id=f"{arch}-random")
    for i, args in enumerate(BFCN_MORE):
        yield pytest.param("bfcn", args, id=f"bfcn-more{i}")


_CACHE = {}


def calibrated(arch: str, args: dict):
    """The model, calibrated on random images so that its activations are realistic (cached)."""
    key = (arch, repr(sorted(args.items())))
    if key not in _CACHE:
        torch.manual_seed(0)
        model = build_model(arch, args)
        shape = model.input_shape
        calibrate(model, [random_images(100 + i, shape, 4) for i in range(3)])
        _CACHE[key] = model
    return _CACHE[key]


def assert_bit_exact(model, x, threshold_bits=0):
    graph = to_graph(model, tuple(x.shape[1:]), threshold_bits=threshold_bits)
    golden = run_graph(graph, x.numpy().astype(np.int64), keep=True)
    ours = integer_forward(model, x, all_outputs=True, threshold_bits=threshold_bits)
    assert list(golden) == list(ours) == [n.name for n in graph]
    for name in golden:
        assert np.array_equal(golden[name], ours[name].numpy()), f"node {name!r} differs"
    return graph, golden


def _logits_node(graph):
    (argmax,) = [n for n in graph if isinstance(n.op, ArgMax)]
    return graph[argmax.inputs[0]]


@pytest.mark.parametrize("arch, args", configs())
def test_zoo_graph_is_bit_exact_with_integer_forward(arch, args):
    model = calibrated(arch, args)
    x = random_images(7, model.input_shape, 2)
    graph, golden = assert_bit_exact(model, x)
    assert isinstance(graph[graph.input].op, Input) and graph.input_type.shape == model.input_shape
    stride = 2 if args.get("out_stride") == 2 else 1
    assert graph.output_type.shape == (1, model.input_shape[1] // stride, model.input_shape[2] // stride)
    assert isinstance(graph[graph.output].op, ArgMax)
    # not vacuous: the logits vary
    assert len(np.unique(golden[_logits_node(graph).name])) > 10


@pytest.mark.parametrize("arch, args", [p for p in configs() if p.values[0] == "bfcn"])
@pytest.mark.parametrize("threshold_bits", [2, 4])
def test_bfcn_threshold_graph_is_bit_exact(arch, args, threshold_bits):
    model = calibrated(arch, args)
    graph, _ = assert_bit_exact(model, random_images(8, model.input_shape, 2), threshold_bits=threshold_bits)
    kinds = [type(n.op) for n in graph]
    # every 2-bit activation is a Threshold: only the logits keep a MulShift
    assert kinds.count(MulShift) == 1 and isinstance(_logits_node(graph).op, MulShift)
    assert kinds.count(Threshold) == sum(isinstance(m, QAct) and m.bits == 2 for m in model.modules())
    convs = [n.op for n in graph if isinstance(n.op, (Conv2d, ConvTranspose2d))]
    assert convs[0].weight_type == Int(8) and convs[-1].weight_type == Int(8)    # first and last layers
    inner = {type(c.weight_type) for c in convs[1:-1]}
    assert inner == ({Bipolar} if args["scheme"] == "w1a2" else {Int})
    if args["scheme"] == "w2a2":
        assert all(c.weight_type == Int(2) for c in convs[1:-1])
    if args["upsample"] == "deconv":
        assert any(isinstance(c, ConvTranspose2d) and isinstance(c.weight_type, Bipolar) for c in convs) \
            == (args["scheme"] == "w1a2")


@pytest.mark.parametrize("arch, args", configs())
def test_float_qat_model_agrees_with_the_integer_model(arch, args):
    """Sanity: the float QAT forward (fake quantization) and the integer model give nearly the same class
    maps. BFCN is compared on its threshold path (its MulShift path rounds the folded bias to a coarse
    accumulator step: see hwseg.quant.fold)."""
    model = calibrated(arch, args)
    x = random_images(9, model.input_shape, 2)
    threshold_bits = 2 if arch == "bfcn" else 0
    integer = integer_forward(model, x, threshold_bits=threshold_bits)
    with torch.no_grad():
        floating = model.eval()(x)
    agreement = float((integer == floating).double().mean())
    assert agreement >= (0.97 if arch in ("bfcn", "int_fcn") else 0.9), f"class maps agree on {agreement:.3f}"


def test_erfnet_has_the_papers_parameter_count():
    model = build_model("erfnet", {})
    count = sum(p.numel() for p in model.parameters())
    assert count == 2_064_256 and round(count / 1e6, 2) == 2.06       # networks.md: 2.06 M
    params = lambda module: sum(p.numel() for p in module.parameters())   # noqa: E731
    enc, dec = model.encoder, model.decoder
    # networks.md's table, block by block
    assert [params(enc[0]), params(enc[1]), params(enc[2]), params(enc[7]), params(enc[8])] == \
        [396, 7_088, 49_664, 37_184, 197_632]
    assert [params(dec[0]), params(dec[1]), params(dec[3]), params(dec[4]), params(model.output)] == \
        [73_920, 49_664, 9_264, 3_200, 1_300]
    assert len(enc) == 2 + 5 + 1 + 8 and len(dec) == 1 + 2 + 1 + 2
    assert [b.conv3x1_2.dilation[0] for b in enc[8:]] == [2, 4, 8, 16, 2, 4, 8, 16]
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 3 + 2 + 17 * 4 + 1 and all(m.bias is not None for m in convs)


def test_erfnet_op_inventory_and_work():
    """The full-size ERFNet lowers (uncalibrated: only the structure matters here) to the expected IR ops;
    its MACs per 1024×512 frame match networks.md's 26.6 GMAC (plus the tiny depthwise unit convs that
    carry the downsamplers' BatchNorm on their max-pool branch)."""
    model = build_model("erfnet", {}).eval()
    graph = to_graph(model, (3, 512, 1024))
    ops = [n.op for n in graph]
    count = lambda kind: sum(isinstance(op, kind) for op in ops)   # noqa: E731
    assert count(ConvTranspose2d) == 3 and count(Concat) == 3 and count(Add) == 17 and count(MaxPool) == 3
    assert count(ArgMax) == 1 and count(AvgPool) == count(Upsample) == 0
    dilations = {op.dilation for op in ops if isinstance(op, Conv2d)}
    assert {(1, 1), (2, 1), (1, 2), (16, 1), (1, 16)} <= dilations and max(d for pair in dilations for d in pair) == 16
    transposed = [op for op in ops if isinstance(op, ConvTranspose2d)]
    assert [(op.kernel, op.stride, op.padding, op.output_padding) for op in transposed] == [
        ((3, 3), (2, 2), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0), (0, 0))]
    units = [op for op in ops if isinstance(op, Conv2d) and op.groups > 1]
    assert [op.groups for op in units] == [3, 16, 64]                # the pushed BatchNorms
    unit_macs = 3 * 256 * 512 + 16 * 128 * 256 + 64 * 64 * 128
    assert round((macs_per_frame(graph) - unit_macs) / 1e9, 1) == 26.6
    adds = [op for op in ops if isinstance(op, Add)]
    assert all((op.lo, op.hi) == (0, 255) for op in adds)            # ReLU(out + input) at the skip's scale
    assert graph.output_type.shape == (1, 512, 1024) and graph.types[_logits_node(graph).name].channels == 20


@pytest.mark.parametrize("arch", ARCHS)
def test_zoo_models_expose_classes_stride_and_input_shape(arch):
    preset = PRESETS[TINY[arch]]
    model = build_model(preset.arch, dict(preset.arch_args))
    assert isinstance(model, SegNet) and arch in ARCHITECTURES
    assert model.classes == preset.arch_args["classes"] and 4 <= model.classes <= 8
    assert model.input_shape == (3, *preset.input_size) and preset.input_size == (64, 64)
    assert model.input_shape[1] % model.stride == 0 and model.stride == 8
    last = list(model.modules())[-1]
    assert type(last).__name__ == "ArgMax"
    # tiny: few channels and little work
    graph = to_graph(model.eval(), model.input_shape)
    assert max(graph.types[n.name].channels for n in graph) <= 96
    assert macs_per_frame(graph) < 20_000_000
    with pytest.raises(CheckpointError, match=rf"^architecture '{arch}': arch_args 'input_size' \[60, 64\] must be "
                                              rf"a multiple of the network's stride 8"):
        build_model(arch, {**preset.arch_args, "input_size": [60, 64]})


@pytest.mark.parametrize("arch, args, message", [
    ("erfnet", {"width": 0.2}, r"'width' 0\.2 gives channels \[3, 13, 26\]; ERFNet needs 3 < c1 < c2 < c3"),
    ("erfnet", {"blocks": [5, 8, 2]}, r"'blocks' must be a list of 4 integers in 0…64"),
    ("fpl", {"width": 12}, r"'width' must be a multiple of 5"),
    ("bfcn", {"scheme": "w1a1"}, r"'scheme' must be one of 'w1a2', 'w2a2', 'w8a8', not 'w1a1'"),
    ("bfcn", {"upsample": "bicubic"}, r"'upsample' must be one of 'bilinear', 'nearest', 'deconv'"),
    ("int_fcn", {"stages": 2, "skips": 2}, r"'skips' must be an integer in 0…1, not 2"),
])
def test_bad_zoo_arguments_are_refused(arch, args, message):
    with pytest.raises(CheckpointError, match=rf"^architecture '{arch}': arch_args {message}"):
        build_model(arch, args)


def test_a_zoo_checkpoint_round_trips_with_its_tied_scales(tmp_path):
    model = calibrated("fpl", dict(PRESETS["fpl_tiny"].arch_args))
    path = tmp_path / "fpl.pt"
    save_checkpoint(model, path, "fpl", dict(PRESETS["fpl_tiny"].arch_args), model.input_shape)
    loaded = load_checkpoint(path).model
    block = loaded.stages[1].blocks[0]
    assert block.out.tied_to is loaded.stages[1].down.act and block.out.scale == loaded.stages[1].down.act.scale
    x = random_images(11, model.input_shape, 1)
    assert torch.equal(integer_forward(loaded, x, all_outputs=False), integer_forward(model, x))

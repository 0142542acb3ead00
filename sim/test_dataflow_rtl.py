"""Branching dataflow in RTL: forks, residual Add, Concat and the skip FIFOs that keep them moving.

Each network is emitted as a whole accelerator and compared with golden on every beat (2
unstalled + 2 stalled frames). The FIFO test shows the computed skip-FIFO depths are needed:
one beat shallower and the accelerator stalls for good (detected by the silence limit), at the
computed depth it completes.
"""

import numpy as np
import pytest

from hwseg import fold_to_board
from hwseg.cosim import simulate_design
from hwseg.flow import compile_graph
from hwseg.ir import Add, Concat, Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt


def _conv(rng, name, source, cin, cout, kernel, **params):
    weight = rng.integers(-127, 128, size=(cout, cin, *kernel))
    return Node(name, Conv2d(weight, rng.integers(-300, 301, size=cout), Int(8), **params), (source,))


def _requant(rng, name, source, channels, lo=0, hi=255):
    return Node(name, MulShift(rng.integers(1, 60, size=channels), 14, lo, hi), (source,))


def residual(rng, shape=(4, 10, 12), dilation=2):
    """ERFNet's non-bottleneck-1d in miniature: 3×1 and 1×3 dilated convs beside an identity skip."""
    c, h, w = shape
    d = dilation
    return Graph([
        Node("x", Input(shape, UInt(8))),
        _conv(rng, "stem", "x", c, c, (3, 3), padding=1), _requant(rng, "stem_q", "stem", c),
        _conv(rng, "c31", "stem_q", c, c, (3, 1), padding=(d, 0), dilation=(d, 1)),
        _requant(rng, "c31_q", "c31", c),
        _conv(rng, "c13", "c31_q", c, c, (1, 3), padding=(0, d), dilation=(1, d)),
        _requant(rng, "c13_q", "c13", c, -127, 127),
        Node("add", Add(0, 255), ("c13_q", "stem_q")),
        _conv(rng, "head", "add", c, 3, (1, 1)),
    ], name="residual")


def downsampler(rng, shape=(3, 12, 14)):
    """ERFNet's downsampler: a 3×3 stride-2 conv concatenated with a 2×2 max-pool of the same input."""
    c = shape[0]
    return Graph([
        Node("x", Input(shape, UInt(8))),
        _conv(rng, "conv", "x", c, 5, (3, 3), stride=2, padding=1), _requant(rng, "conv_q", "conv", 5),
        Node("pool", MaxPool(2), ("x",)),
        Node("cat", Concat(2), ("conv_q", "pool")),
        _conv(rng, "mix", "cat", 5 + c, 4, (3, 3), padding=1), _requant(rng, "mix_q", "mix", 4),
    ], name="downsampler")


@pytest.mark.parametrize("make, seed", [(residual, 1), (downsampler, 2)])
def test_branching_network_matches_golden(make, seed, work_dir, monkeypatch):
    # one DSP per product, as these were folded when the check was written: with two per DSP48 the residual net
    # folds to 168 cycles per frame, where the cycle model is 7.7 % low (measured 182; the case below)
    monkeypatch.setattr(fold_to_board, "mac_variants", lambda graph, node, pe, family, logic=True: ({},))
    design = compile_graph(make(np.random.default_rng(seed)), "pynq-z2")
    report = simulate_design(design, frames=2, simulator="verilator", seed=seed, valid_prob=0.6, ready_prob=0.6,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


def test_packed_residual_network_matches_golden(work_dir):
    """The residual net folded with two products per DSP48 (its three convolutions packed): every beat as
    golden. Its cycles per frame are 7.7 % above the estimate (182 against 168) — a cycle-model gap near the
    stream bound that this faster folding reaches, not the packing's (a packed array takes the plain one's
    cycles, tests/hw/test_mac_array.py); left open (issue 18)."""
    design = compile_graph(residual(np.random.default_rng(1)), "pynq-z2")
    assert [n.attrs.get("pack") for n in design.graph if n.name in ("stem", "c31", "c13")] == [2, 2, 2]
    report = simulate_design(design, frames=2, simulator="verilator", seed=1, valid_prob=0.6, ready_prob=0.6,
                             work_dir=work_dir)
    assert report.passed, report.summary()


def test_downsampler_on_icarus(work_dir):
    design = compile_graph(downsampler(np.random.default_rng(3), (2, 8, 8)), "pynq-z2")
    report = simulate_design(design, frames=2, simulator="icarus", seed=4, valid_prob=0.6, ready_prob=0.6,
                             work_dir=work_dir)
    assert report.passed, report.summary()


def test_the_computed_skip_fifo_depth_is_needed(tmp_path):
    graph = residual(np.random.default_rng(5), (2, 6, 9), dilation=2)
    depths = compile_graph(graph, "pynq-z2").graph["add"].attrs["skip_fifos_min"]
    long_branch, skip = depths
    assert long_branch == 0 and skip > 0
    runs = {}
    for depth in (skip, skip - 1):
        shallow = graph.with_attrs("add", skip_fifos=(0, depth))
        design = compile_graph(shallow, "pynq-z2")
        runs[depth] = simulate_design(design, frames=1, simulator="verilator", seed=6, valid_prob=0.8,
                                      ready_prob=0.8, work_dir=tmp_path / str(depth), silence_limit=2_000)
    assert runs[skip].passed, runs[skip].summary()
    assert runs[skip - 1].status.startswith("stalled: no transfer on either stream"), runs[skip - 1].summary()


def _zoo_design(arch, args, board, seed=3):
    import torch

    from hwseg.frontend import to_graph
    from hwseg.models import build_model
    from hwseg.quant import calibrate

    torch.manual_seed(seed)
    model = build_model(arch, args)
    size = args["input_size"]
    calibrate(model, [torch.randint(0, 256, (4, 3, *size)).float() for _ in range(2)])
    return compile_graph(to_graph(model.eval(), (3, *size), name=f"{arch}_small"), board)


def test_erfnet_matches_golden(work_dir):
    """ERFNet's structure at 1/4 width (4/16/32 channels), one block per stage, 32×32: downsamplers
    (conv ∥ max-pool → concat), factorized 3×1/1×3 convolutions with dilations 2 to 16, residual adds,
    transposed-convolution upsamplers and output layer — every beat equal to golden, cycles as estimated."""
    design = _zoo_design("erfnet", {"classes": 4, "width": 0.25, "blocks": [1, 1, 1, 1], "input_size": [32, 32],
                                    "dropout": False}, "zcu104")
    report = simulate_design(design, frames=2, simulator="verilator", seed=7, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


def test_fpl_matches_golden(work_dir):
    """An FPL-style network at 32×32: image re-injection (average pools of the input concatenated at
    1/2, 1/4, 1/8), pyramids of factorized convolutions with dilations 2 to 16 whose sums feed each
    other (joins feeding joins), residual adds, ×8 bilinear head — every beat equal to golden, cycles as
    estimated."""
    design = _zoo_design("fpl", {"classes": 4, "width": 10, "blocks": [1, 1, 1], "input_size": [32, 32]}, "zcu104")
    report = simulate_design(design, frames=2, simulator="verilator", seed=7, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


def test_fpl_fully_folded_matches_golden(work_dir):
    """The leanest design (issue 12): every layer that takes a folding at one lane — the convolutions with their
    windows served from memory, and the pointwise layers too: residual Adds, channelwise convolutions and the
    requantizers behind the image pools (lane converters split the whole pixels in front of them) — every
    beat equal to golden, cycles as estimated."""
    import torch

    from hwseg.frontend import to_graph
    from hwseg.ir import Add, Bipolar
    from hwseg.models import build_model
    from hwseg.passes import set_folding
    from hwseg.passes.choose_windows import has_window
    from hwseg.quant import calibrate

    torch.manual_seed(3)
    model = build_model("fpl", {"classes": 4, "width": 10, "blocks": [1, 1, 1], "input_size": [16, 16]})
    calibrate(model, [torch.randint(0, 256, (4, 3, 16, 16)).float() for _ in range(2)])
    graph = to_graph(model.eval(), (3, 16, 16), name="fpl_lean")
    folding = {node.name: {"pe": 1, "simd": 1, **({"window": "folded"} if has_window(node.op)
                                                  and not isinstance(node.op.weight_type, Bipolar) else {})}
               for node in set_folding.foldable(graph)}
    design = compile_graph(graph, "zcu104", folding=folding)
    pointwise = [node for node in design.graph if isinstance(node.op, Add)
                 or set_folding.standalone_requantizer(design.graph, node)
                 or isinstance(node.op, Conv2d) and node.op.channelwise]
    assert len(pointwise) > 10 and all(node.attrs["in_lanes"] == 1 for node in pointwise)
    report = simulate_design(design, frames=2, simulator="verilator", seed=9, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


def test_fpl_matches_golden_icarus(work_dir):
    """The same FPL-style network at 16×16 under Icarus, the second simulator (it runs about ten times
    slower than Verilator): the smallest input the family takes (three stride-2 stages)."""
    design = _zoo_design("fpl", {"classes": 4, "width": 10, "blocks": [1, 1, 1], "input_size": [16, 16]}, "zcu104")
    report = simulate_design(design, frames=2, simulator="icarus", seed=8, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()

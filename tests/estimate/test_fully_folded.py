"""The leanest design of the FPL-style net (issue 12): every layer that takes a folding at one channel and
one window element per beat — the requantizers and channelwise convolutions too — fits pynq-z2's 220 DSPs.
The bilinear head blends in logic (shift-and-add), with no DSP."""

import pytest
import torch

from hwseg.boards import load_board
from hwseg.flow import build, load_graph
from hwseg.frontend import save_checkpoint
from hwseg.ir import Bipolar, Conv2d, MulShift, Threshold, Upsample
from hwseg.models import build_model
from hwseg.passes import set_folding
from hwseg.passes.choose_windows import has_window
from hwseg.quant import calibrate

FPL = {"classes": 20, "width": 50, "blocks": [2, 3, 6]}


@pytest.fixture(scope="module")
def fpl_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("fpl", FPL)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    path = tmp_path_factory.mktemp("fpl") / "fpl.pt"
    save_checkpoint(model.eval(), path, "fpl", FPL, (3, 256, 512))
    return path


def _fully_folded(graph):
    """The `--folding` file of the leanest design: pe 1 and simd 1 everywhere, windows from memory."""
    def entry(node):
        folded = has_window(node.op) and not isinstance(node.op.weight_type, Bipolar)
        return {"pe": 1, "simd": 1, **({"window": "folded"} if folded else {})}
    return {node.name: entry(node) for node in set_folding.foldable(graph)}


def test_fpl_fully_folded_fits_the_dsps_of_pynq_z2(fpl_checkpoint):
    size = (64, 128)    # DSPs do not depend on the input size; a small one keeps the test quick
    graph, _ = load_graph(fpl_checkpoint, input_size=size)
    design = build(fpl_checkpoint, "pynq-z2", input_size=size, estimate_only=True, folding=_fully_folded(graph))
    layers = dict(zip((node.name for node in design.graph), design.estimate.layers))
    by_kind = {}
    for node in design.graph:
        kind = ("channelwise" if isinstance(node.op, Conv2d) and node.op.channelwise else type(node.op).__name__)
        by_kind[kind] = by_kind.get(kind, 0) + layers[node.name].resources.dsp
    print(f"\nDSP by kind: {by_kind}; total {design.estimate.total.dsp}")
    # every requantizer and channelwise convolution runs one channel per beat, a DSP each at most
    for node in design.graph:
        if isinstance(node.op, (MulShift, Threshold)) or isinstance(node.op, Conv2d) and node.op.channelwise:
            assert node.attrs["in_lanes"] == 1 and layers[node.name].resources.dsp <= 1, node.name
    assert all(layers[node.name].resources.dsp == 0 for node in design.graph if isinstance(node.op, Upsample))
    assert design.estimate.total.dsp <= load_board("pynq-z2").resources["dsp"] == 220

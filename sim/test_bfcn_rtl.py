"""The example BFCN (1-bit weights, 2-bit activations): popcount units and thresholds in RTL vs golden.

`hwseg build examples/bfcn.pt --board pynq` maps its binary layers onto bit-convolution units
(no multipliers) and its BN + clip + 2-bit quantizers onto multi-threshold units; the whole
network's Verilog must equal golden on every beat, two unstalled and two stalled frames, under
Verilator and Icarus.
"""

from pathlib import Path

import pytest
import torch

from hwseg.backend import lower_graph
from hwseg.cosim import simulate_design
from hwseg.flow import build, compile_graph
from hwseg.frontend import to_graph
from hwseg.models import build_model
from hwseg.quant import calibrate
from hwseg.hw import BitMacArray
from hwseg.ir import Bipolar, Conv2d, Threshold

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "bfcn.pt"


@pytest.fixture(scope="module")
def design():
    return build(EXAMPLE, "pynq")


def test_binary_layers_map_to_popcount_units_without_dsp(design):
    binary = [n for n in design.graph if isinstance(n.op, Conv2d) and isinstance(n.op.weight_type, Bipolar)]
    assert len(binary) >= 4
    assert sum(isinstance(n.op, Threshold) for n in design.graph) >= len(binary)
    layers = {layer.name: layer for layer in design.estimate.layers}
    for node in binary:
        assert layers[node.name].resources.dsp == 0, node.name
    lowered = {node.name: node for node in lower_graph(design.graph)}
    for node in binary:
        assert isinstance(lowered[node.name].build().mac_array, BitMacArray), node.name


def test_bfcn_rtl_matches_golden_verilator(design, work_dir):
    report = simulate_design(design, frames=2, simulator="verilator", seed=7, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


def test_small_bfcn_rtl_matches_golden_icarus(work_dir):
    """Icarus runs the example at a few hundred cycles per second, too slow for the test suite; a
    narrower BFCN of the same family (binary layers, thresholds, int8 first and last) stands in."""
    torch.manual_seed(3)
    args = {"classes": 4, "width": 4, "stages": 2, "convs": 1, "scheme": "w1a2", "out_stride": 4, "skips": False,
            "input_size": [16, 16]}
    model = build_model("bfcn", args)
    calibrate(model, [torch.randint(0, 256, (4, 3, 16, 16)).float() for _ in range(2)])
    graph = to_graph(model.eval(), (3, 16, 16), name="bfcn_small")
    assert any(isinstance(n.op, Conv2d) and isinstance(n.op.weight_type, Bipolar) for n in graph)
    report = simulate_design(compile_graph(graph, "pynq"), frames=2, simulator="icarus", seed=7, valid_prob=0.7,
                             ready_prob=0.7, work_dir=work_dir)
    assert report.passed, report.summary()

"""The bundled example network, emitted as one accelerator, vs golden in cocotb.

Two frames run back to back without stalls (measuring cycles per frame) and two more under
random tvalid gaps and tready backpressure; every output beat must equal golden, under
Verilator and under Icarus, and the measured cycles per frame must be within 5 % of the
estimate.
"""

from pathlib import Path

import pytest

from hwseg.cosim import simulate_design
from hwseg.flow import build

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "int8_tiny.pt"


@pytest.fixture(scope="module")
def design():
    return build(EXAMPLE, "pynq-z2")


def test_example_has_the_required_layers(design):
    ops = [node.op for node in design.graph]
    convs = [op for op in ops if type(op).__name__ == "Conv2d"]
    assert len(convs) >= 4
    assert any(op.kernel == (3, 3) and op.stride == (2, 2) for op in convs)
    assert any(op.kernel == (3, 3) and op.dilation == (2, 2) for op in convs)
    assert any(op.kernel == (1, 1) for op in convs)
    assert any(type(op).__name__ == "MaxPool" for op in ops)
    assert type(ops[-1]).__name__ == "ArgMax"
    c, h, w = design.graph.input_type.shape
    assert c == 3 and h >= 32 and w >= 32


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_example_network_rtl_matches_golden(design, simulator, work_dir):
    report = simulate_design(design, frames=2, simulator=simulator, seed=11, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert report.beats == 4 * design.graph.output_type.pixels
    assert abs(report.estimate_error) <= 0.05, report.summary()

"""The example BFCN (1-bit weights, 2-bit activations): popcount units and thresholds in RTL vs golden.

`hwseg build examples/bfcn.pt --board pynq` maps its binary layers onto bit-convolution units
(no multipliers) and its BN + clip + 2-bit quantizers onto multi-threshold units; the whole
network's Verilog must equal golden on every beat, two unstalled and two stalled frames, under
Verilator (64×64) and Icarus (the same checkpoint at 8×8).
"""

from pathlib import Path

import pytest

from hwseg.backend import lower_graph
from hwseg.cosim import simulate_design
from hwseg.flow import build
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


def test_bfcn_rtl_matches_golden_icarus(work_dir):
    """The example checkpoint itself under Icarus, at an 8×8 input (the network is fully
    convolutional: the same weights, layers and kinds of units; only the line buffers are shorter) and
    folded to 100,000 fps, which unrolls the popcount units less than the 64×64 build (its Verilog is a
    third the size: Icarus compiles the 64×64 build's 6.8 MB for over ten minutes and runs its frames at
    a few hundred cycles per second). `hwseg sim examples/bfcn.pt --simulator icarus --input 16x16`
    runs it by hand."""
    design = build(EXAMPLE, "pynq", input_size=(8, 8), fps=100_000)
    binary = [n for n in design.graph if isinstance(n.op, Conv2d) and isinstance(n.op.weight_type, Bipolar)]
    assert len(binary) >= 4
    report = simulate_design(design, frames=2, simulator="icarus", seed=7, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # layers built to look at, not elaborated
def test_bfcn_with_folded_windows_matches_golden(work_dir):
    """Every binary convolution fully folded (one output channel a cycle, a tap a beat) with its window served
    from memory (a FoldedWindow into a serial BitMacArray, the lean form real-size BFCNs fit in), at 16×16: every
    beat equal to golden under stalls, cycles as estimated."""
    from hwseg.flow import compile_graph, load_graph

    graph, _ = load_graph(EXAMPLE, input_size=(16, 16))
    binary = [n for n in graph if isinstance(n.op, Conv2d) and isinstance(n.op.weight_type, Bipolar)
              and n.op.kernel != (1, 1)]
    assert len(binary) >= 3
    for node in binary:
        graph = graph.with_attrs(node.name, pe=1, simd=node.op.in_channels, window_request="folded")
    design = compile_graph(graph, "pynq")
    lowered = {node.name: node for node in lower_graph(design.graph)}
    for node in binary:
        assert design.graph[node.name].attrs["window"] == "folded", node.name
        layer = lowered[node.name].build()
        assert isinstance(layer.mac_array, BitMacArray) and layer.mac_array.serial, node.name
    report = simulate_design(design, frames=2, simulator="verilator", seed=11, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    print(report.summary())
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()

"""Buffers in DRAM, proven in RTL: a reduced ERFNet with every line buffer and skip FIFO in DRAM, under random
AXI-Stream stalls and a memory of random latency, every output beat equal to golden; its cycles and its DRAM
traffic as estimated when the layers set the pace (bench/offchip.py: when the memory does); weights loaded from DRAM
into on-chip RAM (issue 14)."""

from pathlib import Path

import pytest
import torch

from hwseg.cosim.network import simulate_design
from hwseg.flow import build, compile_graph, load_graph
from hwseg.frontend import to_graph
from hwseg.ir import Conv2d, RowTaps
from hwseg.offchip import SLOW_BURST
from hwseg.models import build_model
from hwseg.quant import calibrate
from tests.backend.nets import pointwise_chain

ROOT = Path(__file__).resolve().parents[1]
#: every ERFNet block type (downsamplers, non-bottleneck-1d blocks with dilations 2, 4, 8 and 16, transposed
#: convolutions), at a quarter of the width
ARGS = {"classes": 6, "width": 0.25, "blocks": [1, 4, 1, 1], "input_size": [64, 128], "dropout": False}


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    model = build_model("erfnet", ARGS)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    return to_graph(model.eval(), (3, 64, 128), name="erfnet_reduced")


def _failure(report) -> str:
    return "\n".join([report.summary(), *report.mismatches[:5]])


def _check_traffic(design, report):
    """Every word the estimate counts went through the memory: per frame, and once after reset (the weight image,
    the zero rows); besides, the line buffers' reads run ahead into the frame after the last (its top padding, from
    the zero row), at most their tap buffers."""
    estimate, frames = design.estimate, report.frames
    word = design.manifest["dram"]["data_bits"] // 8
    setup_read, setup_write = estimate.dram_setup_bytes
    reads = frames * estimate.roofline.dram_read_bytes // word + setup_read // word
    ahead = sum(node.op.taps * node.attrs["memory"]["read_buffer"] for node in design.graph
                if type(node.op).__name__ == "RowTaps")
    read, written = report.memory_words
    assert reads <= read <= reads + ahead, (read, reads, ahead)
    assert written == frames * estimate.roofline.dram_write_bytes // word + setup_write // word


def test_every_buffer_in_dram_under_stalls_and_memory_latency(graph):
    # (at 1,000 fps, below what the memory carries: the layers set the pace; at full speed the design is as fast as
    # the memory, and bench/offchip.py measures a memory that sets the pace)
    design = compile_graph(graph, "pynq-z2", offchip="all", fps=1000)
    estimate = design.estimate
    kinds = {buffer.kind for buffer in estimate.dram_buffers}
    assert kinds == {"rows", "fifo"} and len(estimate.dram_buffers) >= 30
    dilations = {node.op.dilation for node in design.graph if type(node.op).__name__ == "RowTaps"}
    assert {2, 4, 8, 16} <= dilations
    assert any(p["name"] == "m_axi_araddr" for p in design.ports) and design.manifest["dram"]["region_bytes"] > 0
    report = simulate_design(design, frames=2, seed=5, valid_prob=0.7, ready_prob=0.7, memory_latency=(20, 200),
                             memory_ready=0.9)
    assert report.passed, _failure(report)
    # the layers set the pace: cycles as estimated
    assert estimate.bound == "compute"
    assert abs(report.estimate_error) < 0.05, report.summary()
    _check_traffic(design, report)


def test_weights_loaded_from_dram_into_on_chip_ram():
    """On a part with UltraRAM every convolution's weights are written from the weight image in DRAM after reset
    (``--offchip all``), and each layer waits for its own: every beat equal to golden, under stalls and memory
    latency, and the memory reads the image once besides the buffers' traffic."""
    design = build(ROOT / "examples" / "int8_tiny.pt", "zcu104", offchip="all")
    estimate = design.estimate
    assert sum(buffer.kind == "weights" for buffer in estimate.dram_buffers) >= 3 and design.weight_image
    report = simulate_design(design, frames=2, seed=5, valid_prob=0.7, ready_prob=0.7, memory_latency=(20, 200),
                             memory_ready=0.9)
    assert report.passed, _failure(report)
    _check_traffic(design, report)


def test_two_layers_read_their_weights_from_one_ultraram():
    """Two fully folded 128 × 128 pointwise convolutions on a ZCU104 share one UltraRAM (a port each, written from
    the weight image after reset), a third keeps its own: every beat equal to golden under stalls and memory
    latency, the image read once."""
    graph = pointwise_chain()
    design = compile_graph(graph, "zcu104", offchip="all",
                           folding={node.name: {"pe": 1, "simd": 1} for node in graph if isinstance(node.op, Conv2d)})
    assert [node.attrs.get("weight_ram") for node in design.graph if isinstance(node.op, Conv2d)] == [
        ("c0", 0), ("c0", 1), None]
    report = simulate_design(design, frames=2, seed=7, valid_prob=0.7, ready_prob=0.7, memory_latency=(20, 200),
                             memory_ready=0.9)
    assert report.passed, _failure(report)
    _check_traffic(design, report)


# The case made bandwidth-bound with a slow memory (cycles within 5 % of the estimate) runs in bench/offchip.py
# (two minutes; the estimate's bandwidth bound itself is tests/backend/test_offchip.py's).


def test_the_cocotb_harness_runs_designs_with_buffers_in_dram():
    """cocotb with cocotbext-axi's AXI4 slave as the memory (random latency per burst, random pauses on every
    channel, the weight image in place): every beat equal to golden, the same words moved."""
    design = build(ROOT / "examples" / "int8_tiny.pt", "zcu104", offchip="all")
    report = simulate_design(design, frames=1, seed=5, valid_prob=0.7, ready_prob=0.7, memory_latency=(20, 200),
                             memory_ready=0.9, harness="cocotb")
    assert report.passed, _failure(report)
    _check_traffic(design, report)


@pytest.mark.parametrize("board", ["pynq-z2", "zcu104"])
def test_the_leanest_design_streams_words_through_its_line_buffers(board):
    """erfnet_tiny with every buffer in DRAM and every convolution one output channel a cycle with its window served
    from memory — the pointwise ones after a line buffer too (a 1×1 window of all its taps): the line buffers in
    DRAM take and give a memory word a beat, so no pixel of all the taps is ever held; on zcu104 (bursts of 32
    words) the buffers read slowly enough move in bursts of 16, the others in 32. Every beat equal to golden under stalls and memory
    latency; cycles as estimated; the traffic as counted."""
    graph, _ = load_graph(ROOT / "examples" / "erfnet_tiny.pt")
    for node in graph:
        if isinstance(node.op, Conv2d) and not node.op.channelwise:
            channels = node.op.in_channels
            simd = max(d for d in range(1, 9) if channels % d == 0)
            graph = graph.with_attrs(node.name, pe=1, simd=simd, window_request="folded")
    design = compile_graph(graph, board, offchip="all")
    words = [n for n in design.graph if isinstance(n.op, RowTaps) and n.attrs["out_lanes"] < design.graph.types[n.name].channels]
    served = [n for n in design.graph if isinstance(n.op, Conv2d) and n.op.kernel == (1, 1)
              and n.attrs.get("window") == "folded" and isinstance(design.graph[n.inputs[0]].op, RowTaps)]
    assert words and served
    bursts = {n.attrs["memory"]["burst"] for n in design.graph if isinstance(n.op, RowTaps)}
    assert (SLOW_BURST in bursts and max(bursts) == 32) if board == "zcu104" else bursts == {16}
    report = simulate_design(design, frames=2, seed=9, valid_prob=0.7, ready_prob=0.7, memory_latency=(20, 200),
                             memory_ready=0.9)
    print(report.summary())
    assert report.passed, _failure(report)
    assert abs(report.estimate_error) < 0.05, report.summary()
    _check_traffic(design, report)

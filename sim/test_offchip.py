"""Buffers in DRAM, proven in RTL: a reduced ERFNet with every line buffer and skip FIFO in DRAM, under random
AXI-Stream stalls and a memory of random latency, every output beat equal to golden; its cycles and its DRAM
traffic as estimated, both when the layers set the pace and when the memory does (issue 14)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from hwseg.boards import load_board
from hwseg.cosim.network import simulate_design
from hwseg.flow import compile_graph
from hwseg.frontend import to_graph
from hwseg.models import build_model
from hwseg.quant import calibrate

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


def test_every_buffer_in_dram_under_stalls_and_memory_latency(graph):
    design = compile_graph(graph, "pynq-z2", offchip="all")
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
    # every word the estimate counts, and no other, went through the memory (4 frames)
    frames, word = report.frames, design.manifest["dram"]["data_bits"] // 8
    assert report.memory_words == (frames * estimate.roofline.dram_read_bytes // word,
                                   frames * estimate.roofline.dram_write_bytes // word)


def test_a_slow_memory_sets_the_pace_as_estimated(graph):
    """The memory takes a beat in a tenth of the cycles each way, and the board says so: the design is
    bandwidth-bound, and the frames leave at the pace the estimate gives. The layers share the memory, so the
    frames leave unevenly (upstream layers run ahead on buffers held in DRAM, frames alternate long and short):
    the mean over eight frames after the first four is what the estimate gives."""
    base = load_board("pynq-z2")
    board = replace(base, dram=replace(base.dram, port_efficiency=0.1))
    design = compile_graph(graph, board, offchip="all")
    estimate = design.estimate
    assert estimate.bound == "bandwidth"
    assert estimate.bandwidth_cycles_per_frame > 1.3 * estimate.compute_cycles_per_frame
    report = simulate_design(design, frames=10, seed=2, valid_prob=1.0, ready_prob=1.0, memory_latency=(20, 200),
                             memory_ready=0.1)
    assert report.passed, _failure(report)
    pixels = design.graph.output_type.pixels
    ends = report.output_cycles[pixels - 1::pixels]
    assert len(ends) == 12
    period = (ends[-1] - ends[3]) / 8
    assert abs(period / estimate.cycles_per_frame - 1) < 0.05, (period, estimate.cycles_per_frame, np.diff(ends))

"""Buffers in DRAM (issue 14): the line-buffer rewrite computes what the convolution did, the placement modes, the
boards' DRAM, the bandwidth bound, the ports and the errors; weights loaded from DRAM into UltraRAM."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwseg.boards import known_boards, load_board
from hwseg.errors import DoesNotFitError, OffchipError, UnsupportedError
from hwseg.estimate.offchip import memory_parameters
from hwseg.flow import build, compile_graph, load_graph
from hwseg.golden import run_graph
from hwseg.ir import Bipolar, Concat, Conv2d, Graph, Input, Int, IRError, MulShift, Node, RowTaps, UInt
from hwseg.offchip import check_mode
from hwseg.passes import place_line_buffers, place_weights
from tests.backend.nets import pointwise_chain

ROOT = Path(__file__).resolve().parents[2]
MEMORY = {"data_bits": 64, "address_bits": 32, "burst": 16, "outstanding": 4, "read_buffer": 64, "latency": 30}


def _frames(graph, count=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *graph.input_type.shape))


@pytest.mark.parametrize("name", ["erfnet_tiny", "bfcn_tiny", "int_fcn_tiny", "fpl_tiny"])
def test_rows_in_dram_compute_what_the_convolutions_did(name):
    graph, _ = load_graph(ROOT / "examples" / f"{name}.pt")
    moved = place_line_buffers.movable(graph)
    assert moved, name
    rewritten, changed = place_line_buffers.apply(graph, select=moved, memory=MEMORY)
    assert changed
    assert all(rewritten[n].op.kernel[0] == 1 for n in moved)
    assert all(isinstance(rewritten[n + "_rows"].op, RowTaps) and rewritten[n + "_rows"].attrs["offchip"] for n in moved)
    x = _frames(graph)
    # expected: the original graph, run by golden (the rewrite is not involved)
    np.testing.assert_array_equal(run_graph(rewritten, x), run_graph(graph, x))


def _one_conv(height=12, width=10, channels=4, kernel=(3, 1), stride=(1, 1), padding=(1, 0), dilation=(1, 1)):
    rng = np.random.default_rng(1)
    weight = rng.integers(-127, 128, (6, channels, *kernel))
    nodes = [Node("input", Input((channels, height, width), UInt(8))),
             Node("conv", Conv2d(weight, rng.integers(-9, 9, 6), Int(8), stride, padding, dilation), ("input",)),
             Node("act", MulShift(np.full(6, 3), 10, 0, 255), ("conv",))]
    return Graph(nodes, name="one")


def test_the_rewrite_refuses_what_it_cannot_move_by_name():
    graph = _one_conv(kernel=(1, 3), padding=(0, 1))
    assert place_line_buffers.movable(graph) == []
    with pytest.raises(UnsupportedError, match="layer 'conv' .* one row high"):
        place_line_buffers.apply(graph, select=["conv"], memory=MEMORY)
    with pytest.raises(UnsupportedError, match="no layer named 'nope'"):
        place_line_buffers.apply(graph, select=["nope"], memory=MEMORY)


def test_row_taps_type_and_errors():
    x = Graph([Node("input", Input((5, 9, 7), UInt(4)))]).input_type
    assert RowTaps(3, 2, 1, 1).infer([x]).shape == (15, 5, 7)
    assert RowTaps(3, 1, 16, 16).infer([x]).shape == (15, 9, 7)
    with pytest.raises(IRError, match="padding must be at most"):
        RowTaps(3, 1, 3, 1)
    with pytest.raises(IRError, match="taps"):
        RowTaps(1)


def test_every_board_says_whether_it_has_dram():
    for board in known_boards():
        if board.dram is None:
            assert board.no_dram, board.name
        else:
            assert board.dram.source and board.dram.data_bits in (64, 128) and 0 < board.dram.efficiency <= 1
            assert board.dram.usable_mbs > 0 and board.dram.port_mbs(board.clock_mhz) > 0


def test_the_placement_modes_and_a_board_without_dram():
    assert check_mode(None, load_board("pynq-z2")) == "auto"
    assert check_mode(None, load_board("ulx3s-85f")) == "none"
    assert check_mode("none", load_board("ulx3s-85f")) == "none"
    for mode in ("all", "auto"):
        with pytest.raises(OffchipError, match="ulx3s-85f has no DRAM for activations .*use --offchip none"):
            check_mode(mode, load_board("ulx3s-85f"))
    with pytest.raises(OffchipError, match="--offchip must be one of none, all, auto, not 'some'"):
        check_mode("some", load_board("pynq-z2"))


def test_a_design_with_nothing_off_chip_keeps_its_ports_exactly():
    path = ROOT / "examples" / "int8_tiny.pt"
    default, on_chip = build(path, "pynq-z2"), build(path, "pynq-z2", offchip="none")
    assert default.ports == on_chip.ports and default.verilog == on_chip.verilog
    assert [p["name"] for p in default.ports] == ["clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                                                   "s_axis_tlast", "m_axis_tdata", "m_axis_tvalid", "m_axis_tready",
                                                   "m_axis_tlast"]
    assert "dram" not in default.manifest and not default.estimate.dram_buffers


def test_a_design_with_buffers_in_dram_has_the_memory_port_and_says_where(tmp_path):
    design = build(ROOT / "examples" / "int_fcn_tiny.pt", "pynq-z2", offchip="all")
    names = {p["name"]: p for p in design.ports}
    assert names["dram_base"]["direction"] == "in" and names["dram_base"]["width"] == 32
    assert names["m_axi_rdata"]["width"] == 64 and names["m_axi_wstrb"]["width"] == 8
    assert names["m_axi_araddr"]["direction"] == "out" and names["m_axi_rvalid"]["direction"] == "in"
    dram = design.manifest["dram"]
    regions = dram["regions"]
    assert len(regions) == len(design.estimate.dram_buffers)
    offsets = [r["offset"] for r in regions]
    assert offsets == sorted(offsets) and all(o % 4096 == 0 for o in offsets)
    assert all(a["offset"] + a["bytes"] <= b["offset"] for a, b in zip(regions, regions[1:]))
    assert dram["region_bytes"] >= regions[-1]["offset"] + regions[-1]["bytes"]
    assert dram["region_bytes"] == design.estimate.dram_region_bytes
    target = design.write(tmp_path)
    assert json.loads((target / "manifest.json").read_text())["dram"]["data_bits"] == 64
    report = json.loads((target / "report.json").read_text())
    assert report["dram"]["bytes_per_frame"] == design.estimate.dram_bytes_per_frame > 0
    assert "## In DRAM" in (target / "report.md").read_text()
    # a part without UltraRAM keeps every weight in ROM
    assert "weights" not in dram and not design.weight_image and not (target / "weights.bin").exists()


def _row_traffic_bytes(height, width, channels, taps, stride, padding, dilation, data_bits):
    """By the definition: each input row written once; per output pixel, each tap read once (a padding tap from
    the row of zeros); a pixel takes whole words."""
    words = -(-channels * 8 // data_bits)
    out_height = (height + 2 * padding - (taps - 1) * dilation - 1) // stride + 1
    reads = out_height * taps
    return height * width * words * data_bits // 8, reads * width * words * data_bits // 8


def test_a_design_whose_traffic_exceeds_the_bandwidth_is_bandwidth_bound():
    graph = _one_conv(height=64, width=64, channels=16, dilation=(4, 1), padding=(4, 0))
    base = load_board("pynq-z2")
    slow = replace(base, dram=replace(base.dram, peak_mbs=20.0, efficiency=1.0))
    design = compile_graph(graph, slow, offchip="all", estimate_only=True)
    estimate = design.estimate
    writes, reads = _row_traffic_bytes(64, 64, 16, 3, 1, 4, 4, slow.dram.data_bits)
    assert (estimate.roofline.dram_read_bytes, estimate.roofline.dram_write_bytes) == (reads, writes)
    # 20 MB/s for reads and writes together
    assert estimate.bound == "bandwidth"
    assert estimate.fps == pytest.approx(20e6 / (reads + writes), rel=1e-4)
    assert estimate.roofline.binding_bound == "bandwidth"
    assert "bandwidth-bound" in design.table()
    # the same design on the real board: the layers set the pace
    fast = compile_graph(graph, base, offchip="all", estimate_only=True).estimate
    assert fast.bound == "compute" and fast.fps > estimate.fps


def test_weights_that_cannot_fit_on_chip_are_one_error_with_the_figures():
    """A 1×1 convolution of 512 × 512 8-bit weights (2 Mb: block RAM even fully folded) on a board with 40 BRAM18."""
    rng = np.random.default_rng(2)
    nodes = [Node("input", Input((512, 4, 4), UInt(8))),
             Node("conv", Conv2d(rng.integers(-127, 128, (512, 512, 1, 1)), np.zeros(512, dtype=np.int64), Int(8)),
                  ("input",))]
    base = load_board("pynq-z2")
    small = replace(base, resources={**base.resources, "bram": 40})
    for mode in ("none", "auto"):
        with pytest.raises(DoesNotFitError, match=r"^the weights alone do not fit pynq-z2: 2\.1 Mb of weights take "
                                                  r"[\d,]+ of 40 BRAM18 even fully folded.*fewer weight bits.*"
                                                  r"bigger board \(.*zcu104\)$"):
            compile_graph(Graph(nodes, name="wide"), small, offchip=mode)


def test_the_memory_parameters_cover_the_latency():
    board = load_board("zcu104")
    memory = memory_parameters(board.dram, board.clock_mhz)
    latency = board.dram.latency_cycles(board.clock_mhz)
    assert memory["read_buffer"] >= 2 * memory["burst"] + latency and memory["read_buffer"] % memory["burst"] == 0


def test_weights_load_from_dram_on_a_part_with_ultraram(tmp_path):
    design = build(ROOT / "examples" / "int8_tiny.pt", "zcu104", offchip="all")
    convs = [node.name for node in design.graph if isinstance(node.op, Conv2d) and not node.op.channelwise
             and not isinstance(node.op.weight_type, Bipolar)]
    assert convs and [n.name for n in design.graph if n.attrs.get("weight_memory") == "uram"] == convs
    dram = design.manifest["dram"]
    weights = dram["weights"]
    assert weights["bytes"] == len(design.weight_image) == design.estimate.weight_image_bytes > 0
    region = next(r for r in dram["regions"] if r["buffer"] == "weights")
    assert (region["offset"], region["bytes"]) == (weights["offset"], weights["bytes"]) and region["offset"] % 4096 == 0
    assert dram["region_bytes"] == design.estimate.dram_region_bytes
    assert sum(b.kind == "weights" for b in design.estimate.dram_buffers) == len(convs)
    target = design.write(tmp_path)
    image = (target / "weights.bin").read_bytes()
    assert image == design.weight_image and hashlib.sha256(image).hexdigest() == weights["sha256"]
    assert "weights (read once after reset)" in (target / "report.md").read_text()


def _wide_pointwise(cout=128, cin=512):
    """A 1×1 convolution of 512 Kb of 8-bit weights: fully folded, 8192 deep — UltraRAM once it may go there."""
    rng = np.random.default_rng(5)
    return Graph([Node("x", Input((cin, 2, 2), UInt(8))),
                  Node("conv", Conv2d(rng.integers(-127, 128, (cout, cin, 1, 1)), np.zeros(cout, dtype=np.int64),
                                      Int(8)), ("x",))], name="wide")


def test_loaded_weights_that_go_to_ultraram_ask_synthesis_for_it():
    design = compile_graph(_wide_pointwise(), "zcu104", offchip="all", folding={"conv": {"pe": 1, "simd": 1}})
    layer = next(layer for layer in design.estimate.layers if layer.name == "conv")
    assert layer.split.memory["weights"]["uram"] == 2 and layer.split.memory["weights"]["bram"] == 0
    assert design.graph["conv"].attrs["weight_ram_style"] == "ultra"
    assert design.verilog.count('ram_style = "ultra"') == 1
    # the tables show UltraRAM where the part has it: the total and the share of the part's 96
    table = design.table().splitlines()
    assert table[0].split()[-3:] == ["URAM", "cycles/frame", "folding"]
    total = next(line for line in table if line.startswith("total")).split()
    used = next(line for line in table if line.startswith("used")).split()
    assert total[5] == "2" and used[-2:] == [f"{100 * 2 / 96:.1f}", "%"]
    assert "| URAM | cycles/frame |" in design.files()["report.md"]
    # in ROM the same weights take block RAM, and nothing asks for UltraRAM
    rom = compile_graph(_wide_pointwise(), "zcu104", offchip="none", folding={"conv": {"pe": 1, "simd": 1}})
    assert "ultra" not in rom.verilog and rom.estimate.split.memory["weights"]["bram"] > 0


def test_weights_that_fit_only_in_ultraram_are_loaded_there():
    """On a part whose block RAM (and LUTs, for a ROM in logic) cannot hold the weights, auto loads them into
    UltraRAM; without UltraRAM the same design is the one-line weights error."""
    base = load_board("zcu104")
    small = replace(base, resources={**base.resources, "bram": 8, "lut": 4000})
    design = compile_graph(_wide_pointwise(), small, estimate_only=True)
    assert not design.estimate.overflows() and design.estimate.weight_image_bytes == 128 * 512
    no_uram = replace(small, uram=0, resources={k: v for k, v in small.resources.items() if k != "uram"})
    with pytest.raises(DoesNotFitError, match=r"^the weights alone do not fit zcu104: 0\.5 Mb of weights take "
                                              r"[\d,]+ of 8 BRAM18 even fully folded"):
        compile_graph(_wide_pointwise(), no_uram)


def test_place_weights_refuses_what_cannot_load_by_name():
    rng = np.random.default_rng(0)
    graph = Graph([Node("x", Input((4, 6, 6), UInt(8))),
                   Node("bin", Conv2d(rng.choice([-1, 1], (4, 4, 3, 3)), np.zeros(4, dtype=np.int64), Bipolar(),
                                      padding=1), ("x",))])
    assert place_weights.movable(graph) == []
    with pytest.raises(UnsupportedError, match=r"^layer 'bin' \(.*\) cannot load its weights from DRAM"):
        place_weights.apply(graph, select=["bin"], memory={})
    with pytest.raises(UnsupportedError, match="there is no layer 'nope' to load weights for"):
        place_weights.apply(graph, select=["nope"], memory={})


@pytest.mark.parametrize("channels,bits,produced,taken,data_bits,lanes", [
    (128, 8, 1, 1, 128, 16),    # one 128-bit word: 16 lanes, not the 1,024-bit pixel
    (128, 8, 1, 1, 64, 8),
    (20, 8, 1, 1, 128, 10),     # 2 words a pixel either way (10 or 20 lanes): the fewer lanes
    (20, 8, 4, 1, 128, 20),     # multiples of 4: 4 lanes would take 5 words a pixel, 20 take 2
    (20, 8, 1, 4, 128, 20),
    (48, 2, 1, 1, 64, 24),      # 2 words a pixel (24 or 48 lanes); 16 lanes would take 3
    (16, 8, 16, 16, 128, 16),   # whole pixels in and out: whole pixels
    (128, 9, 1, 1, 128, 8),     # 9-bit: a pixel is 9 words whole, 16 in beats of 8 (a word) — not 1,152-bit beats
    (64, 9, 1, 1, 64, 4),       # 4 lanes (a word) or 8 (two) both take 16 words a pixel: the fewer lanes
    (128, 9, 128, 1, 128, 128), # whole pixels from the producer: nothing narrower to take
])
def test_a_fifo_in_dram_keeps_beats_of_about_a_word(channels, bits, produced, taken, data_bits, lanes):
    """The lanes of a DRAM FIFO's beat (figures by hand): a multiple of the producer's and the consumer's lanes
    dividing the channels, of at most two memory words where one is, the fewest memory words per pixel, then the
    fewest lanes."""
    from hwseg.passes.place_fifos import dram_fifo_lanes
    conv = Conv2d(np.ones((4, channels, 1, 1), dtype=np.int64), np.zeros(4, dtype=np.int64), Int(2))
    graph = Graph([Node("x", Input((channels, 2, 2), UInt(bits)), (), {"out_lanes": produced}),
                   Node("c", conv, ("x",), {"in_lanes": taken})])
    assert dram_fifo_lanes(graph, graph["c"], 0, data_bits) == lanes


def test_the_fifos_in_dram_are_regrouped_into_word_beats():
    """erfnet_tiny, every FIFO in DRAM: the passes give each its beat (at most two words, or what the producer
    gives; never more than twice the words a pixel of whole pixels), the hardware's regions are the estimate's, and
    joins fed a few lanes a beat keep fewer than whole pixels."""
    design = build(ROOT / "examples" / "erfnet_tiny.pt", "pynq-z2", offchip="all")
    joins = [n for n in design.graph if any(n.attrs.get("fifo_offchip", ()))]
    assert joins
    for node in joins:
        for k, (offchip, lanes) in enumerate(zip(node.attrs["fifo_offchip"], node.attrs["fifo_lanes"])):
            x = design.graph.input_types(node.name)[k]
            assert (lanes == 0) == (not offchip)
            if offchip:
                assert x.channels % lanes == 0
                words = (x.channels // lanes) * -(-lanes * x.dtype.bits // 64)
                assert words <= 2 * -(-x.channels * x.dtype.bits // 64)
                produced = design.graph[node.inputs[k]].attrs["out_lanes"]
                taken = x.channels if isinstance(node.op, Concat) else node.attrs["in_lanes"]   # (whole pixels)
                assert lanes * x.dtype.bits <= 2 * 64 or lanes == max(produced, taken)
    assert any(0 < lanes < design.graph.input_types(n.name)[k].channels
               for n in joins for k, lanes in enumerate(n.attrs["fifo_lanes"]))
    assert [r["bytes"] for r in design.manifest["dram"]["regions"]] == [
        b.region_bytes for b in design.estimate.dram_buffers]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")    # line buffers built to look at
def test_line_buffers_in_dram_stream_a_word_a_beat_where_they_can():
    """erfnet_tiny, every line buffer in DRAM (64-bit words, 8-bit activations): a line buffer whose channels fill
    whole words takes and gives a word (8 channels) a beat, so nothing around it holds a pixel; one of 4 channels
    (half a word) keeps whole pixels."""
    from hwseg.backend import lower_graph

    design = build(ROOT / "examples" / "erfnet_tiny.pt", "pynq-z2", offchip="all")
    lowered = {node.name: node for node in lower_graph(design.graph)}
    rows = [n for n in design.graph if isinstance(n.op, RowTaps)]
    words = [n for n in rows if n.attrs["out_lanes"] < design.graph.types[n.name].channels]
    assert words and len(words) < len(rows)
    for node in rows:
        x = design.graph.input_types(node.name)[0]
        hw = lowered[node.name].build()
        if node in words:
            assert node.attrs["in_lanes"] == node.attrs["out_lanes"] == hw.lanes == 64 // x.dtype.bits
            assert x.channels % hw.lanes == 0
        else:
            assert hw.lanes is None and node.attrs["in_lanes"] == x.channels


def test_buffers_read_slowly_get_short_bursts_and_small_staging():
    """size_staging on erfnet_tiny, every buffer in DRAM on zcu104 (bursts of 32 words, the read staging covering
    the latency): at its own frame time each buffer keeps bursts of 32; read a million times slower, each takes
    bursts of 16 and two of them of read staging (a 32-deep LUTRAM), for the same words moved."""
    from hwseg.estimate import estimate_graph
    from hwseg.offchip import size_staging

    design = build(ROOT / "examples" / "erfnet_tiny.pt", "zcu104", offchip="all", estimate_only=True)
    buffers = [n for n in design.graph if isinstance(n.op, RowTaps) or any(n.attrs.get("fifo_offchip", ()))]
    assert buffers and {n.attrs["memory"]["burst"] for n in buffers} == {32}
    slow = size_staging(design.graph, design.estimate.cycles_per_frame * 10**6)
    assert {(slow[n.name].attrs["memory"]["burst"], slow[n.name].attrs["memory"]["read_buffer"]) for n in buffers} \
        == {(16, 32)}
    before, after = design.estimate, estimate_graph(slow, load_board("zcu104"))
    assert after.dram_bytes_per_frame == before.dram_bytes_per_frame
    assert after.total.memory_bits < before.total.memory_bits


def _folded(graph):
    return {node.name: {"pe": 1, "simd": 1} for node in graph if isinstance(node.op, Conv2d)}


def test_loaded_weights_pair_up_in_ultraram_where_it_saves_ultraram():
    """Three 128 × 128 pointwise convolutions, fully folded on a ZCU104, weights loaded: each alone takes an
    UltraRAM (2,048 words), the first two share one (4,096 words, a port each) and the third keeps its own; the
    estimate counts 2 UltraRAMs, not 3, and the Verilog asks for UltraRAM twice."""
    graph = pointwise_chain()
    design = compile_graph(graph, "zcu104", offchip="all", folding=_folded(graph))
    pairs = {node.name: node.attrs.get("weight_ram") for node in design.graph if isinstance(node.op, Conv2d)}
    assert pairs == {"c0": ("c0", 0), "c1": ("c0", 1), "c2": None}
    assert design.estimate.total.uram == 2 and design.estimate.split.memory["weights"]["bram"] == 0
    assert design.verilog.count('ram_style = "ultra"') == 2
    assert "c0_weight_ram" in design.verilog


@pytest.mark.parametrize("board,widths,spare,paired", [
    ("zcu104", (128, 256, 128), 0, False),  # 4,096 words each: an UltraRAM each; together two: nothing saved
    ("kv260", (64, 128, 64), 1, True),      # 1,024 words, 4 RAMB18 each; together one UltraRAM, worth 4.5 (288 / 64)
    ("kv260", (64, 128, 64), 0, False),     # … but no UltraRAM to spare
    ("zcu104", (64, 128, 64), 1, True),     # … worth 6.5 on a ZCU104 (624 / 96), still fewer than the 8 freed
    ("kv260", (32, 128, 32), 1, False),     # 512 words, 2 RAMB18 each: one UltraRAM is worth more than the 4 freed
])
def test_pairing_weighs_what_it_saves(board, widths, spare, paired):
    """By hand: where each store goes alone (memory_mapping: 8-bit folds packed 8 to a 64-bit word), what the two
    take together in UltraRAM (4,096 words each) and, from block RAM, the UltraRAM the design leaves decide."""
    from hwseg.offchip import pair_weight_rams
    memory = {"data_bits": 128, "address_bits": 40, "burst": 32, "outstanding": 4, "read_buffer": 64}
    graph = pointwise_chain(widths)
    graph = graph.replace([n.with_attrs(pe=1, simd=1, weight_memory="uram", memory=memory)
                           if isinstance(n.op, Conv2d) else n for n in graph])
    paired_graph = pair_weight_rams(graph, load_board(board), spare_uram=spare)
    expected = {"c0": ("c0", 0), "c1": ("c0", 1)} if paired else {"c0": None, "c1": None}
    assert {name: paired_graph[name].attrs.get("weight_ram") for name in ("c0", "c1")} == expected

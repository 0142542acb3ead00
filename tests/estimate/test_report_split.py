"""Where the board goes (issue 12, report): each layer's memory split by what it holds (window, weights, FIFOs)
and its LUT and FF by datapath and control, from the same formulas as its totals; the parts sum to the totals
exactly, on every layer of zoo networks on three families; the figures a user can check by hand (a folded
window's ring, a weight ROM, a skip FIFO, the counters) are where they belong; report.json, report.md and
report.html show them."""

import json
import re
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
from amaranth import unsigned

from hwseg.estimate import resources as R
from hwseg.estimate.network import estimate_graph
from hwseg.flow import build
from hwseg.hw.folded_window import FoldedWindow
from hwseg.ir import Add, Concat, Conv2d

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MEMORY = ("window", "weights", "fifos")
LOGIC = ("datapath", "control")
#: (network, board, input size): xc7, ECP5, UltraScale+ (with URAM at the larger size)
CASES = [(network, board, None) for network in ("erfnet_tiny", "bfcn_tiny", "int_fcn_tiny", "fpl_tiny")
         for board in ("pynq-z2", "ulx3s-85f", "zcu104")] + [("fpl_tiny", "zcu104", (256, 512))]


@lru_cache(maxsize=None)
def _design(network: str, board: str, size=None):
    return build(EXAMPLES / f"{network}.pt", board, estimate_only=True, input_size=size)


def _memory_sum(split, key):
    return sum(split.memory[role][key] for role in MEMORY)


def _logic_sum(split, key):
    return sum(split.logic[role][key] for role in LOGIC)


def _bits(n: int) -> int:
    """Bits of a counter over ``n`` values, by hand: the least ``b`` with ``2^b ≥ n`` (at least 1)."""
    b = 1
    while 2 ** b < n:
        b += 1
    return b


@pytest.mark.parametrize("network, board, size", CASES)
def test_split_sums_to_every_layers_totals(network, board, size):
    design = _design(network, board, size)
    estimate = design.estimate
    for layer in estimate.layers:
        split, res = layer.split, layer.resources
        assert set(split.memory) == set(MEMORY) and set(split.logic) == set(LOGIC)
        assert (_memory_sum(split, "bits"), _memory_sum(split, "bram"), _memory_sum(split, "uram")) == \
            (res.memory_bits, res.bram, res.uram), layer.name
        assert (_logic_sum(split, "lut"), _logic_sum(split, "ff")) == (res.lut, res.ff), layer.name
        # the memories' own LUTs and FFs are datapath logic
        assert _memory_sum(split, "lut") <= split.logic["datapath"]["lut"], layer.name
        assert _memory_sum(split, "ff") <= split.logic["datapath"]["ff"], layer.name
        assert all(value >= 0 for part in split.memory.values() for value in part.values()), layer.name
        assert all(value >= 0 for part in split.logic.values() for value in part.values()), layer.name
    total = estimate.split
    assert (_memory_sum(total, "bits"), _memory_sum(total, "bram"), _memory_sum(total, "uram"),
            _logic_sum(total, "lut"), _logic_sum(total, "ff")) == \
        (estimate.total.memory_bits, estimate.total.bram, estimate.total.uram, estimate.total.lut, estimate.total.ff)
    # every layer has logic; a real network has control and datapath, memory of every kind
    assert total.logic["control"]["lut"] > 0 and total.logic["datapath"]["lut"] > 0
    assert all(total.memory[role]["bits"] > 0 for role in MEMORY)
    # report.json: the same figures per layer and in total
    report = json.loads(design.files()["report.json"])
    for entry in report["layers"]:
        split = entry["split"]
        assert sum(split["memory"][role]["bits"] for role in MEMORY) == entry["memory_bits"], entry["name"]
        assert sum(split["memory"][role]["bram"] for role in MEMORY) == entry["bram"], entry["name"]
        assert sum(split["logic"][role]["lut"] for role in LOGIC) == entry["lut"], entry["name"]
        assert sum(split["logic"][role]["ff"] for role in LOGIC) == entry["ff"], entry["name"]
    for key in ("bram", "lut", "ff"):
        group = "logic" if key in ("lut", "ff") else "memory"
        assert sum(part[key] for part in report["split"][group].values()) == report["total"][key]
        assert report["split"][group] == {role: {k: sum(e["split"][group][role][k] for e in report["layers"])
                                                 for k in part} for role, part in report["split"][group].items()}


def test_the_larger_zcu104_design_puts_urams_where_they_are_used():
    split = _design("fpl_tiny", "zcu104", (256, 512)).estimate.split
    assert _memory_sum(split, "uram") > 0          # the case the sums above cover with URAM


@pytest.mark.parametrize("board", ["pynq-z2", "ulx3s-85f"])
def test_folded_window_ring_under_window_and_weight_rom_under_weights(board):
    design = _design("erfnet_tiny", board)
    graph, layers = design.graph, {layer.name: layer for layer in design.estimate.layers}
    folded = [node for node in graph if layers[node.name].folding.get("window") == "folded"]
    assert folded
    for node in folded:
        op, x, layer = node.op, graph.input_types(node.name)[0], layers[node.name]
        pe, simd = node.attrs["pe"], node.attrs["simd"]
        nf, sf = op.out_channels // pe, op.kernel[0] * op.kernel[1] * x.channels // simd
        # the ring the hardware builds: P padded positions of every channel
        ring = FoldedWindow(elem_shape=unsigned(x.dtype.bits), channels=x.channels, height=x.height, width=x.width,
                            kernel=op.kernel, stride=op.stride, padding=op.padding, dilation=op.dilation, simd=simd,
                            repeats=nf)
        window = layer.split.memory["window"]
        assert window["bits"] == ring.ring_positions * x.channels * x.dtype.bits, node.name
        kind, cells = layer.line_buffer_memory                 # where the ring is placed, counted once
        placed = {"bram": 0, "uram": 0, "lutram": 0}
        if kind != "logic":
            placed[{"block": "bram", "huge": "uram", "distributed": "lutram"}[kind]] = cells
        assert {key: window[key] for key in placed} == placed, node.name
        # the weight ROM (NF·SF words of PE·SIMD weights: every weight once) and the bias ROM (NF words of PE
        # 8-bit biases) when the array is folded
        weights = (op.out_channels * op.kernel[0] * op.kernel[1] * x.channels * op.weight_type.bits
                   if nf * sf > 1 else 0) + (op.out_channels * 8 if nf > 1 else 0)
        assert layer.split.memory["weights"]["bits"] == weights, node.name
        # the input FIFO: D − 1 words of the beat in memory (the last word is the output register)
        depth = node.attrs.get("fifo_depth", 0)
        fifo_bits = (max(depth, 3) - 1) * node.attrs["in_lanes"] * x.dtype.bits if depth else 0
        assert layer.split.memory["fifos"]["bits"] == fifo_bits, node.name


@pytest.mark.parametrize("network", ["erfnet_tiny", "fpl_tiny"])
def test_joins_show_their_skip_fifos_under_fifos(network):
    design = _design(network, "pynq-z2")
    graph, layers = design.graph, {layer.name: layer for layer in design.estimate.layers}
    joins = [node for node in graph if isinstance(node.op, (Add, Concat)) and any(node.attrs.get("skip_fifos", ()))]
    assert joins
    for node in joins:
        layer = layers[node.name]
        expected = 0
        for source, depth, x in zip(node.inputs, node.attrs["skip_fifos"], graph.input_types(node.name)):
            lanes = x.channels if isinstance(node.op, Concat) else node.attrs["in_lanes"]
            produced = graph[source].attrs["out_lanes"]
            if depth and produced > lanes and sum(n.inputs.count(source) for n in graph) > 1:
                # a join's FIFO in front of a converter that splits a forked stream holds the wide beats
                depth, lanes = -(-depth * lanes // produced), produced
            expected += (max(depth, 3) - 1) * lanes * x.dtype.bits if depth else 0
        split = layer.split
        assert split.memory["fifos"]["bits"] == expected > 0, node.name
        assert split.memory["window"]["bits"] == split.memory["weights"]["bits"] == 0, node.name
        # the blocks are those each FIFO is placed in
        placed = {"block": 0, "huge": 0, "distributed": 0}
        for kind, cells in layer.fifo_memories:
            placed[kind] = placed.get(kind, 0) + cells
        assert (split.memory["fifos"]["bram"], split.memory["fifos"]["uram"], split.memory["fifos"]["lutram"]) == \
            (placed["block"], placed["huge"], placed["distributed"]), node.name


# --- the classification, by hand (fitted constants set to 1: every term is its structural count) -------------

@pytest.fixture
def unit_constants(monkeypatch):
    monkeypatch.setattr(R, "_CONSTANTS", {})


def _split(formula, **kwargs):
    with R.splitting() as entries:
        res = formula(**kwargs)
    return res, R.Split.of(entries)


@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_fifo_pointers_and_flags_are_control_its_words_fifos(unit_constants, family):
    res, split = _split(R.fifo, depth=100, width=16, family=family)
    # three counters over 100 (read and write pointers, level): 7 bits each, 2 LUTs and 1 FF a bit; the flags
    # and handshake: 4 LUTs, 2 FFs
    assert split.logic["control"] == {"lut": 4 + 2 * 3 * 7, "ff": 2 + 3 * 7}
    assert split.memory["fifos"]["bits"] == 99 * 16
    assert split.memory["window"]["bits"] == split.memory["weights"]["bits"] == 0
    # what is not control is the memory itself
    assert split.logic["datapath"] == {"lut": split.memory["fifos"]["lut"], "ff": split.memory["fifos"]["ff"]}
    assert (split.logic["datapath"]["lut"] + split.logic["control"]["lut"],
            split.logic["datapath"]["ff"] + split.logic["control"]["ff"]) == (res.lut, res.ff)


def test_mac_array_fold_counters_are_control_its_roms_weights(unit_constants):
    res, split = _split(R.mac_array, in_count=24, in_bits=8, weight_bits=8, out_channels=8, pe=4, simd=8,
                        acc_bits=24, family="xc7")
    nf, sf = 2, 3
    # counters over NF·SF = 6, SF = 3, NF = 2 folds: 3 + 2 + 1 bits
    assert split.logic["control"] == {"lut": 2 * 6, "ff": 6}
    assert split.memory["weights"]["bits"] == nf * sf * 4 * 8 * 8 + nf * 4 * 8     # weights, then biases
    assert split.logic["datapath"]["lut"] + 12 == res.lut and split.logic["datapath"]["ff"] + 6 == res.ff


def test_requantizer_group_counter_is_control(unit_constants):
    res, split = _split(R.mul_shift, lanes=2, channels=8, acc_bits=20, out_bits=8, shift=12, family="xc7")
    assert split.logic["control"] == {"lut": 2 * _bits(4), "ff": _bits(4)}    # 4 channel groups
    assert split.logic["datapath"]["lut"] > 0 and _memory_sum(split, "bits") == 0


def test_fork_and_output_adapter_are_control(unit_constants):
    res, split = _split(R.stream_fork, outputs=3, family="xc7")
    assert split.logic["datapath"] == {"lut": 0, "ff": 0} and split.logic["control"] == {"lut": res.lut, "ff": res.ff}
    res, split = _split(R.axis_adapter, beats_per_frame=1000, family="xc7")
    assert split.logic["control"] == {"lut": 2 * 10, "ff": 10} == {"lut": res.lut, "ff": res.ff}


@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_folded_window_ring_is_window_memory_the_rest_control(unit_constants, family):
    channels, simd, bits, positions = 16, 4, 8, 70
    res, split = _split(R.folded_window, channels=channels, elem_bits=bits, simd=simd, repeats=2, kernel=(3, 3),
                        padded_width=34, padded_height=34, out_width=32, out_height=32, ring_positions=positions,
                        family=family)
    assert split.memory["window"]["bits"] == positions * channels * bits
    assert split.logic["datapath"] == {"lut": split.memory["window"]["lut"], "ff": split.memory["window"]["ff"]}
    assert split.logic["control"]["lut"] == res.lut - split.memory["window"]["lut"] > 0


def test_every_part_has_a_role_and_every_memory_a_role():
    assert set(R.LOGIC_ROLES) == set(R.PARTS)
    assert set(R.LOGIC_ROLES.values()) == set(LOGIC)
    with pytest.raises(ValueError, match="role"):
        with R.splitting():
            R.memory(64, 8, "xc7")
    assert R.memory(64, 8, "xc7").memory_bits == 512       # outside a split nothing is asked or kept
    assert R._SPLIT is None


def test_estimates_leave_nothing_recording():
    design = _design("int_fcn_tiny", "pynq-z2")
    estimate_graph(design.graph, design.estimate.board)
    assert R._SPLIT is None


# --- the reports ------------------------------------------------------------------------------------------

def _number(text: str) -> int:
    return int(text.replace(",", "").strip() or 0)


def test_markdown_shows_where_the_memory_and_logic_go():
    design = _design("erfnet_tiny", "zcu104")
    estimate, md = design.estimate, design.files()["report.md"]
    assert "## Where the memory goes" in md and "## Logic: datapath vs control" in md
    memory = md[md.index("## Where the memory goes"):md.index("## Logic: datapath vs control")]
    logic = md[md.index("## Logic: datapath vs control"):]
    rows = [line.split(" | ") for line in memory.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["| layer", "window / line buffer", "weights", "FIFOs |"]
    with_memory = [layer.name for layer in estimate.layers if layer.resources.memory_bits]
    assert [row[0][2:] for row in rows[1:-1]] == with_memory
    total = [cell.strip(" |") for cell in rows[-1]]
    assert total[0] == "total"
    bits = [_number(re.match(r"([\d,]*)", cell).group(1)) for cell in total[1:]]
    assert sum(bits) == estimate.total.memory_bits
    brams = [int(m.group(1).replace(",", "")) if (m := re.search(r"([\d,]+) BRAM18", cell)) else 0
             for cell in total[1:]]
    assert sum(brams) == estimate.total.bram
    rows = [[cell.strip(" |") for cell in line.split(" | ")] for line in logic.splitlines()
            if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["layer", "op", "datapath LUT", "control LUT", "datapath FF", "control FF"]
    assert [row[0] for row in rows[1:-2]] == [layer.name for layer in estimate.layers]
    for row, layer in zip(rows[1:-2], estimate.layers):
        assert _number(row[2]) + _number(row[3]) == layer.resources.lut, row
        assert _number(row[4]) + _number(row[5]) == layer.resources.ff, row
    assert rows[-2][0] == "total" and _number(rows[-2][2]) + _number(rows[-2][3]) == estimate.total.lut
    assert rows[-1][0] == "share"
    lut_shares = [float(cell.rstrip(" %")) for cell in rows[-1][2:4]]
    assert abs(sum(lut_shares) - 100) < 0.15
    # the main table keeps its columns (URAM among them on a part that has it)
    assert "| layer | op | LUT | FF | DSP | BRAM18 | URAM | cycles/frame | folding |" in md


class _Page(HTMLParser):
    """The split tables' cells and the stacked bars' values; checks nesting."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tables, self.bars = [], [], {}, {}
        self._table = self._bar = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("meta", "br"):
            self.stack.append(tag)
        if tag == "table" and attrs.get("class") in ("memory-split", "logic-split"):
            self._table = self.tables.setdefault(attrs["class"], [])
        if tag == "tr" and self._table is not None:
            self._table.append([])
        if tag in ("td", "th") and self._table is not None:
            self._table[-1].append("")
        if tag == "svg" and attrs.get("class") == "split":
            self._bar = self.bars.setdefault(attrs["data-metric"], {})
        if tag == "rect" and self._bar is not None:
            self._bar[attrs["data-role"]] = int(attrs["data-value"])

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(tag)
            return
        self.stack.pop()
        if tag == "table":
            self._table = None
        if tag == "svg":
            self._bar = None

    def handle_data(self, data):
        if self._table is not None and self.stack and self.stack[-1] in ("td", "th"):
            self._table[-1][-1] += data


def test_html_shows_where_the_memory_and_logic_go():
    design = _design("fpl_tiny", "zcu104", (256, 512))
    estimate, html = design.estimate, design.files()["report.html"]
    page = _Page()
    page.feed(html)
    page.close()
    assert not page.errors and page.stack == []
    assert "<h2>Where the memory goes</h2>" in html and "<h2>Logic: datapath vs control</h2>" in html
    total = estimate.total
    assert sum(page.bars["memory-bits"].values()) == total.memory_bits
    assert sum(page.bars["memory-bram"].values()) == total.bram
    assert sum(page.bars["memory-uram"].values()) == total.uram > 0
    assert page.bars["logic-lut"] == {role: estimate.split.logic[role]["lut"] for role in LOGIC}
    assert sum(page.bars["logic-lut"].values()) == total.lut and sum(page.bars["logic-ff"].values()) == total.ff
    logic = page.tables["logic-split"]
    assert logic[0] == ["layer", "op", "datapath LUT", "control LUT", "datapath FF", "control FF"]
    assert [row[0] for row in logic[1:-2]] == [layer.name for layer in estimate.layers]
    memory = page.tables["memory-split"]
    assert memory[0] == ["layer", "window / line buffer", "weights", "FIFOs"]
    assert memory[-1][0] == "total"
    assert sum(_number(re.match(r"([\d,]*)", cell).group(1)) for cell in memory[-1][1:]) == total.memory_bits


def test_reports_are_deterministic():
    first = build(EXAMPLES / "int_fcn_tiny.pt", "ulx3s-85f", estimate_only=True).files()
    second = build(EXAMPLES / "int_fcn_tiny.pt", "ulx3s-85f", estimate_only=True).files()
    for name in ("report.json", "report.md", "report.html"):
        assert first[name] == second[name], name
    assert "split" in json.loads(first["report.json"])

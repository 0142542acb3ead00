"""The command line as a user meets it: help, the example build, and one-line errors.

Every bad input must give ``error: <one line>`` on stderr, a non-zero exit, no traceback,
and nothing written to the output folder.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hwseg.frontend import save_checkpoint
from hwseg.models import build_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "int8_tiny.pt"


def hwseg(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hwseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _sequential(path, layers, input_shape=(3, 16, 16)):
    args = {"layers": layers}
    save_checkpoint(build_model("sequential", args), path, "sequential", args, input_shape)
    return path


CONV = {"type": "QConv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1}


class _Payload:
    """Unpickling this would create a marker file: the loader must refuse before that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _bad_inputs(tmp_path):
    """name → (arguments after `build`, pattern the one-line error must match)."""
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all\n" * 10)
    evil = tmp_path / "evil.pt"
    torch.save({"hwseg_checkpoint": 1, "payload": _Payload(tmp_path / "PWNED")}, evil)
    plain = tmp_path / "plain.pt"
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), plain)
    float_model = _sequential(tmp_path / "float.pt", [
        {"type": "QuantInput"}, {"type": "Conv2d", "in": 3, "out": 4, "kernel": 3, "padding": 1},
        {"type": "ReLU"}, {"type": "ArgMax"}])
    grouped = _sequential(tmp_path / "grouped.pt", [
        {"type": "QuantInput"}, CONV, {"type": "QReLU", "bits": 8},
        {"type": "QConv2d", "name": "g", "in": 4, "out": 4, "kernel": 3, "padding": 1, "groups": 2},
        {"type": "QReLU", "bits": 8}, {"type": "ArgMax"}])
    sigmoid = _sequential(tmp_path / "sigmoid.pt", [
        {"type": "QuantInput"}, CONV, {"type": "QReLU", "bits": 8},
        {"type": "Sigmoid", "name": "squash"}, {"type": "ArgMax"}])
    huge = tmp_path / "huge.pt"      # a layer of 10**9 channels (torch would try to allocate 108 GB)
    torch.save({"hwseg_checkpoint": 1, "arch": "sequential", "input_shape": [3, 16, 16], "state_dict": {}, "meta": {},
                "arch_args": {"layers": [{"type": "QuantInput"}, {**CONV, "out": 10**9}]}}, huge)
    broken = {}
    for what, layers in (("weight", [{"type": "QuantInput"}, CONV, {"type": "QReLU", "bits": 8}, {"type": "ArgMax"}]),
                         ("running_var", [{"type": "QuantInput"}, CONV, {"type": "BatchNorm2d", "channels": 4},
                                          {"type": "QReLU", "bits": 8}, {"type": "ArgMax"}])):
        model = build_model("sequential", {"layers": layers})
        with torch.no_grad():
            tensor = next(t for n, t in model.state_dict().items() if n.endswith(what))
            tensor.view(-1)[1] = float("nan")
        broken[what] = tmp_path / f"nan_{what}.pt"
        save_checkpoint(model, broken[what], "sequential", {"layers": layers}, (3, 16, 16))
    negative = tmp_path / "negative_var.pt"
    model = build_model("sequential", {"layers": layers})      # (the BatchNorm one)
    with torch.no_grad():
        next(t for n, t in model.state_dict().items() if n.endswith("running_var"))[2] = -1.0
    save_checkpoint(model, negative, "sequential", {"layers": layers}, (3, 16, 16))
    return {
        "NaN in a weight": ([broken["weight"]], r"tensor '.*\.weight' holds nan at \[0, 0, 0, 1\]"),
        "NaN in a BatchNorm": ([broken["running_var"]], r"tensor '.*\.running_var' holds nan at \[1\] \(the model "
                                                        r"diverged"),
        "negative variance": ([negative], r"tensor '.*\.running_var' holds -1.0 at \[2\] \(a variance cannot be "
                                          r"negative\)"),
        "huge layer": ([huge], r"field 'out' must be an integer in 1…16384, not 1000000000"),
        "missing file": ([tmp_path / "nope.pt"], r"nope\.pt.*(not found|does not exist|no such)"),
        "not a checkpoint": ([garbage], r"garbage\.pt.*not a PyTorch"),
        "pickle carrying code": ([evil], r"evil\.pt.*(refus|code)"),
        "bare state_dict": ([plain], r"plain\.pt.*(bare state_dict|not an hwseg checkpoint)"),
        "unquantized float model": ([float_model], r"unquantized float Conv2d"),
        "layer the frontend cannot lower": ([sigmoid], r"'squash'.*Sigmoid.*not supported"),
        "op without hardware yet": ([grouped], r"layer 'g': grouped convolution \(groups=2\) has no hardware yet"),
        "input too small": ([EXAMPLE, "--input", "2x2"], r"(cannot take|too small).*2×2|2×2.*(too small|cannot)"),
        "unknown board": ([EXAMPLE, "--board", "zedboard"], r"unknown board 'zedboard'; known boards: .*pynq-z2"),
    }


def test_every_bad_input_gives_a_one_line_error_and_writes_nothing(tmp_path):
    cases = _bad_inputs(tmp_path)
    for name, (args, pattern) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        result = hwseg("build", *args, "--out", out)
        lines = result.stderr.strip().splitlines()
        error_lines = [line for line in lines if not line.startswith("hwseg: ")]  # progress lines aside
        assert result.returncode != 0, name
        assert len(error_lines) == 1 and error_lines[0].startswith("error: "), f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, name

        assert re.search(pattern, error_lines[0]), f"{name}: {error_lines[0]!r} does not match {pattern!r}"
        assert not out.exists() or not any(out.iterdir()), f"{name}: something was written"
    assert not (tmp_path / "PWNED").exists(), "the pickle's code ran"


def test_example_build_writes_the_files_and_prints_the_table(tmp_path):
    result = hwseg("build", EXAMPLE, "--board", "pynq", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "int8_tiny"
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["int8_tiny.v", "ports.json", "manifest.json", "report.json", "report.md", "report.html"])
    report = json.loads((target / "report.json").read_text())
    assert report["board"] == "pynq-z2"
    for layer in report["layers"]:
        assert layer["name"] in result.stdout
    assert f"{report['cycles_per_frame']:,} cycles per frame" in result.stdout
    manifest = json.loads((target / "manifest.json").read_text())

    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()


def test_two_builds_of_the_checkpoint_are_byte_identical(tmp_path):
    for out in ("a", "b"):
        assert hwseg("build", EXAMPLE, "--out", tmp_path / out).returncode == 0
    first, second = tmp_path / "a" / "int8_tiny", tmp_path / "b" / "int8_tiny"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_an_unusable_out_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = {blocker: "is a file; pass a folder", blocker / "sub": f"lies under the file {blocker}"}
    if os.geteuid() != 0:            # root writes anywhere
        cases[locked / "out"] = "cannot write into"
    for out, message in cases.items():
        started = time.monotonic()
        result = hwseg("build", EXAMPLE, "--out", out)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if not line.startswith("hwseg: ")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert "compiling" not in result.stderr and time.monotonic() - started < 20   # before any work
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("command", [None, "build", "sim", "boards", "run"])
def test_help_documents_every_option(command):
    args = ["--help"] if command is None else [command, "--help"]
    result = hwseg(*args)
    assert result.returncode == 0
    text = result.stdout
    expected = {
        None: ["build", "sim", "boards", "run", "--version"],
        "build": ["MODEL.pt", "--board", "--input", "--out"],
        "sim": ["MODEL.pt", "--board", "--input", "--frames", "--simulator", "--stall", "--seed", "--harness",
                "--work"],
        "boards": [],
        "run": ["IMAGE", "--port", "--baud", "--timeout", "--out", "--board"],
    }[command]
    for word in expected:
        assert word in text, f"{word} missing from `hwseg {command} --help`"
    # Every option line carries an explanation.
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") and "  " not in stripped and not stripped.startswith("--help"):
            index = text.splitlines().index(line)
            follow = text.splitlines()[index + 1].strip() if index + 1 < len(text.splitlines()) else ""
            assert follow, f"option {stripped!r} has no help text"


def test_boards_lists_pynq():
    result = hwseg("boards")
    assert result.returncode == 0
    assert "pynq-z2 (alias pynq)" in result.stdout and "pynq-z1" in result.stdout
    assert "53,200 LUT" in result.stdout
    pynq = next(line for line in result.stdout.splitlines() if line.startswith("pynq-z2"))
    assert pynq.endswith("DRAM 64-bit port at 800 MB/s each way, 1,575 MB/s usable")   # 8 B × 100 MHz; 75 % of 2,100
    assert next(line for line in result.stdout.splitlines() if line.startswith("ulx3s")).endswith("no DRAM for activations")


def test_bad_option_values_are_refused_by_the_parser():
    result = hwseg("sim", EXAMPLE, "--stall", "2")
    assert result.returncode == 2 and "expected a stall probability in [0, 1)" in result.stderr
    result = hwseg("sim", EXAMPLE, "--stall", "1")          # tvalid never high: nothing would move
    assert result.returncode == 2 and "expected a stall probability in [0, 1)" in result.stderr
    result = hwseg("sim", EXAMPLE, "--frames", "-1")
    assert result.returncode == 2 and "expected a whole number ≥ 0" in result.stderr
    result = hwseg("build", EXAMPLE, "--input", "big")
    assert result.returncode == 2 and "expected HEIGHTxWIDTH" in result.stderr


@pytest.mark.parametrize("preset, board", [("fpl_tiny", "pynq-z2"), ("erfnet_tiny", "zcu104")])
def test_zoo_models_build_with_their_joins_and_skip_fifos(tmp_path, preset, board):
    from hwseg.models import PRESETS
    from hwseg.quant import calibrate

    spec = PRESETS[preset]
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.arch_args)
    calibrate(model, [torch.randint(0, 256, (2, 3, *spec.input_size)).float()])
    path = tmp_path / f"{preset}.pt"
    save_checkpoint(model.eval(), path, spec.arch, spec.arch_args, (3, *spec.input_size))
    out = tmp_path / "out"
    result = hwseg("build", path, "--board", board, "--out", out)
    assert result.returncode == 0, result.stderr
    report = (out / preset / "report.md").read_text()
    assert "## Buffers" in report and re.search(r"\| \w+_(cat|out|act) \| +\| \w+: [\d,]+ × \d+ b", report), report
    assert (out / preset / f"{preset}.v").exists()


def test_erfnet_does_not_fit_the_smallest_board_and_says_by_how_much(tmp_path):
    from hwseg.models import PRESETS
    from hwseg.quant import calibrate

    spec = PRESETS["erfnet_tiny"]
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.arch_args)
    calibrate(model, [torch.randint(0, 256, (2, 3, *spec.input_size)).float()])
    path = tmp_path / "erfnet.pt"
    save_checkpoint(model.eval(), path, spec.arch, spec.arch_args, (3, *spec.input_size))
    out = tmp_path / "out"
    result = hwseg("build", path, "--board", "icebreaker", "--out", out)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hwseg: ")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    # its weights alone take more block RAM than the part has, which no placement of buffers can help
    assert re.match(r"error: the weights alone do not fit icebreaker: [\d.]+ Mb of weights take [\d,]+ of 30 EBR4 "
                    r"even fully folded", lines[0]), lines[0]
    assert not out.exists()


def test_fps_and_folding_options(tmp_path):
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps({"conv2": {"pe": 2}}))
    out = tmp_path / "out"
    result = hwseg("build", EXAMPLE, "--estimate-only", "--fps", "2000", "--folding", folding, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "int8_tiny" / "report.json").read_text())
    assert report["fps"] >= 2000 and "--fps 2,000" in report["limit"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["conv2"]["folding"]["pe"] == 2


def test_unreachable_fps_and_bad_foldings_are_one_line_errors(tmp_path):
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"conv9": {"pe": 2}}))
    illegal = tmp_path / "illegal.json"
    illegal.write_text(json.dumps({"conv1": {"pe": 3, "simd": 9}}))
    broken = tmp_path / "broken.json"
    broken.write_text("{conv1: pe 2}")
    cases = {
        "fps out of reach": (["--fps", "1e9"], r"--fps 1,000,000,000 is out of reach on pynq-z2: the best is [\d,]+ fps "
                                               r"\(limit: .+\)$"),
        "unknown layer": (["--folding", unknown], r"unknown layer 'conv9'; the foldable layers are conv1, conv2, "
                                                  r"conv3, classifier$"),
        "illegal pe": (["--folding", illegal], r"pe 3 does not divide its 8 output channels; legal pe: 1, 2, 4, 8$"),
        "not JSON": (["--folding", broken], r"broken\.json is not JSON \(line 1"),
        "no file": (["--folding", tmp_path / "none.json"], r"cannot read the folding file .*none\.json"),
    }
    for name, (args, pattern) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        result = hwseg("build", EXAMPLE, *args, "--out", out)
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hwseg: ")]
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, (name, result.stderr)
        assert re.search(pattern, lines[0]), f"{name}: {lines[0]!r} does not match {pattern!r}"
        assert not out.exists() or not any(out.iterdir()), name
    result = hwseg("build", EXAMPLE, "--fps", "0")
    assert result.returncode == 2 and "expected a positive number of frames per second" in result.stderr


def test_a_hung_design_in_hwseg_sim_is_one_error_line_naming_the_log(monkeypatch, capsys):
    import hwseg.cosim
    import hwseg.flow
    from hwseg.cli import main
    from hwseg.cosim import SimReport

    stalled = SimReport("verilator", 4, 0, 256, [], [], "stalled: no transfer on either stream for 9000 cycles, "
                        "after 4096 of 4096 input and 0 of 256 output beats (log: /somewhere/sim.log)", None, 6209, 9100)
    seen = {}

    def fake_simulate(design, **options):
        seen.update(options)
        return stalled

    monkeypatch.setattr(hwseg.flow, "build", lambda *args, **kwargs: object())
    monkeypatch.setattr(hwseg.cosim, "simulate_design", fake_simulate)
    assert main(["sim", str(EXAMPLE), "--frames", "0", "--stall", "0"]) == 1
    assert seen["frames"] == 0 and seen["valid_prob"] == seen["ready_prob"] == 1.0
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1] == ("error: the design stalled: no transfer on either stream for 9000 cycles, after 4096 of "
                          "4096 input and 0 of 256 output beats (log: /somewhere/sim.log)")


def test_offchip_on_a_board_without_dram_is_one_line(tmp_path):
    out = tmp_path / "out"
    result = hwseg("build", ROOT / "examples" / "int8_tiny.pt", "--board", "ulx3s-85f", "--offchip", "all",
                   "--out", out)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hwseg: ")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ulx3s-85f has no DRAM for activations (") and "--offchip none" in lines[0]
    assert not out.exists()


def test_build_deploy_writes_the_board_package(tmp_path):
    result = hwseg("build", EXAMPLE, "--board", "pynq-z2", "--deploy", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    deploy = tmp_path / "int8_tiny" / "deploy"
    assert sorted(str(p.relative_to(deploy)) for p in deploy.rglob("*") if p.is_file()) == [
        "Makefile", "README.md", "build.tcl", "example.py", "hwseg_driver/__init__.py", "hwseg_driver/spec.json",
        "int8_tiny_dma.v"]
    assert "deploy/" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("args,message", [
    (("--board", "ulx3s-85f", "--deploy"), "error: --deploy packages for the Zynq boards (pynq-z1, pynq-z2, "
                                          "ultra96-v2, zcu104, kv260, zcu102); ulx3s-85f has no processing system "
                                          "to run the driver"),
    (("--deploy", "--estimate-only"), "error: --deploy needs the Verilog; drop --estimate-only"),
])
def test_build_deploy_refuses_before_any_work(args, message, tmp_path):
    result = hwseg("build", EXAMPLE, *args, "--out", tmp_path)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [message]
    assert not any(tmp_path.iterdir())

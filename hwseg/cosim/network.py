"""Simulate a whole compiled design against the golden model.

Two leading frames run without stalls so that the steady-state cycles per frame can be
measured (the interval between the last beats of frames 0 and 1); the remaining frames run
under random ``tvalid`` gaps and ``tready`` backpressure. Every output beat of every frame is
compared with golden.

By default the generated harness (:mod:`.harness`, no Python in the cycle loop) runs the
design; ``harness="cocotb"`` drives it from Python each cycle instead (:mod:`.runner`). Either
way a silence watchdog ends a hung run, with a limit taken from the design's cycle model
(:func:`watchdog_limit`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from math import ceil
from pathlib import Path

import numpy as np

from ..errors import SimulationError, UnsupportedError
from ..estimate.dataflow import StreamTiming
from ..golden import run_graph
from .check import compare_beats, pack_frames, unpack_beats
from .native import run_harness
from .runner import run_cosim

__all__ = ["SimReport", "simulate_design", "random_frames", "watchdog_limit", "longest_output_gap",
           "MEASURED_FRAMES", "HARNESSES"]

MEASURED_FRAMES = 2
#: how the design is driven: the generated harness (default) or cocotb from Python each cycle
HARNESSES = ("native", "cocotb")
#: the watchdog allows this many times the longest legitimate silence the cycle model predicts ...
SILENCE_MARGIN = 2
#: ... plus this many cycles (pipeline start-up the model leaves out)
SILENCE_SLACK = 1000


def longest_output_gap(design) -> int:
    """The longest stretch of cycles without an output beat in the cycle model's earliest schedule
    of three back-to-back frames, from the first input beat on (the first output's latency and
    every gap between frames included), plus one frame period: the longest legitimate silence."""
    graph = design.graph
    frames = 3
    try:
        timing = StreamTiming(graph, frames)
        pixels = graph.types[graph.input].pixels
        emitted, _, _ = timing.forward(np.arange(frames * pixels, dtype=np.int64), takes=False)
        out = emitted[graph.output]
        gap = int(np.diff(np.concatenate([[0], out])).max())
    except UnsupportedError:   # a layer without a timing model: a frame's latency is at most a few frame periods
        gap = 2 * design.estimate.cycles_per_frame
    return gap + design.estimate.cycles_per_frame


def watchdog_limit(design, valid_prob: float, ready_prob: float) -> int:
    """The watchdog's limit: cycles without a transfer on either stream after which a run is hung.

    Random ``tvalid`` gaps and ``tready`` backpressure stretch every interval by at most about
    ``1 / (valid_prob · ready_prob)``; the limit is :data:`SILENCE_MARGIN` times the model's longest
    legitimate silence so stretched, plus :data:`SILENCE_SLACK`.
    """
    stretch = 1 / max(min(valid_prob, 1.0) * min(ready_prob, 1.0), 1e-3)
    return int(ceil(SILENCE_MARGIN * longest_output_gap(design) * stretch)) + SILENCE_SLACK


def random_frames(input_type, count: int, seed: int) -> np.ndarray:
    """``count`` random frames of the network's input type, ``(N, C, H, W)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(input_type.dtype.min, input_type.dtype.max + 1, size=(count, *input_type.shape),
                        dtype=np.int64)


@dataclass
class SimReport:
    simulator: str
    frames: int
    beats: int
    expected_beats: int
    mismatches: list[str]
    tlast_errors: list[str]
    status: str
    measured_cycles_per_frame: int | None
    estimated_cycles_per_frame: int
    cycles: int
    log: object = field(default=None, repr=False)
    #: wall-clock seconds of the simulation itself (without building, packing or comparing)
    seconds: float | None = None
    #: the watchdog's limit this run used
    silence_limit: int | None = None
    #: the cycle at which each output beat was taken
    output_cycles: np.ndarray | None = field(default=None, repr=False)
    #: memory words read and written over the whole run (designs with buffers in DRAM)
    memory_words: tuple[int, int] | None = None

    @property
    def longest_silence(self) -> int | None:
        """The most cycles between output beats, counted from the first cycle after reset."""
        if self.output_cycles is None or not len(self.output_cycles):
            return None
        return int(np.diff(np.concatenate([[0], self.output_cycles])).max())

    @property
    def cycles_per_second(self) -> float | None:
        return self.cycles / self.seconds if self.seconds else None

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.tlast_errors and self.status == "ok" \
            and self.beats == self.expected_beats

    @property
    def estimate_error(self) -> float | None:
        if not self.measured_cycles_per_frame:
            return None
        return self.estimated_cycles_per_frame / self.measured_cycles_per_frame - 1

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"{verdict}: {self.beats} of {self.expected_beats} output beats over {self.frames} frames "
                 f"({self.simulator}, {self.cycles:,} cycles simulated): "
                 + ("every beat matched golden" if not self.mismatches and self.beats == self.expected_beats
                    else f"{len(self.mismatches)} problem(s)")]
        lines += [f"  {m}" for m in self.mismatches + self.tlast_errors]
        if self.status != "ok":
            lines.append(f"  {self.status}")
        if self.measured_cycles_per_frame:
            lines.append(f"cycles per frame: measured {self.measured_cycles_per_frame:,}, estimated "
                         f"{self.estimated_cycles_per_frame:,} ({100 * self.estimate_error:+.1f} %)")
        if self.cycles_per_second:
            lines.append(f"simulated {self.cycles:,} cycles in {self.seconds:.2f} s: "
                         f"{self.cycles_per_second:,.0f} cycles/s")
        return "\n".join(lines)


#: where the simulated memory puts the design's DRAM region (not 0, so that a missing base add shows)
MEMORY_BASE = 0x10000


def simulate_design(design, *, frames: int = 2, simulator: str = "verilator", seed: int = 1,
                    valid_prob: float = 0.7, ready_prob: float = 0.7, work_dir: str | os.PathLike | None = None,
                    input_frames: np.ndarray | None = None, silence_limit: int | None = None,
                    harness: str = "native", threads: int = 1, progress=None,
                    memory_latency: tuple[int, int] = (20, 200), memory_ready: float = 0.9) -> SimReport:
    """Run ``MEASURED_FRAMES`` unstalled then ``frames`` stalled frames of the design's Verilog.

    ``silence_limit``: the watchdog's limit in cycles (default: from the cycle model,
    :func:`watchdog_limit`). ``work_dir``: where the stimulus, the beats and the logs go (default: a
    temporary directory, removed when the run passed). ``threads``: Verilator's ``--threads``.
    ``progress``: a callable that hears the steps as lines. A design with buffers in DRAM runs against
    :class:`~.axi_memory.AxiMemory` (its region at :data:`MEMORY_BASE`), each burst answered a random
    ``memory_latency`` (min, max) cycles later, its channels ready with probability ``memory_ready``; under
    cocotb, against cocotbext-axi's ``AxiSlave`` on the same region with the same latency and readiness."""
    if harness not in HARNESSES:
        raise SimulationError(f"unknown harness {harness!r}; choose one of {', '.join(HARNESSES)}")
    graph = design.graph
    in_type, out_type = graph.input_type, graph.output_type
    total = MEASURED_FRAMES + frames
    if input_frames is None:
        input_frames = random_frames(in_type, total, seed)
    if silence_limit is None:
        silence_limit = watchdog_limit(design, valid_prob, ready_prob)
    expected = run_graph(graph, input_frames)
    in_tdata = design.manifest["input"]["tdata_bits"]
    out_tdata = design.manifest["output"]["tdata_bits"]
    stimulus = pack_frames(input_frames, in_type.dtype.bits, in_tdata)
    out_per_frame = out_type.pixels
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="hwseg-sim-")) if temporary else Path(work_dir).resolve()
    options = dict(in_beats_per_frame=in_type.pixels, out_beats_per_frame=out_per_frame,
                   out_beats=total * out_per_frame, out_bytes=out_tdata // 8, simulator=simulator,
                   valid_prob=valid_prob, ready_prob=ready_prob, unstalled_frames=MEASURED_FRAMES, seed=seed,
                   work_dir=work, silence_limit=silence_limit)
    memory = None
    if "dram" in design.manifest:
        dram = design.manifest["dram"]
        memory = {"bytes": dram["region_bytes"], "base": MEMORY_BASE, "latency": memory_latency,
                  "ready": memory_ready}
        if "weights" in dram:   # the host's part: the weight image in place before reset
            memory["init"] = [(dram["weights"]["offset"], design.weight_image)]
    if harness == "native":
        result = run_harness(design.verilog, design.ports, design.name, stimulus, threads=threads,
                             progress=progress, memory=memory, **options)
    else:
        result = run_cosim(design.verilog, design.name, stimulus, memory=memory, **options)
        if result.status != "ok":
            result = dataclasses.replace(result, status=f"{result.status} (log: {result.log})")
    got = unpack_beats(result.got, out_type.channels, out_type.dtype.bits, out_type.dtype.signed)
    want = np.moveaxis(expected, 1, -1).reshape(-1, out_type.channels)
    mismatches = compare_beats(want, got, out_type.height, out_type.width)
    tlast_want = (np.arange(len(result.last)) % out_per_frame) == out_per_frame - 1
    bad_last = np.flatnonzero(result.last.astype(bool) != tlast_want)
    tlast_errors = [f"tlast wrong on {len(bad_last)} beat(s), first at beat {int(bad_last[0])}"] if len(bad_last) else []
    measured = None
    if len(result.when) >= MEASURED_FRAMES * out_per_frame:
        ends = result.when[out_per_frame - 1::out_per_frame]
        measured = int(ends[1] - ends[0])
    report = SimReport(simulator, total, len(got), len(want), mismatches, tlast_errors, result.status, measured,
                       design.estimate.cycles_per_frame, result.cycles, result.log, result.seconds,
                       silence_limit, result.when, result.memory_words)
    if temporary and report.passed:
        shutil.rmtree(work, ignore_errors=True)
        report.log = None
    return report

"""Simulate a whole compiled design against the golden model.

Two leading frames run without stalls so that the steady-state cycles per frame can be
measured (the interval between the last beats of frames 0 and 1); the remaining frames run
under random ``tvalid`` gaps and ``tready`` backpressure. Every output beat of every frame is
compared with golden.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..golden import run_graph
from .check import compare_beats, pack_frames, unpack_beats
from .runner import run_cosim

__all__ = ["SimReport", "simulate_design", "random_frames", "MEASURED_FRAMES"]

MEASURED_FRAMES = 2


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
        return "\n".join(lines)


def simulate_design(design, *, frames: int = 2, simulator: str = "verilator", seed: int = 1,
                    valid_prob: float = 0.7, ready_prob: float = 0.7, work_dir: str | os.PathLike | None = None,
                    input_frames: np.ndarray | None = None, silence_limit: int = 100_000) -> SimReport:
    """Run ``MEASURED_FRAMES`` unstalled then ``frames`` stalled frames of the design's Verilog."""
    graph = design.graph
    in_type, out_type = graph.input_type, graph.output_type
    total = MEASURED_FRAMES + frames
    if input_frames is None:
        input_frames = random_frames(in_type, total, seed)
    expected = run_graph(graph, input_frames)
    in_tdata = design.manifest["input"]["tdata_bits"]
    out_tdata = design.manifest["output"]["tdata_bits"]
    stimulus = pack_frames(input_frames, in_type.dtype.bits, in_tdata)
    out_per_frame = out_type.pixels
    result = run_cosim(design.verilog, design.name, stimulus, in_beats_per_frame=in_type.pixels,
                       out_beats_per_frame=out_per_frame, out_beats=total * out_per_frame,
                       out_bytes=out_tdata // 8, simulator=simulator, valid_prob=valid_prob,
                       ready_prob=ready_prob, unstalled_frames=MEASURED_FRAMES, seed=seed, work_dir=work_dir,
                       silence_limit=silence_limit)
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
    return SimReport(simulator, total, len(got), len(want), mismatches, tlast_errors, result.status, measured,
                     design.estimate.cycles_per_frame, result.cycles, result.log)

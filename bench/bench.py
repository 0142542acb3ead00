"""Benchmark the example networks on the boards: one JSON object per network × board on stdout.

    python bench/bench.py [--networks a,b] [--boards x,y] [--sim] [--synth] [--estimate-only]

Defaults: every ``examples/*.pt`` × pynq-z2, ultra96-v2, zcu104. Progress goes to stderr. Each
line holds:

* ``fps`` and ``cycles_per_frame``: ``estimated`` (hwseg's cycle model) and, with ``--sim``,
  ``measured`` in RTL simulation (Verilator in the generated harness: two frames back to back without
  stalls, the interval between their last output beats; every output beat is also checked
  against the golden model, ``sim.passed``).
* ``efficiency``: ideal cycles ÷ cycles per frame, where the *ideal cycles* are the cycles per
  frame if every instantiated MAC lane did one useful multiply-accumulate in every cycle:
  ``MACs per frame ÷ Σ lanes``, MACs as :func:`hwseg.estimate.work.macs_per_frame` counts them
  and the lanes summed over the convolutions as built — ``pe · simd`` of each (transposed)
  convolution's MAC array, and one multiplier per channel of a channelwise 1×1 convolution.
  Since each layer needs at least its own ``MACs ÷ lanes`` cycles, the efficiency is at most 1;
  it is below 1 where a layer's lanes idle (padding, a slower neighbour, the stream bound).
  ``efficiency.of`` says whether it divides by the measured or (without ``--sim``) the
  estimated cycles.
* ``roofline``: the board's compute bound and stream bound for the network
  (:mod:`hwseg.estimate.roofline`), and ``fraction``: the fps (measured where simulated,
  ``roofline.of``) ÷ the compute bound.
* ``resources``: ``estimated`` and, with ``--synth``, ``synthesized`` by Yosys (the keys of
  :data:`hwseg.boards.RESOURCES`), with the synthesis seconds.
* ``build_seconds``: the ``hwseg build`` of the checkpoint (fold, estimate, Verilog; with
  ``--estimate-only`` no Verilog, and ``--sim``/``--synth`` do nothing).
* ``sim``: cycles simulated, wall seconds (Verilator's build is cached by the Verilog's hash,
  so a first run includes its C++ build) and ``cycles_per_second`` of the simulation proper
  (the simulator process alone; ``bench/sim_speed.py`` times the simulation in more detail).
* ``golden_seconds_per_frame``: :func:`hwseg.golden.run_graph` on a batch of random frames,
  the wall time divided by the frames.

A design that does not fit a board is reported with ``fits: false`` and its estimate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import threading
import time
from pathlib import Path

from hwseg.boards import RESOURCES, load_board
from hwseg.cosim import random_frames, simulate_design
from hwseg.errors import DoesNotFitError, HwsegError
from hwseg.estimate.work import macs_per_frame
from hwseg.flow import build
from hwseg.golden import run_graph
from hwseg.ir import Conv2d, ConvTranspose2d

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEFAULT_BOARDS = ("pynq-z2", "ultra96-v2", "zcu104")


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def mac_lanes(graph) -> int:
    """The MAC lanes a built design instantiates: ``pe · simd`` per (transposed) convolution's MAC
    array, one per channel of a channelwise 1×1 convolution."""
    lanes = 0
    for node in graph:
        op = node.op
        if isinstance(op, Conv2d) and op.channelwise:
            lanes += op.out_channels
        elif isinstance(op, (Conv2d, ConvTranspose2d)):
            lanes += node.attrs["pe"] * node.attrs["simd"]
    return lanes


def _ratio(numerator, denominator):
    return round(numerator / denominator, 6) if numerator is not None and denominator else None


class Heartbeat:
    """Prints ``what`` and the elapsed seconds to stderr every ``every`` seconds while it lasts."""

    def __init__(self, what: str, every: float = 30.0):
        self.what, self.every, self.done = what, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        started = time.monotonic()
        while not self.done.wait(self.every):
            progress(f"{self.what}: {time.monotonic() - started:.0f} s")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def synthesizer():
    """``(where, run)`` with ``run(verilog, top, board) → (resources, seconds, LUT mapper)``: hwseg.synth
    where it exists (every family), else bench/synth.py (xc7 only: ``(None, 0, None)`` for others)."""
    try:
        module = importlib.import_module("hwseg.synth")
    except ImportError:
        module = None
    if module is not None:
        def run(verilog, top, board):
            result = module.synthesize(verilog, top, board.family, uram=board.uram > 0)
            return _resources_of(result.totals), result.seconds, result.mapper
        return "hwseg.synth", run
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    bench_synth = importlib.import_module("synth")

    def run(verilog, top, board):
        if board.family != "xc7":
            return None, 0.0, None
        cells, seconds, mapper = bench_synth.synthesize(verilog, top)
        return _resources_of(bench_synth.totals(cells)), seconds, mapper
    return "bench/synth.py", run


def _resources_of(totals: dict) -> dict:
    """Synthesized totals keyed by :data:`RESOURCES` (block RAM under whatever ``bram…`` key the
    synthesizer uses)."""
    figures = {}
    for key in RESOURCES:
        names = [key, *(name for name in totals if key.startswith("bram") and name.startswith("bram"))]
        figures[key] = next((int(totals[name]) for name in names if name in totals), None)
    return figures


def golden_seconds_per_frame(graph, frames: int, seed: int = 0) -> float:
    batch = random_frames(graph.input_type, frames, seed)
    started = time.perf_counter()
    run_graph(graph, batch)
    return (time.perf_counter() - started) / frames


def bench_one(path: Path, board_name: str, args, synth) -> dict:
    board = load_board(board_name)
    clock = board.clock_mhz * 1e6
    record = {"network": path.stem, "board": board.name, "clock_mhz": board.clock_mhz}
    started = time.monotonic()
    try:
        design = build(path, board.name, estimate_only=args.estimate_only)
        record["fits"] = True
    except DoesNotFitError as error:
        design = build(path, board.name, estimate_only=True)
        record.update(fits=False, error=str(error))
    record["build_seconds"] = round(time.monotonic() - started, 2)
    record["build"] = "estimate-only" if design.verilog is None else "verilog"
    estimate, graph = design.estimate, design.graph
    macs, lanes = macs_per_frame(graph), mac_lanes(graph)
    ideal = macs / lanes if lanes else None
    estimated = estimate.cycles_per_frame
    measured, sim = None, None
    if args.sim and design.verilog is not None:
        expected_cycles = 2 * estimated
        progress(f"{path.stem} on {board.name}: simulating ~{expected_cycles:,} cycles in Verilator "
                 f"(after a C++ build of up to a minute unless cached)")
        started = time.monotonic()
        with Heartbeat(f"{path.stem} on {board.name} simulating"):
            report = simulate_design(design, frames=0, simulator="verilator", seed=1)
        wall = time.monotonic() - started
        measured = report.measured_cycles_per_frame
        sim = {"simulator": "verilator", "passed": report.passed, "frames": report.frames,
               "cycles": report.cycles, "seconds": round(wall, 2),
               "cycles_per_second": round(report.cycles_per_second or report.cycles / wall, 1)}
        progress(f"{path.stem} on {board.name}: {report.summary().splitlines()[-1]}")
    cycles = measured or estimated
    roof = estimate.roofline
    record.update({
        "fps": {"estimated": round(estimate.fps, 3), "measured": round(clock / measured, 3) if measured else None},
        "cycles_per_frame": {"estimated": estimated, "measured": measured},
        "macs_per_frame": macs,
        "mac_lanes": lanes,
        "efficiency": {"ideal_cycles": round(ideal, 3) if ideal else None, "value": _ratio(ideal, cycles),
                       "of": "measured cycles" if measured else "estimated cycles"},
        "roofline": None if roof is None else {
            "compute_fps": round(roof.compute_fps, 3), "binding": roof.binding,
            "stream_fps": round(roof.stream_fps, 3), "stream_layer": roof.stream_layer,
            "fraction": _ratio(clock / cycles, roof.compute_fps),
            "of": "measured fps" if measured else "estimated fps"},
        "limit": estimate.limit,
        "resources": {"estimated": {key: estimate.total.as_dict()[key] for key in RESOURCES},
                      "available": {key: board.resources[key] for key in RESOURCES}},
        "sim": sim,
    })
    if args.synth and design.verilog is not None:
        where, run = synth
        progress(f"{path.stem} on {board.name}: synthesizing for {board.family} ({where})")
        with Heartbeat(f"{path.stem} on {board.name} synthesizing"):
            synthesized, seconds, mapper = run(design.verilog, design.name, board)
        record["resources"]["synthesized"] = synthesized
        record["resources"]["synthesis_seconds"] = round(seconds, 1) if synthesized else None
        record["resources"]["lut_mapper"] = mapper
        if synthesized is None:
            record["resources"]["synthesis_note"] = f"{where} synthesizes xc7 only, not {board.family}"
    progress(f"{path.stem} on {board.name}: timing the golden model")
    record["golden_seconds_per_frame"] = round(golden_seconds_per_frame(graph, args.golden_frames), 6)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=None,
                        help="comma-separated example names (examples/NAME.pt); default: all")
    parser.add_argument("--boards", default=",".join(DEFAULT_BOARDS),
                        help=f"comma-separated boards; default: {','.join(DEFAULT_BOARDS)}")
    parser.add_argument("--sim", action="store_true", help="measure cycles per frame in Verilator")
    parser.add_argument("--synth", action="store_true", help="synthesize with Yosys")
    parser.add_argument("--estimate-only", action="store_true",
                        help="build without Verilog (seconds; --sim and --synth then do nothing)")
    parser.add_argument("--golden-frames", type=int, default=4,
                        help="random frames the golden model is timed on (default 4)")
    args = parser.parse_args(argv)
    if args.golden_frames < 1:
        parser.error(f"--golden-frames must be at least 1, not {args.golden_frames!r}")
    names = args.networks.split(",") if args.networks else sorted(p.stem for p in EXAMPLES.glob("*.pt"))
    paths = [EXAMPLES / f"{name.strip()}.pt" for name in names]
    missing = [p.stem for p in paths if not p.exists()]
    if missing:
        parser.error(f"no example called {', '.join(missing)}; known: "
                     f"{', '.join(sorted(p.stem for p in EXAMPLES.glob('*.pt')))}")
    boards = [name.strip() for name in args.boards.split(",")]
    try:
        for name in boards:
            load_board(name)
    except HwsegError as error:
        parser.error(str(error))
    synth = synthesizer() if args.synth else None
    runs = [(path, board) for path in paths for board in boards]
    for index, (path, board) in enumerate(runs, 1):
        progress(f"[{index}/{len(runs)}] {path.stem} on {board}")
        print(json.dumps(bench_one(path, board, args, synth)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulation speed of the generated harness: simulated cycles per second for each example network
and for real-resolution designs, every output beat checked against golden.

    python bench/sim_speed.py [--networks a,b] [--real NAME,...] [--simulator verilator|icarus]
                              [--frames N] [--min-cycles C] [--stall P] [--threads 1,2] [--repeat R] [--cocotb]

Each design runs its 2 measured frames and ``--frames`` stalled ones, and more stalled frames where
that is needed to simulate ``--min-cycles`` (default 500,000), so that the simulator's start-up
(loading the model, opening files) does not dominate the figure of a small design.
``--repeat R`` runs each simulation R times and reports the median seconds (and the range): the
machines this runs on share their host, and a single run can be 20 % off either way.
For each design it prints one line (and a JSON object with ``--json``): the build (cold: the
harness compiled now; cached: found by its hash), the cycles simulated, the simulator's own wall
time (``seconds``, without the build, the stimulus packing and the comparison with golden), the
cycles per second, the whole run's wall time after the build, and whether every beat matched.

``--real`` names real-resolution designs: ``int_fcn_256x512`` (the zoo's int_fcn, width 8,
3 stages, folded for pynq-z2 at 256×512; the same design ``pytest sim/`` proves) and
``erfnet_tiny_288x576`` (erfnet_tiny on zcu104 at 288×576). ``--threads 1,2`` builds each design
once per Verilator thread count, to see whether ``--threads`` helps. ``--cocotb`` also runs the
old path (cocotb driving Verilator from Python each cycle) for one frame, for comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwseg.cosim import simulate_design  # noqa: E402
from hwseg.cosim.harness import Harness  # noqa: E402
from hwseg.cosim.native import build_harness  # noqa: E402
from hwseg.flow import build  # noqa: E402

EXAMPLES = ROOT / "examples"
DEFAULT_NETWORKS = ("int8_tiny", "bfcn_tiny", "bfcn_int8", "bfcn", "int_fcn_tiny", "fpl_tiny", "erfnet_tiny")


def real_designs() -> dict:
    """Real-resolution designs: name → (checkpoint builder, board, input size)."""
    from sim.real_size import int_fcn_checkpoint   # the checkpoint pytest sim/ proves at 256×512
    return {
        "int_fcn_256x512": (int_fcn_checkpoint, "pynq-z2", (256, 512)),
        "erfnet_tiny_288x576": (lambda folder: EXAMPLES / "erfnet_tiny.pt", "zcu104", (288, 576)),
    }


def progress(line: str) -> None:
    print(f"[sim_speed] {line}", file=sys.stderr, flush=True)


def measure(name, design, args, threads: int) -> dict:
    started = time.monotonic()
    build_harness(design.verilog, Harness(design.name, design.ports), args.simulator, threads=threads,
                  progress=progress)
    build_seconds = time.monotonic() - started
    frames = max(args.frames, -(-args.min_cycles // design.estimate.cycles_per_frame) - 2)
    runs = []
    for _ in range(args.repeat):
        started = time.monotonic()
        report = simulate_design(design, frames=frames, simulator=args.simulator, seed=1,
                                 valid_prob=1 - args.stall, ready_prob=1 - args.stall, threads=threads)
        runs.append((report.seconds, time.monotonic() - started, report))
    runs.sort(key=lambda run: run[0])
    seconds, wall, report = runs[len(runs) // 2]
    record = {"design": name, "simulator": args.simulator, "threads": threads,
              "build_seconds": round(build_seconds, 1), "passed": report.passed, "frames": report.frames,
              "cycles": report.cycles, "seconds": round(seconds, 3),
              "cycles_per_second": round(report.cycles / seconds),
              "cycles_per_second_range": [round(report.cycles / runs[-1][0]), round(report.cycles / runs[0][0])],
              "wall_seconds_after_build": round(wall, 2),
              "cycles_per_frame": {"measured": report.measured_cycles_per_frame,
                                   "estimated": report.estimated_cycles_per_frame},
              "longest_silence": report.longest_silence, "silence_limit": report.silence_limit}
    if not report.passed:
        record["summary"] = report.summary()
    return record


def cocotb_record(name, design, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hwseg-bench-cocotb-"))
    try:
        report = simulate_design(design, frames=1, simulator="verilator", seed=1, harness="cocotb",
                                 valid_prob=1 - args.stall, ready_prob=1 - args.stall, work_dir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"design": name, "harness": "cocotb", "passed": report.passed, "cycles": report.cycles,
            "seconds": round(report.seconds, 2), "cycles_per_second": round(report.cycles_per_second)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default=",".join(DEFAULT_NETWORKS),
                        help="example networks (examples/NAME.pt), comma-separated; '' for none")
    parser.add_argument("--real", default="int_fcn_256x512", help="real-resolution designs, comma-separated")
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--frames", type=int, default=2, help="stalled frames after the 2 measured ones")
    parser.add_argument("--min-cycles", type=int, default=500_000,
                        help="run more stalled frames where needed to simulate at least this many cycles")
    parser.add_argument("--stall", type=float, default=0.3)
    parser.add_argument("--threads", default="1", help="Verilator thread counts to try, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=1, help="runs per design; the median is reported")
    parser.add_argument("--cocotb", action="store_true", help="also time the cocotb path for one frame")
    parser.add_argument("--json", action="store_true", help="print JSON objects instead of a table")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    jobs = [(name, lambda name=name: build(EXAMPLES / f"{name}.pt", "pynq-z2"))
            for name in filter(None, args.networks.split(","))]
    designs = real_designs()
    folder = Path(tempfile.mkdtemp(prefix="hwseg-bench-nets-"))
    for name in filter(None, args.real.split(",")):
        if name not in designs:
            parser.error(f"unknown real-resolution design {name!r}; choose from {', '.join(designs)}")
        checkpoint, board, size = designs[name]
        jobs.append((name, lambda checkpoint=checkpoint, board=board, size=size:
                     build(checkpoint(folder), board, input_size=size)))
    failed = False
    for name, make in jobs:
        progress(f"{name}: compiling")
        design = make()
        for count in threads:
            record = measure(name, design, args, count)
            failed |= not record["passed"]
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                print(f"{name:22s} threads {count}  build {record['build_seconds']:6.1f} s  "
                      f"{record['cycles']:>10,} cycles in {record['seconds']:7.3f} s = "
                      f"{record['cycles_per_second']:>10,} cycles/s"
                      + (f" (range {record['cycles_per_second_range'][0]:,}–{record['cycles_per_second_range'][1]:,})"
                         if args.repeat > 1 else "")
                      + f"  (run after build {record['wall_seconds_after_build']:.1f} s)  "
                      f"cycles/frame {record['cycles_per_frame']['measured']:,} measured, "
                      f"{record['cycles_per_frame']['estimated']:,} estimated  "
                      f"{'every beat matched' if record['passed'] else 'FAILED'}", flush=True)
                if not record["passed"]:
                    print(record["summary"])
        if args.cocotb:
            record = cocotb_record(name, design, args)
            print(json.dumps(record) if args.json else
                  f"{name:22s} cocotb     {record['cycles']:>10,} cycles in {record['seconds']:7.1f} s = "
                  f"{record['cycles_per_second']:>10,} cycles/s", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

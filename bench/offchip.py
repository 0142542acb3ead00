"""Buffers in DRAM, measured in RTL against the estimate (issue 14).

    python bench/offchip.py [--case slow-memory|real-size|all] [--port-efficiency 0.1] [--memory-ready 0.1]
                            [--frames 12] [--seed 2] [--json]

``real-size``: the zoo's ERFNet-tiny (``examples/erfnet_tiny.pt``) at 512×256 (``--input 256x512``) on pynq-z2 with
the default ``--offchip auto`` (which puts its biggest buffers in DRAM), two unstalled and two stalled frames
(AXI-Stream stalls 0.3, memory latency 20–200, ready 0.9): every beat against golden, the cycles per frame against
the estimate, the DRAM words against the estimate's traffic. About four minutes.

``slow-memory``: the reduced ERFNet of ``sim/test_offchip.py`` (every block type, dilations 2–16, 128×64) on pynq-z2 with every
buffer in DRAM (``--offchip all``), on a board whose memory port moves a beat in a tenth of the cycles each way
(``port_efficiency``) and a memory model that is ready in a tenth of the cycles (``memory_ready``): the design
is bandwidth-bound, and the estimate's frame period is the memory's. The simulation runs ``--frames`` stalled
frames after the two measured ones; the layers share the memory, so frames leave unevenly (upstream layers run
ahead on buffers held in DRAM), and the last ones faster (the layers upstream, out of input, leave the memory to
the rest): the figure is the mean period between the end of frame 5 and that of the third-last, against the
estimate. Prints the bound, both periods, the error, the DRAM words moved and whether every beat matched
golden. About two minutes.

Exits 1 if a beat differs, or a cycle figure is more than 5 % off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from hwseg.boards import load_board  # noqa: E402
from hwseg.cosim.network import simulate_design  # noqa: E402
from hwseg.flow import build, compile_graph  # noqa: E402
from hwseg.frontend import to_graph  # noqa: E402
from hwseg.models import build_model  # noqa: E402
from hwseg.quant import calibrate  # noqa: E402

#: the reduced ERFNet of sim/test_offchip.py
ARGS = {"classes": 6, "width": 0.25, "blocks": [1, 4, 1, 1], "input_size": [64, 128], "dropout": False}


def reduced_erfnet():
    torch.manual_seed(0)
    model = build_model("erfnet", ARGS)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    return to_graph(model.eval(), (3, 64, 128), name="erfnet_reduced")


def real_size(args) -> tuple[dict, bool]:
    """ERFNet-tiny at 512×256 on pynq-z2, --offchip auto."""
    started = time.monotonic()
    print("compiling ERFNet-tiny at 256x512 for pynq-z2 (--offchip auto) …", file=sys.stderr, flush=True)
    design = build(ROOT / "examples" / "erfnet_tiny.pt", "pynq-z2", input_size=(256, 512))
    estimate = design.estimate
    print("simulating 4 frames …", file=sys.stderr, flush=True)
    report = simulate_design(design, frames=2, seed=args.seed, valid_prob=0.7, ready_prob=0.7,
                             memory_latency=(20, 200), memory_ready=0.9)
    word = design.manifest["dram"]["data_bits"] // 8
    setup_read, setup_write = estimate.dram_setup_bytes
    expected = (report.frames * estimate.roofline.dram_read_bytes // word + setup_read // word,
                report.frames * estimate.roofline.dram_write_bytes // word + setup_write // word)
    result = {
        "case": "real-size", "design": "erfnet_tiny 512x256 pynq-z2 --offchip auto",
        "buffers_in_dram": len(estimate.dram_buffers), "dram_bytes_per_frame": estimate.dram_bytes_per_frame,
        "bound": estimate.bound, "estimated_cycles_per_frame": estimate.cycles_per_frame,
        "measured_cycles_per_frame": report.measured_cycles_per_frame, "error": round(report.estimate_error, 4),
        "memory_words": report.memory_words, "estimated_memory_words": expected, "bit_exact": report.passed,
        "frames": report.frames, "seconds": round(time.monotonic() - started, 1),
    }
    if not args.json:
        print(f"ERFNet-tiny 512x256 on pynq-z2, --offchip auto: {result['buffers_in_dram']} buffers in DRAM, "
              f"{estimate.dram_bytes_per_frame / 1e6:.2f} MB per frame, {estimate.bound}-bound")
        print(report.summary())
        print(f"DRAM words read, written: {report.memory_words[0]:,}, {report.memory_words[1]:,} (estimate: "
              f"{expected[0]:,}, {expected[1]:,} besides the reads that run ahead into the next frame); "
              f"{result['seconds']} s")
        if not report.passed:
            print(*report.mismatches[:5], sep="\n")
    return result, report.passed and abs(report.estimate_error) < 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("slow-memory", "real-size", "all"), default="all")
    parser.add_argument("--port-efficiency", type=float, default=0.1)
    parser.add_argument("--memory-ready", type=float, default=0.1)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ok = True
    if args.case in ("real-size", "all"):
        result, passed = real_size(args)
        ok &= passed
        if args.json:
            print(json.dumps(result))
    if args.case in ("slow-memory", "all"):
        result, passed = slow_memory(args)
        ok &= passed
        if args.json:
            print(json.dumps(result))
    return 0 if ok else 1


def slow_memory(args) -> tuple[dict, bool]:
    """The reduced ERFNet, every buffer in DRAM, a memory that sets the pace."""
    started = time.monotonic()
    base = load_board("pynq-z2")
    board = replace(base, dram=replace(base.dram, port_efficiency=args.port_efficiency))
    print("compiling the reduced ERFNet for pynq-z2, every buffer in DRAM …", file=sys.stderr, flush=True)
    design = compile_graph(reduced_erfnet(), board, offchip="all")
    estimate = design.estimate
    print(f"simulating {args.frames + 2} frames …", file=sys.stderr, flush=True)
    report = simulate_design(design, frames=args.frames, seed=args.seed, valid_prob=1.0, ready_prob=1.0,
                             memory_latency=(20, 200), memory_ready=args.memory_ready)
    pixels = design.graph.output_type.pixels
    ends = report.output_cycles[pixels - 1::pixels]
    # steady state: after the first four frames (the pipeline filling) and before the last two (the layers
    # upstream, out of input, leave the memory to the rest: the last frames leave faster)
    first, last = min(4, len(ends) - 2), max(len(ends) - 3, min(4, len(ends) - 2) + 1)
    period = (ends[last] - ends[first]) / (last - first)
    error = period / estimate.cycles_per_frame - 1
    result = {
        "case": "slow-memory", "bound": estimate.bound, "compute_cycles_per_frame": estimate.compute_cycles_per_frame,
        "bandwidth_cycles_per_frame": round(estimate.bandwidth_cycles_per_frame),
        "estimated_cycles_per_frame": estimate.cycles_per_frame, "measured_cycles_per_frame": round(period),
        "error": round(error, 4), "frames": len(ends), "memory_words": report.memory_words,
        "bit_exact": report.passed, "seconds": round(time.monotonic() - started, 1),
    }
    if not args.json:
        print(f"bound: {result['bound']} (compute {result['compute_cycles_per_frame']:,} cycles per frame, bandwidth "
              f"{result['bandwidth_cycles_per_frame']:,})")
        print(f"cycles per frame: estimated {result['estimated_cycles_per_frame']:,}, measured "
              f"{result['measured_cycles_per_frame']:,} (mean of frames {first + 2}–{last + 1}; {100 * error:+.1f} %)")
        print(f"DRAM words read, written: {report.memory_words[0]:,}, {report.memory_words[1]:,}; every beat equal to "
              f"golden: {'yes' if report.passed else 'NO'}; {result['seconds']} s")
        if not report.passed:
            print(report.summary(), *report.mismatches[:5], sep="\n")
    return result, report.passed and abs(error) < 0.05 and estimate.bound == "bandwidth"


if __name__ == "__main__":
    sys.exit(main())

"""Buffers in DRAM, measured in RTL against the estimate: a memory slow enough to set the pace (issue 14).

    python bench/offchip.py [--port-efficiency 0.1] [--memory-ready 0.1] [--frames 10] [--seed 2] [--json]

The reduced ERFNet of ``sim/test_offchip.py`` (every block type, dilations 2–16, 128×64) on pynq-z2 with every
buffer in DRAM (``--offchip all``), on a board whose memory port moves a beat in a tenth of the cycles each way
(``port_efficiency``) and a memory model that is ready in a tenth of the cycles (``memory_ready``): the design
is bandwidth-bound, and the estimate's frame period is the memory's. The simulation runs ``--frames`` stalled
frames after the two measured ones; the layers share the memory, so frames leave unevenly (upstream layers run
ahead on buffers held in DRAM): the figure is the mean period over eight frames after the first four, against
the estimate. Prints the bound, both periods, the error, the DRAM words moved and whether every beat matched
golden; exits 1 if a beat differs or the error exceeds 5 %. About two minutes.
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
from hwseg.flow import compile_graph  # noqa: E402
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-efficiency", type=float, default=0.1)
    parser.add_argument("--memory-ready", type=float, default=0.1)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
    first = min(4, len(ends) - 2)
    period = (ends[-1] - ends[first]) / (len(ends) - 1 - first)
    error = period / estimate.cycles_per_frame - 1
    result = {
        "bound": estimate.bound, "compute_cycles_per_frame": estimate.compute_cycles_per_frame,
        "bandwidth_cycles_per_frame": round(estimate.bandwidth_cycles_per_frame),
        "estimated_cycles_per_frame": estimate.cycles_per_frame, "measured_cycles_per_frame": round(period),
        "error": round(error, 4), "frames": len(ends), "memory_words": report.memory_words,
        "bit_exact": report.passed, "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bound: {result['bound']} (compute {result['compute_cycles_per_frame']:,} cycles per frame, bandwidth "
              f"{result['bandwidth_cycles_per_frame']:,})")
        print(f"cycles per frame: estimated {result['estimated_cycles_per_frame']:,}, measured "
              f"{result['measured_cycles_per_frame']:,} (mean of frames {first + 1}–{len(ends)}; {100 * error:+.1f} %)")
        print(f"DRAM words read, written: {report.memory_words[0]:,}, {report.memory_words[1]:,}; every beat equal to "
              f"golden: {'yes' if report.passed else 'NO'}; {result['seconds']} s")
        if not report.passed:
            print(report.summary(), *report.mismatches[:5], sep="\n")
    return 0 if report.passed and abs(error) < 0.05 and estimate.bound == "bandwidth" else 1


if __name__ == "__main__":
    sys.exit(main())

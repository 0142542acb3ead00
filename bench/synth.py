"""Synthesize built designs with Yosys and put the cell counts beside hwseg's estimate.

    python bench/synth.py examples/bfcn.pt examples/bfcn_int8.pt [--board pynq-z2] [--mapper abc]

For each checkpoint it compiles the accelerator for the board, synthesizes the emitted Verilog for the
board's family with :func:`hwseg.synth.synthesize` (``synth_xilinx``, ``synth_ecp5`` or
``synth_ice40 -dsp``; LUTs mapped by ABC9 with ``-dff``, or by classic ABC where ABC9 fails) and prints
one JSON object per design: the estimated and the synthesized LUT, FF, DSP and block RAM (in the
board's block size), the estimated fps, the synthesis time and the cells by primitive.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwseg.boards import load_board
from hwseg.flow import build
from hwseg.synth import synthesize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--board", default="pynq-z2")
    parser.add_argument("--mapper", choices=("auto", "abc9", "abc"), default="auto",
                        help="LUT mapper: abc9, abc, or auto (abc9, then abc where abc9 fails; default)")
    args = parser.parse_args(argv)
    board = load_board(args.board)
    for path in args.checkpoints:
        design = build(path, board.name)
        mappers = None if args.mapper == "auto" else (args.mapper,)
        result = synthesize(design.verilog, design.name, board.family, uram=bool(board.uram), mappers=mappers)
        print(json.dumps({"design": design.name, "board": board.name, "family": board.family,
                          "estimated": design.estimate.total.as_dict(), "synthesized": result.totals,
                          "fps": round(design.estimate.fps, 1), "cycles_per_frame": design.estimate.cycles_per_frame,
                          "synthesis_seconds": round(result.seconds, 1), "lut_mapper": result.mapper,
                          "cells": result.cells}))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

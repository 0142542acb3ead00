"""Place and route every example network on a Lattice board and print its Fmax, as `hwseg build --pnr` does.

    python bench/fmax.py [--board ulx3s-85f] [examples/int8_tiny.pt ...] [--fps N] [--markdown]

For each checkpoint (default: every ``examples/*.pt``) it builds the accelerator for the board at its own
clock, synthesizes it with Yosys (``synth_ecp5``/``synth_ice40``) and places and routes it with nextpnr at the
board clock (:func:`hwseg.synth.synthesize_design`), and prints one JSON object per design: the estimated fps,
the synthesized LUT/FF/DSP/block RAM, nextpnr's Fmax against the clock, and its critical path (nanoseconds,
logic levels, from and to). ``--markdown`` prints the README's table at the end. Minutes per network; one at a
time (nextpnr takes a core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hwseg.boards import load_board
from hwseg.errors import HwsegError
from hwseg.flow import build

ROOT = Path(__file__).resolve().parents[1]


def measure(path: Path, board: str, fps: float | None) -> dict:
    started = time.monotonic()
    design = build(path, board, fps=fps).synthesize(pnr=True)
    synthesized = design.synthesis
    pnr = synthesized["pnr"]
    return {"design": design.name, "board": board, "fps": round(design.estimate.fps, 1),
            "synthesized": synthesized["totals"], "fmax_mhz": pnr["fmax_mhz"], "clock_mhz": pnr["clock_mhz"],
            "meets_clock": pnr["meets_clock"], "critical_path": pnr.get("critical_path"),
            "seconds": round(time.monotonic() - started)}


def markdown(rows: list[dict]) -> str:
    lines = ["| network | fps (estimate) | LUT | FF | DSP | BRAM | Fmax (MHz) | critical path |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| `{row['design']}` | | | | | | | {row['error']} |")
            continue
        s, path = row["synthesized"], row["critical_path"]
        where = (f"{path['ns']:g} ns, {path['logic_levels']} levels: {path['from']} → {path['to']}" if path else "")
        lines.append(f"| `{row['design']}` | {row['fps']:,.0f} | {s['lut']:,} | {s['ff']:,} | {s['dsp']} | {s['bram']} "
                     f"| {row['fmax_mhz']:.1f} | {where} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--board", default="ulx3s-85f")
    parser.add_argument("--fps", type=float, default=None, help="fold to this frame rate instead of the highest")
    parser.add_argument("--markdown", action="store_true", help="print the README table at the end")
    args = parser.parse_args(argv)
    if load_board(args.board).family not in ("ecp5", "ice40"):
        parser.error(f"--board must be a Lattice board (open place and route), not {args.board}")
    paths = args.checkpoints or sorted((ROOT / "examples").glob("*.pt"))
    rows = []
    for path in paths:
        try:
            row = measure(path, args.board, args.fps)
        except HwsegError as error:
            row = {"design": path.stem, "board": args.board, "error": str(error)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.markdown:
        print(markdown(rows))
    return 1 if any("error" in row or not row["meets_clock"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

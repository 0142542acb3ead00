"""The ``hwseg`` command line. Argument handling and printing only; the work is in hwseg.flow and hwseg.cosim."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import HwsegError

__all__ = ["main"]


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 64x64, not {text!r}") from None
    return height, width


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], not {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _progress(message: str) -> None:
    print(f"hwseg: {message}", file=sys.stderr, flush=True)


def _cmd_build(args) -> int:
    from .flow import build

    _progress(f"compiling {args.model} for {args.board}")
    design = build(args.model, args.board, input_size=args.input)
    target = design.write(args.out)
    print(design.table())
    _progress(f"wrote {target}/ ({', '.join(design.files())})")
    return 0


def _cmd_sim(args) -> int:
    from .cosim import simulate_design
    from .flow import build

    _progress(f"compiling {args.model} for {args.board}")
    design = build(args.model, args.board, input_size=args.input)
    _progress(f"simulating {2 + args.frames} frames with {args.simulator} (2 without stalls to measure "
              f"cycles, {args.frames} with tvalid gaps and tready backpressure at p={args.stall})")
    report = simulate_design(design, frames=args.frames, simulator=args.simulator, seed=args.seed,
                             valid_prob=1 - args.stall, ready_prob=1 - args.stall, work_dir=args.work)
    print(report.summary())
    return 0 if report.passed else 1


def _cmd_boards(args) -> int:
    from .boards import known_boards

    for board in known_boards():
        r = board.resources
        aliases = f" (alias {', '.join(board.aliases)})" if board.aliases else ""
        print(f"{board.name}{aliases}: {board.description}, {board.part}, {board.clock_mhz:g} MHz; "
              f"{r['lut']:,} LUT, {r['ff']:,} FF, {r['dsp']:,} DSP, {r['bram18']:,} BRAM18")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwseg", description="Build quantized segmentation networks into streaming FPGA accelerators.")
    parser.add_argument("--version", action="version", version=f"hwseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def model_options(command):
        command.add_argument("model", metavar="MODEL.pt", help="an hwseg checkpoint (see README: Checkpoints)")
        command.add_argument("--board", default="pynq-z2", metavar="NAME",
                             help="target board (default: pynq-z2; `hwseg boards` lists them)")
        command.add_argument("--input", type=_size, metavar="HxW",
                             help="input height and width (default: the size stored in the checkpoint)")

    build = commands.add_parser(
        "build", help="compile a checkpoint to Verilog with a resource and throughput report",
        description="Compile MODEL.pt into one AXI4-Stream accelerator. Writes OUT/<model>/: <model>.v, "
                    "ports.json, manifest.json, report.json, report.md; prints the report table.")
    model_options(build)
    build.add_argument("--out", default="rtl_out", metavar="DIR", help="output root folder (default: rtl_out)")
    build.set_defaults(run=_cmd_build)

    sim = commands.add_parser(
        "sim", help="simulate the emitted Verilog against the golden model",
        description="Compile MODEL.pt, then simulate its Verilog on random frames: 2 frames without stalls "
                    "(to measure cycles per frame) and FRAMES frames with random tvalid gaps and tready "
                    "backpressure. Every output beat is compared with the NumPy golden model. Exit status 0 "
                    "when every beat matched.")
    model_options(sim)
    sim.add_argument("--frames", type=_positive, default=2, metavar="N",
                     help="frames to run under random stalls, after the 2 measured ones (default: 2)")
    sim.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                     help="Verilog simulator (default: verilator)")
    sim.add_argument("--stall", type=_probability, default=0.3, metavar="P",
                     help="probability of a tvalid gap and of tready low in each cycle (default: 0.3)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the random frames and stalls (default: 1)")
    sim.add_argument("--work", metavar="DIR", help="keep the simulation files (stimulus, logs) in DIR")
    sim.set_defaults(run=_cmd_sim)

    boards = commands.add_parser("boards", help="list the known boards",
                                 description="List every board in boards/ with its part, clock and resources.")
    boards.set_defaults(run=_cmd_boards)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except HwsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

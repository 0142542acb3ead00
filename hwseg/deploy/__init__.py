"""``hwseg build --deploy``: what runs the accelerator on a Zynq board, in ``deploy/`` beside the Verilog.

* ``build.tcl`` (and a ``Makefile``): Vivado builds the bitstream (:mod:`.vivado`).
* ``{name}_dma.v``: the accelerator with its streams widened to what an AXI DMA moves (a power of two of bytes;
  the input's low bits are the accelerator's, the output's high bits zero).
* ``hwseg_driver/``: the PYNQ driver (``SegmentationOverlay``, :mod:`.pynq_driver`) and ``spec.json``, what the
  design takes and gives; the build copies ``{name}.bit`` and ``{name}.hwh`` there.
* ``README.md`` and ``example.py``: copy ``deploy/`` to the board, run, see the class map and the fps.

Designs with buffers in DRAM need the accelerator's memory port on the processing system too: not yet.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import HwsegError
from .vivado import VIVADO_VERSION, build_tcl

__all__ = ["DeployError", "DEFAULT_BAUD", "VIVADO_VERSION", "check_board", "check_deployable", "deploy_files", "dma_width"]

#: the serial line's bit rate of ``--bitstream`` (ULX3S) unless ``--baud`` says otherwise: the board's FT231X
#: takes up to 3 Mbaud, and a 50 MHz clock divides evenly by it
DEFAULT_BAUD = 2_000_000
#: the AXI DMA's stream widths (bits)
DMA_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
#: bits of the DMA's transfer length register (``c_sg_length_width``: up to 64 MiB a transfer)
DMA_LENGTH_BITS = 26


class DeployError(HwsegError):
    """A design ``--deploy`` cannot package (the reason and what to do, in one line)."""


def dma_width(bits: int) -> int:
    """The narrowest AXI DMA stream that carries ``bits``."""
    for width in DMA_WIDTHS:
        if width >= bits:
            return width
    raise DeployError(f"a {bits}-bit stream is wider than an AXI DMA's {DMA_WIDTHS[-1]} bits")


def check_board(board) -> None:
    """One-line :class:`DeployError` unless ``board`` is one ``--deploy`` packages for (a Zynq board)."""
    if not board.board_files:
        raise DeployError(f"--deploy packages for the Zynq boards (pynq-z1, pynq-z2, ultra96-v2, zcu104, kv260, "
                          f"zcu102); {board.name} has no processing system to run the driver")


def check_deployable(design) -> None:
    """One-line :class:`DeployError` unless ``design`` can be packaged for its board."""
    check_board(design.estimate.board)
    if design.verilog is None:
        raise DeployError("--deploy needs the Verilog; drop --estimate-only")
    if "dram" in design.manifest:
        raise DeployError(f"{design.name} keeps buffers in DRAM, which --deploy does not wire to the processing "
                          f"system yet; build with --offchip none (or a smaller --input) to deploy it")
    source = design.manifest["input"]
    if source["type"] != "UInt(8)":
        raise DeployError(f"--deploy takes images of 8-bit unsigned pixels; {design.name}'s input is {source['type']}")


def _spec(design) -> dict:
    source, result = design.manifest["input"], design.manifest["output"]
    (c, h, w), (oc, oh, ow) = source["shape"], result["shape"]
    out_type = design.graph.output_type.dtype
    return {
        "name": design.name, "board": design.estimate.board.name, "clock_mhz": design.estimate.board.clock_mhz,
        "dma_length_bits": DMA_LENGTH_BITS,
        "input": {"channels": c, "height": h, "width": w, "bits": 8, "beats": source["beats_per_frame"],
                  "tdata_bits": source["tdata_bits"], "dma_bytes": dma_width(source["tdata_bits"]) // 8},
        "output": {"channels": oc, "height": oh, "width": ow, "bits": out_type.bits, "signed": out_type.signed,
                   "beats": result["beats_per_frame"], "tdata_bits": result["tdata_bits"],
                   "dma_bytes": dma_width(result["tdata_bits"]) // 8},
        "estimated_fps": round(design.estimate.fps, 3),
    }


def dma_wrapper(name: str, in_bits: int, out_bits: int) -> str:
    """``{name}_dma``: ``name`` with its streams as wide as an AXI DMA's."""
    in_width, out_width = dma_width(in_bits), dma_width(out_bits)
    pad = f"{{{out_width - out_bits}'b0, out_data}}" if out_width > out_bits else "out_data"
    return f"""// {name} with AXI DMA-wide streams (written by hwseg --deploy): the input's low {in_bits} of {in_width}
// bits are the accelerator's, the output's {out_bits} bits sit low in {out_width}, zero above.
module {name}_dma (
    input  wire clk,
    input  wire rst,
    input  wire [{in_width - 1}:0] s_axis_tdata,
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    input  wire s_axis_tlast,
    output wire [{out_width - 1}:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready,
    output wire m_axis_tlast
);
    wire [{out_bits - 1}:0] out_data;
    assign m_axis_tdata = {pad};
    {name} core (
        .clk(clk), .rst(rst),
        .s_axis_tdata(s_axis_tdata[{in_bits - 1}:0]), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(out_data), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast)
    );
endmodule
"""


def dma_ports(design) -> list[dict]:
    """The ports of ``{name}_dma`` (as ``ports.json`` lists the accelerator's)."""
    widths = {"s_axis_tdata": dma_width(design.manifest["input"]["tdata_bits"]),
              "m_axis_tdata": dma_width(design.manifest["output"]["tdata_bits"])}
    return [{**port, "width": widths.get(port["name"], port["width"])} for port in design.ports]


_MAKEFILE = """# Builds the bitstream with Vivado (see build.tcl); `make` then copy this folder to the board.
VIVADO ?= vivado

all: hwseg_driver/{name}.bit

hwseg_driver/{name}.bit: build.tcl {name}_dma.v ../{name}.v
\t$(VIVADO) -mode batch -nojournal -log vivado.log -source build.tcl

clean:
\trm -rf vivado vivado.log timing_summary.txt hwseg_driver/{name}.bit hwseg_driver/{name}.hwh

.PHONY: all clean
"""

_EXAMPLE = '''"""Runs {name} on the board: a random image (or the one given) through the accelerator, the class map printed
as digits, then the throughput. Usage (on the board, as root, in this folder): python3 example.py [image.png]"""

import sys

import numpy as np

from hwseg_driver import SPEC, SegmentationOverlay

overlay = SegmentationOverlay(batch_size=2)
shape = (SPEC["input"]["height"], SPEC["input"]["width"], SPEC["input"]["channels"])
if len(sys.argv) > 1:
    from PIL import Image
    image = np.asarray(Image.open(sys.argv[1]).convert("RGB").resize((shape[1], shape[0])), dtype=np.uint8)
else:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
classes = overlay.segment(image[None])[0]
for row in classes:
    print("".join("0123456789abcdefghijklmnopqrstuvwxyz"[value % 36] for value in row))
result = overlay.throughput_test()
print(f"{{result['fps']:.1f}} fps (estimated {{SPEC['estimated_fps']}}); {{result['in_mbs']:.1f}} MB/s in, "
      f"{{result['out_mbs']:.1f}} MB/s out")
'''

_README = """# {name} on {board}

Written by hwseg --deploy for Vivado {vivado}. The accelerator takes {c}×{h}×{w} images of 8-bit pixels and gives
{oc}×{oh}×{ow} maps; the estimate is {fps:,.1f} fps at {clock:g} MHz.

## Build the bitstream (a machine with Vivado {vivado})
1. Install the board files of `{board_files}` (Vivado: Tools → Vivado Store → Boards, or the vendor's
   repository) — they set the processing system's DDR and MIO.
2. `make` in this folder (or `vivado -mode batch -source build.tcl`). It packages the Verilog as an IP, builds the
   block design (processing system, AXI DMA, the accelerator), implements it, writes
   `hwseg_driver/{name}.bit` and `.hwh`, and the timing summary in `timing_summary.txt` (check that it meets
   timing).

## Run it (a {board} with a PYNQ image)
1. Copy this folder to the board (`scp -r deploy xilinx@<board>:`).
2. On the board, as root: `python3 example.py` — the class map of a random image, then the fps.
3. In your code:

       from hwseg_driver import SegmentationOverlay
       overlay = SegmentationOverlay(batch_size=4)
       maps = overlay.segment(images)        # uint8 N×{h}×{w}×{c} → N×{oh}×{ow}

A wrong image shape or type, a missing bitstream, or a DMA transfer that does not finish (`timeout=`, seconds)
is a one-line `DriverError`. hwseg proved this driver against the emitted Verilog in simulation
(`tests/deploy`); only the board shows the real timing and the real DMA.
"""


def deploy_files(design, version: str) -> dict[str, str]:
    """``deploy/…`` → content, for a design :func:`check_deployable` accepts."""
    check_deployable(design)
    spec = _spec(design)
    board, name = design.estimate.board, design.name
    fields = dict(name=name, board=board.name, vivado=VIVADO_VERSION, c=spec["input"]["channels"],
                  h=spec["input"]["height"], w=spec["input"]["width"], oc=spec["output"]["channels"],
                  oh=spec["output"]["height"], ow=spec["output"]["width"], fps=spec["estimated_fps"],
                  clock=board.clock_mhz, board_files=board.board_files)
    driver = (Path(__file__).parent / "pynq_driver.py").read_text()
    return {
        "deploy/build.tcl": build_tcl(name=name, board=board, in_width=spec["input"]["dma_bytes"] * 8,
                                      out_width=spec["output"]["dma_bytes"] * 8, version=version),
        "deploy/Makefile": _MAKEFILE.format(name=name),
        f"deploy/{name}_dma.v": dma_wrapper(name, spec["input"]["tdata_bits"], spec["output"]["tdata_bits"]),
        "deploy/hwseg_driver/__init__.py": driver,
        "deploy/hwseg_driver/spec.json": json.dumps(spec, indent=2) + "\n",
        "deploy/example.py": _EXAMPLE.format(name=name),
        "deploy/README.md": _README.format(**fields),
    }

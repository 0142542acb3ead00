"""``report.html``: the build report as one self-contained page.

Inline CSS and SVG only (no script, nothing fetched): the summary (board, clock, cycles per
frame, fps), the estimated fps beside the board's compute roofline and stream bound
(:mod:`.roofline`) as a chart and as figures, the ``limit`` line, one horizontal bar chart per
layer metric (cycles per frame and each resource of :data:`hwseg.boards.RESOURCES`) with the
bottleneck layer marked in every chart, the layer and buffer tables of ``report.md``, and where the memory
and the logic go (window, weights, FIFOs; datapath, control) as stacked bars and per-layer tables.
Every name is escaped; the bytes depend only on the estimate (no dates, no paths).
"""

from __future__ import annotations

import math
from html import escape

from ..boards import RESOURCES
from .network import NetworkEstimate
from .report import (LOGIC_COLUMNS, LOGIC_NOTE, MEMORY_NOTE, MEMORY_ROLES, _bram_note, _buffer_rows, _head, _rows,
                     _summary, _synthesis_line, dram_line, limit_line, logic_split_rows, memory_split_rows, resource_label,
                     roofline_fraction, split_shares, table_resources)

__all__ = ["report_html"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 1.5em auto; max-width: 80em; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.15em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bottleneck td { background: #fff1d6; font-weight: 600; }
table.summary th { text-align: left; width: 11em; }
p.limit { border-left: 4px solid #d9822b; padding: 0.3em 0.7em; background: #fff8ee; }
p.overflow { color: #b00020; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1.2em 2em; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
svg text { font: 12px ui-monospace, monospace; fill: #222; }
svg rect.bar { fill: #4e79a7; }
svg g.bottleneck rect.bar { fill: #d9822b; }
svg g.bottleneck rect.band { fill: #fff1d6; }
svg rect.band { fill: none; }
svg g.bottleneck text.label { font-weight: bold; }
svg g.achieved rect.bar { fill: #d9822b; }
svg line.axis { stroke: #999; stroke-width: 1; }
svg rect.window { fill: #4e79a7; } svg rect.weights { fill: #f28e2b; } svg rect.fifos { fill: #59a14f; }
svg rect.datapath { fill: #4e79a7; } svg rect.control { fill: #e15759; }
span.key { display: inline-block; width: 0.8em; height: 0.8em; margin: 0 0.3em 0 0.8em; }
span.window, span.datapath { background: #4e79a7; } span.weights { background: #f28e2b; }
span.fifos { background: #59a14f; } span.control { background: #e15759; }
.note { color: #555; font-size: 0.92em; }
"""

_ROW = 18                 # px per bar
_BAR = 250                # px of the longest bar
_CHAR = 7.5               # px per character of the 12 px monospace font
_VALUE = 100              # px for the value right of the bar


def _px(value: float) -> str:
    """A coordinate with a fixed number of decimals (deterministic text)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _bar_chart(metric: str, caption: str, rows: list[tuple[str, float, str, bool]], *,
               mark: str = "bottleneck", star: bool = True) -> str:
    """An SVG horizontal bar chart, one bar per row ``(label, value, value text, marked)``; marked rows
    get the class ``mark`` (a band behind them and a differently coloured bar) and, with ``star``, a
    ``*`` after the label."""
    labels = [label + (" *" if marked and star else "") for label, _, _, marked in rows]
    label_width = 8 + _CHAR * max((len(label) for label in labels), default=1)
    top = max((value for _, value, _, _ in rows if math.isfinite(value)), default=0)
    width, height = label_width + 8 + _BAR + _VALUE, _ROW * len(rows) + 4
    out = [f'<figure><figcaption>{escape(caption)}</figcaption>',
           f'<svg class="chart" data-metric="{escape(metric)}" width="{_px(width)}" height="{height}" '
           f'viewBox="0 0 {_px(width)} {height}" role="img" aria-label="{escape(caption)}">']
    x0 = label_width + 4
    for index, ((name, value, text, marked), label) in enumerate(zip(rows, labels)):
        y = 2 + index * _ROW
        length = _BAR * value / top if top > 0 and math.isfinite(value) else 0.0
        out.append(f'<g class="row{" " + mark if marked else ""}" data-layer="{escape(name)}">'
                   f'<title>{escape(name)}: {escape(text)}{f" ({mark})" if marked else ""}</title>'
                   f'<rect class="band" x="0" y="{y}" width="{_px(width)}" height="{_ROW}"/>'
                   f'<text class="label" x="{_px(label_width)}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
                   f'<rect class="bar" x="{_px(x0)}" y="{y + 3}" width="{_px(length)}" height="{_ROW - 6}"/>'
                   f'<text class="value" x="{_px(x0 + length + 5)}" y="{y + 13}">{escape(text)}</text></g>')
    out.append(f'<line class="axis" x1="{_px(x0)}" y1="0" x2="{_px(x0)}" y2="{height}"/></svg></figure>')
    return "".join(out)


def _stacked_bar(metric: str, caption: str, parts: list[tuple[str, str, int]]) -> str:
    """One horizontal bar of ``_BAR`` px split among ``parts`` ``(role, label, value)`` in proportion, each piece
    of class ``role``, with a key below giving each part's value and share."""
    whole = sum(value for _, _, value in parts)
    out = [f'<figure><figcaption>{escape(caption)}</figcaption>',
           f'<svg class="split" data-metric="{escape(metric)}" width="{_BAR}" height="{_ROW}" '
           f'viewBox="0 0 {_BAR} {_ROW}" role="img" aria-label="{escape(caption)}">']
    x = 0.0
    for role, label, value in parts:
        length = _BAR * value / whole if whole else 0.0
        out.append(f'<rect class="{escape(role)}" data-role="{escape(role)}" data-value="{value}" x="{_px(x)}" y="2" '
                   f'width="{_px(length)}" height="{_ROW - 4}"><title>{escape(label)}: {value:,}</title></rect>')
        x += length
    out.append("</svg><div>" + "".join(
        f'<span class="key {escape(role)}"></span>{escape(label)} {value:,}'
        + (f" ({100 * value / whole:.1f} %)" if whole else "") for role, label, value in parts) + "</div></figure>")
    return "".join(out)


def _split_sections(estimate: NetworkEstimate) -> list[str]:
    """Where the memory goes (window, weights, FIFOs) and the logic (datapath, control): stacked bars of the
    totals and the per-layer tables of ``report.md``."""
    total, board = estimate.split, estimate.board
    if total is None:
        return []
    memory = [("bits", "memory bits"), ("bram", resource_label("bram", board)), ("uram", "URAM")]
    bars = [_stacked_bar(f"memory-{key}", f"{label} by what they hold",
                         [(role, heading, total.memory[role][key]) for role, heading in MEMORY_ROLES])
            for key, label in memory if any(total.memory[role][key] for role, _ in MEMORY_ROLES)]
    body = ["<h2>Where the memory goes</h2>", f"<p>{escape(MEMORY_NOTE)}</p>"]
    shares = split_shares(estimate)
    if shares:
        body.append(f"<p>{escape(shares)}.</p>")
    body.append('<div class="charts">' + "".join(bars) + "</div>")
    body.append(_table(("layer", *(heading for _, heading in MEMORY_ROLES)), memory_split_rows(estimate),
                       css="memory-split"))
    logic = [_stacked_bar(f"logic-{key}", f"{key.upper()}: datapath and control",
                          [(role, role, total.logic[role][key]) for role in ("datapath", "control")])
             for key in ("lut", "ff")]
    body += ["<h2>Logic: datapath vs control</h2>", f"<p>{escape(LOGIC_NOTE)}</p>",
             '<div class="charts">' + "".join(logic) + "</div>",
             _table(("layer", "op", *(heading for _, _, heading in LOGIC_COLUMNS)), logic_split_rows(estimate),
                    numeric=frozenset(range(2, 2 + len(LOGIC_COLUMNS))), css="logic-split")]
    return body


def _fps_text(value: float) -> str:
    return f"{value:,.1f} fps" if math.isfinite(value) else "unbounded"


def _roofline_section(estimate: NetworkEstimate) -> list[str]:
    roof = estimate.roofline
    if roof is None:
        return []
    binding = resource_label(roof.binding, estimate.board)
    fits = not estimate.overflows()     # a design that does not fit has no frame rate to chart
    bars = [("estimated", estimate.fps, _fps_text(estimate.fps), True)] * fits + [
            (f"compute bound ({binding})", roof.compute_fps, _fps_text(roof.compute_fps), False),
            ("stream bound", roof.stream_fps, _fps_text(roof.stream_fps), False)]
    chart = _bar_chart("roofline", "frames per second: the estimate beside the board's bounds", bars,
                       mark="achieved", star=False)
    fraction = roofline_fraction(estimate)
    figures = [
        ("estimated", _fps_text(estimate.fps) if fits else "none: does not fit",
         f"{estimate.cycles_per_frame:,} cycles per frame"),
        ("compute bound", _fps_text(roof.compute_fps),
         f"{roof.compute_cycles:,.1f} cycles per frame with the board's {binding}s all MAC lanes, shared among "
         f"the layers in proportion to their MACs ({binding}-bound)"),
        ("stream bound", _fps_text(roof.stream_fps),
         f"{roof.stream_cycles:,} cycles per frame: one beat per cycle through {roof.stream_layer}"),
    ]
    if fraction is not None:
        figures.append(("share of the compute bound", f"{100 * fraction:.1f} %", "estimated fps ÷ compute bound"))
    rows = "".join(f'<tr><th>{escape(name)}</th><td class="num" data-figure="{escape(name)}">{escape(value)}</td>'
                   f'<td>{escape(note)}</td></tr>' for name, value, note in figures)
    return ["<h2>Roofline</h2>", chart, f'<table class="roofline">{rows}</table>',
            '<p class="note">The compute bound counts only MAC lanes (hwseg/estimate/roofline.py); line buffers, '
            'requantizers, FIFOs and the integer steps of folding keep every real design below it.</p>']


def _table(head, rows, bottleneck: str | None = None, numeric=frozenset(), css: str = "") -> str:
    out = [f'<table class="{css}">' if css else "<table>", "<tr>" + "".join(f"<th>{escape(cell)}</th>" for cell in head) + "</tr>"]
    for row in rows:
        marked = bottleneck is not None and row[0] == bottleneck + " *"
        cells = "".join(("<td class=\"num\">" if i in numeric else "<td>") + escape(cell) + "</td>"
                        for i, cell in enumerate(row))
        out.append(("<tr class=\"bottleneck\">" if marked else "<tr>") + cells + "</tr>")
    out.append("</table>")
    return "".join(out)


def report_html(estimate: NetworkEstimate, title: str, synthesized: dict | None = None) -> str:
    """The content of ``report.html`` for the design called ``title`` (with ``synthesized``: the synthesis
    totals, as for ``report.md``)."""
    board, bottleneck = estimate.board, estimate.bottleneck
    summary = [("board", f"{board.name} ({board.part})"), ("clock", f"{board.clock_mhz:g} MHz"),
               ("cycles per frame", f"{estimate.cycles_per_frame:,} (bottleneck {bottleneck})"),
               ("frames per second", _fps_text(estimate.fps) if not estimate.overflows() else "none: does not fit")]
    body = [f"<h1>{escape(title)}: resource and throughput estimate</h1>",
            '<table class="summary">' + "".join(f'<tr><th>{escape(k)}</th><td data-summary="{escape(k)}">'
                                                f'{escape(v)}</td></tr>' for k, v in summary) + "</table>",
            f"<p>{escape(_summary(estimate))}.</p>"]
    if estimate.overflows():
        body.append(f'<p class="overflow">The design does not fit {escape(board.name)}.</p>')
    limit = limit_line(estimate)
    if limit:
        body.append(f'<p class="limit">{escape(limit)}</p>')
    dram = dram_line(estimate)
    if dram:
        rows = "".join(f"<tr><td>{escape(b.layer)}</td><td>{escape(b.describe)}"
                       f"</td><td>{b.region_bytes:,}</td><td>{b.read_bytes:,}</td><td>{b.write_bytes:,}</td></tr>"
                       for b in estimate.dram_buffers)
        body += [f'<h2>In DRAM</h2><p class="dram">{escape(dram)}.</p>',
                 "<table><tr><th>layer</th><th>buffer</th><th>region (bytes)</th><th>read per frame (bytes)</th>"
                 f"<th>written per frame (bytes)</th></tr>{rows}</table>"]
    synthesis = _synthesis_line(synthesized)
    if synthesis:
        body.append(f"<p>{escape(synthesis)}.</p>")
    body += _roofline_section(estimate)

    body.append(f"<h2>Per layer</h2><p>The bottleneck layer, {escape(bottleneck)}, is marked * and highlighted in "
                f"every chart.</p>")
    charts = [_bar_chart("cycles", "cycles per frame",
                         [(layer.name, layer.cycles, f"{layer.cycles:,}", layer.name == bottleneck)
                          for layer in estimate.layers])]
    total = estimate.total.as_dict()
    for key in RESOURCES:
        values = [(layer.name, layer.resources.as_dict()[key]) for layer in estimate.layers]
        caption = (f"{resource_label(key, board)}: {total[key]:,} of {board.resources[key]:,} "
                   f"({100 * estimate.utilization[key]:.1f} %)")
        charts.append(_bar_chart(key, caption,
                                 [(name, value, f"{value:,}", name == bottleneck) for name, value in values]))
    body.append('<div class="charts">' + "".join(charts) + "</div>")

    body.append("<h2>Layers</h2>")
    body.append(_table(_head(board), _rows(estimate, synthesized), bottleneck, frozenset(range(2, 3 + len(table_resources(board))))))
    body.append(f'<p class="note">Estimates are analytic (hwseg/estimate); {escape(_bram_note(board))}; memories '
                'at most 64 deep count as LUTRAM.</p>')
    buffers = list(_buffer_rows(estimate))
    if buffers:
        body.append("<h2>Buffers</h2><p>Line buffers hold the rows a sliding window spans; FIFOs sit in front of a "
                    "layer's inputs (depth in beats × beat width; join inputs are sized so the graph cannot "
                    "deadlock).</p>")
        body.append(_table(("layer", "line buffer (rows × width × channels × bits)", "FIFOs (input: depth × width)"),
                           buffers))
    body += _split_sections(estimate)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}: hwseg report</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")

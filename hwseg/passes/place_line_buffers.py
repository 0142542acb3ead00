"""Move the line buffers of chosen convolutions to DRAM: a ``kh × kw`` convolution becomes a
:class:`~hwseg.ir.RowTaps` (the ``kh`` rows its window reads, stacked as channels; the hardware keeps them
in DRAM, :class:`hwseg.hw.dram.DramRowTaps`) followed by a ``1 × kw`` convolution over ``kh·C`` channels,
whose window is a few pixels of one row (none at all for ``kw = 1``, ERFNet's 3×1 convolutions).

The two compute exactly what the one did (``hwseg.golden.row_taps``: input channel ``ky·C + c`` of the
row convolution carries row ``ky`` of channel ``c``, and its weight is the original's ``[:, c, ky, :]``);
the output type, and so everything downstream, is unchanged.

Requires: an integer graph whose convolutions are not folded yet, or folded by hand (``pe`` and ``simd``
carry over: the window ``kh·kw·C`` has the same size; a ``"register"`` window request does not, the row
convolution's window being another one, but ``"folded"`` does: the row convolution's window, a pointwise one's
pixel too, is then served from memory).
Ensures: each chosen convolution ``n`` (:func:`movable`) is a RowTaps node ``n_rows`` with
``attrs["offchip"] = True`` and ``attrs["memory"]`` (the DRAM parameters,
``hwseg.estimate.offchip.memory_parameters``) and a Conv2d ``n`` reading it; nothing else changes. A chosen node that
cannot move is an ``UnsupportedError`` naming it and why.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..errors import UnsupportedError
from ..ir import Conv2d, Graph, Node, RowTaps

__all__ = ["apply", "movable", "why_not_movable", "ROWS_SUFFIX"]

ROWS_SUFFIX = "_rows"


def why_not_movable(graph: Graph, node) -> str | None:
    """Why ``node``'s line buffer cannot go to DRAM, or None if it can."""
    op = node.op
    if not isinstance(op, Conv2d):
        return f"it is a {type(op).__name__}, not a convolution"
    kh, _ = op.kernel
    if kh < 2:
        return "its window is one row high (no line buffer)"
    if op.groups != 1:
        return "it is a grouped convolution"
    if op.padding[0] > (kh - 1) * op.dilation[0]:
        return f"its padding {op.padding[0]} is more than the window's height"
    if node.name + ROWS_SUFFIX in graph:
        return f"a layer named {node.name + ROWS_SUFFIX!r} exists already"
    return None


def movable(graph: Graph) -> list[str]:
    """The convolutions whose line buffers can go to DRAM, in graph order."""
    return [node.name for node in graph if why_not_movable(graph, node) is None]


def apply(graph: Graph, *, select: Callable[[Graph], Iterable[str]] | Iterable[str], memory: dict) -> tuple[Graph, bool]:
    chosen = set(select(graph) if callable(select) else select)
    unknown = chosen - {node.name for node in graph}
    if unknown:
        raise UnsupportedError(f"no layer named {sorted(unknown)[0]!r} to move off chip")
    nodes = []
    for node in graph:
        if node.name not in chosen:
            nodes.append(node)
            continue
        reason = why_not_movable(graph, node)
        if reason:
            raise UnsupportedError(f"layer {node.name!r} ({node.op.describe()}) cannot keep its line buffer in DRAM: "
                                   f"{reason}")
        op = node.op
        (kh, kw), channels = op.kernel, op.in_channels
        rows = RowTaps(kh, op.stride[0], op.padding[0], op.dilation[0])
        weight = op.weight.transpose(0, 2, 1, 3).reshape(op.out_channels, kh * channels, 1, kw)
        row_conv = Conv2d(np.ascontiguousarray(weight), op.bias, op.weight_type, stride=(1, op.stride[1]),
                          padding=(0, op.padding[1]), dilation=(1, op.dilation[1]))
        # (a window kind chosen for the kh × kw window does not carry over, but one served from memory still can)
        attrs = {key: value for key, value in node.attrs.items() if key not in ("window", "window_request")
                 or (key == "window_request" and value == "folded")}
        nodes.append(Node(node.name + ROWS_SUFFIX, rows, node.inputs, {"offchip": True, "memory": dict(memory)}))
        nodes.append(Node(node.name, row_conv, (node.name + ROWS_SUFFIX,), attrs))
    if not chosen:
        return graph, False
    return graph.replace(nodes), True

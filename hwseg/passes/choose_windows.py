"""Record how each convolution gets its windows: from registers, or served from memory a slice at a time.

Requires: every Conv2d carries its folding (``pe``, ``simd``).
Ensures: every Conv2d with a window (not pointwise, not channelwise) carries ``window``, ``"register"``
(:class:`hwseg.hw.window.SlidingWindow` into a MAC array that holds the window) or ``"folded"``
(:class:`hwseg.hw.folded_window.FoldedWindow` serving ``simd`` elements per cycle into a serial MAC
array), as ``kind(graph, node)`` decides; a pointwise convolution carries ``window = "folded"`` where ``kind``
says so (its pixel served from a ring of a few pixels into a serial MAC array) and no ``window`` otherwise (``hwseg.estimate.cycles.window_kind``: the folded window
wherever it can be used and is no slower). Annotating lanes needs it: a folded window takes ``simd``
lanes, a register window whole pixels.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UnsupportedError
from ..ir import Conv2d, Graph, Node

__all__ = ["apply", "has_window"]

KINDS = ("register", "folded")


def has_window(op) -> bool:
    """Whether a Conv2d takes its input through a sliding window (not a pointwise or channelwise one)."""
    return isinstance(op, Conv2d) and not op.channelwise and not (
        op.kernel == (1, 1) and op.stride == (1, 1) and op.padding == (0, 0))


def _pointwise_conv(op) -> bool:
    return isinstance(op, Conv2d) and not op.channelwise and not has_window(op)


def apply(graph: Graph, *, kind: Callable) -> tuple[Graph, bool]:
    nodes, changed = [], False
    for node in graph:
        if _pointwise_conv(node.op):      # a held vector, or ("folded") a 1×1 window served from memory
            if "pe" not in node.attrs or "simd" not in node.attrs:
                nodes.append(node)
                continue
            chosen = kind(graph, node)
            if chosen not in (None, "folded"):
                raise UnsupportedError(f"layer {node.name!r}: a pointwise convolution's window is None or 'folded', "
                                       f"not {chosen!r}")
            changed |= node.attrs.get("window") != chosen
            nodes.append(node.with_attrs(window=chosen) if chosen else
                         Node(node.name, node.op, node.inputs, {k: v for k, v in node.attrs.items() if k != "window"}))
            continue
        if not has_window(node.op):
            nodes.append(node)
            continue
        if "pe" not in node.attrs or "simd" not in node.attrs:
            raise UnsupportedError(f"layer {node.name!r} has no folding; run set_folding first")
        chosen = kind(graph, node)
        if chosen not in KINDS:
            raise UnsupportedError(f"layer {node.name!r}: window kind must be one of {', '.join(KINDS)}, "
                                   f"not {chosen!r}")
        changed |= node.attrs.get("window") != chosen
        nodes.append(node.with_attrs(window=chosen))
    return graph.replace(nodes), changed

"""Decide how many channels each stream carries per beat (its *lanes*), node by node.

Requires: every Conv2d carries its folding (``pe``) and, with a window, its ``window`` kind
(``choose_windows``); every op is one the hardware knows.
Ensures: every node carries ``in_lanes`` (lanes it consumes; 0 for the input) and
``out_lanes`` (lanes it produces). The backend inserts a lane converter wherever a
producer's ``out_lanes`` differ from a consumer's ``in_lanes``.

A convolution with a folded window takes ``simd`` lanes (a slice of a pixel per beat); a channelwise
one takes and gives ``pe`` lanes. Other
sliding-window ops (Conv2d, MaxPool, AvgPool), transposed convolutions and upsamplers consume whole
pixels. A convolution (transposed or not) produces ``pe`` accumulators per beat; the requantizer (MulShift or Threshold) after it works on those lanes
as they come; one that does not follow a convolution takes its own ``pe`` lanes. An Add takes ``pe`` lanes on both inputs and gives ``pe``;
a Concat takes whole pixels, input ``k`` its own ``C_k`` lanes (``in_lanes`` is then the output's ``Σ C_k``).
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, Threshold,
                  Upsample, RowTaps)
from .choose_windows import KINDS, has_window
from .set_folding import foldable, standalone_requantizer

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    lanes: dict[str, tuple[int, int]] = {}
    folded = {n.name for n in foldable(graph)}
    for node in graph:
        op, channels = node.op, graph.types[node.name].channels
        if isinstance(op, Input):
            lanes[node.name] = (0, channels)
        elif node.name in folded and "pe" not in node.attrs:
            raise UnsupportedError(f"layer {node.name!r} has no folding; run set_folding first")
        elif isinstance(op, Conv2d) and op.channelwise:
            lanes[node.name] = (node.attrs["pe"], node.attrs["pe"])
        elif isinstance(op, (Conv2d, ConvTranspose2d)):
            if has_window(op) and node.attrs.get("window") not in KINDS:
                raise UnsupportedError(f"layer {node.name!r} has no window kind; run choose_windows first")
            taken = node.attrs["simd"] if node.attrs.get("window") == "folded" else graph.input_types(node.name)[0].channels
            lanes[node.name] = (taken, node.attrs["pe"])
        elif isinstance(op, (MulShift, Threshold)) and standalone_requantizer(graph, node):
            lanes[node.name] = (node.attrs["pe"], node.attrs["pe"])
        elif isinstance(op, (MulShift, Threshold)):
            produced = lanes[node.inputs[0]][1]
            lanes[node.name] = (produced, produced)
        elif isinstance(op, (MaxPool, AvgPool, Upsample)):
            lanes[node.name] = (channels, channels)
        elif isinstance(op, RowTaps):                # whole pixels in, all the taps of one out
            lanes[node.name] = (graph.input_types(node.name)[0].channels, channels)
        elif isinstance(op, Add):
            lanes[node.name] = (node.attrs["pe"], node.attrs["pe"])
        elif isinstance(op, Concat):
            lanes[node.name] = (channels, channels)  # each input its own whole pixels
        elif isinstance(op, Fork):
            produced = lanes[node.inputs[0]][1]
            lanes[node.name] = (produced, produced)
        elif isinstance(op, ArgMax):
            lanes[node.name] = (graph.input_types(node.name)[0].channels, 1)
        else:
            raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no hardware yet")
    changed = any(node.attrs.get("in_lanes") != lanes[node.name][0]
                  or node.attrs.get("out_lanes") != lanes[node.name][1] for node in graph)
    nodes = [n.with_attrs(in_lanes=lanes[n.name][0], out_lanes=lanes[n.name][1]) for n in graph]
    return graph.replace(nodes), changed

"""Decide how many channels each stream carries per beat (its *lanes*), node by node.

Requires: every Conv2d carries its folding (``pe``) and, with a window, its ``window`` kind
(``choose_windows``); every op is one the hardware knows.
Ensures: every node carries ``in_lanes`` (lanes it consumes; 0 for the input) and
``out_lanes`` (lanes it produces). The backend inserts a lane converter wherever a
producer's ``out_lanes`` differ from a consumer's ``in_lanes``.

A convolution with a folded window takes ``simd`` lanes (a slice of a pixel per beat); a channelwise
one takes and gives ``pe`` lanes. Other
sliding-window ops (Conv2d, MaxPool, AvgPool), transposed convolutions and upsamplers consume whole
pixels. A line buffer in DRAM (RowTaps) takes and gives a memory word a beat where the streams around it allow
(:func:`word_lanes`), else whole pixels in and all its taps out. A convolution (transposed or not) produces ``pe`` accumulators per beat; the requantizer (MulShift or Threshold) after it works on those lanes
as they come; one that does not follow a convolution takes its own ``pe`` lanes. An Add takes ``pe`` lanes on both inputs and gives ``pe``;
a Concat takes whole pixels, input ``k`` its own ``C_k`` lanes (``in_lanes`` is then the output's ``Σ C_k``).
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift, Threshold,
                  Upsample, RowTaps)
from .choose_windows import KINDS, has_window
from .set_folding import foldable, standalone_requantizer

__all__ = ["apply", "word_lanes"]


def _taken(graph: Graph, node) -> int:
    """Lanes a convolution takes: ``simd`` through a folded window, else whole pixels."""
    return node.attrs["simd"] if node.attrs.get("window") == "folded" else graph.input_types(node.name)[0].channels


def word_lanes(graph: Graph, node, produced: int) -> int:
    """The lanes of a beat of a line buffer in DRAM (a RowTaps with ``offchip``) that streams a memory word a beat
    (:class:`hwseg.hw.dram.DramRowTaps` ``lanes``): the word's elements, where they fill it exactly, divide the
    channels and regroup to and from the ``produced`` lanes in front and the lanes its readers take; 0 otherwise."""
    memory, x = node.attrs.get("memory"), graph.input_types(node.name)[0]
    if not node.attrs.get("offchip") or not memory or memory["data_bits"] % x.dtype.bits:
        return 0
    word = memory["data_bits"] // x.dtype.bits
    readers = [_taken(graph, reader) if isinstance(reader.op, Conv2d) else graph.types[node.name].channels
               for reader in graph.consumers(node.name)]
    fits = lambda lanes: lanes % word == 0 or word % lanes == 0
    return word if x.channels % word == 0 and fits(produced) and all(fits(r) for r in readers) else 0


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
            lanes[node.name] = (_taken(graph, node), node.attrs["pe"])
        elif isinstance(op, (MulShift, Threshold)) and standalone_requantizer(graph, node):
            lanes[node.name] = (node.attrs["pe"], node.attrs["pe"])
        elif isinstance(op, (MulShift, Threshold)):
            produced = lanes[node.inputs[0]][1]
            lanes[node.name] = (produced, produced)
        elif isinstance(op, (MaxPool, AvgPool, Upsample)):
            lanes[node.name] = (channels, channels)
        elif isinstance(op, RowTaps):
            word = word_lanes(graph, node, lanes[node.inputs[0]][1])
            # a memory word a beat in and out where the streams around allow, else whole pixels in, all the taps of one out
            lanes[node.name] = (word, word) if word else (graph.input_types(node.name)[0].channels, channels)
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

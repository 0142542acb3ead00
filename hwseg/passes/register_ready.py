"""Say where a skid buffer registers ``ready`` at a layer boundary, so that no ready path crosses one.

Every hardware block hands its output's ``ready`` combinationally to its input's (a stage enable); a chain of
layers without a break would be one long path from the last to the first. A FIFO right behind the producer breaks
it (its ``ready`` is its fill level); behind a lane converter it does not (the converter passes the ready on).
Every other layer input gets a one-beat skid buffer (``hwseg.hw.skid.SkidBuffer``) on the narrower side of the
lane converter in front of it (between the converter and a FIFO behind it), except a requantizer's (a MulShift or Threshold finishes
the layer that feeds it, and its input is the wide accumulator stream, so the break goes behind it, on the
next layer's input) and one fed by the network input (whole pixels of the first layer: its ready path is one layer
long, to the accelerator's ``s_axis_tready``).

Requires: ``in_lanes``/``out_lanes`` (``annotate_lanes``), ``fifo_depth`` or ``skip_fifos`` where a FIFO sits
(``size_fifos``, ``size_skip_fifos``) and ``fifo_offchip`` where it is in DRAM (``place_fifos``); run it after
those.
Ensures: every node but the input and forks carries ``skid_lanes``, one entry per input: the lanes of its skid
buffer, 0 for none.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import Concat, Fork, Graph, Input, MulShift, Threshold

__all__ = ["apply", "skid_lanes"]


def skid_lanes(graph: Graph, node) -> tuple[int, ...]:
    """The lanes of the skid buffer on each of ``node``'s inputs (0: none)."""
    if isinstance(node.op, (MulShift, Threshold)):
        return (0,) * len(node.inputs)
    depths = tuple(node.attrs.get("skip_fifos") or (node.attrs.get("fifo_depth", 0),) * len(node.inputs))
    offchip = tuple(node.attrs.get("fifo_offchip") or (False,) * len(node.inputs))
    taken = ([x.channels for x in graph.input_types(node.name)] if isinstance(node.op, Concat)
             else [node.attrs["in_lanes"]] * len(node.inputs))
    lanes = []
    for name, depth, in_dram, wanted in zip(node.inputs, depths, offchip, taken):
        given = graph[name].attrs["out_lanes"]
        # a join's FIFO behind a fork that a splitting converter follows sits on the converter's wide side
        forked_join = (given > wanted and len(node.inputs) > 1
                       and sum(reader.inputs.count(name) for reader in graph.consumers(name)) > 1)
        if in_dram or isinstance(graph[name].op, Input) or (depth and (given == wanted or forked_join)):
            lanes.append(0)         # (a FIFO right behind the producer: its ready is its fill level)
        else:
            lanes.append(min(given, wanted))
    return tuple(lanes)


def apply(graph: Graph) -> tuple[Graph, bool]:
    nodes = []
    for node in graph:
        if isinstance(node.op, (Input, Fork)):
            nodes.append(node)
            continue
        if "in_lanes" not in node.attrs and not isinstance(node.op, Concat):
            raise UnsupportedError(f"layer {node.name!r} has no stream lanes; run annotate_lanes before "
                                   f"register_ready")
        nodes.append(node.with_attrs(skid_lanes=skid_lanes(graph, node)))
    return graph.replace(nodes), True

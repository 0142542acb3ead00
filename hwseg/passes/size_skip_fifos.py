"""Size the FIFOs of a branching graph from the cycle model: never a deadlock, full rate, no deeper.

A tensor read by two branches that meet again (a residual block, ERFNet's downsampler, FPL's
pyramids and image re-injection) is copied by a fork that moves only when every branch takes
its beat. The join (Add, Concat) takes a pixel only when all its inputs have it, so the quicker
branch must hold what it delivers while the other still works: too little and the fork stops,
starving the slow branch for good (a deadlock) or for a while (a lower frame rate).

The pass sizes from the two models of :mod:`hwseg.estimate.dataflow`:

* **Full rate** (:class:`~hwseg.estimate.dataflow.StreamTiming`, cycle-exact against the RTL): the
  schedule in which the output leaves as early as the slowest layer allows, every layer works as
  late as that permits, and then as early as its inputs come (the network input being always
  there). Each join input gets a FIFO holding the most pixels that schedule leaves on it (none
  where one pixel at most waits, in its producer's register), and each layer's input FIFO (set by
  ``size_fifos``: two rows) grows where the schedule needs more — a window layer whose walker
  crosses many padding rows (dilations as large as the frame) takes nothing for hundreds of cycles,
  and the layers that feed it, and those beside it behind the same fork, must go on.
* **No deadlock** (:class:`~hwseg.estimate.dataflow.PixelCounts`, exact for pixel counts): the
  sized graph is checked under any valid/ready pattern; should it not move (it always does when
  the schedule holds), the join FIFOs are grown to the least capacities that make it move. The
  least depth of each join input with which the graph still cannot deadlock, the others as sized,
  is ``skip_fifos_min``: one beat less on that FIFO and some valid/ready pattern stalls it for good.

Both models are NumPy recurrences over a few frames and an elimination of pixel-count bounds: the
full ERFNet or an FPL-style network at 1024×512 is sized in seconds.

Requires: ``in_lanes``/``out_lanes`` on every node (``annotate_lanes``), ``fifo_depth`` (``size_fifos``);
``model`` builds the dataflow model (:func:`hwseg.estimate.dataflow.dataflow`).
Ensures: every Add and Concat carries ``skip_fifos`` (a tuple: beats of FIFO on each input, 0 for
none) and ``skip_fifos_min`` (the least deadlock-free depths, for the report and tests); a layer's
``fifo_depth`` only grows. Depths set beforehand on a join (a manual choice, or a test making one
shallower) are kept, and then nothing else changes.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UnsupportedError
from ..ir import Add, Concat, Graph

__all__ = ["apply"]

#: Rounds of re-timing when FIFOs appear on join inputs whose pixels do not wait (a FIFO adds
#: 2 cycles of latency on its edge); the set settles in one or two.
PRESENCE_ROUNDS = 4


def apply(graph: Graph, *, model: Callable) -> tuple[Graph, bool]:
    joins = [n for n in graph if isinstance(n.op, (Add, Concat)) and "skip_fifos" not in n.attrs]
    if not joins:
        return graph, False
    for node in graph:
        if "in_lanes" not in node.attrs or "fifo_depth" not in node.attrs:
            raise UnsupportedError(f"layer {node.name!r} has no lanes or input FIFO yet; run annotate_lanes "
                                   f"and size_fifos before size_skip_fifos")
    flow = model(graph)
    sized = [(n.name, k) for n in joins for k in range(len(n.inputs))]
    skip, layer_fifos = _full_rate(graph, flow, sized)
    counts = flow.counts()
    capacity = _capacities(graph, skip, layer_fifos)
    if not counts.flows(capacity):
        skip = _least_flowing(graph, counts, capacity, sized, skip)
        capacity = _capacities(graph, skip, layer_fifos)
    # an edge without a FIFO holds one pixel, the least there is
    holding = [(*edge, graph[edge[0]].inputs[edge[1]]) for edge in sized if skip[edge]]
    least = {edge: 0 for edge in sized}
    for (consumer, k, _), pixels in counts.least_capacities(holding, capacity).items():
        least[(consumer, k)] = (pixels - 1) * _beats_per_pixel(graph, (consumer, k))
    nodes = []
    for node in graph:
        if node in joins:
            ks = range(len(node.inputs))
            node = node.with_attrs(skip_fifos=tuple(skip[(node.name, k)] for k in ks),
                                   skip_fifos_min=tuple(least[(node.name, k)] for k in ks))
        elif layer_fifos.get(node.name, 0) > node.attrs["fifo_depth"]:
            node = node.with_attrs(fifo_depth=layer_fifos[node.name])
        nodes.append(node)
    return graph.replace(nodes), True


def _beats_per_pixel(graph: Graph, edge: tuple) -> int:
    """Beats of a pixel in the FIFO on ``edge``: a Concat takes whole pixels, the rest ``in_lanes``."""
    node = graph[edge[0]]
    if isinstance(node.op, Concat) or not isinstance(node.op, Add):
        return 1
    return graph.types[node.inputs[edge[1]]].channels // node.attrs["in_lanes"]


def _full_rate(graph: Graph, flow, sized: list) -> tuple[dict, dict]:
    """Join FIFO depths (beats) and layer input FIFO depths for the full-rate schedule."""
    existing = {(n.name, k) for n in graph for k in range(len(n.inputs))
                if n.attrs.get("fifo_depth") or any(n.attrs.get("skip_fifos", ()))}
    present = set(existing)
    timing = flow.timing(fifos=present)
    for _ in range(PRESENCE_ROUNDS):
        timing.set_fifos(present)
        schedule = timing.full_rate()
        skip, critical = {}, False
        for edge in sized:
            entries, waiting, slack = timing.occupancy(schedule, edge)
            # one pixel may wait in its producer's output register; more need a FIFO
            skip[edge] = entries * _beats_per_pixel(graph, edge) if waiting > 1 else 0
            # a FIFO the schedule did not have delays its pixels by 2 cycles: harmless where they wait
            critical |= bool(skip[edge]) != (edge in present) and slack < 2
        layer_fifos = {node.name: max(timing.entries(schedule, (node.name, k)) for k in range(len(node.inputs)))
                       for node in graph if node.attrs["fifo_depth"]}
        if not critical:
            break
        present = existing | {edge for edge in sized if skip[edge]}
    return skip, layer_fifos


def _capacities(graph: Graph, skip: dict, layer_fifos: dict) -> dict:
    """Pixels each edge holds: its FIFO (at least 3 entries: StreamFIFO) and one output register."""
    capacity = {}
    for node in graph:
        for k in range(len(node.inputs)):
            edge = (node.name, k)
            if edge in skip:
                beats = skip[edge]
            elif "skip_fifos" in node.attrs:
                beats = node.attrs["skip_fifos"][k]
            else:
                beats = max(node.attrs["fifo_depth"], layer_fifos.get(node.name, 0))
            capacity[edge] = (max(beats, 3) // _beats_per_pixel(graph, edge) if beats else 0) + 1
    return capacity


def _least_flowing(graph: Graph, counts, capacity: dict, sized: list, skip: dict) -> dict:
    """Join FIFOs that make the graph move: from unbounded, each in turn shrunk to its least
    capacity with the others as they stand (the graph moves after every step), then no shallower
    than the full-rate depths."""
    capacity = dict(capacity)
    for edge in sized:
        capacity[edge] = counts.total[graph[edge[0]].inputs[edge[1]]] + 1
    if not counts.flows(capacity):
        raise UnsupportedError(f"the graph {graph.name!r} deadlocks whatever the skip FIFOs hold: a layer's input "
                               f"FIFO is too shallow; deepen the layers' fifo_depth")
    grown = dict(skip)
    for edge in sized:
        pixels = counts.least_capacity((*edge, graph[edge[0]].inputs[edge[1]]), capacity)
        capacity[edge] = pixels
        grown[edge] = max(skip[edge], (pixels - 1) * _beats_per_pixel(graph, edge))
    return grown

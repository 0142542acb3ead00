"""Size the FIFO on each input of a join (Add, Concat) so that the graph never deadlocks.

A tensor read by two branches that meet again (a residual block, ERFNet's downsampler, an
image re-injection) is copied by a fork that moves only when both branches take its beat. If
the short branch's output waits at the join while the long branch still needs input to produce
its matching pixel, the short branch backs up to the fork and the long branch starves: a
deadlock, unless the short branch can buffer enough of its output.

Every path to the join passes its immediate dominator ``F`` (the stream the branches split
from). With ``needed[n][j]`` the pixels of ``F``'s stream node ``n``'s output pixel ``j`` waits
for (the dataflow model, :meth:`hwseg.estimate.dataflow.Dataflow.needed_from`), the join's pixel
``j`` waits for ``N(j) = max_b needed[b][j]`` over its inputs ``b``. When input ``a``'s FIFO of
``D`` pixels is full (its pixels ``j … j+D−1``) and its producer holds pixel ``j+D``, ``F`` has
delivered at least ``needed[a][j+D]`` pixels to every branch and the stall goes back to ``F``; so
the graph moves on iff ``needed[a][j+D] ≥ N(j)``; ``D_min`` is the least such ``D`` for every
``j`` of a frame (frames repeat, so ``j+D`` may run into the next frame).

``D_min`` keeps the graph moving but not at full rate: each pixel the FIFO releases must first
cross the long branch's pipeline before the next can enter. So the FIFO also holds what input
``a`` can deliver while the other branch's extra latency ``Δ = max_b latency[b] − latency[a]``
(cycles) elapses. Input ``a`` carries ``P`` pixels a frame and on average never runs faster than
its slowest upstream layer (a frame per ``period[a]`` cycles); streams are bursty (a window layer
emits row by row, none in its padding), so allow ``BURST`` times that rate, and at most a beat
per cycle: ``D = D_min + ⌈Δ · min(1, BURST·P/period[a])⌉`` pixels, in beats of ``a``'s stream. Without that slack
even a join whose branches need the same input (``D_min = 0``) would make the quicker branch
wait for the slower one's pipeline on every beat.

Where a join lies on a branch of another join (FPL's pyramids: a sum feeds the next dilated
branch), the joins' FIFOs couple and the per-join bound does not suffice: the pass then runs
the graph as pixel counts (:meth:`hwseg.estimate.dataflow.Dataflow.stalls`, two frames) and
grows every full join FIFO by a quarter frame until every frame comes out.

Requires: ``in_lanes`` on every node (``annotate_lanes``); ``model`` the dataflow model
(:class:`hwseg.estimate.dataflow.Dataflow`: ``needed``, ``latency``, ``period``).
Ensures: every Add and Concat carries ``skip_fifos`` (a tuple: beats of FIFO on each input, 0
for none) and ``skip_fifos_min`` (the deadlock-free least depths, for the report and tests).
Depths set beforehand (a manual choice, or a test making one shallower) are kept.
"""

from __future__ import annotations

from math import ceil
from typing import Callable

import numpy as np

from ..errors import UnsupportedError
from ..ir import Add, Concat, Graph


def immediate_dominators(graph: Graph) -> dict:
    """For every node, the last node every path from the network input to it passes."""
    dominators: dict[str, set] = {}
    order = {node.name: k for k, node in enumerate(graph)}
    for node in graph:
        common = set.intersection(*(dominators[name] for name in node.inputs)) if node.inputs else set()
        dominators[node.name] = common | {node.name}
    return {name: max(doms - {name}, key=order.__getitem__, default=None) for name, doms in dominators.items()}

__all__ = ["apply", "least_depth", "BURST", "MAX_GROWTH_ROUNDS"]

#: Rounds of FIFO growth before the pass gives up on a graph that does not flow.
MAX_GROWTH_ROUNDS = 64

#: Peak over average rate of a stream within a frame (measured: the residual and downsampler
#: networks of sim/test_dataflow_rtl.py reach their estimated cycles per frame within 5 % with it).
BURST = 2


def least_depth(branch: np.ndarray, join: np.ndarray, input_pixels: int) -> int:
    """The least ``D ≥ 0`` with ``branch_ext[j + D] ≥ join[j]`` for every ``j`` of a frame, where
    ``branch_ext`` continues ``branch`` into the following frames (``+ input_pixels`` per frame)."""
    pixels = branch.shape[0]
    extended = np.concatenate([branch, branch + input_pixels, branch + 2 * input_pixels])
    first = np.searchsorted(extended, join, side="left")   # first k with extended[k] ≥ join[j]
    return int(max(0, (first - np.arange(pixels)).max()))


def _capacities(graph: Graph, depths: dict) -> dict:
    """Pixels each edge holds: its FIFO (at least 3 entries: StreamFIFO) and one output register."""
    capacity = {}
    for node in graph:
        for k, name in enumerate(node.inputs):
            channels = graph.types[name].channels
            if isinstance(node.op, (Add, Concat)):
                beats_per_pixel = 1 if isinstance(node.op, Concat) else channels // node.attrs["in_lanes"]
                beats = depths[node.name][k]
            else:
                beats_per_pixel, beats = 1, node.attrs.get("fifo_depth", 0)
            capacity[(node.name, k)] = (max(beats, 3) // beats_per_pixel if beats else 0) + 1
    return capacity


def apply(graph: Graph, *, model: Callable) -> tuple[Graph, bool]:
    joins = [n for n in graph if isinstance(n.op, (Add, Concat)) and "skip_fifos" not in n.attrs]
    if not joins:
        return graph, False
    flow = model(graph)
    split = immediate_dominators(graph)
    for node in joins:
        source = split[node.name]
        needed = flow.needed_from(source)
        input_pixels = graph.types[source].pixels
        join = np.max([needed[name] for name in node.inputs], axis=0)
        slowest = max(flow.latency[name] for name in node.inputs)
        depths, least = [], []
        for name in node.inputs:
            channels = graph.types[name].channels
            beats = channels // (channels if isinstance(node.op, Concat) else node.attrs["in_lanes"])
            minimum = least_depth(needed[name], join, input_pixels)
            pixels = graph.types[name].pixels
            slack = ceil((slowest - flow.latency[name]) * min(1.0, BURST * pixels / flow.period[name]))
            least.append(minimum * beats)
            depths.append((minimum + slack) * beats)
        graph = graph.with_attrs(node.name, skip_fifos=tuple(depths), skip_fifos_min=tuple(least))
    coupled = _joins_inside_branches(graph, split)
    if not coupled:
        return graph, True
    return _grow_until_it_flows(graph, flow, {n.name for n in joins}), True


def _joins_inside_branches(graph: Graph, split: dict) -> list[str]:
    """Joins with another join on a branch between them and their dominator: there the per-join
    bound is not enough."""
    ancestors: dict[str, set] = {}
    for node in graph:
        ancestors[node.name] = set().union(*(ancestors[name] | {name} for name in node.inputs)) if node.inputs else set()
    is_join = {n.name for n in graph if isinstance(n.op, (Add, Concat))}
    coupled = []
    for name in is_join:
        source = split[name]
        between = {a for a in ancestors[name] if source in ancestors[a]}
        if between & is_join:
            coupled.append(name)
    return coupled


def _grow_until_it_flows(graph: Graph, flow, sized: set) -> Graph:
    """Joins that feed each other (a branch that is itself the input of another join, as in the
    FPL pyramid's hierarchical sums) couple their FIFOs, which the per-join bound above does not
    see. So the sized graph is run as pixel counts (``flow.stalls``); while it stops short, every
    full FIFO on a join input this pass sized grows by a quarter frame."""
    for _ in range(MAX_GROWTH_ROUNDS):
        depths = {n.name: list(n.attrs["skip_fifos"]) for n in graph if "skip_fifos" in n.attrs}
        stalled = [(name, k) for name, k in flow.stalls(_capacities(graph, depths)) if name in sized]
        if not stalled:
            return graph
        for name, k in stalled:
            node = graph[name]
            source = node.inputs[k]
            channels = graph.types[source].channels
            beats_per_pixel = 1 if isinstance(node.op, Concat) else channels // node.attrs["in_lanes"]
            depths[name][k] += max(1, graph.types[source].pixels // 4) * beats_per_pixel
            graph = graph.with_attrs(name, skip_fifos=tuple(depths[name]))
    raise UnsupportedError(f"the skip FIFOs of {', '.join(sorted({n for n, _ in stalled}))} do not let the graph "
                           f"flow after {MAX_GROWTH_ROUNDS} rounds of growth; set them by hand (skip_fifos)")

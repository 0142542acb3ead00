"""Graph passes: one per module, each ``apply(graph, ...) -> (graph, changed)``.

A pass checks what it requires on entry and what it ensures on exit, and fails loudly
(``UnsupportedError`` naming the node) when it cannot handle a node.
"""

from . import (annotate_lanes, choose_windows, place_line_buffers, place_fifos, register_ready, set_folding,
               size_fifos, size_skip_fifos)

__all__ = ["annotate_lanes", "choose_windows", "place_line_buffers", "place_fifos", "register_ready", "set_folding",
           "size_fifos", "size_skip_fifos", "prepare_for_hardware", "lanes_for_hardware"]


def lanes_for_hardware(graph, *, window_kind):
    """Each convolution's window kind (``window_kind(graph, node)``, see :mod:`.choose_windows`), then the
    stream lanes (:mod:`.annotate_lanes`), for a graph whose convolutions are folded."""
    graph, _ = choose_windows.apply(graph, kind=window_kind)
    graph, _ = annotate_lanes.apply(graph)
    return graph


def prepare_for_hardware(graph, *, cost, budget, dataflow, window_kind):
    """The pass pipeline the backend needs: folding (within ``budget`` under ``cost``, see
    :mod:`.set_folding`), window kinds (``window_kind``, see :mod:`.choose_windows`), stream lanes,
    FIFOs in front of window layers, FIFOs on the inputs of joins (from the ``dataflow`` model, see
    :mod:`.size_skip_fifos`), those of them that go to DRAM (as the input node's
    ``attrs["offchip_fifos"]`` says: ``{"min_bits": ..., "memory": ...}`` for :mod:`.place_fifos`, or None), and
    the skid buffers on the layer inputs that have no FIFO (:mod:`.register_ready`)."""
    graph, _ = set_folding.apply(graph, cost=cost, budget=budget)
    graph = lanes_for_hardware(graph, window_kind=window_kind)
    graph, _ = size_fifos.apply(graph)
    graph, _ = size_skip_fifos.apply(graph, model=dataflow)
    policy = graph[graph.input].attrs.get("offchip_fifos")
    if policy is not None:
        graph, _ = place_fifos.apply(graph, min_bits=policy["min_bits"], memory=policy["memory"])
    graph, _ = register_ready.apply(graph)
    return graph

"""The hardware passes: folding, stream lanes, FIFOs."""

import numpy as np
import pytest

from hwseg.errors import UnsupportedError
from hwseg.ir import ArgMax, Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt
from hwseg.passes import annotate_lanes, set_folding, size_fifos


def _graph(groups=1):
    rng = np.random.default_rng(0)
    return Graph([
        Node("x", Input((4, 16, 16), UInt(8))),
        Node("c1", Conv2d(rng.integers(-9, 10, (8, 4 // groups, 3, 3)), np.zeros(8), Int(8), padding=1,
                          groups=groups), ("x",)),
        Node("r1", MulShift(np.full(8, 3), 6, 0, 255), ("c1",)),
        Node("c2", Conv2d(rng.integers(-9, 10, (6, 8, 3, 3)), np.zeros(6), Int(8), stride=2, padding=1), ("r1",)),
        Node("r2", MulShift(np.full(6, 3), 6, -127, 127), ("c2",)),
        Node("p", MaxPool(2), ("r2",)),
        Node("a", ArgMax(), ("p",)),
    ], name="t")


def _fold(graph, multipliers):
    return set_folding.apply(graph, budget={"multipliers": multipliers},
                             cost=lambda node, pe, simd: {"multipliers": pe * simd})


def _cycles(graph, node):
    op = node.op
    folds = (op.out_channels // node.attrs["pe"]) * (op.kernel[0] * op.kernel[1] * op.in_channels // node.attrs["simd"])
    return graph.types[node.name].pixels * folds


def test_folding_divides_and_fits_the_budget():
    for budget in (2, 20, 100, 1000):
        graph, changed = _fold(_graph(), budget)
        assert changed
        convs = [n for n in graph if isinstance(n.op, Conv2d)]
        for node in convs:
            k = node.op.kernel[0] * node.op.kernel[1] * node.op.in_channels
            assert node.op.out_channels % node.attrs["pe"] == 0 and k % node.attrs["simd"] == 0
        used = sum(n.attrs["pe"] * n.attrs["simd"] for n in convs)
        assert used <= max(budget, len(convs))


def test_folding_balances_the_pipeline():
    graph, _ = _fold(_graph(), 100)
    cycles = [_cycles(graph, n) for n in graph if isinstance(n.op, Conv2d)]
    # The target is the slowest layer; no layer is folded more than needed to meet it.
    target = max(cycles)
    for node in graph:
        if isinstance(node.op, Conv2d):
            cheaper = [(pe, simd) for pe in set_folding.divisors(node.op.out_channels)
                       for simd in set_folding.divisors(set_folding.window_size(node.op))
                       if pe * simd < node.attrs["pe"] * node.attrs["simd"]
                       and graph.types[node.name].pixels * (node.op.out_channels // pe)
                       * (set_folding.window_size(node.op) // simd) <= target]
            assert not cheaper, f"{node.name} could use {cheaper[0]}"


def test_more_multipliers_never_slower():
    slow, _ = _fold(_graph(), 10)
    fast, _ = _fold(_graph(), 200)
    worst = lambda g: max(_cycles(g, n) for n in g if isinstance(n.op, Conv2d))
    assert worst(fast) < worst(slow)


def test_manual_folding_is_kept():
    graph = _graph().with_attrs("c1", pe=2, simd=3)
    graph, _ = _fold(graph, 100)
    assert (graph["c1"].attrs["pe"], graph["c1"].attrs["simd"]) == (2, 3)


def test_grouped_convolution_is_refused_by_name():
    with pytest.raises(UnsupportedError, match=r"layer 'c1': grouped convolution \(groups=2\)"):
        _fold(_graph(groups=2), 100)


def test_lanes_follow_the_folding():
    graph, _ = _fold(_graph(), 100)
    graph, changed = annotate_lanes.apply(graph)
    assert changed
    lanes = {n.name: (n.attrs["in_lanes"], n.attrs["out_lanes"]) for n in graph}
    assert lanes["x"] == (0, 4)
    assert lanes["c1"] == (4, graph["c1"].attrs["pe"])
    assert lanes["r1"] == (graph["c1"].attrs["pe"],) * 2
    assert lanes["p"] == (6, 6) and lanes["a"] == (6, 1)
    again, changed = annotate_lanes.apply(graph)
    assert not changed


def test_lanes_need_folding():
    with pytest.raises(UnsupportedError, match="layer 'c1' has no folding"):
        annotate_lanes.apply(_graph())


def test_fifos_in_front_of_window_layers_fed_by_layers():
    graph, _ = size_fifos.apply(_graph())
    depths = {n.name: n.attrs["fifo_depth"] for n in graph}
    assert depths["c1"] == 0            # fed by the input port
    assert depths["c2"] == 2 * 16       # two rows of its 16-pixel-wide input
    assert depths["p"] == 2 * 8
    assert depths["r1"] == depths["a"] == 0

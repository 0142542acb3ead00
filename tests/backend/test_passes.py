"""The hardware passes: folding, stream lanes, FIFOs."""

import re

import numpy as np
import pytest

from hwseg.errors import UnsupportedError
from hwseg.ir import ArgMax, Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt
from hwseg.passes import annotate_lanes, choose_windows, register_ready, set_folding, size_fifos


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


def _register_windows(graph, node):
    return "register"


def test_lanes_follow_the_folding():
    graph, _ = _fold(_graph(), 100)
    graph, _ = choose_windows.apply(graph, kind=_register_windows)
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


def test_a_folded_window_takes_simd_lanes_and_a_register_window_whole_pixels():
    graph, _ = _fold(_graph().with_attrs("c1", pe=2, simd=2), 100)
    graph, changed = choose_windows.apply(graph, kind=lambda g, node: "folded" if node.name == "c1" else "register")
    assert changed and graph["c1"].attrs["window"] == "folded" and graph["c2"].attrs["window"] == "register"
    assert "window" not in graph["p"].attrs
    graph, _ = annotate_lanes.apply(graph)
    assert (graph["c1"].attrs["in_lanes"], graph["c1"].attrs["out_lanes"]) == (2, 2)
    assert graph["c2"].attrs["in_lanes"] == 8
    _, changed = choose_windows.apply(graph, kind=lambda g, node: graph[node.name].attrs["window"])
    assert not changed


def test_lanes_need_the_window_kind():
    graph, _ = _fold(_graph(), 100)
    with pytest.raises(UnsupportedError, match="layer 'c1' has no window kind; run choose_windows first"):
        annotate_lanes.apply(graph)
    with pytest.raises(UnsupportedError, match="layer 'c1': window kind must be one of register, folded, not 'x'"):
        choose_windows.apply(graph, kind=lambda g, node: "x")


def test_fifos_in_front_of_window_layers_fed_by_layers():
    graph, _ = size_fifos.apply(_graph())
    depths = {n.name: n.attrs["fifo_depth"] for n in graph}
    assert depths["c1"] == 0            # fed by the input port
    assert depths["c2"] == 2 * 16       # two rows of its 16-pixel-wide input
    assert depths["p"] == 2 * 8
    assert depths["r1"] == depths["a"] == 0


def test_skid_buffers_where_no_fifo_breaks_the_ready_path():
    """A skid buffer on each layer input without a FIFO, of the converter's narrower side, and in front of a
    converter that feeds a FIFO; none behind the network input, in front of a requantizer, or where a FIFO sits
    right behind the producer."""
    graph, _ = _fold(_graph(), 100)
    graph, _ = choose_windows.apply(graph, kind=_register_windows)
    graph, _ = annotate_lanes.apply(graph)
    graph, _ = size_fifos.apply(graph)
    graph, changed = register_ready.apply(graph)
    skids = {n.name: n.attrs.get("skid_lanes") for n in graph}
    assert changed and skids["x"] is None
    assert skids["c1"] == (0,)                  # fed by the input port
    assert skids["r1"] == skids["r2"] == (0,)    # requantizers: the break is behind them
    # a FIFO in front, behind a converter that gathers whole pixels: the break on the narrow side, in front of it
    assert graph["r1"].attrs["out_lanes"] < graph["c2"].attrs["in_lanes"] and graph["c2"].attrs["fifo_depth"]
    assert skids["c2"] == (graph["r1"].attrs["out_lanes"],) and skids["p"] == (graph["r2"].attrs["out_lanes"],)
    whole = graph.replace([n.with_attrs(out_lanes=8) if n.name == "r1" else n for n in graph])
    assert register_ready.apply(whole)[0]["c2"].attrs["skid_lanes"] == (0,)   # a FIFO right behind: none
    assert skids["a"] == (6,)                   # the pooled pixels, 6 lanes, into the arg max
    without_fifo = graph.replace([n.with_attrs(fifo_depth=0) if n.name == "c2" else n for n in graph])
    again, _ = register_ready.apply(without_fifo)
    assert again["c2"].attrs["skid_lanes"] == (min(graph["r1"].attrs["out_lanes"], graph["c2"].attrs["in_lanes"]),)
    with pytest.raises(UnsupportedError, match="layer 'c1' has no stream lanes"):
        register_ready.apply(_fold(_graph(), 100)[0])


@pytest.mark.parametrize("entry, message", [
    ({"simd": 2, "window": "memory"}, "window must be \"register\" or \"folded\", not 'memory'"),
    ({"window": "folded"}, "window \"folded\" needs simd set beside it to a divisor of its 4 input channels (1, 2, 4)"),
    ({"simd": 3, "window": "folded"}, "window \"folded\" needs simd set beside it to a divisor of its 4 input channels"),
])
def test_a_manual_window_is_checked(entry, message):
    from hwseg.errors import FoldingError
    with pytest.raises(FoldingError, match=re.escape(f"folding of layer 'c1': {message}")):
        set_folding.with_manual(_graph(), {"c1": entry})


def test_a_manual_window_is_a_request():
    graph = set_folding.with_manual(_graph(), {"c1": {"simd": 2, "window": "folded"}, "c2": {"window": "register"}})
    assert graph["c1"].attrs == {"simd": 2, "window_request": "folded"}
    assert graph["c2"].attrs == {"window_request": "register"}


def test_the_fully_folded_and_the_cheapest_in_one_resource():
    folder = set_folding.Folder(_graph(), cost=lambda node, pe, simd: {"dsp": pe * simd, "lut": 100 * simd // pe})
    assert {(c.pe, c.simd) for c in folder.fully_folded().values()} == {(1, 1)}
    # the least DSP is at pe = simd = 1; the least LUT at the largest pe and simd = 1
    assert {(c.pe, c.simd) for c in folder.cheapest_in("dsp", {"dsp": 10, "lut": 10}).values()} == {(1, 1)}
    least_lut = folder.cheapest_in("lut", {"dsp": 10, "lut": 10})
    assert (least_lut["c1"].pe, least_lut["c1"].simd) == (8, 1) and (least_lut["c2"].pe, least_lut["c2"].simd) == (6, 1)


def _variant_cost(node, pe, simd):
    """Two lanes per DSP when packed, for a few LUTs per shared multiplier; products in logic: many LUTs."""
    lanes = pe * simd
    if node.attrs.get("multiplier") == "logic":
        return {"dsp": 0, "lut": 100 * lanes}
    pack = node.attrs.get("pack", 1)
    return {"dsp": lanes / pack, "lut": 10 * lanes * (pack - 1)}


def _variants(node, pe):
    return ({}, {"pack": 2}, {"multiplier": "logic"}) if pe % 2 == 0 else ({}, {"multiplier": "logic"})


def _mac(node):
    return node.attrs.get("pack", 1), node.attrs.get("multiplier", "dsp")


def test_mac_variants_are_chosen_where_the_weighted_cost_is_lower():
    # DSPs scarce, LUTs plenty: every convolution at an even pe packs; the same DSPs then go faster
    scarce = {"dsp": 40, "lut": 100_000}
    chosen, _ = set_folding.apply(_graph(), cost=_variant_cost, budget=scarce, variants=_variants)
    plain, _ = set_folding.apply(_graph(), cost=_variant_cost, budget=scarce)
    convs = [n for n in chosen if isinstance(n.op, Conv2d)]
    for node in convs:
        assert _mac(node) in ((2, "dsp"), (1, "logic")) if node.attrs["pe"] % 2 == 0 else _mac(node) == (1, "logic")
        assert _mac(plain[node.name]) == (1, "dsp")
    lanes = lambda graph: min(n.attrs["pe"] * n.attrs["simd"] for n in graph if isinstance(n.op, Conv2d))
    assert lanes(chosen) > lanes(plain)
    # no DSP at all: every product in logic
    none, _ = set_folding.apply(_graph(), cost=_variant_cost, budget={"dsp": 1e-3, "lut": 100_000}, variants=_variants)
    assert all(_mac(n) == (1, "logic") for n in none if isinstance(n.op, Conv2d))
    # LUTs scarce and DSPs plenty: the plain arrays, with no variant attribute
    roomy, _ = set_folding.apply(_graph(), cost=_variant_cost, budget={"dsp": 10_000, "lut": 50}, variants=_variants)
    assert not any(key in n.attrs for n in roomy for key in set_folding.VARIANT_KEYS)


def test_a_manual_folding_takes_its_cheapest_variant_and_a_refold_drops_a_stale_one():
    graph = set_folding.with_manual(_graph(), {"c1": {"pe": 4, "simd": 9}})
    # 36 lanes by the budget's weights: plain 36/40 = 0.9, packed 18/40 + 360/5000 = 0.52, logic 3600/5000 = 0.72
    folded, changed = set_folding.apply(graph, cost=_variant_cost, budget={"dsp": 40, "lut": 5000},
                                        variants=_variants)
    assert changed and _mac(folded["c1"]) == (2, "dsp") and folded["c1"].attrs["pe"] == 4
    stale = _graph().replace([n.with_attrs(pack=2) if n.name == "c2" else n for n in _graph()])
    refolded, _ = set_folding.apply(stale, cost=_variant_cost, budget={"dsp": 10_000, "lut": 50}, variants=_variants)
    assert _mac(refolded["c2"]) == (1, "dsp") and "pack" not in refolded["c2"].attrs

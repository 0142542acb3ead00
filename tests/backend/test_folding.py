"""Folding to the board: the highest throughput that fits, ``fps`` targets, manual foldings and the
errors of designs that cannot be folded to fit (estimate-only builds: seconds each).

Expected values come from brute force over every folding of a small graph, each judged by the
estimator itself (``prepare_for_hardware`` + ``estimate_graph``), not from the folding search.
"""

import itertools
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from hwseg import fold_to_board
from hwseg.boards import load_board
from hwseg.errors import DoesNotFitError, FoldingError
from hwseg.estimate import estimate_graph
from hwseg.estimate.cycles import window_kind
from hwseg.estimate.dataflow import dataflow
from hwseg.estimate.network import mac_variants
from hwseg.flow import build, compile_graph, load_graph
from hwseg.passes import prepare_for_hardware, set_folding

from .nets import two_conv_net

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("int8_tiny", "bfcn", "bfcn_int8", "bfcn_tiny", "erfnet_tiny", "fpl_tiny", "int_fcn_tiny")
BOARDS = ("pynq-z2", "ultra96-v2", "zcu104")


def _graph(size=12, width=8):
    return two_conv_net(width=width, size=size, name="fold_net")


def _board(**resources):
    board = load_board("pynq-z2")
    return replace(board, resources={**board.resources, **resources})


def _every_folding(graph, board, variants=False):
    """(pe/simd per convolution, estimate) for every legal folding of ``graph`` (``variants``: and every MAC variant
    the estimator lists for each, :func:`hwseg.estimate.network.mac_variants`)."""
    convs = set_folding.foldable(graph)
    options = [[(pe, simd, attrs) for pe in set_folding.divisors(n.op.out_channels)
                for simd in set_folding.divisors(set_folding.window_size(n.op))
                for attrs in (mac_variants(graph, n, pe, board.family) if variants else ({},))] for n in convs]
    for combo in itertools.product(*options):
        folded = graph
        for node, (pe, simd, attrs) in zip(convs, combo):
            folded = folded.with_attrs(node.name, pe=pe, simd=simd, **attrs)
        prepared = prepare_for_hardware(folded, cost=lambda node, pe, simd: {}, budget={"lut": 1}, dataflow=dataflow,
                                        window_kind=window_kind)
        yield {n.name: (pe, simd) for n, (pe, simd, _) in zip(convs, combo)}, estimate_graph(prepared, board)


def _folding(design):
    return {n.name: (n.attrs["pe"], n.attrs["simd"]) for n in set_folding.foldable(design.graph)}


# ---- the highest throughput that fits -------------------------------------------------------------

@pytest.fixture
def plain_macs(monkeypatch):
    """The folder without MAC variants (one DSP per product), as the brute force below enumerates."""
    monkeypatch.setattr(fold_to_board, "mac_variants", lambda graph, node, pe, family, logic=True: ({},))


@pytest.mark.parametrize("dsp", [12, 30, 60, 220])
def test_the_fastest_fitting_folding_is_found(dsp, plain_macs):
    board = _board(dsp=dsp)
    graph = _graph()
    best = max(estimate.fps for _, estimate in _every_folding(graph, board) if not estimate.overflows())
    design = compile_graph(graph, board, estimate_only=True)
    assert not design.estimate.overflows()
    assert design.estimate.fps == pytest.approx(best, rel=1e-9), (dsp, _folding(design))


@pytest.mark.parametrize("dsp", [5, 7])
def test_the_fastest_fitting_folding_with_mac_variants_is_found(dsp):
    """With the MAC variants the folder offers (two products per DSP48) to choose from, on a board short of DSPs:
    the folder finds the fastest design brute force finds over every folding and variant, twice the plain one."""
    board = _board(dsp=dsp)
    graph = _graph(size=6, width=4)
    best = max(estimate.fps for _, estimate in _every_folding(graph, board, variants=True) if not estimate.overflows())
    plain = max(estimate.fps for _, estimate in _every_folding(graph, board) if not estimate.overflows())
    design = compile_graph(graph, board, estimate_only=True)
    assert not design.estimate.overflows()
    assert design.estimate.fps == pytest.approx(best, rel=1e-9), (dsp, _folding(design))
    assert best > plain


def test_the_pipeline_is_balanced(plain_macs):
    """No convolution is folded faster than the slowest layer needs: a cheaper folding of each would
    make the whole design slower."""
    board = _board(dsp=60)
    design = compile_graph(_graph(), board, estimate_only=True)
    period = design.estimate.cycles_per_frame
    chosen = _folding(design)
    for folding, estimate in _every_folding(_graph(), board):
        for name in chosen:
            others_same = all(folding[n] == chosen[n] for n in chosen if n != name)
            cheaper = folding[name][0] * folding[name][1] < chosen[name][0] * chosen[name][1]
            if others_same and cheaper:
                cycles = {layer.name: layer.cycles for layer in estimate.layers}
                assert cycles[name] > period, f"{name} could take {folding[name]} at no loss"


def _acceptance_row(name, board):
    design = build(ROOT / "examples" / f"{name}.pt", board, estimate_only=True)
    estimate = design.estimate
    roof = estimate.roofline
    return estimate, roof, estimate.fps / roof.compute_fps


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_fit_and_reach_the_roofline_or_name_what_limits_them(name):
    """Every example on every board: fits and reaches 70 % of the compute roofline, or reaches the stream
    bound, or its limit line names the resource (with figures) that keeps it from the next faster folding."""
    print(f"\n{'network':14} {'board':11} {'fps':>10} {'roofline':>10} {'stream':>10} {'ratio':>6}  limit")
    for board_name in BOARDS:
        estimate, roof, ratio = _acceptance_row(name, board_name)
        board = load_board(board_name)
        print(f"{name:14} {board_name:11} {estimate.fps:10,.0f} {roof.compute_fps:10,.0f} {roof.stream_fps:10,.0f} "
              f"{ratio:6.2f}  {estimate.limit}")
        assert estimate.limit and "\n" not in estimate.limit
        assert not estimate.overflows(), f"{name} on {board_name}: {estimate.limit}"
        if estimate.limit.startswith("the stream bound"):
            assert estimate.cycles_per_frame == roof.stream_cycles
            continue
        match = re.match(r"([A-Z0-9]+(?:, [A-Z0-9]+)*): the next faster folding \(([\d,]+) fps\) would need "
                         r"([\d,]+) of ([\d,]+) \(\+[\d,]+\) ([A-Z0-9]+)", estimate.limit)
        assert match, estimate.limit
        resource = match.group(5).lower()
        have = int(match.group(4).replace(",", ""))
        assert any(board.resources[key] == have for key in board.resources if key.startswith(resource[:3]))
        assert int(match.group(3).replace(",", "")) > have
        assert float(match.group(2).replace(",", "")) > estimate.fps
        if ratio < 0.7:
            print(f"  below 70 % of the roofline: {estimate.limit}")


# (issue 16) the frame rates estimated with one DSP per product, before MAC arrays took two products per DSP48
# or products in logic: the target is 1.6 times these, and 12,000 fps for bfcn on pynq-z2
ONE_DSP_PER_PRODUCT = [("bfcn_int8", "zcu104", 10_819), ("bfcn_int8", "ultra96-v2", 2_034),
                       ("erfnet_tiny", "zcu104", 16_276), ("erfnet_tiny", "ultra96-v2", 2_712)]


@pytest.mark.parametrize("name, board, before", ONE_DSP_PER_PRODUCT)
def test_mac_variants_raise_the_frame_rate_by_more_than_half(name, board, before):
    design = build(ROOT / "examples" / f"{name}.pt", board, estimate_only=True)
    assert not design.estimate.overflows()
    assert design.estimate.fps >= 1.6 * before, design.estimate.limit


def test_products_go_to_logic_only_where_dsps_hold_the_design_back():
    """bfcn on pynq-z2: DSPs alone stop it near 11,900 fps; products in logic for some layers take it past 12,000
    within the board. ``multipliers="dsp"`` keeps every product on a DSP; a board short of LUTs, not DSPs, gets no
    products in logic."""
    auto = build(ROOT / "examples" / "bfcn.pt", "pynq-z2", estimate_only=True)
    dsp = build(ROOT / "examples" / "bfcn.pt", "pynq-z2", estimate_only=True, multipliers="dsp")
    in_logic = lambda design: [n.name for n in design.graph if n.attrs.get("multiplier") == "logic"]
    assert not auto.estimate.overflows() and auto.estimate.fps >= 12_000 and in_logic(auto)
    assert not in_logic(dsp) and dsp.estimate.fps < 12_000 and dsp.estimate.limit.startswith("DSP")
    graph, _ = load_graph(ROOT / "examples" / "bfcn.pt")
    lean = _board(lut=dsp.estimate.total.lut + 2_000)       # LUTs, not DSPs, hold this one back
    short_of_luts = compile_graph(graph, lean, estimate_only=True)
    assert not short_of_luts.estimate.overflows() and not in_logic(short_of_luts), short_of_luts.estimate.limit
    with pytest.raises(FoldingError, match=r"^multipliers must be one of auto, dsp, not 'lut'$"):
        compile_graph(_graph(), "pynq-z2", estimate_only=True, multipliers="lut")


# ---- fps targets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [20_000, 60_000, 150_000, 300_000])
def test_fps_target_takes_the_smallest_folding_that_meets_it(fps, plain_macs):
    board = load_board("pynq-z2")
    graph = _graph()
    design = compile_graph(graph, board, fps=fps, estimate_only=True)
    assert design.estimate.fps >= fps
    assert "--fps" in design.estimate.limit
    target = board.clock_mhz * 1e6 / fps
    chosen = _folding(design)
    # per layer: the DSPs (MAC array + its requantizer) of every folding that meets the target
    dsp_of = {"c1": ("c1", "r1"), "c2": ("c2", "r2")}
    least = {name: math.inf for name in chosen}
    for folding, estimate in _every_folding(graph, board):
        layers = {layer.name: layer for layer in estimate.layers}
        for name, parts in dsp_of.items():
            if layers[name].cycles <= target:
                least[name] = min(least[name], sum(layers[p].resources.dsp for p in parts))
    used = {layer.name: layer for layer in design.estimate.layers}
    for name, parts in dsp_of.items():
        assert sum(used[p].resources.dsp for p in parts) == least[name], (fps, name, chosen[name])


def test_a_lower_fps_never_folds_a_layer_faster():
    board = load_board("pynq-z2")
    lanes = []
    for fps in (10_000, 40_000, 160_000):
        folding = _folding(compile_graph(_graph(), board, fps=fps, estimate_only=True))
        lanes.append({name: pe * simd for name, (pe, simd) in folding.items()})
    for slow, fast in zip(lanes, lanes[1:]):
        assert all(slow[name] <= fast[name] for name in slow), lanes


def test_fps_above_the_stream_bound_names_the_best_fps():
    board = load_board("zcu104")
    best = compile_graph(_graph(), board, estimate_only=True).estimate
    assert best.fps == pytest.approx(best.roofline.stream_fps)
    with pytest.raises(DoesNotFitError) as error:
        compile_graph(_graph(), board, fps=10 * best.roofline.stream_fps, estimate_only=True)
    message = str(error.value)
    assert "\n" not in message
    assert re.match(rf"--fps [\d,]+ is out of reach on zcu104: the best is {best.fps:,.0f} fps "
                    rf"\(limit: the stream bound: layer \w+ moves {best.roofline.stream_cycles:,} beats", message), message


def test_fps_beyond_the_resources_names_the_best_fps_and_the_resource(plain_macs):
    board = _board(dsp=30)
    best = compile_graph(_graph(), board, estimate_only=True).estimate
    assert best.fps < best.roofline.stream_fps   # DSP-bound, not stream-bound
    with pytest.raises(DoesNotFitError, match=rf"out of reach on pynq-z2: the best is {best.fps:,.0f} fps "
                                              rf"\(limit: DSP: the next faster folding"):
        compile_graph(_graph(), board, fps=best.fps * 1.01)
    design = compile_graph(_graph(), board, fps=best.fps, estimate_only=True)   # the best itself is reachable
    assert design.estimate.fps >= best.fps and not design.estimate.overflows()


def test_bad_fps_is_refused():
    for fps in (0, -5, math.inf, "fast"):
        with pytest.raises(FoldingError, match=r"positive number of frames per second, not"):
            compile_graph(_graph(), "pynq-z2", fps=fps, estimate_only=True)


# ---- manual folding -------------------------------------------------------------------------------

def test_manual_folding_overrides_some_layers():
    design = compile_graph(_graph(), "pynq-z2", folding={"c1": {"pe": 2, "simd": 3}}, estimate_only=True)
    automatic = compile_graph(_graph(), "pynq-z2", estimate_only=True)
    assert _folding(design)["c1"] == (2, 3)
    assert _folding(automatic)["c1"] != (2, 3)
    assert design.estimate.bottleneck == "c1" and design.estimate.limit.startswith("the manual folding of layer c1")
    # with c1 slow, c2 is folded to meet c1's pace only: cheaper than in the automatic design
    pe, simd = _folding(design)["c2"]
    assert pe * simd <= _folding(automatic)["c2"][0] * _folding(automatic)["c2"][1]
    partial = compile_graph(_graph(), "pynq-z2", folding={"c1": {"pe": 4}}, estimate_only=True)
    assert _folding(partial)["c1"][0] == 4


def test_folding_file(tmp_path):
    path = tmp_path / "folding.json"
    path.write_text(json.dumps({"c2": {"pe": 1, "simd": 2}}))
    design = compile_graph(_graph(), "pynq-z2", folding=path, estimate_only=True)
    assert _folding(design)["c2"] == (1, 2)
    path.write_text('{"c2": {"pe": 1,}}')
    with pytest.raises(FoldingError, match=r"folding file .*folding\.json is not JSON \(line 1"):
        compile_graph(_graph(), "pynq-z2", folding=path)
    with pytest.raises(FoldingError, match=r"cannot read the folding file .*missing\.json"):
        compile_graph(_graph(), "pynq-z2", folding=tmp_path / "missing.json")


@pytest.mark.parametrize("folding, pattern", [
    ({"c9": {"pe": 1}}, r"^folding: unknown layer 'c9'; the foldable layers are c1, c2$"),
    ({"r1": {"pe": 1}}, r"^folding: layer 'r1' \(MulShift\) has no folding; the foldable layers are c1, c2$"),
    ({"c1": {"pe": 3}}, r"pe 3 does not divide its 8 output channels; legal pe: 1, 2, 4, 8$"),
    ({"c1": {"simd": 4}}, r"simd 4 does not divide its window of 27 \(3×3 kernel × 3 channels\); "
                          r"legal simd: 1, 3, 9, 27$"),
    ({"c1": {"pe": 0}}, r"pe must be a positive integer, not 0$"),
    ({"c1": {"pe": "2"}}, r"pe must be a positive integer, not '2'$"),
    ({"c1": {"lanes": 2}}, r"unknown key 'lanes'; use pe, simd and window$"),
    ({"c1": 4}, r'expected \{"pe": P, "simd": S\}, not 4$'),
    ([1, 2], r"a folding maps layer names to"),
])
def test_bad_foldings_are_one_line_errors(folding, pattern):
    with pytest.raises(FoldingError) as error:
        compile_graph(_graph(), "pynq-z2", folding=folding)
    assert "\n" not in str(error.value)
    assert re.search(pattern, str(error.value)), str(error.value)


# ---- designs that do not fit ----------------------------------------------------------------------

def _block_ram(board):
    return next(key for key in board.resources if key.startswith("bram"))


def test_does_not_fit_says_what_is_short_where_and_what_would_fit():
    """At 256×256 the convolutions' windows need block RAM, at 64×64 they fit in LUTs."""
    key = _block_ram(load_board("pynq-z2"))
    board = _board(**{key: 1})
    with pytest.raises(DoesNotFitError) as error:
        compile_graph(_graph(256), board, resize=lambda size: _graph(size[0]))
    message = str(error.value)
    assert "\n" not in message
    fully_folded = compile_graph(_graph(256), board, estimate_only=True).estimate   # the report of the same design
    need = fully_folded.total.as_dict()[key]
    assert need > 1
    assert re.match(rf"the design does not fit pynq-z2: it needs BRAM18 {need:,} of 1 \(\d+ %\); use a smaller input",
                    message), message
    assert f"BRAM18 is {need - 1:,} short" in message
    assert fully_folded.limit.startswith(f"does not fit even fully folded: {need:,} of 1 (+{need - 1:,}) BRAM18")
    # the layers that take most of it, by name and figure
    top = sorted((layer for layer in fully_folded.layers if layer.resources.as_dict()[key]),
                 key=lambda layer: -layer.resources.as_dict()[key])[:3]
    assert top
    for layer in top:
        assert f"{layer.name} ({layer.resources.as_dict()[key]:,})" in message
    # the smaller input it names is the largest that fits (the graph takes any size: one pixel larger does
    # not), and every board it names fits
    size = re.search(r"it fits at --input (\d+)x(\d+)\)", message)
    assert size and size.group(1) == size.group(2), message
    assert not compile_graph(_graph(int(size.group(1))), board, estimate_only=True).estimate.overflows()
    assert compile_graph(_graph(int(size.group(1)) + 1), board, estimate_only=True).estimate.overflows()
    boards = re.search(r"a bigger board \(it fits ([\w\-, ]+)\)", message).group(1).split(", ")
    assert "pynq-z2" not in boards and "zcu104" in boards
    for name in boards:
        assert not compile_graph(_graph(256), name, estimate_only=True).estimate.overflows()
    assert "fewer bits" in message and "a narrower model" in message


def test_a_pointwise_convolution_may_ask_to_serve_its_pixel_from_memory():
    """c2 is a 1×1 convolution over 8 channels: "folded" serves its pixel, 2 channels a beat, from a ring of a few
    pixels (nothing holds the vector); "register" means nothing for it, and is refused with what to do."""
    design = compile_graph(_graph(), "pynq-z2", folding={"c2": {"pe": 1, "simd": 2, "window": "folded"}},
                           estimate_only=True)
    node = design.graph["c2"]
    assert node.attrs["window"] == "folded" and node.attrs["in_lanes"] == 2
    layer = next(layer for layer in design.estimate.layers if layer.name == "c2")
    assert layer.folding["window"] == "folded"
    plain = compile_graph(_graph(), "pynq-z2", folding={"c2": {"pe": 1, "simd": 2}}, estimate_only=True)
    assert "window" not in plain.graph["c2"].attrs and plain.graph["c2"].attrs["in_lanes"] == 8
    with pytest.raises(FoldingError, match=r"^folding of layer 'c2': it has no sliding window; leave out window "
                                           r"\(or ask for \"folded\"\)$"):
        compile_graph(_graph(), "pynq-z2", folding={"c2": {"window": "register"}})

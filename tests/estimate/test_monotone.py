"""A larger input never takes fewer resources, folded the same way (issue 12).

Zoo networks (ERFNet, an integer FCN, a BFCN, an FPL-style net; small widths so that the sweep is quick),
every convolution fully folded (``pe = simd = 1``, its window served from memory where it multiplies: the
folded window is part of the folding, as the `--folding` file's ``"window"`` key says), estimated on two
boards at growing input sizes. From one size to the next:

* the totals of DSP, block RAM and URAM never decrease;
* every layer whose memories stay where they were (flip-flops, LUTRAM, block RAM, URAM) takes no fewer LUT,
  FF, DSP or block RAM;
* a memory that moves goes up that order, never down. Such a move is the one way LUT and FF totals may
  fall: a buffer that outgrows LUTRAM goes to block RAM, as Yosys maps it (measured: a 64-pixel line
  buffer's LUTs become one RAMB18), and the block RAM total rises instead.
"""

import pytest
import torch

from hwseg.boards import load_board
from hwseg.estimate import estimate_graph
from hwseg.estimate.cycles import window_kind
from hwseg.estimate.dataflow import dataflow
from hwseg.frontend import to_graph
from hwseg.ir import Bipolar
from hwseg.models import build_model
from hwseg.passes import prepare_for_hardware, set_folding
from hwseg.passes.choose_windows import has_window
from hwseg.quant import calibrate

NETWORKS = {
    "erfnet": {"classes": 4, "width": 0.25, "blocks": [1, 1, 1, 1], "dropout": False},
    "int_fcn": {"classes": 4, "width": 8, "stages": 3, "convs": 1, "skips": 2, "integer_bn": True},
    "bfcn": {"classes": 4, "width": 8, "stages": 3, "convs": 1, "scheme": "w1a2", "downsample": "pool",
             "upsample": "bilinear", "out_stride": 2, "skips": True},
    "fpl": {"classes": 4, "width": 10, "blocks": [1, 1, 1]},
}
#: input sizes (height, width), each at least as large as the one before in both dimensions
SIZES = [(32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
BOARDS = ["pynq-z2", "zcu104"]
RESOURCES = ("lut", "ff", "dsp", "bram", "uram")


@pytest.fixture(scope="module")
def models():
    built = {}
    for arch, args in NETWORKS.items():
        torch.manual_seed(0)
        model = build_model(arch, {**args, "input_size": list(SIZES[0])})
        calibrate(model, [torch.randint(0, 256, (2, 3, *SIZES[0])).float()])
        built[arch] = model.eval()
    return built


def _fully_folded_entry(node):
    entry = {"pe": 1, "simd": 1}
    if has_window(node.op) and not isinstance(node.op.weight_type, Bipolar):
        entry["window"] = "folded"
    return entry


def _fully_folded(model, arch, size, board):
    graph = to_graph(model, (3, *size), name=arch)
    graph = set_folding.with_manual(graph, {node.name: _fully_folded_entry(node) for node in set_folding.foldable(graph)})
    prepared = prepare_for_hardware(graph, cost=lambda node, pe, simd: {}, budget={"lut": 1}, dataflow=dataflow,
                                    window_kind=window_kind)
    return estimate_graph(prepared, load_board(board))


#: where a memory may be, from the cheapest place for a few words to the largest
PLACES = ("logic", "distributed", "block", "huge")


def _places(layer):
    """Where each of a layer's memories is: its line buffer's, and each input FIFO's by the input."""
    places = {("fifo", name): kind for (name, _, _), (kind, _) in zip(layer.fifos, layer.fifo_memories)}
    if layer.line_buffer_memory:
        places["line buffer"] = layer.line_buffer_memory[0]
    return places


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("arch", list(NETWORKS))
def test_fully_folded_resources_never_decrease_as_the_input_grows(models, arch, board):
    estimates = [_fully_folded(models[arch], arch, size, board) for size in SIZES]
    totals = [e.total.as_dict() for e in estimates]
    print(f"\n{arch} on {board}: " + "; ".join(
        f"{h}x{w} " + " ".join(f"{key} {t.get(key, 0):,}" for key in RESOURCES) for (h, w), t in zip(SIZES, totals)))
    falls = []
    for (s0, e0, t0), (s1, e1, t1) in zip(zip(SIZES, estimates, totals), zip(SIZES[1:], estimates[1:], totals[1:])):
        where = f"{s0[0]}x{s0[1]} → {s1[0]}x{s1[1]}"
        falls += [f"{where}: total {key} {t0.get(key, 0):,} → {t1.get(key, 0):,}"
                  for key in ("dsp", "bram", "uram") if t1.get(key, 0) < t0.get(key, 0)]
        for a, b in zip(e0.layers, e1.layers):
            places_a, places_b = _places(a), _places(b)
            assert a.name == b.name
            falls += [f"{where}: {a.name} loses its {memory}" for memory in places_a if memory not in places_b]
            moved = [(places_a[memory], places_b[memory]) for memory in places_a
                     if memory in places_b and places_a[memory] != places_b[memory]]
            falls += [f"{where}: {a.name}'s memory moves down from {pa} to {pb}"
                      for pa, pb in moved if PLACES.index(pb) < PLACES.index(pa)]
            if not moved:
                ra, rb = a.resources.as_dict(), b.resources.as_dict()
                falls += [f"{where}: {a.name} {key} {ra.get(key, 0):,} → {rb.get(key, 0):,}"
                          for key in RESOURCES if rb.get(key, 0) < ra.get(key, 0)]
    assert not falls, f"{arch} on {board}, fully folded, takes less at a larger input: " + "; ".join(falls)

"""The silence watchdog's limit comes from the design's cycle model, not from a fixed count."""

import numpy as np

from hwseg.cosim import watchdog_limit
from hwseg.cosim.network import SILENCE_MARGIN, SILENCE_SLACK, longest_output_gap
from hwseg.flow import compile_graph
from hwseg.ir import Conv2d, Graph, Input, Int, MaxPool, MulShift, Node, UInt


def _design(height, width, pool=False):
    weight = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 5 - 2
    nodes = [Node("x", Input((3, height, width), UInt(8))),
             Node("conv", Conv2d(weight, np.zeros(4, dtype=np.int64), Int(8), padding=1), ("x",)),
             Node("rq", MulShift(np.full(4, 3), 4, 0, 255), ("conv",))]
    if pool:
        nodes.append(Node("pool", MaxPool(2), ("rq",)))
    return compile_graph(Graph(nodes, name="watched"), "pynq-z2", estimate_only=True, fps=1)


def test_the_longest_silence_covers_a_frame_and_the_first_outputs_latency():
    design = _design(16, 20)
    period = design.estimate.cycles_per_frame
    # the first output waits for a row and more of the input; a frame period is always added
    assert longest_output_gap(design) > period + 20


def test_the_limit_follows_the_frame_size_and_the_stall_probabilities():
    small, large = _design(8, 10), _design(32, 40)
    assert watchdog_limit(large, 1.0, 1.0) > 10 * watchdog_limit(small, 1.0, 1.0) - 10 * SILENCE_SLACK
    base = watchdog_limit(small, 1.0, 1.0)
    assert base == SILENCE_MARGIN * longest_output_gap(small) + SILENCE_SLACK
    assert watchdog_limit(small, 0.5, 0.5) - SILENCE_SLACK == 4 * (base - SILENCE_SLACK)


def test_a_pooled_output_waits_longer_between_rows():
    # a 2×2 max-pool emits only on every other row: its longest gap exceeds the plain design's
    assert longest_output_gap(_design(16, 20, pool=True)) > longest_output_gap(_design(16, 20))

"""The cycle model against the hardware: a convolution layer measured in amaranth.sim.

With an always-valid input and an always-ready output, the steady-state interval between
the last output beats of two frames must equal ``window_layer_cycles`` exactly.
"""

import random

import pytest
from amaranth import unsigned, signed
from amaranth.sim import Simulator

from hwseg.estimate.cycles import window_layer_cycles
from hwseg.hw.layers import Conv2dLayer
from hwseg.ir import conv_output_size

CASES = [
    # (channels, H, W, kernel, stride, padding, dilation, C_out, pe, simd)
    (2, 6, 7, (3, 3), (1, 1), (1, 1), (1, 1), 4, 4, 18),   # F = 1
    (2, 6, 7, (3, 3), (1, 1), (1, 1), (1, 1), 4, 2, 6),    # F = 6
    (3, 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), 4, 1, 9),    # stride 2, F = 12
    (3, 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), 4, 4, 27),   # stride 2, F = 1
    (2, 9, 9, (3, 3), (1, 1), (2, 2), (2, 2), 2, 1, 6),    # dilation 2, F = 6
    (4, 5, 6, (1, 1), (1, 1), (0, 0), (1, 1), 6, 3, 2),    # pointwise, no window, F = 4
    (2, 7, 9, (3, 1), (1, 2), (1, 0), (1, 1), 3, 3, 3),    # rectangular, stride (1, 2)
]


def _measure(channels, height, width, kernel, stride, padding, dilation, c_out, pe, simd):
    rng = random.Random(0)
    k = kernel[0] * kernel[1] * channels
    weights = [[rng.randint(-7, 7) for _ in range(k)] for _ in range(c_out)]
    dut = Conv2dLayer(elem_shape=unsigned(4), channels=channels, height=height, width=width, kernel=kernel,
                      stride=stride, padding=padding, dilation=dilation, weights=weights, bias=[0] * c_out,
                      pe=pe, simd=simd, acc_shape=signed(16))
    ho = conv_output_size(height, kernel[0], stride[0], padding[0], dilation[0])
    wo = conv_output_size(width, kernel[1], stride[1], padding[1], dilation[1])
    beats_per_frame = ho * wo * (c_out // pe)
    ends = []

    async def bench(ctx):
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.o_stream.ready, 1)
        received = cycle = 0
        while len(ends) < 3:
            cycle += 1
            _, _, out_valid = await ctx.tick().sample(dut.o_stream.valid)
            if out_valid:
                received += 1
                if received % beats_per_frame == 0:
                    ends.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return ends[2] - ends[1], (height + 2 * padding[0], width + 2 * padding[1]), (ho, wo)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[3])) + f"_s{c[4][0]}{c[4][1]}_pe{c[8]}_simd{c[9]}")
def test_conv_layer_cycles_match_model(case):
    channels, height, width, kernel, stride, padding, dilation, c_out, pe, simd = case
    measured, padded, out = _measure(*case)
    folds = (c_out // pe) * (kernel[0] * kernel[1] * channels // simd)
    expected = window_layer_cycles(padded=padded, out=out, kernel=kernel, stride=stride, dilation=dilation,
                                   cycles_per_window=folds)
    assert measured == expected, f"measured {measured} cycles per frame, model says {expected}"


# -- the window kind (issue 12): folded wherever it can be and is no slower ---------------------

def _window_graph(channels, size, kernel, padding, dilation=(1, 1), stride=(1, 1), bipolar=False, **attrs):
    import numpy as np

    from hwseg.ir import Bipolar, Conv2d, Graph, Input, Int, Node, UInt
    weight = np.ones((4, channels, *kernel), dtype=np.int64)
    op = Conv2d(weight, np.zeros(4), Bipolar() if bipolar else Int(8), stride=stride, padding=padding,
                dilation=dilation)
    return Graph([Node("x", Input((channels, *size), UInt(2 if bipolar else 8))), Node("c", op, ("x",), attrs)])


def test_window_kind_follows_the_rule():
    from hwseg.estimate.cycles import _folded_cycles, cycles_per_window, layer_cycles, window_kind, window_layer_cycles
    # a 1×3 kernel: the writer never falls behind at a frame's start (its slack covers the frame gap), so the
    # folded window is no slower: folded
    row = _window_graph(16, (32, 64), (1, 3), (0, 1), pe=1, simd=1)
    assert window_kind(row, row["c"]) == "folded"
    assert layer_cycles(row, row["c"]) == window_layer_cycles(
        padded=(32, 66), out=(32, 64), kernel=(1, 3), stride=(1, 1), dilation=(1, 1),
        cycles_per_window=cycles_per_window(row, row["c"]))
    # a 3×3 kernel: a frame's start costs the folded window its writer's cycles (0.07 % here): register,
    # unless asked for
    big = _window_graph(16, (64, 64), (3, 3), (1, 1), pe=1, simd=1)
    register = window_layer_cycles(padded=(66, 66), out=(64, 64), kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                                   cycles_per_window=cycles_per_window(big, big["c"]))
    assert register < _folded_cycles(big, big["c"]) <= register * 1.001
    assert window_kind(big, big["c"]) == "register" and layer_cycles(big, big["c"]) == register
    asked = big["c"].with_attrs(window_request="folded")
    assert window_kind(big, asked) == "folded" and layer_cycles(big, asked) == _folded_cycles(big, big["c"])
    assert window_kind(row, row["c"].with_attrs(window_request="register")) == "register"
    # simd not dividing the channels; a bit convolution folds as a multiplying one (a serial BitMacArray);
    # a pointwise convolution has no window
    assert window_kind(row, row["c"].with_attrs(simd=3)) == "register"
    bits = _window_graph(16, (32, 64), (1, 3), (0, 1), bipolar=True, pe=1, simd=1)
    assert window_kind(bits, bits["c"]) == "folded"
    assert window_kind(bits, bits["c"].with_attrs(simd=3)) == "register"
    point = _window_graph(16, (8, 8), (1, 1), (0, 0), pe=1, simd=1)
    assert window_kind(point, point["c"]) is None

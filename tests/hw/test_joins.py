"""StreamFork, ElementwiseAdd and ChannelConcat vs golden under random valid gaps and ready backpressure."""

import random

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwseg.golden import ops as golden
from hwseg.hw.fork import StreamFork
from hwseg.hw.join import ChannelConcat, ElementwiseAdd

from .streams import as_ints, elem_range, run_ports_test


def _random(rng, shape, count, lanes):
    lo, hi = elem_range(shape)
    return [[rng.randint(lo, hi) for _ in range(lanes)] for _ in range(count)]


@pytest.mark.parametrize("outputs, stall", [(2, 1.0), (2, 0.5), (3, 0.6), (4, 0.3)])
def test_fork_copies_every_beat_to_every_output(outputs, stall):
    rng = random.Random(outputs)
    beats = _random(rng, unsigned(8), 60, 3)
    dut = StreamFork(payload_shape=unsigned(24), outputs=outputs)
    words = [sum(v << (8 * i) for i, v in enumerate(b)) for b in beats]
    got = run_ports_test(dut, {dut.i_stream: words}, {o: len(words) for o in dut.o_streams}, seed=outputs,
                         valid_prob=stall, ready_prob=stall)
    for k, beats_k in enumerate(got):
        assert beats_k == words, f"output {k} differs"


def test_fork_serves_a_ready_consumer_while_another_stalls():
    dut = StreamFork(payload_shape=unsigned(8), outputs=2)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i_stream.payload, 7)
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.o_streams[0].ready, 1)     # output 1 never ready
        for _ in range(3):
            *_, v0, v1, ready = await ctx.tick().sample(dut.o_streams[0].valid, dut.o_streams[1].valid,
                                                        dut.i_stream.ready)
            seen.append((v0, v1, ready))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    # output 0 takes the beat once, then waits for output 1; the input is held meanwhile
    assert seen == [(1, 1, 0), (0, 1, 0), (0, 1, 0)]


@pytest.mark.parametrize("a_shape, b_shape, out_shape, lanes, lo, hi", [
    (signed(8), signed(8), signed(8), 4, -128, 127),
    (unsigned(8), signed(8), unsigned(8), 3, 0, 255),          # a ReLU after the sum
    (signed(5), unsigned(4), signed(6), 1, -20, 25),
])
@pytest.mark.parametrize("stall", [1.0, 0.5])
def test_add_matches_golden(a_shape, b_shape, out_shape, lanes, lo, hi, stall):
    rng = random.Random(lanes)
    a, b = _random(rng, a_shape, 50, lanes), _random(rng, b_shape, 50, lanes)
    dut = ElementwiseAdd(a_shape=a_shape, b_shape=b_shape, out_shape=out_shape, lanes=lanes, lo=lo, hi=hi)
    (got,) = run_ports_test(dut, {dut.a_stream: a, dut.b_stream: b}, {dut.o_stream: 50}, seed=lanes,
                            valid_prob=stall, ready_prob=stall)
    want = golden.add(np.array(a)[None, :, :, None], np.array(b)[None, :, :, None], lo, hi)[0, :, :, 0]
    assert got == want.tolist()


@pytest.mark.parametrize("channels", [(3, 5), (1, 1), (13, 3), (2, 4, 1)])
@pytest.mark.parametrize("stall", [1.0, 0.4])
def test_concat_matches_golden(channels, stall):
    rng = random.Random(sum(channels))
    shape = signed(6)
    pixels = 40
    parts = [_random(rng, shape, pixels, c) for c in channels]
    dut = ChannelConcat(elem_shape=shape, channels=list(channels))
    (got,) = run_ports_test(dut, dict(zip(dut.i_streams, parts)), {dut.o_stream: pixels}, seed=len(channels),
                            valid_prob=stall, ready_prob=stall)
    # golden concat on (1, C, pixels, 1) tensors
    want = golden.concat([np.array(p).T[None, :, :, None] for p in parts])[0, :, :, 0].T
    assert got == want.tolist()


@pytest.mark.parametrize("make, message", [
    (lambda: StreamFork(payload_shape=8, outputs=1), "outputs must be an integer >= 2, not 1"),
    (lambda: ElementwiseAdd(a_shape=signed(8), b_shape=signed(8), out_shape=signed(8), lanes=0, lo=0, hi=1),
     "lanes must be a positive integer, not 0"),
    (lambda: ElementwiseAdd(a_shape=signed(8), b_shape=signed(8), out_shape=unsigned(8), lanes=1, lo=-1, hi=9),
     "lo must be representable in unsigned(8) (0..255), not -1"),
    (lambda: ElementwiseAdd(a_shape=signed(8), b_shape=signed(8), out_shape=signed(8), lanes=1, lo=5, hi=1),
     "lo must not exceed hi, not lo=5 and hi=1"),
    (lambda: ChannelConcat(elem_shape=signed(8), channels=[4]), "at least 2 inputs, not [4]"),
    (lambda: ChannelConcat(elem_shape=signed(8), channels=[4, 0]), "channels[1] must be a positive integer, not 0"),
])
def test_bad_parameters_are_refused_with_the_value(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize("in_shape, weights, bias, stall", [
    (unsigned(8), [64, 64, 64], [-6813, 0, -4347], 0.5),
    (signed(6), [-3, 5, 0, 7], [10, -20, 3, 0], 1.0),
    (unsigned(2), [1], [-1], 0.6),
])
def test_channel_affine_matches_golden_depthwise_conv(in_shape, weights, bias, stall):
    from hwseg.hw.channel_affine import ChannelAffine
    channels = len(weights)
    rng = random.Random(channels)
    x = _random(rng, in_shape, 40, channels)
    dut = ChannelAffine(in_shape=in_shape, acc_shape=signed(24), channels=channels, weights=weights, bias=bias)
    (got,) = run_ports_test(dut, {dut.i_stream: x}, {dut.o_stream: 40}, seed=channels, valid_prob=stall,
                            ready_prob=stall)
    frame = np.array(x).T[None, :, :, None]                          # (1, C, pixels, 1)
    want = golden.conv2d(frame, np.array(weights).reshape(channels, 1, 1, 1), np.array(bias), 1, 0, 1,
                         groups=channels)
    assert got == want[0, :, :, 0].T.tolist()


@pytest.mark.parametrize("in_shape, channels, lanes, stall", [
    (unsigned(8), 6, 2, 0.5),
    (signed(6), 4, 1, 0.6),
    (unsigned(8), 9, 3, 1.0),
])
def test_folded_channel_affine_matches_golden_depthwise_conv(in_shape, channels, lanes, stall):
    """``lanes < channels``: a pixel in ``channels/lanes`` beats, weights and biases cycling with them; several
    pixels back to back so that the group wraps."""
    from hwseg.hw.channel_affine import ChannelAffine
    rng = random.Random(channels * 7 + lanes)
    weights = [rng.randint(-40, 40) for _ in range(channels)]
    bias = [rng.randint(-500, 500) for _ in range(channels)]
    pixels = 30
    x = _random(rng, in_shape, pixels, channels)
    beats = [pixel[g * lanes:(g + 1) * lanes] for pixel in x for g in range(channels // lanes)]
    dut = ChannelAffine(in_shape=in_shape, acc_shape=signed(24), channels=channels, weights=weights, bias=bias,
                        lanes=lanes)
    assert dut.groups == channels // lanes
    (got,) = run_ports_test(dut, {dut.i_stream: beats}, {dut.o_stream: len(beats)}, seed=channels,
                            valid_prob=stall, ready_prob=stall)
    frame = np.array(x).T[None, :, :, None]                          # (1, C, pixels, 1)
    want = golden.conv2d(frame, np.array(weights).reshape(channels, 1, 1, 1), np.array(bias), 1, 0, 1,
                         groups=channels)[0, :, :, 0].T.tolist()
    for index, beat in enumerate(got):
        pixel, group = divmod(index, channels // lanes)
        expected = want[pixel][group * lanes:(group + 1) * lanes]
        assert beat == expected, (f"pixel {pixel}, channels {group * lanes}..{(group + 1) * lanes - 1}: "
                                  f"expected {expected}, got {beat}")


def test_channel_affine_lanes_must_divide_the_channels():
    from hwseg.hw.channel_affine import ChannelAffine
    with pytest.raises(ValueError, match=r"lanes must divide channels=6, not 4"):
        ChannelAffine(in_shape=unsigned(8), acc_shape=signed(24), channels=6, weights=[1] * 6, bias=[0] * 6, lanes=4)


def test_channel_affine_refuses_a_narrow_accumulator():
    from hwseg.hw.channel_affine import ChannelAffine
    with pytest.raises(ValueError, match=r"acc_shape must hold the results \[-6813, 9507\].*not signed\(8\)"):
        ChannelAffine(in_shape=unsigned(8), acc_shape=signed(8), channels=2, weights=[64, 0], bias=[-6813, 0])

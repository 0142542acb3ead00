"""SkidBuffer: order under random valid gaps and ready backpressure, full rate with no latency, and a ready that
never follows the reader's ready in the same cycle."""

import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hwseg.hw.skid import SkidBuffer
from tests.hw.streams import measure_full_rate, run_stream_test

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.4, 1.0), "backpressure": (1.0, 0.3)}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rate", list(RATES))
def test_keeps_order(rate, seed):
    dut = SkidBuffer(payload_shape=unsigned(8))
    beats = [(k * 37 + 11 + seed) % 256 for k in range(80)]
    valid_prob, ready_prob = RATES[rate]
    got = run_stream_test(dut, beats, len(beats), seed=seed, valid_prob=valid_prob, ready_prob=ready_prob)
    assert got == beats, next(f"beat {k}: expected {e}, got {g}" for k, (e, g) in enumerate(zip(beats, got)) if e != g)


def test_array_payload():
    dut = SkidBuffer(payload_shape=data.ArrayLayout(signed(5), 3))
    beats = [[k % 16 - 8, -k % 16 - 8, 7 - k % 16] for k in range(30)]
    assert run_stream_test(dut, beats, len(beats), valid_prob=0.6, ready_prob=0.5) == beats


def test_full_rate_without_latency():
    beats = list(range(40))
    in_cycles, out_cycles, got = measure_full_rate(SkidBuffer(payload_shape=unsigned(8)), beats, len(beats))
    assert got == beats
    assert in_cycles == out_cycles == list(range(len(beats)))
    assert SkidBuffer.latency == 0


def test_ready_is_a_register():
    """Within a cycle, ``i_stream.ready`` does not move when the reader's ready does; it is low exactly while a
    refused beat is held, and the reader then gets that beat first."""
    dut = SkidBuffer(payload_shape=unsigned(8))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(5)

    async def testbench(ctx):
        i, o = dut.i_stream, dut.o_stream
        sent, got, holding = 0, [], False
        for _ in range(300):
            ctx.set(i.valid, rng.random() < 0.7)
            ctx.set(i.payload, sent % 256)
            ctx.set(o.ready, 0)
            await ctx.delay(1e-9)
            ready_low = ctx.get(i.ready)
            ctx.set(o.ready, 1)
            await ctx.delay(1e-9)
            assert ctx.get(i.ready) == ready_low, "i_stream.ready followed o_stream.ready in the same cycle"
            assert ready_low == (not holding)
            reader = rng.random() < 0.5
            ctx.set(o.ready, reader)
            _, _, iv, ir, ov, op = await ctx.tick().sample(i.valid, i.ready, o.valid, o.payload)
            if ov and reader:
                got.append(op)
            if iv and ir:
                sent += 1
            holding = ov and not reader
        assert got == [k % 256 for k in range(len(got))] and len(got) >= sent - 1

    sim.add_testbench(testbench)
    sim.run()


def test_bad_shape_is_refused():
    with pytest.raises(TypeError, match="payload_shape"):
        SkidBuffer(payload_shape="wide")

"""StreamFIFO: order, full and empty, throughput, under random valid gaps and ready backpressure."""

import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hwseg.hw.fifo import StreamFIFO
from tests.hw.streams import as_ints, measure_full_rate, run_stream_test

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

RATES = {"full": (1.0, 1.0), "stalls": (0.6, 0.6), "gaps": (0.5, 1.0), "backpressure": (1.0, 0.3)}


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("depth", [1, 2, 3, 5, 16])
def test_keeps_order(depth, rate):
    dut = StreamFIFO(payload_shape=unsigned(8), depth=depth)
    beats = [(k * 37 + 11) % 256 for k in range(60)]
    valid_prob, ready_prob = RATES[rate]
    got = run_stream_test(dut, beats, len(beats), seed=depth, valid_prob=valid_prob, ready_prob=ready_prob)
    assert got == beats, next(f"beat {k}: expected {e}, got {g}" for k, (e, g) in enumerate(zip(beats, got)) if e != g)


def test_array_payload():
    layout = data.ArrayLayout(signed(5), 3)
    dut = StreamFIFO(payload_shape=layout, depth=4)
    beats = [[k % 16 - 8, -k % 16 - 8, 7 - k % 16] for k in range(20)]
    assert run_stream_test(dut, beats, len(beats), valid_prob=0.6, ready_prob=0.6) == beats


@pytest.mark.parametrize("depth", [1, 2, 3, 7])
def test_full_and_empty(depth):
    """With the reader held, exactly `capacity` (≥ depth) beats go in; then ready drops; draining empties it."""
    dut = StreamFIFO(payload_shape=unsigned(8), depth=depth)
    assert dut.capacity == max(depth, 3) >= depth
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        i, o = dut.i_stream, dut.o_stream
        ctx.set(o.ready, 0)
        accepted = 0
        for cycle in range(3 * dut.capacity + 5):
            ctx.set(i.payload, accepted)
            ctx.set(i.valid, 1)
            *_, ir = await ctx.tick().sample(i.ready)
            accepted += ir
        assert accepted == dut.capacity, f"accepted {accepted} beats with the reader held, capacity {dut.capacity}"
        assert not ctx.get(i.ready), "ready while full"
        ctx.set(i.valid, 0)
        ctx.set(o.ready, 1)
        out = []
        for cycle in range(dut.capacity + 5):
            *_, ov, op = await ctx.tick().sample(o.valid, o.payload)
            if ov:
                out.append(as_ints(op))
        assert out == list(range(dut.capacity))
        assert not ctx.get(o.valid), "valid while empty"
        assert ctx.get(i.ready)

    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_one_beat_per_cycle(depth):
    dut = StreamFIFO(payload_shape=unsigned(8), depth=depth)
    beats = list(range(40))
    in_cycles, out_cycles, got = measure_full_rate(dut, beats, len(beats), limit=1000)
    assert got == beats
    assert in_cycles == list(range(len(beats)))
    assert out_cycles == [c + 2 for c in range(len(beats))]         # latency 2


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(payload_shape="wide", depth=4), TypeError, "payload_shape must be a shape, not 'wide'"),
    (dict(payload_shape=unsigned(0), depth=4), ValueError, "payload_shape must be at least 1 bit wide, not unsigned(0)"),
    (dict(payload_shape=unsigned(8), depth=0), ValueError, "depth must be a positive integer, not 0"),
    (dict(payload_shape=unsigned(8), depth=2.5), ValueError, "depth must be a positive integer, not 2.5"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        StreamFIFO(**kwargs)


def test_converts_to_verilog():
    for depth in [1, 4, 64]:
        assert "module" in verilog.convert(StreamFIFO(payload_shape=unsigned(12), depth=depth), emit_src=False)

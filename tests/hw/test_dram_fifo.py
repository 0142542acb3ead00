"""DramFifo and MemoryArbiter: order, capacity and traffic under random stalls and random memory latency."""

import random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hwseg.hw.dram import DramFifo, MemoryArbiter
from tests.hw.memory_model import MemoryModel
from tests.hw.streams import collect, send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BASE = 0x4000_0000


def _beats(width, count, seed):
    rng = random.Random(seed)
    return [rng.getrandbits(width) for _ in range(count)]


def run_fifos(fifos, streams, *, seed=0, valid_prob=0.7, ready_prob=0.7, latency=(20, 200), mem_ready=0.7,
              hold_output=0, timeout=20_000):
    """Each of ``fifos`` (sharing one memory through a MemoryArbiter when there are several) takes its beats
    from ``streams``; returns what each put out and the memory model. ``hold_output`` cycles pass before any
    consumer is ready (so the data has to wait in memory)."""
    top = Module()
    for k, fifo in enumerate(fifos):
        top.submodules[f"fifo{k}"] = fifo
    if len(fifos) > 1:
        top.submodules.arbiter = arbiter = MemoryArbiter(address_bits=fifos[0].address_bits,
                                                         data_bits=fifos[0].data_bits, ports=len(fifos))
        for fifo, port in zip(fifos, arbiter.ports):
            wiring.connect(top, fifo.mem, port)
        memory_port = arbiter.mem
    else:
        memory_port = fifos[0].mem
    bases, offset = [], BASE
    for fifo in fifos:
        bases.append(offset)
        offset += fifo.region_bytes
    model = MemoryModel(memory_port, data_bits=fifos[0].data_bits, rng=random.Random(seed + 100), latency=latency,
                        ready_prob=mem_ready, base=BASE, size=offset - BASE)
    got = [[] for _ in fifos]
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def setup(ctx):
        for fifo, base in zip(fifos, bases):
            ctx.set(fifo.base, base)
    sim.add_testbench(setup)
    sim.add_testbench(model.serve, background=True)
    for k, (fifo, beats) in enumerate(zip(fifos, streams)):
        async def producer(ctx, fifo=fifo, beats=beats, rng=random.Random(seed + 2 * k)):
            await send(ctx, fifo.i_stream, beats, rng=rng, valid_prob=valid_prob, timeout=timeout)

        async def consumer(ctx, fifo=fifo, count=len(beats), k=k, rng=random.Random(seed + 2 * k + 1)):
            for _ in range(hold_output):
                await ctx.tick()
            try:
                await collect(ctx, fifo.o_stream, count, got[k], rng=rng, ready_prob=ready_prob, timeout=timeout)
            except AssertionError as error:
                raise AssertionError(f"FIFO {k}: {error}") from None
        sim.add_testbench(producer)
        sim.add_testbench(consumer)
    sim.run()
    return got, model


def first_difference(expected, got):
    for k, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            return f"beat {k}: expected {e:#x}, got {g:#x}"
    return f"{len(expected)} beats expected, {len(got)} got"


@pytest.mark.parametrize("width,data_bits,burst", [(8, 64, 8), (24, 32, 4), (100, 32, 16), (128, 128, 16)])
@pytest.mark.parametrize("rates", [(1.0, 1.0), (0.6, 0.6), (0.9, 0.2)])
def test_keeps_order_under_stalls_and_memory_latency(width, data_bits, burst, rates):
    fifo = DramFifo(payload_shape=unsigned(width), depth=64, data_bits=data_bits, address_bits=32, burst=burst)
    beats = _beats(width, 300, width)
    (got,), model = run_fifos([fifo], [beats], seed=width + burst, valid_prob=rates[0], ready_prob=rates[1])
    assert got == beats, first_difference(beats, got)
    # every word went through memory exactly once each way, and nothing was left behind
    assert model.words_written == model.words_read == len(beats) * fifo.words_per_beat
    assert model.longest_burst <= burst


def test_fast_memory_and_slow_memory():
    for latency in [(1, 1), (150, 400)]:
        fifo = DramFifo(payload_shape=unsigned(16), depth=40, data_bits=64, address_bits=32, burst=8)
        beats = _beats(16, 200, 7)
        (got,), _ = run_fifos([fifo], [beats], latency=latency, mem_ready=1.0 if latency == (1, 1) else 0.5)
        assert got == beats, f"latency {latency}: {first_difference(beats, got)}"


def test_holds_its_capacity_in_memory_with_the_output_held():
    """With the consumer away for a long time, the region fills (the data waits in DRAM, in full bursts), and
    then everything comes out in order."""
    fifo = DramFifo(payload_shape=unsigned(32), depth=200, data_bits=32, address_bits=32, burst=16)
    assert fifo.region_words == 256 and fifo.capacity == 256
    beats = _beats(32, fifo.capacity, 3)
    (got,), model = run_fifos([fifo], [beats], hold_output=30_000, latency=(20, 60), timeout=40_000)
    assert got == beats, first_difference(beats, got)
    # while the read side starves at the start, words go out as they come; once it holds data, the writes
    # wait for full bursts
    assert model.bursts["write"] <= len(beats) // 16 + 8, model.bursts


def test_the_producer_waits_when_the_region_is_full():
    fifo = DramFifo(payload_shape=unsigned(8), depth=16, data_bits=32, address_bits=32, burst=4)
    limit = fifo.capacity + fifo.staging + fifo.read_buffer + 8     # everything it could possibly hold, and more
    top = Module()
    top.submodules.fifo = fifo
    model = MemoryModel(fifo.mem, data_bits=32, rng=random.Random(5), latency=(5, 20), base=BASE,
                        size=fifo.region_bytes)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    taken = []

    async def testbench(ctx):
        ctx.set(fifo.base, BASE)
        ctx.set(fifo.o_stream.ready, 0)
        for cycle in range(3000):
            ctx.set(fifo.i_stream.payload, len(taken) % 256)
            ctx.set(fifo.i_stream.valid, 1)
            *_, ready = await ctx.tick().sample(fifo.i_stream.ready)
            if ready:
                taken.append(cycle)
    sim.add_testbench(model.serve, background=True)
    sim.add_testbench(testbench)
    sim.run()
    assert fifo.capacity <= len(taken) < limit, f"took {len(taken)} beats with the output held"
    assert model.words_written <= fifo.region_words + fifo.read_buffer     # the ring, and what was read ahead


def test_several_fifos_share_one_memory_port():
    fifos = [DramFifo(payload_shape=unsigned(w), depth=d, data_bits=64, address_bits=32, burst=8)
             for w, d in [(8, 30), (64, 100), (100, 20)]]
    streams = [_beats(f.payload_width, n, k) for k, (f, n) in enumerate(zip(fifos, [150, 220, 90]))]
    got, model = run_fifos(fifos, streams, seed=11)
    for k, (beats, out) in enumerate(zip(streams, got)):
        assert out == beats, f"FIFO {k}: {first_difference(beats, out)}"
    assert model.words_written == sum(len(s) * f.words_per_beat for s, f in zip(streams, fifos))


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=0), "depth must be a positive integer, not 0"),
    (dict(data_bits=48), "data_bits must be a power of two from 32 to 1024, not 48"),
    (dict(burst=12), "burst must be a power of two"),
    (dict(burst=64, data_bits=1024), "burst must be a power of two of at most 256 beats and 4096 bytes, not 64"),
    (dict(address_bits=8), "address_bits must be an integer >= 12, not 8"),
    (dict(address_bits=12, depth=4096), "does not fit 12-bit addresses"),
])
def test_rejects_bad_parameters(kwargs, match):
    options = dict(payload_shape=unsigned(8), depth=16, data_bits=64, address_bits=32, burst=8) | kwargs
    with pytest.raises(ValueError, match=match):
        DramFifo(**options)

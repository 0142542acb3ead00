"""Stream drivers for ``amaranth.sim`` testbenches, with random valid gaps and ready backpressure.

Use them from ``async`` testbenches (``Simulator.add_testbench``)::

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=rng, valid_prob=0.6)
    sim.add_testbench(producer, background=True)

or simply ``got = run_stream_test(dut, beats, count, valid_prob=0.6, ready_prob=0.6)``.

``send`` raises ``valid`` without looking at ``ready`` and holds the payload until the
transfer, as the stream rules demand; ``collect`` fails (instead of hanging) when the stream
stays silent for ``timeout`` cycles.
"""

import random

from amaranth.sim import Simulator

__all__ = ["send", "collect", "run_stream_test", "as_ints"]


def as_ints(value):
    """A sampled payload as a Python int or a (nested) list of ints."""
    try:
        return [as_ints(v) for v in value]
    except TypeError:
        return int(value)


async def send(ctx, stream, beats, *, rng: random.Random, valid_prob: float = 1.0, timeout: int = 10_000):
    for index, beat in enumerate(beats):
        while rng.random() >= valid_prob:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, beat)
        ctx.set(stream.valid, 1)
        for _ in range(timeout):
            _, _, ready = await ctx.tick().sample(stream.ready)
            if ready:
                break
        else:
            raise AssertionError(f"input stream not ready for {timeout} cycles at beat {index} of {len(beats)}")
    ctx.set(stream.valid, 0)


async def collect(ctx, stream, count, got, *, rng: random.Random, ready_prob: float = 1.0,
                  timeout: int = 10_000):
    idle = 0
    while len(got) < count:
        ready = rng.random() < ready_prob
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            got.append(as_ints(payload))
            idle = 0
        else:
            idle += 1
            if idle > timeout:
                raise AssertionError(f"output stream silent for {timeout} cycles after {len(got)} of {count} beats")
    ctx.set(stream.ready, 0)


def run_stream_test(dut, beats, count, *, seed=0, valid_prob=1.0, ready_prob=1.0, timeout=10_000):
    """Drive ``dut.i_stream`` with ``beats``, collect ``count`` beats of ``dut.o_stream``, return them."""
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=rng_in, valid_prob=valid_prob)

    async def consumer(ctx):
        await collect(ctx, dut.o_stream, count, got, rng=rng_out, ready_prob=ready_prob, timeout=timeout)

    # Both must finish: every input beat is taken, every output beat arrives.
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got

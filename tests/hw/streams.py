"""Stream drivers for ``amaranth.sim`` testbenches, with random valid gaps and ready backpressure.

Use them from ``async`` testbenches (``Simulator.add_testbench``)::

    async def producer(ctx):
        await send(ctx, dut.i_stream, beats, rng=rng, valid_prob=0.6)
    sim.add_testbench(producer, background=True)

or simply ``got = run_stream_test(dut, beats, count, valid_prob=0.6, ready_prob=0.6)``, which
also checks the output stream rule and that every input beat is taken. For cycle counts at
full rate (``valid`` and ``ready`` always up) use
``in_cycles, out_cycles, got = measure_full_rate(dut, beats, count)``.

``send`` raises ``valid`` without looking at ``ready`` and holds the payload until the
transfer, as the stream rules demand; ``collect`` fails (instead of hanging) when the stream
stays silent for ``timeout`` cycles.
"""

import random

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["send", "collect", "run_stream_test", "measure_full_rate", "as_ints", "elem_range"]


def as_ints(value):
    """A sampled payload as a Python int or a (nested) list of ints."""
    try:
        return [as_ints(v) for v in value]
    except TypeError:
        return int(value)


def elem_range(shape):
    """``(lo, hi)``: the least and greatest value of an Amaranth ``unsigned(b)``/``signed(b)`` shape."""
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


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
    """Drive ``dut.i_stream`` with ``beats``, collect ``count`` beats of ``dut.o_stream``, return them.

    ``valid`` has random gaps (up with probability ``valid_prob`` per cycle) and ``ready`` random
    backpressure (``ready_prob``), from the seeds ``seed`` and ``seed + 1``. Also checks:

    * the output stream rule: once ``o_stream.valid`` is up it stays up, with the same payload,
      until the transfer;
    * every input beat is taken (the producer must finish, also after the last output beat,
      when ``ready`` is down);
    * no hang: the input not ready, or the output silent, for ``timeout`` cycles fails with
      the component's name and how far both streams got.
    """
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    got, taken = [], []
    name = type(dut).__name__
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    def progress():
        return f"{len(taken)} of {len(beats)} input beats taken, {len(got)} of {count} output beats collected"

    async def producer(ctx):
        try:
            await send(ctx, dut.i_stream, beats, rng=rng_in, valid_prob=valid_prob, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error} ({progress()})") from None

    async def consumer(ctx):
        try:
            await collect(ctx, dut.o_stream, count, got, rng=rng_out, ready_prob=ready_prob, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error} ({progress()})") from None

    async def monitor(ctx):
        held = None
        async for _, _, i_valid, i_ready, valid, ready, payload in ctx.tick().sample(
                dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.ready,
                dut.o_stream.payload):
            if i_valid and i_ready:
                taken.append(True)
            assert held is None or (valid and as_ints(payload) == held), \
                (f"{name}: o_stream broke the stream rule after {len(got)} beats: held {held}, "
                 f"then valid={valid} {as_ints(payload)}")
            held = as_ints(payload) if valid and not ready else None

    # Both must finish: every input beat is taken, every output beat arrives.
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got


def measure_full_rate(dut, beats, count, *, limit=10_000):
    """Full rate (``valid`` up while beats remain, ``ready`` always up): ``(in_cycles, out_cycles, got)``.

    ``in_cycles`` and ``out_cycles`` hold the cycle (0 = the first tick) of every input and
    output transfer, ``got`` the output payloads. Runs until ``count`` output beats have
    arrived and every input beat is taken; fails after ``limit`` cycles.
    """
    in_cycles, out_cycles, got = [], [], []
    name = type(dut).__name__
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        i, o = dut.i_stream, dut.o_stream
        ctx.set(o.ready, 1)
        cycle = 0
        while len(got) < count or len(in_cycles) < len(beats):
            assert cycle < limit, (f"{name}: timed out after {limit} cycles with {len(in_cycles)} of {len(beats)} "
                                   f"input beats taken and {len(got)} of {count} output beats out")
            if len(in_cycles) < len(beats):
                ctx.set(i.payload, beats[len(in_cycles)])
            ctx.set(i.valid, len(in_cycles) < len(beats))
            *_, iv, ir, ov, op = await ctx.tick().sample(i.valid, i.ready, o.valid, o.payload)
            if iv and ir:
                in_cycles.append(cycle)
            if ov:
                out_cycles.append(cycle)
                got.append(as_ints(op))
            cycle += 1

    sim.add_testbench(testbench)
    sim.run()
    return in_cycles, out_cycles, got


def run_ports_test(dut, inputs, outputs, *, seed=0, valid_prob=1.0, ready_prob=1.0, timeout=10_000):
    """Like :func:`run_stream_test` for a component with several stream ports.

    ``inputs`` maps each input stream (a port of ``dut``) to its beats, ``outputs`` each output
    stream to the number of beats to collect; every port gets its own random valid gaps or
    ready backpressure. Returns the collected beats, one list per output in ``outputs`` order,
    and checks the stream rule on every output and that every input beat is taken.
    """
    name = type(dut).__name__
    got = [[] for _ in outputs]
    top = Module()                      # declares the clock domain even for a component without flip-flops
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)

    def progress():
        return ", ".join(f"output {k}: {len(g)} of {count}" for k, (g, count) in enumerate(zip(got, outputs.values())))

    for k, (port, beats) in enumerate(inputs.items()):
        async def producer(ctx, port=port, beats=beats, rng=random.Random(seed + 2 * k)):
            try:
                await send(ctx, port, beats, rng=rng, valid_prob=valid_prob, timeout=timeout)
            except AssertionError as error:
                raise AssertionError(f"{name} input {k}: {error} ({progress()})") from None
        sim.add_testbench(producer)

    for k, (port, count) in enumerate(outputs.items()):
        async def consumer(ctx, port=port, count=count, k=k, rng=random.Random(seed + 2 * k + 1)):
            try:
                await collect(ctx, port, count, got[k], rng=rng, ready_prob=ready_prob, timeout=timeout)
            except AssertionError as error:
                raise AssertionError(f"{name} output {k}: {error} ({progress()})") from None

        async def monitor(ctx, port=port, k=k):
            held = None
            async for _, _, valid, ready, payload in ctx.tick().sample(port.valid, port.ready, port.payload):
                assert held is None or (valid and as_ints(payload) == held), \
                    (f"{name}: output {k} broke the stream rule after {len(got[k])} beats: held {held}, "
                     f"then valid={valid} {as_ints(payload)}")
                held = as_ints(payload) if valid and not ready else None
        sim.add_testbench(consumer)
        sim.add_testbench(monitor, background=True)
    sim.run()
    return got

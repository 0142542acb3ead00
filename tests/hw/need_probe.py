"""How many input beats a streaming block needs before each output beat, measured in ``amaranth.sim``.

``outputs_after_each_input(dut, beats)`` feeds the input beats one at a time (output always
ready) and, before every input beat and after the last, lets the block run until its output has
been silent for ``quiet`` cycles. Entry ``n`` of the result is the number of output beats the
block emitted with exactly ``n`` input beats taken, however long it is given. A block whose
output ``p`` needs the first ``k`` input beats must give ``result[k - 1] <= p < result[k]``.
"""

from amaranth.sim import Simulator

__all__ = ["outputs_after_each_input", "needed_inputs"]


def outputs_after_each_input(dut, beats, *, quiet=40, limit=200_000):
    counts = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        i, o = dut.i_stream, dut.o_stream
        ctx.set(o.ready, 1)
        emitted, cycle = 0, 0

        async def tick():
            nonlocal emitted, cycle
            *_, o_valid, i_valid, i_ready = await ctx.tick().sample(o.valid, i.valid, i.ready)
            emitted += bool(o_valid)
            cycle += 1
            assert cycle < limit, f"{type(dut).__name__}: no end after {limit} cycles"
            return i_valid and i_ready

        for beat in [*beats, None]:
            silent = 0
            while silent < quiet:
                before = emitted
                await tick()
                silent = 0 if emitted > before else silent + 1
            counts.append(emitted)
            if beat is None:
                break
            ctx.set(i.payload, beat)
            ctx.set(i.valid, 1)
            while not await tick():
                pass
            ctx.set(i.valid, 0)

    sim.add_testbench(testbench)
    sim.run()
    return counts


def needed_inputs(counts, outputs):
    """Per output beat ``p < outputs``: the least ``n`` with ``counts[n] > p`` (None if never emitted)."""
    result, n = [], 0
    for p in range(outputs):
        while n < len(counts) and counts[n] <= p:
            n += 1
        result.append(n if n < len(counts) else None)
    return result

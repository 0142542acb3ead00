"""UartTx and UartRx against a bit-level model of the line (8N1, least significant bit first): bytes out under random
valid gaps, bytes in under random ready backpressure and clock-phase offsets, overrun, framing errors, glitches."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hwseg.hw.uart import UartRx, UartTx
from tests.hw.streams import send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _line_bits(byte):
    return [0] + [(byte >> k) & 1 for k in range(8)] + [1]


def _decode(samples, divisor):
    """Bytes of a sampled ``tx`` line (one sample a cycle), found the way a receiver does: the middle of every bit."""
    out, t = [], 0
    while t < len(samples):
        if samples[t] == 0:
            middle = t + divisor // 2
            bits = [samples[middle + k * divisor] for k in range(10) if middle + k * divisor < len(samples)]
            if len(bits) < 10:
                break
            assert bits[0] == 0 and bits[9] == 1, f"bad frame at cycle {t}: {bits}"
            out.append(sum(bit << k for k, bit in enumerate(bits[1:9])))
            t = middle + 9 * divisor
        else:
            t += 1
    return out


@pytest.mark.parametrize("divisor, valid_prob", [(4, 1.0), (7, 0.3), (16, 0.8)])
def test_tx_sends_each_byte_framed_with_exact_bit_times(divisor, valid_prob):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(40)]
    dut = UartTx(divisor=divisor)
    samples = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def producer(ctx):
        await send(ctx, dut.i_stream, data, rng=rng, valid_prob=valid_prob)
        for _ in range(12 * divisor):
            await ctx.tick()

    async def line(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            samples.append(tx)

    sim.add_testbench(producer)
    sim.add_testbench(line, background=True)
    sim.run()
    assert _decode(samples, divisor) == data
    # every low or high run is a whole number of bits long
    runs, last, length = [], samples[0], 0
    for bit in samples:
        if bit == last:
            length += 1
        else:
            runs.append((last, length))
            last, length = bit, 1
    assert all(n % divisor == 0 for bit, n in runs[1:] if bit == 0), runs[:20]
    if valid_prob == 1.0:   # back to back: a byte every ten bits
        first = samples.index(0)
        assert len([r for r in runs if r[0] == 0]) >= 1 and samples[first + 10 * divisor * len(data) - 1] == 1


def _run_rx(divisor, frames, *, ready_prob, phase, seed):
    """Drive ``rx`` with ``frames`` (lists of line bits, each bit ``divisor`` cycles after ``phase`` idle cycles and
    a random idle gap between frames); returns the bytes read, and the cycles ``overrun``/``framing_error`` rose."""
    rng = random.Random(seed)
    dut = UartRx(divisor=divisor)
    got, overruns, framing = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    total = phase + sum(len(f) * divisor for f in frames) + 64 * len(frames) + 4 * divisor

    async def line(ctx):
        for _ in range(phase):
            await ctx.tick()
        for bits in frames:
            for bit in bits:
                ctx.set(dut.rx, bit)
                for _ in range(divisor):
                    await ctx.tick()
            ctx.set(dut.rx, 1)
            for _ in range(rng.randrange(0, 3 * divisor)):
                await ctx.tick()
        for _ in range(4 * divisor):
            await ctx.tick()

    async def reader(ctx):
        cycle = 0
        async for _, _, valid, ready, payload, over, bad in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload, dut.overrun, dut.framing_error):
            if valid and ready:
                got.append(int(payload))
            if over:
                overruns.append(cycle)
            if bad:
                framing.append(cycle)
            ctx.set(dut.o_stream.ready, rng.random() < ready_prob)
            cycle += 1

    sim.add_testbench(line)
    sim.add_testbench(reader, background=True)
    sim.run_until(total * 1e-8 + 1e-6)
    return got, overruns, framing


@pytest.mark.parametrize("divisor, phase", [(4, 0), (5, 3), (9, 1), (16, 7)])
def test_rx_receives_every_byte(divisor, phase):
    rng = random.Random(divisor * 10 + phase)
    data = [rng.randrange(256) for _ in range(50)]
    got, overruns, framing = _run_rx(divisor, [_line_bits(b) for b in data], ready_prob=0.5, phase=phase, seed=phase)
    assert got == data
    assert not overruns and not framing


def test_rx_drops_a_byte_it_cannot_hand_over_and_says_so():
    data = [0x12, 0x34, 0x56]
    got, overruns, _ = _run_rx(8, [_line_bits(b) for b in data], ready_prob=0.0, phase=2, seed=1)
    assert got == [] and len(overruns) == 2   # the first byte is held (never read); the other two are lost


def test_rx_reports_a_bad_stop_bit_and_drops_the_byte():
    frames = [_line_bits(0xA5), _line_bits(0x3C)[:-1] + [0], [1, 1], _line_bits(0x0F)]
    got, _, framing = _run_rx(6, frames, ready_prob=1.0, phase=0, seed=2)
    assert got == [0xA5, 0x0F] and len(framing) == 1


def test_rx_ignores_a_glitch_shorter_than_half_a_bit():
    got, framing = _run_rx_glitch(10, [0x81])
    assert got == [0x81] and not framing


def _run_rx_glitch(divisor, data):
    """Two low cycles on an idle line (a glitch), then ``data``."""
    dut = UartRx(divisor=divisor)
    got, framing = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def line(ctx):
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        for byte in data:
            for bit in _line_bits(byte):
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(4 * divisor)

    async def reader(ctx):
        ctx.set(dut.o_stream.ready, 1)
        async for _, _, valid, payload, bad in ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload,
                                                                 dut.framing_error):
            if valid:
                got.append(int(payload))
            if bad:
                framing.append(1)

    sim.add_testbench(line)
    sim.add_testbench(reader, background=True)
    sim.run()
    return got, framing


def test_tx_into_rx_loopback_at_full_rate():
    divisor, rng = 5, random.Random(9)
    data = [rng.randrange(256) for _ in range(30)]
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def producer(ctx):
        await send(ctx, tx.i_stream, data, rng=rng)

    async def reader(ctx):
        ctx.set(rx.o_stream.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(rx.o_stream.valid, rx.o_stream.payload):
            if valid:
                got.append(int(payload))
            if len(got) == len(data):
                return

    sim.add_testbench(producer)
    sim.add_testbench(reader)
    sim.run()
    assert got == data


@pytest.mark.parametrize("cls", [UartTx, UartRx])
def test_divisor_is_checked(cls):
    with pytest.raises(ValueError, match=r"divisor must be an integer >= 4, not 3"):
        cls(divisor=3)

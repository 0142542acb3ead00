"""MemoryArbiter: requests take turns round robin, and every response goes back to the port that asked."""

import random

import pytest
from amaranth.sim import Simulator

from hwseg.hw.dram import MemoryArbiter

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def round_robin(requesting, ports, count):
    """The grants of an arbiter whose ports in ``requesting`` always ask: the first asking port after the last
    one granted (the search starts after port 0)."""
    order, last = [], 0
    for _ in range(count):
        last = next((last + step) % ports for step in range(1, ports + 1) if (last + step) % ports in requesting)
        order.append(last)
    return order


def run_arbiter(ports, requesting, *, count, seed, offsets=None, base=0):
    """Every port in ``requesting`` keeps a one-beat read and a one-beat write request up (port ``k`` at address
    ``k``); a slow memory (random ready, responses after random delays) takes them. Returns the addresses in the
    order the reads and writes reached the memory (the ports without ``offsets``), and the ports each read beat
    and write response came back to."""
    dut = MemoryArbiter(address_bits=16 if offsets is None else 32, data_bits=32, ports=ports, outstanding=4,
                        offsets=offsets)
    rng = random.Random(seed)
    reads, writes, read_back, write_back = [], [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def masters(ctx):
        if offsets is not None:
            ctx.set(dut.base, base)
        for k in requesting:
            port = dut.ports[k]
            ctx.set(port.ar.payload.addr, k)
            ctx.set(port.aw.payload.addr, k)
            ctx.set(port.w.payload.data, k)
            ctx.set(port.w.payload.last, 1)
            for channel in (port.ar, port.aw, port.w):
                ctx.set(channel.valid, 1)
            ctx.set(port.r.ready, 1)
            ctx.set(port.b.ready, 1)
        while True:
            await ctx.tick()

    async def memory(ctx):
        mem = dut.mem
        ctx.set(mem.w.ready, 1)
        pending_r, pending_b = [], []
        while len(reads) < count or len(writes) < count or pending_r or pending_b:
            ctx.set(mem.ar.ready, rng.random() < 0.5)
            ctx.set(mem.aw.ready, rng.random() < 0.5)
            ctx.set(mem.r.valid, bool(pending_r) and pending_r[0][0] <= 0)
            if pending_r:
                ctx.set(mem.r.payload.data, pending_r[0][1])
                ctx.set(mem.r.payload.last, 1)
            ctx.set(mem.b.valid, bool(pending_b) and pending_b[0][0] <= 0)
            _, _, ar_valid, ar_ready, ar, aw_valid, aw_ready, aw, r_valid, r_ready, b_valid, b_ready = \
                await ctx.tick().sample(mem.ar.valid, mem.ar.ready, mem.ar.payload.addr, mem.aw.valid,
                                        mem.aw.ready, mem.aw.payload.addr, mem.r.valid, mem.r.ready,
                                        mem.b.valid, mem.b.ready)
            if r_valid and r_ready:
                pending_r.pop(0)
            if b_valid and b_ready:
                pending_b.pop(0)
            for entry in pending_r + pending_b:
                entry[0] -= 1
            if ar_valid and ar_ready and len(reads) < count:
                reads.append(ar)
                pending_r.append([rng.randrange(1, 12), ar])
            if aw_valid and aw_ready and len(writes) < count:
                writes.append(aw)
                pending_b.append([rng.randrange(1, 12), aw])

    async def watch(ctx):
        async for values in ctx.tick().sample(*[p.r.valid for p in dut.ports], *[p.b.valid for p in dut.ports]):
            r_valid, b_valid = values[2:2 + ports], values[2 + ports:]
            read_back.extend(k for k in range(ports) if r_valid[k])
            write_back.extend(k for k in range(ports) if b_valid[k])

    sim.add_testbench(masters, background=True)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(memory)
    sim.run()
    return reads, writes, read_back, write_back


@pytest.mark.parametrize("ports,requesting", [(1, {0}), (2, {0, 1}), (5, {0, 1, 2, 3, 4}), (7, {0, 3, 4}),
                                              (80, set(random.Random(3).sample(range(80), 23)))])
def test_round_robin_order_and_responses_back_to_their_ports(ports, requesting):
    count = 3 * len(requesting) + 2
    reads, writes, read_back, write_back = run_arbiter(ports, requesting, count=count, seed=ports)
    expected = round_robin(requesting, ports, count)
    assert reads == expected, f"reads granted {reads}, expected {expected}"
    assert writes == expected, f"writes granted {writes}, expected {expected}"
    assert read_back[:count] == expected, f"read data returned to {read_back}, expected {expected}"
    assert write_back[:count] == expected, f"write responses returned to {write_back}, expected {expected}"


@pytest.mark.parametrize("ports,requesting", [(2, {0, 1}), (6, {0, 2, 3, 5})])
def test_offsets_place_each_ports_requests_in_its_region(ports, requesting):
    """With ``offsets`` a port's addresses are relative to its region: the memory sees ``base + offsets[k] +``
    the port's address, for reads and writes, and the responses still go back to the port that asked."""
    offsets = [4096 * (3 * k + 1) for k in range(ports)]
    base = 0x1234_5000
    count = 3 * len(requesting) + 2
    reads, writes, read_back, write_back = run_arbiter(ports, requesting, count=count, seed=ports,
                                                       offsets=offsets, base=base)
    order = round_robin(requesting, ports, count)
    expected = [base + offsets[k] + k for k in order]
    assert reads == expected, f"read addresses {[hex(a) for a in reads]}, expected {[hex(a) for a in expected]}"
    assert writes == expected, f"write addresses {[hex(a) for a in writes]}, expected {[hex(a) for a in expected]}"
    assert read_back[:count] == order and write_back[:count] == order


@pytest.mark.parametrize("offsets", [[0], [0, 100], [0, -4096], "nope", [0, 1 << 32]])
def test_offsets_are_checked(offsets):
    with pytest.raises(ValueError, match=r"^offsets must be 2 byte offsets, multiples of 4096 below 2\*\*32, not "):
        MemoryArbiter(address_bits=32, data_bits=32, ports=2, offsets=offsets)

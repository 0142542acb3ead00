"""cocotb testbench: drive AXI4-Stream frames through an accelerator and record what comes out.

Everything it needs comes from the JSON file named by ``HWSEG_COSIM``: the stimulus (input
beats as little-endian bytes), how many output beats to expect, the stall probabilities,
how many leading frames run without stalls (to measure cycles per frame), a seed and a
cycle limit. It writes the output beats, their ``tlast`` flags and the cycle of each
transfer to the ``result`` file; the comparison with golden happens outside.

``s_axis_tvalid`` is raised at random (never waiting for ``tready``) and held with its
payload until the transfer; ``m_axis_tready`` is random every cycle.

A design with a memory port (``m_axi_*``, ``dram_base``) gets cocotbext-axi's ``AxiSlave`` over a memory region of
the configured size at the configured base (``dram_base`` driven with it; an access outside is the model's error):
each read burst answered a random latency after its address (one burst at a time), every channel paused at random,
the weight image (if any) in place before reset. The words read and written are counted.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


def _attach_memory(dut, spec: dict, seed: int):
    """The AXI4 slave memory on ``m_axi``; returns the counts ``[words read, words written]`` it keeps."""
    from cocotbext.axi import AddressSpace, AxiBus, AxiSlave, MemoryRegion

    rng = random.Random(seed + 1)
    low, high = spec["latency"]
    word = len(dut.m_axi_rdata) // 8
    counts = [0, 0]

    class CountingRegion(MemoryRegion):
        async def read(self, address, length, **kwargs):
            counts[0] += length // word
            return await super().read(address, length, **kwargs)

        async def write(self, address, data, **kwargs):
            counts[1] += len(data) // word
            await super().write(address, data, **kwargs)

    region = CountingRegion(spec["bytes"])
    for offset, path in spec["init"]:
        content = Path(path).read_bytes()
        region.mem[offset:offset + len(content)] = content
    space = AddressSpace(2 ** len(dut.m_axi_araddr))
    space.register_region(region, spec["base"])
    slave = AxiSlave(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, target=space)
    # each read burst starts a random latency after its address is taken (the model reads a word at a time, so
    # the wait goes where it takes the address; it serves one burst at a time)
    take_address = slave.read_if.ar_channel.recv

    async def late_address():
        request = await take_address()
        await ClockCycles(dut.clk, rng.randint(low, high))
        return request
    slave.read_if.ar_channel.recv = late_address

    def pauses():
        while True:
            yield rng.random() >= spec["ready"]
    for channel in (slave.read_if.ar_channel, slave.read_if.r_channel, slave.write_if.aw_channel,
                    slave.write_if.w_channel, slave.write_if.b_channel):
        channel.set_pause_generator(pauses())
    dut.dram_base.value = spec["base"]
    return counts


@cocotb.test()
async def stream_frames(dut):
    config = json.loads(Path(os.environ["HWSEG_COSIM"]).read_text())
    stimulus = np.load(config["stimulus"])
    in_beats = [int.from_bytes(row.tobytes(), "little") for row in stimulus]
    in_per_frame, out_per_frame = config["in_beats_per_frame"], config["out_beats_per_frame"]
    out_total, out_bytes = config["out_beats"], config["out_bytes"]
    free_in = config["unstalled_frames"] * in_per_frame
    free_out = config["unstalled_frames"] * out_per_frame
    valid_prob, ready_prob = config["valid_prob"], config["ready_prob"]
    rng = random.Random(config["seed"])
    silence_limit = config["silence_limit"]

    Clock(dut.clk, 10, unit="ns").start()
    memory = _attach_memory(dut, config["memory"], config["seed"]) if config.get("memory") else None
    dut.rst.value = 1
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tlast.value = 0
    dut.s_axis_tdata.value = 0
    dut.m_axis_tready.value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    got = np.zeros((out_total, out_bytes), dtype=np.uint8)
    last = np.zeros(out_total, dtype=np.uint8)
    when = np.zeros(out_total, dtype=np.int64)
    sent = received = cycle = silent = 0
    presenting = False
    status = "ok"
    while received < out_total:
        await RisingEdge(dut.clk)
        cycle += 1
        if not presenting:
            if sent < len(in_beats) and (sent < free_in or rng.random() < valid_prob):
                dut.s_axis_tdata.value = in_beats[sent]
                dut.s_axis_tlast.value = int(sent % in_per_frame == in_per_frame - 1)
                dut.s_axis_tvalid.value = 1
                presenting = True
            else:
                dut.s_axis_tvalid.value = 0
        ready = received < free_out or rng.random() < ready_prob
        dut.m_axis_tready.value = int(ready)
        await ReadOnly()
        progress = False
        if presenting and dut.s_axis_tready.value == 1:
            sent += 1
            presenting = False
            progress = True
        if ready and dut.m_axis_tvalid.value == 1:
            value = int(dut.m_axis_tdata.value.to_unsigned())
            got[received] = np.frombuffer(value.to_bytes(out_bytes, "little"), dtype=np.uint8)
            last[received] = int(dut.m_axis_tlast.value == 1)
            when[received] = cycle
            received += 1
            progress = True
        silent = 0 if progress else silent + 1
        if silent > silence_limit:
            status = (f"stalled: no transfer on either stream for {silence_limit} cycles, after {sent} of "
                      f"{len(in_beats)} input and {received} of {out_total} output beats")
            break
    counts = {} if memory is None else {"words_read": np.int64(memory[0]), "words_written": np.int64(memory[1])}
    np.savez(config["result"], got=got[:received], last=last[:received], when=when[:received],
             sent=np.int64(sent), cycles=np.int64(cycle), status=np.array(status), **counts)

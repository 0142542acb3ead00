"""The harness's AXI4 slave memory model (for off-chip buffers), driven by a test-only AXI4 master
(``sim/rtl/axi_probe.v``): reads return the memory's words in order with several bursts in flight,
writes land with their byte strobes, under random latency and ready, the same under both simulators."""

from pathlib import Path

import numpy as np
import pytest

from hwseg.cosim.axi_memory import AxiMemory
from hwseg.cosim.harness import Harness, StreamSink, seed_state, threshold
from hwseg.cosim.native import build_harness, read_beats, run_program

PROBE = (Path(__file__).parent / "rtl" / "axi_probe.v").read_text()
BURSTS, LEN, WBASE, RBASE, SIZE = 6, 4, 512, 0, 1024
WORDS = SIZE // 8


def _ports():
    out, inp = "out", "in"
    spec = [("clk", 1, inp), ("rst", 1, inp),
            ("m_axi_awaddr", 16, out), ("m_axi_awlen", 8, out), ("m_axi_awsize", 3, out), ("m_axi_awburst", 2, out),
            ("m_axi_awvalid", 1, out), ("m_axi_awready", 1, inp), ("m_axi_wdata", 64, out), ("m_axi_wstrb", 8, out),
            ("m_axi_wlast", 1, out), ("m_axi_wvalid", 1, out), ("m_axi_wready", 1, inp), ("m_axi_bresp", 2, inp),
            ("m_axi_bvalid", 1, inp), ("m_axi_bready", 1, out), ("m_axi_araddr", 16, out), ("m_axi_arlen", 8, out),
            ("m_axi_arsize", 3, out), ("m_axi_arburst", 2, out), ("m_axi_arvalid", 1, out), ("m_axi_arready", 1, inp),
            ("m_axi_rdata", 64, inp), ("m_axi_rresp", 2, inp), ("m_axi_rlast", 1, inp), ("m_axi_rvalid", 1, inp),
            ("m_axi_rready", 1, out), ("m_axis_tdata", 64, out), ("m_axis_tvalid", 1, out),
            ("m_axis_tready", 1, inp), ("m_axis_tlast", 1, out)]
    return [{"name": name, "width": width, "direction": direction} for name, width, direction in spec]


def _run(tmp_path, simulator, *, seed, ready, latency):
    ports = _ports()
    harness = Harness("axi_probe", ports, [AxiMemory.for_ports(ports, SIZE), StreamSink("m_axis", 64)])
    command = build_harness(PROBE, harness, simulator)
    rng = np.random.default_rng(seed)
    memory = rng.integers(0, 1 << 63, size=WORDS, dtype=np.uint64)
    work = tmp_path / simulator
    work.mkdir()
    (work / "memory_in.hex").write_text("".join(f"{int(w):016x}\n" for w in memory))
    status, _, log = run_program(command, work, {
        "mem_init": 1, "mem_ready": threshold(ready), "mem_seed": seed_state(seed, 2),
        "mem_latency_min": latency[0], "mem_latency_max": latency[1],
        "out_beats": BURSTS * LEN, "out_ready": threshold(0.7), "out_seed": seed_state(seed, 1),
        "silence_limit": 5000}, simulator)
    got, last, when, _ = read_beats(work / "beats.txt", 8)
    lines = (line.split("//")[0].strip() for line in (work / "memory_out.hex").read_text().splitlines())
    after = np.array([int(line, 16) for line in lines if line and not line.startswith("@")], dtype=np.uint64)
    return status, memory, got.view("<u8")[:, 0], last, when, after


def _expected_memory(memory):
    expected = memory.copy()
    for burst in range(BURSTS):
        for beat in range(LEN):
            lane = 0xA5000000 | (burst << 16) | beat
            word = (lane << 32) | lane
            index = WBASE // 8 + burst * LEN + beat
            if burst == 0 and beat == 0:    # wstrb 0xFD: byte 1 keeps the memory's old value
                word = (word & ~0xFF00) | (int(memory[index]) & 0xFF00)
            expected[index] = word
    return expected


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_reads_and_writes_under_random_latency_and_ready(tmp_path, simulator):
    status, memory, got, last, when, after = _run(tmp_path, simulator, seed=3, ready=0.6, latency=(20, 200))
    verdict, cycles, error, received = status[0], int(status[1]), int(status[2]), int(status[3])
    assert verdict == "ok" and error == 0 and received == BURSTS * LEN
    np.testing.assert_array_equal(got, memory[RBASE // 8:RBASE // 8 + BURSTS * LEN])
    assert last.tolist() == [int(k % LEN == LEN - 1) for k in range(BURSTS * LEN)]
    np.testing.assert_array_equal(after, _expected_memory(memory))
    assert when[0] >= 20                       # nothing comes back before the least latency


def test_several_bursts_are_in_flight(tmp_path):
    # a fixed latency of 150 cycles: one burst at a time would take 6 × 150 cycles before the last beat
    _, _, _, _, when, _ = _run(tmp_path, "verilator", seed=4, ready=1.0, latency=(150, 150))
    assert 150 <= when[0] and when[-1] < 2 * 150 + 4 * BURSTS * LEN


def test_both_simulators_see_the_same_run(tmp_path):
    runs = [_run(tmp_path / s, s, seed=5, ready=0.5, latency=(5, 60)) for s in ("verilator", "icarus")
            if (tmp_path / s).mkdir() is None]
    np.testing.assert_array_equal(runs[0][4], runs[1][4])
    assert runs[0][0] == runs[1][0]


def test_a_memory_the_port_cannot_address_or_a_missing_signal_is_refused():
    with pytest.raises(ValueError, match="do not fit 8-bit addresses"):
        AxiMemory("m_axi", 64, 8, 1024)
    with pytest.raises(ValueError, match="lacks awaddr, .*rlast"):
        AxiMemory("m_axi", 64, 16, 1024, present=frozenset({"araddr", "rdata"}))

"""HostLink: the host protocol against Python's own CRC-16/CCITT (``binascii.crc_hqx``), with random valid gaps and
ready backpressure on the byte streams and on the accelerator's streams: info replies, frames in and replies out,
a bad CRC, a misplaced ``last``, an abandoned frame (the watchdog resets the accelerator), line errors."""

import binascii
import random

import pytest
from amaranth.sim import Simulator

from hwseg.hw.host_link import (COMMAND_FRAME, COMMAND_INFO, REPLY_FRAME, STATUS_ABORTED, STATUS_BAD_CRC,
                                STATUS_BAD_LAST, STATUS_FRAMING, STATUS_OVERRUN, HostLink)
from tests.hw.streams import collect, send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

DESCRIPTOR = b"HWSG\x01test-descriptor"
IN_BYTES, IN_BEATS, OUT_BYTES, OUT_BEATS = 3, 6, 2, 4


def crc(data):
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def with_crc(data):
    return bytes(data) + crc(data).to_bytes(2, "big")


def frame_command(frame: bytes, *, corrupt=False):
    check = crc(frame) ^ (1 if corrupt else 0)
    return bytes([COMMAND_FRAME]) + frame + check.to_bytes(2, "big")


def run(host_bytes, reply_bytes, out_beats, *, seed=0, valid_prob=0.7, ready_prob=0.7, idle_timeout=400,
        line_errors=(), tail=0, accel_ready_prob=0.7):
    """Feeds ``host_bytes`` (bytes, or a list of ``(idle cycles before, bytes)``) to ``rx``, collects ``reply_bytes`` from ``tx``; the accelerator takes every beat of
    ``frame_in`` and offers ``out_beats`` (``(data, last)``) on ``frame_out``. Returns (reply, frame_in beats,
    cycles at which accel_rst was high)."""
    dut = HostLink(in_beat_bytes=IN_BYTES, in_beats=IN_BEATS, out_beat_bytes=OUT_BYTES, out_beats=OUT_BEATS,
                   descriptor=DESCRIPTOR, idle_timeout=idle_timeout)
    rng = random.Random(seed)
    reply, beats, resets = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def host(ctx):
        for at, value in line_errors:          # line error pulses first, at the given cycles
            await ctx.tick().repeat(at)
            ctx.set(dut.line_errors, value)
            await ctx.tick()
            ctx.set(dut.line_errors, 0)
        chunks = [(0, host_bytes)] if isinstance(host_bytes, bytes) else host_bytes
        for pause, chunk in chunks:
            if pause:
                await ctx.tick().repeat(pause)
            await send(ctx, dut.rx, list(chunk), rng=rng, valid_prob=valid_prob)

    async def reader(ctx):
        await collect(ctx, dut.tx, reply_bytes, reply, rng=random.Random(seed + 1), ready_prob=ready_prob,
                      timeout=5 * idle_timeout)
        if tail:
            await ctx.tick().repeat(tail)

    async def accelerator_in(ctx):
        accel_rng = random.Random(seed + 2)
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.frame_in.valid, dut.frame_in.ready,
                                                                 dut.frame_in.payload):
            if valid and ready:
                beats.append((int(payload.data), int(payload.last)))
            ctx.set(dut.frame_in.ready, accel_rng.random() < accel_ready_prob)

    async def accelerator_out(ctx):
        await send(ctx, dut.frame_out, [{"data": d, "last": last} for d, last in out_beats],
                   rng=random.Random(seed + 3), valid_prob=0.5, timeout=100_000)

    async def watch_reset(ctx):
        cycle = 0
        async for _, _, rst in ctx.tick().sample(dut.accel_rst):
            if rst:
                resets.append(cycle)
            cycle += 1

    sim.add_testbench(host)
    sim.add_testbench(reader)
    sim.add_testbench(accelerator_in, background=True)
    sim.add_testbench(accelerator_out, background=True)
    sim.add_testbench(watch_reset, background=True)
    sim.run()
    return bytes(reply), beats, resets


def _frame(rng):
    return bytes(rng.randrange(256) for _ in range(IN_BYTES * IN_BEATS))


def _outputs(rng, *, bad_last=False):
    values = [rng.randrange(1 << 16) for _ in range(OUT_BEATS)]
    return [(v, int(k == (0 if bad_last else OUT_BEATS - 1))) for k, v in enumerate(values)]


def _check_frame_reply(reply, out_beats, status):
    size = 1 + OUT_BEATS * OUT_BYTES + 7
    assert len(reply) == size
    assert reply[0] == REPLY_FRAME
    body = b"".join(d.to_bytes(OUT_BYTES, "little") for d, _ in out_beats)
    assert reply[1:1 + len(body)] == body, "the accelerator's beats, little-endian, in order"
    assert reply[1 + len(body)] == status
    cycles = int.from_bytes(reply[2 + len(body):6 + len(body)], "little")
    assert 0 < cycles < 100_000
    assert int.from_bytes(reply[-2:], "big") == crc(reply[:-2]), "the reply's CRC"
    return cycles


def _beats_of(frame):
    return [(int.from_bytes(frame[k * IN_BYTES:(k + 1) * IN_BYTES], "little"), int(k == IN_BEATS - 1))
            for k in range(IN_BEATS)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_info_reply_is_the_descriptor_a_clear_status_and_its_crc(seed):
    reply, beats, _ = run(bytes([COMMAND_INFO, 0x00, COMMAND_INFO]), 2 * (len(DESCRIPTOR) + 3), [], seed=seed)
    one = with_crc(DESCRIPTOR + b"\x00")
    assert reply == one + one and beats == []


@pytest.mark.parametrize("seed, valid_prob, ready_prob", [(0, 1.0, 1.0), (1, 0.5, 0.8), (2, 0.9, 0.3), (3, 0.4, 0.4)])
def test_frames_in_and_replies_out(seed, valid_prob, ready_prob):
    rng = random.Random(seed)
    frames = [_frame(rng) for _ in range(2)]
    outs = [_outputs(rng) for _ in range(2)]
    size = 1 + OUT_BEATS * OUT_BYTES + 7
    # garbage between commands is ignored
    host = frame_command(frames[0]) + b"\x00\x55" + frame_command(frames[1])
    reply, beats, resets = run(host, 2 * size, outs[0] + outs[1], seed=seed, valid_prob=valid_prob,
                               ready_prob=ready_prob)
    assert beats == _beats_of(frames[0]) + _beats_of(frames[1]), "frame_in: each beat little-endian, last on the last"
    for k in range(2):
        _check_frame_reply(reply[k * size:(k + 1) * size], outs[k], 0)
    assert not resets


def test_a_corrupted_frame_and_a_misplaced_last_are_flagged():
    rng = random.Random(5)
    frame, outs = _frame(rng), _outputs(rng, bad_last=True)
    reply, beats, _ = run(frame_command(frame, corrupt=True), 1 + OUT_BEATS * OUT_BYTES + 7, outs, seed=5)
    _check_frame_reply(reply, outs, STATUS_BAD_CRC | STATUS_BAD_LAST)
    assert beats == _beats_of(frame)


def test_an_abandoned_frame_resets_the_accelerator_and_the_next_info_says_so():
    rng = random.Random(7)
    frame, outs = _frame(rng), _outputs(rng)
    half = bytes([COMMAND_FRAME]) + frame[:IN_BYTES * 2 + 1]
    # the host stops halfway; after the watchdog it asks for the info
    host = [(0, half), (600, bytes([COMMAND_INFO]))]
    # the reply began: R and the accelerator's beats (this one offers them all regardless), then the watchdog
    started = 1 + OUT_BEATS * OUT_BYTES
    reply, beats, resets = run(host, started + len(DESCRIPTOR) + 3, outs, seed=7, idle_timeout=300)
    assert len(resets) == 1, "accel_rst high for one cycle"
    assert reply[0] == REPLY_FRAME
    assert reply[started:] == with_crc(DESCRIPTOR + bytes([STATUS_ABORTED]))
    assert beats == _beats_of(frame)[:2]


def test_line_errors_are_reported_once():
    reply, _, _ = run(bytes([COMMAND_INFO, COMMAND_INFO]), 2 * (len(DESCRIPTOR) + 3), [],
                      line_errors=[(3, 0b01), (2, 0b10)], valid_prob=1.0)
    first = with_crc(DESCRIPTOR + bytes([STATUS_OVERRUN | STATUS_FRAMING]))
    assert reply == first + with_crc(DESCRIPTOR + b"\x00")


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_beats=0), "in_beats must be a positive integer, not 0"),
    (dict(descriptor=b""), "descriptor must be non-empty bytes, not b''"),
    (dict(idle_timeout=-1), "idle_timeout must be a positive integer, not -1"),
])
def test_parameters_are_checked(kwargs, message):
    args = dict(in_beat_bytes=1, in_beats=1, out_beat_bytes=1, out_beats=1, descriptor=b"x", idle_timeout=10)
    with pytest.raises(ValueError, match=message):
        HostLink(**{**args, **kwargs})

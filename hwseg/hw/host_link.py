"""The board side of the serial host link: commands and frames in over a byte stream, replies and class maps out.

The protocol (the host side is :mod:`hwseg.deploy.host_link`; every reply ends with a CRC-16/CCITT, polynomial
0x1021, initial value 0xFFFF, sent high byte first — Python's ``binascii.crc_hqx(data, 0xFFFF)``):

* ``I`` (info): the reply is the design's ``descriptor`` (built at compile time), then a status byte (the
  :data:`STATUS_*` flags seen since the last info reply, which clears them), then the CRC of both.
* ``F`` (frame): then the frame's ``in_beats × in_beat_bytes`` bytes (each beat little-endian) and the CRC of
  those bytes. Bytes go to ``frame_in`` as they arrive (nothing is stored: frames may be larger than the board's
  memory), so the reply starts before the frame has arrived: ``R``, the ``out_beats × out_beat_bytes`` bytes of the
  accelerator's output, a status byte (:data:`STATUS_BAD_CRC` if the frame's CRC did not match,
  :data:`STATUS_BAD_LAST` if the accelerator's ``last`` did not fall on the frame's last beat), the clock cycles
  from the command to the accelerator's last beat (32 bits, little-endian, saturating), the CRC of it all.
* Any other byte between commands is ignored.

A frame that makes no progress (no byte in or out) for ``idle_timeout`` cycles — a host that stopped sending
halfway, bytes lost on the line — is abandoned: ``accel_rst`` resets the accelerator for a cycle, the link waits for
the next command, and the next info reply carries :data:`STATUS_ABORTED`.
"""

from contextlib import contextmanager

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int

__all__ = ["HostLink", "crc16_ccitt", "COMMAND_INFO", "COMMAND_FRAME", "REPLY_FRAME", "STATUS_BAD_CRC",
           "STATUS_BAD_LAST", "STATUS_ABORTED", "STATUS_OVERRUN", "STATUS_FRAMING"]

COMMAND_INFO, COMMAND_FRAME, REPLY_FRAME = ord("I"), ord("F"), ord("R")
#: status flags: of a frame's reply …
STATUS_BAD_CRC, STATUS_BAD_LAST = 0x01, 0x02
#: … and of the info reply (seen since the last one)
STATUS_ABORTED, STATUS_OVERRUN, STATUS_FRAMING = 0x04, 0x08, 0x10
#: bytes of a frame reply after the output: status, cycles (4), CRC (2)
TRAILER_BYTES = 7


def crc16_ccitt(m, crc, byte):
    """The CRC-16/CCITT register ``crc`` (16 bits) after ``byte`` (8 bits), most significant bit first: a signal
    driven in ``m`` (a signal a step, so that no step's expression repeats the one before)."""
    value = crc ^ (byte << 8)
    for step in range(8):
        shifted = Signal(16, name=f"crc_step{step}")
        m.d.comb += shifted.eq(Mux(value[15], (value << 1)[:16] ^ 0x1021, (value << 1)[:16]))
        value = shifted
    return value


def beat_layout(beat_bytes):
    """A stream beat to or from the accelerator: ``data`` (``beat_bytes`` bytes) and ``last``."""
    return data.StructLayout({"data": unsigned(8 * beat_bytes), "last": 1})


class HostLink(wiring.Component):
    """Speaks the host protocol (module docstring) on ``rx``/``tx`` byte streams and moves frames to ``frame_in``
    and from ``frame_out`` (the accelerator's input and output streams, ``last`` on each frame's last beat).

    ``line_errors``: the serial receiver's overrun (bit 0) and framing-error (bit 1) pulses, reported in the next
    info reply. Throughput: a byte a cycle each way (the line is far slower). Latency: a beat goes to ``frame_in``
    the cycle after its last byte; a reply byte follows its cause by a cycle."""

    def __init__(self, *, in_beat_bytes, in_beats, out_beat_bytes, out_beats, descriptor, idle_timeout):
        for name, value in (("in_beat_bytes", in_beat_bytes), ("in_beats", in_beats),
                            ("out_beat_bytes", out_beat_bytes), ("out_beats", out_beats),
                            ("idle_timeout", idle_timeout)):
            check_int(name, value)
        if not isinstance(descriptor, (bytes, bytearray)) or not descriptor:
            raise ValueError(f"descriptor must be non-empty bytes, not {descriptor!r}")
        self.in_beat_bytes, self.in_beats = in_beat_bytes, in_beats
        self.out_beat_bytes, self.out_beats = out_beat_bytes, out_beats
        self.descriptor, self.idle_timeout = bytes(descriptor), idle_timeout
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "tx": Out(stream.Signature(unsigned(8))),
            "frame_in": Out(stream.Signature(beat_layout(in_beat_bytes))),
            "frame_out": In(stream.Signature(beat_layout(out_beat_bytes))),
            "line_errors": In(2),
            "accel_rst": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        took, sent = self.rx.valid & self.rx.ready, self.tx.valid & self.tx.ready
        link = _LinkState(self.idle_timeout)
        with m.If(link.in_frame):
            m.d.sync += link.idle.eq(Mux(took | sent, 0, link.idle + 1))
        with m.If(link.counting & (link.cycles != (1 << 32) - 1)):
            m.d.sync += link.cycles.eq(link.cycles + 1)
        m.d.comb += link.abort.eq(link.idle == self.idle_timeout)
        m.d.sync += self.accel_rst.eq(link.abort)
        start_info = self._receive(m, link, took)
        self._send(m, link, sent, start_info)
        # the info reply's flags: set (by a line error, an abort) wins over the reply's clearing them
        for flag, cause in ((link.overrun, self.line_errors[0]), (link.framing, self.line_errors[1]),
                            (link.aborted, link.abort)):
            with m.If(cause):
                m.d.sync += flag.eq(1)
        with m.If(link.abort):
            m.d.sync += [link.in_frame.eq(0), link.counting.eq(0), link.idle.eq(0)]
        return m

    def _receive(self, m, link, took):
        """Commands, then a frame's bytes into beats on ``frame_in``, then its CRC. Returns the info request."""
        rx, beat = self.rx, self.frame_in
        start_info = Signal()
        crc = Signal(16)
        expected_high = Signal(8)
        index = Signal(range(self.in_beat_bytes))
        count = Signal(range(self.in_beats))
        crc_next = crc16_ccitt(m, crc, rx.payload)
        with m.If(beat.valid & beat.ready):
            m.d.sync += [beat.valid.eq(0), count.eq(count + 1)]
        with m.FSM():
            with _abortable(m, link.abort, "command", "command"):
                m.d.comb += rx.ready.eq(~link.in_frame & ~link.sending_info)
                with m.If(took & (rx.payload == COMMAND_INFO)):
                    m.d.comb += start_info.eq(1)
                with m.If(took & (rx.payload == COMMAND_FRAME)):
                    m.d.sync += [link.in_frame.eq(1), link.counting.eq(1), link.received.eq(0), link.bad_crc.eq(0),
                                 link.cycles.eq(0), link.idle.eq(0), crc.eq(0xFFFF), index.eq(0), count.eq(0)]
                    m.next = "data"
            with _abortable(m, link.abort, "command", "data"):
                m.d.comb += rx.ready.eq(~beat.valid)
                with m.If(took):
                    m.d.sync += [beat.payload.data.word_select(index, 8).eq(rx.payload),
                                 crc.eq(crc_next), index.eq(index + 1)]
                    with m.If(index == self.in_beat_bytes - 1):
                        m.d.sync += [index.eq(0), beat.valid.eq(1), beat.payload.last.eq(count == self.in_beats - 1)]
                        with m.If(count == self.in_beats - 1):
                            m.next = "crc_high"
            with _abortable(m, link.abort, "command", "crc_high"):
                m.d.comb += rx.ready.eq(1)
                with m.If(took):
                    m.d.sync += expected_high.eq(rx.payload)
                    m.next = "crc_low"
            with _abortable(m, link.abort, "command", "crc_low"):
                m.d.comb += rx.ready.eq(1)
                with m.If(took):
                    m.d.sync += [link.bad_crc.eq(Cat(rx.payload, expected_high) != crc), link.received.eq(1)]
                    m.next = "command"
        with m.If(link.abort):
            m.d.sync += beat.valid.eq(0)
        return start_info

    def _send(self, m, link, sent, start_info):
        """The info reply, or a frame's reply: ``R``, the output beats' bytes, the trailer; each with its CRC."""
        tx, beat = self.tx, self.frame_out
        crc = Signal(16)
        index = Signal(range(max(len(self.descriptor) + 1, TRAILER_BYTES, self.out_beat_bytes)))
        count = Signal(range(self.out_beats))
        held = Signal(8 * self.out_beat_bytes)
        full = Signal()
        with m.If(sent):
            m.d.sync += crc.eq(crc16_ccitt(m, crc, tx.payload))
        with m.FSM():
            with _abortable(m, link.abort, "idle", "idle"):
                with m.If(start_info):
                    m.d.sync += [link.sending_info.eq(1), index.eq(0), crc.eq(0xFFFF)]
                    m.next = "info"
                with m.If(self.rx.valid & self.rx.ready & (self.rx.payload == COMMAND_FRAME)):
                    m.d.sync += [crc.eq(0xFFFF), count.eq(0), full.eq(0), link.bad_last.eq(0)]
                    m.next = "header"
            with _abortable(m, link.abort, "idle", "info"):
                flags = Cat(Const(0, 2), link.aborted, link.overrun, link.framing)
                body = Array([Const(b, 8) for b in self.descriptor] + [flags])
                m.d.comb += [tx.payload.eq(body[index]), tx.valid.eq(1)]
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == len(self.descriptor)):
                        m.d.sync += [index.eq(0), link.aborted.eq(0), link.overrun.eq(0), link.framing.eq(0)]
                        m.next = "info_crc"
            with _abortable(m, link.abort, "idle", "info_crc"):
                self._crc_bytes(m, crc, index, sent, then="idle", done=link.sending_info.eq(0))
            with _abortable(m, link.abort, "idle", "header"):
                m.d.comb += [tx.payload.eq(REPLY_FRAME), tx.valid.eq(1)]
                with m.If(sent):
                    m.next = "data"
            with _abortable(m, link.abort, "idle", "data"):
                m.d.comb += [beat.ready.eq(~full), tx.payload.eq(held.word_select(index, 8)), tx.valid.eq(full)]
                with m.If(beat.valid & beat.ready):
                    m.d.sync += [held.eq(beat.payload.data), full.eq(1), index.eq(0)]
                    with m.If(beat.payload.last != (count == self.out_beats - 1)):
                        m.d.sync += link.bad_last.eq(1)
                    with m.If(count == self.out_beats - 1):
                        m.d.sync += link.counting.eq(0)
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == self.out_beat_bytes - 1):
                        m.d.sync += [full.eq(0), index.eq(0), count.eq(count + 1)]
                        with m.If(count == self.out_beats - 1):
                            m.next = "trailer"
            with _abortable(m, link.abort, "idle", "trailer"):    # once the frame's CRC is in: status, cycles
                status = Cat(link.bad_crc, link.bad_last, Const(0, 6))
                trailer = Array([status, *(link.cycles.word_select(k, 8) for k in range(4))])
                m.d.comb += [tx.payload.eq(trailer[index]), tx.valid.eq(link.received)]
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == 4):
                        m.d.sync += index.eq(0)
                        m.next = "trailer_crc"
            with _abortable(m, link.abort, "idle", "trailer_crc"):
                self._crc_bytes(m, crc, index, sent, then="idle", done=link.in_frame.eq(0))
        with m.If(link.abort):
            m.d.sync += [full.eq(0), link.sending_info.eq(0)]

    def _crc_bytes(self, m, crc, index, sent, *, then, done):
        """Sends ``crc`` high byte first (its own bytes are not covered: the low byte goes as it was), then goes to
        ``then``."""
        final = Signal(16)
        m.d.comb += [self.tx.payload.eq(Mux(index == 0, crc[8:], final[:8])), self.tx.valid.eq(1)]
        with m.If(sent):
            m.d.sync += index.eq(index + 1)
            with m.If(index == 0):
                m.d.sync += final.eq(crc)
            with m.Else():
                m.d.sync += [index.eq(0), done]
                m.next = then


@contextmanager
def _abortable(m, abort, to, name):
    """``m.State(name)`` whose body does nothing, and which goes to ``to``, while ``abort`` is high."""
    with m.State(name):
        with m.If(abort):
            m.next = to
        with m.Else():
            yield


class _LinkState:
    """What both directions of the link see: whether a frame or an info reply is under way, the frame's status and
    cycles, the flags for the next info reply, the watchdog."""

    def __init__(self, idle_timeout):
        self.in_frame = Signal()            # from F to the reply's last byte
        self.counting = Signal()            # from F to the accelerator's last beat
        self.sending_info = Signal()
        self.received = Signal()            # the frame and its CRC are in
        self.bad_crc, self.bad_last = Signal(), Signal()
        self.aborted, self.overrun, self.framing = Signal(), Signal(), Signal()
        self.cycles = Signal(32)
        self.idle = Signal(range(idle_timeout + 1))
        self.abort = Signal()

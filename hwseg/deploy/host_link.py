"""The host side of the serial link to a board running an accelerator behind :class:`hwseg.hw.host_link.HostLink`
(``hwseg build --bitstream``; ``hwseg run`` talks through it).

The board describes itself: the info reply carries the :func:`descriptor` written into the bitstream (what the
accelerator takes and gives, the clock and the bit rate, the design's identity), so ``hwseg run`` needs only the
serial port. Frames are checked both ways with CRC-16/CCITT (``binascii.crc_hqx``).
"""

from __future__ import annotations

import binascii
import struct
import time
from dataclasses import dataclass

import numpy as np

from ..cosim.check import pack_frames, unpack_beats
from ..errors import HwsegError
from . import DEFAULT_BAUD
from ..hw.host_link import (COMMAND_FRAME, COMMAND_INFO, REPLY_FRAME, STATUS_ABORTED, STATUS_BAD_CRC,
                            STATUS_BAD_LAST, STATUS_FRAMING, STATUS_OVERRUN, TRAILER_BYTES)

__all__ = ["LinkError", "LinkSpec", "descriptor", "parse_info", "SerialLink", "DEFAULT_BAUD", "MAGIC", "status_note"]

MAGIC, VERSION = b"HWSG", 1
# magic, version, input C H W bits beat-bytes beats, output C H W bits signed beat-bytes beats, clock Hz, baud,
# estimated cycles a frame, design id (8 bytes), name length; then the name
_FIELDS = struct.Struct("<4sB3HBBI3HBBBIIII8sB")


class LinkError(HwsegError):
    """The board did not answer, or answered wrongly (one line: what happened and what to check)."""


@dataclass(frozen=True)
class LinkSpec:
    """What the board's accelerator takes and gives, as its info reply says."""
    name: str
    in_shape: tuple[int, int, int]      # C, H, W
    in_bits: int
    in_beat_bytes: int
    in_beats: int
    out_shape: tuple[int, int, int]
    out_bits: int
    out_signed: bool
    out_beat_bytes: int
    out_beats: int
    clock_hz: int
    baud: int
    cycles_per_frame: int               # the build's estimate for the accelerator alone
    design_id: bytes

    @property
    def frame_bytes(self) -> int:
        return self.in_beats * self.in_beat_bytes

    @property
    def reply_bytes(self) -> int:
        return 1 + self.out_beats * self.out_beat_bytes + TRAILER_BYTES

    def link_seconds(self) -> float:
        """The line time of one frame's command and its reply (10 bits a byte; both directions overlap, so the
        longer one counts)."""
        return 10 * max(3 + self.frame_bytes, self.reply_bytes) / self.baud


def descriptor(spec: LinkSpec) -> bytes:
    """The bytes the board sends as its info reply (before its status byte and CRC)."""
    name = spec.name.encode()[:255]
    return _FIELDS.pack(MAGIC, VERSION, *spec.in_shape, spec.in_bits, spec.in_beat_bytes, spec.in_beats,
                        *spec.out_shape, spec.out_bits, int(spec.out_signed), spec.out_beat_bytes, spec.out_beats,
                        spec.clock_hz, spec.baud, spec.cycles_per_frame, spec.design_id, len(name)) + name


def _crc_ok(reply: bytes) -> bool:
    return binascii.crc_hqx(reply[:-2], 0xFFFF) == int.from_bytes(reply[-2:], "big")


def parse_info(reply: bytes) -> tuple[LinkSpec, int]:
    """The :class:`LinkSpec` and the status flags of an info reply; :class:`LinkError` if it is not one."""
    if len(reply) < _FIELDS.size + 3 or reply[:4] != MAGIC:
        raise LinkError("the board's answer is not an hwseg host link (wrong magic): is the hwseg bitstream loaded, "
                        "and the port the board's?")
    fields = _FIELDS.unpack_from(reply)
    (_, version, ic, ih, iw, in_bits, in_bytes, in_beats, oc, oh, ow, out_bits, out_signed, out_bytes, out_beats,
     clock, baud, cycles, design_id, name_length) = fields
    if version != VERSION:
        raise LinkError(f"the board speaks host-link version {version}, this hwseg speaks {VERSION}: rebuild the "
                        f"bitstream with this hwseg")
    size = _FIELDS.size + name_length + 3
    if len(reply) < size or not _crc_ok(reply[:size]):
        raise LinkError("the board's info reply failed its CRC: a noisy line or a wrong --baud")
    name = reply[_FIELDS.size:_FIELDS.size + name_length].decode(errors="replace")
    spec = LinkSpec(name, (ic, ih, iw), in_bits, in_bytes, in_beats, (oc, oh, ow), out_bits, bool(out_signed),
                    out_bytes, out_beats, clock, baud, cycles, design_id)
    return spec, reply[size - 3]


def info_size(reply_head: bytes) -> int | None:
    """The whole info reply's length, once its fixed fields are in."""
    if len(reply_head) < _FIELDS.size:
        return None
    return _FIELDS.size + reply_head[_FIELDS.size - 1] + 3


def status_note(status: int) -> str:
    """The info reply's flags in words ('' when none)."""
    names = {STATUS_ABORTED: "a frame was abandoned (no byte for a second)",
             STATUS_OVERRUN: "bytes were lost (the board's receive buffer overflowed)",
             STATUS_FRAMING: "bytes arrived garbled (framing errors: check --baud)"}
    return "; ".join(text for flag, text in names.items() if status & flag)


class SerialLink:
    """A board on a serial port: :meth:`info`, then :meth:`segment` an image at a time.

    ``port``: a pyserial URL or device (``/dev/ttyUSB0``); ``baud``: the bitstream's bit rate; ``timeout``: seconds
    to wait for the info reply (a frame gets its line time on top)."""

    def __init__(self, port: str, *, baud: int = DEFAULT_BAUD, timeout: float = 1.0):
        try:
            import serial
        except ImportError:
            raise LinkError("hwseg run needs pyserial; install it with `pip install pyserial`") from None
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
        except (serial.SerialException, ValueError, OSError) as error:
            reason = str(error).split(": ", 1)[-1] if str(error) else type(error).__name__
            raise LinkError(f"cannot open serial port {port} ({reason}); plug in the board and pass its port "
                            f"with --port (e.g. /dev/ttyUSB0)") from None
        self.port, self.baud, self.timeout = port, baud, timeout
        self.spec: LinkSpec | None = None

    def close(self):
        self._serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, count: int, deadline: float, what: str) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self._serial.read(count - len(data))
            data += chunk
            if not chunk and time.monotonic() > deadline:
                raise LinkError(f"no answer from the board on {self.port} ({what}: {len(data)} of {count} bytes "
                                f"in time): is the hwseg bitstream loaded and the bit rate {self.baud:,} baud?")
        return bytes(data)

    def info(self, attempts: int = 3) -> tuple[LinkSpec, int]:
        """The board's :class:`LinkSpec` and status flags. A board still inside an abandoned frame takes the
        request as data, drops the frame after a second and answers the next one, so it is asked again."""
        for attempt in range(attempts):
            self._serial.reset_input_buffer()
            self._serial.write(bytes([COMMAND_INFO]))
            self._serial.flush()
            deadline = time.monotonic() + self.timeout + 10 * 64 / self.baud
            try:
                head = self._read(_FIELDS.size, deadline, "the info reply")
                reply = head + self._read(info_size(head) - len(head), deadline, "the info reply")
            except LinkError:
                if attempt + 1 == attempts:
                    raise
                time.sleep(1.2)      # longer than the board's watchdog
                continue
            self.spec, status = parse_info(reply)
            if self.spec.baud != self.baud:
                raise LinkError(f"the board runs at {self.spec.baud:,} baud, not {self.baud:,}; pass --baud "
                                f"{self.spec.baud}")
            return self.spec, status
        raise AssertionError("unreachable")

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, dict]:
        """The accelerator's output for one ``H×W×C`` (or ``H×W``) integer image: the class map ``H'×W'`` (or
        ``H'×W'×C'`` when the design gives channels), and the timing (``seconds`` round trip, ``board_cycles`` from
        the command to the accelerator's last beat, ``link_seconds`` the line's share)."""
        spec = self.spec or self.info()[0]
        c, h, w = spec.in_shape
        frame = np.asarray(image)
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if frame.shape != (h, w, c):
            raise LinkError(f"the image is {'×'.join(map(str, frame.shape))}, the board takes {h}×{w}×{c}")
        payload = pack_frames(np.moveaxis(frame, -1, 0)[None], spec.in_bits, 8 * spec.in_beat_bytes).tobytes()
        command = bytes([COMMAND_FRAME]) + payload + binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big")
        started = time.monotonic()
        self._serial.reset_input_buffer()
        self._serial.write(command)
        deadline = started + self.timeout + 2 * spec.link_seconds()
        reply = self._read(spec.reply_bytes, deadline, "the class map")
        seconds = time.monotonic() - started
        if reply[0] != REPLY_FRAME:
            raise LinkError(f"the board answered a frame with {reply[:1]!r}, not {bytes([REPLY_FRAME])!r}: another "
                            f"program may be using {self.port}")
        if not _crc_ok(reply):
            raise LinkError("the class map failed its CRC: a noisy line or a wrong --baud; try again")
        status = reply[-7]
        if status & STATUS_BAD_CRC:
            raise LinkError("the board received the image with a CRC error: a noisy line or a wrong --baud; "
                            "try again")
        if status & STATUS_BAD_LAST:
            raise LinkError("the accelerator's output did not end where the frame does: the bitstream and its "
                            "descriptor disagree; rebuild it")
        beats = np.frombuffer(reply[1:-TRAILER_BYTES], dtype=np.uint8).reshape(spec.out_beats, spec.out_beat_bytes)
        oc, oh, ow = spec.out_shape
        values = unpack_beats(beats, oc, spec.out_bits, spec.out_signed).reshape(oh, ow, oc)
        out = values[:, :, 0] if oc == 1 else values
        timing = {"seconds": seconds, "board_cycles": int.from_bytes(reply[-6:-2], "little"),
                  "link_seconds": spec.link_seconds()}
        return out, timing

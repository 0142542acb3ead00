"""``hwseg run``: images through a board's serial host link (:mod:`.host_link`), class maps back as coloured PNGs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import HwsegError
from ..flow import check_output_root
from .host_link import LinkError, LinkSpec, SerialLink, status_note
from .ulx3s import check_bitstream_board

__all__ = ["run_images", "find_port", "read_image"]

#: USB vendor of FTDI, whose FT231X is the ULX3S's USB-UART
FTDI_VENDOR = 0x0403


def find_port() -> str:
    """The one FTDI serial port plugged in; a one-line :class:`LinkError` when there is none or several."""
    try:
        from serial.tools import list_ports
    except ImportError:
        raise LinkError("hwseg run needs pyserial; install it with `pip install pyserial`") from None
    ports = sorted(p.device for p in list_ports.comports() if p.vid == FTDI_VENDOR)
    if not ports:
        raise LinkError("no serial port found: plug in the board's USB port (US1 on the ULX3S) or pass --port")
    if len(ports) > 1:
        raise LinkError(f"several FTDI serial ports ({', '.join(ports)}): pass the board's with --port")
    return ports[0]


def read_image(path: Path, spec: LinkSpec) -> tuple[np.ndarray, str]:
    """``path`` as the accelerator's ``H×W×C`` uint8 input (RGB for 3 channels, grey for 1), resized to its
    size if it differs; and a note saying so ('' when not resized)."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = spec.in_shape
    if c not in (1, 3) or spec.in_bits != 8:
        raise HwsegError(f"hwseg run sends 8-bit grey or RGB images; {spec.name} takes {c} channels of "
                         f"{spec.in_bits} bits")
    try:
        with Image.open(path) as image:
            picture = image.convert("RGB" if c == 3 else "L")
    except (OSError, UnidentifiedImageError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not an image Pillow reads"
        raise HwsegError(f"cannot read image {path} ({reason})") from None
    note = ""
    if picture.size != (w, h):
        note = f"resized from {picture.size[0]}×{picture.size[1]} to {w}×{h}"
        picture = picture.resize((w, h), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.uint8)
    return (array if c == 3 else array[:, :, None]), note


def _write_atomically(target: Path, write: Callable[[str], None]) -> None:
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(handle)
    try:
        write(staging)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _save(output: np.ndarray, target_dir: Path, stem: str) -> Path:
    from PIL import Image

    from ..data.voc import voc_palette

    if output.ndim == 2 and output.min() >= 0 and output.max() <= 255:
        target = target_dir / f"{stem}_classes.png"
        picture = Image.fromarray(output.astype(np.uint8), mode="P")
        picture.putpalette([value for colour in voc_palette() for value in colour])
        _write_atomically(target, lambda name: picture.save(name, format="PNG"))
    else:
        target = target_dir / f"{stem}_output.npy"
        _write_atomically(target, lambda name: np.save(open(name, "wb"), output))
    return target


def run_images(images: list[str], *, board, port: str | None, baud: int, timeout: float, out: Path,
               log: Callable[[str], None] = print, progress: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Segments each of ``images`` on the board at ``port`` (found if None); writes the maps into ``out``; returns
    their paths. Every failure is a one-line :class:`HwsegError` (before the port is opened when it can be)."""
    check_bitstream_board(board)
    paths = [Path(image) for image in images]
    for path in paths:
        if not path.is_file():
            raise HwsegError(f"no image file {path}")
    check_output_root(out)
    out.mkdir(parents=True, exist_ok=True)
    port = port or find_port()
    written = []
    with SerialLink(port, baud=baud, timeout=timeout) as link:
        spec, status = link.info()
        (c, h, w), (oc, oh, ow) = spec.in_shape, spec.out_shape
        progress(f"{port}: {spec.name} ({c}×{h}×{w} in, {oc}×{oh}×{ow} out) at {spec.clock_hz / 1e6:g} MHz, "
                 f"{spec.baud:,} baud")
        if status:
            progress(f"the board reports, since it was last asked: {status_note(status)}")
        for path in paths:
            image, note = read_image(path, spec)
            output, timing = link.segment(image)
            target = _save(output, out, path.stem)
            written.append(target)
            board_ms = 1e3 * timing["board_cycles"] / spec.clock_hz
            compute_ms = 1e3 * spec.cycles_per_frame / spec.clock_hz
            log(f"{path} → {target}{f' ({note})' if note else ''}: {1e3 * timing['seconds']:.1f} ms round trip "
                f"(the line needs {1e3 * timing['link_seconds']:.1f} ms at {spec.baud:,} baud; the board "
                f"{board_ms:.1f} ms from command to last class; the accelerator alone ~{compute_ms:.2f} ms)")
    return written

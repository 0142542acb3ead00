"""PYNQ driver of an hwseg segmentation accelerator (copied by ``hwseg build --deploy``; what the design is lives in
``spec.json`` beside it).

    from hwseg_driver import SegmentationOverlay
    overlay = SegmentationOverlay(batch_size=4)          # loads hwseg_driver/<name>.bit (and .hwh)
    maps = overlay.segment(images)                        # uint8 N×H×W×C in, class maps N×H'×W' out
    print(overlay.throughput_test())

Frames go to the accelerator through an AXI DMA (``axi_dma_0``): a batch in one MM2S transfer, each frame's output in
its own S2MM transfer into its own buffer (the accelerator ends every output frame with tlast). Buffers are allocated
once. Every DMA
wait has a timeout: a hung transfer is an error, not a hang.

A design with buffers in DRAM (``SPEC["dram"]``) gets its region once, when the overlay loads: a contiguous buffer, the
weight image (``weights.bin``, checked against its SHA-256) copied to its offset, the region's physical address written
to the control GPIO (``control_gpio``: channel 1 the low 32 bits, channel 2 the high bits), and only then the
accelerator let out of reset (channel 2's bit ``reset_bit``, set at power-up).
"""

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from pynq import Overlay, allocate

__all__ = ["SegmentationOverlay", "DriverError", "SPEC"]

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "spec.json").read_text())
#: the DMA's transfer length register: at most 2**26 − 1 bytes a transfer
MAX_TRANSFER = (1 << SPEC["dma_length_bits"]) - 1


class DriverError(RuntimeError):
    """A one-line error of the driver: what went wrong and what to do."""


def pack(images: np.ndarray, spec: dict = SPEC) -> np.ndarray:
    """``N×H×W×C`` integer images → DMA words ``N × H·W × in_bytes``: a pixel a word, channel ``c`` in bits
    ``[c·bits, (c+1)·bits)``, little-endian, zero above."""
    bits, in_bytes = spec["input"]["bits"], spec["input"]["dma_bytes"]
    n, h, w, c = images.shape
    pixels = images.reshape(n * h * w, c).astype(np.uint64) & np.uint64((1 << bits) - 1)
    planes = ((pixels[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    words = np.zeros((n * h * w, in_bytes * 8), dtype=np.uint8)
    words[:, :c * bits] = planes.reshape(n * h * w, c * bits)
    return np.packbits(words, axis=1, bitorder="little").reshape(n, h * w, in_bytes)


def unpack(words: np.ndarray, spec: dict = SPEC) -> np.ndarray:
    """DMA words ``N × H'·W' × out_bytes`` → ``N×H'×W'`` class maps (one channel) or ``N×H'×W'×C'``."""
    out = spec["output"]
    channels, bits, signed = out["channels"], out["bits"], out["signed"]
    n = words.shape[0]
    planes = np.unpackbits(words.reshape(-1, words.shape[-1]), axis=1, bitorder="little")[:, :channels * bits]
    values = (planes.reshape(-1, channels, bits).astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=2)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    shape = (n, out["height"], out["width"])
    dtype = np.uint8 if not signed and bits <= 8 else np.int64
    return values.reshape(shape).astype(dtype) if channels == 1 else values.reshape(*shape, channels).astype(dtype)


class SegmentationOverlay(Overlay):
    """The accelerator's overlay: ``segment(images)``, ``throughput_test()``.

    ``bitfile``: default ``hwseg_driver/<name>.bit`` (its ``.hwh`` beside it). ``batch_size``: frames per DMA
    transfer (the buffers of a batch are allocated once). ``timeout``: seconds any one DMA transfer may take."""

    def __init__(self, bitfile=None, *, batch_size=1, timeout=10.0, **kwargs):
        path = Path(bitfile) if bitfile is not None else HERE / f"{SPEC['name']}.bit"
        if not path.is_file():
            raise DriverError(f"no bitstream at {path}: run `make` in deploy/ (Vivado) and copy {path.name} and "
                              f"{path.with_suffix('.hwh').name} there")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise DriverError(f"batch_size must be a positive int, not {batch_size!r}")
        frame_bytes = SPEC["input"]["beats"] * SPEC["input"]["dma_bytes"]
        if batch_size * frame_bytes > MAX_TRANSFER:
            raise DriverError(f"a batch of {batch_size} frames is {batch_size * frame_bytes:,} bytes, over the DMA's "
                              f"{MAX_TRANSFER:,}; use batch_size={max(1, MAX_TRANSFER // frame_bytes)} or fewer")
        if not timeout > 0:
            raise DriverError(f"timeout must be a positive number of seconds, not {timeout!r}")
        super().__init__(str(path), **kwargs)
        self.batch_size, self.timeout = batch_size, float(timeout)
        if SPEC.get("dram"):
            self._region = self._place_region(SPEC["dram"])
        self._dma = self.axi_dma_0
        self._in = allocate(shape=(batch_size, SPEC["input"]["beats"], SPEC["input"]["dma_bytes"]), dtype=np.uint8)
        # an output buffer per frame (each its own S2MM transfer, from its own start address)
        self._out = [allocate(shape=(SPEC["output"]["beats"], SPEC["output"]["dma_bytes"]), dtype=np.uint8)
                     for _ in range(batch_size)]

    def _place_region(self, dram: dict):
        """The accelerator's DRAM region, with the weight image in place; then the accelerator runs."""
        image = b""
        if dram["weights"]:
            path = HERE / dram["weights"]["file"]
            if not path.is_file():
                raise DriverError(f"no weight image at {path}: copy deploy/hwseg_driver/ to the board whole")
            image = path.read_bytes()
            if hashlib.sha256(image).hexdigest() != dram["weights"]["sha256"]:
                raise DriverError(f"{path} is not the weight image of this design (its SHA-256 differs): copy "
                                  f"deploy/hwseg_driver/ from the same build")
        region = allocate(shape=(dram["region_bytes"],), dtype=np.uint8)
        base = int(region.physical_address)
        if base % dram["align"] or base + dram["region_bytes"] > 1 << dram["address_bits"]:
            raise DriverError(f"the DRAM region at {base:#x} is not {dram['align']}-byte aligned below "
                              f"2**{dram['address_bits']}; free memory (or reboot) and load the overlay again")
        region[:] = 0
        if image:
            offset = dram["weights"]["offset"]
            region[offset:offset + len(image)] = np.frombuffer(image, dtype=np.uint8)
        region.flush()
        hold = 1 << dram["reset_bit"]
        gpio = self.control_gpio
        gpio.write(0x8, hold)                          # GPIO2_DATA: held in reset while the base changes
        gpio.write(0x0, base & 0xFFFFFFFF)             # GPIO_DATA: the base's low bits
        gpio.write(0x8, hold | (base >> 32))
        gpio.write(0x8, base >> 32)                    # out of reset: it reads its weights, then takes frames
        return region

    def _check(self, images) -> np.ndarray:
        c, h, w = SPEC["input"]["channels"], SPEC["input"]["height"], SPEC["input"]["width"]
        if not isinstance(images, np.ndarray):
            raise DriverError(f"images must be a numpy array of shape N×{h}×{w}×{c}, not {type(images).__name__}")
        if images.dtype != np.uint8:
            raise DriverError(f"images must be uint8, not {images.dtype}; convert them (images.astype(np.uint8)) "
                              f"if their values are 0–255")
        if images.ndim == 3 and images.shape == (h, w, c):
            raise DriverError(f"images must be N×{h}×{w}×{c}; for one image add a batch axis (images[None])")
        if images.ndim != 4 or images.shape[1:] != (h, w, c):
            raise DriverError(f"images must be N×{h}×{w}×{c} (N images of {h}×{w} pixels, {c} channels), "
                              f"not {'×'.join(map(str, images.shape))}")
        return images

    def _wait(self, channel, what: str):
        """Waits for ``channel`` to be idle, at most ``timeout`` seconds (PYNQ's own wait() has none)."""
        deadline = time.monotonic() + self.timeout
        while not channel.idle:
            if getattr(channel, "error", False):
                raise DriverError(f"the DMA reported an error during the {what}; reload the overlay")
            if time.monotonic() > deadline:
                raise DriverError(f"the DMA's {what} did not finish within {self.timeout:g} s: the accelerator is not "
                                  f"answering (is the bitstream loaded and the design the one in spec.json?)")
            time.sleep(0)

    def _run(self, images: np.ndarray) -> np.ndarray:
        n = len(images)
        self._in[:n] = pack(images)
        self._in.flush()
        send, receive = self._dma.sendchannel, self._dma.recvchannel
        receive.transfer(self._out[0])
        send.transfer(self._in[:n])          # (a view from the buffer's start: the same address, fewer bytes)
        for k in range(n):
            self._wait(receive, f"output of frame {k + 1} of {n}")
            if k + 1 < n:
                receive.transfer(self._out[k + 1])
        self._wait(send, "input")
        for buffer in self._out[:n]:
            buffer.invalidate()
        return unpack(np.stack([np.asarray(buffer) for buffer in self._out[:n]]))

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Class maps (``N×H'×W'``, uint8) of ``images`` (uint8 ``N×H×W×C``), ``batch_size`` frames a transfer."""
        images = self._check(images)
        if not len(images):
            return unpack(np.zeros((0, SPEC["output"]["beats"], SPEC["output"]["dma_bytes"]), dtype=np.uint8))
        return np.concatenate([self._run(images[k:k + self.batch_size])
                               for k in range(0, len(images), self.batch_size)])

    def throughput_test(self, batches: int = 10) -> dict:
        """Frames per second and MB/s each way over ``batches`` full batches of blank frames."""
        c, h, w = SPEC["input"]["channels"], SPEC["input"]["height"], SPEC["input"]["width"]
        frames = np.zeros((self.batch_size, h, w, c), dtype=np.uint8)
        start = time.monotonic()
        for _ in range(batches):
            self._run(frames)
        seconds = time.monotonic() - start
        count = batches * self.batch_size
        return {"frames": count, "seconds": seconds, "fps": count / seconds,
                "in_mbs": count * SPEC["input"]["beats"] * SPEC["input"]["dma_bytes"] / seconds / 1e6,
                "out_mbs": count * SPEC["output"]["beats"] * SPEC["output"]["dma_bytes"] / seconds / 1e6}

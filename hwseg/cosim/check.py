"""Pack frames into AXI4-Stream beats and compare output beats with golden, beat by beat."""

from __future__ import annotations

import numpy as np

__all__ = ["pack_frames", "unpack_beats", "compare_beats"]

_CHUNK = 1 << 16


def pack_frames(frames: np.ndarray, bits: int, tdata_bits: int) -> np.ndarray:
    """Frames ``(N, C, H, W)`` → beats ``(N·H·W, tdata_bits/8)`` of little-endian bytes.

    One pixel per beat in raster order; channel ``c`` in bits ``[c·bits, (c+1)·bits)``,
    two's complement for negative values.
    """
    n, c, h, w = frames.shape
    if c * bits > tdata_bits or tdata_bits % 8:
        raise ValueError(f"{c} channels of {bits} bits do not fit tdata of {tdata_bits} bits")
    pixels = np.moveaxis(frames, 1, -1).reshape(-1, c).astype(np.int64) & ((1 << bits) - 1)
    out = np.zeros((pixels.shape[0], tdata_bits // 8), dtype=np.uint8)
    shifts = np.arange(bits, dtype=np.int64)
    for start in range(0, pixels.shape[0], _CHUNK):   # bit planes in chunks keep the memory small
        chunk = pixels[start:start + _CHUNK]
        planes = ((chunk[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(chunk.shape[0], c * bits)
        padded = np.zeros((chunk.shape[0], tdata_bits), dtype=np.uint8)
        padded[:, :c * bits] = planes
        out[start:start + _CHUNK] = np.packbits(padded, axis=1, bitorder="little")
    return out


def unpack_beats(beats: np.ndarray, channels: int, bits: int, signed: bool) -> np.ndarray:
    """Beats of little-endian bytes → ``(beats, channels)`` integers."""
    out = np.zeros((beats.shape[0], channels), dtype=np.int64)
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    for start in range(0, beats.shape[0], _CHUNK):
        chunk = np.ascontiguousarray(beats[start:start + _CHUNK], dtype=np.uint8)
        planes = np.unpackbits(chunk, axis=1, bitorder="little")[:, :channels * bits]
        values = planes.reshape(chunk.shape[0], channels, bits).astype(np.int64) @ weights
        if signed:
            values = np.where(values >> (bits - 1), values - (1 << bits), values)
        out[start:start + _CHUNK] = values
    return out


def compare_beats(expected: np.ndarray, got: np.ndarray, height: int, width: int, limit: int = 5) -> list[str]:
    """Every difference between ``expected`` and ``got`` (both ``(beats, channels)``), at most ``limit``
    described as frame, pixel (row, column), channel, expected and got; plus a note on missing beats."""
    problems = []
    pixels = height * width
    count = min(len(expected), len(got))
    diff = np.argwhere(expected[:count] != got[:count])
    for beat, channel in diff[:limit]:
        frame, pixel = divmod(int(beat), pixels)
        y, x = divmod(pixel, width)
        problems.append(f"frame {frame}, pixel ({y}, {x}), channel {channel}: expected "
                        f"{int(expected[beat, channel])}, got {int(got[beat, channel])}")
    if len(diff) > limit:
        problems.append(f"… and {len(diff) - limit} more differing values")
    if len(got) < len(expected):
        problems.append(f"only {len(got)} of {len(expected)} output beats arrived")
    return problems

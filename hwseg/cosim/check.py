"""Pack frames into AXI4-Stream beats and compare output beats with golden, beat by beat."""

from __future__ import annotations

import numpy as np

__all__ = ["pack_frames", "unpack_beats", "compare_beats"]


def pack_frames(frames: np.ndarray, bits: int, tdata_bits: int) -> np.ndarray:
    """Frames ``(N, C, H, W)`` → beats ``(N·H·W, tdata_bits/8)`` of little-endian bytes.

    One pixel per beat in raster order; channel ``c`` in bits ``[c·bits, (c+1)·bits)``,
    two's complement for negative values.
    """
    n, c, h, w = frames.shape
    pixels = np.moveaxis(frames, 1, -1).reshape(-1, c).astype(np.int64) & ((1 << bits) - 1)
    out = np.zeros((pixels.shape[0], tdata_bits // 8), dtype=np.uint8)
    for index, pixel in enumerate(pixels.tolist()):
        value = 0
        for channel, v in enumerate(pixel):
            value |= v << (channel * bits)
        out[index] = np.frombuffer(value.to_bytes(tdata_bits // 8, "little"), dtype=np.uint8)
    return out


def unpack_beats(beats: np.ndarray, channels: int, bits: int, signed: bool) -> np.ndarray:
    """Beats of little-endian bytes → ``(beats, channels)`` integers."""
    out = np.zeros((beats.shape[0], channels), dtype=np.int64)
    mask = (1 << bits) - 1
    for index, row in enumerate(beats):
        value = int.from_bytes(row.tobytes(), "little")
        for channel in range(channels):
            v = (value >> (channel * bits)) & mask
            if signed and v >> (bits - 1):
                v -= 1 << bits
            out[index, channel] = v
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

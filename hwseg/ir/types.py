"""Integer tensor types of the hwseg IR (design.md §2).

Every activation has zero-point 0: the integer 0 is the real 0, so zero padding is exact.
A type is a set of integers; a tensor type adds the per-frame shape ``(C, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UInt", "Int", "Bipolar", "ScalarType", "TensorType", "type_for_range"]


@dataclass(frozen=True)
class UInt:
    """Unsigned integer of ``bits`` bits: 0 … 2^bits − 1."""

    bits: int

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"UInt width must be a positive integer, not {self.bits!r}")

    @property
    def min(self) -> int:
        return 0

    @property
    def max(self) -> int:
        return (1 << self.bits) - 1

    @property
    def signed(self) -> bool:
        return False

    def __str__(self):
        return f"UInt({self.bits})"


@dataclass(frozen=True)
class Int:
    """Two's-complement signed integer of ``bits`` bits: −2^(bits−1) … 2^(bits−1) − 1."""

    bits: int

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"Int width must be a positive integer, not {self.bits!r}")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def signed(self) -> bool:
        return True

    def __str__(self):
        return f"Int({self.bits})"


@dataclass(frozen=True)
class Bipolar:
    """One bit meaning ±1: stored 1 is +1, stored 0 is −1 (binary weights)."""

    @property
    def bits(self) -> int:
        return 1

    @property
    def min(self) -> int:
        return -1

    @property
    def max(self) -> int:
        return 1

    @property
    def signed(self) -> bool:
        return True

    def __str__(self):
        return "Bipolar"


ScalarType = UInt | Int | Bipolar


def type_for_range(lo: int, hi: int) -> UInt | Int:
    """The narrowest ``UInt`` (if ``lo >= 0``) or ``Int`` holding every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return UInt(max(1, hi.bit_length()))
    # Int(b) holds -2^(b-1) … 2^(b-1)-1; a negative hi needs no more bits than lo.
    bits = max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1
    return Int(bits)


@dataclass(frozen=True)
class TensorType:
    """A frame of shape ``(channels, height, width)`` with elements of ``dtype``."""

    shape: tuple[int, int, int]
    dtype: ScalarType

    def __post_init__(self):
        shape = tuple(self.shape)
        if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ValueError(f"tensor shape must be three positive integers (C, H, W), not {self.shape!r}")
        object.__setattr__(self, "shape", shape)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    @property
    def pixels(self) -> int:
        return self.shape[1] * self.shape[2]

    def __str__(self):
        c, h, w = self.shape
        return f"{self.dtype}[{c}×{h}×{w}]"

"""Operations of the hwseg IR, as frozen dataclasses (design.md §2).

Each op validates its parameters on construction and infers its output type from its
input types with :meth:`Op.infer`. Integer parameters (weights, biases, multipliers) are
read-only ``int64`` NumPy arrays. Tensors are frames ``(C, H, W)``; the batch dimension
belongs to the executors, not to the IR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .types import Bipolar, Int, ScalarType, TensorType, UInt, type_for_range

__all__ = ["IRError", "Op", "Input", "Conv2d", "MulShift", "MaxPool", "ArgMax", "conv_output_size"]


class IRError(ValueError):
    """A graph or op that violates the IR's rules; the message names the problem."""


def _pair(value, what):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, (int, np.integer)) for v in value):
        raise IRError(f"{what} must be an int or a pair of ints, not {value!r}")
    return tuple(int(v) for v in value)


def _int_array(values, what, ndim):
    array = np.asarray(values)
    if array.ndim != ndim:
        raise IRError(f"{what} must have {ndim} dimensions, not shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise IRError(f"{what} must hold integers; it holds non-integer values such as {array.flat[0]!r}")
    elif array.dtype.kind not in "iub":
        raise IRError(f"{what} must hold integers, not {array.dtype}")
    array = array.astype(np.int64)
    array.setflags(write=False)
    return array


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution or pooling window along one axis (torch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Op:
    """Base of all ops: ``arity`` inputs, an output type inferred by :meth:`infer`."""

    arity: ClassVar[int] = 1

    def infer(self, inputs: list[TensorType]) -> TensorType:
        raise IRError(f"{type(self).__name__} has no type inference")

    def describe(self) -> str:
        """A short human-readable summary of the parameters."""
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class Input(Op):
    """The network input: raw frames of ``shape`` with elements of ``dtype``."""

    shape: tuple[int, int, int]
    dtype: ScalarType
    arity: ClassVar[int] = 0

    def __post_init__(self):
        object.__setattr__(self, "shape", TensorType(tuple(self.shape), self.dtype).shape)

    def infer(self, inputs):
        return TensorType(self.shape, self.dtype)

    def describe(self):
        return f"Input {TensorType(self.shape, self.dtype)}"


@dataclass(frozen=True, eq=False)
class Conv2d(Op):
    """Exact integer convolution: ``acc[c] = Σ w[c]·x + bias[c]`` (torch ``conv2d`` semantics).

    ``weight`` has shape ``(C_out, C_in / groups, kh, kw)``; ``weight_type`` is the type the
    weights were quantized to (``Int(b)`` narrow range, or ``Bipolar`` for ±1). The output
    type is the narrowest integer holding every accumulator value the weights and the
    input type allow, so it cannot overflow.
    """

    weight: np.ndarray
    bias: np.ndarray
    weight_type: ScalarType
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        weight = _int_array(self.weight, "Conv2d weight", 4)
        bias = _int_array(self.bias, "Conv2d bias", 1)
        if bias.shape[0] != weight.shape[0]:
            raise IRError(f"Conv2d bias has {bias.shape[0]} entries for {weight.shape[0]} output channels")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "Conv2d padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "Conv2d dilation"))
        if min(self.stride) < 1:
            raise IRError(f"Conv2d stride must be ≥ 1, not {self.stride!r}")
        if min(self.dilation) < 1:
            raise IRError(f"Conv2d dilation must be ≥ 1, not {self.dilation!r}")
        if min(self.padding) < 0:
            raise IRError(f"Conv2d padding must be ≥ 0, not {self.padding!r}")
        if not isinstance(self.groups, int) or self.groups < 1 or weight.shape[0] % self.groups:
            raise IRError(f"Conv2d groups must divide the {weight.shape[0]} output channels, not {self.groups!r}")
        wt = self.weight_type
        if isinstance(wt, Bipolar):
            if not np.all(np.abs(weight) == 1):
                raise IRError("Conv2d weights of type Bipolar must all be +1 or −1")
        elif isinstance(wt, Int):
            limit = (1 << (wt.bits - 1)) - 1  # narrow range: symmetric
            if weight.size and np.abs(weight).max() > limit:
                raise IRError(f"Conv2d weights exceed the narrow range ±{limit} of {wt}: "
                              f"max |w| is {int(np.abs(weight).max())}")
        else:
            raise IRError(f"Conv2d weight_type must be Int(b) or Bipolar, not {wt!r}")

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    def accumulator_bounds(self, input_dtype: ScalarType) -> tuple[np.ndarray, np.ndarray]:
        """Per output channel, the least and greatest accumulator the input type allows."""
        lo, hi = input_dtype.min, input_dtype.max
        # Zero padding adds 0, which lies in every activation type's range.
        lo, hi = min(lo, 0), max(hi, 0)
        w = self.weight.reshape(self.out_channels, -1)
        most = np.maximum(w * lo, w * hi).sum(axis=1) + self.bias
        least = np.minimum(w * lo, w * hi).sum(axis=1) + self.bias
        return least, most

    def infer(self, inputs):
        (x,) = inputs
        if isinstance(x.dtype, Bipolar):
            raise IRError("Conv2d input of type Bipolar is not supported")
        if x.channels != self.in_channels:
            raise IRError(f"Conv2d expects {self.in_channels} input channels, not {x.channels}")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        ho = conv_output_size(x.height, kh, sh, ph, dh)
        wo = conv_output_size(x.width, kw, sw, pw, dw)
        if ho < 1 or wo < 1:
            raise IRError(f"a {x.height}×{x.width} input is too small for a {kh}×{kw} convolution "
                          f"with dilation {self.dilation} and padding {self.padding}")
        least, most = self.accumulator_bounds(x.dtype)
        acc = type_for_range(min(int(least.min()), 0), max(int(most.max()), 0))
        if isinstance(acc, UInt):
            acc = Int(acc.bits + 1)
        return TensorType((self.out_channels, ho, wo), acc)

    def describe(self):
        kh, kw = self.kernel
        parts = [f"Conv2d {self.in_channels}→{self.out_channels} {kh}×{kw}"]
        if self.stride != (1, 1):
            parts.append(f"stride {self.stride[0]}" if self.stride[0] == self.stride[1] else f"stride {self.stride}")
        if self.dilation != (1, 1):
            parts.append(f"dil {self.dilation[0]}" if self.dilation[0] == self.dilation[1] else f"dil {self.dilation}")
        if self.padding != (0, 0):
            parts.append(f"pad {self.padding[0]}" if self.padding[0] == self.padding[1] else f"pad {self.padding}")
        if self.groups != 1:
            parts.append(f"groups {self.groups}")
        parts.append(f"w {self.weight_type}")
        return " ".join(parts)


@dataclass(frozen=True, eq=False)
class MulShift(Op):
    """Requantization: ``y[c] = clamp((acc[c]·M[c] + 2^(s−1)) >> s, lo, hi)``.

    ``>>`` is an arithmetic shift (floor), so the rounding is half up; ``shift = 0`` adds
    no rounding term. ReLU is ``lo = 0``. The output type is the narrowest holding ``[lo, hi]``.
    """

    multiplier: np.ndarray
    shift: int
    lo: int
    hi: int

    def __post_init__(self):
        object.__setattr__(self, "multiplier", _int_array(self.multiplier, "MulShift multiplier", 1))
        if not isinstance(self.shift, (int, np.integer)) or self.shift < 0 or self.shift > 62:
            raise IRError(f"MulShift shift must be an integer in 0…62, not {self.shift!r}")
        object.__setattr__(self, "shift", int(self.shift))
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", int(self.hi))
        if self.lo > self.hi:
            raise IRError(f"MulShift needs lo ≤ hi, not lo={self.lo}, hi={self.hi}")

    @property
    def out_dtype(self) -> UInt | Int:
        return type_for_range(self.lo, self.hi)

    def infer(self, inputs):
        (x,) = inputs
        if isinstance(x.dtype, Bipolar):
            raise IRError("MulShift input of type Bipolar is not supported")
        if self.multiplier.shape[0] != x.channels:
            raise IRError(f"MulShift has {self.multiplier.shape[0]} multipliers for {x.channels} channels")
        return TensorType(x.shape, self.out_dtype)

    def describe(self):
        relu = " relu" if self.lo == 0 else ""
        return f"MulShift >>{self.shift} → {self.out_dtype}{relu}"


@dataclass(frozen=True, eq=False)
class MaxPool(Op):
    """Integer max over ``kernel`` windows (torch ``max_pool2d``: padding never wins the max)."""

    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel, "MaxPool kernel"))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "MaxPool stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "MaxPool padding"))
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise IRError(f"MaxPool needs kernel, stride ≥ 1 and padding ≥ 0, not "
                          f"kernel={self.kernel!r}, stride={self.stride!r}, padding={self.padding!r}")
        if self.padding[0] * 2 > self.kernel[0] or self.padding[1] * 2 > self.kernel[1]:
            raise IRError(f"MaxPool padding must be at most half the kernel, not {self.padding!r}")

    def infer(self, inputs):
        (x,) = inputs
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho = conv_output_size(x.height, kh, sh, ph, 1)
        wo = conv_output_size(x.width, kw, sw, pw, 1)
        if ho < 1 or wo < 1:
            raise IRError(f"a {x.height}×{x.width} input is too small for a {kh}×{kw} max-pool")
        return TensorType((x.channels, ho, wo), x.dtype)

    def describe(self):
        kh, kw = self.kernel
        return f"MaxPool {kh}×{kw} stride {self.stride[0]}" + (f" pad {self.padding[0]}" if any(self.padding) else "")


@dataclass(frozen=True, eq=False)
class ArgMax(Op):
    """Index of the first maximum over channels (``numpy.argmax``), as ``UInt(bits)``, shape ``(1, H, W)``."""

    bits: int = 8

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise IRError(f"ArgMax index width must be 1…16 bits, not {self.bits!r}")

    def infer(self, inputs):
        (x,) = inputs
        if x.channels > (1 << self.bits):
            raise IRError(f"ArgMax over {x.channels} channels needs more than {self.bits} index bits")
        return TensorType((1, x.height, x.width), UInt(self.bits))

    def describe(self):
        return f"ArgMax → UInt({self.bits})"

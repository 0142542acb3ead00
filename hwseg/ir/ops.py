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

__all__ = ["IRError", "Op", "Input", "Conv2d", "MulShift", "MaxPool", "ArgMax", "Threshold", "Add", "Concat",
           "AvgPool", "ConvTranspose2d", "Upsample", "Fork", "conv_output_size", "conv_transpose_output_size"]


class IRError(ValueError):
    """A graph or op that violates the IR's rules; the message names the problem."""


def _is_int(value) -> bool:
    """True for Python and NumPy integers (not bools, not floats)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _pair(value, what):
    if _is_int(value):
        value = (value, value)
    try:
        value = tuple(value)
    except TypeError:
        raise IRError(f"{what} must be an int or a pair of ints, not {value!r}") from None
    if len(value) != 2 or not all(_is_int(v) for v in value):
        raise IRError(f"{what} must be an int or a pair of ints, not {value!r}")
    return tuple(int(v) for v in value)


def _int(value, what, minimum=None):
    """``value`` as a Python int (NumPy integers accepted), at least ``minimum``, or an IRError."""
    if not _is_int(value) or (minimum is not None and value < minimum):
        bound = "an integer" if minimum is None else f"an integer ≥ {minimum}"
        raise IRError(f"{what} must be {bound}, not {value!r}")
    return int(value)


def _check_weights(weight, weight_type, name):
    """Weights of ``weight_type``: Bipolar ±1, or Int(b) narrow range (symmetric)."""
    wt = weight_type
    if isinstance(wt, Bipolar):
        if not np.all(np.abs(weight) == 1):
            raise IRError(f"{name} weights of type Bipolar must all be +1 or −1")
    elif isinstance(wt, Int):
        limit = (1 << (wt.bits - 1)) - 1  # narrow range: symmetric
        # compared at both ends, not as |w|: np.abs(−2**63) overflows to −2**63 and would pass
        if weight.size and (weight.min() < -limit or weight.max() > limit):
            worst = int(weight.min()) if -int(weight.min()) > int(weight.max()) else int(weight.max())
            raise IRError(f"{name} weights exceed the narrow range ±{limit} of {wt}: one is {worst}")
    else:
        raise IRError(f"{name} weight_type must be Int(b) or Bipolar, not {wt!r}")


def _signed_accumulator(least: int, most: int) -> Int:
    """The narrowest signed type holding ``[least, most]`` and 0 (accumulators are always signed)."""
    acc = type_for_range(min(int(least), 0), max(int(most), 0))
    return Int(acc.bits + 1) if isinstance(acc, UInt) else acc


def _not_bipolar(x: TensorType, name: str):
    if isinstance(x.dtype, Bipolar):
        raise IRError(f"{name} input of type Bipolar is not supported")


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


def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int,
                               dilation: int) -> int:
    """Output length of a transposed convolution along one axis (torch's formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


class Op:
    """Base of all ops: ``arity`` inputs, an output type inferred by :meth:`infer`.

    ``arity`` is a class attribute for ops with a fixed number of inputs; an op whose
    number of inputs is a parameter (``Concat``) overrides it with a property, so always
    read it from the instance (``op.arity``).
    """

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
        if not isinstance(self.dtype, (UInt, Int, Bipolar)):
            raise IRError(f"Input dtype must be UInt(b), Int(b) or Bipolar, not {self.dtype!r}")
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
        if not _is_int(self.groups) or self.groups < 1 or weight.shape[0] % self.groups:
            raise IRError(f"Conv2d groups must divide the {weight.shape[0]} output channels, not {self.groups!r}")
        object.__setattr__(self, "groups", int(self.groups))
        _check_weights(weight, self.weight_type, "Conv2d")

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    @property
    def channelwise(self) -> bool:
        """A 1×1, stride-1, unpadded convolution with one group per channel: ``y[c] = w[c]·x[c] + b[c]``."""
        return (self.groups == self.in_channels == self.out_channels and self.kernel == (1, 1)
                and self.stride == (1, 1) and self.padding == (0, 0))

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
        return TensorType((self.out_channels, ho, wo), _signed_accumulator(least.min(), most.max()))

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
        if not _is_int(self.bits) or not 1 <= self.bits <= 16:
            raise IRError(f"ArgMax index width must be 1…16 bits, not {self.bits!r}")
        object.__setattr__(self, "bits", int(self.bits))

    def infer(self, inputs):
        (x,) = inputs
        if x.channels > (1 << self.bits):
            raise IRError(f"ArgMax over {x.channels} channels needs more than {self.bits} index bits")
        return TensorType((1, x.height, x.width), UInt(self.bits))

    def describe(self):
        return f"ArgMax → UInt({self.bits})"


@dataclass(frozen=True, eq=False)
class Threshold(Op):
    """Multi-threshold activation: ``y[c] = Σ_j [x[c] ≥ T[c, j]]`` (design.md §2).

    ``thresholds`` is ``(C, n)``, every row ascending (non-decreasing). The output counts the
    thresholds reached, ``0 … n``, as ``UInt(b)`` with the narrowest ``b`` holding ``n``; a
    ``b``-bit activation has ``n = 2^b − 1`` thresholds.
    """

    thresholds: np.ndarray

    def __post_init__(self):
        t = _int_array(self.thresholds, "Threshold thresholds", 2)
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise IRError(f"Threshold thresholds need at least one channel and one threshold, not shape {t.shape}")
        falls = np.argwhere(t[:, 1:] < t[:, :-1])  # compared, not subtracted: no overflow
        if falls.size:
            c, j = (int(v) for v in falls[0])
            raise IRError(f"Threshold thresholds must be ascending in every channel: channel {c} has "
                          f"T[{c}, {j}] = {int(t[c, j])} before T[{c}, {j + 1}] = {int(t[c, j + 1])}")
        object.__setattr__(self, "thresholds", t)

    @property
    def channels(self) -> int:
        return self.thresholds.shape[0]

    @property
    def count(self) -> int:
        """``n``, the number of thresholds per channel (the greatest output value)."""
        return self.thresholds.shape[1]

    @property
    def out_dtype(self) -> UInt:
        return UInt(max(1, self.count.bit_length()))

    def infer(self, inputs):
        (x,) = inputs
        _not_bipolar(x, "Threshold")
        if x.channels != self.channels:
            raise IRError(f"Threshold has thresholds for {self.channels} channels, not {x.channels}")
        return TensorType(x.shape, self.out_dtype)

    def describe(self):
        return f"Threshold {self.count} per channel → {self.out_dtype}"


@dataclass(frozen=True, eq=False)
class Add(Op):
    """Residual addition of two tensors of the same shape: ``y = clamp(a + b, lo, hi)``.

    Both inputs must carry the same scale (the frontend arranges it). The output type is
    the narrowest holding ``[lo, hi]``; ``lo = 0`` is a ReLU after the sum.
    """

    lo: int
    hi: int
    arity: ClassVar[int] = 2

    def __post_init__(self):
        object.__setattr__(self, "lo", _int(self.lo, "Add lo"))
        object.__setattr__(self, "hi", _int(self.hi, "Add hi"))
        if self.lo > self.hi:
            raise IRError(f"Add needs lo ≤ hi, not lo={self.lo}, hi={self.hi}")

    @property
    def out_dtype(self) -> UInt | Int:
        return type_for_range(self.lo, self.hi)

    def infer(self, inputs):
        a, b = inputs
        _not_bipolar(a, "Add")
        _not_bipolar(b, "Add")
        if a.shape != b.shape:
            raise IRError(f"Add needs two inputs of the same shape, not {a} and {b}")
        return TensorType(a.shape, self.out_dtype)

    def describe(self):
        return f"Add → {self.out_dtype}" + (" relu" if self.lo == 0 else "")


@dataclass(frozen=True, eq=False)
class Concat(Op):
    """Channel concatenation of ``count`` ≥ 2 inputs, in input order.

    The inputs must have the same height, width and element type (and, the frontend's
    duty, the same scale). ``arity`` is ``count``.
    """

    count: int

    def __post_init__(self):
        object.__setattr__(self, "count", _int(self.count, "Concat count", 2))

    @property
    def arity(self) -> int:
        return self.count

    def infer(self, inputs):
        if len(inputs) != self.count:
            raise IRError(f"Concat of {self.count} inputs got {len(inputs)}")
        first = inputs[0]
        for i, x in enumerate(inputs[1:], 1):
            if x.dtype != first.dtype:
                raise IRError(f"Concat inputs must have the same type: input 0 is {first.dtype}, "
                              f"input {i} is {x.dtype}")
            if (x.height, x.width) != (first.height, first.width):
                raise IRError(f"Concat inputs must have the same height and width: input 0 is {first}, "
                              f"input {i} is {x}")
        return TensorType((sum(x.channels for x in inputs), first.height, first.width), first.dtype)

    def describe(self):
        return f"Concat ×{self.count}"


@dataclass(frozen=True, eq=False)
class AvgPool(Op):
    """Average over ``kernel`` windows of ``2^n`` elements: ``y = (Σ + 2^(n−1)) >> n``.

    ``>>`` is an arithmetic shift (floor): the mean rounded half up; ``n = 0`` adds no
    rounding term. Zero padding counts as elements (torch ``avg_pool2d`` with
    ``count_include_pad=True``); as in torch, padding is at most half the kernel.
    The output type is the input type.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel, "AvgPool kernel"))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "AvgPool stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "AvgPool padding"))
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise IRError(f"AvgPool needs kernel, stride ≥ 1 and padding ≥ 0, not "
                          f"kernel={self.kernel!r}, stride={self.stride!r}, padding={self.padding!r}")
        (kh, kw), (ph, pw) = self.kernel, self.padding
        elements = kh * kw
        if elements & (elements - 1):
            raise IRError(f"AvgPool window {kh}×{kw} has {elements} elements; it must have a power-of-two "
                          f"number of elements")
        if 2 * ph > kh or 2 * pw > kw:
            raise IRError(f"AvgPool padding must be at most half the kernel, not {self.padding!r}")

    @property
    def shift(self) -> int:
        """``n``: the window has ``2^n`` elements."""
        return (self.kernel[0] * self.kernel[1]).bit_length() - 1

    def infer(self, inputs):
        (x,) = inputs
        _not_bipolar(x, "AvgPool")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho = conv_output_size(x.height, kh, sh, ph, 1)
        wo = conv_output_size(x.width, kw, sw, pw, 1)
        if ho < 1 or wo < 1:
            raise IRError(f"a {x.height}×{x.width} input is too small for a {kh}×{kw} average pool")
        return TensorType((x.channels, ho, wo), x.dtype)

    def describe(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        stride = f"stride {sh}" if sh == sw else f"stride {self.stride}"
        pad = "" if not (ph or pw) else (f" pad {ph}" if ph == pw else f" pad {self.padding}")
        return f"AvgPool {kh}×{kw} {stride}{pad}"


@dataclass(frozen=True, eq=False)
class ConvTranspose2d(Op):
    """Exact integer transposed convolution: torch ``conv_transpose2d`` on integer tensors.

    ``out[o, iy·sh − ph + ky·dh, ix·sw − pw + kx·dw] += w[i, o mod (C_out/G), ky, kx] · x[i, iy, ix]``
    for every input channel ``i`` of output channel ``o``'s group, plus ``bias[o]``; positions
    outside ``(Ho, Wo)`` are dropped and ``output_padding`` only extends the output at the
    bottom and right. ``weight`` has shape ``(C_in, C_out / groups, kh, kw)`` (torch's layout);
    ``weight_type`` as for :class:`Conv2d`. The output type is a signed accumulator that holds
    every value the weights and the input type allow: per output phase
    ``(oy mod sh, ox mod sw)`` only some taps contribute, and the bound is the extreme over
    phases of the sum over that phase's taps.
    """

    weight: np.ndarray
    bias: np.ndarray
    weight_type: ScalarType
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        weight = _int_array(self.weight, "ConvTranspose2d weight", 4)
        bias = _int_array(self.bias, "ConvTranspose2d bias", 1)
        if not _is_int(self.groups) or self.groups < 1 or weight.shape[0] % self.groups:
            raise IRError(f"ConvTranspose2d groups must divide the {weight.shape[0]} input channels, "
                          f"not {self.groups!r}")
        object.__setattr__(self, "groups", int(self.groups))
        if bias.shape[0] != weight.shape[1] * self.groups:
            raise IRError(f"ConvTranspose2d bias has {bias.shape[0]} entries for "
                          f"{weight.shape[1] * self.groups} output channels")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)
        for name in ("stride", "padding", "output_padding", "dilation"):
            object.__setattr__(self, name, _pair(getattr(self, name), f"ConvTranspose2d {name}"))
        if min(self.stride) < 1:
            raise IRError(f"ConvTranspose2d stride must be ≥ 1, not {self.stride!r}")
        if min(self.dilation) < 1:
            raise IRError(f"ConvTranspose2d dilation must be ≥ 1, not {self.dilation!r}")
        if min(self.padding) < 0:
            raise IRError(f"ConvTranspose2d padding must be ≥ 0, not {self.padding!r}")
        if min(self.output_padding) < 0 or any(
                op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise IRError(f"ConvTranspose2d output_padding must be ≥ 0 and smaller than the stride or the "
                          f"dilation (as torch requires), not {self.output_padding!r} with stride "
                          f"{self.stride!r} and dilation {self.dilation!r}")
        _check_weights(weight, self.weight_type, "ConvTranspose2d")

    @property
    def in_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(Ho, Wo)`` for an input of ``height × width`` (torch's formula)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        (oph, opw), (dh, dw) = self.output_padding, self.dilation
        return (conv_transpose_output_size(height, kh, sh, ph, oph, dh),
                conv_transpose_output_size(width, kw, sw, pw, opw, dw))

    def accumulator_bounds(self, input_dtype: ScalarType) -> tuple[np.ndarray, np.ndarray]:
        """Per output channel, the least and greatest accumulator the input type allows.

        Output row ``oy`` receives tap ``ky`` only if ``ky·dh ≡ oy + ph (mod sh)`` (and likewise
        for columns), so the taps fall into ``sh·sw`` phases; inside the frame a phase's taps
        read distinct inputs, so its extreme is the sum of its taps' extremes. The bound is
        the extreme over all phases (a phase without taps gives the bias alone); it is
        reached wherever a phase's taps all fall inside the input, and it is never narrower
        than any reachable value.
        """
        lo, hi = min(input_dtype.min, 0), max(input_dtype.max, 0)
        g, (kh, kw), (sh, sw), (dh, dw) = self.groups, self.kernel, self.stride, self.dilation
        cin_g, cout_g = self.in_channels // g, self.weight.shape[1]
        w = self.weight.reshape(g, cin_g, cout_g, kh, kw)
        most_tap = np.maximum(w * lo, w * hi).sum(axis=1)    # (g, cout_g, kh, kw)
        least_tap = np.minimum(w * lo, w * hi).sum(axis=1)
        phase_y = (np.arange(kh) * dh) % sh
        phase_x = (np.arange(kw) * dw) % sw
        most = least = None
        for py in range(sh):
            for px in range(sw):
                mask = (phase_y == py)[:, None] & (phase_x == px)[None, :]
                m = (most_tap * mask).sum(axis=(2, 3)).reshape(-1)
                l = (least_tap * mask).sum(axis=(2, 3)).reshape(-1)
                most = m if most is None else np.maximum(most, m)
                least = l if least is None else np.minimum(least, l)
        return least + self.bias, most + self.bias

    def infer(self, inputs):
        (x,) = inputs
        _not_bipolar(x, "ConvTranspose2d")
        if x.channels != self.in_channels:
            raise IRError(f"ConvTranspose2d expects {self.in_channels} input channels, not {x.channels}")
        ho, wo = self.output_size(x.height, x.width)
        if ho < 1 or wo < 1:
            raise IRError(f"a {x.height}×{x.width} input gives an empty {ho}×{wo} output for a "
                          f"{self.kernel[0]}×{self.kernel[1]} transposed convolution with padding {self.padding}")
        least, most = self.accumulator_bounds(x.dtype)
        return TensorType((self.out_channels, ho, wo), _signed_accumulator(least.min(), most.max()))

    def describe(self):
        kh, kw = self.kernel
        parts = [f"ConvTranspose2d {self.in_channels}→{self.out_channels} {kh}×{kw}"]
        for label, value, default in (("stride", self.stride, (1, 1)), ("dil", self.dilation, (1, 1)),
                                      ("pad", self.padding, (0, 0)), ("outpad", self.output_padding, (0, 0))):
            if value != default:
                parts.append(f"{label} {value[0]}" if value[0] == value[1] else f"{label} {value}")
        if self.groups != 1:
            parts.append(f"groups {self.groups}")
        parts.append(f"w {self.weight_type}")
        return " ".join(parts)


@dataclass(frozen=True, eq=False)
class Upsample(Op):
    """Upsampling by integer ``factor`` (an int or ``(fh, fw)``, each ≥ 1); output type = input type.

    * ``"nearest"``: every pixel repeated ``fh × fw`` times (torch ``interpolate`` nearest with
      an integer ``scale_factor``).
    * ``"bilinear"``: torch ``interpolate(mode="bilinear", align_corners=False)`` rounded half
      up. With power-of-two factors (required) every output is ``Σ w·x / 2^s`` with integer
      weights ``w``, computed exactly as ``(Σ w·x + 2^(s−1)) >> s`` (:attr:`shift` is ``s``).
    """

    factor: tuple[int, int]
    mode: str = "nearest"

    MODES: ClassVar[tuple[str, ...]] = ("nearest", "bilinear")

    def __post_init__(self):
        object.__setattr__(self, "factor", _pair(self.factor, "Upsample factor"))
        if min(self.factor) < 1:
            raise IRError(f"Upsample factor must be ≥ 1, not {self.factor!r}")
        if self.mode not in self.MODES:
            raise IRError(f"Upsample mode must be 'nearest' or 'bilinear', not {self.mode!r}")
        if self.mode == "bilinear" and any(f & (f - 1) for f in self.factor):
            raise IRError(f"Upsample bilinear factors must be powers of two (1, 2, 4, …) so that its "
                          f"weights are exact binary fractions, not {self.factor!r}")

    @property
    def shift(self) -> int:
        """``s``: bilinear weights are integers over ``2^s`` (per axis ``log2 f + 1``, 0 for ``f = 1``);
        0 for nearest."""
        if self.mode != "bilinear":
            return 0
        return sum(f.bit_length() for f in self.factor if f > 1)

    def infer(self, inputs):
        (x,) = inputs
        if self.mode == "bilinear":
            _not_bipolar(x, "Upsample bilinear")
        fh, fw = self.factor
        return TensorType((x.channels, x.height * fh, x.width * fw), x.dtype)

    def describe(self):
        fh, fw = self.factor
        return f"Upsample ×{fh if fh == fw else self.factor} {self.mode}"


@dataclass(frozen=True, eq=False)
class Fork(Op):
    """Identity whose tensor is read by ``outputs`` ≥ 2 consumers: the hardware copies the stream."""

    outputs: int

    def __post_init__(self):
        object.__setattr__(self, "outputs", _int(self.outputs, "Fork outputs", 2))

    def infer(self, inputs):
        (x,) = inputs
        return x

    def describe(self):
        return f"Fork ×{self.outputs}"


@dataclass(frozen=True, eq=False)
class RowTaps(Op):
    """The rows a ``taps × 1`` window reads, stacked as channels (a line buffer made explicit):
    output ``[ky·C + c, oy, x] = x[c, oy·stride − padding + ky·dilation, x]``, 0 outside the frame;
    ``taps·C`` channels, ``conv_output_size(H, taps, stride, padding, dilation)`` rows, the input's
    width and type. A ``taps × kw`` convolution is this followed by a ``1 × kw`` one; the buffer
    placement pass uses it to move a line buffer to DRAM."""

    taps: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def __post_init__(self):
        object.__setattr__(self, "taps", _int(self.taps, "RowTaps taps", 2))
        object.__setattr__(self, "stride", _int(self.stride, "RowTaps stride", 1))
        object.__setattr__(self, "padding", _int(self.padding, "RowTaps padding", 0))
        object.__setattr__(self, "dilation", _int(self.dilation, "RowTaps dilation", 1))
        if self.padding > (self.taps - 1) * self.dilation:
            raise IRError(f"RowTaps padding must be at most (taps − 1)·dilation = {(self.taps - 1) * self.dilation}, "
                          f"not {self.padding}")

    def infer(self, inputs):
        (x,) = inputs
        rows = conv_output_size(x.height, self.taps, self.stride, self.padding, self.dilation)
        if rows < 1:
            raise IRError(f"a frame of {x.height} rows is too short for {self.describe()}")
        return TensorType((self.taps * x.channels, rows, x.width), x.dtype)

    def describe(self):
        parts = [f"RowTaps {self.taps}×1"]
        if self.stride != 1:
            parts.append(f"s{self.stride}")
        if self.padding:
            parts.append(f"p{self.padding}")
        if self.dilation != 1:
            parts.append(f"d{self.dilation}")
        return " ".join(parts)

"""Exact integer folding of quantized layers into integer weights, biases and ``MulShift``.

A chain ``QConv2d [→ BatchNorm2d | L1BatchNorm2d] [→ ReLU] → QAct`` (or the same with a
``QConvTranspose2d``, whose output channels are handled alike) computes, in real values,

    z[c] = a[c] · (conv(x, w)[c] + bias[c] − μ[c]) + β[c]          (BN in eval mode)
         = a[c]·s_in·s_w[c] · (Σ w_int·x_int + b_fold[c] / (a[c]·s_in·s_w[c]))

with ``x = x_int·s_in``, ``w = w_int·s_w``, ``a = γ/√(var + eps)`` (L1BatchNorm2d:
``a = γ/(MAD + eps)``) and ``b_fold = β − a·μ + a·bias`` (without BN: ``a = 1``, ``b_fold = bias``).
``w_int``/``s_w`` come from the conv's weight quantizer (per-channel int, pow2 or binary) and
``bias`` is the bias its forward pass uses. So the integer layer is

* ``acc[c] = Σ w_int·x_int + B_int[c]`` with ``B_int[c] = round(b_fold[c] / (a[c]·s_in·s_w[c]))``,
* ``y[c] = clamp((acc[c]·M[c] + 2^(s−1)) >> s, lo, hi)`` (design.md ``MulShift``) with
  ``M[c] = round(a[c]·s_in·s_w[c] / s_out · 2^s)``, which approximates ``round(z[c] / s_out)``,

where ``s_out``, ``lo``, ``hi`` are the QAct's (a ReLU in the chain raises ``lo`` to 0). One shift
``s ≥ 0`` serves the whole layer: the largest for which every ``|M[c]| ≤ 2^15 − 1`` (16-bit signed
multipliers), so the smallest multipliers keep as many bits as the largest allows. ``round`` is
half to even (``numpy.rint``). A negative ``a[c]`` gives a negative ``M[c]``.

Against the float QAT forward (float bias, float BN) the integer layer differs only by the rounding
of ``B_int`` (half an accumulator step, i.e. ``|M_real|/2`` output steps, with
``M_real = a·s_in·s_w/s_out``) and of ``M`` (relative 2^−15): with 8-bit weights and activations
``|M_real| ≪ 1`` and the outputs agree almost everywhere; with very low-bit weights and inputs
feeding a finer output, one accumulator step can exceed an output step and the bias rounding shows.

**Constant channels.** When ``a[c]·s_w[c] = 0`` (BN ``γ = 0``, or binary weights with ``E = 0``), every
integer weight of channel ``c`` is 0, or the whole reachable accumulator range ``|acc| ≤ Σ|w_int|·max|x|``
maps to one clamped output (a collapsed BN scale: the real bias would be ~10^20 accumulator steps),
the channel's output does not depend on the input: it is ``q[c] = clamp(round(b_fold[c] / s_out), lo, hi)``,
exactly what the float QAT forward computes. Such a channel gets zero weights, ``M[c] = 2^t`` and
``B_int[c] = q[c]·2^(s−t)`` with ``t = min(s, 14)``, so that ``acc·M = q·2^s`` and the MulShift
returns exactly ``q`` (no division by a zero scale, and a small bias whenever ``s ≤ 14``).

A QAct applied to an already quantized activation (scale ``s_in``) folds to a MulShift alone with
``M = round(s_in / s_out · 2^s)`` on every channel.

Integers are checked to stay exact: every accumulator below 2^53 (so a float64 convolution is
exact) and every product ``acc·M + 2^(s−1)`` below 2^62 (int64); otherwise UnsupportedError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwseg.errors import UnsupportedError

from .layers import QAct, QConv2d, QConvTranspose2d, in_major
from .norm import L1BatchNorm2d

__all__ = ["MULTIPLIER_BITS", "MULTIPLIER_MAX", "MAX_SHIFT", "Requant", "FoldedConv", "ConvAffine", "AffineSlice",
           "choose_shift", "conv_affine", "conv_geometry", "bn_affine", "fold_conv", "fold_requant"]

#: Requantization multipliers are signed 16-bit integers.
MULTIPLIER_BITS = 16
MULTIPLIER_MAX = (1 << (MULTIPLIER_BITS - 1)) - 1
#: Largest shift the IR allows.
MAX_SHIFT = 62
#: Every accumulator magnitude stays below this, so float64 convolution is exact.
ACC_LIMIT = 1 << 53
#: Every ``|acc·M| + 2^(s−1)`` stays below this, so int64 arithmetic cannot overflow.
PRODUCT_LIMIT = 1 << 62
#: Constant channels use a multiplier of at most 2^CONSTANT_SHIFT.
CONSTANT_SHIFT = 14


@dataclass(frozen=True, eq=False)
class Requant:
    """A folded MulShift: ``y = clamp((acc·multiplier + 2^(shift−1)) >> shift, lo, hi)``.

    ``scale`` is the real value of one output step (the QAct's scale).
    """

    multiplier: np.ndarray
    shift: int
    lo: int
    hi: int
    scale: float


@dataclass(frozen=True, eq=False)
class FoldedConv:
    """Integer convolution ``acc = Σ weight·x + bias`` followed by ``requant``.

    ``weight`` is int64 ``(C_out, C_in/groups, kh, kw)`` in narrow ``Int(weight_bits)`` or, for a
    transposed convolution (``transposed``, from a :class:`~hwseg.quant.QConvTranspose2d`; then
    ``output_padding`` matters), torch's ``(C_in, C_out/groups, kh, kw)``;
    ``constant`` marks the channels folded as constants (see the module docstring). ``bipolar``:
    every weight is ±1 (binary weights, no constant channel), so the IR may type them ``Bipolar``.
    ``requant`` is a :class:`Requant` (MulShift) or, on the threshold path, a
    :class:`~hwseg.quant.thresholds.Thresholds`.
    """

    weight: np.ndarray
    bias: np.ndarray
    weight_bits: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    requant: Requant
    constant: np.ndarray
    bipolar: bool = False
    transposed: bool = False
    output_padding: tuple[int, int] = (0, 0)


def choose_shift(real: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """``(M, s)``: ``M = rint(real · 2^s)`` int64 with the largest ``s`` in ``0…MAX_SHIFT`` keeping
    every ``|M| ≤ MULTIPLIER_MAX``. ``name`` is the layer named in the error when even ``s = 0``
    does not fit."""
    real = np.asarray(real, dtype=np.float64)
    if real.size == 0:
        return np.zeros(0, np.int64), 0
    if not np.all(np.isfinite(real)):
        raise UnsupportedError(f"layer '{name}': its requantization multiplier is not finite "
                               f"(a zero or NaN scale); recalibrate the model")
    peak = float(np.abs(real).max())
    if peak == 0.0:
        return np.zeros(real.shape, np.int64), 0

    def fits(s):
        return float(np.abs(np.rint(np.ldexp(real, s))).max()) <= MULTIPLIER_MAX

    shift = min(max(math.floor(math.log2(MULTIPLIER_MAX / peak)), 0), MAX_SHIFT)
    while shift > 0 and not fits(shift):
        shift -= 1
    while shift < MAX_SHIFT and fits(shift + 1):
        shift += 1
    if not fits(shift):
        raise UnsupportedError(f"layer '{name}': its requantization multiplier {peak:.4g} does not fit "
                               f"{MULTIPLIER_BITS} signed bits (the clip of its QAct is tiny compared to its "
                               f"input scale); recalibrate the model or widen that activation")
    return np.rint(np.ldexp(real, shift)).astype(np.int64), shift


def _float64(t: torch.Tensor | None, size: int, fill: float) -> np.ndarray:
    if t is None:
        return np.full(size, fill, np.float64)
    return t.detach().to(torch.float64).cpu().numpy().copy()


def _check_products(name: str, acc_bound: np.ndarray, multiplier: np.ndarray, shift: int) -> None:
    acc_peak = int(acc_bound.max()) if acc_bound.size else 0
    if acc_peak >= ACC_LIMIT:
        raise UnsupportedError(f"layer '{name}': its accumulator can reach {acc_peak}, beyond the 2^53 hwseg "
                               f"computes exactly; use fewer input channels or smaller biases")
    product = int((acc_bound.astype(object) * np.abs(multiplier).astype(object)).max()) if acc_bound.size else 0
    if product + (1 << max(shift - 1, 0)) >= PRODUCT_LIMIT:
        raise UnsupportedError(f"layer '{name}': acc·M of its requantization can reach {product}, beyond "
                               f"2^62; its bias is too large for its weights' scale")


@dataclass(frozen=True, eq=False)
class AffineSlice:
    """Some channels of a BatchNorm's eval-mode affine map ``y = a·x + b``, standing in for the BatchNorm
    when a BatchNorm after a ``torch.cat`` is pushed into the branches (each branch folds its slice)."""

    a: np.ndarray
    b: np.ndarray

    @property
    def num_features(self) -> int:
        return int(self.a.shape[0])

    def folded_affine(self) -> tuple[np.ndarray, np.ndarray]:
        return self.a, self.b


def bn_affine(name: str, bn) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of an eval-mode BatchNorm2d, L1BatchNorm2d or :class:`AffineSlice` on all its channels."""
    return _bn_affine(name, bn, bn.num_features)


def _bn_affine(name: str, bn, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of an eval-mode BatchNorm2d (``a = γ/√(var + eps)``, ``b = β − a·μ``) or
    L1BatchNorm2d (``a = γ/(MAD + eps)``, ``b = β − a·μ``), in float64."""
    kind = type(bn).__name__
    if getattr(bn, "num_features", channels) != channels:
        raise UnsupportedError(f"layer '{name}': its {kind} has {bn.num_features} channels for "
                               f"{channels} conv outputs")
    if isinstance(bn, (L1BatchNorm2d, AffineSlice)):
        return bn.folded_affine()
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedError(f"layer '{name}': its BatchNorm2d keeps no running statistics "
                               f"(track_running_stats=False), so it cannot be folded; use the default")
    gamma = _float64(bn.weight, channels, 1.0)
    beta = _float64(bn.bias, channels, 0.0)
    mean = _float64(bn.running_mean, channels, 0.0)
    var = _float64(bn.running_var, channels, 1.0)
    a = gamma / np.sqrt(var + float(bn.eps))
    return a, beta - a * mean


@dataclass(frozen=True, eq=False)
class ConvAffine:
    """A ``QConv2d [→ BN]`` in integers and reals: ``z[c] = unit[c] · Σ w_int·x_int + offset[c]``.

    ``weight`` (int64, writable copy) and its scales ``s_w``; ``unit = a·s_in·s_w`` is the real
    value of one accumulator step and ``offset = β − a·μ + a·bias`` (``a = 1``, ``offset = bias``
    without BN). ``constant`` marks channels whose ``z`` does not depend on the input (``unit = 0``
    or all integer weights 0). ``bipolar``: binary (±1) weights.
    """

    weight: np.ndarray
    scale: np.ndarray
    unit: np.ndarray
    offset: np.ndarray
    constant: np.ndarray
    bipolar: bool


def conv_affine(name: str, conv: QConv2d, bn, in_scale: float) -> ConvAffine:
    """The :class:`ConvAffine` of ``conv [→ bn]`` on an input of real step ``in_scale``.

    ``conv`` is a QConv2d or a QConvTranspose2d; ``weight`` is always output-channel major
    ``(C_out, C_in/G, kh, kw)`` (:func:`conv_geometry` puts a transposed conv's back into torch's layout).

    ``bn`` is ``None``, an eval-mode ``nn.BatchNorm2d`` or an :class:`L1BatchNorm2d`; the conv's
    weights and bias are those its forward pass uses (``quantized_weight``, ``effective_bias``).
    """
    if isinstance(conv, QConvTranspose2d):
        w_int, s_w = conv.quantized_weight(out_major_layout=True)     # rows are output channels
    else:
        w_int, s_w = conv.quantized_weight()
    w_int = w_int.cpu().numpy().copy()
    s_w = s_w.cpu().numpy().copy()
    channels = w_int.shape[0]
    bias = conv.effective_bias() if hasattr(conv, "effective_bias") else conv.bias
    bias = _float64(bias, channels, 0.0)
    if bn is not None:
        a, b = _bn_affine(name, bn, channels)
        offset = b + a * bias
    else:
        a = np.ones(channels)
        offset = bias
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(offset)) and np.all(np.isfinite(s_w))):
        raise UnsupportedError(f"layer '{name}': its weights or BatchNorm statistics hold NaN or infinity")
    unit = a * in_scale * s_w
    constant = (unit == 0) | ~np.any(w_int.reshape(channels, -1) != 0, axis=1)
    return ConvAffine(w_int, s_w, unit, offset, constant, getattr(conv, "weight_quant", "int") == "binary")


def fold_conv(name: str, conv: QConv2d, bn, act: QAct, in_scale: float,
              in_range: tuple[int, int], relu: bool = False) -> FoldedConv:
    """Fold ``conv [→ bn] [→ ReLU] → act`` whose input has real step ``in_scale`` and integer range
    ``in_range`` into integers (see the module docstring). ``bn`` is a BatchNorm2d or an
    L1BatchNorm2d (folded alike). ``name`` names the layer in errors."""
    affine = conv_affine(name, conv, bn, in_scale)
    w_int, unit, b_fold, constant = affine.weight, affine.unit, affine.offset, affine.constant
    channels = w_int.shape[0]

    lo, hi = act.qrange
    if relu:
        lo = max(lo, 0)
    s_out = act.scale
    x_peak = max(abs(int(in_range[0])), abs(int(in_range[1])))
    constant = constant | _saturated(unit, b_fold, np.abs(w_int).reshape(channels, -1).sum(axis=1) * x_peak,
                                     s_out, lo, hi)
    live = ~constant

    multiplier = np.zeros(channels, np.int64)
    int_bias = np.zeros(channels, np.int64)
    m_live, shift = choose_shift(unit[live] / s_out, name)
    multiplier[live] = m_live
    bias_steps = b_fold[live] / unit[live]
    if bias_steps.size and float(np.abs(bias_steps).max()) >= ACC_LIMIT:
        raise UnsupportedError(f"layer '{name}': its folded bias is {float(np.abs(bias_steps).max()):.3g} "
                               f"accumulator steps, beyond the 2^53 hwseg computes exactly")
    int_bias[live] = np.rint(bias_steps).astype(np.int64)

    t = min(shift, CONSTANT_SHIFT)
    q = np.clip(np.rint(b_fold[constant] / s_out), lo, hi).astype(np.int64)
    w_int[constant] = 0
    multiplier[constant] = 1 << t
    int_bias[constant] = q * (1 << (shift - t))

    acc_bound = np.abs(w_int).reshape(channels, -1).sum(axis=1) * x_peak + np.abs(int_bias)
    _check_products(name, acc_bound, multiplier, shift)

    return FoldedConv(**conv_geometry(conv, w_int), bias=int_bias, weight_bits=_ir_weight_bits(conv),
                      requant=Requant(multiplier, shift, lo, hi, s_out), constant=constant,
                      bipolar=affine.bipolar and not constant.any())


def _saturated(unit: np.ndarray, offset: np.ndarray, acc_bound: np.ndarray, s_out: float, lo: int, hi: int):
    """Channels whose output is the same integer for every reachable accumulator ``|acc| ≤ acc_bound``:
    ``clamp(round((unit·acc + offset) / s_out), lo, hi)`` is monotonic in ``acc``, so equal ends mean
    a constant. A BatchNorm channel whose scale has collapsed (or whose bias dwarfs its input) is one;
    folding it as a constant keeps its bias small instead of ~offset/unit accumulator steps."""
    with np.errstate(over="ignore", invalid="ignore"):
        reach = np.abs(unit) * acc_bound.astype(np.float64)
        low = np.clip(np.rint((offset - reach) / s_out), lo, hi)
        high = np.clip(np.rint((offset + reach) / s_out), lo, hi)
    return np.isfinite(reach) & (low == high)


def conv_geometry(conv, w_int: np.ndarray) -> dict:
    """The :class:`FoldedConv` fields of ``conv``'s geometry, with its folded output-major integer
    weights ``w_int`` in the layout of its op (read-only)."""
    transposed = isinstance(conv, QConvTranspose2d)
    weight = in_major(torch.from_numpy(w_int), conv.groups).numpy().copy() if transposed else w_int
    weight.setflags(write=False)
    return dict(weight=weight, stride=tuple(conv.stride), padding=tuple(conv.padding),
                dilation=tuple(conv.dilation), groups=conv.groups, transposed=transposed,
                output_padding=tuple(conv.output_padding) if transposed else (0, 0))


def _ir_weight_bits(conv: QConv2d) -> int:
    """Bits of the narrow ``Int`` type holding the folded weights: binary ±1 (and the 0 of a
    constant channel) fit ``Int(2)``."""
    return 2 if getattr(conv, "weight_quant", "int") == "binary" else conv.weight_bits


def fold_requant(name: str, act: QAct, channels: int, in_scale: float, in_range: tuple[int, int],
                 relu: bool = False) -> Requant:
    """Fold a QAct applied to a quantized activation of real step ``in_scale`` and integer range
    ``in_range`` (``channels`` channels): ``M = rint(in_scale / s_out · 2^s)`` on every channel."""
    lo, hi = act.qrange
    if relu:
        lo = max(lo, 0)
    m, shift = choose_shift(np.full(channels, in_scale / act.scale), name)
    x_peak = max(abs(int(in_range[0])), abs(int(in_range[1])))
    _check_products(name, np.full(channels, x_peak, np.int64), m, shift)
    return Requant(m, shift, lo, hi, act.scale)

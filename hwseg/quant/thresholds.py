"""Threshold folding of low-bit activations (the BFCN path: no multipliers at all).

A chain ``QConv2d [→ BatchNorm2d | L1BatchNorm2d] [→ ReLU] → QAct`` whose output range is
``0 … n`` (an unsigned QAct with ``n = 2^b − 1``, or a signed one after a ReLU) computes, per
output channel ``c`` (see :mod:`hwseg.quant.fold`),

    z = u[c] · acc + o[c],     q = clamp(round(z / s_out), 0, n),     acc = Σ w_int·x_int

with ``u = a·s_in·s_w`` (one accumulator step in real units) and ``o = β − a·μ + a·bias``. Since
``q = Σ_{k=1..n} [z ≥ (k − ½)·s_out]`` (up to rounding ties), for ``u[c] > 0``

    q = Σ_k [acc ≥ T[c, k]],    T[c, k] = ⌈((k − ½)·s_out − o[c]) / u[c]⌉,

which is the IR ``Threshold`` op on the exact accumulator (the conv's bias is 0: the real bias
lives in the thresholds, unrounded). ``T[c]`` is ascending in ``k``.

* **Negative scale** ``u[c] < 0`` (a negative BN ``γ``): ``z`` falls as ``acc`` grows. The channel's
  weights are negated (``acc' = −acc``; its bias is 0, so negating it changes nothing) and the
  thresholds computed with ``|u[c]|``; then ``z = |u|·acc' + o`` and the formula above holds, so the
  thresholds stay ascending. ``flipped[c]`` records it.
* **Constant channels** (``u[c] = 0``: BN ``γ = 0``, binary ``E = 0``, or all integer weights 0):
  ``q = clamp(round(o / s_out), 0, n)`` (half to even, as the float layer), expressed as ``q``
  thresholds ``−B − 1`` (always reached) and ``n − q`` thresholds ``B + 1`` (never reached), where
  ``B = Σ|w_int[c]|·max|x|`` bounds ``|acc|``. Every other threshold is also clamped to
  ``[−B − 1, B + 1]`` (which changes no output), so thresholds stay as narrow as the accumulator.
* **Ties**: where ``z / s_out`` is exactly ``k − ½`` the thresholds round half up (as ``MulShift``),
  the float QAct half to even; everywhere else the outputs are identical (the thresholds are
  computed in float64 from the float64 folded reals, so "exactly" means up to float64 rounding
  of ``z`` itself).

Binary-weight convs keep their ±1 weights on constant channels (thresholds do not need them
zeroed), so they stay ``Bipolar``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwseg.errors import UnsupportedError

from .fold import ACC_LIMIT, FoldedConv, _ir_weight_bits, conv_affine, conv_geometry
from .layers import QAct, QConv2d

__all__ = ["THRESHOLD_BITS", "Thresholds", "threshold_levels", "fold_thresholds", "threshold_foldable"]

#: Default largest output width the lowering folds into thresholds when asked to (BFCN: 1–2 bits;
#: 4 bits = 15 comparators per channel).
THRESHOLD_BITS = 4


@dataclass(frozen=True, eq=False)
class Thresholds:
    """A folded multi-threshold activation: ``y[c] = Σ_j [acc[c] ≥ thresholds[c, j]]``.

    ``thresholds`` is int64 ``(C, hi)``, ascending per channel; the output integers are
    ``lo = 0 … hi`` with real step ``scale`` (the QAct's). ``flipped[c]``: the conv's channel ``c``
    has negated weights.
    """

    thresholds: np.ndarray
    scale: float
    hi: int
    flipped: np.ndarray
    lo: int = 0


def threshold_levels(unit, offset, out_scale: float, levels: int, acc_bound) -> tuple[np.ndarray, np.ndarray]:
    """``(T, flipped)``: thresholds ``T`` (int64 ``(C, levels)``, ascending) and the channels whose
    accumulator must be negated, such that ``Σ_k [±acc ≥ T[c, k]]`` equals
    ``clamp(round((unit[c]·acc + offset[c]) / out_scale), 0, levels)`` for every integer ``acc``
    with ``|acc| ≤ acc_bound[c]`` (except on rounding ties, which go up). ``unit[c] = 0`` is a
    constant channel. See the module docstring."""
    unit = np.asarray(unit, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    bound = np.asarray(acc_bound, dtype=np.int64)
    if not (np.all(np.isfinite(unit)) and np.all(np.isfinite(offset))) or not out_scale > 0:
        raise ValueError("threshold_levels needs finite units and offsets and a positive output scale")
    channels = unit.shape[0]
    never = (bound + 1).astype(np.float64)[:, None]        # acc ≥ B + 1 never holds
    always = -never                                        # acc ≥ −B − 1 always holds
    flipped = unit < 0
    magnitude = np.abs(unit)
    live = magnitude > 0
    levels_k = np.arange(1, levels + 1, dtype=np.float64) - 0.5
    t = np.empty((channels, levels), np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t[live] = np.ceil((levels_k[None, :] * out_scale - offset[live, None]) / magnitude[live, None])
    q = np.clip(np.rint(offset / out_scale), 0, levels)     # constant channels
    t[~live] = np.where(np.arange(levels)[None, :] < q[~live, None], always[~live], never[~live])
    t = np.clip(t, always, never)
    return t.astype(np.int64), flipped & live


def threshold_foldable(act: QAct, relu: bool, max_bits: int) -> bool:
    """Whether ``act`` (after a ReLU when ``relu``) outputs ``0 … n`` with ``n ≤ 2^max_bits − 1``."""
    lo, hi = act.qrange
    return max(lo, 0 if relu else lo) == 0 and hi <= (1 << max_bits) - 1


def fold_thresholds(name: str, conv: QConv2d, bn, act: QAct, in_scale: float, in_range: tuple[int, int],
                    relu: bool = False) -> FoldedConv:
    """Fold ``conv [→ bn] [→ ReLU] → act`` into a conv with zero bias (negated rows where the scale is
    negative) whose ``requant`` is :class:`Thresholds` (see the module docstring).

    The input has real step ``in_scale`` and integer range ``in_range``; ``act`` must output ``0 … n``
    (unsigned, or signed after ``relu``), otherwise UnsupportedError.
    """
    lo, hi = act.qrange
    if relu:
        lo = max(lo, 0)
    if lo != 0:
        raise UnsupportedError(f"layer '{name}': a signed activation without a ReLU cannot be folded into "
                               f"thresholds (their count starts at 0); use MulShift")
    affine = conv_affine(name, conv, bn, in_scale)
    w_int, constant = affine.weight, affine.constant
    channels = w_int.shape[0]
    unit = np.where(constant, 0.0, affine.unit)
    if not affine.bipolar:
        w_int[constant] = 0
    x_peak = max(abs(int(in_range[0])), abs(int(in_range[1])))
    acc_bound = np.abs(w_int).reshape(channels, -1).sum(axis=1) * x_peak
    if acc_bound.size and int(acc_bound.max()) + 1 >= ACC_LIMIT:
        raise UnsupportedError(f"layer '{name}': its accumulator can reach {int(acc_bound.max())}, beyond the 2^53 "
                               f"hwseg computes exactly; use fewer input channels")
    thresholds, flipped = threshold_levels(unit, affine.offset, act.scale, hi, acc_bound)
    w_int[flipped] = -w_int[flipped]
    thresholds.setflags(write=False)
    return FoldedConv(**conv_geometry(conv, w_int), bias=np.zeros(channels, np.int64),
                      weight_bits=_ir_weight_bits(conv), requant=Thresholds(thresholds, act.scale, hi, flipped),
                      constant=constant, bipolar=affine.bipolar)

"""Quantizer functions: weights (int, pow2, binary), power-of-two grids, gradient quantization.

Every quantizer maps a float tensor onto a grid ``q · scale`` with integer ``q`` and zero-point 0
(design.md §2). The ``fake_*`` functions return ``q · scale`` in the input's dtype with a
straight-through estimator (STE) gradient: the backward pass treats the rounding (and, where
said, the clipping) as the identity.

Weights (``mode`` of :func:`quantize_weight`):

* ``"int"`` — narrow-range symmetric ``Int(b)``, one scale per output channel,
  ``s[c] = max|w[c]| / (2^(b−1) − 1)``, ``q = round(w / s[c])`` (the channel's peak maps to ±qmax).
* ``"pow2"`` — narrow-range symmetric ``Int(b)`` with one power-of-two scale ``2^e`` for the
  whole layer, ``q = clamp(round(w · 2^−e), ±qmax)``. ``e`` is either fixed (``exponent``; the
  integer-training paper's grid is ``b = 8``, ``e = −7``: ``clip(round(w·2^7)/2^7)``) or, when
  ``exponent`` is ``None``, the smallest ``e`` with ``max|W| ≤ qmax · 2^e`` (no weight clips).
* ``"binary"`` — DoReFa/BFCN binary weights ``sign(w) · E`` with ``E = mean|W|`` over the whole
  layer: integers ``±1`` (``Bipolar``; ``sign(0)`` is ``+1`` since Bipolar has no 0) and scale ``E``.

Power-of-two grids (:func:`pow2_exponent`, :func:`quantize_pow2`): a tensor ``t`` quantized to
``b`` signed bits on a dynamic power-of-two grid gets ``e = min{e : max|t| ≤ (2^(b−1) − 1)·2^e}``
(one exponent per tensor, from its maximum) and ``q = clamp(round(t · 2^−e), ±(2^(b−1) − 1))``.
The integer-training mode uses this for gradients (errors and weight gradients), BatchNorm
statistics and BatchNorm γ/β. Rounding is to nearest (half to even), or stochastic
(``floor(v + u)``, ``u`` uniform in ``[0, 1)``, unbiased) when asked.
"""

from __future__ import annotations

import math

import torch

__all__ = ["WEIGHT_MODES", "round_ste", "weight_qmax", "pow2_ceil", "pow2_exponent", "quantize_pow2",
           "fake_quantize_pow2", "quantize_grad", "weight_scale", "binary_weight", "pow2_weight_exponent",
           "quantize_weight", "fake_quantize_weight"]

#: The weight quantizers :class:`~hwseg.quant.QConv2d` offers.
WEIGHT_MODES = ("int", "pow2", "binary")


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) in the forward pass, identity in the backward pass."""
    return x + (torch.round(x) - x).detach()


def weight_qmax(bits: int) -> int:
    """Largest integer of narrow-range ``Int(bits)``: ``2^(bits−1) − 1``."""
    return (1 << (bits - 1)) - 1


def pow2_ceil(value: float) -> float:
    """The smallest power of two ``≥ value`` (``value > 0``), computed exactly."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"pow2_ceil needs a finite positive value, not {value!r}")
    mantissa, exponent = math.frexp(value)         # value = mantissa·2^exponent, mantissa in [0.5, 1)
    return math.ldexp(1.0, exponent - 1) if mantissa == 0.5 else math.ldexp(1.0, exponent)


def pow2_exponent(peak: float, qmax: int) -> int:
    """The smallest integer ``e`` with ``peak ≤ qmax · 2^e`` (``0`` when ``peak`` is 0)."""
    peak = float(peak)
    if peak == 0.0:
        return 0
    if not math.isfinite(peak) or peak < 0:
        raise ValueError(f"pow2_exponent needs a finite peak ≥ 0, not {peak!r}")
    e = math.ceil(math.log2(peak / qmax))
    while peak > math.ldexp(qmax, e):              # guard against log2 rounding
        e += 1
    while peak <= math.ldexp(qmax, e - 1):
        e -= 1
    return e


def _round(v: torch.Tensor, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    if not stochastic:
        return torch.round(v)
    noise = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    return torch.floor(v + noise)


@torch.no_grad()
def quantize_pow2(t: torch.Tensor, bits: int, exponent: int | None = None, stochastic: bool = False,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """``(q · 2^e, e)``: ``t`` on the signed narrow ``bits``-bit grid of step ``2^e`` (same dtype).

    ``e`` is ``exponent`` when given, otherwise the dynamic per-tensor exponent from ``max|t|``
    (see the module docstring); values beyond ``±qmax · 2^e`` saturate. ``stochastic`` rounds
    ``t · 2^−e`` down or up with probabilities making the result unbiased.
    """
    qmax = weight_qmax(bits)
    v = t.detach().to(torch.float64)           # scaling by 2^−e is exact in float64 (no float32 overflow)
    if exponent is None:
        exponent = pow2_exponent(float(v.abs().max()) if v.numel() else 0.0, qmax)
    q = _round(v * math.ldexp(1.0, -exponent), stochastic, generator).clamp(-qmax, qmax)
    return (q * math.ldexp(1.0, exponent)).to(t.dtype), exponent


def fake_quantize_pow2(t: torch.Tensor, bits: int, exponent: int | None = None) -> torch.Tensor:
    """:func:`quantize_pow2` (round to nearest) with the identity gradient (STE)."""
    q, _ = quantize_pow2(t, bits, exponent)
    return q + (t - t.detach())             # forward exactly q, gradient the identity


class _QuantizeGrad(torch.autograd.Function):
    """Identity forward; the backward pass quantizes the incoming gradient to a pow2 grid."""

    @staticmethod
    def forward(ctx, x, bits, stochastic, generator):
        ctx.bits, ctx.stochastic, ctx.generator = bits, stochastic, generator
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        q, _ = quantize_pow2(grad, ctx.bits, stochastic=ctx.stochastic, generator=ctx.generator)
        return q, None, None, None


def quantize_grad(x: torch.Tensor, bits: int = 8, stochastic: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` unchanged in the forward pass; in the backward pass the gradient w.r.t. ``x`` is put on
    the ``bits``-bit signed power-of-two grid whose exponent comes from the gradient's own maximum
    (:func:`quantize_pow2`, dynamic per tensor)."""
    return _QuantizeGrad.apply(x, bits, stochastic, generator)


# ----------------------------------------------------------------------------- weights

def weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel scale ``s_w[c] = max|w[c]| / (2^(bits−1) − 1)`` in float64 (mode ``"int"``).

    A channel whose weights are all zero gets the scale 1 (any positive value would do:
    its integer weights are 0 whatever the scale, and the folding treats it as a
    constant channel).
    """
    peak = weight.detach().to(torch.float64).abs().reshape(weight.shape[0], -1).amax(dim=1)
    return torch.where(peak > 0, peak / weight_qmax(bits), torch.ones_like(peak))


def binary_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_int, E)``: int64 ``sign(w)`` in ``{−1, +1}`` (``sign(0) = +1``) and the layer's
    ``E = mean|W|`` (float64) repeated for every output channel. ``E`` is 0 only when every
    weight is 0 (the folding then treats every channel as constant)."""
    w = weight.detach().to(torch.float64)
    e = w.abs().mean() if w.numel() else torch.zeros((), dtype=torch.float64)
    w_int = torch.where(w >= 0, 1, -1).to(torch.int64)
    return w_int, e.expand(weight.shape[0]).clone()


def pow2_weight_exponent(weight: torch.Tensor, bits: int) -> int:
    """The dynamic pow2 exponent of a layer: the smallest ``e`` with ``max|W| ≤ qmax · 2^e``."""
    peak = float(weight.detach().abs().max()) if weight.numel() else 0.0
    return pow2_exponent(peak, weight_qmax(bits))


def quantize_weight(weight: torch.Tensor, bits: int, mode: str = "int",
                    exponent: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_int, s_w)``: int64 weights and their float64 per-output-channel scales (``w ≈ w_int · s_w``).

    ``mode`` is ``"int"`` (per-channel scale, ``w_int = clamp(round(w / s_w), ±qmax)`` in float64,
    the channel's largest magnitude maps to exactly ``±qmax``), ``"pow2"`` (one scale ``2^e`` for the
    layer, fixed ``exponent`` or dynamic from ``max|W|``; weights beyond ``±qmax·2^e`` saturate) or
    ``"binary"`` (``w_int = sign(w)``, ``s_w = mean|W|``; ``bits`` is ignored). Rounding is half to even.
    """
    if mode == "binary":
        return binary_weight(weight)
    qmax = weight_qmax(bits)
    if mode == "pow2":
        e = pow2_weight_exponent(weight, bits) if exponent is None else int(exponent)
        q = torch.round(weight.detach().to(torch.float64) * math.ldexp(1.0, -e))
        scale = torch.full((weight.shape[0],), math.ldexp(1.0, e), dtype=torch.float64)
        return q.clamp(-qmax, qmax).to(torch.int64), scale
    if mode != "int":
        raise ValueError(f"weight quantizer mode must be one of {', '.join(WEIGHT_MODES)}, not {mode!r}")
    scale = weight_scale(weight, bits)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.round(weight.detach().to(torch.float64) / scale.view(shape))
    return q.clamp(-qmax, qmax).to(torch.int64), scale


def fake_quantize_weight(weight: torch.Tensor, bits: int, mode: str = "int",
                         exponent: int | None = None) -> torch.Tensor:
    """``w_int · s_w`` (:func:`quantize_weight`) in ``weight``'s dtype, with the gradient of the
    identity (STE: also through the saturation of ``"pow2"`` and through ``sign`` of ``"binary"``,
    where ``E`` is treated as a constant, as in DoReFa)."""
    w_int, scale = quantize_weight(weight, bits, mode, exponent)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    quantized = (w_int.to(torch.float64) * scale.view(shape)).to(weight.dtype)
    return quantized + (weight - weight.detach())     # forward exactly the grid value, gradient the identity

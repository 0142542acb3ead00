"""Quantization-aware layers (float forward with fake quantization and straight-through gradients).

Every quantized tensor has zero-point 0 (design.md §2): a real value ``v`` is stored as the
integer ``q = v / scale``. The float forward of these layers computes ``q · scale`` so that a
model trains in float while seeing exactly the values its integer version can represent; the
rounding is bypassed in the backward pass (straight-through estimator, STE).

* :class:`QuantInput` — the raw ``UInt(8)`` image (a float tensor holding 0…255) becomes the
  real value ``x / 255``: integer ``x``, fixed scale ``1/255``.
* :class:`QConv2d` — ``nn.Conv2d`` with quantized weights: narrow-range symmetric ``Int(b)``
  with one scale per output channel (default, ``s_w[c] = max|w[c]| / (2^(b−1) − 1)``), with one
  power-of-two scale per layer (``weight_quant="pow2"``), or binary ``sign(w)·mean|W|``
  (``weight_quant="binary"``); see :mod:`hwseg.quant.quantizers`.
* :class:`QAct` / :class:`QReLU` — activation quantizer (``b``-bit unsigned or signed narrow
  range) whose clip is calibrated by an exponential moving average (EMA) of the batch maximum
  (default), fixed, or learned (PACT); optionally rounded up to a power-of-two scale.
* :class:`ArgMax` — the index of the first maximum over channels, ``(N, 1, H, W)``.

``BatchNorm2d`` and ``MaxPool2d`` are the standard torch layers; :class:`~hwseg.quant.norm.L1BatchNorm2d`
is the integer-training paper's BatchNorm without square and root.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .quantizers import (WEIGHT_MODES, fake_quantize_pow2, fake_quantize_weight, pow2_ceil, quantize_weight,
                         round_ste, weight_qmax, weight_scale)

__all__ = ["INPUT_BITS", "INPUT_SCALE", "MIN_CLIP", "CLIP_MODES", "QuantInput", "QConv2d", "QAct", "QReLU", "ArgMax",
           "weight_qmax", "weight_scale", "quantize_weight", "act_range", "fake_quantize_weight"]

#: The network input is the raw 8-bit image.
INPUT_BITS = 8
#: Real value of one input step: pixel ``x`` (0…255) means ``x / 255``.
INPUT_SCALE = 1.0 / 255.0
#: Smallest activation clip a :class:`QAct` uses, so that its scale is never 0 (a layer whose
#: calibration batches were all ≤ 0 gets this clip; its output is then 0 almost everywhere).
MIN_CLIP = 1e-4
#: How a :class:`QAct` sets its clip.
CLIP_MODES = ("ema", "fixed", "learned")

_round_ste = round_ste


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a quantized activation: ``0 … 2^b − 1`` or narrow ``±(2^(b−1) − 1)``."""
    if signed:
        return -weight_qmax(bits), weight_qmax(bits)
    return 0, (1 << bits) - 1


class QuantInput(nn.Module):
    """Marks the network input: the raw ``UInt(8)`` image, real value ``x / 255``.

    The model's input is a float tensor holding the integers 0…255 (the integer path takes
    them as they are); this layer has no parameters. ``scale`` is ``1/255``.
    """

    bits = INPUT_BITS
    scale = INPUT_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 255.0


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` with quantized weights (and optionally a power-of-two quantized bias).

    ``weight_quant`` selects the weight quantizer (:func:`~hwseg.quant.quantizers.quantize_weight`):

    * ``"int"`` (default, unchanged behaviour) — narrow-range symmetric ``Int(weight_bits)``,
      one scale per output channel ``s_w[c] = max|w[c]| / (2^(weight_bits−1) − 1)``;
    * ``"pow2"`` — narrow-range ``Int(weight_bits)`` with one power-of-two scale ``2^e`` per layer:
      ``e = weight_exponent`` when given (the integer-training grid is ``weight_bits=8``,
      ``weight_exponent=−7``; weights beyond ±127/128 saturate), else the smallest ``e`` that
      clips no weight;
    * ``"binary"`` — ``sign(w) · E`` with ``E = mean|W|`` over the layer (Bipolar ±1 integers,
      ``weight_bits`` becomes 1).

    The forward pass convolves with ``w_int · s_w`` (:func:`fake_quantize_weight`) and the bias;
    the gradient reaches ``weight`` unchanged (STE). The bias stays float unless ``bias_bits`` is
    set, in which case the forward pass uses it on the ``bias_bits``-bit signed power-of-two grid
    with the exponent from its own maximum (:func:`~hwseg.quant.quantizers.fake_quantize_pow2`);
    the integer folding rounds whatever bias the forward pass uses onto the accumulator grid.
    Padding is zero padding given as integers (no ``"same"`` strings, no other padding modes).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, weight_bits: int = 8,
                 weight_quant: str = "int", weight_exponent: int | None = None, bias_bits: int | None = None):
        if isinstance(padding, str):
            raise ValueError(f"QConv2d padding must be integers, not {padding!r}")
        if weight_quant not in WEIGHT_MODES:
            raise ValueError(f"QConv2d weight_quant must be one of {', '.join(map(repr, WEIGHT_MODES))}, "
                             f"not {weight_quant!r}")
        if weight_quant == "binary":
            if weight_bits not in (1, 8):
                raise ValueError(f"QConv2d with binary weights has 1-bit weights, not weight_bits={weight_bits!r}")
            weight_bits = 1
        elif not isinstance(weight_bits, int) or isinstance(weight_bits, bool) or not 2 <= weight_bits <= 16:
            raise ValueError(f"QConv2d weight_bits must be an integer in 2…16, not {weight_bits!r}")
        if weight_exponent is not None and (weight_quant != "pow2" or not isinstance(weight_exponent, int)
                                            or isinstance(weight_exponent, bool)):
            raise ValueError(f"QConv2d weight_exponent is an integer for weight_quant='pow2' only, "
                             f"not {weight_exponent!r} with {weight_quant!r}")
        if bias_bits is not None and (not isinstance(bias_bits, int) or isinstance(bias_bits, bool)
                                      or not 2 <= bias_bits <= 32):
            raise ValueError(f"QConv2d bias_bits must be None or an integer in 2…32, not {bias_bits!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.weight_bits = weight_bits
        self.weight_quant = weight_quant
        self.weight_exponent = weight_exponent
        self.bias_bits = bias_bits

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, s_w)`` of the current weights (see :func:`quantize_weight`)."""
        return quantize_weight(self.weight, self.weight_bits, self.weight_quant, self.weight_exponent)

    def effective_bias(self) -> torch.Tensor | None:
        """The bias the forward pass adds (``bias`` on its pow2 grid when ``bias_bits`` is set)."""
        if self.bias is None or self.bias_bits is None:
            return self.bias
        return fake_quantize_pow2(self.bias, self.bias_bits)

    #: False runs the layer in float (the unquantized baseline; see :func:`quantization`).
    quantize = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._conv_forward(x, self.weight, self.bias)
        weight = fake_quantize_weight(self.weight, self.weight_bits, self.weight_quant, self.weight_exponent)
        return self._conv_forward(x, weight, self.effective_bias())

    def extra_repr(self) -> str:
        text = super().extra_repr() + f", weight_bits={self.weight_bits}"
        if self.weight_quant != "int":
            text += f", weight_quant={self.weight_quant!r}"
        if self.weight_exponent is not None:
            text += f", weight_exponent={self.weight_exponent}"
        if self.bias_bits is not None:
            text += f", bias_bits={self.bias_bits}"
        return text


class _PactQuantize(torch.autograd.Function):
    """PACT: ``round(clamp(x, lo·s, hi·s) / s) · s`` with ``s = clip/hi`` (or its pow2 rounding).

    Backward: ``∂/∂x = 1`` for ``lo·s < x < hi·s`` (0 elsewhere); ``∂/∂clip = +1`` where
    ``x ≥ hi·s`` and, for a signed activation (``lo = −hi``), ``−1`` where ``x ≤ lo·s``; the
    rounding (and the pow2 rounding of the scale) is straight through.
    """

    @staticmethod
    def forward(ctx, x, clip, lo, hi, pow2):
        value = max(float(clip), MIN_CLIP)
        scale = pow2_ceil(value / hi) if pow2 else value / hi
        lower, upper = lo * scale, hi * scale
        ctx.save_for_backward(x)
        ctx.bounds = (lower, upper, lo < 0)
        return torch.round(x.clamp(lower, upper) / scale) * scale

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lower, upper, signed = ctx.bounds
        above = x >= upper
        below = x <= lower
        grad_x = grad * (~above & ~below).to(grad.dtype)
        grad_clip = (grad * above.to(grad.dtype)).sum()
        if signed:
            grad_clip = grad_clip - (grad * below.to(grad.dtype)).sum()
        return grad_x, grad_clip.reshape(()), None, None, None


class QAct(nn.Module):
    """Output activation quantizer to ``bits`` bits, unsigned or signed narrow range.

    ``scale = clip / (2^b − 1)`` (unsigned, integers ``0 … 2^b − 1``) or
    ``clip / (2^(b−1) − 1)`` (signed, integers ``±(2^(b−1) − 1)``); with ``pow2=True`` the scale is
    rounded up to the next power of two (so the clip actually used, ``hi · scale``, is ≥ ``clip``).
    The forward pass returns ``clamp(round(x / scale), lo, hi) · scale`` (round half to even).

    The clip (``clip_mode``):

    * ``"ema"`` (default: ``clip=None``, ``learn_clip=False``) — a buffer. In training mode each
      batch first updates it: the first batch sets it to the batch maximum (of ``x``, or of ``|x|``
      when signed), later batches move it by ``clip ← (1 − momentum)·clip + momentum·max``; it never
      drops below :data:`MIN_CLIP`. In eval mode it is fixed. An uncalibrated quantizer uses ``clip = 1``.
      Gradient w.r.t. ``x``: 1 where ``x`` lies inside ``[lo·scale, hi·scale]``, 0 outside (clipped STE).
    * ``"fixed"`` (``clip=<number>``) — a buffer that never changes; same gradient.
    * ``"learned"`` (``learn_clip=True``, initial value ``clip`` or 1) — a PACT parameter ``α``:
      the gradient w.r.t. ``x`` is 1 strictly inside ``(lo·scale, hi·scale)``; the gradient w.r.t.
      ``α`` is the sum of the incoming gradient where ``x ≥ hi·scale`` minus (signed only) where
      ``x ≤ lo·scale`` (PACT, rounding straight through).
    """

    def __init__(self, bits: int = 8, signed: bool = False, momentum: float = 0.1, clip: float | None = None,
                 learn_clip: bool = False, pow2: bool = False):
        super().__init__()
        if not isinstance(signed, bool):
            raise ValueError(f"QAct signed must be true or false, not {signed!r}")
        low = 2 if signed else 1
        if not isinstance(bits, int) or isinstance(bits, bool) or not low <= bits <= 16:
            raise ValueError(f"QAct bits must be an integer in {low}…16 for a "
                             f"{'signed' if signed else 'unsigned'} activation, not {bits!r}")
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"QAct momentum must lie in (0, 1], not {momentum!r}")
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not float(clip) >= MIN_CLIP or float(clip) == float("inf")):
            raise ValueError(f"QAct clip must be None or a finite number ≥ {MIN_CLIP}, not {clip!r}")
        if not isinstance(learn_clip, bool) or not isinstance(pow2, bool):
            raise ValueError("QAct learn_clip and pow2 must be true or false")
        self.bits = bits
        self.signed = signed
        self.momentum = float(momentum)
        self.pow2 = pow2
        self.clip_mode = "learned" if learn_clip else ("fixed" if clip is not None else "ema")
        initial = torch.tensor(1.0 if clip is None else float(clip))
        if learn_clip:
            self.clip = nn.Parameter(initial)
        else:
            self.register_buffer("clip", initial)
        self.register_buffer("calibrated", torch.tensor(clip is not None))

    @property
    def qrange(self) -> tuple[int, int]:
        """The integer range ``(lo, hi)`` of the output."""
        return act_range(self.bits, self.signed)

    @property
    def scale(self) -> float:
        """Real value of one output step, in float64: ``clip / hi`` (rounded up to a power of two
        with ``pow2``)."""
        step = max(float(self.clip.detach()), MIN_CLIP) / self.qrange[1]
        return pow2_ceil(step) if self.pow2 else step

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        peak = (x.abs() if self.signed else x).max().to(self.clip.dtype).clamp(min=MIN_CLIP)
        if bool(self.calibrated):
            self.clip.mul_(1.0 - self.momentum).add_(self.momentum * peak)
        else:
            self.clip.copy_(peak)
            self.calibrated.fill_(True)

    #: False passes activations through unquantized (ReLU when unsigned); the EMA clip still observes.
    quantize = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            if self.clip_mode == "ema" and self.training and x.numel():
                self._observe(x)
            return x if self.signed else torch.relu(x)
        lo, hi = self.qrange
        if self.clip_mode == "learned":
            return _PactQuantize.apply(x, self.clip, lo, hi, self.pow2)
        if self.clip_mode == "ema" and self.training and x.numel():
            self._observe(x)
        scale = self.scale
        clipped = x.clamp(lo * scale, hi * scale)
        return _round_ste(clipped / scale) * scale

    def extra_repr(self) -> str:
        text = f"bits={self.bits}, signed={self.signed}, clip={float(self.clip.detach()):.4g}"
        if self.clip_mode != "ema":
            text += f", clip_mode={self.clip_mode!r}"
        if self.pow2:
            text += ", pow2=True"
        return text


class QReLU(QAct):
    """Unsigned :class:`QAct`: ReLU and quantization to ``bits`` bits in one layer."""

    def __init__(self, bits: int = 8, momentum: float = 0.1, clip: float | None = None, learn_clip: bool = False,
                 pow2: bool = False):
        super().__init__(bits=bits, signed=False, momentum=momentum, clip=clip, learn_clip=learn_clip, pow2=pow2)


class ArgMax(nn.Module):
    """Index of the first maximum over channels, ``(N, 1, H, W)`` int64 (the class map).

    While training it passes the logits through unchanged: the loss needs them.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return torch.argmax(x, dim=1, keepdim=True)


@contextmanager
def quantization(model: nn.Module, enabled: bool):
    """Within the block, every quantizing layer of ``model`` quantizes (``enabled``) or runs in float."""
    layers = [m for m in model.modules() if hasattr(type(m), "quantize")]
    saved = [m.quantize for m in layers]
    for layer in layers:
        layer.quantize = enabled
    try:
        yield model
    finally:
        for layer, value in zip(layers, saved):
            layer.quantize = value

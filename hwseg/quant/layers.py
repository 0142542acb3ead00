"""Quantization-aware layers (float forward with fake quantization and straight-through gradients).

Every quantized tensor has zero-point 0 (design.md §2): a real value ``v`` is stored as the
integer ``q = v / scale``. The float forward of these layers computes ``q · scale`` so that a
model trains in float while seeing exactly the values its integer version can represent; the
rounding is bypassed in the backward pass (straight-through estimator, STE).

* :class:`QuantInput` — the raw ``UInt(8)`` image (a float tensor holding 0…255) becomes the
  real value ``x / 255``: integer ``x``, fixed scale ``1/255``.
* :class:`QConv2d` — ``nn.Conv2d`` whose weights are narrow-range symmetric ``Int(b)`` with one
  scale per output channel, ``s_w[c] = max|w[c]| / (2^(b−1) − 1)``.
* :class:`QAct` / :class:`QReLU` — activation quantizer with a clip calibrated by an exponential
  moving average (EMA) of the batch maximum during training and fixed in eval mode.
* :class:`ArgMax` — the index of the first maximum over channels, ``(N, 1, H, W)``.

``BatchNorm2d`` and ``MaxPool2d`` are the standard torch layers.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["INPUT_BITS", "INPUT_SCALE", "MIN_CLIP", "QuantInput", "QConv2d", "QAct", "QReLU", "ArgMax",
           "weight_qmax", "weight_scale", "quantize_weight", "act_range", "fake_quantize_weight"]

#: The network input is the raw 8-bit image.
INPUT_BITS = 8
#: Real value of one input step: pixel ``x`` (0…255) means ``x / 255``.
INPUT_SCALE = 1.0 / 255.0
#: Smallest activation clip a :class:`QAct` uses, so that its scale is never 0 (a layer whose
#: calibration batches were all ≤ 0 gets this clip; its output is then 0 almost everywhere).
MIN_CLIP = 1e-4


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) in the forward pass, identity in the backward pass."""
    return x + (torch.round(x) - x).detach()


def weight_qmax(bits: int) -> int:
    """Largest weight integer of narrow-range ``Int(bits)``: ``2^(bits−1) − 1``."""
    return (1 << (bits - 1)) - 1


def weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel scale ``s_w[c] = max|w[c]| / (2^(bits−1) − 1)`` in float64.

    A channel whose weights are all zero gets the scale 1 (any positive value would do:
    its integer weights are 0 whatever the scale, and the folding treats it as a
    constant channel).
    """
    peak = weight.detach().to(torch.float64).abs().reshape(weight.shape[0], -1).amax(dim=1)
    return torch.where(peak > 0, peak / weight_qmax(bits), torch.ones_like(peak))


def quantize_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_int, s_w)``: int64 weights in ``±(2^(bits−1) − 1)`` and their float64 channel scales.

    ``w_int = clamp(round(w / s_w), ±qmax)`` in float64 (round half to even); the channel's
    largest magnitude maps to exactly ``±qmax``.
    """
    scale = weight_scale(weight, bits)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.round(weight.detach().to(torch.float64) / scale.view(shape))
    qmax = weight_qmax(bits)
    return q.clamp(-qmax, qmax).to(torch.int64), scale


def fake_quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``w_int · s_w`` in ``weight``'s dtype, with the gradient of the identity (STE)."""
    w_int, scale = quantize_weight(weight, bits)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    quantized = (w_int.to(torch.float64) * scale.view(shape)).to(weight.dtype)
    return weight + (quantized - weight).detach()


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
    """``nn.Conv2d`` with narrow-range symmetric ``Int(weight_bits)`` per-output-channel weights.

    The forward pass convolves with ``w_int[c] · s_w[c]`` (:func:`fake_quantize_weight`) and the
    float bias; the gradient reaches ``weight`` unchanged (STE). The bias stays float here: the
    integer folding rounds it onto the accumulator grid. Padding is zero padding given as
    integers (no ``"same"`` strings, no other padding modes).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, weight_bits: int = 8):
        if isinstance(padding, str):
            raise ValueError(f"QConv2d padding must be integers, not {padding!r}")
        if not isinstance(weight_bits, int) or isinstance(weight_bits, bool) or not 2 <= weight_bits <= 16:
            raise ValueError(f"QConv2d weight_bits must be an integer in 2…16, not {weight_bits!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.weight_bits = weight_bits

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, s_w)`` of the current weights (see :func:`quantize_weight`)."""
        return quantize_weight(self.weight, self.weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, fake_quantize_weight(self.weight, self.weight_bits), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_bits={self.weight_bits}"


class QAct(nn.Module):
    """Output activation quantizer to ``bits`` bits, unsigned or signed narrow range.

    ``scale = clip / (2^b − 1)`` (unsigned, integers ``0 … 2^b − 1``) or
    ``clip / (2^(b−1) − 1)`` (signed, integers ``±(2^(b−1) − 1)``). The forward pass returns
    ``clamp(round(x / scale), lo, hi) · scale``; its gradient is 1 where ``x`` lies inside
    ``[lo·scale, hi·scale]`` and 0 outside (clipped STE).

    ``clip`` is a buffer. In training mode each batch first updates it: the first batch sets
    it to the batch maximum (of ``x``, or of ``|x|`` when signed), later batches move it by
    ``clip ← (1 − momentum)·clip + momentum·max``; it never drops below :data:`MIN_CLIP`.
    In eval mode it is fixed. An uncalibrated quantizer uses ``clip = 1``.
    """

    def __init__(self, bits: int = 8, signed: bool = False, momentum: float = 0.1):
        super().__init__()
        if not isinstance(signed, bool):
            raise ValueError(f"QAct signed must be true or false, not {signed!r}")
        low = 2 if signed else 1
        if not isinstance(bits, int) or isinstance(bits, bool) or not low <= bits <= 16:
            raise ValueError(f"QAct bits must be an integer in {low}…16 for a "
                             f"{'signed' if signed else 'unsigned'} activation, not {bits!r}")
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"QAct momentum must lie in (0, 1], not {momentum!r}")
        self.bits = bits
        self.signed = signed
        self.momentum = float(momentum)
        self.register_buffer("clip", torch.tensor(1.0))
        self.register_buffer("calibrated", torch.tensor(False))

    @property
    def qrange(self) -> tuple[int, int]:
        """The integer range ``(lo, hi)`` of the output."""
        return act_range(self.bits, self.signed)

    @property
    def scale(self) -> float:
        """Real value of one output step, in float64: ``clip / hi``."""
        return max(float(self.clip), MIN_CLIP) / self.qrange[1]

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        peak = (x.abs() if self.signed else x).max().to(self.clip.dtype).clamp(min=MIN_CLIP)
        if bool(self.calibrated):
            self.clip.mul_(1.0 - self.momentum).add_(self.momentum * peak)
        else:
            self.clip.copy_(peak)
            self.calibrated.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel():
            self._observe(x)
        lo, hi = self.qrange
        scale = self.scale
        clipped = x.clamp(lo * scale, hi * scale)
        return _round_ste(clipped / scale) * scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, clip={float(self.clip):.4g}"


class QReLU(QAct):
    """Unsigned :class:`QAct`: ReLU and quantization to ``bits`` bits in one layer."""

    def __init__(self, bits: int = 8, momentum: float = 0.1):
        super().__init__(bits=bits, signed=False, momentum=momentum)


class ArgMax(nn.Module):
    """Index of the first maximum over channels, ``(N, 1, H, W)`` int64 (the class map)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmax(x, dim=1, keepdim=True)

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
* :class:`QConvTranspose2d` — ``nn.ConvTranspose2d`` with the same weight quantizers (one scale per
  *output* channel; torch's weight layout ``(C_in, C_out/groups, kh, kw)``).
* :class:`QAct` / :class:`QReLU` — activation quantizer (``b``-bit unsigned or signed narrow
  range) whose clip is calibrated by an exponential moving average (EMA) of the batch maximum
  (default), fixed, or learned (PACT); optionally rounded up to a power-of-two scale; or *tied* to
  another QAct's scale (``share=``, :func:`tie_scale`) so that residual sums and concatenations meet
  at one scale, as the integer ``Add`` and ``Concat`` require.
* :class:`QAvgPool2d` / :class:`QUpsample` — ``nn.AvgPool2d`` (``2^n`` elements) and ``nn.Upsample``
  (nearest, bilinear ×2^k) whose float forward rounds like the integer ops, on the grid of the QAct
  that feeds them (``grid=``).
* :class:`ArgMax` — the index of the first maximum over channels, ``(N, 1, H, W)``.

``BatchNorm2d`` and ``MaxPool2d`` are the standard torch layers; :class:`~hwseg.quant.norm.L1BatchNorm2d`
is the integer-training paper's BatchNorm without square and root.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from .quantizers import (WEIGHT_MODES, fake_quantize_pow2, fake_quantize_weight, pow2_ceil, quantize_weight,
                         round_ste, weight_qmax, weight_scale)

__all__ = ["INPUT_BITS", "INPUT_SCALE", "MIN_CLIP", "CLIP_MODES", "QuantInput", "QConv2d", "QConvTranspose2d", "QAct",
           "QReLU", "ArgMax", "QAvgPool2d", "QUpsample", "tie_scale", "out_major", "in_major",
           "weight_qmax", "weight_scale", "quantize_weight", "act_range", "fake_quantize_weight"]

#: The network input is the raw 8-bit image.
INPUT_BITS = 8
#: Real value of one input step: pixel ``x`` (0…255) means ``x / 255``.
INPUT_SCALE = 1.0 / 255.0
#: Smallest activation clip a :class:`QAct` uses, so that its scale is never 0 (a layer whose
#: calibration batches were all ≤ 0 gets this clip; its output is then 0 almost everywhere).
MIN_CLIP = 1e-4
#: How a :class:`QAct` sets its clip.
CLIP_MODES = ("ema", "fixed", "learned", "tied")

_round_ste = round_ste


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a quantized activation: ``0 … 2^b − 1`` or narrow ``±(2^(b−1) − 1)``."""
    if signed:
        return -weight_qmax(bits), weight_qmax(bits)
    return 0, (1 << bits) - 1



def _check_weight_args(kind: str, weight_bits, weight_quant, weight_exponent, bias_bits) -> int:
    """Validate the weight-quantizer arguments of a quantized convolution; return ``weight_bits``
    (1 for binary weights)."""
    if weight_quant not in WEIGHT_MODES:
        raise ValueError(f"{kind} weight_quant must be one of {', '.join(map(repr, WEIGHT_MODES))}, "
                         f"not {weight_quant!r}")
    if weight_quant == "binary":
        if weight_bits not in (1, 8):
            raise ValueError(f"{kind} with binary weights has 1-bit weights, not weight_bits={weight_bits!r}")
        weight_bits = 1
    elif not isinstance(weight_bits, int) or isinstance(weight_bits, bool) or not 2 <= weight_bits <= 16:
        raise ValueError(f"{kind} weight_bits must be an integer in 2…16, not {weight_bits!r}")
    if weight_exponent is not None and (weight_quant != "pow2" or not isinstance(weight_exponent, int)
                                        or isinstance(weight_exponent, bool)):
        raise ValueError(f"{kind} weight_exponent is an integer for weight_quant='pow2' only, "
                         f"not {weight_exponent!r} with {weight_quant!r}")
    if bias_bits is not None and (not isinstance(bias_bits, int) or isinstance(bias_bits, bool)
                                  or not 2 <= bias_bits <= 32):
        raise ValueError(f"{kind} bias_bits must be None or an integer in 2…32, not {bias_bits!r}")
    return weight_bits


def _weight_repr(conv) -> str:
    text = f", weight_bits={conv.weight_bits}"
    if conv.weight_quant != "int":
        text += f", weight_quant={conv.weight_quant!r}"
    if conv.weight_exponent is not None:
        text += f", weight_exponent={conv.weight_exponent}"
    if conv.bias_bits is not None:
        text += f", bias_bits={conv.bias_bits}"
    return text


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
        weight_bits = _check_weight_args("QConv2d", weight_bits, weight_quant, weight_exponent, bias_bits)
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
        return super().extra_repr() + _weight_repr(self)


def out_major(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A transposed convolution's weight ``(C_in, C_out/G, kh, kw)`` (torch's layout) rearranged to
    ``(C_out, C_in/G, kh, kw)``: row ``o`` holds every weight of output channel ``o``."""
    cin, cout_g, kh, kw = weight.shape
    return (weight.reshape(groups, cin // groups, cout_g, kh, kw).transpose(1, 2)
            .reshape(groups * cout_g, cin // groups, kh, kw))


def in_major(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse of :func:`out_major`: ``(C_out, C_in/G, kh, kw)`` → ``(C_in, C_out/G, kh, kw)``."""
    cout, cin_g, kh, kw = weight.shape
    return (weight.reshape(groups, cout // groups, cin_g, kh, kw).transpose(1, 2)
            .reshape(groups * cin_g, cout // groups, kh, kw))


class QConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with quantized weights: the transposed-convolution twin of :class:`QConv2d`.

    Same weight quantizers (``weight_quant`` ``"int"``, ``"pow2"``, ``"binary"``), ``weight_bits``,
    ``weight_exponent`` and ``bias_bits``. torch's weight layout is ``(C_in, C_out/groups, kh, kw)``;
    the per-output-channel scales of ``"int"`` are taken over every weight of an output channel
    (``weight[g·C_in/G:(g+1)·C_in/G, o mod C_out/G]``), so :meth:`quantized_weight` returns ``s_w``
    of length ``C_out``. The forward pass is ``conv_transpose2d`` with ``w_int · s_w`` (STE
    gradient), including ``output_padding``; padding is zero padding, ``output_size`` is not taken.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, weight_bits: int = 8, weight_quant: str = "int",
                 weight_exponent: int | None = None, bias_bits: int | None = None):
        if isinstance(padding, str):
            raise ValueError(f"QConvTranspose2d padding must be integers, not {padding!r}")
        weight_bits = _check_weight_args("QConvTranspose2d", weight_bits, weight_quant, weight_exponent, bias_bits)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         output_padding=output_padding, groups=groups, bias=bias, dilation=dilation)
        self.weight_bits = weight_bits
        self.weight_quant = weight_quant
        self.weight_exponent = weight_exponent
        self.bias_bits = bias_bits

    def quantized_weight(self, out_major_layout: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, s_w)``: int64 weights in torch's layout ``(C_in, C_out/G, kh, kw)`` (or, with
        ``out_major_layout``, ``(C_out, C_in/G, kh, kw)``) and the float64 scale of each output channel."""
        w_int, scale = quantize_weight(out_major(self.weight, self.groups), self.weight_bits, self.weight_quant,
                                       self.weight_exponent)
        return (w_int if out_major_layout else in_major(w_int, self.groups)), scale

    effective_bias = QConv2d.effective_bias
    quantize = True

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None:
            raise ValueError("QConvTranspose2d takes no output_size; set output_padding instead")
        if not self.quantize:
            weight, bias = self.weight, self.bias
        else:
            w_int, scale = self.quantized_weight(out_major_layout=True)
            grid = (w_int.to(torch.float64) * scale.view(-1, 1, 1, 1)).to(self.weight.dtype)
            weight = in_major(grid, self.groups) + (self.weight - self.weight.detach())
            bias = self.effective_bias()
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)

    def extra_repr(self) -> str:
        return super().extra_repr() + _weight_repr(self)


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
    * ``"tied"`` (``share=<another QAct>``, or :func:`tie_scale`) — no clip of its own: the scale is
      the other QAct's (``scale`` reads it, so it follows that QAct's calibration), while ``bits`` and
      ``signed`` (the integer range) are this QAct's own. This is how a residual branch writes at the
      scale of its skip (e.g. a signed 9-bit branch output at the scale of the unsigned 8-bit block
      input) and how the inputs of a ``torch.cat`` share a scale, as the integer ``Add`` and ``Concat``
      need (design.md §2). Gradient w.r.t. ``x`` as for ``"ema"``; none reaches the other QAct's clip.
    """

    def __init__(self, bits: int = 8, signed: bool = False, momentum: float = 0.1, clip: float | None = None,
                 learn_clip: bool = False, pow2: bool = False, share: "QAct | None" = None):
        super().__init__()
        if share is not None:
            if not isinstance(share, QAct):
                raise ValueError(f"QAct share must be another QAct, not {type(share).__name__}")
            if clip is not None or learn_clip or pow2:
                raise ValueError("a QAct with share= takes its scale from the shared QAct; give it no clip, "
                                 "learn_clip or pow2")
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
        object.__setattr__(self, "_leader", None)   # not a submodule: the shared QAct lives elsewhere
        if share is not None:
            tie_scale(self, share)

    @property
    def tied_to(self) -> "QAct | None":
        """The QAct whose scale this one uses (``clip_mode == "tied"``), else None."""
        return self._leader

    @property
    def qrange(self) -> tuple[int, int]:
        """The integer range ``(lo, hi)`` of the output."""
        return act_range(self.bits, self.signed)

    @property
    def scale(self) -> float:
        """Real value of one output step, in float64: ``clip / hi`` (rounded up to a power of two
        with ``pow2``); a tied QAct's is exactly the shared QAct's."""
        if self._leader is not None:
            return self._leader.scale
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
        if self._leader is not None:
            return f"bits={self.bits}, signed={self.signed}, scale tied, {self.scale:.4g}"
        text = f"bits={self.bits}, signed={self.signed}, clip={float(self.clip.detach()):.4g}"
        if self.clip_mode != "ema":
            text += f", clip_mode={self.clip_mode!r}"
        if self.pow2:
            text += ", pow2=True"
        return text


def tie_scale(follower: QAct, leader: QAct) -> QAct:
    """Make ``follower`` quantize at ``leader``'s scale (``clip_mode "tied"``, see :class:`QAct`); its
    own bits and signedness stay. Returns ``follower``. A tie that would form a cycle is refused."""
    if not isinstance(follower, QAct) or not isinstance(leader, QAct):
        raise ValueError("tie_scale ties one QAct to another")
    node = leader
    while node is not None:
        if node is follower:
            raise ValueError("tie_scale would tie a QAct to itself (a cycle of shared scales)")
        node = node._leader
    object.__setattr__(follower, "_leader", leader)
    follower.clip_mode = "tied"
    follower.pow2 = False
    return follower


class QReLU(QAct):
    """Unsigned :class:`QAct`: ReLU and quantization to ``bits`` bits in one layer."""

    def __init__(self, bits: int = 8, momentum: float = 0.1, clip: float | None = None, learn_clip: bool = False,
                 pow2: bool = False, share: QAct | None = None):
        super().__init__(bits=bits, signed=False, momentum=momentum, clip=clip, learn_clip=learn_clip, pow2=pow2,
                         share=share)


def _check_grid(kind: str, grid):
    if grid is not None and not (isinstance(grid, (QAct, QuantInput))):
        raise ValueError(f"{kind} grid must be the QAct (or QuantInput) whose output it reads, not "
                         f"{type(grid).__name__}")


class QAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` over a window of ``2^n`` elements (zero padding counted, no ``ceil_mode``) whose
    float forward rounds exactly like the integer ``AvgPool``: ``((Σ q) + 2^(n−1)) >> n`` on the
    integers ``q = x / s`` of its input's grid, ``s`` being ``grid.scale`` (``grid``: the QAct — or
    QuantInput — that produced the input). So the QAT model sees what the accelerator computes
    (straight-through gradient of the plain average). Without ``grid`` it is the plain float average,
    which the integer path still rounds (see :mod:`hwseg.quant.lowering`).
    """

    def __init__(self, kernel_size, stride=None, padding=0, grid: "QAct | QuantInput | None" = None):
        super().__init__(kernel_size, stride, padding)
        kh, kw = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,) * 2
        if (kh * kw) & (kh * kw - 1):
            raise ValueError(f"QAvgPool2d averages a power-of-two number of elements, not {kh}×{kw}")
        _check_grid("QAvgPool2d", grid)
        object.__setattr__(self, "_grid", grid)      # not a submodule: it lives elsewhere in the model
        self._shift = (kh * kw).bit_length() - 1

    @property
    def grid(self):
        return self._grid

    quantize = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.quantize or self._grid is None:
            return out
        scale = self._grid.scale
        q = torch.round(x.detach().to(torch.float64) / scale)
        total = F.avg_pool2d(q, self.kernel_size, self.stride, self.padding, divisor_override=1)
        rounded = torch.floor((total + (0.5 if self._shift else 0.0) * (1 << self._shift)) / (1 << self._shift))
        return out + (rounded * scale).to(out.dtype) - out.detach()


class QUpsample(nn.Upsample):
    """``nn.Upsample`` by integer factors (``"nearest"``, or ``"bilinear"`` with ``align_corners=False`` and
    power-of-two factors) whose float forward rounds a bilinear result exactly like the integer
    ``Upsample``: ``(Σ w·q + 2^(s−1)) >> s`` on the integers ``q = x / grid.scale`` of its input
    (``grid``: the QAct that produced the input); straight-through gradient. Nearest needs no rounding.
    Without ``grid`` a bilinear upsampling is the plain float one (see :mod:`hwseg.quant.lowering`).
    """

    def __init__(self, scale_factor, mode: str = "nearest", grid: "QAct | QuantInput | None" = None):
        super().__init__(scale_factor=scale_factor, mode=mode, align_corners=False if mode == "bilinear" else None)
        _check_grid("QUpsample", grid)
        object.__setattr__(self, "_grid", grid)

    @property
    def grid(self):
        return self._grid

    quantize = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.quantize or self._grid is None or self.mode != "bilinear":
            return out
        factors = self.scale_factor if isinstance(self.scale_factor, tuple) else (self.scale_factor,) * 2
        shift = sum(int(f).bit_length() for f in factors if f > 1)
        scale = self._grid.scale
        q = torch.round(x.detach().to(torch.float64) / scale)
        exact = F.interpolate(q, scale_factor=factors, mode="bilinear", align_corners=False) * float(1 << shift)
        rounded = torch.floor((torch.round(exact) + (1 << shift) // 2) / (1 << shift))
        return out + (rounded * scale).to(out.dtype) - out.detach()


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

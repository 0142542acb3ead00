"""Integer-training mode (Yang et al. 2020, networks.md): 8-bit grids for training as well as inference.

:func:`integer_training` switches a model of hwseg.quant layers to the paper's scheme and installs
the gradient quantization:

* **weights** — every :class:`QConv2d` and :class:`QConvTranspose2d` uses ``weight_quant="pow2"`` with
  ``weight_bits=8`` and the
  fixed exponent ``−7``: the forward pass (and the folded integer model) sees
  ``clamp(round(w·2^7), ±127) · 2^−7``; conv biases lie on an 8-bit power-of-two grid
  (``bias_bits=8``, exponent from the bias's own maximum). The float ``weight`` tensor stays the
  straight-through accumulator of the updates (call :meth:`IntegerTraining.snap_weights_` to put
  it on the grid itself);
* **activations** — every :class:`QAct` uses a power-of-two scale (``pow2=True``); its clip stays
  calibrated (EMA) or fixed/learned as configured, i.e. static at inference. Its width must be ≤ 8 bits;
* **BatchNorm** — only :class:`L1BatchNorm2d` (BN without square and root); its statistics
  (batch and running, as used) lie on 16-bit and its γ/β on 8-bit power-of-two grids. A plain
  ``nn.BatchNorm2d`` is refused;
* **errors** — the gradient with respect to every leaf layer's input (the error the next layer
  sends back) and with respect to the model's output is quantized to an 8-bit power-of-two grid;
* **weight gradients** — the gradient of every parameter is quantized to an 8-bit power-of-two grid
  before it is accumulated into ``.grad``.

Gradients use a **dynamic** power-of-two scale per tensor: ``2^e`` with the smallest ``e`` such that
``max|g| ≤ 127 · 2^e`` (:func:`~hwseg.quant.quantizers.quantize_pow2`), round to nearest, or
stochastic rounding with ``stochastic=True``. (A static gradient scale, as required for activations
at inference, is not needed in training: nothing streams.)

The layer settings are permanent (they define the trained model's integer scheme and fold exactly
into the integer program); :meth:`IntegerTraining.remove` (or leaving the ``with`` block) removes
only the gradient hooks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import QAct, QConv2d, QConvTranspose2d, QuantInput
from .norm import L1BatchNorm2d
from .quantizers import pow2_exponent, quantize_grad, quantize_pow2, weight_qmax

__all__ = ["IntegerTraining", "integer_training", "on_pow2_grid"]


def on_pow2_grid(t: torch.Tensor, bits: int) -> bool:
    """Whether every value of ``t`` is ``q · 2^e`` for one integer ``e`` and integers ``|q| ≤ 2^(bits−1) − 1``."""
    t = t.detach().to(torch.float64)
    peak = float(t.abs().max()) if t.numel() else 0.0
    if peak == 0.0:
        return True
    # On the grid 2^E means on every finer grid too, so the finest admissible step decides.
    q = t / math.ldexp(1.0, pow2_exponent(peak, weight_qmax(bits)))
    return bool(torch.all(q == torch.round(q)))


class IntegerTraining:
    """The handle :func:`integer_training` returns: the settings and the installed hooks.

    Use as a context manager (``with integer_training(model): …``) or call :meth:`remove`.
    """

    def __init__(self, model: nn.Module, grad_bits: int, weight_bits: int, weight_exponent: int,
                 stochastic: bool, generator: torch.Generator | None):
        self.model = model
        self.grad_bits = grad_bits
        self.weight_bits = weight_bits
        self.weight_exponent = weight_exponent
        self.stochastic = stochastic
        self.generator = generator
        self.handles: list = []

    def _grad(self, g: torch.Tensor) -> torch.Tensor:
        return quantize_pow2(g, self.grad_bits, stochastic=self.stochastic, generator=self.generator)[0]

    def _wrap(self, value):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad:
            return quantize_grad(value, self.grad_bits, self.stochastic, self.generator)
        return value

    def _install(self) -> None:
        for module in self.model.modules():
            if next(module.children(), None) is None and not isinstance(module, QuantInput):
                self.handles.append(module.register_forward_pre_hook(
                    lambda m, args: tuple(self._wrap(a) for a in args)))
        self.handles.append(self.model.register_forward_hook(lambda m, args, out: self._wrap(out)))
        for p in self.model.parameters():
            if p.requires_grad:
                self.handles.append(p.register_hook(self._grad))

    @torch.no_grad()
    def snap_weights_(self) -> None:
        """Put every QConv2d's stored ``weight`` on its grid (``clamp(round(w·2^7), ±127)·2^−7``)."""
        for module in self.model.modules():
            if isinstance(module, (QConv2d, QConvTranspose2d)):
                q, _ = quantize_pow2(module.weight, self.weight_bits, exponent=self.weight_exponent)
                module.weight.copy_(q)

    def remove(self) -> None:
        """Remove the gradient hooks (the layer settings stay)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __enter__(self) -> "IntegerTraining":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def integer_training(model: nn.Module, *, weight_bits: int = 8, weight_exponent: int = -7, act_bits: int = 8,
                     grad_bits: int = 8, stat_bits: int = 16, param_bits: int = 8, bias_bits: int = 8,
                     stochastic: bool = False, generator: torch.Generator | None = None) -> IntegerTraining:
    """Switch ``model`` to integer training (see the module docstring) and return the hook handle.

    ``weight_bits``/``weight_exponent``: the weight grid (``Int(8)``, step ``2^−7``); ``act_bits``: the
    widest QAct allowed (ValueError otherwise); ``grad_bits``: errors and weight gradients;
    ``stat_bits``/``param_bits``: L1BatchNorm2d statistics and γ/β; ``bias_bits``: conv biases.
    Binary-weight convs and ``nn.BatchNorm2d`` layers are refused (ValueError).
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(f"layer '{name}' is a {type(module).__name__}: integer training normalizes with "
                             f"hwseg.quant.L1BatchNorm2d (BatchNorm without square and root)")
        if isinstance(module, (QConv2d, QConvTranspose2d)) and module.weight_quant == "binary":
            raise ValueError(f"layer '{name}' has binary weights: integer training uses 8-bit pow2 weights")
        if isinstance(module, QAct) and module.bits > act_bits:
            raise ValueError(f"layer '{name}' quantizes to {module.bits} bits: integer training allows at most "
                             f"{act_bits}-bit activations")
    for module in model.modules():
        if isinstance(module, (QConv2d, QConvTranspose2d)):
            module.weight_quant, module.weight_bits, module.weight_exponent = "pow2", weight_bits, weight_exponent
            module.bias_bits = bias_bits if module.bias is not None else None
        elif isinstance(module, QAct) and module.tied_to is None:    # a tied QAct has its leader's scale
            module.pow2 = True
        elif isinstance(module, L1BatchNorm2d):
            module.stat_bits, module.param_bits = stat_bits, param_bits
    handle = IntegerTraining(model, grad_bits, weight_bits, weight_exponent, stochastic, generator)
    handle._install()
    return handle

"""L1 BatchNorm: the integer-training paper's "BatchNorm without square and root".

:class:`L1BatchNorm2d` normalizes each channel by its mean absolute deviation instead of its
standard deviation:

    y = γ · (x − μ) / (MAD + eps) + β,      μ = E[x],  MAD = E|x − μ|

with the expectations over the batch and the spatial positions ``(N, H, W)`` of the channel.
In training mode ``μ`` and ``MAD`` are the batch's (and gradients flow through both); the running
estimates ``running_mean``/``running_mad`` follow them by ``r ← (1 − momentum)·r + momentum·batch``
(``momentum=None``: the plain average of all batches seen, as torch's BatchNorm). In eval mode the
running estimates are used, so the layer is the per-channel affine map ``y = a·x + b`` with

    a = γ / (MAD + eps),   b = β − a·μ,

which folds into the preceding convolution exactly like BatchNorm (:meth:`L1BatchNorm2d.folded_affine`).

Integer-training mode (``stat_bits``/``param_bits`` set, see :mod:`hwseg.quant.integer_training`):
the statistics ``μ`` and ``MAD`` used by the forward pass (batch and running) lie on ``stat_bits``-bit
signed power-of-two grids and ``γ``, ``β`` on ``param_bits``-bit ones, each with the exponent from
the tensor's own maximum (:func:`~hwseg.quant.quantizers.quantize_pow2`), straight-through gradients.
The running estimates themselves are stored in float and quantized where used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .quantizers import fake_quantize_pow2

__all__ = ["L1BatchNorm2d"]


class L1BatchNorm2d(nn.Module):
    """BatchNorm2d that divides by the mean absolute deviation ``E|x − μ|`` (see the module docstring).

    ``L1BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True)``: parameters ``weight`` (γ,
    ones) and ``bias`` (β, zeros) when ``affine``; buffers ``running_mean`` (zeros), ``running_mad``
    (ones) and ``num_batches_tracked``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 stat_bits: int | None = None, param_bits: int | None = None):
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"L1BatchNorm2d num_features must be a positive integer, not {num_features!r}")
        if not float(eps) > 0:
            raise ValueError(f"L1BatchNorm2d eps must be positive, not {eps!r}")
        if momentum is not None and not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"L1BatchNorm2d momentum must be None or lie in (0, 1], not {momentum!r}")
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.stat_bits = stat_bits
        self.param_bits = param_bits
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_mad", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_mad.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _stat(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.stat_bits is None else fake_quantize_pow2(t, self.stat_bits)

    def _param(self, t: torch.Tensor | None, fill: float, like: torch.Tensor) -> torch.Tensor:
        if t is None:
            return torch.full((self.num_features,), fill, dtype=like.dtype, device=like.device)
        return t if self.param_bits is None else fake_quantize_pow2(t, self.param_bits)

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(μ, MAD, γ, β)`` as the eval-mode forward pass uses them (quantized in integer-training mode)."""
        mean, mad = self._stat(self.running_mean), self._stat(self.running_mad)
        return mean, mad, self._param(self.weight, 1.0, mean), self._param(self.bias, 0.0, mean)

    def folded_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` in float64 with eval-mode ``y = a·x + b``: ``a = γ/(MAD + eps)``, ``b = β − a·μ``."""
        mean, mad, gamma, beta = (t.detach().to(torch.float64).cpu().numpy() for t in self.statistics())
        a = gamma / (mad + self.eps)
        return a, beta - a * mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"L1BatchNorm2d expects (N, {self.num_features}, H, W) input, not {tuple(x.shape)}")
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            mad = (x - mean.view(1, -1, 1, 1)).abs().mean(dim=(0, 2, 3))
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else float(self.momentum)
                self.running_mean.mul_(1.0 - factor).add_(factor * mean.detach().to(self.running_mean.dtype))
                self.running_mad.mul_(1.0 - factor).add_(factor * mad.detach().to(self.running_mad.dtype))
            mean, mad = self._stat(mean), self._stat(mad)
            gamma, beta = self._param(self.weight, 1.0, x), self._param(self.bias, 0.0, x)
        else:
            mean, mad, gamma, beta = self.statistics()
        shape = (1, -1, 1, 1)
        return (x - mean.view(shape)) / (mad.view(shape) + self.eps) * gamma.view(shape) + beta.view(shape)

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        if self.stat_bits is not None or self.param_bits is not None:
            text += f", stat_bits={self.stat_bits}, param_bits={self.param_bits}"
        return text

"""Calibration: set BatchNorm statistics and QAct clips from sample images without training."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .layers import QAct
from .norm import L1BatchNorm2d

__all__ = ["calibrate"]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], reset: bool = True) -> nn.Module:
    """Run ``model`` in training mode on every batch (float tensors of pixels 0…255), then eval mode.

    Each BatchNorm2d and L1BatchNorm2d accumulates the plain average of the batch statistics
    (momentum ``None`` while calibrating; its momentum is restored afterwards); each QAct with an
    EMA clip updates it by its EMA of the batch maximum (fixed and learned clips do not change). With ``reset`` the running statistics and clips start afresh.
    No parameter changes. Returns ``model`` (in eval mode).
    """
    norms = [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, L1BatchNorm2d))]
    momenta = [m.momentum for m in norms]
    if reset:
        for m in norms:
            m.reset_running_stats()
        for m in model.modules():
            if isinstance(m, QAct) and m.clip_mode == "ema":
                m.calibrated.fill_(False)
    try:
        for m in norms:
            m.momentum = None
        model.train()
        for batch in batches:
            model(batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return model

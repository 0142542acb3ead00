"""Seeded random ``sequential`` models for the exactness and folding tests."""

from __future__ import annotations

import random

import torch
from torch import nn

from hwseg.models import build_model
from hwseg.quant import L1BatchNorm2d, QAct, QConv2d, QReLU, calibrate


def random_layers(rng: random.Random, max_blocks: int = 3, min_bits: int = 2):
    """``(layers, input_shape)``: a random chain QuantInput → blocks of QConv2d [BN] [ReLU] QAct
    [MaxPool] [QAct] → [ArgMax], with kernels 1–5, strides 1–2, dilations 1–3."""
    channels = rng.randint(1, 4)
    size = rng.randint(10, 20)
    shape = (channels, size, size)
    layers = [{"type": "QuantInput"}]
    c = channels
    for _ in range(rng.randint(1, max_blocks)):
        k, s, d = rng.randint(1, 5), rng.randint(1, 2), rng.randint(1, 3)
        if k == 1:
            d = 1
        p = rng.randint(0, d * (k - 1) // 2 + 1)
        new = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if new < 3:
            s, p = 1, d * (k - 1) // 2
            new = (size + 2 * p - d * (k - 1) - 1) // s + 1
        out = rng.randint(1, 8)
        layers.append({"type": "QConv2d", "in": c, "out": out, "kernel": k, "stride": s, "padding": p,
                       "dilation": d, "bias": rng.random() < 0.7, "weight_bits": rng.randint(min_bits, 8)})
        c, size = out, new
        if rng.random() < 0.7:
            layers.append({"type": "BatchNorm2d", "channels": c})
        if rng.random() < 0.2:
            layers.append({"type": "ReLU"})
        if rng.random() < 0.5:
            layers.append({"type": "QReLU", "bits": rng.randint(min_bits, 8)})
        else:
            layers.append({"type": "QAct", "bits": rng.randint(max(min_bits, 2), 8), "signed": rng.random() < 0.6})
        if size >= 5 and rng.random() < 0.4:
            pk = rng.randint(2, 3)
            layers.append({"type": "MaxPool2d", "kernel": pk, "stride": rng.randint(1, 2), "padding": rng.randint(0, pk // 2)})
            size = (size + 2 * layers[-1]["padding"] - pk) // layers[-1]["stride"] + 1
        if rng.random() < 0.2:
            layers.append({"type": "QAct", "bits": rng.randint(max(min_bits, 2), 8), "signed": rng.random() < 0.5})
    if rng.random() < 0.5:
        layers.append({"type": "ArgMax"})
    return layers, shape


def _vary(model, seed: int, l1bn: float, weight_modes: float) -> None:
    """Swap, with a generator of its own (the layer choices stay those of ``seed``), some BatchNorm2d
    for L1BatchNorm2d (probability ``l1bn``) and give some QConv2d binary or pow2 weights
    (probability ``weight_modes``, half each)."""
    rng = random.Random(10_000 + seed)
    for name, module in list(model.named_children()):
        if isinstance(module, nn.BatchNorm2d) and rng.random() < l1bn:
            setattr(model, name, L1BatchNorm2d(module.num_features, eps=rng.choice([1e-5, 1e-3])))
        elif isinstance(module, QConv2d) and rng.random() < weight_modes:
            if rng.random() < 0.5:
                module.weight_quant, module.weight_bits = "binary", 1
            else:
                module.weight_quant = "pow2"
                module.weight_exponent = rng.choice([None, -7, -5])


def _vary_clips(model, seed: int, clip_modes: float) -> None:
    """After calibration, turn some EMA QActs into fixed-clip or learned-clip (PACT) ones with the
    calibrated clip, and some into power-of-two scales."""
    rng = random.Random(20_000 + seed)
    for name, module in list(model.named_children()):
        if type(module) in (QAct, QReLU) and rng.random() < clip_modes:
            kind = rng.choice(["fixed", "learned", "pow2"])
            clip = float(module.clip)
            new = QAct(module.bits, module.signed, clip=clip if kind != "pow2" else None,
                       learn_clip=kind == "learned", pow2=kind == "pow2")
            if kind == "pow2":
                new.clip.fill_(clip)
                new.calibrated.fill_(True)
            setattr(model, name, new.eval())


def random_model(seed: int, l1bn: float = 0.4, weight_modes: float = 0.3, clip_modes: float = 0.3, **kwargs):
    """``(model, input_shape)``: a random sequential model with random BN affine parameters (some
    negative, one γ exactly 0 now and then, one all-zero weight row now and then), calibrated.

    Some BatchNorm2d become L1BatchNorm2d, some convs get binary or pow2 weights and some QActs fixed,
    learned or pow2 clips (see :func:`_vary`, :func:`_vary_clips`; probability 0 keeps the plain model)."""
    rng = random.Random(seed)
    layers, shape = random_layers(rng, **kwargs)
    torch.manual_seed(seed)
    model = build_model("sequential", {"layers": layers})
    _vary(model, seed, l1bn, weight_modes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, L1BatchNorm2d)):
                module.weight.uniform_(-1.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                if rng.random() < 0.3:
                    module.weight[rng.randrange(module.num_features)] = 0.0
            if isinstance(module, QConv2d) and module.out_channels > 1 and rng.random() < 0.3:
                module.weight[rng.randrange(module.out_channels)] = 0.0
    calibrate(model, [torch.randint(0, 256, (4, *shape), generator=torch.Generator().manual_seed(seed + i)).float()
                      for i in range(3)])
    _vary_clips(model, seed, clip_modes)
    return model, shape


def random_images(seed: int, shape, count: int = 2) -> torch.Tensor:
    """``count`` random images of ``shape``: float tensors holding integers 0…255."""
    return torch.randint(0, 256, (count, *shape), generator=torch.Generator().manual_seed(seed)).float()

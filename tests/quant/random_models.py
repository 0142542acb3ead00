"""Seeded random ``sequential`` models for the exactness and folding tests."""

from __future__ import annotations

import random

import torch
from torch import nn

from hwseg.models import build_model
from torch.nn import functional as F

from hwseg.quant import (ArgMax, L1BatchNorm2d, QAct, QAvgPool2d, QConv2d, QConvTranspose2d, QReLU, QuantInput,
                         QUpsample, calibrate)


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


# ----------------------------------------------------------------------------- random DAG models

def _bn(rng, channels, pick=0.7):
    if rng.random() >= pick:
        return None
    return nn.BatchNorm2d(channels) if rng.random() < 0.6 else L1BatchNorm2d(channels)


def _maybe(module):
    return module if module is not None else nn.Identity()


def _weights(rng):
    kind = rng.random()
    if kind < 0.15:
        return dict(weight_quant="binary")
    if kind < 0.3:
        return dict(weight_quant="pow2", weight_exponent=rng.choice([None, -7]))
    return dict(weight_bits=rng.randint(4, 8))


class _ConvBlock(nn.Module):
    """conv k×k (stride 1–2) [BN] [ReLU] QAct — a new scale."""

    def __init__(self, rng, c, size):
        super().__init__()
        k = rng.choice([1, 3])
        stride = 2 if size >= 10 and rng.random() < 0.3 else 1
        self.out_channels = rng.randint(2, 6)
        self.conv = QConv2d(c, self.out_channels, k, stride=stride, padding=k // 2, bias=rng.random() < 0.6,
                            **_weights(rng))
        self.bn = _maybe(_bn(rng, self.out_channels))
        relu = rng.random() < 0.2
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.act = QReLU(8) if relu or rng.random() < 0.6 else QAct(rng.randint(4, 8), signed=True)
        self.size = (size - 1) // stride + 1
        self.leaders = (self.act,)

    def forward(self, x):
        return self.act(self.relu(self.bn(self.conv(x))))


class _ResBlock(nn.Module):
    """A residual block: the branch's last QAct (signed, 1 bit wider) is tied to the skip's scale; the sum is
    quantized at that scale (ReLU or not: one Add) or at a scale of its own (Add + MulShift)."""

    def __init__(self, rng, c, size, leader):
        super().__init__()
        d = rng.choice([1, 2])
        self.c1 = QConv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1), bias=rng.random() < 0.5, **_weights(rng))
        self.a1 = QReLU(8)
        self.c2 = QConv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d), bias=rng.random() < 0.5)
        self.bn2 = _maybe(_bn(rng, c))
        self.branch = QAct(min(leader.bits + 1, 16), signed=True, share=leader)
        self.variant = rng.choice(["relu", "tied", "free", "torch.add"])
        if self.variant == "relu":
            self.out = QReLU(leader.bits, share=leader)
        elif self.variant in ("tied", "torch.add"):
            self.out = QAct(leader.bits, signed=leader.signed, share=leader)
        else:
            self.out = QAct(8, signed=rng.random() < 0.5)
        self.out_channels, self.size, self.leaders = c, size, (self.out,)

    def forward(self, x):
        y = self.branch(self.bn2(self.c2(self.a1(self.c1(x)))))
        if self.variant == "relu":
            return self.out(F.relu(y + x))
        if self.variant == "torch.add":
            return self.out(torch.add(x, y))
        return self.out(x + y)


class _CatBlock(nn.Module):
    """torch.cat variants: same scale and type (a Concat), conv ‖ pool → BN → QAct (the BN pushed into both
    branches), or branches of different scales → QAct (a requantization per branch)."""

    def __init__(self, rng, c, size, leader):
        super().__init__()
        self.variant = rng.choice(["same", "bn", "down", "requant"] if size >= 8 and size % 2 == 0
                                  else ["same", "bn", "requant"])
        extra = rng.randint(1, 4)
        self.first = rng.random() < 0.5
        self.size, self.leaders = size, (leader,)
        if self.variant == "same":
            self.conv = QConv2d(c, extra, 3, padding=1)
            self.act = QAct(leader.bits, signed=leader.signed, share=leader)
        elif self.variant in ("bn", "down"):
            stride = 2 if self.variant == "down" else 1
            self.conv = QConv2d(c, extra, 3, stride=stride, padding=1, bias=rng.random() < 0.5, **_weights(rng))
            self.pool = nn.MaxPool2d(2) if stride == 2 else nn.Identity()
            self.bn = _maybe(_bn(rng, c + extra, pick=0.85))
            relu = rng.random() < 0.5
            self.relu = nn.ReLU() if relu else nn.Identity()
            self.act = QReLU(8) if relu or rng.random() < 0.7 else QAct(8, signed=True)
            self.size = (size - 1) // stride + 1
            self.leaders = (self.act,)
        else:
            self.conv = QConv2d(c, extra, 1)
            self.inner = QReLU(rng.randint(4, 8))
            self.act = QReLU(8)
            self.leaders = (self.act,)
        self.out_channels = c + extra

    def forward(self, x):
        if self.variant == "same":
            y = self.act(self.conv(x))
            return torch.cat([y, x] if self.first else [x, y], 1)
        if self.variant == "requant":
            y = self.inner(self.conv(x))
            return self.act(torch.cat([y, x] if self.first else [x, y], dim=1))
        y, p = self.conv(x), self.pool(x)
        return self.act(self.relu(self.bn(torch.cat([y, p], 1))))


class _ConvTBlock(nn.Module):
    """QConvTranspose2d (kernel 1–4, stride 1–2, padding, output_padding, dilation, groups) [BN] [ReLU] QAct."""

    def __init__(self, rng, c, size):
        super().__init__()
        k, s, d = rng.randint(1, 4), rng.choice([1, 2]), rng.choice([1, 1, 2])
        p = rng.randint(0, (d * (k - 1)) // 2)
        op = rng.randint(0, max(s, d) - 1)
        groups = c if c > 1 and rng.random() < 0.3 else 1
        self.out_channels = groups * rng.randint(1, 3)
        self.conv = QConvTranspose2d(c, self.out_channels, k, stride=s, padding=p, output_padding=op, groups=groups,
                                     dilation=d, bias=rng.random() < 0.6, **_weights(rng))
        self.bn = _maybe(_bn(rng, self.out_channels))
        self.act = QReLU(8) if rng.random() < 0.6 else QAct(8, signed=True)
        self.size = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        self.leaders = (self.act,)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _ResampleBlock(nn.Module):
    """Max-pool, average pool (plain or QAvgPool2d) or upsampling (nearest ×2/×3, bilinear ×2/×4; module,
    F.interpolate or QUpsample): the scale passes through."""

    def __init__(self, rng, c, size, leader):
        super().__init__()
        options = ["avg", "avg_same", "max"] if size >= 6 else []
        if size <= 12:
            options += ["nearest", "bilinear", "interpolate", "qupsample"]
        self.variant = rng.choice(options)
        self.out_channels, self.leaders, self.size = c, (leader,), size
        grid = leader if rng.random() < 0.5 else None
        if self.variant == "avg":
            self.op = (QAvgPool2d(2, grid=grid) if grid is not None else nn.AvgPool2d(2))
            self.size = size // 2
        elif self.variant == "avg_same":           # 2×2 window, stride 1, padding 1
            self.op = nn.AvgPool2d(2, stride=1, padding=1)
            self.size = size + 1
        elif self.variant == "max":
            self.op = nn.MaxPool2d(3, stride=2, padding=1)
            self.size = (size - 1) // 2 + 1
        elif self.variant == "nearest":
            f = rng.choice([2, 3])
            self.op = nn.Upsample(scale_factor=f, mode="nearest")
            self.size = size * f
        elif self.variant == "bilinear":
            f = rng.choice([2, 4]) if size <= 6 else 2
            self.op = nn.Upsample(scale_factor=f, mode="bilinear", align_corners=False)
            self.size = size * f
        elif self.variant == "qupsample":
            self.op = QUpsample(2, "bilinear", grid=leader)
            self.size = size * 2
        else:
            self.op = nn.Identity()
            self.size = size * 2

    def forward(self, x):
        if self.variant == "interpolate":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.op(x)


class RandomDag(nn.Module):
    """A random DAG: QuantInput → conv → random residual, concatenation, transposed-conv, pooling and
    upsampling blocks → [1×1 classifier → signed QAct → ArgMax]."""

    def __init__(self, seed: int):
        super().__init__()
        rng = random.Random(seed)
        c, size = rng.randint(1, 3), rng.randint(8, 16)
        self.shape = (c, size, size)
        self.input = QuantInput()
        blocks = [_ConvBlock(rng, c, size)]
        for _ in range(rng.randint(2, 5)):
            last = blocks[-1]
            c, size, leader = last.out_channels, last.size, last.leaders[0]
            kind = rng.choice(["res", "res", "cat", "cat", "convT", "resample", "conv"])
            if kind == "convT" and size > 12:
                kind = "conv"
            if kind == "res":
                blocks.append(_ResBlock(rng, c, size, leader))
            elif kind == "cat":
                blocks.append(_CatBlock(rng, c, size, leader))
            elif kind == "convT":
                blocks.append(_ConvTBlock(rng, c, size))
            elif kind == "resample" and 4 <= size <= 24:
                blocks.append(_ResampleBlock(rng, c, size, leader))
            else:
                blocks.append(_ConvBlock(rng, c, size))
        self.blocks = nn.Sequential(*blocks)
        self.head = rng.random() < 0.6
        if self.head:
            self.classifier = QConv2d(blocks[-1].out_channels, rng.randint(2, 5), 1)
            self.logits = QAct(8, signed=True)
            self.argmax = ArgMax()

    def forward(self, x):
        x = self.blocks(self.input(x))
        if self.head:
            x = self.argmax(self.logits(self.classifier(x)))
        return x


def random_dag_model(seed: int):
    """``(model, input_shape)``: a seeded :class:`RandomDag` with random BN affine parameters, calibrated."""
    torch.manual_seed(seed)
    model = RandomDag(seed)
    rng = random.Random(30_000 + seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, L1BatchNorm2d)):
                module.weight.uniform_(-1.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                if rng.random() < 0.2:
                    module.weight[rng.randrange(module.num_features)] = 0.0
    shape = model.shape
    calibrate(model, [random_images(seed + 100 + i, shape, 4) for i in range(2)])
    return model, shape

"""``bfcn``: hwseg's BFCN family — bit fully convolutional networks (Wen, Zhou et al., 2016).

The paper's layer table is not public; this family keeps its quantization scheme (networks.md):

* ``scheme="w1a2"`` — 1-bit weights ``sign(w)·mean|W|`` (DoReFa), 2-bit activations;
  ``"w2a2"`` — 2-bit (ternary narrow-range ``{−1, 0, 1}``, per-channel scale) weights;
  ``"w8a8"`` — the same network with 8-bit weights and activations (the int8 reference);
* every low-bit conv is followed by BatchNorm and a 2-bit DoReFa activation
  ``round(clip(x, 0, 1)·3)/3`` (a QAct of 2 bits with the fixed clip 1), so BN + clip + quantize fold
  into 3 integer thresholds per channel (``threshold_bits ≥ 2``) — no multipliers;
* the first layer (on the 8-bit image) and the last (the 1×1 classifier giving 8-bit signed logits)
  have 8-bit weights.

Structure (``w = width``, ``S = stages``; every activation 2-bit unless said otherwise):

=======================  ==========================================================  ==============
part                     layers                                                      resolution
=======================  ==========================================================  ==============
``stem``                 conv 3×3 3→w (int8 weights) → BN → QAct(2)                  1
``enc{i}`` (i = 1…S)     ``convs`` × [conv 3×3 → BN → QAct(2)], channels w·2^min(i,3);  2^−i
                         downsampling by a 2×2 max-pool before the stage
                         (``downsample="pool"``) or by its first conv's stride 2
                         (``"stride"``)
``dec{j}``               ×2 upsampling — ``"nearest"`` / ``"bilinear"`` (QUpsample) or a  up to 1/out_stride
                         2×2 stride-2 transposed conv → BN → QAct(2) (``"deconv"``) —,
                         then (``skips``) concatenation with the encoder feature of that
                         resolution and a conv 3×3 → BN → QAct(2)
``classifier``           conv 1×1 → classes (int8 weights, bias) → QAct(8, signed)     1/out_stride
``argmax``               ArgMax                                                      1/out_stride
=======================  ==========================================================  ==============

All 2-bit activations share the scale 1/3 (the fixed clip), so the decoder's concatenations need no
requantization. IR ops used: Input, Conv2d (Int(8) first/last, Bipolar or Int(2) otherwise),
Threshold (with ``threshold_bits``) or MulShift, MaxPool, Upsample or ConvTranspose2d, Concat, ArgMax.
"""

from __future__ import annotations

import torch
from torch import nn

from hwseg.quant import ArgMax, QAct, QConv2d, QConvTranspose2d, QuantInput, QUpsample

from .common import SegNet, check_bool, check_choice, check_int, check_size
from .registry import register_architecture

__all__ = ["BFCN", "bfcn", "SCHEMES"]

#: scheme → (weight quantizer keyword arguments, activation bits)
SCHEMES = {"w1a2": (dict(weight_quant="binary"), 2), "w2a2": (dict(weight_bits=2), 2),
           # The same network at 8 bits, the int8 reference the binary schemes are compared with.
           "w8a8": (dict(weight_bits=8), 8)}


class _ConvBNAct(nn.Module):
    def __init__(self, nin, nout, act_bits, stride=1, **weights):
        super().__init__()
        self.conv = QConv2d(nin, nout, 3, stride=stride, padding=1, bias=False, **weights)
        self.bn = nn.BatchNorm2d(nout)
        self.act = QAct(act_bits, clip=1.0)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _Up(nn.Module):
    def __init__(self, nin, nout, mode, act_bits, grid, **weights):
        super().__init__()
        self.mode = mode
        if mode == "deconv":
            self.up = QConvTranspose2d(nin, nout, 2, stride=2, bias=False, **weights)
            self.bn = nn.BatchNorm2d(nout)
            self.act = QAct(act_bits, clip=1.0)
        else:
            self.up = QUpsample(2, mode, grid=grid)

    def forward(self, x):
        if self.mode == "deconv":
            return self.act(self.bn(self.up(x)))
        return self.up(x)


class BFCN(SegNet):
    """See the module docstring."""

    def __init__(self, classes=8, width=16, stages=3, convs=2, scheme="w1a2", downsample="pool", upsample="bilinear",
                 out_stride=1, skips=True, input_size=(64, 64)):
        super().__init__()
        weights, bits = SCHEMES[scheme]
        self.downsample, self.skips = downsample, skips
        self.input = QuantInput()
        self.stem = QConv2d(3, width, 3, padding=1, bias=False)          # 8-bit weights on the 8-bit image
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_act = QAct(bits, clip=1.0)
        channels = [width]
        self.pools = nn.ModuleList()
        self.encoder = nn.ModuleList()
        c = width
        for i in range(1, stages + 1):
            out = width << min(i, 3)
            layers = []
            for k in range(convs):
                stride = 2 if (k == 0 and downsample == "stride") else 1
                layers.append(_ConvBNAct(c if k == 0 else out, out, bits, stride, **weights))
            self.pools.append(nn.MaxPool2d(2) if downsample == "pool" else nn.Identity())
            self.encoder.append(nn.Sequential(*layers))
            channels.append(out)
            c = out
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        levels = stages - (out_stride.bit_length() - 1)
        previous = self.encoder[-1][-1].act
        for j in range(levels):
            target = stages - 1 - j                     # the encoder level at the new resolution
            nout = channels[target]
            up = _Up(c, nout if upsample == "deconv" else c, upsample, bits, previous, **weights)
            self.ups.append(up)
            c_up = nout if upsample == "deconv" else c
            self.fuse.append(_ConvBNAct(c_up + (channels[target] if skips else 0), nout, bits, 1, **weights))
            previous = self.fuse[-1].act
            c = nout
        self.classifier = QConv2d(c, classes, 1, bias=True)               # 8-bit weights
        self.logits = QAct(8, signed=True)
        self.argmax = ArgMax()
        self._set_shape(classes, 1 << stages, input_size)
        self.out_stride = out_stride
        # Export BN + clip + quantize of the low-bit layers as thresholds (the 8-bit scheme keeps MulShift).
        self.threshold_bits = bits if bits <= 4 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(self.input(x))))
        features = [x]
        for pool, stage in zip(self.pools, self.encoder):
            x = stage(pool(x))
            features.append(x)
        level = len(self.encoder)
        for up, fuse in zip(self.ups, self.fuse):
            level -= 1
            x = up(x)
            if self.skips:
                x = torch.cat([x, features[level]], 1)
            x = fuse(x)
        return self.argmax(self.logits(self.classifier(x)))


@register_architecture("bfcn")
def bfcn(classes: int = 8, width: int = 16, stages: int = 3, convs: int = 2, scheme: str = "w1a2",
         downsample: str = "pool", upsample: str = "bilinear", out_stride: int = 1, skips: bool = True,
         input_size=(64, 64)) -> BFCN:
    """A BFCN: ``scheme`` ``"w1a2"`` | ``"w2a2"``; ``width`` first-layer channels (doubling per stage up to
    8·width); ``stages`` downsamplings by 2; ``convs`` 3×3 convs per stage; ``downsample`` ``"pool"`` |
    ``"stride"``; ``upsample`` ``"bilinear"`` | ``"nearest"`` | ``"deconv"``; ``out_stride`` 1 (full
    resolution), 2, … up to 2^stages (no decoder at all); ``skips``: U-Net-style concatenations in the decoder; ``input_size`` ``[H, W]``."""
    arch = "bfcn"
    check_int(arch, "classes", classes, 2, 256)
    check_int(arch, "width", width, 1, 1024)
    check_int(arch, "stages", stages, 1, 6)
    check_int(arch, "convs", convs, 1, 8)
    check_choice(arch, "scheme", scheme, tuple(SCHEMES))
    check_choice(arch, "downsample", downsample, ("pool", "stride"))
    check_choice(arch, "upsample", upsample, ("bilinear", "nearest", "deconv"))
    check_choice(arch, "out_stride", out_stride, tuple(1 << k for k in range(stages + 1)))
    check_bool(arch, "skips", skips)
    size = check_size(arch, input_size, 1 << stages)
    return BFCN(classes, width, stages, convs, scheme, downsample, upsample, out_stride, skips, size)

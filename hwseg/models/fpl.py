"""``fpl``: an FPL-style family (factorized pyramidal learning, Atif et al.; networks.md).

FPLNet's exact layer table is not public; this family follows the closely related published pattern
networks.md describes and does not claim to be FPLNet itself:

* **initial block**: ``cat[conv 3×3 s2 (3 → C1 − 6), maxpool 2×2 of the image (3)] → BN → ReLU``
  (quantized to 8 bits), i.e. ERFNet's downsampler;
* **image re-injection** (the Feature-Image Reinforcement idea, no parameters): at each stage the input
  image, average-pooled to the stage's resolution (2×2, 4×4, 8×8 windows; ``QAvgPool2d``, rounded as
  the integer ``AvgPool``), is requantized to the stage's scale (a QAct tied to it: one MulShift) and
  concatenated (3 channels), giving ``C_s`` channels;
* **stages** of FPL blocks on ``C_s`` channels (``C = width·(1, 2, 4)``, multiples of 5): a 1×1 conv
  reduces to ``o`` (``C/5`` channels), then two hierarchical pyramids of factorized dilated convs
  ``D_d`` = conv 3×1 dilation (d,1) → BN → ReLU → conv 1×3 dilation (1,d) → BN → ReLU:
  ``d2 = D2(o)``, ``d4 = D4(o + d2) + d2``, ``d8 = D8(o)``, ``d16 = D16(o + d8) + d8``; the block's output
  is ``ReLU(cat[o, d2, d4, d8, d16] + x)`` (``C`` channels, a residual);
* **downsamplers** between stages: ``cat[conv 3×3 s2 (C_s → C_{s+1} − C_s − 3), maxpool(C_s)] → BN →
  ReLU``, then the image re-injection;
* **head**: 1×1 classifier → signed 8-bit logits → ×8 bilinear upsampling (``QUpsample``) → ArgMax.

Quantization: 8-bit weights and activations. Every tensor that meets another one in an Add or a
Concat inside a stage carries the stage's scale: ``o``, the pyramid outputs, their sums and the block
outputs are QReLUs tied to the stage entry's QAct (the downsampler's), and so is the re-injected image.
(The intermediate activation inside each ``D_d`` keeps its own scale.) IR ops used: Input, Conv2d
(3×3 s2, 1×1, 3×1 / 1×3 with dilations 2–16, depthwise 1×1 unit convs for the BN pushed into the
max-pool branch), MulShift, MaxPool, AvgPool, Concat, Add, Upsample (bilinear ×8), ArgMax.
"""

from __future__ import annotations

import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.quant import ArgMax, QAct, QAvgPool2d, QConv2d, QReLU, QuantInput, QUpsample

from .common import DownsamplerBlock, SegNet, check_counts, check_int, check_size
from .registry import register_architecture

__all__ = ["FPLNetStyle", "FPLBlock", "fpl", "DILATIONS"]

DILATIONS = (2, 4, 8, 16)


class _Factorized(nn.Module):
    """``D_d``: conv 3×1 dil (d,1) → BN → ReLU(8) → conv 1×3 dil (1,d) → BN → ReLU(8) tied to ``leader``."""

    def __init__(self, channels: int, dilation: int, leader: QAct):
        super().__init__()
        c, d = channels, dilation
        self.conv1 = QConv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = QReLU(8)
        self.conv2 = QConv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d), bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = QReLU(8, share=leader)

    def forward(self, x):
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class FPLBlock(nn.Module):
    """The FPL module on ``channels`` (a multiple of 5) at the scale of ``leader`` (see the module docstring)."""

    def __init__(self, channels: int, leader: QAct, dilations=DILATIONS):
        super().__init__()
        r = channels // 5
        self.reduce = QConv2d(channels, r, 1, bias=False)
        self.reduce_bn = nn.BatchNorm2d(r)
        self.o = QReLU(8, share=leader)
        self.d2 = _Factorized(r, dilations[0], leader)
        self.s2 = QReLU(8, share=leader)          # o + d2
        self.d4 = _Factorized(r, dilations[1], leader)
        self.p4 = QReLU(8, share=leader)          # D4(o + d2) + d2
        self.d8 = _Factorized(r, dilations[2], leader)
        self.s8 = QReLU(8, share=leader)          # o + d8
        self.d16 = _Factorized(r, dilations[3], leader)
        self.p16 = QReLU(8, share=leader)         # D16(o + d8) + d8
        self.out = QReLU(8, share=leader)         # cat[…] + x

    def forward(self, x):
        o = self.o(self.reduce_bn(self.reduce(x)))
        d2 = self.d2(o)
        d4 = self.p4(self.d4(self.s2(o + d2)) + d2)
        d8 = self.d8(o)
        d16 = self.p16(self.d16(self.s8(o + d8)) + d8)
        return self.out(torch.cat([o, d2, d4, d8, d16], 1) + x)


class _Stage(nn.Module):
    """A downsampler (or the initial block) with image re-injection, then FPL blocks."""

    def __init__(self, nin: int, channels: int, blocks: int, level: int, image: QuantInput):
        super().__init__()
        self.down = DownsamplerBlock(nin, channels - 3, bn_eps=1e-5)
        self.image_pool = QAvgPool2d(1 << level, grid=image)
        self.image_act = QReLU(8, share=self.down.act)
        self.blocks = nn.Sequential(*[FPLBlock(channels, self.down.act) for _ in range(blocks)])

    def forward(self, x, image):
        x = torch.cat([self.down(x), self.image_act(self.image_pool(image))], 1)
        return self.blocks(x)


class FPLNetStyle(SegNet):
    """See the module docstring."""

    def __init__(self, classes=8, width=20, blocks=(1, 2, 2), input_size=(64, 64)):
        super().__init__()
        self.input = QuantInput()
        widths = [width, 2 * width, 4 * width]
        self.stages = nn.ModuleList()
        nin = 3
        for level, (c, n) in enumerate(zip(widths, blocks), start=1):
            self.stages.append(_Stage(nin, c, n, level, self.input))
            nin = c
        self.classifier = QConv2d(nin, classes, 1, bias=True)
        self.logits = QAct(8, signed=True)
        self.upsample = QUpsample(8, "bilinear", grid=self.logits)
        self.argmax = ArgMax()
        self.widths = tuple(widths)
        self._set_shape(classes, 8, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.input(x)
        x = image
        for stage in self.stages:
            x = stage(x, image)
        return self.argmax(self.upsample(self.logits(self.classifier(x))))


@register_architecture("fpl")
def fpl(classes: int = 8, width: int = 20, blocks=(1, 2, 2), input_size=(64, 64)) -> FPLNetStyle:
    """An FPL-style net: ``width`` = the first stage's channels C1 (a multiple of 5, ≥ 10; the stages have
    C1, 2·C1, 4·C1), ``blocks`` = FPL blocks per stage ``[n1, n2, n3]``, ``input_size`` ``[H, W]``
    (multiples of 8)."""
    arch = "fpl"
    check_int(arch, "classes", classes, 2, 256)
    check_int(arch, "width", width, 10, 1000)
    if width % 5:
        raise CheckpointError(f"architecture 'fpl': arch_args 'width' must be a multiple of 5 (the FPL block "
                              f"splits its channels in five), not {width!r}")
    blocks = check_counts(arch, "blocks", blocks, 3, 0, 32)
    size = check_size(arch, input_size, 8)
    return FPLNetStyle(classes, width, blocks, size)

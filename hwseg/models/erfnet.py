"""``erfnet``: ERFNet (Romera et al., 2017/2018) with exactly its published structure, all 8-bit.

Built from networks.md's specification (no code of the reference implementation is used):

==============================  ==============================================  =============
block                           layers                                          output
==============================  ==============================================  =============
``input``                       QuantInput (the raw UInt(8) image)              3×H×W
``encoder.0`` Downsampler       cat[conv 3×3 s2 3→c1−3, maxpool 2×2] → BN → ReLU  c1×H/2×W/2
``encoder.1`` Downsampler       c1 → c2                                         c2×H/4
``encoder.2…`` b1 × non_bt_1d   c2, dilation 1, dropout 0.03                    c2×H/4
Downsampler                     c2 → c3                                         c3×H/8
b2 × non_bottleneck_1d          c3, dilations 2, 4, 8, 16, 2, 4, 8, 16 (cycled)  c3×H/8
``decoder.0`` Upsampler         ConvTranspose 3×3 s2 p1 op1 c3→c2 → BN → ReLU   c2×H/4
b3 × non_bottleneck_1d          c2, dilation 1                                  c2×H/4
Upsampler                       c2 → c1                                         c1×H/2
b4 × non_bottleneck_1d          c1, dilation 1                                  c1×H/2
``output``                      ConvTranspose 2×2 s2 c1→classes (+ signed QAct)  classes×H×W
``argmax``                      ArgMax                                          1×H×W
==============================  ==============================================  =============

``non_bottleneck_1d(C, d)``: conv 3×1 → ReLU → conv 1×3 → BN → ReLU → conv 3×1 dilation (d, 1) →
ReLU → conv 1×3 dilation (1, d) → BN → dropout → ReLU(out + input). Every conv has a bias, every BN
``eps = 1e−3``; padding keeps the size. ``(c1, c2, c3) = (16, 64, 128)·width`` (rounded);
``blocks = (b1, b2, b3, b4)`` is ``(5, 8, 2, 2)`` in the paper. With the defaults (20 classes) the
model has the paper's 2.06 M parameters (2,064,256: weights, biases and BN γ/β; 26.6 GMAC per
1024×512 frame).

Quantization (hwseg's, not the paper's): 8-bit per-channel weights, every ReLU is an unsigned 8-bit
QReLU with its own calibrated clip, logits are signed 8-bit. In a residual block the branch's last
quantizer is a signed 9-bit QAct *tied* to the block input's scale and the block output QReLU is tied
to it as well, so the sum is one integer ``Add`` (``lo = 0``, ``hi = 255``); consequently all the
blocks after one down- or upsampler share that sampler's scale. The downsampler's BN is pushed into
its conv and max-pool branches by the lowering (a depthwise unit conv on the pool branch).
IR ops used: Input, Conv2d (3×3 s2, 3×1 / 1×3 with dilations up to 16, depthwise 1×1), MulShift,
MaxPool, Concat, Add, ConvTranspose2d (3×3 s2 p1 op1 and 2×2 s2), ArgMax.
"""

from __future__ import annotations

import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.quant import ArgMax, QAct, QConv2d, QConvTranspose2d, QReLU, QuantInput

from .common import DownsamplerBlock, SegNet, check_bool, check_counts, check_int, check_number, check_size
from .registry import register_architecture

__all__ = ["ERFNet", "NonBottleneck1d", "UpsamplerBlock", "erfnet", "PAPER_CHANNELS", "PAPER_BLOCKS"]

PAPER_CHANNELS = (16, 64, 128)
PAPER_BLOCKS = (5, 8, 2, 2)
DILATIONS = (2, 4, 8, 16)
BN_EPS = 1e-3


class NonBottleneck1d(nn.Module):
    """ERFNet's ``non_bottleneck_1d(C, d)``; ``skip`` is the QAct that produced the block's input, whose
    scale the branch output (``branch``, signed 9 bit) and the block output (``out``) share."""

    def __init__(self, channels: int, dilation: int, dropout: float, skip: QAct):
        super().__init__()
        c, d = channels, dilation
        self.conv3x1_1 = QConv2d(c, c, (3, 1), padding=(1, 0), bias=True)
        self.act1 = QReLU(8)
        self.conv1x3_1 = QConv2d(c, c, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.act2 = QReLU(8)
        self.conv3x1_2 = QConv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True)
        self.act3 = QReLU(8)
        self.conv1x3_2 = QConv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d), bias=True)
        self.bn2 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.branch = QAct(9, signed=True, share=skip)
        self.out = QReLU(8, share=skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv3x1_1(x))
        y = self.act2(self.bn1(self.conv1x3_1(y)))
        y = self.act3(self.conv3x1_2(y))
        y = self.branch(self.dropout(self.bn2(self.conv1x3_2(y))))
        return self.out(y + x)


class UpsamplerBlock(nn.Module):
    """ERFNet's upsampler: ConvTranspose 3×3 stride 2, padding 1, output_padding 1 → BN → ReLU (8 bit)."""

    def __init__(self, nin: int, nout: int):
        super().__init__()
        self.conv = QConvTranspose2d(nin, nout, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = nn.BatchNorm2d(nout, eps=BN_EPS)
        self.act = QReLU(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ERFNet(SegNet):
    """See the module docstring."""

    def __init__(self, classes: int = 20, width: float = 1.0, blocks=PAPER_BLOCKS, input_size=(512, 1024),
                 dropout: bool = True):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in PAPER_CHANNELS)
        if not 3 < c1 < c2 < c3:
            raise ValueError(f"width {width} gives channels {(c1, c2, c3)}; ERFNet needs 3 < c1 < c2 < c3")
        b1, b2, b3, b4 = blocks
        self.input = QuantInput()
        encoder = [DownsamplerBlock(3, c1, BN_EPS), DownsamplerBlock(c1, c2, BN_EPS)]
        skip = encoder[-1].act
        for _ in range(b1):
            encoder.append(NonBottleneck1d(c2, 1, 0.03 if dropout else 0.0, skip))
            skip = encoder[-1].out
        encoder.append(DownsamplerBlock(c2, c3, BN_EPS))
        skip = encoder[-1].act
        for i in range(b2):
            encoder.append(NonBottleneck1d(c3, DILATIONS[i % len(DILATIONS)], 0.3 if dropout else 0.0, skip))
            skip = encoder[-1].out
        decoder = [UpsamplerBlock(c3, c2)]
        skip = decoder[-1].act
        for _ in range(b3):
            decoder.append(NonBottleneck1d(c2, 1, 0.0, skip))
            skip = decoder[-1].out
        decoder.append(UpsamplerBlock(c2, c1))
        skip = decoder[-1].act
        for _ in range(b4):
            decoder.append(NonBottleneck1d(c1, 1, 0.0, skip))
            skip = decoder[-1].out
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.output = QConvTranspose2d(c1, classes, 2, stride=2, padding=0, output_padding=0, bias=True)
        self.logits = QAct(8, signed=True)
        self.argmax = ArgMax()
        self.channels = (c1, c2, c3)
        self._set_shape(classes, 8, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.argmax(self.logits(self.output(self.decoder(self.encoder(self.input(x))))))


@register_architecture("erfnet")
def erfnet(classes: int = 20, width: float = 1.0, blocks=PAPER_BLOCKS, input_size=(512, 1024),
           dropout: bool = True) -> ERFNet:
    """ERFNet: ``classes`` (20 = Cityscapes with void), ``width`` multiplies the channels 16/64/128,
    ``blocks`` = non_bottleneck_1d counts ``[b1, b2, b3, b4]`` (paper: 5, 8, 2, 2), ``input_size`` =
    ``[H, W]`` (multiples of 8), ``dropout`` = the paper's 0.03 / 0.3 in the encoder blocks."""
    arch = "erfnet"
    check_int(arch, "classes", classes, 2, 256)
    width = check_number(arch, "width", width, 0.0, 16.0)
    blocks = check_counts(arch, "blocks", blocks, 4, 0, 64)
    size = check_size(arch, input_size, 8)
    check_bool(arch, "dropout", dropout)
    c1, c2, c3 = (max(1, round(c * width)) for c in PAPER_CHANNELS)
    if not 3 < c1 < c2 < c3:
        raise CheckpointError(f"architecture 'erfnet': arch_args 'width' {width} gives channels {[c1, c2, c3]}; "
                              f"ERFNet needs 3 < c1 < c2 < c3 (width ≥ 0.25)")
    return ERFNet(classes, width, blocks, size, dropout)


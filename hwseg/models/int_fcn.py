"""``int_fcn``: the integer-training paper's FCN (Yang, Deng, Yang, Xie, Li 2020) in miniature.

The paper trains FCN-VGG16 (conv biases removed) with every parameter and operation on 8-bit
power-of-two grids (networks.md). This family keeps that scheme on a small FCN-8s-style network:

* biasless convolutions with 8-bit weights on the fixed grid ``2^−7`` (``weight_quant="pow2"``,
  ``weight_exponent=−7``: ``clip(round(w·2^7)/2^7)``);
* :class:`~hwseg.quant.L1BatchNorm2d` (BatchNorm without square and root) with 16-bit statistics and
  8-bit γ/β on power-of-two grids (``integer_bn``);
* 8-bit activations with power-of-two scales (``pow2=True`` QActs, calibrated clips), so every
  requantization is essentially a shift.

Structure (``w = width``; every conv 3×3, biasless, → L1BN → QReLU(8, pow2)):

======================  ============================================================  ===========
part                    layers                                                        resolution
======================  ============================================================  ===========
``stage{i}`` (i=1…S)    ``convs`` × conv (channels w·2^(i−1)), then max-pool 2×2       2^−i
``score``               conv 1×1 → classes → QAct(8, signed, pow2)                    2^−S
``up{j}``, ``skip{j}``  (j < ``skips``) ConvTranspose 4×4 s2 p1 (bilinear init) → QAct  2^−(S−j−1)
                        tied to the skip score; ``skip{j}``: conv 1×1 on stage S−j−1's
                        output → QAct(8, signed, pow2); their sum → QAct tied (one Add)
``upsample``            bilinear ×2^(S−skips) (QUpsample, exact integer rounding)    1
``argmax``              ArgMax                                                        1
======================  ============================================================  ===========

IR ops used: Input, Conv2d, MulShift, MaxPool, ConvTranspose2d, Add, Upsample (bilinear), ArgMax.
"""

from __future__ import annotations

import torch
from torch import nn

from hwseg.quant import ArgMax, L1BatchNorm2d, QAct, QConv2d, QConvTranspose2d, QReLU, QuantInput, QUpsample

from .common import SegNet, check_bool, check_int, check_size
from .registry import register_architecture

__all__ = ["IntFCN", "int_fcn"]

#: The integer-training paper's weight grid: 8 bits, step 2^−7.
WEIGHTS = dict(weight_quant="pow2", weight_bits=8, weight_exponent=-7, bias=False)


def _bn(channels: int, integer_bn: bool) -> L1BatchNorm2d:
    return L1BatchNorm2d(channels, stat_bits=16 if integer_bn else None, param_bits=8 if integer_bn else None)


def _bilinear_kernel(channels: int, size: int = 4) -> torch.Tensor:
    """The ``(C, C, k, k)`` transposed-conv weight of a ×2 bilinear upsampling (FCN's initialization);
    its values (multiples of 1/16) lie on the 2^−7 grid."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    kernel = (filt[:, None] * filt[None, :]).float()
    weight = torch.zeros(channels, channels, size, size)
    for c in range(channels):
        weight[c, c] = kernel
    return weight


class IntFCN(SegNet):
    """See the module docstring."""

    def __init__(self, classes=8, width=8, stages=3, convs=2, skips=1, integer_bn=True, input_size=(64, 64)):
        super().__init__()
        self.input = QuantInput()
        self.stages = nn.ModuleList()
        self.skip_stages = skips
        c = 3
        channels = []
        for i in range(stages):
            out = width << i
            layers = []
            for k in range(convs):
                layers += [QConv2d(c if k == 0 else out, out, 3, padding=1, **WEIGHTS), _bn(out, integer_bn),
                           QReLU(8, pow2=True)]
            layers.append(nn.MaxPool2d(2))
            self.stages.append(nn.Sequential(*layers))
            channels.append(out)
            c = out
        self.score = QConv2d(c, classes, 1, **WEIGHTS)
        self.score_act = QAct(8, signed=True, pow2=True)
        self.skip_convs = nn.ModuleList()
        self.skip_acts = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.up_acts = nn.ModuleList()
        self.sum_acts = nn.ModuleList()
        grid = self.score_act
        for j in range(skips):
            skip_act = QAct(8, signed=True, pow2=True)
            up = QConvTranspose2d(classes, classes, 4, stride=2, padding=1, **WEIGHTS)
            with torch.no_grad():
                up.weight.copy_(_bilinear_kernel(classes))
            self.skip_convs.append(QConv2d(channels[stages - 2 - j], classes, 1, **WEIGHTS))
            self.skip_acts.append(skip_act)
            self.ups.append(up)
            self.up_acts.append(QAct(9, signed=True, share=skip_act))
            self.sum_acts.append(QAct(8, signed=True, share=skip_act))
            grid = self.sum_acts[-1]
        self.upsample = QUpsample(1 << (stages - skips), "bilinear", grid=grid)
        self.argmax = ArgMax()
        self._set_shape(classes, 1 << stages, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        y = self.score_act(self.score(x))
        for j in range(self.skip_stages):
            skip = self.skip_acts[j](self.skip_convs[j](features[len(features) - 2 - j]))
            y = self.sum_acts[j](self.up_acts[j](self.ups[j](y)) + skip)
        return self.argmax(self.upsample(y))


@register_architecture("int_fcn")
def int_fcn(classes: int = 8, width: int = 8, stages: int = 3, convs: int = 2, skips: int = 1,
            integer_bn: bool = True, input_size=(64, 64)) -> IntFCN:
    """The integer-training FCN: ``width`` channels of the first stage (doubling per stage), ``stages``
    (each ends in a 2×2 max-pool), ``convs`` per stage, ``skips`` FCN skip fusions (0 = FCN-32s style,
    1 = FCN-16s, 2 = FCN-8s), ``integer_bn`` quantizes the L1 BatchNorm statistics and γ/β to pow2 grids,
    ``input_size`` ``[H, W]`` (multiples of 2^stages)."""
    arch = "int_fcn"
    check_int(arch, "classes", classes, 2, 256)
    check_int(arch, "width", width, 1, 1024)
    check_int(arch, "stages", stages, 1, 6)
    check_int(arch, "convs", convs, 1, 8)
    check_int(arch, "skips", skips, 0, stages - 1)
    check_bool(arch, "integer_bn", integer_bn)
    size = check_size(arch, input_size, 1 << stages)
    return IntFCN(classes, width, stages, convs, skips, integer_bn, size)

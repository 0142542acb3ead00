"""Named presets: an architecture, its arguments and the training defaults that suit it.

``hwseg train PRESET`` trains one on the synthetic set by default; each tiny preset trains
on 2 CPU cores in minutes and simulates quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Preset", "PRESETS"]


@dataclass(frozen=True)
class Preset:
    arch: str
    arch_args: dict = field(default_factory=dict)
    input_size: tuple[int, int] = (64, 64)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    train_count: int = 1024
    val_count: int = 256
    description: str = ""
    #: Quantization-aware training fine-tunes the float baseline (8-bit schemes: it keeps float accuracy)
    #: rather than starting from scratch (binary weights: a float start at a low rate stays stuck).
    qat_from_float: bool = True


PRESETS = MappingProxyType({
    "int8_tiny": Preset("int8_tiny", {"classes": 4, "width": 8, "input_size": 32}, input_size=(32, 32), epochs=8,
                        description="the bundled 8-bit example: 4 convolutions, max-pool, argmax"),
    "bfcn_tiny": Preset("bfcn", {"classes": 6, "width": 8, "stages": 3, "convs": 1, "scheme": "w1a2",
                                 "downsample": "pool", "upsample": "bilinear", "out_stride": 2, "skips": True,
                                 "input_size": [64, 64]}, input_size=(64, 64), epochs=10,
                        qat_from_float=False,
                        description="BFCN w1a2: binary weights, 2-bit threshold activations, 8-bit first/last "
                                    "layers, U-Net-style bilinear decoder to 1/2 resolution"),
    # The same encoder-only BFCN shape at 1-2 bits and at 8 bits: the hardware comparison (README).
    "bfcn_w1a2": Preset("bfcn", {"classes": 6, "width": 16, "stages": 2, "convs": 2, "scheme": "w1a2",
                                 "downsample": "pool", "out_stride": 4, "skips": False, "input_size": [64, 64]},
                        input_size=(64, 64), epochs=10,
                        qat_from_float=False,
                        description="BFCN w1a2 without decoder (1/4 resolution): what `hwseg build bfcn.pt` maps "
                                    "onto popcount units and thresholds"),
    "bfcn_w8a8": Preset("bfcn", {"classes": 6, "width": 16, "stages": 2, "convs": 2, "scheme": "w8a8",
                                 "downsample": "pool", "out_stride": 4, "skips": False, "input_size": [64, 64]},
                        input_size=(64, 64), epochs=10,
                        description="the bfcn_w1a2 shape at 8-bit weights and activations (MAC arrays, MulShift)"),
    "int_fcn_tiny": Preset("int_fcn", {"classes": 6, "width": 8, "stages": 3, "convs": 1, "skips": 2,
                                       "integer_bn": True, "input_size": [64, 64]}, input_size=(64, 64), epochs=10,
                           description="integer-training FCN-8s in miniature: pow2 weights (2^-7) and scales, "
                                       "L1 BatchNorm, transposed-conv skip fusions, bilinear x2"),
    # 15 epochs: at 10 the float baseline still confused one class (69.8 % mIoU, 93.7 % at 15).
    "erfnet_tiny": Preset("erfnet", {"classes": 6, "width": 0.5, "blocks": [1, 2, 1, 1], "input_size": [64, 64],
                                     "dropout": False}, input_size=(64, 64), epochs=15, batch_size=4,
                          description="ERFNet structure at 1/2 width (8/32/64 channels), 1-2-1-1 blocks, 8-bit"),
    "fpl_tiny": Preset("fpl", {"classes": 6, "width": 10, "blocks": [1, 1, 1], "input_size": [64, 64]},
                       input_size=(64, 64), epochs=10,
                       description="FPL-style net: factorized dilated pyramids, image re-injection, 8-bit, x8 "
                                   "bilinear head"),
})

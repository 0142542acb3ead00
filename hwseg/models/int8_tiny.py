"""``int8_tiny``: the bundled 8-bit example network (a preset of ``sequential``).

Input ``3×S×S`` ``UInt(8)`` (S = ``input_size``, 32 by default), with ``w = width``:

====================  =============================================  ==============
layer                 operation                                      output (S=32)
====================  =============================================  ==============
input                 QuantInput                                     3×32×32
conv1, bn1, act1      conv 3×3 s1 p1, 3→w, BN, QReLU 8 bit           w×32×32
conv2, bn2, act2      conv 3×3 s2 p1, w→2w, BN, QReLU 8 bit          2w×16×16
conv3, bn3, act3      conv 3×3 dilation 2 p2, 2w→2w, BN, QReLU 8     2w×16×16
pool                  max-pool 2×2                                   2w×8×8
classifier, logits    conv 1×1 2w→classes (bias), QAct signed 8 bit  classes×8×8
argmax                ArgMax over channels                           1×8×8 class map
====================  =============================================  ==============
"""

from __future__ import annotations

from hwseg.errors import CheckpointError

from .registry import register_architecture
from .sequential import SequentialNet

__all__ = ["int8_tiny_layers", "int8_tiny"]


def _check(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise CheckpointError(f"architecture 'int8_tiny': arch_args {name!r} must be an integer in {lo}…{hi}, "
                              f"not {value!r}")


def int8_tiny_layers(classes: int = 4, width: int = 8) -> list[dict]:
    """The ``sequential`` layer specs of int8_tiny."""
    w2 = 2 * width
    return [
        {"type": "QuantInput", "name": "input"},
        {"type": "QConv2d", "name": "conv1", "in": 3, "out": width, "kernel": 3, "stride": 1, "padding": 1},
        {"type": "BatchNorm2d", "name": "bn1", "channels": width},
        {"type": "QReLU", "name": "act1", "bits": 8},
        {"type": "QConv2d", "name": "conv2", "in": width, "out": w2, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "BatchNorm2d", "name": "bn2", "channels": w2},
        {"type": "QReLU", "name": "act2", "bits": 8},
        {"type": "QConv2d", "name": "conv3", "in": w2, "out": w2, "kernel": 3, "padding": 2, "dilation": 2},
        {"type": "BatchNorm2d", "name": "bn3", "channels": w2},
        {"type": "QReLU", "name": "act3", "bits": 8},
        {"type": "MaxPool2d", "name": "pool", "kernel": 2, "stride": 2},
        {"type": "QConv2d", "name": "classifier", "in": w2, "out": classes, "kernel": 1, "bias": True},
        {"type": "QAct", "name": "logits", "bits": 8, "signed": True},
        {"type": "ArgMax", "name": "argmax"},
    ]


@register_architecture("int8_tiny")
def int8_tiny(classes: int = 4, width: int = 8, input_size: int = 32) -> SequentialNet:
    """The int8_tiny model; ``input_size`` only sets ``model.input_shape`` (the net is fully convolutional)."""
    _check("classes", classes, 2, 256)
    _check("width", width, 1, 1024)
    _check("input_size", input_size, 4, 1 << 16)
    model = SequentialNet(int8_tiny_layers(classes, width))
    model.input_shape = (3, input_size, input_size)
    model.classes = classes
    model.stride = 4  # the stride-2 convolution and the 2×2 max-pool: input sides must be multiples of 4
    return model

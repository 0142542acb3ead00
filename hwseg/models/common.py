"""What the zoo architectures share: the segmentation-net base class, argument checks and blocks.

Every zoo model is a :class:`SegNet`: it takes the raw ``UInt(8)`` image (``QuantInput`` first), ends
in :class:`~hwseg.quant.ArgMax` and exposes

* ``classes`` — the number of classes (logit channels);
* ``stride`` — its total downsampling: input heights and widths must be multiples of it;
* ``input_shape`` — ``(3, H, W)``, the frame size it is meant for (the nets are fully convolutional).
"""

from __future__ import annotations

import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.quant import QAct, QConv2d, QReLU

__all__ = ["SegNet", "check_int", "check_bool", "check_choice", "check_number", "check_size", "check_counts",
           "DownsamplerBlock"]


class SegNet(nn.Module):
    """Base of the zoo models (see the module docstring)."""

    classes: int
    stride: int
    input_shape: tuple[int, int, int]

    def _set_shape(self, classes: int, stride: int, input_size) -> None:
        self.classes = classes
        self.stride = stride
        height, width = input_size
        self.input_shape = (3, height, width)


def check_int(arch: str, name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise CheckpointError(f"architecture '{arch}': arch_args {name!r} must be an integer in {lo}…{hi}, "
                              f"not {value!r}")
    return value


def check_number(arch: str, name: str, value, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo < value <= hi:
        raise CheckpointError(f"architecture '{arch}': arch_args {name!r} must be a number in ({lo}, {hi}], "
                              f"not {value!r}")
    return float(value)


def check_bool(arch: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise CheckpointError(f"architecture '{arch}': arch_args {name!r} must be true or false, not {value!r}")
    return value


def check_choice(arch: str, name: str, value, options) -> str:
    if value not in options:
        raise CheckpointError(f"architecture '{arch}': arch_args {name!r} must be one of "
                              f"{', '.join(repr(o) for o in options)}, not {value!r}")
    return value


def check_counts(arch: str, name: str, value, length: int, lo: int, hi: int) -> tuple[int, ...]:
    if (not isinstance(value, (list, tuple)) or len(value) != length
            or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value)):
        raise CheckpointError(f"architecture '{arch}': arch_args {name!r} must be a list of {length} integers in "
                              f"{lo}…{hi}, not {value!r}")
    return tuple(int(v) for v in value)


def check_size(arch: str, value, stride: int) -> tuple[int, int]:
    """``input_size`` (an int or ``[H, W]``) as ``(H, W)``, both positive multiples of ``stride``."""
    size = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise CheckpointError(f"architecture '{arch}': arch_args 'input_size' must be an integer or [height, width], "
                              f"not {value!r}")
    if size[0] % stride or size[1] % stride:
        raise CheckpointError(f"architecture '{arch}': arch_args 'input_size' {list(size)} must be a multiple of the "
                              f"network's stride {stride}")
    return int(size[0]), int(size[1])


class DownsamplerBlock(nn.Module):
    """ERFNet's downsampler: ``cat([conv 3×3 stride 2 (nin → nout − nin), maxpool 2×2 (nin)]) → BN → ReLU``,
    quantized to 8 bits (``act``, a QReLU: the ReLU and its quantizer). The lowering pushes the BatchNorm
    into both branches (the pool branch becomes a depthwise 1×1 unit conv + MulShift) before the Concat.
    ``bn_eps`` is ERFNet's 1e−3; ``conv_kwargs`` go to the QConv2d (weight quantizer)."""

    def __init__(self, nin: int, nout: int, bn_eps: float = 1e-3, act: QAct | None = None, **conv_kwargs):
        super().__init__()
        if nout <= nin:
            raise ValueError(f"a downsampler needs more output than input channels, not {nin} → {nout}")
        self.conv = QConv2d(nin, nout - nin, 3, stride=2, padding=1, bias=True, **conv_kwargs)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(nout, eps=bn_eps)
        self.act = act if act is not None else QReLU(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))

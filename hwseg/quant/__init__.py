"""Quantization-aware layers, exact integer folding and torch integer inference.

Build a model from :class:`QuantInput`, :class:`QConv2d`, ``nn.BatchNorm2d``, :class:`QAct` /
:class:`QReLU`, ``nn.MaxPool2d`` and :class:`ArgMax`; train or :func:`calibrate` it; then
:func:`integer_forward` computes exactly what the accelerator computes, and
:func:`hwseg.frontend.to_graph` exports the same integers as an IR graph.
"""

from .calibrate import calibrate
from .fold import MULTIPLIER_BITS, FoldedConv, Requant, choose_shift, fold_conv, fold_requant
from .integer import integer_forward, run_program
from .layers import (INPUT_SCALE, ArgMax, QAct, QConv2d, QReLU, QuantInput, act_range, fake_quantize_weight,
                     quantize_weight, weight_scale)
from .lowering import (ArgMaxStep, ConvStep, InputStep, IntegerProgram, PoolStep, RequantStep, Step,
                       lower_model)

__all__ = [
    "QuantInput", "QConv2d", "QAct", "QReLU", "ArgMax", "INPUT_SCALE", "quantize_weight", "weight_scale",
    "fake_quantize_weight", "act_range", "calibrate", "MULTIPLIER_BITS", "Requant", "FoldedConv",
    "choose_shift", "fold_conv", "fold_requant", "lower_model", "IntegerProgram", "Step", "InputStep",
    "ConvStep", "RequantStep", "PoolStep", "ArgMaxStep", "integer_forward", "run_program",
]

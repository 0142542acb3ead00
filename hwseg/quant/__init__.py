"""Quantization-aware layers, exact integer folding and torch integer inference.

Build a model from :class:`QuantInput`, :class:`QConv2d` / :class:`QConvTranspose2d` (int, pow2 or
binary weights), ``nn.BatchNorm2d`` or :class:`L1BatchNorm2d`, :class:`QAct` / :class:`QReLU` (EMA,
fixed, learned PACT or tied clips: :func:`tie_scale`), ``nn.MaxPool2d``, ``nn.AvgPool2d``,
``nn.Upsample``, residual sums, ``torch.cat`` and :class:`ArgMax`; train (optionally under :func:`integer_training`)
or :func:`calibrate` it; then :func:`integer_forward` computes exactly what the accelerator computes,
and :func:`hwseg.frontend.to_graph` exports the same integers as an IR graph. Low-bit activations can
fold into integer thresholds (:func:`fold_thresholds`, ``lower_model(..., threshold_bits=4)``).
"""

from .calibrate import calibrate
from .fold import (MULTIPLIER_BITS, AffineSlice, ConvAffine, FoldedConv, Requant, bn_affine, choose_shift, conv_affine,
                   fold_conv, fold_requant)
from .integer import integer_forward, run_program
from .integer_training import IntegerTraining, integer_training, on_pow2_grid
from .layers import (CLIP_MODES, INPUT_SCALE, ArgMax, QAct, QConv2d, QConvTranspose2d, QReLU, QuantInput, QAvgPool2d,
                     QUpsample, act_range,
                     fake_quantize_weight, quantization, quantize_weight, tie_scale, weight_scale)
from .lowering import (AddStep, ArgMaxStep, AvgPoolStep, ConcatStep, ConvStep, InputStep, IntegerProgram, PoolStep,
                       RequantStep, Step, ThresholdStep, UpsampleStep, lower_model)
from .norm import L1BatchNorm2d
from .quantizers import (WEIGHT_MODES, binary_weight, fake_quantize_pow2, pow2_ceil, pow2_exponent, quantize_grad,
                         quantize_pow2)
from .thresholds import THRESHOLD_BITS, Thresholds, fold_thresholds, threshold_levels

__all__ = [
    "quantization",
    "QuantInput", "QConv2d", "QConvTranspose2d", "QAct", "QReLU", "QAvgPool2d", "QUpsample", "tie_scale", "ArgMax",
    "L1BatchNorm2d",
    "INPUT_SCALE", "CLIP_MODES", "AffineSlice", "bn_affine",
    "WEIGHT_MODES", "quantize_weight", "weight_scale", "fake_quantize_weight", "binary_weight", "pow2_ceil",
    "pow2_exponent", "quantize_pow2", "fake_quantize_pow2", "quantize_grad", "act_range", "calibrate",
    "MULTIPLIER_BITS", "Requant", "FoldedConv", "ConvAffine", "choose_shift", "conv_affine", "fold_conv",
    "fold_requant", "THRESHOLD_BITS", "Thresholds", "fold_thresholds", "threshold_levels", "lower_model",
    "IntegerProgram", "Step", "InputStep", "ConvStep", "RequantStep", "ThresholdStep", "PoolStep", "ArgMaxStep",
    "AvgPoolStep", "UpsampleStep", "AddStep", "ConcatStep",
    "integer_forward", "run_program", "integer_training", "IntegerTraining", "on_pow2_grid",
]

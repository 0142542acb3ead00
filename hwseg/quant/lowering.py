"""Lower an hwseg.quant model to a list of integer steps (its integer program).

The model's dataflow comes from ``torch.fx`` symbolic tracing, with the hwseg.quant layers
and the standard ``torch.nn`` layers as leaves, so any static dataflow graph (DAG) of supported
layers and functions lowers. The traced graph is then fused:

* ``QuantInput`` → :class:`InputStep` (``UInt(8)``, scale 1/255);
* ``QConv2d | QConvTranspose2d [→ BatchNorm2d | L1BatchNorm2d] [→ ReLU] → QAct`` → :class:`ConvStep` +
  :class:`RequantStep` (folded by :func:`hwseg.quant.fold.fold_conv`; a transposed conv keeps torch's
  weight layout and its ``output_padding``), or, when ``threshold_bits`` asks for it and the QAct
  outputs ``0 … n`` with ``n ≤ 2^threshold_bits − 1``, :class:`ConvStep` + :class:`ThresholdStep`
  (:func:`hwseg.quant.thresholds.fold_thresholds`: the BFCN path);
* ``QAct`` or ``ReLU`` on a quantized activation → :class:`RequantStep` (``ReLU`` is ``M = 1, s = 0, lo = 0``);
* ``MaxPool2d`` → :class:`PoolStep`; ``AvgPool2d`` (a window of ``2^n`` elements, ``count_include_pad``,
  no ``ceil_mode``) → :class:`AvgPoolStep`; ``nn.Upsample`` / ``F.interpolate`` (nearest by integer
  factors, bilinear ``align_corners=False`` by power-of-two factors) → :class:`UpsampleStep`. These keep
  the scale; the integer average and bilinear round half up on the activation's own grid (see below);
* ``a + b`` (``operator.add``, ``torch.add``, ``Tensor.add``) of two quantized activations →
  :class:`AddStep`. Both must carry the same real scale (checked; the message names both producers and
  their scales) — arrange it with a tied QAct (``QAct(..., share=other)`` / :func:`~hwseg.quant.tie_scale`):
  the branch's last QAct writes at the skip's scale. ``[ReLU →] QAct`` after the sum folds into the
  Add when that QAct has the same scale (tied): ``lo`` = 0 with the ReLU, ``lo``/``hi`` from the QAct.
  Otherwise the sum is exact (``lo_a + lo_b … hi_a + hi_b``) and a following QAct requantizes it;
* ``torch.cat(…, dim=1)`` of quantized activations of one scale and one type → :class:`ConcatStep`
  (checked, the message names the inputs). A ``[BatchNorm →] [ReLU →] QAct`` after a ``torch.cat`` is
  pushed into each branch: a conv branch folds its slice of the BatchNorm into its requantization; an
  activation branch (e.g. ERFNet's max-pool branch) becomes a depthwise 1×1 convolution of real weight 1
  (``groups = C``, integer weight 1 — or ``2^k`` at scale ``2^−k`` when the BatchNorm's gain makes one
  input step worth more than 1/64 output step, so that the rounded bias stays as precise as a conv
  branch's —, bias = the folded BatchNorm offset) + requantization, or a plain requantization without
  BatchNorm; every branch writes at the QAct's scale, then one ConcatStep;
* a tensor read by several layers is simply read by several steps (no copy step);
* ``ArgMax`` → :class:`ArgMaxStep`; ``Identity`` and ``Dropout`` vanish (eval mode).

Anything else raises :class:`~hwseg.errors.UnsupportedError` naming the layer (its module
name) or the function. Step names are the module names made into identifiers
(``features.5`` → ``features_5``, ``0`` → ``n0``; a function is named after the module whose
``forward`` calls it, ``encoder.3`` + ``add`` → ``encoder_3_add``), unique and deterministic. The
frontend maps each step to one IR node of the same name; :func:`hwseg.quant.integer.integer_forward`
executes the steps with torch ops.

**Rounding of averages and bilinear upsampling.** The integer path rounds an average (or a bilinear
interpolation) half up onto the activation's own grid (design.md §2), and the next requantization
rounds again. A plain ``nn.AvgPool2d`` / ``nn.Upsample`` in the float QAT forward averages the real
values and lets the next quantizer round once, so the two differ by up to half a step of the pooled
or upsampled activation (at about half the pixels of a 2×2 average), which later layers amplify.
:class:`~hwseg.quant.QAvgPool2d` and :class:`~hwseg.quant.QUpsample` (``grid=`` the QAct producing
their input) round in the float forward exactly as the integer path does, so QAT sees what the
accelerator computes; the lowering checks that their grid is their input's scale. The exported
graph and :func:`~hwseg.quant.integer.integer_forward` agree bit for bit in either case.
"""

from __future__ import annotations

import inspect
import math
import operator
import re
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

from hwseg.errors import InputSizeError, UnsupportedError
from hwseg.ir.types import type_for_range

from .fold import AffineSlice, FoldedConv, Requant, bn_affine, fold_conv, fold_requant
from .layers import (INPUT_BITS, INPUT_SCALE, ArgMax, QAct, QAvgPool2d, QConv2d, QConvTranspose2d, QuantInput,
                     QUpsample)
from .norm import L1BatchNorm2d
from .thresholds import Thresholds, fold_thresholds, threshold_foldable

__all__ = ["Step", "InputStep", "ConvStep", "RequantStep", "ThresholdStep", "PoolStep", "AvgPoolStep",
           "UpsampleStep", "AddStep", "ConcatStep", "ArgMaxStep", "IntegerProgram", "lower_model",
           "SUPPORTED_LAYERS", "SUPPORTED_FUNCTIONS", "SCALE_TOLERANCE"]

#: The layers the lowering understands, as named in its error messages.
SUPPORTED_LAYERS = ("QuantInput", "QConv2d", "QConvTranspose2d", "BatchNorm2d", "L1BatchNorm2d", "ReLU", "QAct",
                    "QReLU", "MaxPool2d", "AvgPool2d", "Upsample", "ArgMax", "Identity", "Dropout")
#: The functions (and tensor methods) of a forward the lowering understands.
SUPPORTED_FUNCTIONS = ("a + b (operator.add, torch.add, Tensor.add)", "torch.cat(dim=1)", "F.interpolate",
                       "F.relu / torch.relu / Tensor.relu")
#: Two scales are "the same" when they differ by at most this relative amount (tied QActs give
#: bit-identical scales; the tolerance only forgives float64 noise).
SCALE_TOLERANCE = 1e-9

_LEAVES = (QuantInput, QConv2d, QConvTranspose2d, QAct, ArgMax, L1BatchNorm2d, QAvgPool2d, QUpsample)
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)

_ADD = {operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_}
_CAT = {torch.cat, getattr(torch, "concat", torch.cat), getattr(torch, "concatenate", torch.cat)}
_RELU = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_INTERPOLATE = {F.interpolate}
_METHODS = {"add": "add", "add_": "add", "__add__": "add", "__iadd__": "add", "relu": "relu", "relu_": "relu"}


@dataclass(frozen=True, eq=False)
class Step:
    """One integer operation: ``name`` (an identifier), the ``module`` it comes from (qualified
    module name, or module name + function, for messages) and the names of the steps it reads."""

    name: str
    module: str
    inputs: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class InputStep(Step):
    """The raw image: integers ``0 … 2^bits − 1`` with real step ``scale``."""

    bits: int = INPUT_BITS
    scale: float = INPUT_SCALE


@dataclass(frozen=True, eq=False)
class ConvStep(Step):
    """Exact integer convolution ``acc = Σ w·x + bias`` (the ``FoldedConv`` minus its requant);
    a transposed convolution when ``conv.transposed``."""

    conv: FoldedConv = field(default=None)


@dataclass(frozen=True, eq=False)
class RequantStep(Step):
    """``y = clamp((acc·M + 2^(s−1)) >> s, lo, hi)`` per channel."""

    requant: Requant = field(default=None)


@dataclass(frozen=True, eq=False)
class ThresholdStep(Step):
    """``y[c] = Σ_j [acc[c] ≥ T[c, j]]`` per channel (``thresholds.thresholds`` ascending)."""

    thresholds: Thresholds = field(default=None)


@dataclass(frozen=True, eq=False)
class PoolStep(Step):
    """Integer max pooling (torch ``max_pool2d`` semantics, padding never wins)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True, eq=False)
class AvgPoolStep(Step):
    """Average over windows of ``2^n`` elements rounded half up: ``(Σ + 2^(n−1)) >> n`` (zero padding counts)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True, eq=False)
class UpsampleStep(Step):
    """Upsampling by integer ``factor``: ``"nearest"``, or ``"bilinear"`` (``align_corners=False``,
    power-of-two factors) rounded half up."""

    factor: tuple[int, int] = (2, 2)
    mode: str = "nearest"


@dataclass(frozen=True, eq=False)
class AddStep(Step):
    """``y = clamp(a + b, lo, hi)`` of two activations of the same scale."""

    lo: int = 0
    hi: int = 0


@dataclass(frozen=True, eq=False)
class ConcatStep(Step):
    """Channel concatenation of the inputs, in order (one scale, one type)."""


@dataclass(frozen=True, eq=False)
class ArgMaxStep(Step):
    """Index of the first maximum over channels."""


@dataclass(frozen=True, eq=False)
class IntegerProgram:
    """The integer steps of a model in topological order; ``output`` names the result step."""

    steps: tuple[Step, ...]
    output: str

    def __iter__(self):
        return iter(self.steps)

    def run(self, x, all_outputs: bool = False):
        """Execute with torch ops (see :func:`hwseg.quant.integer.run_program`)."""
        from .integer import run_program
        return run_program(self, x, all_outputs=all_outputs)


# ----------------------------------------------------------------------------- values

@dataclass
class _Raw:
    """The model's input tensor before QuantInput."""


@dataclass
class _Act:
    """A quantized activation produced by step ``step`` (integers ``lo … hi``, real step ``scale``)."""

    step: str
    scale: float
    lo: int
    hi: int
    channels: int | None
    from_input: bool = False    # the raw image, maybe pooled: its channel count is the input's
    module: str = ""            # the layer or function that produced it (for messages)

    @property
    def dtype(self):
        return type_for_range(self.lo, self.hi)


@dataclass
class _Acc:
    """The unquantized output of a QConv2d / QConvTranspose2d, possibly through BatchNorm and ReLU."""

    conv_name: str
    conv: nn.Module
    source: _Act
    bn: object = None
    relu: bool = False
    last: str = ""        # the module that produced this value (conv, bn or relu)
    users: int = 0

    @property
    def channels(self) -> int:
        return self.conv.out_channels


@dataclass
class _Sum:
    """``a + b`` of two activations of one scale [→ ReLU], not yet materialized (a following QAct of
    the same scale folds into it)."""

    a: _Act
    b: _Act
    label: str
    what: str
    relu: bool = False
    cache: dict = field(default_factory=dict)


@dataclass
class _Cat:
    """``torch.cat`` of activations and conv outputs [→ BatchNorm] [→ ReLU], not yet materialized."""

    parts: list
    label: str
    what: str
    bn: object = None
    bn_name: str = ""
    relu: bool = False
    last: str = ""
    users: int = 0
    cache: dict = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Whether a QAct must still follow (a conv output or a BatchNorm inside)."""
        return self.bn is not None or any(isinstance(p, _Acc) for p in self.parts)

    @property
    def channels(self) -> int | None:
        counts = [p.channels for p in self.parts]
        return None if any(c is None for c in counts) else sum(counts)


@dataclass
class _ClassMap:
    step: str
    module: str


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _same_scale(a: float, b: float) -> bool:
    return abs(a - b) <= SCALE_TOLERANCE * max(abs(a), abs(b))


class _Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps hwseg.quant layers (and torch.nn layers) as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


class _Namer:
    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, module_name: str, fallback: str) -> str:
        base = re.sub(r"\W", "_", module_name) or fallback
        if base[0].isdigit():
            base = "n" + base
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


def _supported() -> str:
    return ", ".join(SUPPORTED_LAYERS)


def _describe_call(node: fx.Node) -> str:
    if node.op == "call_function":
        target = getattr(node.target, "__name__", str(node.target))
        return f"the function '{target}' (traced as '{node.name}')"
    if node.op == "call_method":
        return f"the tensor method '.{node.target}()' (traced as '{node.name}')"
    return f"the attribute '{node.target}' directly (traced as '{node.name}')"


def _function_kind(node: fx.Node) -> str | None:
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    if node.op != "call_function":
        return None
    try:
        if node.target in _ADD:
            return "add"
        if node.target in _CAT:
            return "cat"
        if node.target in _RELU:
            return "relu"
        if node.target in _INTERPOLATE:
            return "interpolate"
    except TypeError:           # an unhashable target
        return None
    return None


def _function_label(node: fx.Node, kind: str) -> str:
    """``<module path>.<kind>``: the module whose forward calls the function, from fx's module stack."""
    stack = node.meta.get("nn_module_stack") or {}
    path = None
    for key, value in stack.items():
        path = value[0] if isinstance(value, tuple) else key
    return f"{path}.{kind}" if path else kind


#: A pushed BatchNorm's unit convolution refines its accumulator until one step is worth at most
#: 2^−UNIT_FRACTION_BITS output steps (so its rounded bias costs at most that), with weights of at most
#: UNIT_WEIGHT_BITS bits.
UNIT_FRACTION_BITS = 6
UNIT_WEIGHT_BITS = 8


def _unit_conv(channels: int, gain: float) -> QConv2d:
    """The depthwise 1×1 convolution that carries a pushed BatchNorm on an activation branch: real weight 1,
    as the integer ``2^k`` with scale ``2^−k``. ``gain`` is the largest ``|a|·s_in/s_out`` of the branch
    (output steps per input step); ``k`` is 0 (weight 1) unless one input step is worth more than
    ``2^−6`` output steps, in which case ``k`` grows (up to 6, ``Int(8)`` weights) so that the folded
    bias, rounded to an accumulator step, stays within ``2^−6`` output steps of the float BatchNorm."""
    k = 0
    if gain > 0 and math.isfinite(gain):
        k = min(UNIT_WEIGHT_BITS - 2, max(0, math.ceil(math.log2(gain)) + UNIT_FRACTION_BITS))
    conv = QConv2d(channels, channels, 1, groups=channels, bias=False, weight_bits=k + 2, weight_quant="pow2",
                   weight_exponent=-k)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return conv


def _upsample_factor(what: str, size, scale_factor, mode, align_corners,
                     antialias=False) -> tuple[tuple[int, int], str]:
    """``(factor, mode)`` of an upsampling, or UnsupportedError naming ``what``."""
    if size is not None:
        raise UnsupportedError(f"{what} resizes to a given size; hwseg upsamples by an integer scale_factor")
    if scale_factor is None:
        raise UnsupportedError(f"{what} has no scale_factor; hwseg upsamples by an integer scale_factor")
    factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(factors) != 2 or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 1
                                    and float(f).is_integer() for f in factors):
        raise UnsupportedError(f"{what} scales by {scale_factor!r}; hwseg upsamples by integer factors ≥ 1")
    factor = (int(factors[0]), int(factors[1]))
    if antialias:
        raise UnsupportedError(f"{what} uses antialias=True; hwseg supports plain nearest and bilinear upsampling")
    if mode in ("nearest", "nearest-exact"):      # identical for integer factors
        return factor, "nearest"
    if mode != "bilinear":
        raise UnsupportedError(f"{what} uses mode {mode!r}; hwseg supports 'nearest' and 'bilinear' upsampling")
    if align_corners:
        raise UnsupportedError(f"{what} uses align_corners=True; hwseg's bilinear upsampling is "
                               f"align_corners=False")
    if any(f & (f - 1) for f in factor):
        shown = factor[0] if factor[0] == factor[1] else factor
        raise UnsupportedError(f"{what} is a bilinear upsampling by {shown}; hwseg needs a power-of-two factor "
                               f"(2, 4, 8, …) for bilinear, so that its weights are exact binary fractions "
                               f"(use nearest, or a power-of-two factor)")
    return factor, "bilinear"


def lower_model(model: nn.Module, input_channels: int | None = None,
                threshold_bits: int | None = None) -> IntegerProgram:
    """The integer program of ``model`` (an hwseg.quant model), or UnsupportedError.

    ``input_channels`` is the image's channel count; it is needed only when a layer other than
    a QConv2d (a QAct, ReLU, pool or a BatchNorm pushed into a ``torch.cat``) works on the image, and it
    is checked against the first QConv2d (InputSizeError). Folding uses the model's current parameters
    and buffers (BatchNorm running statistics, QAct clips), i.e. eval-mode semantics, whatever mode
    the model is in.

    ``threshold_bits`` (``None``, the default: the model's ``threshold_bits`` attribute, which the BFCN
    family sets, else 0 = never; :data:`~hwseg.quant.thresholds.THRESHOLD_BITS` = 4): a ``QConv2d [→ BN] [→ ReLU] → QAct`` whose output is ``0 … n`` with
    ``n ≤ 2^threshold_bits − 1`` becomes ConvStep + ThresholdStep instead of ConvStep + RequantStep.
    """
    if threshold_bits is None:  # the model's own preference (BFCN: its low-bit activations), else never
        threshold_bits = getattr(model, "threshold_bits", 0)
    if not isinstance(threshold_bits, int) or isinstance(threshold_bits, bool) or not 0 <= threshold_bits <= 16:
        raise ValueError(f"threshold_bits must be an integer in 0…16, not {threshold_bits!r}")
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure is reported the same way
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnsupportedError(f"torch.fx cannot trace the model ({type(error).__name__}: {message}); hwseg "
                               f"lowers models whose forward is a fixed dataflow of hwseg.quant layers") from None
    return _Lowering(model, input_channels, threshold_bits).run(graph)


class _Lowering:
    def __init__(self, model: nn.Module, input_channels: int | None, threshold_bits: int):
        self.modules = dict(model.named_modules())
        self.input_channels = input_channels
        self.threshold_bits = threshold_bits
        self.namer = _Namer()
        self.steps: list[Step] = []
        self.values: dict[fx.Node, object] = {}
        self.pending: list = []         # _Acc and pending _Cat values: each needs exactly one user
        self.has_input = False

    # ------------------------------------------------------------------ driver

    def run(self, graph: fx.Graph) -> IntegerProgram:
        output = None
        for node in graph.nodes:
            if node.op == "placeholder":
                if any(isinstance(v, _Raw) for v in self.values.values()):
                    raise UnsupportedError(f"the model takes more than one input (second: '{node.target}'); "
                                           f"hwseg lowers single-input models")
                self.values[node] = _Raw()
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node):
                    raise UnsupportedError("the model returns several tensors or a container; hwseg lowers models "
                                           "with one output tensor")
                value = self.values[result]
                if isinstance(value, _Raw):
                    raise UnsupportedError("the model returns its input unchanged; it has no layer to lower")
                if isinstance(value, _ClassMap):
                    output = value.step
                else:
                    self.use(value)
                    output = self.act(value, "the model's output").step
            elif node.op == "call_module":
                self.values[node] = self.module(node)
            elif _function_kind(node) is not None:
                self.values[node] = self.function(node, _function_kind(node))
            else:
                raise UnsupportedError(f"the model's forward uses {_describe_call(node)}, which hwseg cannot lower "
                                       f"yet; build the model from the supported layers ({_supported()}) and "
                                       f"functions ({', '.join(SUPPORTED_FUNCTIONS)})")

        for value in self.pending:
            if value.users == 0:
                raise UnsupportedError(f"the output of layer '{value.last}' is not quantized: every QConv2d output "
                                       f"must go to a QAct (or QReLU), optionally through BatchNorm2d and ReLU")
            if value.users > 1:
                raise UnsupportedError(f"the unquantized output of layer '{value.last}' feeds {value.users} layers; "
                                       f"hwseg needs exactly one QAct after a QConv2d")
        if not self.has_input:
            raise UnsupportedError("the model has no QuantInput layer; start the model with hwseg.quant.QuantInput()")
        if output is None:
            raise UnsupportedError("the model has no output")
        return IntegerProgram(tuple(self.steps), output)

    def use(self, value) -> None:
        if isinstance(value, (_Acc, _Cat)):
            value.users += 1

    def add_step(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    # ------------------------------------------------------------------ materializing values

    def act(self, value, reader: str) -> _Act:
        """``value`` as a quantized activation (materializing a pending sum or concatenation), or the
        UnsupportedError ``reader`` (a layer, or the model's output) gets for reading it."""
        if isinstance(value, _Act):
            return value
        if isinstance(value, _Raw):
            raise UnsupportedError(f"the model has no QuantInput: {reader} reads the raw model input; "
                                   f"start the model with hwseg.quant.QuantInput()")
        if isinstance(value, _ClassMap):
            raise UnsupportedError(f"{reader} reads the class map of ArgMax '{value.module}'; ArgMax must be the "
                                   f"last layer")
        if isinstance(value, _Acc):
            raise UnsupportedError(_unquantized(value, reader))
        if isinstance(value, _Sum):
            return self.materialize_sum(value)
        if isinstance(value, _Cat):
            if value.pending:
                verb = "is" if reader == "the model's output" else "reads"
                raise UnsupportedError(f"{reader} {verb} the unquantized output of {value.what} (after "
                                       f"'{value.last}'); a torch.cat of conv outputs, or followed by a BatchNorm, "
                                       f"must be quantized by a QAct")
            return self.materialize_cat(value)
        raise TypeError(f"unknown value {value!r}")

    def materialize_sum(self, s: _Sum) -> _Act:
        if "raw" not in s.cache:
            lo, hi = s.a.lo + s.b.lo, s.a.hi + s.b.hi
            if s.relu:
                lo, hi = max(lo, 0), max(hi, 0)
            step = self.add_step(AddStep(self.namer(s.label, "add"), s.label, (s.a.step, s.b.step), lo=lo, hi=hi))
            s.cache["raw"] = _Act(step.name, s.a.scale, lo, hi, s.a.channels or s.b.channels,
                                  s.a.from_input and s.b.from_input, s.label)
        return s.cache["raw"]

    def materialize_cat(self, cat: _Cat) -> _Act:
        if "raw" not in cat.cache:
            parts = cat.parts
            first = parts[0]
            for p in parts[1:]:
                if not _same_scale(p.scale, first.scale):
                    raise UnsupportedError(
                        f"{cat.what} joins tensors of different scales: '{first.module}' has scale {first.scale:.6g} "
                        f"and '{p.module}' has scale {p.scale:.6g}; the integer Concat needs one scale: tie their "
                        f"QActs (QAct(..., share=...) or hwseg.quant.tie_scale), or quantize the concatenation "
                        f"with a QAct")
                if p.dtype != first.dtype:
                    raise UnsupportedError(
                        f"{cat.what} joins tensors of different types: '{first.module}' is {first.dtype} and "
                        f"'{p.module}' is {p.dtype}; the integer Concat needs one type: give their QActs the same "
                        f"bits and signedness, or quantize the concatenation with a QAct")
            step = self.add_step(ConcatStep(self.namer(cat.label, "cat"), cat.label, tuple(p.step for p in parts)))
            value = _Act(step.name, first.scale, min(p.lo for p in parts), max(p.hi for p in parts), cat.channels,
                         all(p.from_input for p in parts), cat.label)
            if cat.relu:
                value = self.relu_act(value, cat.last)
            cat.cache["raw"] = value
        return cat.cache["raw"]

    def relu_act(self, src: _Act, name: str) -> _Act:
        requant = Requant(np.ones(_channels(src, f"layer '{name}' (ReLU)"), np.int64), 0, max(src.lo, 0),
                          max(src.hi, 0), src.scale)
        step = self.add_step(RequantStep(self.namer(name, "relu"), name, (src.step,), requant=requant))
        return _Act(step.name, src.scale, requant.lo, requant.hi, src.channels, src.from_input, name)

    # ------------------------------------------------------------------ quantizers

    def conv_act(self, acc: _Acc, bn, relu: bool, act: QAct, act_name: str, step_base: str) -> _Act:
        """Fold ``acc.conv [→ bn] [→ ReLU] → act`` into a ConvStep and a RequantStep / ThresholdStep
        (named after ``step_base``)."""
        use_thresholds = self.threshold_bits > 0 and threshold_foldable(act, relu, self.threshold_bits)
        fold = fold_thresholds if use_thresholds else fold_conv
        folded = fold(act_name, acc.conv, bn, act, acc.source.scale, (acc.source.lo, acc.source.hi), relu=relu)
        conv_step = self.add_step(ConvStep(self.namer(acc.conv_name, "conv"), acc.conv_name, (acc.source.step,),
                                           conv=folded))
        kind = ThresholdStep if use_thresholds else RequantStep
        key = "thresholds" if use_thresholds else "requant"
        req_step = self.add_step(kind(self.namer(step_base, "act"), act_name, (conv_step.name,),
                                      **{key: folded.requant}))
        return _Act(req_step.name, folded.requant.scale, folded.requant.lo, folded.requant.hi, acc.channels,
                    module=act_name)

    def requant_act(self, src: _Act, act: QAct, act_name: str, step_base: str, relu: bool = False) -> _Act:
        requant = fold_requant(act_name, act, _channels(src, f"layer '{act_name}' (QAct)"), src.scale,
                               (src.lo, src.hi), relu=relu)
        step = self.add_step(RequantStep(self.namer(step_base, "act"), act_name, (src.step,), requant=requant))
        return _Act(step.name, requant.scale, requant.lo, requant.hi, src.channels, src.from_input, act_name)

    def sum_act(self, s: _Sum, act: QAct, name: str) -> _Act:
        if not _same_scale(s.a.scale, act.scale):
            return self.requant_act(self.materialize_sum(s), act, name, name)
        lo, hi = act.qrange
        if s.relu:
            lo, hi = max(lo, 0), max(hi, 0)
        step = self.add_step(AddStep(self.namer(name, "act"), name, (s.a.step, s.b.step), lo=lo, hi=hi))
        return _Act(step.name, act.scale, lo, hi, s.a.channels or s.b.channels, False, name)

    def cat_act(self, cat: _Cat, act: QAct, name: str) -> _Act:
        if not cat.pending and not cat.relu:
            parts = cat.parts
            if all(_same_scale(p.scale, parts[0].scale) and p.dtype == parts[0].dtype for p in parts):
                return self.requant_act(self.materialize_cat(cat), act, name, name)
        # Push [BatchNorm →] [ReLU →] QAct into every branch, then concatenate at the QAct's scale.
        if cat.bn is not None:
            channels = cat.channels
            if channels is None:
                raise UnsupportedError(f"{cat.what} joins the input image, whose channel count is not known here; "
                                       f"pass input_channels")
            if getattr(cat.bn, "num_features", channels) != channels:
                raise UnsupportedError(f"layer '{cat.bn_name}' ({type(cat.bn).__name__}) has {cat.bn.num_features} "
                                       f"channels, but {cat.what} gives {channels}")
            a, b = bn_affine(cat.bn_name, cat.bn)
        outs, offset = [], 0
        for i, part in enumerate(cat.parts):
            c = part.channels
            if c is None:
                raise UnsupportedError(f"{cat.what} joins the input image, whose channel count is not known here; "
                                       f"pass input_channels")
            piece = AffineSlice(a[offset:offset + c], b[offset:offset + c]) if cat.bn is not None else None
            offset += c
            base = f"{name}.{i}"
            if isinstance(part, _Acc):
                outs.append(self.conv_act(part, part.bn if piece is None else piece, part.relu or cat.relu, act,
                                          name, base))
            elif piece is not None:
                gain = float(np.abs(piece.a).max()) * part.scale / act.scale if c else 0.0
                unit = _Acc(f"{cat.bn_name}.{i}", _unit_conv(c, gain), part, last=cat.bn_name)
                outs.append(self.conv_act(unit, piece, cat.relu, act, name, base))
            else:
                outs.append(self.requant_act(part, act, name, base, relu=cat.relu))
        if len({o.dtype for o in outs}) != 1:
            raise UnsupportedError(f"layer '{name}' (QAct) after {cat.what} gives its branches different types "
                                   f"({', '.join(str(o.dtype) for o in outs)}): a ReLU inside one branch only; "
                                   f"move the ReLU after the torch.cat")
        step = self.add_step(ConcatStep(self.namer(name, "act"), name, tuple(o.step for o in outs)))
        return _Act(step.name, act.scale, min(o.lo for o in outs), max(o.hi for o in outs), cat.channels, False, name)

    # ------------------------------------------------------------------ layers

    def module(self, node: fx.Node):
        name = str(node.target)
        module = self.modules[name]
        kind = type(module).__name__
        what = f"layer '{name}' ({kind})"
        args = list(node.args)
        if len(args) != 1 or not isinstance(args[0], fx.Node) or node.kwargs:
            raise UnsupportedError(f"{what} is called with {len(args) + len(node.kwargs)} arguments; "
                                   f"hwseg lowers layers that take exactly one tensor")
        src = self.values[args[0]]

        if isinstance(module, QuantInput):
            if not isinstance(src, _Raw):
                raise UnsupportedError(f"{what} must read the model's input directly; hwseg takes the raw "
                                       f"UInt(8) image as the only input")
            step = self.add_step(InputStep(self.namer(name, "input"), name, ()))
            self.has_input = True
            return _Act(step.name, step.scale, 0, (1 << step.bits) - 1, self.input_channels, True, name)
        if isinstance(module, _PASS_THROUGH):
            return src
        if isinstance(src, _Raw):
            raise UnsupportedError(f"the model has no QuantInput: {what} reads the raw model input; "
                                   f"start the model with hwseg.quant.QuantInput()")

        if isinstance(module, (QConv2d, QConvTranspose2d)):
            self.use(src)
            x = self.act(src, what)
            if x.channels is not None and x.channels != module.in_channels:
                if x.from_input:
                    raise InputSizeError(f"the network cannot take a {x.channels}-channel input: {what} "
                                         f"expects {module.in_channels} input channels")
                raise UnsupportedError(f"{what} expects {module.in_channels} input channels, but its input "
                                       f"'{x.step}' has {x.channels}")
            if module.padding_mode != "zeros":
                raise UnsupportedError(f"{what} pads with '{module.padding_mode}'; hwseg supports zero padding only")
            acc = _Acc(name, module, x, last=name)
            self.pending.append(acc)
            return acc
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            quantized = "QConvTranspose2d" if isinstance(module, nn.ConvTranspose2d) else "QConv2d"
            raise UnsupportedError(f"layer '{name}' is an unquantized float {kind}: use hwseg.quant.{quantized} "
                                   f"followed by a QAct (or QReLU) instead")
        if isinstance(module, (nn.BatchNorm2d, L1BatchNorm2d)):
            self.use(src)
            if isinstance(src, _Acc) and src.bn is None and not src.relu:
                value = replace(src, bn=module, last=name, users=0)
            elif isinstance(src, _Cat) and src.bn is None and not src.relu:
                for part in src.parts:
                    if isinstance(part, _Acc) and (part.bn is not None or part.relu):
                        raise UnsupportedError(f"{what} after {src.what} would follow layer '{part.last}' of a "
                                               f"branch; only one BatchNorm (then ReLU) can fold into a QConv2d")
                value = replace(src, bn=module, bn_name=name, last=name, users=0, cache={})
            else:
                raise UnsupportedError(f"{what} must directly follow a QConv2d (or a torch.cat) to be folded into it")
            self.pending.append(value)
            return value
        if isinstance(module, nn.ReLU):
            return self.relu(src, name, what)
        if isinstance(module, QAct):
            self.use(src)
            if isinstance(src, _Acc):
                return self.conv_act(src, src.bn, src.relu, module, name, name)
            if isinstance(src, _Sum):
                return self.sum_act(src, module, name)
            if isinstance(src, _Cat):
                return self.cat_act(src, module, name)
            return self.requant_act(self.act(src, what), module, name, name)
        if isinstance(module, nn.MaxPool2d):
            self.use(src)
            x = self.act(src, what)
            if module.ceil_mode or module.return_indices or _pair(module.dilation) != (1, 1):
                raise UnsupportedError(f"{what} uses ceil_mode, return_indices or dilation; hwseg supports "
                                       f"plain max pooling only")
            step = self.add_step(PoolStep(self.namer(name, "pool"), name, (x.step,), kernel=_pair(module.kernel_size),
                                          stride=_pair(module.stride if module.stride is not None
                                                       else module.kernel_size),
                                          padding=_pair(module.padding)))
            return _Act(step.name, x.scale, x.lo, x.hi, x.channels, x.from_input, name)
        if isinstance(module, nn.AvgPool2d):
            self.use(src)
            x = self.act(src, what)
            self.check_grid(module, x, what)
            kernel = _pair(module.kernel_size)
            stride = _pair(module.stride if module.stride is not None else module.kernel_size)
            padding = _pair(module.padding)
            elements = kernel[0] * kernel[1]
            if elements & (elements - 1):
                raise UnsupportedError(f"{what} averages {kernel[0]}×{kernel[1]} = {elements} elements; hwseg "
                                       f"averages windows of a power-of-two number of elements (a shift)")
            if module.ceil_mode or not module.count_include_pad or module.divisor_override is not None:
                raise UnsupportedError(f"{what} uses ceil_mode, count_include_pad=False or divisor_override; hwseg "
                                       f"supports the plain average (zero padding counted)")
            if 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
                raise UnsupportedError(f"{what}: padding must be at most half the kernel")
            step = self.add_step(AvgPoolStep(self.namer(name, "avgpool"), name, (x.step,), kernel=kernel,
                                             stride=stride, padding=padding))
            return _Act(step.name, x.scale, x.lo, x.hi, x.channels, x.from_input, name)
        if isinstance(module, nn.Upsample):
            self.use(src)
            x = self.act(src, what)
            self.check_grid(module, x, what)
            factor, mode = _upsample_factor(what, module.size, module.scale_factor, module.mode,
                                            module.align_corners)
            return self.upsample(x, factor, mode, name)
        if isinstance(module, ArgMax):
            self.use(src)
            x = self.act(src, what)
            step = self.add_step(ArgMaxStep(self.namer(name, "argmax"), name, (x.step,)))
            return _ClassMap(step.name, name)
        raise UnsupportedError(f"layer '{name}' ({kind}) is not supported by hwseg yet; supported: {_supported()}")

    def check_grid(self, module, x: _Act, what: str) -> None:
        """A QAvgPool2d / QUpsample must round on the grid of the activation it actually reads."""
        grid = getattr(module, "grid", None)
        if grid is not None and not _same_scale(grid.scale, x.scale):
            names = [n for n, m in self.modules.items() if m is grid]
            shown = f"'{names[0]}'" if names else "a layer outside the model"
            raise UnsupportedError(f"{what} rounds on the grid of {shown} (scale {grid.scale:.6g}), but it reads "
                                   f"'{x.module}' of scale {x.scale:.6g}; give it the QAct that produces its input")

    def relu(self, src, name: str, what: str):
        self.use(src)
        if isinstance(src, _Acc):
            if src.relu:
                raise UnsupportedError(f"{what} follows another ReLU; remove one")
            value = replace(src, relu=True, last=name, users=0)
            self.pending.append(value)
            return value
        if isinstance(src, _Sum):
            return replace(src, relu=True, cache={})
        if isinstance(src, _Cat):
            value = replace(src, relu=True, last=name, users=0, cache={})
            if value.pending:
                self.pending.append(value)
            return value
        return self.relu_act(self.act(src, what), name)

    def upsample(self, x: _Act, factor, mode, name: str) -> _Act:
        step = self.add_step(UpsampleStep(self.namer(name, "upsample"), name, (x.step,), factor=factor, mode=mode))
        return _Act(step.name, x.scale, x.lo, x.hi, x.channels, x.from_input, name)

    # ------------------------------------------------------------------ functions

    def function(self, node: fx.Node, kind: str):
        label = _function_label(node, kind)
        target = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
        where = f" in '{label.rsplit('.', 1)[0]}'" if "." in label else ""
        what = (f"the tensor method '.{target}()'{where} (traced as '{node.name}')" if node.op == "call_method"
                else f"the function '{target}'{where} (traced as '{node.name}')")
        args, kwargs = list(node.args), dict(node.kwargs)

        def tensor(value, role="input"):
            if not isinstance(value, fx.Node):
                raise UnsupportedError(f"{what} takes the constant {value!r} as its {role}; hwseg lowers "
                                       f"functions of quantized tensors only")
            return self.values[value]

        if kind == "add":
            alpha = kwargs.pop("alpha", 1)
            if len(args) != 2 or kwargs or alpha != 1:
                raise UnsupportedError(f"{what} is not a plain sum of two tensors; hwseg lowers a + b")
            va, vb = tensor(args[0]), tensor(args[1])
            self.use(va)
            self.use(vb)
            a, b = self.act(va, what), self.act(vb, what)
            if not _same_scale(a.scale, b.scale):
                raise UnsupportedError(
                    f"{what} adds tensors of different scales: '{a.module}' has scale {a.scale:.6g} and "
                    f"'{b.module}' has scale {b.scale:.6g}; the integer Add needs one scale: quantize the branch's "
                    f"last QAct at the skip's scale (QAct(..., share=...) or hwseg.quant.tie_scale)")
            if a.channels is not None and b.channels is not None and a.channels != b.channels:
                raise UnsupportedError(f"{what} adds {a.channels} channels of '{a.module}' to {b.channels} channels "
                                       f"of '{b.module}'")
            return _Sum(a, b, label, what)
        if kind == "relu":
            inplace = kwargs.pop("inplace", False)
            if len(args) != 1 or kwargs or not isinstance(inplace, bool):
                raise UnsupportedError(f"{what} is not a plain ReLU of one tensor")
            return self.relu(tensor(args[0]), label, what)
        if kind == "cat":
            tensors = args[0] if args else kwargs.pop("tensors", None)
            dim = args[1] if len(args) > 1 else kwargs.pop("dim", 0)
            if len(args) > 2 or kwargs or not isinstance(tensors, (list, tuple)):
                raise UnsupportedError(f"{what} is not a torch.cat of a list of tensors")
            if dim not in (1, -3):
                raise UnsupportedError(f"{what} concatenates along dimension {dim!r}; hwseg concatenates channels "
                                       f"(dim=1)")
            if len(tensors) < 2:
                raise UnsupportedError(f"{what} joins {len(tensors)} tensor; hwseg's Concat joins at least two")
            parts = []
            for t in tensors:
                v = tensor(t)
                self.use(v)
                parts.append(v if isinstance(v, _Acc) else self.act(v, what))
            value = _Cat(parts, label, what, last=label)
            if value.pending:
                self.pending.append(value)
            return value
        if kind == "interpolate":
            try:
                bound = inspect.signature(F.interpolate).bind(*args, **kwargs)
            except TypeError as error:
                raise UnsupportedError(f"{what}: {error}") from None
            bound.apply_defaults()
            p = bound.arguments
            factor, mode = _upsample_factor(what, p["size"], p["scale_factor"], p["mode"], p["align_corners"],
                                            p.get("antialias", False))
            v = tensor(p["input"])
            self.use(v)
            return self.upsample(self.act(v, what), factor, mode, label)
        raise AssertionError(kind)


def _channels(src: _Act, what: str) -> int:
    if src.channels is None:
        raise UnsupportedError(f"{what} requantizes the input image, whose channel count is not known here; "
                               f"pass input_channels")
    return src.channels


def _unquantized(acc: _Acc, reader: str) -> str:
    """The message for ``reader`` (a layer, or the model's output) getting a conv's accumulator."""
    verb = "is" if reader == "the model's output" else "reads"
    return (f"{reader} {verb} the unquantized output of layer '{acc.last}' ({type(acc.conv).__name__} "
            f"'{acc.conv_name}'); every "
            f"QConv2d output must be quantized by a QAct (or QReLU), optionally after BatchNorm2d and ReLU")

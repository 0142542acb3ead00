"""Lower an hwseg.quant model to a list of integer steps (its integer program).

The model's dataflow comes from ``torch.fx`` symbolic tracing, with the hwseg.quant layers
and the standard ``torch.nn`` layers as leaves, so any static dataflow of supported layers
lowers (not just ``nn.Sequential``). The traced graph is then fused:

* ``QuantInput`` → :class:`InputStep` (``UInt(8)``, scale 1/255);
* ``QConv2d [→ BatchNorm2d | L1BatchNorm2d] [→ ReLU] → QAct`` → :class:`ConvStep` + :class:`RequantStep`
  (folded by :func:`hwseg.quant.fold.fold_conv`), or, when ``threshold_bits`` asks for it and the
  QAct outputs ``0 … n`` with ``n ≤ 2^threshold_bits − 1``, :class:`ConvStep` + :class:`ThresholdStep`
  (folded by :func:`hwseg.quant.thresholds.fold_thresholds`: the BFCN path);
* ``QAct`` or ``ReLU`` on a quantized activation → :class:`RequantStep`
  (``ReLU`` is ``M = 1, s = 0, lo = 0``);
* ``MaxPool2d`` → :class:`PoolStep` (scale and range pass through);
* ``ArgMax`` → :class:`ArgMaxStep`; ``Identity`` and ``Dropout`` vanish (eval mode).

Anything else raises :class:`~hwseg.errors.UnsupportedError` naming the layer (its module
name) or the function. Step names are the module names made into identifiers
(``features.5`` → ``features_5``, ``0`` → ``n0``), unique and deterministic. The frontend
maps each step to one IR node of the same name; :func:`hwseg.quant.integer.integer_forward`
executes the steps with torch ops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from torch import fx, nn

from hwseg.errors import InputSizeError, UnsupportedError

from .fold import FoldedConv, Requant, fold_conv, fold_requant
from .layers import INPUT_BITS, INPUT_SCALE, ArgMax, QAct, QConv2d, QuantInput
from .norm import L1BatchNorm2d
from .thresholds import Thresholds, fold_thresholds, threshold_foldable

__all__ = ["Step", "InputStep", "ConvStep", "RequantStep", "ThresholdStep", "PoolStep", "ArgMaxStep",
           "IntegerProgram", "lower_model", "SUPPORTED_LAYERS"]

#: The layers the lowering understands, as named in its error messages.
SUPPORTED_LAYERS = ("QuantInput", "QConv2d", "BatchNorm2d", "ReLU", "QAct", "QReLU", "MaxPool2d", "ArgMax",
                    "Identity", "Dropout", "L1BatchNorm2d")

_LEAVES = (QuantInput, QConv2d, QAct, ArgMax, L1BatchNorm2d)
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True, eq=False)
class Step:
    """One integer operation: ``name`` (an identifier), the ``module`` it comes from (qualified
    module name, for messages) and the names of the steps it reads."""

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
    """Exact integer convolution ``acc = Σ w·x + bias`` (the ``FoldedConv`` minus its requant)."""

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
    """A quantized activation produced by step ``step``."""

    step: str
    scale: float
    lo: int
    hi: int
    channels: int | None
    from_input: bool = False    # the raw image, maybe pooled: its channel count is the input's


@dataclass
class _Acc:
    """The unquantized output of a QConv2d, possibly through BatchNorm2d and ReLU."""

    conv_name: str
    conv: QConv2d
    source: _Act
    bn: nn.BatchNorm2d | L1BatchNorm2d | None = None
    relu: bool = False
    last: str = ""        # the module that produced this value (conv, bn or relu)
    users: int = 0


@dataclass
class _ClassMap:
    step: str
    module: str


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


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


def lower_model(model: nn.Module, input_channels: int | None = None, threshold_bits: int = 0) -> IntegerProgram:
    """The integer program of ``model`` (an hwseg.quant model), or UnsupportedError.

    ``input_channels`` is the image's channel count; it is needed only when a layer other than
    a QConv2d (a QAct or ReLU) works on the image, and it is checked against the first QConv2d
    (InputSizeError). Folding uses the model's current parameters and buffers (BatchNorm running statistics,
    QAct clips), i.e. eval-mode semantics, whatever mode the model is in.

    ``threshold_bits`` (0 = never, the default; :data:`~hwseg.quant.thresholds.THRESHOLD_BITS` = 4 is
    the BFCN choice): a ``QConv2d [→ BN] [→ ReLU] → QAct`` whose output is ``0 … n`` with
    ``n ≤ 2^threshold_bits − 1`` becomes ConvStep + ThresholdStep instead of ConvStep + RequantStep.
    """
    if not isinstance(threshold_bits, int) or isinstance(threshold_bits, bool) or not 0 <= threshold_bits <= 16:
        raise ValueError(f"threshold_bits must be an integer in 0…16, not {threshold_bits!r}")
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure is reported the same way
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnsupportedError(f"torch.fx cannot trace the model ({type(error).__name__}: {message}); hwseg "
                               f"lowers models whose forward is a fixed dataflow of hwseg.quant layers") from None
    modules = dict(model.named_modules())
    namer = _Namer()
    steps: list[Step] = []
    values: dict[fx.Node, object] = {}
    accs: list[_Acc] = []
    has_input = False
    output = None

    def source_of(node: fx.Node, what: str):
        args = [a for a in node.args]
        if len(args) != 1 or not isinstance(args[0], fx.Node) or node.kwargs:
            raise UnsupportedError(f"{what} is called with {len(args) + len(node.kwargs)} arguments; "
                                   f"hwseg lowers layers that take exactly one tensor")
        return values[args[0]]

    for node in graph.nodes:
        if node.op == "placeholder":
            if any(isinstance(v, _Raw) for v in values.values()):
                raise UnsupportedError(f"the model takes more than one input (second: '{node.target}'); "
                                       f"hwseg lowers single-input models")
            values[node] = _Raw()
            continue
        if node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node):
                raise UnsupportedError("the model returns several tensors or a container; hwseg lowers models "
                                       "with one output tensor")
            output = values[result]
            if isinstance(output, _Acc):
                output.users += 1
            continue
        if node.op != "call_module":
            raise UnsupportedError(f"the model's forward uses {_describe_call(node)}, which hwseg cannot lower "
                                   f"yet; build the model from the supported layers: {_supported()}")

        name = str(node.target)
        module = modules[name]
        kind = type(module).__name__
        what = f"layer '{name}' ({kind})"
        src = source_of(node, what)
        if isinstance(src, _Acc):
            src.users += 1

        if isinstance(module, QuantInput):
            if not isinstance(src, _Raw):
                raise UnsupportedError(f"{what} must read the model's input directly; hwseg takes the raw "
                                       f"UInt(8) image as the only input")
            step = InputStep(namer(name, "input"), name, ())
            steps.append(step)
            has_input = True
            values[node] = _Act(step.name, step.scale, 0, (1 << step.bits) - 1, input_channels, True)
            continue
        if isinstance(src, _Raw):
            raise UnsupportedError(f"the model has no QuantInput: {what} reads the raw model input; "
                                   f"start the model with hwseg.quant.QuantInput()")
        if isinstance(src, _ClassMap):
            raise UnsupportedError(f"{what} reads the class map of ArgMax '{src.module}'; ArgMax must be the "
                                   f"last layer")

        if isinstance(module, QConv2d):
            if isinstance(src, _Acc):
                raise UnsupportedError(_unquantized(src, what))
            if src.channels is not None and src.channels != module.in_channels:
                if src.from_input:
                    raise InputSizeError(f"the network cannot take a {src.channels}-channel input: {what} "
                                         f"expects {module.in_channels} input channels")
                raise UnsupportedError(f"{what} expects {module.in_channels} input channels, but its input "
                                       f"'{src.step}' has {src.channels}")
            if module.padding_mode != "zeros":
                raise UnsupportedError(f"{what} pads with '{module.padding_mode}'; hwseg supports zero padding only")
            acc = _Acc(name, module, src, last=name)
            accs.append(acc)
            values[node] = acc
        elif isinstance(module, nn.Conv2d):
            raise UnsupportedError(f"layer '{name}' is an unquantized float {kind}: use hwseg.quant.QConv2d "
                                   f"followed by a QAct (or QReLU) instead")
        elif isinstance(module, (nn.BatchNorm2d, L1BatchNorm2d)):
            if not isinstance(src, _Acc) or src.bn is not None or src.relu:
                raise UnsupportedError(f"{what} must directly follow a QConv2d to be folded into it")
            values[node] = _Acc(src.conv_name, src.conv, src.source, module, False, name)
            accs.append(values[node])
        elif isinstance(module, nn.ReLU):
            if isinstance(src, _Acc):
                if src.relu:
                    raise UnsupportedError(f"{what} follows another ReLU; remove one")
                values[node] = _Acc(src.conv_name, src.conv, src.source, src.bn, True, name)
                accs.append(values[node])
            else:
                requant = Requant(np.ones(_channels(src, what), np.int64), 0, max(src.lo, 0), max(src.hi, 0),
                                  src.scale)
                step = RequantStep(namer(name, "relu"), name, (src.step,), requant=requant)
                steps.append(step)
                values[node] = _Act(step.name, src.scale, requant.lo, requant.hi, src.channels, src.from_input)
        elif isinstance(module, QAct):
            if isinstance(src, _Acc):
                use_thresholds = threshold_bits > 0 and threshold_foldable(module, src.relu, threshold_bits)
                fold = fold_thresholds if use_thresholds else fold_conv
                folded = fold(name, src.conv, src.bn, module, src.source.scale, (src.source.lo, src.source.hi),
                              relu=src.relu)
                conv_step = ConvStep(namer(src.conv_name, "conv"), src.conv_name, (src.source.step,), conv=folded)
                if use_thresholds:
                    req_step = ThresholdStep(namer(name, "act"), name, (conv_step.name,), thresholds=folded.requant)
                else:
                    req_step = RequantStep(namer(name, "act"), name, (conv_step.name,), requant=folded.requant)
                steps += [conv_step, req_step]
                values[node] = _Act(req_step.name, folded.requant.scale, folded.requant.lo, folded.requant.hi,
                                    folded.weight.shape[0])
            else:
                requant = fold_requant(name, module, _channels(src, what), src.scale, (src.lo, src.hi))
                step = RequantStep(namer(name, "act"), name, (src.step,), requant=requant)
                steps.append(step)
                values[node] = _Act(step.name, requant.scale, requant.lo, requant.hi, src.channels,
                                    src.from_input)
        elif isinstance(module, nn.MaxPool2d):
            if isinstance(src, _Acc):
                raise UnsupportedError(_unquantized(src, what))
            if module.ceil_mode or module.return_indices or _pair(module.dilation) != (1, 1):
                raise UnsupportedError(f"{what} uses ceil_mode, return_indices or dilation; hwseg supports "
                                       f"plain max pooling only")
            step = PoolStep(namer(name, "pool"), name, (src.step,), kernel=_pair(module.kernel_size),
                            stride=_pair(module.stride if module.stride is not None else module.kernel_size),
                            padding=_pair(module.padding))
            steps.append(step)
            values[node] = _Act(step.name, src.scale, src.lo, src.hi, src.channels, src.from_input)
        elif isinstance(module, ArgMax):
            if isinstance(src, _Acc):
                raise UnsupportedError(_unquantized(src, what))
            step = ArgMaxStep(namer(name, "argmax"), name, (src.step,))
            steps.append(step)
            values[node] = _ClassMap(step.name, name)
        elif isinstance(module, _PASS_THROUGH):
            if isinstance(src, _Acc):
                src.users -= 1      # transparent: the next layer counts as the user
            values[node] = src
        else:
            raise UnsupportedError(f"layer '{name}' ({kind}) is not supported by hwseg yet; supported: "
                                   f"{_supported()}")

    for acc in accs:
        if acc.users == 0:
            raise UnsupportedError(f"the output of layer '{acc.last}' is not quantized: every QConv2d output "
                                   f"must go to a QAct (or QReLU), optionally through BatchNorm2d and ReLU")
        if acc.users > 1:
            raise UnsupportedError(f"the unquantized output of layer '{acc.last}' feeds {acc.users} layers; "
                                   f"hwseg needs exactly one QAct after a QConv2d")
    if not has_input:
        raise UnsupportedError("the model has no QuantInput layer; start the model with hwseg.quant.QuantInput()")
    if isinstance(output, _Raw) or output is None:
        raise UnsupportedError("the model returns its input unchanged; it has no layer to lower")
    if isinstance(output, _Acc):
        raise UnsupportedError(_unquantized(output, "the model's output"))
    return IntegerProgram(tuple(steps), output.step)


def _channels(src: _Act, what: str) -> int:
    if src.channels is None:
        raise UnsupportedError(f"{what} requantizes the input image, whose channel count is not known here; "
                               f"pass input_channels")
    return src.channels


def _unquantized(acc: _Acc, reader: str) -> str:
    """The message for ``reader`` (a layer, or the model's output) getting a conv's accumulator."""
    verb = "is" if reader == "the model's output" else "reads"
    return (f"{reader} {verb} the unquantized output of layer '{acc.last}' (QConv2d '{acc.conv_name}'); every "
            f"QConv2d output must be quantized by a QAct (or QReLU), optionally after BatchNorm2d and ReLU")

"""torch model → hwseg integer IR graph.

:func:`to_graph` traces the model with ``torch.fx`` and fuses it into integer steps
(:func:`hwseg.quant.lower_model`: ``QConv2d [→ BatchNorm2d] [→ ReLU] → QAct`` folds into
``Conv2d`` + ``MulShift``, residual sums into ``Add``, ``torch.cat`` into ``Concat``, …), then maps
every step onto one IR node of the same name:

======================  =========================================================================
step                    IR op
======================  =========================================================================
QuantInput              ``Input(shape, UInt(8))``
folded conv             ``Conv2d`` (narrow ``Int(weight_bits)`` weights, or ``Bipolar`` for binary
                        weights without constant channels; integer bias; ``groups``)
folded transposed conv  ``ConvTranspose2d`` (torch's weight layout, ``output_padding``)
QAct / ReLU             ``MulShift`` (per-channel ``M``, one shift, ``lo``/``hi``)
low-bit QAct            ``Threshold`` (with ``threshold_bits``; BFCN)
MaxPool2d               ``MaxPool`` (the activation type passes through)
AvgPool2d               ``AvgPool`` (``2^n`` elements, rounded half up; type passes through)
Upsample / interpolate  ``Upsample`` (nearest, or bilinear by powers of two; type passes through)
a + b [→ ReLU → QAct]   ``Add`` (``lo``/``hi`` from the ReLU and the QAct of the same scale)
torch.cat               ``Concat`` (inputs of one scale and one type)
ArgMax                  ``ArgMax`` (``UInt(8)`` class map; ``UInt(16)`` above 256 classes)
======================  =========================================================================

A tensor read by several layers is simply the input of several nodes (no ``Fork`` is inserted:
that belongs to the backend). Unsupported layers raise UnsupportedError naming the layer; an
input shape the network cannot take raises InputSizeError naming the layer and the size.
"""

from __future__ import annotations

from torch import nn

from hwseg.errors import InputSizeError, UnsupportedError
from hwseg.ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Graph, Input, Int, IRError,
                      MaxPool, MulShift, Node, Threshold, UInt, Upsample)
from hwseg.quant import (AddStep, ArgMaxStep, AvgPoolStep, ConcatStep, ConvStep, InputStep, PoolStep, RequantStep,
                         ThresholdStep, UpsampleStep, lower_model)

__all__ = ["to_graph", "program_to_nodes"]


def _check_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                   for d in shape):
        raise InputSizeError(f"the input shape must be three positive integers (channels, height, width), "
                             f"not {input_shape!r}")
    return shape


def _op(step, shape, input_type):
    if isinstance(step, InputStep):
        return Input(shape, UInt(step.bits))
    if isinstance(step, ConvStep):
        c = step.conv
        weight_type = Bipolar() if getattr(c, "bipolar", False) else Int(c.weight_bits)
        if c.transposed:
            return ConvTranspose2d(c.weight, c.bias, weight_type, c.stride, c.padding, c.output_padding, c.dilation,
                                   c.groups)
        return Conv2d(c.weight, c.bias, weight_type, c.stride, c.padding, c.dilation, c.groups)
    if isinstance(step, RequantStep):
        r = step.requant
        return MulShift(r.multiplier, r.shift, r.lo, r.hi)
    if isinstance(step, ThresholdStep):
        return Threshold(step.thresholds.thresholds)
    if isinstance(step, PoolStep):
        return MaxPool(step.kernel, step.stride, step.padding)
    if isinstance(step, AvgPoolStep):
        return AvgPool(step.kernel, step.stride, step.padding)
    if isinstance(step, UpsampleStep):
        return Upsample(step.factor, step.mode)
    if isinstance(step, AddStep):
        return Add(step.lo, step.hi)
    if isinstance(step, ConcatStep):
        return Concat(len(step.inputs))
    if isinstance(step, ArgMaxStep):
        return ArgMax(8 if input_type.channels <= 256 else 16)
    raise TypeError(f"no IR op for {step!r}")


def program_to_nodes(program, input_shape) -> list[Node]:
    """IR nodes for the steps of ``program`` on ``input_shape`` frames, type-checked one by one.

    A step whose type inference fails raises InputSizeError naming its layer and the input size.
    """
    shape = _check_shape(input_shape)
    nodes, types = [], {}
    for step in program:
        input_types = [types[s] for s in step.inputs]
        try:
            op = _op(step, shape, input_types[0] if input_types else None)
        except IRError as error:
            raise UnsupportedError(f"layer '{step.module}' cannot be expressed in the hwseg IR: {error}") from None
        try:
            types[step.name] = op.infer(input_types)
        except IRError as error:
            size = "×".join(str(d) for d in shape)
            got = f" (its input is {input_types[0]})" if input_types else ""
            raise InputSizeError(f"the network cannot take a {size} input: layer '{step.module}'{got}: {error}; "
                                 f"choose an input size that every layer accepts") from None
        nodes.append(Node(step.name, op, step.inputs, {"module": step.module}))
    return nodes


def to_graph(model: nn.Module, input_shape, name: str = "net", threshold_bits: int | None = None) -> Graph:
    """The integer IR graph of ``model`` (built from hwseg.quant layers) for ``(C, H, W)`` input frames.

    Folding uses the model's current parameters and buffers (eval-mode semantics). Node names are
    the module names made into identifiers; each node's ``attrs["module"]`` holds the module name.
    ``threshold_bits`` (``None``: the model's own ``threshold_bits`` attribute, else 0 = never) folds activations of at most that many bits into ``Threshold`` nodes
    (see :func:`hwseg.quant.lower_model`); :func:`hwseg.quant.integer_forward` takes the same argument.
    Raises UnsupportedError for layers or functions hwseg cannot lower and InputSizeError for an
    input shape the network cannot take.
    """
    shape = _check_shape(input_shape)
    program = lower_model(model, input_channels=shape[0], threshold_bits=threshold_bits)
    return Graph(program_to_nodes(program, shape), output=program.output, name=name)

"""Run IR ops and whole graphs on the NumPy integer reference (design.md §2)."""

from __future__ import annotations

import numpy as np

from hwseg.ir import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, IRError, MaxPool,
                      MulShift, Op, RowTaps, Threshold, Upsample)

from .ops import (_tensor, add, argmax, avg_pool, concat, conv2d, conv_transpose2d, max_pool, mul_shift, row_taps,
                  threshold, upsample)

__all__ = ["run_op", "run_graph"]


def _check_input(op: Input, x, name: str = "input") -> np.ndarray:
    """``x`` (``(N, C, H, W)``) as int64 if its frames have ``op``'s shape and its values lie in ``op.dtype``."""
    array = np.asarray(x)
    if array.ndim != 4 or array.shape[1:] != tuple(op.shape):
        raise IRError(f"{name!r} takes frames of shape (C, H, W) = {tuple(op.shape)} in a batch "
                      f"(N, C, H, W), not an array of shape {array.shape}")
    if array.shape[0] < 1:
        raise IRError(f"{name!r} got an empty batch")
    array = _tensor(array, f"{name!r}")
    lo, hi = int(array.min()), int(array.max())
    if lo < op.dtype.min or hi > op.dtype.max:
        bad = lo if lo < op.dtype.min else hi
        raise IRError(f"{name!r} of type {op.dtype} holds {bad}, outside its range "
                      f"{op.dtype.min}…{op.dtype.max}")
    return array


def run_op(op: Op, inputs: list) -> np.ndarray:
    """The output ``(N, C, H, W)`` of ``op`` applied to its input tensors ``inputs``.

    ``Input`` is the identity on its one tensor, after checking the frame shape and that
    every value lies in the input's type.
    """
    inputs = list(inputs)
    expected = 1 if isinstance(op, Input) else op.arity
    if len(inputs) != expected:
        raise IRError(f"{type(op).__name__} takes {expected} input tensor(s), not {len(inputs)}")
    if isinstance(op, Input):
        return _check_input(op, inputs[0])
    if isinstance(op, Conv2d):
        return conv2d(inputs[0], op.weight, op.bias, op.stride, op.padding, op.dilation, op.groups)
    if isinstance(op, MulShift):
        return mul_shift(inputs[0], op.multiplier, op.shift, op.lo, op.hi)
    if isinstance(op, MaxPool):
        return max_pool(inputs[0], op.kernel, op.stride, op.padding)
    if isinstance(op, ArgMax):
        return argmax(inputs[0])
    if isinstance(op, Threshold):
        return threshold(inputs[0], op.thresholds)
    if isinstance(op, Add):
        return add(inputs[0], inputs[1], op.lo, op.hi)
    if isinstance(op, Concat):
        return concat(inputs)
    if isinstance(op, AvgPool):
        return avg_pool(inputs[0], op.kernel, op.stride, op.padding)
    if isinstance(op, ConvTranspose2d):
        return conv_transpose2d(inputs[0], op.weight, op.bias, op.stride, op.padding, op.output_padding,
                                op.dilation, op.groups)
    if isinstance(op, Upsample):
        return upsample(inputs[0], op.factor, op.mode)
    if isinstance(op, RowTaps):
        return row_taps(inputs[0], op.taps, op.stride, op.padding, op.dilation)
    if isinstance(op, Fork):
        return _tensor(inputs[0], "Fork input")
    raise NotImplementedError(f"the golden model has no implementation of {type(op).__name__}")


def run_graph(graph: Graph, x, keep: bool = False):
    """The output tensor of ``graph`` for input ``x``.

    ``x`` is a batch ``(N, C, H, W)`` or one frame ``(C, H, W)`` of the input node's shape, with
    every value in the input's type (else IRError). The result is int64 and has the same
    form as ``x`` (a batch, or one frame). With ``keep=True`` the result is a dict from every
    node name, in graph order, to its tensor; otherwise intermediate tensors are freed as
    soon as their last consumer has run. Each node's result is checked against the shape
    and type the IR inferred, so a disagreement between the IR and the golden model is
    an IRError rather than a silent difference.
    """
    array = np.asarray(x)
    single = array.ndim == 3
    if single:
        array = array[None]
    elif array.ndim != 4:
        raise IRError(f"run_graph takes one frame (C, H, W) or a batch (N, C, H, W), not shape {array.shape}")

    last_use = {}
    for node in graph:
        for source in node.inputs:
            last_use[source] = node.name
    values: dict[str, np.ndarray] = {}
    for node in graph:
        if isinstance(node.op, Input):
            result = _check_input(node.op, array, node.name)
        else:
            result = run_op(node.op, [values[s] for s in node.inputs])
        expected = graph.types[node.name]
        if result.shape[1:] != expected.shape or (
                result.size and (int(result.min()) < expected.dtype.min or int(result.max()) > expected.dtype.max)):
            raise IRError(f"node {node.name!r} ({node.op.describe()}) computed a tensor of shape {result.shape[1:]} "
                          f"with values {int(result.min())}…{int(result.max())}, which is not the inferred "
                          f"{expected}")
        values[node.name] = result
        if not keep:
            for name in (*node.inputs, node.name):  # free inputs after their last use, and dead ends
                if last_use.get(name, node.name) == node.name and name != graph.output and name in values:
                    del values[name]

    if keep:
        return {name: (v[0] if single else v) for name, v in values.items()}
    out = values[graph.output]
    return out[0] if single else out

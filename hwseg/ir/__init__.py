"""hwseg's integer intermediate representation: types, ops and the dataflow graph."""

from .graph import Graph, Node
from .ops import (Add, ArgMax, AvgPool, Concat, Conv2d, ConvTranspose2d, Fork, Input, IRError, MaxPool, MulShift,
                  Op, RowTaps, Threshold, Upsample, conv_output_size, conv_transpose_output_size)
from .types import Bipolar, Int, ScalarType, TensorType, UInt, type_for_range

__all__ = [
    "Graph", "Node", "Op", "IRError", "Input", "Conv2d", "MulShift", "MaxPool", "ArgMax",
    "Threshold", "Add", "Concat", "AvgPool", "ConvTranspose2d", "Upsample", "Fork", "RowTaps",
    "conv_output_size", "conv_transpose_output_size", "UInt", "Int", "Bipolar", "ScalarType", "TensorType", "type_for_range",
]

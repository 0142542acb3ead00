"""hwseg's integer intermediate representation: types, ops and the dataflow graph."""

from .graph import Graph, Node
from .ops import ArgMax, Conv2d, Input, IRError, MaxPool, MulShift, Op, conv_output_size
from .types import Bipolar, Int, ScalarType, TensorType, UInt, type_for_range

__all__ = [
    "Graph", "Node", "Op", "IRError", "Input", "Conv2d", "MulShift", "MaxPool", "ArgMax",
    "conv_output_size", "UInt", "Int", "Bipolar", "ScalarType", "TensorType", "type_for_range",
]

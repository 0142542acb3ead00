"""From a prepared IR graph to one streaming accelerator and its Verilog."""

from .lower import LoweredNode, lower_graph
from .top import Accelerator
from .emit import emit_verilog, port_list

__all__ = ["LoweredNode", "lower_graph", "Accelerator", "emit_verilog", "port_list"]

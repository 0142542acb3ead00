"""The independent NumPy integer reference of every hwseg op and of a whole Graph.

Imports only NumPy and ``hwseg.ir`` (never ``hwseg.hw`` or torch): its results are the
expected values that the hardware and the torch integer path are checked against.
"""

from .graph import run_graph, run_op
from .ops import (add, argmax, avg_pool, concat, conv2d, conv_transpose2d, max_pool, mul_shift, row_taps,
                  sliding_windows, threshold, upsample)

__all__ = ["sliding_windows", "conv2d", "mul_shift", "max_pool", "argmax", "threshold", "add", "concat", "avg_pool",
           "conv_transpose2d", "upsample", "row_taps", "run_op", "run_graph"]

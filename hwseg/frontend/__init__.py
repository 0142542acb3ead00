"""The frontend: safe ``.pt`` loading and torch model → integer IR graph.

* :func:`load_checkpoint` / :func:`save_checkpoint` — the hwseg checkpoint format;
* :func:`to_graph` — an hwseg.quant model to an :class:`hwseg.ir.Graph`.
"""

from .checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from .convert import program_to_nodes, to_graph

__all__ = ["FORMAT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint", "to_graph", "program_to_nodes"]

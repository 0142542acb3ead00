"""The hwseg dataflow graph: named nodes in topological order, one input, one output.

A :class:`Node` holds an :class:`~hwseg.ir.ops.Op`, the names of its inputs and a mapping
of annotations (``attrs``) that passes add, such as the folding ``pe`` and ``simd`` of a
convolution. Graphs are immutable: passes build new ones with :meth:`Graph.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Iterator, Mapping

from .ops import Input, IRError, Op
from .types import TensorType

__all__ = ["Node", "Graph"]


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...] = ()
    attrs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise IRError(f"node names must be identifiers (letters, digits, _), not {self.name!r}")
        if not isinstance(self.op, Op):
            raise IRError(f"node {self.name!r} holds {self.op!r}, which is not an IR op")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))
        if len(self.inputs) != self.op.arity:
            raise IRError(f"node {self.name!r}: {type(self.op).__name__} takes {self.op.arity} input(s), "
                          f"not {len(self.inputs)}")

    def with_attrs(self, **attrs) -> "Node":
        return Node(self.name, self.op, self.inputs, {**self.attrs, **attrs})


class Graph:
    """An immutable DAG of :class:`Node` in topological order, with one :class:`Input` node.

    ``output`` names the node whose tensor is the network's output (the last node by default).
    Type inference runs on construction, so an ill-formed graph is refused at once.
    """

    def __init__(self, nodes: list[Node], output: str | None = None, name: str = "net"):
        self.name = name
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            if node.name in self._nodes:
                raise IRError(f"two nodes are named {node.name!r}")
            for source in node.inputs:
                if source not in self._nodes:
                    raise IRError(f"node {node.name!r} reads {source!r}, which is not defined before it")
            self._nodes[node.name] = node
        inputs = [n for n in self._nodes.values() if isinstance(n.op, Input)]
        if len(inputs) != 1:
            raise IRError(f"a graph needs exactly one Input node, not {len(inputs)}")
        self.input = inputs[0].name
        if not self._nodes:
            raise IRError("a graph needs at least one node")
        self.output = output if output is not None else list(self._nodes)[-1]
        if self.output not in self._nodes:
            raise IRError(f"the output {self.output!r} is not a node of the graph")
        self.types  # infer now: a graph that cannot be typed is never built

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self):
        return len(self._nodes)

    def __contains__(self, name):
        return name in self._nodes

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}") from None

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @cached_property
    def types(self) -> Mapping[str, TensorType]:
        """The output type of every node, inferred in topological order."""
        types: dict[str, TensorType] = {}
        for node in self._nodes.values():
            try:
                types[node.name] = node.op.infer([types[s] for s in node.inputs])
            except IRError as error:
                raise IRError(f"node {node.name!r} ({node.op.describe()}): {error}") from None
        return MappingProxyType(types)

    def input_types(self, name: str) -> list[TensorType]:
        return [self.types[s] for s in self[name].inputs]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self._nodes.values() if name in n.inputs]

    @property
    def input_type(self) -> TensorType:
        return self.types[self.input]

    @property
    def output_type(self) -> TensorType:
        return self.types[self.output]

    def replace(self, nodes: list[Node] | None = None, output: str | None = None) -> "Graph":
        """A new graph with other nodes (default: the same) and output (default: the same name)."""
        return Graph(self.nodes if nodes is None else nodes,
                     self.output if output is None else output, self.name)

    def with_attrs(self, name: str, **attrs) -> "Graph":
        return self.replace([n.with_attrs(**attrs) if n.name == name else n for n in self])

    def summary(self) -> str:
        lines = []
        for node in self:
            lines.append(f"{node.name:<12} {node.op.describe():<40} → {self.types[node.name]}")
        return "\n".join(lines)

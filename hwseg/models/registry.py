"""The architecture registry: a name → a builder ``builder(**arch_args) -> nn.Module``.

A checkpoint records an architecture name and its ``arch_args`` (plain data); loading builds
the model with the registered builder and then loads the weights. Builders validate their
arguments and raise :class:`~hwseg.errors.CheckpointError` naming the bad one.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from hwseg.errors import CheckpointError

__all__ = ["ARCHITECTURES", "register_architecture", "build_model"]

#: Architecture name → builder. Add entries with :func:`register_architecture`.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Decorator registering ``builder`` under ``name`` in :data:`ARCHITECTURES`."""

    def register(builder):
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        ARCHITECTURES[name] = builder
        return builder

    return register


def build_model(arch: str, arch_args: dict | None = None) -> nn.Module:
    """Build the registered architecture ``arch`` from ``arch_args`` (keyword arguments).

    Unknown names, arguments the builder does not take and values it refuses raise
    CheckpointError.
    """
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; known architectures: "
                              f"{', '.join(sorted(ARCHITECTURES))}")
    arch_args = {} if arch_args is None else arch_args
    if not isinstance(arch_args, dict) or not all(isinstance(k, str) for k in arch_args):
        raise CheckpointError(f"architecture {arch!r}: arch_args must be a dict of named arguments, "
                              f"not {type(arch_args).__name__}")
    builder = ARCHITECTURES[arch]
    try:
        inspect.signature(builder).bind(**arch_args)
    except TypeError:
        params = ", ".join(inspect.signature(builder).parameters)
        unknown = sorted(set(arch_args) - set(inspect.signature(builder).parameters))
        problem = f"unknown argument {unknown[0]!r}" if unknown else "missing arguments"
        raise CheckpointError(f"architecture {arch!r}: {problem} in arch_args; it takes: {params}") from None
    return builder(**arch_args)

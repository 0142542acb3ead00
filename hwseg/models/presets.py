"""Named presets: an architecture, its arguments and the training defaults that suit it.

``hwseg train PRESET`` trains one on the synthetic set by default; each tiny preset trains
on 2 CPU cores in minutes and simulates quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Preset", "PRESETS"]


@dataclass(frozen=True)
class Preset:
    arch: str
    arch_args: dict = field(default_factory=dict)
    input_size: tuple[int, int] = (64, 64)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    train_count: int = 1024
    val_count: int = 256
    description: str = ""


PRESETS = MappingProxyType({
    "int8_tiny": Preset("int8_tiny", {"classes": 4, "width": 8, "input_size": 32}, input_size=(32, 32), epochs=8,
                        description="the bundled 8-bit example: 4 convolutions, max-pool, argmax"),
})

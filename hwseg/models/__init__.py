"""The model zoo: architectures registered by name, built from plain-data ``arch_args``.

* ``sequential`` — any chain of layers from hwseg's layer table (:data:`LAYER_TYPES`);
* ``int8_tiny`` — the bundled 8-bit example network.
"""

from .registry import ARCHITECTURES, build_model, register_architecture
from .sequential import LAYER_TYPES, SequentialNet, normalize_layers, sequential
from .int8_tiny import int8_tiny, int8_tiny_layers
from .presets import PRESETS, Preset

__all__ = ["ARCHITECTURES", "build_model", "register_architecture", "LAYER_TYPES", "SequentialNet",
           "normalize_layers", "sequential", "int8_tiny", "int8_tiny_layers", "PRESETS", "Preset"]

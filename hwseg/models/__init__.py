"""The model zoo: architectures registered by name, built from plain-data ``arch_args``.

* ``sequential`` — any chain of layers from hwseg's layer table (:data:`LAYER_TYPES`);
* ``int8_tiny`` — the bundled 8-bit example network;
* ``bfcn`` — BFCN family: 1-bit (or 2-bit) weights, 2-bit activations, threshold activations;
* ``int_fcn`` — the integer-training paper's FCN in miniature: pow2 weights and scales, L1 BatchNorm;
* ``erfnet`` — ERFNet with its exact published structure, 8-bit;
* ``fpl`` — an FPL-style family: factorized dilated pyramids, image re-injection, 8-bit.

Every zoo model exposes ``classes``, ``stride`` (input sizes must be multiples) and ``input_shape``
and ends in ArgMax; :data:`PRESETS` holds a tiny trainable preset of each.
"""

from .registry import ARCHITECTURES, build_model, register_architecture
from .sequential import LAYER_TYPES, SequentialNet, normalize_layers, sequential
from .int8_tiny import int8_tiny, int8_tiny_layers
from .common import SegNet
from .bfcn import BFCN, bfcn
from .int_fcn import IntFCN, int_fcn
from .erfnet import ERFNet, erfnet
from .fpl import FPLNetStyle, fpl
from .presets import PRESETS, Preset

__all__ = ["ARCHITECTURES", "build_model", "register_architecture", "LAYER_TYPES", "SequentialNet",
           "normalize_layers", "sequential", "int8_tiny", "int8_tiny_layers", "PRESETS", "Preset", "SegNet", "BFCN",
           "bfcn", "IntFCN", "int_fcn", "ERFNet", "erfnet", "FPLNetStyle", "fpl"]

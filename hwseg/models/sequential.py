"""``sequential``: a model described by data only — a list of layer specs.

``arch_args = {"layers": [{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 8,
"kernel": 3, "padding": 1}, {"type": "BatchNorm2d", "channels": 8}, {"type": "QReLU"}, …]}``.

Each spec is a dict with a ``type`` from :data:`LAYER_TYPES` (hwseg's own table: a type name is
never resolved by importing it), an optional ``name`` (an identifier, default the layer's index,
as in ``nn.Sequential``) and the fields of that type; omitted optional fields take their defaults.
Channel counts are checked along the chain. Any unknown type, unknown or missing field, or bad
value raises :class:`~hwseg.errors.CheckpointError` naming the layer index, its type and the field.

Quantized layers: ``QConv2d`` / ``QConvTranspose2d`` (``weight_quant`` ``"int"`` | ``"pow2"`` |
``"binary"``, ``weight_bits``, ``weight_exponent``, ``bias_bits``), ``BatchNorm2d``, ``L1BatchNorm2d``
(``stat_bits``, ``param_bits``), ``QAct`` / ``QReLU`` (``clip`` fixed, ``learn_clip``, ``pow2``),
``MaxPool2d``, ``AvgPool2d`` (2^n elements), ``Upsample`` (nearest, bilinear by powers of two),
``Dropout``, ``ArgMax``. The table also holds float ``Conv2d`` and ``ReLU`` and ``Sigmoid``: such models
build and run in torch, and the frontend refuses them by name (as it refuses an ``AvgPool2d`` or
``Upsample`` it cannot lower).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from hwseg.errors import CheckpointError
from hwseg.quant import (WEIGHT_MODES, ArgMax, L1BatchNorm2d, QAct, QConv2d, QConvTranspose2d, QReLU,
                         QuantInput)
from hwseg.quant.layers import MIN_CLIP

from .registry import register_architecture

__all__ = ["LAYER_TYPES", "LayerType", "Field", "SequentialNet", "sequential", "normalize_layers"]

_REQUIRED = object()
#: bounds that keep a model file from asking for more memory than a machine has before anything is checked: the
#: largest channel count, kernel, stride, padding, dilation or scale, and weights in one layer (ERFNet's largest
#: layer has 73,728; 2**26 float weights take 256 MiB)
MAX_CHANNELS, MAX_WINDOW, MAX_LAYER_WEIGHTS = 16_384, 255, 1 << 26


class _Bad(Exception):
    """A field value is wrong: ``field`` and what is wrong with it."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int, hi: int | None = None):
    def check(v):
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            span = f"in {lo}…{hi}" if hi is not None else f"≥ {lo}"
            raise ValueError(f"must be an integer {span}")
        return v
    return check


def _pair(lo: int, hi: int = MAX_WINDOW):
    def check(v):
        if _is_int(v) and lo <= v <= hi:
            return v
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(e) and lo <= e <= hi for e in v):
            return [int(v[0]), int(v[1])]
        raise ValueError(f"must be an integer in {lo}…{hi} or a pair [h, w] of them")
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _number(lo: float, hi: float | None = None):
    def check(v):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > lo and (hi is None or v <= hi)):
            span = f"in ({lo}, {hi}]" if hi is not None else f"> {lo}"
            raise ValueError(f"must be a number {span}")
        return float(v)
    return check


def _probability(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
        raise ValueError("must be a number in [0, 1)")
    return float(v)


def _choice(*options: str):
    def check(v):
        if v not in options:
            raise ValueError(f"must be one of {', '.join(repr(o) for o in options)}")
        return v
    return check


@dataclass(frozen=True)
class Field:
    """A spec field: its validator (value → normalized value, or ValueError) and default."""

    check: Callable[[Any], Any]
    default: Any = _REQUIRED


@dataclass(frozen=True)
class LayerType:
    """A layer type of the table: its fields, how to build it and how it changes the channel count.

    ``channels(c, f)`` gets the input channel count ``c`` (``None`` before the first conv) and the
    normalized fields; it returns the output channel count or raises ``_Bad``.
    """

    fields: dict[str, Field]
    build: Callable[[dict], nn.Module]
    channels: Callable[[int | None, dict], int | None] = lambda c, f: c


def _conv_channels(c, f):
    if c is not None and f["in"] != c:
        raise _Bad("in", f"is {f['in']} but the layer's input has {c} channels")
    for key in ("in", "out"):
        if f[key] % f["groups"]:
            raise _Bad("groups", f"({f['groups']}) must divide '{key}' ({f[key]})")
    return f["out"]


def _bn_channels(c, f):
    if c is not None and f["channels"] != c:
        raise _Bad("channels", f"is {f['channels']} but the layer's input has {c} channels")
    return f["channels"]


def _pool_stride(f):
    return f["kernel"] if f["stride"] is None else f["stride"]


def _pool_fields():
    return {"kernel": Field(_pair(1)), "stride": Field(_optional(_pair(1)), None), "padding": Field(_pair(0), 0)}


def _optional(check):
    def opt(v):
        return None if v is None else check(v)
    return opt


def _conv_fields(quantized: bool):
    fields = {
        "in": Field(_int(1, MAX_CHANNELS)), "out": Field(_int(1, MAX_CHANNELS)), "kernel": Field(_pair(1)),
        "stride": Field(_pair(1), 1), "padding": Field(_pair(0), 0), "dilation": Field(_pair(1), 1),
        "groups": Field(_int(1, MAX_CHANNELS), 1), "bias": Field(_bool, True),
    }
    if quantized:
        fields["weight_bits"] = Field(_int(1, 16), 8)
        fields["weight_quant"] = Field(_choice(*WEIGHT_MODES), "int")
        fields["weight_exponent"] = Field(_optional(_signed_int(-64, 64)), None)
        fields["bias_bits"] = Field(_optional(_int(2, 32)), None)
    return fields


def _transposed_fields():
    fields = _conv_fields(True)
    fields["output_padding"] = Field(_pair(0), 0)
    return fields


def _signed_int(lo: int, hi: int):
    def check(v):
        if not _is_int(v) or not lo <= v <= hi:
            raise ValueError(f"must be an integer in {lo}…{hi}")
        return v
    return check


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def _weight_args(f):
    if f["weight_quant"] != "binary" and f["weight_bits"] < 2:
        raise _Bad("weight_bits", f"must be an integer in 2…16, not {f['weight_bits']!r} (1 only with weight_quant "
                                  f"'binary')")
    if f["weight_exponent"] is not None and f["weight_quant"] != "pow2":
        raise _Bad("weight_exponent", "is for weight_quant 'pow2' only")
    bits = 1 if f["weight_quant"] == "binary" else f["weight_bits"]
    return dict(weight_bits=bits, weight_quant=f["weight_quant"], weight_exponent=f["weight_exponent"],
                bias_bits=f["bias_bits"])


def _check_weights(f):
    """Refuses a layer with more than :data:`MAX_LAYER_WEIGHTS` weights before torch allocates them."""
    kh, kw = (f["kernel"], f["kernel"]) if _is_int(f["kernel"]) else f["kernel"]
    groups = max(1, f["groups"])
    count = f["in"] * f["out"] * kh * kw // groups
    if count > MAX_LAYER_WEIGHTS:
        raise _Bad("out", f"gives the layer {count:,} weights, more than hwseg takes in one layer "
                          f"({MAX_LAYER_WEIGHTS:,}); use fewer channels or a smaller kernel")


def _qconv(f):
    _check_weights(f)
    return QConv2d(f["in"], f["out"], _tuple(f["kernel"]), _tuple(f["stride"]), _tuple(f["padding"]),
                   _tuple(f["dilation"]), f["groups"], f["bias"], **_weight_args(f))


def _qconv_transpose(f):
    _check_weights(f)
    return QConvTranspose2d(f["in"], f["out"], _tuple(f["kernel"]), _tuple(f["stride"]), _tuple(f["padding"]),
                            _tuple(f["output_padding"]), f["groups"], f["bias"], _tuple(f["dilation"]),
                            **_weight_args(f))


def _conv(f):
    _check_weights(f)
    return nn.Conv2d(f["in"], f["out"], _tuple(f["kernel"]), _tuple(f["stride"]), _tuple(f["padding"]),
                     _tuple(f["dilation"]), f["groups"], f["bias"])


def _qact(f):
    if f["signed"] and f["bits"] < 2:
        raise _Bad("bits", "must be at least 2 for a signed activation")
    return QAct(f["bits"], f["signed"], f["momentum"], **_clip_args(f))


def _clip_args(f):
    if f["learn_clip"] is False and f["clip"] is not None and f["clip"] < MIN_CLIP:
        raise _Bad("clip", f"must be at least {MIN_CLIP}")
    return dict(clip=f["clip"], learn_clip=f["learn_clip"], pow2=f["pow2"])


def _act_fields(signed: bool):
    fields = {"bits": Field(_int(1, 16), 8)}
    if signed:
        fields["signed"] = Field(_bool, False)
    fields.update({"momentum": Field(_number(0.0, 1.0), 0.1), "clip": Field(_optional(_number(0.0)), None),
                   "learn_clip": Field(_bool, False), "pow2": Field(_bool, False)})
    return fields


def _l1bn(f):
    return L1BatchNorm2d(f["channels"], eps=f["eps"], momentum=f["momentum"], stat_bits=f["stat_bits"],
                         param_bits=f["param_bits"])


def _maxpool(f):
    _check_pool_padding(f)
    return nn.MaxPool2d(_tuple(f["kernel"]), _tuple(_pool_stride(f)), _tuple(f["padding"]))


def _avgpool(f):
    _check_pool_padding(f)
    return nn.AvgPool2d(_tuple(f["kernel"]), _tuple(_pool_stride(f)), _tuple(f["padding"]))


def _check_pool_padding(f):
    k = f["kernel"] if isinstance(f["kernel"], list) else [f["kernel"]] * 2
    p = f["padding"] if isinstance(f["padding"], list) else [f["padding"]] * 2
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise _Bad("padding", "must be at most half the kernel")


#: hwseg's table of layer types for ``sequential`` models.
LAYER_TYPES: dict[str, LayerType] = {
    "QuantInput": LayerType({}, lambda f: QuantInput()),
    "QConv2d": LayerType(_conv_fields(True), _qconv, _conv_channels),
    "BatchNorm2d": LayerType({"channels": Field(_int(1, MAX_CHANNELS)), "eps": Field(_number(0.0), 1e-5),
                              "momentum": Field(_number(0.0, 1.0), 0.1)},
                             lambda f: nn.BatchNorm2d(f["channels"], eps=f["eps"], momentum=f["momentum"]),
                             _bn_channels),
    "L1BatchNorm2d": LayerType({"channels": Field(_int(1, MAX_CHANNELS)), "eps": Field(_number(0.0), 1e-5),
                                "momentum": Field(_number(0.0, 1.0), 0.1),
                                "stat_bits": Field(_optional(_int(2, 32)), None),
                                "param_bits": Field(_optional(_int(2, 32)), None)}, _l1bn, _bn_channels),
    "QConvTranspose2d": LayerType(_transposed_fields(), _qconv_transpose, _conv_channels),
    "QAct": LayerType(_act_fields(True), _qact),
    "QReLU": LayerType(_act_fields(False), lambda f: QReLU(f["bits"], f["momentum"], **_clip_args(f))),
    "MaxPool2d": LayerType(_pool_fields(), _maxpool),
    "ArgMax": LayerType({}, lambda f: ArgMax(), lambda c, f: 1),
    # Float and not-yet-lowerable torch layers: buildable, refused by the frontend by name.
    "Conv2d": LayerType(_conv_fields(False), _conv, _conv_channels),
    "ReLU": LayerType({}, lambda f: nn.ReLU()),
    "Upsample": LayerType({"scale_factor": Field(_int(1, MAX_WINDOW)), "mode": Field(_choice("nearest", "bilinear"), "nearest")},
                          lambda f: nn.Upsample(scale_factor=f["scale_factor"], mode=f["mode"])),
    "AvgPool2d": LayerType(_pool_fields(), _avgpool),
    "Dropout": LayerType({"p": Field(_probability, 0.5)}, lambda f: nn.Dropout2d(f["p"])),
    "Sigmoid": LayerType({}, lambda f: nn.Sigmoid()),
}


def normalize_layers(layers) -> list[dict]:
    """Validate ``layers`` against :data:`LAYER_TYPES`; return the specs with every field filled in.

    Raises CheckpointError naming the layer index, its type and the field.
    """
    return _build(layers)[0]


def _build(layers) -> tuple[list[dict], list[nn.Module]]:
    """The normalized specs and the built modules of ``layers`` (see :func:`normalize_layers`)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise CheckpointError("sequential: 'layers' must be a non-empty list of layer specs")
    normalized, modules, names, channels = [], [], {}, None
    for i, spec in enumerate(layers):
        if not isinstance(spec, dict):
            raise CheckpointError(f"layer {i}: a layer spec must be a dict with a 'type', not {type(spec).__name__}")
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            what = "has no 'type'" if kind is None else f"has unknown type {kind!r}"
            raise CheckpointError(f"layer {i} {what}; known types: {', '.join(LAYER_TYPES)}")
        layer_type = LAYER_TYPES[kind]
        where = f"layer {i} ({kind})"
        out = {"type": kind}
        name = spec.get("name", str(i))
        if not isinstance(name, str) or not (name.isidentifier() or name.isdigit()):
            raise CheckpointError(f"{where}: field 'name' must be an identifier (letters, digits, _), not {name!r}")
        if name in names:
            raise CheckpointError(f"{where}: field 'name' {name!r} is already used by layer {names[name]}")
        names[name] = i
        out["name"] = name
        for key in spec:
            if key not in ("type", "name") and key not in layer_type.fields:
                allowed = ", ".join(layer_type.fields) or "none"
                raise CheckpointError(f"{where}: unknown field {key!r}; its fields: {allowed}")
        for key, field in layer_type.fields.items():
            if key not in spec:
                if field.default is _REQUIRED:
                    raise CheckpointError(f"{where}: missing field {key!r}")
                out[key] = field.default
                continue
            try:
                out[key] = field.check(spec[key])
            except ValueError as error:
                raise CheckpointError(f"{where}: field {key!r} {error}, not {spec[key]!r}") from None
        try:
            channels = layer_type.channels(channels, out)
            module = layer_type.build(out)
        except _Bad as bad:
            raise CheckpointError(f"{where}: field {bad.field!r} {bad.problem}") from None
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{where}: {error}") from None
        normalized.append(out)
        modules.append(module)
    return normalized, modules


class SequentialNet(nn.Sequential):
    """An ``nn.Sequential`` built from layer specs; ``spec`` holds the normalized specs."""

    def __init__(self, layers):
        spec, modules = _build(layers)
        super().__init__(OrderedDict((s["name"], m) for s, m in zip(spec, modules)))
        self.spec = spec


@register_architecture("sequential")
def sequential(layers) -> SequentialNet:
    """A model described by data only: ``layers`` is a list of layer specs (see the module docstring)."""
    return SequentialNet(layers)

"""The configurations the resource formulas are calibrated on, and the held-out split.

Each configuration is one hardware component as the backend emits it, described by data:

* an IR layer (``kind`` ``conv``, ``bitconv``, ``affine``, ``mulshift``, ``threshold``, ``maxpool``,
  ``avgpool``, ``argmax``, ``transposed``, ``upsample``, ``add``, ``concat``): :func:`layer_graph`
  builds a small graph around it (seeded weights) with its folding set; the component is the
  layer's lowering, its estimate the layer's estimate without the stitching in front of it;
* a stitching block (``fifo``, ``lanes``, ``fork``, ``skid``): built directly from its parameters.

A configuration that names ``families`` is synthesized for those only (packed MAC arrays, ``pack=2``, exist only
where a DSP48 takes two products).

:func:`held_out` splits them deterministically: within each kind, in name order, every third
configuration (the 2nd, 5th, …) is held out; the formulas' constants are fitted on the others.
"""

from __future__ import annotations

import zlib

import numpy as np

from ...ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, Int, MaxPool,
                   MulShift, Node, Threshold, UInt, Upsample)

__all__ = ["CONFIGS", "LAYER_KINDS", "STITCH_KINDS", "layer_graph", "held_out", "config"]

LAYER_KINDS = ("conv", "bitconv", "affine", "mulshift", "threshold", "maxpool", "avgpool", "argmax", "transposed",
               "upsample", "add", "concat")
STITCH_KINDS = ("fifo", "lanes", "fork", "skid")


def _c(name, kind, **params):
    return {"name": name, "kind": kind, **params}


CONFIGS: tuple[dict, ...] = (
    # int8 convolutions: C_in, C_out, H×W, kernel, stride, padding, dilation, pe, simd
    _c("conv_1x1_c8_k8_pe4_s4", "conv", cin=8, cout=8, h=6, w=6, kernel=(1, 1), pe=4, simd=4),
    _c("conv_3x1_d2_c4_k4_pe2_s6_w32", "conv", cin=4, cout=4, h=6, w=32, kernel=(3, 1), padding=(2, 0),
       dilation=(2, 1), pe=2, simd=6),
    _c("conv_3x3_c3_k4_full", "conv", cin=3, cout=4, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=4, simd=27),
    _c("conv_3x3_c4_k4_pe2_s12_w64", "conv", cin=4, cout=4, h=4, w=64, kernel=(3, 3), padding=(1, 1), pe=2, simd=12),
    _c("conv_3x3_c8_k8_pe2_s9", "conv", cin=8, cout=8, h=12, w=12, kernel=(3, 3), padding=(1, 1), pe=2, simd=9),
    _c("conv_3x3_w4a4_c4_k8_pe4_s12", "conv", cin=4, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=4,
       simd=12, in_bits=4, weight_bits=4),
    _c("conv_3x3s2_c4_k4_pe2_s6", "conv", cin=4, cout=4, h=8, w=8, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
       pe=2, simd=6),
    # (added later, named to sort last) ERFNet's 1×3 with dilation: taps in registers, the gaps in a memory
    _c("conv_dilated_1x3_d4_c8_k8_pe4_s6_w16", "conv", cin=8, cout=8, h=6, w=16, kernel=(1, 3), padding=(0, 4),
       dilation=(1, 4), pe=4, simd=6),
    # a deep weight ROM in logic (NF·SF = 48 words)
    _c("conv_folded_3x3_c8_k8_pe1_s12", "conv", cin=8, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=1,
       simd=12),
    # (added later, named to sort last) issue 12's simd sweeps, the ones quick to synthesize (bench/window_sweep.py
    # has all ten): the window as the folder chooses it — served from memory (FoldedWindow into a serial MAC array)
    # where simd divides the channels and that is no slower, else in registers
    *(_c(f"conv_sweep_1x3_d8_c16_k8_pe1_s{simd}", "conv", cin=16, cout=8, h=4, w=24, kernel=(1, 3), padding=(0, 8),
         dilation=(1, 8), pe=1, simd=simd, window="auto") for simd in (1, 3, 8, 24, 48)),
    *(_c(f"conv_sweep_3x3_c64_k8_pe1_s{simd}", "conv", cin=64, cout=8, h=5, w=12, kernel=(3, 3), padding=(1, 1),
         pe=1, simd=simd, window="auto") for simd in (1, 3, 8)),
    # a folded window of another geometry (3×3, two PEs, 4 channels per beat), so that the folded window's
    # constants are not fitted on one configuration
    _c("conv_sweep_3x3_c16_k8_pe2_s4_folded", "conv", cin=16, cout=8, h=6, w=12, kernel=(3, 3), padding=(1, 1),
       pe=2, simd=4, window="folded"),
    # (added later, named to sort last) two PEs' products per DSP48 (``pack=2``), on the Xilinx families only
    _c("conv_zpack_1x1_c16_k16_pe8_s8", "conv", cin=16, cout=16, h=6, w=6, kernel=(1, 1), pe=8, simd=8, pack=2,
       families=("xc7", "xcup")),
    _c("conv_zpack_3x3_c4_k8_pe4_s12", "conv", cin=4, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=4,
       simd=12, pack=2, families=("xc7", "xcup")),
    _c("conv_zpack_3x3_c8_k8_pe2_s9", "conv", cin=8, cout=8, h=12, w=12, kernel=(3, 3), padding=(1, 1), pe=2,
       simd=9, pack=2, families=("xc7", "xcup")),
    _c("conv_zpack_3x3_w4a8_c8_k8_pe8_s18", "conv", cin=8, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=8,
       simd=18, weight_bits=4, pack=2, families=("xc7", "xcup")),
    _c("conv_zpack_3x3_c16_k8_pe2_s4_folded", "conv", cin=16, cout=8, h=6, w=12, kernel=(3, 3), padding=(1, 1),
       pe=2, simd=4, window="folded", pack=2, families=("xc7", "xcup")),
    # (added later, named to sort last) shift-and-add products in logic (``multiplier="logic"``)
    _c("conv_zlogic_3x3_c4_k4_pe2_s6", "conv", cin=4, cout=4, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=2, simd=6,
       multiplier="logic"),
    _c("conv_zlogic_3x3_c8_k8_pe2_s9", "conv", cin=8, cout=8, h=12, w=12, kernel=(3, 3), padding=(1, 1), pe=2, simd=9,
       multiplier="logic"),
    # binary-weight convolutions on 2-bit activations (bit planes and popcounts)
    _c("bitconv_1x1_c16_k8_pe4_s8", "bitconv", cin=16, cout=8, h=6, w=6, kernel=(1, 1), pe=4, simd=8),
    _c("bitconv_3x3_c4_k8_pe8_s36", "bitconv", cin=4, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=8,
       simd=36),
    _c("bitconv_3x3_c8_k16_pe2_s8_w64", "bitconv", cin=8, cout=16, h=4, w=64, kernel=(3, 3), padding=(1, 1),
       pe=2, simd=8),
    _c("bitconv_3x3_c8_k8_pe4_s18", "bitconv", cin=8, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=4,
       simd=18),
    # (added later, named to sort after the first four so that the held-out split of those stays as it was)
    _c("bitconv_3x3_c8_k8_pe8_s9", "bitconv", cin=8, cout=8, h=6, w=6, kernel=(3, 3), padding=(1, 1), pe=8,
       simd=9),
    # fully unfolded (constant weights), like bitconv_3x3_c4_k8_pe8_s36
    _c("bitconv_5x1_c4_k4_pe4_s20", "bitconv", cin=4, cout=4, h=6, w=6, kernel=(5, 1), padding=(2, 0), pe=4,
       simd=20),
    _c("bitconv_5x5_c2_k8_pe8_s50", "bitconv", cin=2, cout=8, h=6, w=6, kernel=(5, 5), padding=(2, 2), pe=8,
       simd=50),
    # channelwise 1×1 convolutions
    _c("affine_c8", "affine", cin=8, h=8, w=8),
    _c("affine_c16", "affine", cin=16, h=8, w=8),
    # (added later, named to sort last) folded: 4 channels per beat, weights and biases cycling in registers
    _c("affine_folded_c16_l4", "affine", cin=16, h=8, w=8, lanes=4),
    # requantizers: channels, lanes (< channels: behind a 1×1 convolution folded to that pe), accumulator bits
    _c("mulshift_c8_l8_acc16", "mulshift", channels=8, lanes=8, acc_bits=16),
    _c("mulshift_c16_l4", "mulshift", channels=16, lanes=4, cin=16),
    _c("mulshift_c4_l4_acc28", "mulshift", channels=4, lanes=4, acc_bits=28),
    _c("mulshift_c32_l8", "mulshift", channels=32, lanes=8, cin=4),
    _c("mulshift_c16_l16_acc12", "mulshift", channels=16, lanes=16, acc_bits=12),
    _c("threshold_c8_l8_t3_acc12", "threshold", channels=8, lanes=8, thresholds=3, acc_bits=12),
    _c("threshold_c16_l4_t3", "threshold", channels=16, lanes=4, thresholds=3, cin=16),
    _c("threshold_c8_l8_t15_acc14", "threshold", channels=8, lanes=8, thresholds=15, acc_bits=14),
    _c("threshold_c4_l4_t1_acc10", "threshold", channels=4, lanes=4, thresholds=1, acc_bits=10),
    _c("threshold_c32_l8_t3", "threshold", channels=32, lanes=8, thresholds=3, cin=8),
    # pools and argmax
    _c("maxpool_2x2s2_c8_12", "maxpool", channels=8, h=12, w=12, kernel=(2, 2)),
    _c("maxpool_3x3s1p1_c4_16", "maxpool", channels=4, h=16, w=16, kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
    _c("maxpool_2x2s2_c16_w64", "maxpool", channels=16, h=4, w=64, kernel=(2, 2)),
    _c("avgpool_2x2s2_c8_12", "avgpool", channels=8, h=12, w=12, kernel=(2, 2)),
    _c("avgpool_4x4s4_c4_16", "avgpool", channels=4, h=16, w=16, kernel=(4, 4)),
    _c("avgpool_2x2s2_c16_w32", "avgpool", channels=16, h=4, w=32, kernel=(2, 2)),
    _c("argmax_c4_b8", "argmax", channels=4, in_bits=8),
    _c("argmax_c8_b16", "argmax", channels=8, in_bits=16),
    _c("argmax_c20_b8", "argmax", channels=20, in_bits=8),
    # transposed convolutions and upsamplers
    _c("transposed_3x3s2_c4_k4_pe2_s4", "transposed", cin=4, cout=4, h=4, w=4, kernel=(3, 3), stride=(2, 2),
       padding=(1, 1), output_padding=(1, 1), pe=2, simd=4),
    _c("transposed_2x2s2_c4_k4_pe4_s2", "transposed", cin=4, cout=4, h=4, w=4, kernel=(2, 2), stride=(2, 2), pe=4,
       simd=2),
    _c("transposed_3x3s2_c8_k4_pe2_s4_w32", "transposed", cin=8, cout=4, h=3, w=32, kernel=(3, 3), stride=(2, 2),
       padding=(1, 1), output_padding=(1, 1), pe=2, simd=4),
    _c("upsample_x2_nearest_c8_12", "upsample", channels=8, h=12, w=12, factor=2, mode="nearest"),
    _c("upsample_x2_bilinear_c4_12", "upsample", channels=4, h=12, w=12, factor=2, mode="bilinear"),
    _c("upsample_x4_nearest_c4_w64", "upsample", channels=4, h=4, w=64, factor=4, mode="nearest"),
    _c("upsample_x2_bilinear_c8_w32", "upsample", channels=8, h=4, w=32, factor=2, mode="bilinear"),
    # (added later, named to sort last) an FPL-style ×8 bilinear head: blend weights of 4 bits in logic
    _c("upsample_x8_bilinear_c4_h4_w8", "upsample", channels=4, h=4, w=8, factor=8, mode="bilinear"),
    _c("upsample_x8_bilinear_c8_h2_w4", "upsample", channels=8, h=2, w=4, factor=8, mode="bilinear"),
    # joins
    _c("add_c8_b8", "add", channels=8, in_bits=8),
    _c("add_c16_b8_relu", "add", channels=16, in_bits=8, relu=True),
    _c("add_c32_b4", "add", channels=32, in_bits=4),
    _c("concat_2x_c8", "concat", channels=8, inputs=2, in_bits=8),
    _c("concat_3x_c4", "concat", channels=4, inputs=3, in_bits=4),
    # stitching: FIFOs (depth × width), lane converters, forks
    _c("fifo_d16_w32", "fifo", depth=16, width=32),
    _c("fifo_d64_w64", "fifo", depth=64, width=64),
    _c("fifo_d256_w24", "fifo", depth=256, width=24),
    _c("fifo_d1024_w16", "fifo", depth=1024, width=16),
    _c("fifo_d2048_w72", "fifo", depth=2048, width=72),
    _c("fifo_d128_w200", "fifo", depth=128, width=200),
    _c("fifo_d32_w8", "fifo", depth=32, width=8),
    _c("lanes_4to16_b8", "lanes", in_lanes=4, out_lanes=16, elem_bits=8),
    _c("lanes_16to4_b8", "lanes", in_lanes=16, out_lanes=4, elem_bits=8),
    _c("lanes_2to8_b20", "lanes", in_lanes=2, out_lanes=8, elem_bits=20),
    _c("lanes_32to8_b2", "lanes", in_lanes=32, out_lanes=8, elem_bits=2),
    _c("fork_2x_w32", "fork", outputs=2, width=32),
    _c("fork_3x_w64", "fork", outputs=3, width=64),
    _c("fork_4x_w16", "fork", outputs=4, width=16),
    _c("fork_5x_w16", "fork", outputs=5, width=16),
    _c("skid_w8", "skid", width=8),
    _c("skid_w64", "skid", width=64),
    _c("skid_w200", "skid", width=200),
    _c("skid_w24", "skid", width=24),
)


def config(name: str) -> dict:
    """The configuration called ``name``."""
    for spec in CONFIGS:
        if spec["name"] == name:
            return spec
    raise KeyError(f"no calibration configuration {name!r}")


def held_out(spec: dict) -> bool:
    """Whether ``spec`` belongs to the held-out set (every third configuration of its kind, by name)."""
    names = sorted(s["name"] for s in CONFIGS if s["kind"] == spec["kind"])
    return names.index(spec["name"]) % 3 == 1


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _narrow(rng, bits: int, shape) -> np.ndarray:
    limit = 2 ** (bits - 1) - 1
    return rng.integers(-limit, limit + 1, shape)


def _conv(rng, spec, bipolar=False) -> Conv2d:
    kh, kw = spec["kernel"]
    shape = (spec["cout"], spec["cin"], kh, kw)
    if bipolar:
        weight, weight_type = rng.choice([-1, 1], shape), Bipolar()
        bias = np.zeros(spec["cout"], dtype=np.int64)
    else:
        bits = spec.get("weight_bits", 8)
        weight, weight_type = _narrow(rng, bits, shape), Int(bits)
        bias = rng.integers(-99, 100, spec["cout"])
    return Conv2d(weight, bias, weight_type, stride=spec.get("stride", (1, 1)), padding=spec.get("padding", (0, 0)),
                  dilation=spec.get("dilation", (1, 1)))


def _folded_front(rng, spec, lanes: int) -> list[Node]:
    """Input → 1×1 convolution folded to ``pe = lanes``: an accumulator stream of ``lanes`` lanes."""
    cin, channels = spec["cin"], spec["channels"]
    conv = Conv2d(_narrow(rng, 8, (channels, cin, 1, 1)), rng.integers(-99, 100, channels), Int(8))
    return [Node("x", Input((cin, 4, 4), UInt(8))), Node("acc", conv, ("x",), {"pe": lanes, "simd": 1})]


def layer_graph(spec: dict) -> tuple[Graph, str]:
    """A small graph holding the configuration's layer (folding set) and that layer's name."""
    kind, rng = spec["kind"], _rng(spec["name"])
    if kind in ("conv", "bitconv"):
        bits = spec.get("in_bits", 2 if kind == "bitconv" else 8)
        nodes = [Node("x", Input((spec["cin"], spec["h"], spec["w"]), UInt(bits))),
                 Node("layer", _conv(rng, spec, bipolar=kind == "bitconv"), ("x",),
                      {"pe": spec["pe"], "simd": spec["simd"],
                       **{key: spec[key] for key in ("pack", "multiplier") if key in spec},
                       **({} if spec.get("window") == "auto" else {"window_request": spec.get("window", "register")})})]
    elif kind == "affine":
        c = spec["cin"]
        op = Conv2d(_narrow(rng, 8, (c, 1, 1, 1)), rng.integers(-99, 100, c), Int(8), groups=c)
        nodes = [Node("x", Input((c, spec["h"], spec["w"]), UInt(8))),
                 Node("layer", op, ("x",), {"pe": spec["lanes"], "simd": 1} if "lanes" in spec else {})]
    elif kind in ("mulshift", "threshold"):
        channels, lanes = spec["channels"], spec["lanes"]
        if lanes < channels:
            nodes = _folded_front(rng, spec, lanes)
        else:
            nodes = [Node("x", Input((channels, 4, 4), Int(spec["acc_bits"])))]
        source = nodes[-1].name
        if kind == "mulshift":
            op = MulShift(rng.integers(1, 2 ** 15, channels), 16, 0, 255)
        else:
            acc_bits = spec.get("acc_bits", 16)
            limit = 2 ** (acc_bits - 2)
            op = Threshold(np.sort(rng.integers(-limit, limit, (channels, spec["thresholds"])), axis=1))
        nodes.append(Node("layer", op, (source,)))
    elif kind in ("maxpool", "avgpool"):
        op = (MaxPool if kind == "maxpool" else AvgPool)(spec["kernel"], spec.get("stride"),
                                                         spec.get("padding", (0, 0)))
        nodes = [Node("x", Input((spec["channels"], spec["h"], spec["w"]), UInt(8))), Node("layer", op, ("x",))]
    elif kind == "argmax":
        bits = spec["in_bits"]
        nodes = [Node("x", Input((spec["channels"], 4, 4), Int(bits))), Node("layer", ArgMax(), ("x",))]
    elif kind == "transposed":
        kh, kw = spec["kernel"]
        op = ConvTranspose2d(_narrow(rng, 8, (spec["cin"], spec["cout"], kh, kw)), rng.integers(-99, 100, spec["cout"]),
                             Int(8), stride=spec["stride"], padding=spec.get("padding", (0, 0)),
                             output_padding=spec.get("output_padding", (0, 0)))
        nodes = [Node("x", Input((spec["cin"], spec["h"], spec["w"]), UInt(8))),
                 Node("layer", op, ("x",), {"pe": spec["pe"], "simd": spec["simd"]})]
    elif kind == "upsample":
        nodes = [Node("x", Input((spec["channels"], spec["h"], spec["w"]), UInt(8))),
                 Node("layer", Upsample(spec["factor"], spec["mode"]), ("x",))]
    elif kind in ("add", "concat"):
        bits, count = spec["in_bits"], spec.get("inputs", 2)
        dtype = UInt(bits) if spec.get("relu") or kind == "concat" else Int(bits)
        join = (Add(0 if spec.get("relu") else dtype.min, dtype.max) if kind == "add" else Concat(count))
        nodes = [Node("x", Input((spec["channels"], 4, 4), dtype)), Node("fork", Fork(count), ("x",)),
                 Node("layer", join, ("fork",) * count)]
    else:
        raise ValueError(f"kind must be one of {', '.join(LAYER_KINDS)}, not {kind!r}")
    return Graph(nodes, name=spec["name"]), "layer"

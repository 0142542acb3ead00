"""A bilinear upsampler synthesized with Yosys beside its estimate: its blends take no DSP (issue 12).

    python bench/upsample_synth.py [--channels 64] [--factor 2] [--families xc7] [--height 4] [--width 8]

Builds :class:`hwseg.hw.upsample.UpsampleLayer` (bilinear, 8-bit unsigned elements) as the backend does,
synthesizes it for each family (``hwseg.synth.synthesize``) and prints the estimate
(``hwseg.estimate.resources``: line buffer, blends, control) and Yosys' LUT, FF, DSP and block RAM. Each
blend ``(s0 << b) + (s1 − s0)·w1`` multiplies by the narrow weight in shift-and-add logic, so the DSP column
is 0 on every family. 64 channels take about 4 minutes on xc7 (a quiet machine).
"""

from __future__ import annotations

import argparse
import sys
import time

from amaranth.back import verilog
from amaranth.hdl import unsigned

from hwseg.estimate import resources as R
from hwseg.hw.upsample import UpsampleLayer
from hwseg.synth import synthesize


def estimate(layer: UpsampleLayer, family: str) -> R.Resources:
    """The layer's estimate as ``hwseg.estimate.network`` composes it: its line buffer and the upsampler."""
    bits = layer.elem_shape.width
    return (R.memory(layer.width, layer.buffer_rows * layer.channels * bits, family, read_first=True, role="window")
            + R.upsampler(channels=layer.channels, elem_bits=bits, bilinear=True, shift=layer.shift,
                          rows=layer.buffer_rows, factor=layer.factor, height=layer.height, width=layer.width,
                          family=family))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--height", type=int, default=4)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--families", default="xc7", help="comma-separated: xc7, xcup, ecp5, ice40")
    args = parser.parse_args(argv)
    layer = UpsampleLayer(elem_shape=unsigned(8), channels=args.channels, height=args.height, width=args.width,
                          factor=args.factor, mode="bilinear")
    text = verilog.convert(layer, name="top", emit_src=False)
    print(f"bilinear ×{args.factor}, {args.channels} channels, {args.height}×{args.width} input")
    print(f"{'family':6s} {'LUT est/syn':>16s} {'FF est/syn':>16s} {'DSP est/syn':>12s} {'BRAM est/syn':>13s} {'time':>7s}")
    for family in args.families.split(","):
        started = time.monotonic()
        got = synthesize(text, "top", family).totals
        est = estimate(layer, family)
        print(f"{family:6s} {est.lut:>7,}/{got['lut']:<8,} {est.ff:>7,}/{got['ff']:<8,} {est.dsp:>5}/{got['dsp']:<6}"
              f" {est.bram:>6}/{got['bram']:<6} {time.monotonic() - started:6.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

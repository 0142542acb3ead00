"""The issue's designs for the deploy tests, built once per test session: int8_tiny and bfcn on pynq-z2,
erfnet_tiny on zcu104, each with deploy/; and int8_tiny with every buffer and its weights in DRAM on pynq-z2 (a
Zynq-7000) and zcu104 (an UltraScale+).

Their products stay on DSPs (``multipliers="dsp"``): these tests check the deploy path (Tcl, wrapper, driver
against the RTL), which the MAC variant does not touch, and designs with products in logic take several times as
long to simulate. The default builds, products in logic included, are simulated against golden in
``sim/test_bfcn_rtl.py`` and ``sim/test_network_rtl.py``."""

from functools import lru_cache
from pathlib import Path

from hwseg.flow import build

ROOT = Path(__file__).resolve().parents[2]
DESIGNS = [("int8_tiny", "pynq-z2"), ("bfcn", "pynq-z2"), ("erfnet_tiny", "zcu104")]
DRAM_DESIGNS = [("int8_tiny", "pynq-z2"), ("int8_tiny", "zcu104")]


@lru_cache(maxsize=None)
def deployed(net: str, board: str, offchip: str | None = None):
    return build(ROOT / "examples" / f"{net}.pt", board, offchip=offchip, multipliers="dsp").with_deploy()


def write_deploy(design, folder: Path) -> None:
    """``deploy/`` of ``design`` into ``folder`` as the build writes it."""
    for name, content in design.deploy.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

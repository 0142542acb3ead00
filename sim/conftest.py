"""Shared set-up of the RTL co-simulation tests (cocotb through ``hwseg.cosim``).

Verilator builds are cached by a hash of the Verilog, the build options and the tool versions
(``$HWSEG_CACHE``, default ``~/.cache/hwseg``), so a cached build is never stale.
"""

import pytest


@pytest.fixture
def work_dir(tmp_path):
    """Where a simulation keeps its stimulus and logs (pytest's tmp_path, kept on failure)."""
    return tmp_path

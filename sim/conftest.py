"""Shared set-up of the RTL simulation tests (``hwseg.cosim``: the generated harness by default, cocotb
where a test asks for it).

Simulator builds are cached by a hash of the Verilog, the harness, the build options and the tool
versions (``$HWSEG_CACHE``, default ``~/.cache/hwseg``), so a cached build is never stale.
"""

import pytest


@pytest.fixture
def work_dir(tmp_path):
    """Where a simulation keeps its stimulus and logs (pytest's tmp_path, kept on failure)."""
    return tmp_path

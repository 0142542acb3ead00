"""Shared set-up of the RTL co-simulation tests (cocotb through ``hwseg.cosim``)."""

import os

import pytest


@pytest.fixture
def work_dir(tmp_path):
    """Where a simulation keeps its stimulus and logs (pytest's tmp_path, kept on failure)."""
    return tmp_path


def pytest_configure(config):
    # Verilator builds are cached by hash; keep them out of the user's home in CI.
    if os.environ.get("CI") and "HWSEG_CACHE" not in os.environ:
        os.environ["HWSEG_CACHE"] = os.path.join(os.getcwd(), ".hwseg-cache")

"""The issue's designs for the deploy tests, built once per test session: int8_tiny and bfcn on pynq-z2,
erfnet_tiny on zcu104, each with deploy/."""

from functools import lru_cache
from pathlib import Path

from hwseg.flow import build

ROOT = Path(__file__).resolve().parents[2]
DESIGNS = [("int8_tiny", "pynq-z2"), ("bfcn", "pynq-z2"), ("erfnet_tiny", "zcu104")]


@lru_cache(maxsize=None)
def deployed(net: str, board: str):
    return build(ROOT / "examples" / f"{net}.pt", board).with_deploy()

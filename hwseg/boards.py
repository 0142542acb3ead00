"""Board descriptions: one TOML file per board in the repository's ``boards/`` folder.

Each file names the part, its programmable-logic resources (from the vendor's datasheet,
cited in the file), the default clock and the toolchain.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import BoardError

__all__ = ["Board", "BOARDS_DIR", "load_board", "known_boards", "RESOURCES"]

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"
RESOURCES = ("lut", "ff", "dsp", "bram18")


@dataclass(frozen=True)
class Board:
    name: str
    aliases: tuple[str, ...]
    description: str
    part: str
    family: str
    toolchain: str
    clock_mhz: float
    resources: Mapping[str, int]
    source: str
    uram: int = 0  # UltraRAM blocks (288 Kb), where the part has them


def _read(path: Path) -> Board:
    try:
        raw = tomllib.loads(path.read_text())
        resources = {key: int(raw["resources"][key]) for key in RESOURCES}
        return Board(name=raw["name"], aliases=tuple(raw.get("aliases", ())), description=raw["description"],
                     part=raw["part"], family=raw["family"], toolchain=raw["toolchain"],
                     clock_mhz=float(raw["clock_mhz"]), resources=MappingProxyType(resources),
                     source=raw["source"], uram=int(raw["resources"].get("uram", 0)))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise BoardError(f"board file {path} is malformed ({error!r}); fix it or remove it") from None


def known_boards() -> list[Board]:
    """Every board in ``boards/``, sorted by name."""
    return sorted((_read(p) for p in BOARDS_DIR.glob("*.toml")), key=lambda b: b.name)


def load_board(name: str) -> Board:
    """The board called ``name`` (or one of its aliases), case-insensitively."""
    wanted = name.strip().lower()
    boards = known_boards()
    for board in boards:
        if wanted == board.name or wanted in board.aliases:
            return board
    names = ", ".join(b.name + (f" ({', '.join(b.aliases)})" if b.aliases else "") for b in boards)
    raise BoardError(f"unknown board {name!r}; known boards: {names}")

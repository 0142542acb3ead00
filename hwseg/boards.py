"""Board descriptions: one TOML file per board in the repository's ``boards/`` folder.

Each file names the part, its programmable-logic resources (from the vendor's datasheet,
cited in the file), the default clock and the toolchain. Block RAM is counted in the part's own
blocks (``bram``): ``bram_kbits`` says how big one is (18 Kb for a Xilinx RAMB18 or an ECP5
DP16KD, 4 Kb for an iCE40 SB_RAM40_4K) and ``bram_name`` how reports call it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import BoardError

__all__ = ["Board", "Dram", "BOARDS_DIR", "load_board", "known_boards", "RESOURCES", "FAMILIES"]

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"
RESOURCES = ("lut", "ff", "dsp", "bram")
#: Device families hwseg models: Xilinx 7-series, Xilinx UltraScale+, Lattice ECP5, Lattice iCE40.
FAMILIES = ("xc7", "xcup", "ecp5", "ice40")


@dataclass(frozen=True)
class Dram:
    """The DRAM the accelerator's AXI4 master reaches (a board file's ``[dram]`` table, with its source).

    ``data_bits`` and ``burst`` (beats) are the port's, ``address_bits`` its addresses'; ``peak_mbs`` is the
    memory's peak (MB/s, bus width × transfer rate) and ``efficiency`` the share of it a controller delivers
    (reads and writes together); ``port_efficiency`` the share of its cycles the port carries a beat in each
    direction (1 unless the board file says otherwise); ``latency_ns`` is a planning figure that sizes the
    on-chip staging."""
    data_bits: int
    address_bits: int
    burst: int
    peak_mbs: float
    efficiency: float
    latency_ns: float
    source: str
    port_efficiency: float = 1.0

    def port_mbs(self, clock_mhz: float) -> float:
        """What the port carries per direction at ``clock_mhz``, MB/s."""
        return self.data_bits / 8 * clock_mhz * self.port_efficiency

    @property
    def usable_mbs(self) -> float:
        """What the memory delivers, reads and writes together, MB/s."""
        return self.peak_mbs * self.efficiency

    def latency_cycles(self, clock_mhz: float) -> int:
        return max(1, round(self.latency_ns * clock_mhz / 1000))


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
    spram: int = 0  # iCE40 UltraPlus single-port RAM blocks (256 Kb): listed, not used
    bram_kbits: int = 18  # the size of one block RAM
    bram_name: str = "BRAM18"  # what reports call one block RAM
    nextpnr: tuple[str, ...] = ()  # nextpnr device options (Lattice parts only)
    clock_pin: str = ""  # the pin of the board's oscillator (Lattice parts): where --pnr places the clock input
    dram: Dram | None = None  # the DRAM for activations, if the flow can reach one
    no_dram: str = ""  # why not, where it cannot
    board_files: str = ""  # Vivado board files ("vendor:board") of a Zynq board: its PS's DDR and MIO preset

    @property
    def lattice(self) -> bool:
        """Whether the part has an open place and route (nextpnr)."""
        return self.family in ("ecp5", "ice40")

    def with_clock(self, clock_mhz: float) -> "Board":
        """This board clocked at ``clock_mhz`` instead (folding, estimates, fps and the bitstream's PLL follow)."""
        if not isinstance(clock_mhz, (int, float)) or isinstance(clock_mhz, bool) or not 1 <= clock_mhz <= 1000:
            raise BoardError(f"the clock must be 1 to 1,000 MHz, not {clock_mhz!r}")
        return replace(self, clock_mhz=float(clock_mhz))


def _dram(raw: dict) -> Dram | None:
    table = raw.get("dram")
    if table is None:
        raise ValueError("no [dram] table (give the DRAM the fabric reaches, or none = \"why\")")
    if "none" in table:
        return None
    dram = Dram(data_bits=int(table["data_bits"]), address_bits=int(table["address_bits"]), burst=int(table["burst"]),
                peak_mbs=float(table["peak_mbs"]), efficiency=float(table["efficiency"]),
                latency_ns=float(table["latency_ns"]), source=str(table["source"]),
                port_efficiency=float(table.get("port_efficiency", 1.0)))
    if dram.data_bits not in (32, 64, 128, 256, 512, 1024) or not 0 < dram.efficiency <= 1 or dram.peak_mbs <= 0:
        raise ValueError(f"[dram] is out of range: {table!r}")
    return dram


def _read(path: Path) -> Board:
    try:
        raw = tomllib.loads(path.read_text())
        resources = {key: int(raw["resources"][key]) for key in RESOURCES}
        if raw["family"] not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {raw['family']!r}")
        uram = int(raw["resources"].get("uram", 0))
        if uram:  # checked like the others where the part has it
            resources["uram"] = uram
        return Board(name=raw["name"], aliases=tuple(raw.get("aliases", ())), description=raw["description"],
                     part=raw["part"], family=raw["family"], toolchain=raw["toolchain"],
                     clock_mhz=float(raw["clock_mhz"]), resources=MappingProxyType(resources),
                     source=raw["source"], uram=uram, spram=int(raw["resources"].get("spram", 0)),
                     bram_kbits=int(raw["bram_kbits"]), bram_name=str(raw["bram_name"]),
                     board_files=str(raw.get("board_files", "")),
                     nextpnr=tuple(str(option) for option in raw.get("nextpnr", ())), dram=_dram(raw),
                     clock_pin=str(raw.get("clock_pin", "")),
                     no_dram=str(raw.get("dram", {}).get("none", "")))
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

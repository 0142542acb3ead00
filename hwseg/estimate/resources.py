"""Analytic resource formulas of the hardware blocks (LUT, FF, DSP, block RAM, URAM), per device family.

The formulas describe the structure that ``hwseg/hw`` builds (see each block's docstring) in terms
of IR-level parameters, so that estimates never need to elaborate hardware. They count in the
units of the family (:data:`FAMILIES`): LUT6 on Xilinx 7-series (``xc7``) and UltraScale+ (``xcup``),
LUT4 on Lattice ECP5 (``ecp5``) and iCE40 (``ice40``); DSP primitives of the family's width (a wider
product takes several, as Yosys's ``mul2dsp`` splits it); block RAMs of the family's size.

Memories are mapped as Yosys's ``memory_libmap`` maps them (:func:`memory_mapping`): each candidate
(distributed RAM, block RAM, UltraRAM where the part has it, or flip-flops and logic) is costed with
the primitive costs of Yosys's library files and the cheapest is taken. The hardware leaves the
choice to Yosys (Amaranth 0.5's ``Memory`` takes no ``ram_style`` attribute), so this *is* the
choice the emitted design gets.

LUT and FF figures are structural terms (adders, multiplexers, comparators, registers) scaled by
constants fitted per family and per component part against Yosys synthesis of the emitted components
(``bench/calibrate.py``; the constants live in ``calibration/constants.json`` and the measured data
beside them; the held-out error table is ``docs/calibration.md``). DSP and block-RAM counts are not
fitted: they follow from the primitive widths and the memory mapping.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from math import ceil, log2
from pathlib import Path

import numpy as np

__all__ = ["Resources", "FAMILIES", "memory", "memory_mapping", "sliding_window", "folded_window", "window_memory_shape",
           "fifo_memory_shape", "mac_array", "bit_mac_array",
           "multi_threshold", "mul_shift", "window_max", "window_mean", "argmax", "lane_converter", "fifo",
           "axis_adapter", "upsampler", "channel_affine", "stream_fork", "elementwise_add", "channel_concat",
           "transposed_control", "dsp_per_product", "packings", "packed_multiplicand_bits", "signed_bits", "recording", "reload_constants", "PARTS",
           "MULTIPLIER_BITS", "line_buffer_bits", "LOGIC_ROLES", "MEMORY_ROLES", "Split", "splitting"]

#: Requantization multipliers are at most 16-bit signed (the frontend folds scales into them).
MULTIPLIER_BITS = 16

FAMILIES = ("xc7", "xcup", "ecp5", "ice40")

#: The component parts whose LUT and FF terms carry a fitted constant.
PARTS = ("window", "window_gap", "folded_window", "mac", "mac_tree", "mac_pack", "mac_logic", "mac_soft", "mac_select", "bitmac", "bitmac_const", "threshold",
         "threshold_const", "threshold_encode", "threshold_table", "threshold_search", "mulshift", "mulshift_wide",
         "mulshift_split", "mulshift_soft", "mulshift_table", "pool", "mean", "argmax", "lanes", "fifo", "fork", "skid",
         "upsample", "upsample_blend", "upsample_control", "affine", "affine_soft", "affine_table", "add", "add_clamp", "concat",
         "transposed", "memory", "rom", "emulation", "axis", "dram", "arbiter")

_CONSTANTS_FILE = Path(__file__).resolve().parent / "calibration" / "constants.json"


def _load_constants() -> dict:
    if not _CONSTANTS_FILE.exists():
        return {}
    return json.loads(_CONSTANTS_FILE.read_text())["constants"]


_CONSTANTS = _load_constants()
_RECORD: list | None = None
_SPLIT: list | None = None

#: The role of each part's LUT and FF terms in a layer's breakdown (:class:`Split`): ``datapath`` holds, moves
#: and computes the data (pixel, product and sum registers, adders, compares and selects of data, constant
#: tables, memories and their read paths); ``control`` sequences it (pointers and address arithmetic, the
#: compares that pace a stream, stream handshakes). Every counter (:func:`_counter`, also the FIFO pointers,
#: the fold, group and position counters and the output adapter's ``tlast`` count) is control whatever the
#: part whose constant it shares. A part's term is not split: one that mixes both goes where most of it is.
LOGIC_ROLES = {
    "window": "datapath",            # tap registers, rows kept in registers, padding select (+ its frame compares)
    "window_gap": "datapath",        # the memory of the pixels between a dilated window's taps
    "folded_window": "control",      # ring pointers, cursor and base adds with their wraps, the ahead counter and its
                                     # compares, the in-frame compares (+ the padding select of one slice)
    "mac": "datapath",               # held vector, product, fold-sum and accumulator registers, accumulate adds
    "mac_tree": "datapath",          # the SIMD adder trees
    "mac_pack": "datapath",          # packing and unpacking two products per multiplier (7-series: the trees too)
    "mac_logic": "datapath",         # shift-and-add products (multiplier="logic")
    "mac_soft": "datapath",          # products left in logic
    "mac_select": "datapath",        # the SF:1 slice select of the held vector
    "bitmac": "datapath",            # bit-plane popcounts, shifts and adds, their registers
    "bitmac_const": "datapath",      # popcounts of an unfolded array (constant weights)
    "threshold": "datapath",         # comparators and their registers
    "threshold_const": "datapath",   # compares against constants (LUT6 chains)
    "threshold_encode": "datapath",  # the popcount of the compares
    "threshold_table": "datapath",   # the current group's thresholds (a constant table in LUTs)
    "threshold_search": "datapath",  # the binary search's threshold selects
    "mulshift": "datapath",          # clamp select and output register
    "mulshift_wide": "datapath",     # rounding add, clamp compares, accumulator input register
    "mulshift_split": "datapath",    # adds joining a product split over DSPs
    "mulshift_soft": "datapath",     # product pieces in logic
    "mulshift_table": "datapath",    # multipliers from a constant table
    "pool": "datapath", "mean": "datapath", "argmax": "datapath",   # compare/add trees and output registers
    "lanes": "datapath",             # a lane converter's gather register or scatter select
    "fifo": "control",               # a FIFO's flags and handshake
    "fork": "control",               # a fork's taken flags, valids and ready
    "skid": "datapath",              # a skid buffer's held beat and its select
    "upsample": "datapath",          # output register and line-buffer read select
    "upsample_blend": "datapath",    # bilinear blends and their registers
    "upsample_control": "control",   # position counters, compares that pace the reader, output walker
    "affine": "datapath", "affine_soft": "datapath",   # per-channel product, bias add, output register
    "affine_table": "datapath",      # a folded channelwise convolution's weight, bias and output registers, table
    "add": "datapath", "add_clamp": "datapath",        # adder, clamp compares and select, output register
    "concat": "control",             # the AND of the inputs' valid
    "transposed": "control",         # phase, tap and position sequencing, the ring's row pointers
    "memory": "datapath",            # LUTRAM cells, RAM in flip-flops, a block RAM's read select
    "rom": "datapath",               # a ROM in LUTs and its read register
    "emulation": "datapath",         # the old-data read emulated around a Lattice block RAM
    "axis": "control",               # (counters only: the adapters' tlast)
    "dram": "control",               # DRAM buffers' burst engines: address registers and adds, credits, pointers
    "arbiter": "control",            # the memory port's arbiter: grants, request and write-data selects
}

#: What a memory holds, for the breakdown (the ``role`` of :func:`memory`): ``window`` — a sliding window's
#: row memory and gap memory, a folded window's ring, a transposed convolution's or an upsampler's line buffer;
#: ``weights`` — weight and bias ROMs of MAC arrays; ``fifos`` — the stream FIFOs in front of a layer's inputs
#: (skip FIFOs of joins, input FIFOs of window layers). (Threshold and multiplier tables are constants in
#: LUTs, not memories: their LUTs are datapath logic.)
MEMORY_ROLES = ("window", "weights", "fifos")


def reload_constants() -> None:
    """Read ``calibration/constants.json`` again (after a new fit)."""
    global _CONSTANTS
    _CONSTANTS = _load_constants()


@contextmanager
def recording():
    """Collect the unscaled ``(family, part, lut, ff)`` terms of every formula evaluated inside (for fitting)."""
    global _RECORD
    previous, _RECORD = _RECORD, []
    try:
        yield _RECORD
    finally:
        _RECORD = previous


@dataclass(frozen=True)
class Split:
    """Where a layer's (or a design's) resources go: per memory role (:data:`MEMORY_ROLES`) its bits, block
    RAMs, URAMs, LUTRAM cells (as :class:`MemoryMapping` counts them) and the LUTs and FFs of those memories
    (which are part of the datapath logic); per logic role (``datapath``, ``control``) LUTs and FFs. The
    memory roles sum to the layer's ``memory_bits``, ``bram`` and ``uram``, the logic roles to its ``lut`` and
    ``ff`` (:func:`splitting`)."""

    memory: dict          # role → {"bits", "bram", "uram", "lutram", "lut", "ff"}
    logic: dict           # role → {"lut", "ff"}

    MEMORY_KEYS = ("bits", "bram", "uram", "lutram", "lut", "ff")

    @classmethod
    def empty(cls) -> "Split":
        return cls({role: dict.fromkeys(cls.MEMORY_KEYS, 0) for role in MEMORY_ROLES},
                   {role: {"lut": 0, "ff": 0} for role in ("datapath", "control")})

    @classmethod
    def of(cls, entries) -> "Split":
        """The sum of the entries a :func:`splitting` context collected."""
        split = cls.empty()
        for kind, role, values in entries:
            target = (split.memory if kind == "memory" else split.logic)[role]
            for key, value in zip(target, values):
                target[key] += value
        return split

    def __add__(self, other: "Split") -> "Split":
        return Split({role: {key: value + other.memory[role][key] for key, value in part.items()}
                      for role, part in self.memory.items()},
                     {role: {key: value + other.logic[role][key] for key, value in part.items()}
                      for role, part in self.logic.items()})

    def as_dict(self) -> dict:
        return {"memory": {role: dict(part) for role, part in self.memory.items()},
                "logic": {role: dict(part) for role, part in self.logic.items()}}


@contextmanager
def splitting():
    """Collect, for :class:`Split`, the role and scaled value of every LUT/FF term (``("logic", role, (lut,
    ff))``, the role from :data:`LOGIC_ROLES`, control for counters) and of every memory (``("memory", role,
    (bits, bram, uram, lutram, lut, ff))``) evaluated inside. Outside such a context nothing is collected."""
    global _SPLIT
    previous, _SPLIT = _SPLIT, []
    try:
        yield _SPLIT
    finally:
        _SPLIT = previous


def _logic_role(part: str) -> str:
    try:
        return LOGIC_ROLES[part]
    except KeyError:
        raise KeyError(f"part {part!r} has no role in hwseg.estimate.resources.LOGIC_ROLES (datapath or control)") from None


@dataclass(frozen=True)
class Resources:
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram: int = 0          # block RAMs of the family's size (18 Kb on Xilinx and ECP5, 4 Kb on iCE40)
    uram: int = 0          # UltraRAM blocks (288 Kb), on UltraScale+ parts that have them
    memory_bits: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp, self.bram + other.bram,
                         self.uram + other.uram, self.memory_bits + other.memory_bits)

    def astuple(self) -> tuple[int, ...]:
        # by hand: dataclasses.astuple deep-copies, and estimates add Resources millions of times
        return (self.lut, self.ff, self.dsp, self.bram, self.uram, self.memory_bits)

    def as_dict(self) -> dict[str, int]:
        """``lut``, ``ff``, ``dsp``, ``bram`` (and ``uram`` where any is used)."""
        out = {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram}
        if self.uram:
            out["uram"] = self.uram
        return out


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")


def _part(family: str, part: str, lut: float = 0.0, ff: float = 0.0, control: bool = False) -> Resources:
    """A part's structural LUT and FF terms scaled by its fitted constants (``control``: a counter's, whatever
    the part's role in :data:`LOGIC_ROLES`)."""
    _check_family(family)
    if _RECORD is not None:
        _RECORD.append((family, part, lut, ff))
    k = _CONSTANTS.get(family, {}).get(part, {})
    scaled = Resources(lut=round(k.get("lut", 1.0) * lut), ff=round(k.get("ff", 1.0) * ff))
    if _SPLIT is not None:
        _SPLIT.append(("logic", "control" if control else _logic_role(part), (scaled.lut, scaled.ff)))
    return scaled


def _bits(n: int) -> int:
    """Bits of a counter or index over ``n`` values."""
    return max(1, ceil(log2(max(n, 2))))


def signed_bits(values) -> int:
    """Width of the narrowest signed integer holding every value (and −1), as ``shape_for`` picks it."""
    values = np.asarray(values)
    lo, hi = min(-1, int(values.min())), max(0, int(values.max()))
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1


def _lut6(family: str) -> bool:
    return family in ("xc7", "xcup")


def _mux(inputs: int, bits: int, family: str) -> float:
    """LUTs of an ``inputs``:1 multiplexer of ``bits`` bits (a tree of LUT6 4:1 muxes on Xilinx; on Lattice
    a 2:1 mux per LUT4, ``hwseg.synth`` mapping ECP5 without its PFU muxes)."""
    if inputs <= 1 or bits <= 0:
        return 0.0
    if _lut6(family):   # a tree of 4:1 LUT6 muxes (ABC9 rarely keeps F7/F8 muxes for a select)
        per_bit, level = 0, inputs
        while level > 1:
            level = ceil(level / 4)
            per_bit += level
    else:
        per_bit = inputs - 1
    return float(per_bit * bits)


def _counter(family: str, part: str, *limits: int) -> Resources:
    """Counters wrapping at ``limits``: an incrementer and a terminal-count compare per bit."""
    bits = sum(_bits(n) for n in limits if n > 1)
    return _part(family, part, lut=2 * bits, ff=bits, control=True)


# --- DSP --------------------------------------------------------------------------------------------------

#: DSP operand widths per family (A × B; signed-only on Xilinx) and the least operand and product widths
#: Yosys puts in a DSP (the ``mul2dsp`` parameters of each synth script).
_DSP = {"xc7": dict(a=25, b=18, signed=True, min_ab=2, min_y=9),
        "xcup": dict(a=27, b=18, signed=True, min_ab=2, min_y=9),
        "ecp5": dict(a=18, b=18, signed=False, min_ab=2, min_y=0),
        "ice40": dict(a=16, b=16, signed=False, min_ab=2, min_y=11)}


def dsp_per_product(a_bits: int, b_bits: int, family: str, y_bits: int | None = None) -> int:
    """DSP primitives of one ``a_bits × b_bits`` signed product whose result is ``y_bits`` wide (default
    ``a + b``) (DSP48E1 25×18, DSP48E2 27×18, ECP5 MULT18X18D 18×18, iCE40 SB_MAC16 16×16); 0 when Yosys
    builds it in logic (operands under 2 bits, or a result under 9 bits on Xilinx, 11 on iCE40)."""
    _check_family(family)
    p = _DSP[family]
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    if a < p["min_ab"] or b < p["min_ab"] or (a + b if y_bits is None else y_bits) < p["min_y"]:
        return 0
    if p["signed"]:   # Xilinx: the top chunk keeps the sign (A or B wide), lower chunks are 17-bit unsigned
        n_a = 1 if a <= p["a"] else 1 + ceil((a - p["a"]) / 17)
        n_b = 1 if b <= p["b"] else 1 + ceil((b - p["b"]) / 17)
        return n_a * n_b
    size = p["a"]
    chunks_a = [size] * (a // size) + ([a % size] if a % size else [])
    chunks_b = [size] * (b // size) + ([b % size] if b % size else [])
    return sum(1 for x in chunks_a for y in chunks_b
               if x >= p["min_ab"] and y >= p["min_ab"] and x + y >= p["min_y"])


def packed_multiplicand_bits(in_bits: int, weight_bits: int) -> int:
    """Width of a packed multiplier's weight operand (``w_hi · 2^S + w_lo``, :class:`hwseg.hw.mac_array.MacArray`
    with ``pack=2``): the lane spacing ``S``, which holds one product of an ``in_bits`` activation (unsigned; a
    signed one needs a bit less) and a narrow-range ``weight_bits`` weight, plus the high weight."""
    return (in_bits + weight_bits) + weight_bits


def packings(in_bits: int, weight_bits: int, pe: int, family: str) -> tuple[int, ...]:
    """The ``pack`` values a MAC array may take on ``family``: 2 where ``pe`` is even and the packed product is
    one DSP as the plain one is (DSP48E1: 25 × 18, DSP48E2: 27 × 18; int8 × uint8 packs into both, with a 16-bit
    lane spacing); otherwise only 1. Lattice multipliers (18 × 18, 16 × 16) never take two products."""
    plain = dsp_per_product(in_bits + 1, weight_bits, family, y_bits=in_bits + weight_bits)
    wide = packed_multiplicand_bits(in_bits, weight_bits)
    if pe % 2 or plain != 1 or family not in ("xc7", "xcup"):
        return (1,)
    return (1, 2) if dsp_per_product(in_bits + 1, wide, family, y_bits=in_bits + wide) == 1 else (1,)


def _product_pieces(a_bits: int, b_bits: int, family: str) -> tuple[int, int]:
    """How ``mul2dsp`` splits an ``a_bits × b_bits`` product: the number of pieces (in DSPs or in logic)
    and the LUTs of the pieces too narrow for a DSP, which stay in logic (AND array and joining add)."""
    p = _DSP[family]
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    if p["signed"]:
        n_a = 1 if a <= p["a"] else 1 + ceil((a - p["a"]) / 17)
        n_b = 1 if b <= p["b"] else 1 + ceil((b - p["b"]) / 17)
        return n_a * n_b, 0
    size = p["a"]
    chunks_a = [size] * (a // size) + ([a % size] if a % size else [])
    chunks_b = [size] * (b // size) + ([b % size] if b % size else [])
    # a piece in logic: its AND array and the add that joins it to the rest
    soft = sum(x * y + x + y for x in chunks_a for y in chunks_b
               if not (x >= p["min_ab"] and y >= p["min_ab"] and x + y >= p["min_y"]))
    return len(chunks_a) * len(chunks_b), soft


# --- memories ---------------------------------------------------------------------------------------------

# Yosys memory_libmap library entries (share/xilinx/*.txt, share/lattice/*.txt, share/ice40/*.txt):
# (kind, cost, widthscale, [(depth, width), …], block units per cell, what the cell is called)
_XC7_BRAM = [("block", 129, 0, [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)], 1),
             ("block", 257, 0, [(32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72)], 2)]
_LIBRARY = {
    "xc7": [("distributed", 8, 7, [(32, 6), (64, 3)], 4)] + _XC7_BRAM,
    "xcup": [("distributed", 16, 16, [(32, 14), (64, 7)], 8)] + _XC7_BRAM,
    "ecp5": [("distributed", 4, 0, [(16, 4)], 6),
             ("block", 128, 0, [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)], 1)],
    "ice40": [("block", 64, 0, [(2048, 2), (1024, 4), (512, 8), (256, 16)], 1)],
}
_URAM = ("huge", 1024, 0, [(4096, 72)], 1)


@dataclass(frozen=True)
class MemoryMapping:
    kind: str          # "distributed", "block", "huge" (URAM) or "logic" (flip-flops / LUT ROM)
    cells: int         # primitives: LUTRAM cells, block RAMs (in the family's block units), URAMs
    luts: int          # LUTs of distributed-RAM cells, of a ROM in logic, and of address multiplexers
    ffs: int           # flip-flops: the read register of distributed RAM and ROM logic, RAM in flip-flops
    emulated: int = 0  # bits of read-first emulation around a Lattice block RAM (a register and a select each)


def _candidate_cost(cost: int, widthscale: int, depth_w: int, width_w: int, depth: int, width: int):
    """Yosys memory_libmap's cost of one geometry: (cost, cells, address chunks)."""
    chunks = ceil(depth / depth_w)
    cells = ceil(chunks * width / width_w)
    total = (cost - widthscale) * cells + widthscale * chunks * width / width_w
    if chunks > 1:
        total += 0.5 * (chunks - 1) * width + 0.5 * chunks   # read mux and write-enable decode
    return total, cells, chunks


def memory_mapping(depth: int, width: int, family: str, *, rom: bool = False, uram: bool = False,
                   delay_bound: bool = False, ultra: bool = False) -> MemoryMapping:
    """Where Yosys puts a ``depth × width`` simple-dual-port RAM (or a ROM: ``rom=True``, synchronous read,
    initialized) on a ``family`` part, by memory_libmap's cost rule (logic costs 1 per bit for RAM,
    1/64 (Xilinx) or 1/16 (Lattice) for ROM; distributed RAM is never used for ROMs; UltraRAM only with ``uram`` and not for ROMs).
    ``delay_bound``: a ROM in LUT6s whose read ABC9 maps for delay rather than area (the weight ROM of a MAC array
    with at most 4 products per PE, :func:`mac_array`)."""
    _check_family(family)
    if ultra and not (uram and family == "xcup" and not rom):
        raise ValueError("ultra (ram_style 'ultra') needs a RAM on an xcup part with UltraRAM")
    # (a ROM's logic cost per bit: 1/64 on Xilinx — synth_xilinx's `-logic-cost-rom 0.015625`; measured, 256 × 32
    # and 144 × 64 weight ROMs stay in LUTs where a RAMB18 costs 129 and a RAMB36 257, 320 × 32 goes to a RAMB18 —
    # and memory_libmap's default 1/16 on Lattice)
    best = ("logic", depth * width / ((64 if _lut6(family) else 16) if rom else 1), 0, 1, 0)
    library = list(_LIBRARY[family]) + ([_URAM] if uram and family == "xcup" and not rom else [])
    if ultra:   # ram_style "ultra": UltraRAM whatever it costs
        best, library = ("logic", float("inf"), 0, 1, 0), [_URAM]
    for kind, cost, widthscale, shapes, units in library:
        if rom and kind == "distributed":
            continue
        for depth_w, width_w in shapes:
            total, cells, chunks = _candidate_cost(cost, widthscale, depth_w, width_w, depth, width)
            if total < best[1]:
                best = (kind, total, cells * units, chunks, width_w)
    kind, _, cells, chunks, width_w = best
    mux = _mux(chunks, width, family) if chunks > 1 else 0.0
    if kind == "distributed":
        per_cell = {"xc7": 4, "xcup": 8, "ecp5": 6}[family]
        return MemoryMapping(kind, cells // per_cell, cells + round(mux), width)
    if kind in ("block", "huge"):
        # Lattice block RAMs do not declare read-first collisions: Yosys emulates the old-data read of a
        # RAM (a register of the write data and a select per bit); Xilinx block RAMs read first natively.
        # (the write data and the read data move to flip-flops around the block: two registers).
        emulation = width if family in ("ecp5", "ice40") and not rom else 0
        return MemoryMapping(kind, cells, round(mux), 0, emulation)
    if rom:   # a ROM in LUTs: a LUT per output bit per LUT-sized slice of the words, and the read register
        size = 64 if _lut6(family) else 16
        slices = ceil(depth / size)
        # a shallow ROM has few distinct columns (functions of its address): Yosys merges equal columns
        # and drops constant ones; with C = 2^depth possible columns, W columns of arbitrary content
        # hold about (C − 2)·(1 − (1 − 1/C)^W) distinct non-constant ones
        if depth <= 16:
            width = _distinct_columns(depth, width)
        # (a last, partly filled slice takes its share: a function of fewer address bits; the read register's
        # enable stays on the flip-flops' clock enable — measured in MAC arrays on xc7: 32 × 144 words take 149
        # LUT6, 48 × 64 73, 48 × 96 161, 128 × 64 242; on ECP5 32 × 144 447 LUT4, 48 × 96 493)
        luts = width * max(1.0, depth / size) + _mux(slices, width, family)
        if delay_bound and _lut6(family) and depth > 16:
            # ABC9 maps a LUT6 ROM whose read is not hidden behind a deeper path for delay: beyond 16 words it
            # spends about depth/12 LUT6 per bit, duplicating slices and the address logic (measured behind MAC
            # arrays of 1–4 products per PE on xc7: 32 × 8 words take 17 LUT6, 64 × 8 51, 128 × 8 69, 128 × 24
            # 189, 128 × 32 212, 144 × 64 634, 192 × 8 143, 256 × 8 135, 384 × 8 257–304; 215 on xcup), where a
            # MAC array of 6 or 8 products per PE reads such a ROM at 1–4 LUT6 per bit (48 × 64: 73, 128 × 48:
            # 190, 128 × 64: 242); LUT4 families stay near their slice count
            luts = max(luts, width * depth / 12)
        return MemoryMapping("logic", 0, round(luts), width)
    # a RAM in flip-flops: each word a row of enabled flip-flops (the write needs no LUT), the read a
    # depth:1 select per bit into the read register
    return MemoryMapping("logic", 0, round(_mux(depth, width, family)), depth * width + width)


def _distinct_columns(depth: int, width: int) -> int:
    """Distinct non-constant columns among ``width`` columns of arbitrary content of a ``depth``-word table:
    with ``C = 2^depth`` possible columns, about ``(C − 2)·(1 − (1 − 1/C)^W)``."""
    count = 2 ** depth
    return max(1, round((count - 2) * (1 - (1 - 1 / count) ** width)))


def memory(depth: int, width: int, family: str = "xc7", *, rom: bool = False, uram: bool = False,
           delay_bound: bool = False, read_first: bool = False, role: str | None = None,
           part: str | None = None, ultra: bool = False) -> Resources:
    """A simple dual-port memory (one write, one synchronous read; or a ROM) as Yosys maps it.
    A ROM in logic keeps its read register in flip-flops, also in front of the DSPs of a MAC array, which
    do not absorb it (measured on every family: 32 × 144 and 48 × 96 weight ROMs keep 144 and 96 read
    flip-flops; a ROM of up to 16 words one per distinct column). ``delay_bound``: see :func:`memory_mapping`.
    ``read_first``: a read may meet a write
    of the same word (a FIFO's): on Lattice block RAM Yosys then emulates the old-data read. ``role``: what
    it holds, one of :data:`MEMORY_ROLES` (for the breakdown, :func:`splitting`). ``part``: the constant its
    logic takes, where it is a structure of its own (default ``rom`` for a ROM in logic, else ``memory``).
    ``ultra``: synthesis is asked for UltraRAM (``ram_style`` "ultra")."""
    if depth <= 0 or width <= 0:
        return Resources()
    mapping = memory_mapping(depth, width, family, rom=rom, uram=uram, delay_bound=delay_bound, ultra=ultra)
    bits = depth * width
    ffs = mapping.ffs
    # a ROM in logic (LUT-ROM slices and their select) is a different structure from a RAM's address
    # decode and read select: a constant of its own
    logic = _part(family, part or ("rom" if rom and mapping.kind == "logic" else "memory"), lut=mapping.luts, ff=ffs)
    if mapping.emulated and read_first:
        logic = logic + _part(family, "emulation", lut=mapping.emulated, ff=2 * mapping.emulated)
    if _SPLIT is not None:
        if role not in MEMORY_ROLES:
            raise ValueError(f"a memory's role must be one of {', '.join(MEMORY_ROLES)}, not {role!r}")
        _SPLIT.append(("memory", role, (bits, mapping.cells if mapping.kind == "block" else 0,
                                        mapping.cells if mapping.kind == "huge" else 0,
                                        mapping.cells if mapping.kind == "distributed" else 0, logic.lut, logic.ff)))
    if mapping.kind == "block":
        return logic + Resources(bram=mapping.cells, memory_bits=bits)
    if mapping.kind == "huge":
        return logic + Resources(uram=mapping.cells, memory_bits=bits)
    return logic + Resources(memory_bits=bits)


# --- components -------------------------------------------------------------------------------------------

def sliding_window(*, channels: int, elem_bits: int, kernel, dilation, padded_width: int, padded_height: int,
                   family: str = "xc7", uram: bool = False) -> Resources:
    """Line buffers + tap registers: ``kh`` rows of ``L = (kw−1)·dw+1`` pixel registers (with ``dw ≥ 3``
    only the ``kw`` taps of each row, the ``dw − 1`` pixels between them in one memory of ``dw − 1`` words
    of ``kh·(kw−1)`` pixels), and one memory of depth ``D = dh·Wp − L`` whose word holds a pixel for each
    of the ``kh−1`` delayed rows (registers instead when ``D < 2``); position counters, the padding select
    and the output-position compares."""
    (kh, kw), (dh, dw) = kernel, dilation
    pixel = channels * elem_bits
    taps = (kw - 1) * dw + 1
    delay = dh * padded_width - taps
    rows = Resources()
    shape = window_memory_shape(channels=channels, elem_bits=elem_bits, kernel=kernel, dilation=dilation,
                                padded_width=padded_width)
    if shape is not None:
        rows = memory(*shape, family, uram=uram, role="window") + _counter(family, "window", delay)
    elif kh > 1:
        rows = _part(family, "window", ff=(kh - 1) * max(delay, 0) * pixel)
    gaps = Resources()
    if kw > 1 and dw - 1 >= 2:   # only the taps are registers; the gaps between them one memory (SlidingWindow)
        # (a few words, kept in flip-flops or LUTRAM beside the taps: its own constant — on iCE40 its read
        # select costs what the structure says while deep flip-flop memories cost less, measured)
        gaps = (memory(dw - 1, kh * (kw - 1) * pixel, family, role="window", part="window_gap")
                + _counter(family, "window", dw - 1))
        taps = kw
    registers = _part(family, "window", lut=pixel + 4 * (_bits(padded_width) + _bits(padded_height)),
                      ff=kh * taps * pixel + 1)
    return rows + gaps + registers + _counter(family, "window", padded_width, padded_height)


def folded_window(*, channels: int, elem_bits: int, simd: int, repeats: int, kernel, padded_width: int,
                  padded_height: int, out_width: int, out_height: int, ring_positions: int, family: str = "xc7",
                  uram: bool = False) -> Resources:
    """A :class:`~hwseg.hw.folded_window.FoldedWindow`: the ring memory (``P·CB`` words of ``simd`` elements;
    its read register is the output register), the writer's and the reader's counters, the reader's word
    cursor and window base (each an add modulo the ring and its wrap select), the ``ahead`` counter and its
    compares, the in-frame compares and the padding select."""
    (kh, kw), cb = kernel, channels // simd
    depth, width = ring_positions * cb, simd * elem_bits
    pointer = _bits(depth)
    ahead = _bits(max(ring_positions, padded_width * padded_height)) + 2
    # the writer's counters (beat, px, py, the write pointer) and the reader's (beat, kx, ky, repeat, ox, oy)
    counters = sum(_bits(n) for n in (cb, padded_width, padded_height, depth, cb, kw, kh, repeats, out_width,
                                      out_height) if n > 1)
    # LUTs: the padding select, one per bit of the slice written (a LUT2 each on xc7), and the control, in LUT6:
    # a LUT per counter bit (its incrementer on the carry chain, the wrap compare shared), 2 per bit of px and py
    # (the in-frame compares), 3 per pointer bit (the cursor's add-modulos by its three steps and their select,
    # the base's add-modulo), one per bit of `ahead`, and 16 for the handshakes, the gap and step selects and
    # the `ahead` compares (measured by cutting parts out of a FoldedWindow on xc7 — at a 10-bit pointer the
    # cursor takes 40, the base 11, the in-frame compares 15 — and fitted over 18 geometries: the control stays
    # near 90–110 LUT6 however deep the ring); LUT4 take about twice as many for the same control (ECP5: the
    # cursor 73, the whole control 1.8–2× xc7's)
    control = 2 * (_bits(padded_width) + _bits(padded_height)) + 3 * pointer + ahead + counters + 16
    logic = _part(family, "folded_window", lut=width + (1 if _lut6(family) else 2) * control,
                  ff=2 * pointer + ahead + 1 + counters)
    # (the ring's read port is not transparent to its write port: Lattice block RAM emulates the old-data read)
    return memory(depth, width, family, uram=uram, read_first=True, role="window") + logic


def window_memory_shape(*, channels: int, elem_bits: int, kernel, dilation, padded_width: int):
    """``(depth, width)`` of a sliding window's row memory (``dh·Wp − L`` words of ``kh−1`` pixels), or None
    where it keeps its rows in registers (a single row, or fewer than 2 words)."""
    (kh, kw), (dh, dw) = kernel, dilation
    delay = dh * padded_width - ((kw - 1) * dw + 1)
    return (delay, (kh - 1) * channels * elem_bits) if kh > 1 and delay >= 2 else None


def fifo_memory_shape(*, depth: int, width: int) -> tuple[int, int]:
    """``(depth, width)`` of a ``StreamFIFO``'s memory: at least 3 entries, one of them its output register."""
    return max(depth, 3) - 1, width


def line_buffer_bits(*, channels: int, elem_bits: int, kernel, dilation, padded_width: int) -> int:
    """Bits of row memory a sliding window holds: ``(kh−1)·(dh·Wp − L)`` pixels."""
    (kh, kw), (dh, dw) = kernel, dilation
    taps = (kw - 1) * dw + 1
    return max(kh - 1, 0) * max(dh * padded_width - taps, 0) * channels * elem_bits


def mac_array(*, in_count: int, in_bits: int, weight_bits: int, out_channels: int, pe: int, simd: int,
              acc_bits: int, family: str = "xc7", pixel_slices: int | None = None, serial: bool = False,
              loaded_weights: tuple[int, int] | None = None,
              uram: bool = False, external_weights: bool = False, pack: int = 1,
              multiplier: str = "dsp") -> Resources:
    """PE × SIMD multipliers and their product register, a SIMD-way adder tree per PE into a register, PE
    accumulators, the weight ROM (``NF·SF``
    words of ``pe·simd·weight_bits``; constants when ``NF·SF = 1``), the SF:1 slice select of the held
    input vector, and the fold counters. Each product is ``(in_bits+1) × weight_bits`` signed (the
    unsigned activation widened by its sign bit). ``pixel_slices``: the array reads its ``simd``
    inputs from a line buffer (a transposed convolution's taps) instead of holding the whole vector: the
    buffer's read address picks the tap, and what remains to select is the slice of the pixel read (one
    of ``pixel_slices = channels / simd``). ``serial``: the folds arrive one per beat (from a folded
    window): the same array without the held vector and its select. ``loaded_weights`` (its folds' bits and folds
    per word, :class:`.offchip.WeightStore`): the weights are in a RAM loaded from DRAM,
    which may take UltraRAM (``uram``). ``pack=2``: PE pairs share the multipliers (:func:`packed_multiplicand_bits`
    wide), whose packing adds, unpacking adds and — on 7-series, whose DSP48E1s then no longer take the adder
    trees into their post-adders — trees are logic (part ``mac_pack``). ``multiplier="logic"``: every product is
    shifts and adds, a partial product per bit of the narrower operand (part ``mac_logic``), no DSP."""
    nf, sf = out_channels // pe, in_count // simd
    product_bits = in_bits + weight_bits
    multipliers = pe * simd // pack
    # the product of an unsigned in_bits and a signed weight is in_bits + weight_bits wide (Amaranth)
    multiplicand_bits = weight_bits if pack == 1 else packed_multiplicand_bits(in_bits, weight_bits)
    in_logic = multiplier == "logic"
    per_product = 0 if in_logic else dsp_per_product(in_bits + 1, multiplicand_bits, family,
                                                     y_bits=in_bits + multiplicand_bits)
    dsp = multipliers * per_product
    # products Yosys leaves in logic (too narrow for a DSP); shift-and-add products (multiplier="logic")
    soft = 0 if per_product or in_logic else pe * simd * in_bits * weight_bits
    # a partial product of the wider operand per bit of the narrower, each add as wide as the product (calibrated
    # on 8-bit weights, the only ones the folder puts in logic: :func:`hwseg.estimate.network.mac_variants`)
    shift_add = pe * simd * min(in_bits, weight_bits) * product_bits if in_logic else 0
    tree_bits = product_bits + _bits(simd)
    adders = pe * (simd - 1) * tree_bits
    accumulate = pe * 2 * acc_bits
    holds_vector = pixel_slices is None     # (or serial: registered products, weights read ahead)
    select = 0.0 if serial else _mux(sf if holds_vector else pixel_slices, simd * in_bits, family)
    if holds_vector and not serial and sf > 1 and not _lut6(family):
        # the read-ahead register takes the input's first slice or the next fold's: one more 2:1 per bit in LUT4s
        # (a LUT6 tree takes the extra input in its last level)
        select += _mux(2, simd * in_bits, family)
    # the adder trees (Yosys merges products and sums into $macc cells; Lattice flows build them in LUTs)
    # and the rest: slice select, accumulators, products in logic
    # the register between the multipliers and the trees: a MacArray registers the pe × simd products
    # (7-series DSPs take them as M registers: measured, conv_3x3_c8's flip-flops are the same with and
    # without them on xc7, 216 more on ECP5); a transposed convolution registers the slice it multiplies.
    # The per-PE fold-sum register behind the tree stays.
    if holds_vector:
        stage_registers = 0 if family == "xc7" and per_product else pe * simd * product_bits
    else:
        stage_registers = simd * in_bits
    stage_registers, accumulators = stage_registers + pe * tree_bits, pe * acc_bits
    held = in_count * in_bits if holds_vector and not serial else 0
    if family == "xc7" and per_product and held and sf == 1:
        # with one fold per vector (SF = 1) no select stands between the held vector and the multipliers:
        # 7-series DSPs take it as their A registers (measured: conv_3x3_c3_k4_full's and a 48-input
        # array's held vectors vanish on xc7, their fold-sum and accumulator registers stay; UltraScale+
        # keeps both)
        held = 0
    if pack > 1:
        # per multiplier the pre-add of the high weight (its borrow from the low one) and the high product's
        # borrow add; on 7-series also the trees the DSPs took unpacked (and their product registers)
        packing = multipliers * (weight_bits + product_bits)
        logic = _part(family, "mac_pack", lut=packing + (adders if family == "xc7" else 0),
                      ff=multipliers * product_bits if family == "xc7" else 0)
    else:
        logic = Resources()
    if in_logic:
        logic += _part(family, "mac_logic", lut=shift_add)
    # the slice the next fold multiplies, read ahead into a register (a held vector of more than one slice)
    read_ahead = simd * in_bits if holds_vector and not serial and sf > 1 else 0
    logic += (_part(family, "mac_tree", lut=adders)
             + _part(family, "mac_soft", lut=soft)
             + _part(family, "mac_select", lut=select, ff=read_ahead)
             + _part(family, "mac", lut=accumulate, ff=held + stage_registers + accumulators + 4))
    # the weight ROM's read register stays in flip-flops (:func:`memory`); behind at most 4 products per PE
    # (an adder tree of fewer than 3 levels) its read is mapped for delay (:func:`memory_mapping`)
    if loaded_weights is not None:
        # a RAM written from DRAM after reset (UltraRAM where the part has it and the shape suits), packed folds
        # chosen by the registered low bits of the fold, the write address and the loaded flag
        # (``external_weights``: the RAM, its write address and flags are a :func:`weight_ram`'s)
        fold_bits, packed = loaded_weights
        depth = -(-nf * sf // packed)
        weights = _part(family, "mac_select", lut=_mux(packed, fold_bits, family) if packed > 1 else 0,
                        ff=_bits(packed) if packed > 1 else 0)
        if not external_weights:
            weights = (weights + memory(depth, fold_bits * packed, family, uram=uram, role="weights")
                       + _counter(family, "mac", depth) + _part(family, "mac", ff=2))
    else:
        weights = (memory(nf * sf, pe * simd * weight_bits, family, rom=True, delay_bound=simd <= 4, role="weights")
                   if nf * sf > 1 else Resources())
    bias = memory(nf, pe * 8, family, rom=True, role="weights") if nf > 1 else Resources()
    return logic + weights + bias + Resources(dsp=dsp) + _counter(family, "mac", nf * sf, sf, nf)


def weight_ram(*, clients: list[tuple[int, int]], family: str = "xcup") -> Resources:
    """A :class:`~hwseg.hw.weights.WeightRam`: the loaded weight memories of ``clients`` ``(word_bits, depth)`` in
    one UltraRAM-backed RAM (``ram_style`` "ultra": a port each), and per client its write address counter (the
    select of its port's address goes into the same LUTs: measured, two clients of 1,544 words take 36 LUT on
    xcup, of 6,144 words 173 with the UltraRAM cascade's output select) and its written and loaded flags."""
    total, width = sum(depth for _, depth in clients), max(bits for bits, _ in clients)
    ram = memory(total, width, family, uram=True, ultra=True, role="weights")
    for _, depth in clients:
        ram = ram + _part(family, "weight_ram", lut=2 * _bits(depth), ff=_bits(depth) + 2, control=True)
    return ram


def bit_mac_array(*, in_count: int, in_bits: int, out_channels: int, pe: int, simd: int, acc_bits: int,
                  family: str = "xc7", serial: bool = False) -> Resources:
    """PE × SIMD ±1-weight MACs by bit planes: per plane an AND and a popcount tree per PE, one shared
    popcount of the activations, shifts and adds; a 1-bit-per-weight ROM. No DSP. ``serial``: the folds
    arrive one per beat (from a folded window): no held vector and no slice select."""
    nf, sf = out_channels // pe, in_count // simd
    # fully unfolded (NF·SF = 1) the weights are constants: each PE's popcount counts only the inputs
    # whose weight is +1 (about half), the AND disappears, which on LUT4 frees an input of every first-level
    # LUT: a part of its own
    unfolded = nf * sf == 1
    per_pe = 0.5 if unfolded else 1.0
    popcounts = (per_pe * pe + 1) * in_bits * simd * (1.0 if _lut6(family) else 2.0)
    combine = pe * in_bits * (_bits(simd) + 2) + pe * 2 * acc_bits
    select = 0.0 if serial else _mux(sf, simd * in_bits, family)
    held = 0 if serial else in_count * in_bits
    logic = (_part(family, "bitmac", lut=combine + select + (0 if unfolded else popcounts),
                   ff=held + simd * in_bits + pe * (in_bits * (_bits(simd) + 1) + 2 * acc_bits) + 4)
             + _part(family, "bitmac_const", lut=popcounts if unfolded else 0))
    weights = memory(nf * sf, pe * simd, family, rom=True, role="weights") if nf * sf > 1 else Resources()
    return logic + weights + _counter(family, "bitmac", nf * sf, sf, nf)


def multi_threshold(*, lanes: int, channels: int, acc_bits: int, thresholds: int, family: str = "xc7") -> Resources:
    """Per lane ``thresholds`` comparators at once (up to 7) and a popcount, else a pipelined binary search:
    one comparator per stage (``log2`` stages) against a threshold selected by the bits found so far, the
    accumulator carried along. The thresholds of the current channel group come from a constant table (an
    asynchronous ROM in LUTs; constants for one group: cheaper compares on Xilinx, the same carry chain on
    Lattice). LUT terms: the compares (against constants on Xilinx: a LUT6 chain over the bits) with the
    popcount of their results, the table's share, the search's threshold selects."""
    groups = channels // lanes
    stages = thresholds.bit_length()
    if thresholds <= 7:
        compares, ff, search = lanes * thresholds, lanes * (thresholds + stages) + 2, 0
    else:
        compares = lanes * stages
        ff = lanes * ((stages - 1) * acc_bits + 2 * stages) + stages
        search = lanes * stages * acc_bits
    table = compares * acc_bits if groups > 1 else 0
    if family == "ice40" and 1 < groups <= 16:
        # iCE40 compares in SB_CARRY chains, which take the table bits as plain inputs: each distinct
        # column of the table (a function of the group counter) is one LUT4, shared by every compare
        # that needs it (measured: 14 for 228 and for 456 table bits of 4 groups)
        table = _distinct_columns(groups, compares * acc_bits)
    # up to 7 compares at once: their outputs are counted into the level (a popcount per lane)
    encode = lanes * stages if 1 < thresholds <= 7 else 0
    if _lut6(family) and groups == 1 and thresholds <= 7:
        # compares against constants on LUT6: a chain of LUTs, each taking 5 more bits (no carry chain)
        compare = _part(family, "threshold_const", lut=compares * ceil((acc_bits - 1) / 5) + encode, ff=ff)
    else:
        # iCE40: each compare is an SB_CARRY chain (no LUTs along it), its carry-out read through a LUT
        per_compare = 1 if family == "ice40" else acc_bits
        compare = _part(family, "threshold", lut=compares * per_compare, ff=ff) + _part(family, "threshold_encode",
                                                                                      lut=encode)
    return (compare
            + _part(family, "threshold_table", lut=table) + _part(family, "threshold_search", lut=search)
            + _counter(family, "threshold", groups))


def mul_shift(*, lanes: int, channels: int, acc_bits: int, out_bits: int, multiplier_bits: int = MULTIPLIER_BITS,
              shift: int = 0, family: str = "xc7") -> Resources:
    """Per lane one ``acc × M`` product (DSP), the rounding add, shift and clamp into the output register;
    the current group's multipliers from a constant table of ``channels/lanes`` groups.

    Two LUT and FF terms: the output side (the clamp's select, the table, the output register) and the
    wide side over the ``P − shift`` kept bits (the rounding add above bit ``shift − 1``, the two clamp
    compares, the adds joining a product split over several DSPs, the accumulator input register) —
    Xilinx DSPs take much of the wide side (post-adder, cascade, input registers), Lattice ones less.
    On LUT6 (Xilinx) the wide side costs carry cells rather than LUTs: the rounding add of a constant
    needs none, and the clamp folds the bits above the output into each output bit's LUT while they
    are few (``kept − out_bits ≤ 5``: sign, those bits and the own bit fit a LUT6); beyond, the upper
    bits are reduced first, about a LUT per two of them (measured on one lane: 8 LUTs at 12 and 13
    kept bits, 11–13 at 14–18, 15 at 24)."""
    groups = channels // lanes
    product = acc_bits + multiplier_bits
    kept = max(product - shift, out_bits)
    per_product = dsp_per_product(acc_bits, multiplier_bits, family)
    pieces, soft = _product_pieces(acc_bits, multiplier_bits, family)
    # the adds joining the DSP pieces of a split product span the bits above the first piece; a narrow
    # piece Yosys leaves in logic is counted apart (structural: its AND array and joining add)
    # (a LUT per joined bit on xcup and ECP5; a DSP48E1 cascade and the SB_MAC16 adders join them without
    # LUTs: measured, mulshift_c4_l4_acc28's joins take 105 LUT2 on xcup, carry cells alone on xc7)
    split = (max(product - 18, 0) * (per_product - 1)
             if per_product > 1 and family in ("xcup", "ecp5") else 0)
    narrow = _part(family, "mulshift", lut=lanes * out_bits, ff=lanes * out_bits + 2)
    # several groups: the multiplier is a register loaded from the table, not a constant Yosys can fold
    table = _part(family, "mulshift_table", lut=lanes * (multiplier_bits + kept) if groups > 1 else 0)
    # the rounding add and the two clamp compares over the kept bits, as carry chains (on LUT6, the
    # clamp's reduction of the bits above the output)
    if _lut6(family):
        upper = kept - out_bits
        wide_lut = lanes * (upper / 2 if upper > 5 else 0)
    else:
        wide_lut = lanes * (3 * kept + 1)
    wide = _part(family, "mulshift_wide", lut=wide_lut, ff=lanes * acc_bits)
    # Xilinx DSPs cascade the pieces (DSP48E1 fully, DSP48E2 less), Lattice ones join them in logic
    joins = _part(family, "mulshift_split", lut=lanes * split) + _part(family, "mulshift_soft", lut=lanes * soft)
    return narrow + wide + joins + table + Resources(dsp=lanes * per_product) + _counter(family, "mulshift", groups)


def window_max(*, window: int, channels: int, elem_bits: int, family: str = "xc7") -> Resources:
    return _part(family, "pool", lut=2 * (window - 1) * channels * elem_bits, ff=channels * elem_bits + 1)


def window_mean(*, window: int, channels: int, elem_bits: int, family: str = "xc7") -> Resources:
    """An adder tree per channel (window − 1 adders growing to elem_bits + log2 window), the rounding
    add, and a register every second level (WindowMean)."""
    n = max(window.bit_length() - 1, 0)
    adders = (window - 1) * (elem_bits + n // 2 + 1)
    registers = sum((window >> (2 * s)) * (elem_bits + 2 * s) for s in range(1, n // 2 + 1))
    return _part(family, "mean", lut=channels * (adders + elem_bits + n), ff=channels * (registers + elem_bits) + 1)


def argmax(*, channels: int, elem_bits: int, index_bits: int, family: str = "xc7") -> Resources:
    """A tree of ``channels − 1`` compare-and-select nodes (value and index) into the output register; the
    index needs ``log2 channels`` bits whatever the output width (the rest are constant zeros)."""
    index = min(index_bits, _bits(channels))
    return _part(family, "argmax", lut=(channels - 1) * (2 * elem_bits + index), ff=index + 1)


def skid_buffer(*, width: int, family: str = "xc7") -> Resources:
    """A :class:`~hwseg.hw.skid.SkidBuffer` of ``width`` payload bits: the held beat and its flag, and a 2:1 select
    per payload bit and for the valid."""
    return _part(family, "skid", ff=width + 1, lut=_mux(2, width + 1, family))


def lane_converter(*, in_lanes: int, out_lanes: int, elem_bits: int, family: str = "xc7") -> Resources:
    if in_lanes == out_lanes:
        return Resources()
    if in_lanes < out_lanes:  # gather into a register, one piece enabled at a time
        ratio = out_lanes // in_lanes
        return (_part(family, "lanes", ff=out_lanes * elem_bits + 1, lut=ratio)
                + _counter(family, "lanes", ratio))
    ratio = in_lanes // out_lanes  # scatter: hold and select
    return (_part(family, "lanes", ff=in_lanes * elem_bits + 1, lut=_mux(ratio, out_lanes * elem_bits, family))
            + _counter(family, "lanes", ratio))


def fifo(*, depth: int, width: int, family: str = "xc7", uram: bool = False) -> Resources:
    """A synchronous FIFO (``StreamFIFO``: at least 3 entries; a memory of ``depth − 1`` words whose
    synchronous read port is the output register), its pointers and level."""
    words, _ = fifo_memory_shape(depth=depth, width=width)
    depth = max(depth, 3)
    return (memory(words, width, family, uram=uram, read_first=True, role="fifos") + _part(family, "fifo", ff=2, lut=4)
            + _counter(family, "fifo", depth, depth, depth))


def upsampler(*, channels: int, elem_bits: int, bilinear: bool, shift: int, rows: int = 1, factor=(2, 2),
              height: int = 64, width: int = 64, family: str = "xc7") -> Resources:
    """Row/column counters, the line-buffer read select and the output register; bilinear adds per channel
    along each upsampled axis one blend ``(s0 << b) + (s1 − s0)·w1`` whose product by the narrow weight
    ``w1 ≤ 2f − 1`` is shift-and-add logic, never a DSP (``hwseg.hw.upsample``: the difference, one gated
    add per weight bit), the registers between the vertical and horizontal blends, and the rounding shift.

    The control (one per instance, whatever the channels): the input side's and the reader's position
    counters over the ``height × width`` input and the compares that pace them (is the slot's previous
    row read, is the pixel a target needs in); bilinear runs an output walker beside the reader, with its
    own counters and weight selects: counted twice."""
    base = _part(family, "upsample", ff=channels * elem_bits + 8, lut=rows * channels * elem_bits / 2)
    positions = _bits(height) + _bits(width) + sum(_bits(f) for f in factor)
    walkers = 2 if bilinear else 1
    base = base + _part(family, "upsample_control", lut=walkers * 4 * positions, ff=walkers * 2 * positions)
    if not bilinear:
        return base
    blend, sample = 0, elem_bits
    for f in factor:
        if f > 1:
            weight_bits = (2 * f - 1).bit_length()
            blend += (sample + 1) + weight_bits * (sample + weight_bits + 1)
            sample += (2 * f).bit_length() - 1
    held = elem_bits + factor[0].bit_length() + 1    # V, and the pair of the horizontal blend
    return base + _part(family, "upsample_blend", lut=channels * (blend + shift + elem_bits), ff=channels * 3 * held)


def channel_affine(*, channels: int, in_bits: int, acc_bits: int, weight_bits: int = 8, weights=None,
                   lanes: int | None = None, bias_bits: int | None = None, family: str = "xc7") -> Resources:
    """Per channel a product by a constant weight plus the bias, into the output register. Yosys puts the
    product in a DSP like any other (even a product by ±1), except a product by 0 and one whose result is
    too narrow for the family's DSP (``weights``: the per-channel values, when known; a constant takes at
    least 2 bits). On 7-series, a DSP48E1 whose product is the whole result takes the bias add (C port) and
    the output register (P register) with it; a weight with trailing zero bits is multiplied shifted
    (``w >> z``, then ``<< z``), which breaks that chain, so its add and register stay in logic (measured:
    affine_c8's 3 even weights keep 3 channels of output register, its 5 odd ones none).

    Folded (``lanes < channels``): each of the ``lanes`` products is by a weight register (a DSP where the
    family takes the product), loaded with its bias register from the table of the ``channels/lanes``
    groups on every beat, a group counter, and the output register."""
    lanes = channels if lanes is None else lanes
    if lanes < channels:
        groups, bias_bits = channels // lanes, bias_bits or acc_bits
        per_lane = dsp_per_product(in_bits + 1, weight_bits, family, y_bits=in_bits + weight_bits)
        soft = 0 if per_lane else (in_bits + 1) * (weight_bits - 1) + acc_bits
        # (its own part, output register included: how much of it the DSP takes differs from the constant
        # products' — measured on xc7, affine_folded_c16_l4 keeps 21 FF of its 4 lanes' registers)
        registers = weight_bits + bias_bits + acc_bits
        return (_part(family, "affine_table", lut=lanes * (weight_bits + bias_bits), ff=lanes * registers)
                + _part(family, "affine_soft", lut=lanes * soft)
                + Resources(dsp=lanes * per_lane) + _counter(family, "affine_table", groups))
    if weights is None:
        weights = [1] * channels    # unknown: counted as odd (packable) weights of weight_bits
        widths = [weight_bits] * channels
    else:
        weights = [int(v) for v in weights]
        widths = [max(signed_bits([w]), 2) for w in weights if w]
    in_dsp = [bool(dsp_per_product(in_bits + 1, b, family, y_bits=in_bits + b)) for b in widths]
    dsp = sum(dsp_per_product(in_bits + 1, b, family, y_bits=in_bits + b) for b in widths)
    # a product left in logic: its partial-product adds (one per weight bit after the first) and the bias
    # add the DSP would otherwise take, as carry chains
    soft = sum((in_bits + 1) * (b - 1) + acc_bits for b, hard in zip(widths, in_dsp) if not hard)
    packed = (sum(1 for w, hard in zip((w for w in weights if w), in_dsp) if hard and w % 2)
              if family == "xc7" else 0)
    kept = channels - packed
    return (_part(family, "affine", lut=kept * acc_bits, ff=kept * acc_bits + 1)
            + _part(family, "affine_soft", lut=soft) + Resources(dsp=dsp))


def stream_fork(*, outputs: int, width: int = 0, family: str = "xc7") -> Resources:
    """A fork's per-output 'taken' flags, each output's valid, and the ready: an AND over the ``2·outputs``
    (taken | ready) inputs, a tree of LUTs, beside one LUT per flag and per valid."""
    lut = 2 * outputs + ceil((2 * outputs - 1) / (5 if _lut6(family) else 3))
    return _part(family, "fork", ff=outputs, lut=lut)


def elementwise_add(*, lanes: int, out_bits: int, in_bits: int = 0, clamp_sides: int = 2,
                    family: str = "xc7") -> Resources:
    """Per lane an adder and the clamp into a registered output: a compare and a select for each side of
    ``[lo, hi]`` the sum can pass (``clamp_sides``: 0, 1 or 2; Yosys drops a compare that cannot fire).
    Two LUT terms: the adder and select, and the compares."""
    sum_bits = (in_bits or out_bits) + 1
    # the adder's top sum bit is the carry chain's carry-out: a LUT per lower sum bit
    return (_part(family, "add", lut=lanes * (sum_bits - 1 + out_bits), ff=lanes * out_bits + 1)
            + _part(family, "add_clamp", lut=lanes * clamp_sides * sum_bits))


def channel_concat(*, inputs: int, family: str = "xc7") -> Resources:
    """A join: wires and one AND of the inputs' valid."""
    return _part(family, "concat", lut=ceil(inputs / 3) + 1)


def transposed_control(*, height: int, width: int, kernel, stride, family: str = "xc7") -> Resources:
    """A transposed convolution's phase and tap sequencing: output position, phase and tap counters and
    the ring-buffer row pointers."""
    (kh, kw), (sh, sw) = kernel, stride
    bits = _bits(height * sh) + _bits(width * sw) + _bits(kh) + _bits(kw) + 2 * _bits(height)
    return _part(family, "transposed", lut=6 * bits, ff=3 * bits)


def axis_adapter(*, beats_per_frame: int, family: str = "xc7") -> Resources:
    return _counter(family, "axis", beats_per_frame)


# --- DRAM buffers (hwseg.hw.dram) --------------------------------------------------------------------------

def _burst_engines(*, data_bits: int, address_bits: int, burst: int, outstanding: int, read_buffer: int,
                   reads: int, family: str, uram: bool, role: str) -> Resources:
    """A BurstWriter (staging of two bursts, the address register, the beats left, the responses awaited) and a
    BurstReader feeding ``reads`` buffers of ``read_buffer`` words (each with its credit counter)."""
    total = memory(2 * burst - 1, data_bits, family, uram=uram, read_first=True, role=role)
    for _ in range(reads):
        total = total + memory(read_buffer - 1, data_bits, family, uram=uram, read_first=True, role=role)
    request = address_bits + 8
    credit = _bits(read_buffer + 1)
    total = total + _part(family, "dram", lut=2 * request + reads * 3 * credit + 4 * outstanding,
                          ff=2 * request + reads * credit + 2 * _bits(outstanding) + 2 * 9)
    return total + _counter(family, "dram", MAX_BURST_BEATS, outstanding, outstanding)


#: the longest AXI4 burst (hwseg.hw.dram.MAX_BURST)
MAX_BURST_BEATS = 256


def dram_row_taps(*, taps: int, pixel_bits: int, words_per_beat: int, width: int, frame_rows: int, row_words: int,
                  ring_rows: int, stride: int, data_bits: int, address_bits: int, burst: int, outstanding: int, read_buffer: int,
                  family: str = "xc7", uram: bool = False, word_beats: bool = False) -> Resources:
    """A :class:`~hwseg.hw.dram.DramRowTaps`: the burst engines (a read buffer per tap: every tap, the newest and
    the padding ones too, is read back from DRAM, so the output needs no select), the word split of the input with
    the zero row's words, the word gathers of the taps (``word_beats``: a word a beat in and out, neither, but a
    select of the tap's buffer and the word and tap counters), the row-time, column, write, commit and read pointers and
    the address computations."""
    total = _burst_engines(data_bits=data_bits, address_bits=address_bits, burst=burst, outstanding=outstanding,
                           read_buffer=read_buffer, reads=taps, family=family, uram=uram, role="window")
    if word_beats:
        # a word a beat in and out: the output selects the tap's read buffer (its words and the tap counted)
        total = total + _part(family, "dram", lut=_mux(taps, data_bits, family), ff=0) + _counter(
            family, "dram", words_per_beat, taps, words_per_beat)
    else:
        total = total + lane_converter(in_lanes=words_per_beat, out_lanes=1, elem_bits=data_bits, family=family)
        for _ in range(taps):
            total = total + lane_converter(in_lanes=1, out_lanes=words_per_beat, elem_bits=data_bits, family=family)
    row_bits = _bits(ring_rows) + 4
    # whether a row time gives an output: two compares of the row time (for the intake's and the output's row
    # times) where the stride is a power of two, else a table of the row times
    gives = 4 * _bits(frame_rows) if stride & (stride - 1) == 0 else 2 * frame_rows
    # (the zero row: an address select on each channel, the write data's zero, its two flags)
    total = total + _part(family, "dram", lut=4 * address_bits + 4 * row_bits + gives + data_bits,
                          ff=3 * row_bits + 2)
    return total + _counter(family, "dram", frame_rows, width, frame_rows, row_words, row_words, row_words, row_words,
                            max(taps, 2))


def dram_fifo(*, beat_bits: int, words_per_beat: int, region_words: int, data_bits: int, address_bits: int,
              burst: int, outstanding: int, read_buffer: int, family: str = "xc7", uram: bool = False) -> Resources:
    """A :class:`~hwseg.hw.dram.DramFifo`: the burst engines, the word split and gather, four ring pointers and the
    run-length and address computations."""
    total = _burst_engines(data_bits=data_bits, address_bits=address_bits, burst=burst, outstanding=outstanding,
                           read_buffer=read_buffer, reads=1, family=family, uram=uram, role="fifos")
    total = total + lane_converter(in_lanes=words_per_beat, out_lanes=1, elem_bits=data_bits, family=family)
    total = total + lane_converter(in_lanes=1, out_lanes=words_per_beat, elem_bits=data_bits, family=family)
    pointer = _bits(2 * region_words)
    return total + _part(family, "dram", lut=2 * address_bits + 6 * pointer + 4 * _bits(burst), ff=4 * pointer)


def weight_loader(*, stores: list[tuple[int, int]], data_bits: int, address_bits: int, burst: int,
                  outstanding: int, family: str = "xc7", uram: bool = False) -> Resources:
    """A :class:`~hwseg.hw.weights.WeightLoader` for ``stores`` ``(word_bits, depth)``: the read engine (a buffer
    of two bursts), a gather register per store whose words take several memory words, the image's burst address
    and the store and word counters with their per-store constants."""
    total = memory(2 * burst - 1, data_bits, family, uram=uram, read_first=True, role="weights")
    request = address_bits + 8
    credit = _bits(2 * burst + 1)
    count = len(stores)
    total = total + _part(family, "dram", lut=2 * request + 3 * credit + 4 * outstanding + 2 * count,
                          ff=request + credit + 2 * _bits(outstanding) + 9)
    for word_bits, _ in stores:
        beats = -(-word_bits // data_bits)
        if beats > 1:
            total = total + lane_converter(in_lanes=1, out_lanes=beats, elem_bits=data_bits, family=family)
    words = sum(depth * -(-bits // data_bits) for bits, depth in stores)
    return total + _counter(family, "dram", words, count + 1, max(depth * -(-bits // data_bits)
                                                                    for bits, depth in stores))


def memory_arbiter(*, ports: int, data_bits: int, address_bits: int, port_address_bits: int | None = None,
                   offset_bits: int = 0, outstanding: int = 8, family: str = "xc7") -> Resources:
    """A :class:`~hwseg.hw.dram.MemoryArbiter` for ``ports`` buffers: the two grants (round robin by priority
    encoders, linear in the ports), the request and write-data selects (a ``ports``:1 mux each, of the
    ``port_address_bits`` the buffers drive: each addresses its own region from 0), the owners of the bursts in
    flight, and for each grant the place of the granted port's region — a table of the ports' offsets (their
    ``offset_bits`` above the 4 KiB alignment), the sum with the base taken at the grant, and the sum with the
    request's address. One buffer alone needs no arbiter: the top level adds the base to its addresses."""
    if ports <= 1:
        return _part(family, "arbiter", lut=address_bits)
    request = (address_bits if port_address_bits is None else port_address_bits) + 8
    # besides the selects, about 70 LUT per port: its grant decode, its share of the two priority encoders and
    # the routing of its valids and readies (measured on xcup, 40-bit addresses and 128-bit data: 2 ports take
    # 299 LUT, 8 1,081, 32 4,735, 80 11,850)
    lut = _mux(ports, 2 * request + data_bits + 1, family) + 70 * ports
    # (the table: per grant a function of the port index for each offset bit, as a ROM in LUTs, :func:`memory_mapping`)
    table = 2 * memory_mapping(ports, offset_bits - 12, family, rom=True).luts if offset_bits > 12 else 0
    return _part(family, "arbiter", lut=lut + table + 4 * address_bits,
                 ff=2 * _bits(ports) + 2 * outstanding * _bits(ports) + 2 + 2 * address_bits)

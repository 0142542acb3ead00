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

__all__ = ["Resources", "FAMILIES", "memory", "memory_mapping", "sliding_window", "folded_window", "window_memory_shape",
           "fifo_memory_shape", "mac_array", "bit_mac_array",
           "multi_threshold", "mul_shift", "window_max", "window_mean", "argmax", "lane_converter", "fifo",
           "axis_adapter", "upsampler", "channel_affine", "stream_fork", "elementwise_add", "channel_concat",
           "transposed_control", "dsp_per_product", "signed_bits", "recording", "reload_constants", "PARTS",
           "MULTIPLIER_BITS", "line_buffer_bits"]

#: Requantization multipliers are at most 16-bit signed (the frontend folds scales into them).
MULTIPLIER_BITS = 16

FAMILIES = ("xc7", "xcup", "ecp5", "ice40")

#: The component parts whose LUT and FF terms carry a fitted constant.
PARTS = ("window", "folded_window", "mac", "mac_tree", "mac_soft", "mac_select", "bitmac", "bitmac_const", "threshold",
         "threshold_const", "threshold_encode", "threshold_table", "threshold_search", "mulshift", "mulshift_wide",
         "mulshift_split", "mulshift_soft", "mulshift_table", "pool", "mean", "argmax", "lanes", "fifo", "fork",
         "upsample", "upsample_blend", "upsample_control", "affine", "affine_soft", "add", "add_clamp", "concat",
         "transposed", "memory", "rom", "emulation", "axis")

_CONSTANTS_FILE = Path(__file__).resolve().parent / "calibration" / "constants.json"


def _load_constants() -> dict:
    if not _CONSTANTS_FILE.exists():
        return {}
    return json.loads(_CONSTANTS_FILE.read_text())["constants"]


_CONSTANTS = _load_constants()
_RECORD: list | None = None


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


def _part(family: str, part: str, lut: float = 0.0, ff: float = 0.0) -> Resources:
    """A part's structural LUT and FF terms scaled by its fitted constants."""
    _check_family(family)
    if _RECORD is not None:
        _RECORD.append((family, part, lut, ff))
    k = _CONSTANTS.get(family, {}).get(part, {})
    return Resources(lut=round(k.get("lut", 1.0) * lut), ff=round(k.get("ff", 1.0) * ff))


def _bits(n: int) -> int:
    """Bits of a counter or index over ``n`` values."""
    return max(1, ceil(log2(max(n, 2))))


def signed_bits(values) -> int:
    """Width of the narrowest signed integer holding every value (and −1), as ``shape_for`` picks it."""
    values = [int(v) for v in getattr(values, "ravel", lambda: values)()]
    lo, hi = min(-1, *values), max(0, *values)
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
    return _part(family, part, lut=2 * bits, ff=bits)


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


def memory_mapping(depth: int, width: int, family: str, *, rom: bool = False, uram: bool = False) -> MemoryMapping:
    """Where Yosys puts a ``depth × width`` simple-dual-port RAM (or a ROM: ``rom=True``, synchronous read,
    initialized) on a ``family`` part, by memory_libmap's cost rule (logic costs 1 per bit for RAM,
    1/32 (Xilinx) or 1/16 (Lattice) for ROM; distributed RAM is never used for ROMs; UltraRAM only with ``uram`` and not for ROMs)."""
    _check_family(family)
    # (a ROM's logic cost per bit: 1/32 on Xilinx — measured, a 384 × 8 weight ROM stays in LUTs where a RAMB18
    # costs 129 — 1/16 on Lattice)
    best = ("logic", depth * width / ((32 if _lut6(family) else 16) if rom else 1), 0, 1, 0)
    library = list(_LIBRARY[family]) + ([_URAM] if uram and family == "xcup" and not rom else [])
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
        # (a last, partly filled slice takes its share: a function of fewer address bits)
        luts = width * max(1.0, depth / size) + _mux(slices, width, family)
        if _lut6(family) and depth > 16:
            # the read register's enable becomes a hold select in the LUTs (ABC9 -dff): up to 16 words it
            # shares the slice's LUT6 (4 address bits, enable, the held bit), beyond it takes one more
            luts += width
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
           register_absorbed: bool = False, read_first: bool = False) -> Resources:
    """A simple dual-port memory (one write, one synchronous read; or a ROM) as Yosys maps it.
    ``register_absorbed``: the read register of a ROM in logic goes into the DSPs it feeds (their input
    registers), as Yosys packs it for the weights of a MAC array — except in a ROM of up to 16 words,
    whose equal columns Yosys merges into one flip-flop feeding several DSPs, which none can absorb
    (measured: an 8-word weight ROM of 192 bits keeps 128 read flip-flops). ``read_first``: a read may meet a write
    of the same word (a FIFO's): on Lattice block RAM Yosys then emulates the old-data read."""
    if depth <= 0 or width <= 0:
        return Resources()
    mapping = memory_mapping(depth, width, family, rom=rom, uram=uram)
    bits = depth * width
    ffs = 0 if register_absorbed and rom and mapping.kind == "logic" and depth > 16 else mapping.ffs
    # a ROM in logic (LUT-ROM slices and their select) is a different structure from a RAM's address
    # decode and read select: a constant of its own
    logic = _part(family, "rom" if rom and mapping.kind == "logic" else "memory", lut=mapping.luts, ff=ffs)
    if mapping.emulated and read_first:
        logic = logic + _part(family, "emulation", lut=mapping.emulated, ff=2 * mapping.emulated)
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
        rows = memory(*shape, family, uram=uram) + _counter(family, "window", delay)
    elif kh > 1:
        rows = _part(family, "window", ff=(kh - 1) * max(delay, 0) * pixel)
    gaps = Resources()
    if kw > 1 and dw - 1 >= 2:   # only the taps are registers; the gaps between them one memory (SlidingWindow)
        gaps = memory(dw - 1, kh * (kw - 1) * pixel, family) + _counter(family, "window", dw - 1)
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
    logic = _part(family, "folded_window",
                  lut=width + 4 * (_bits(padded_width) + _bits(padded_height)) + 2 * 3 * pointer + 3 * ahead,
                  ff=2 * pointer + ahead + 1)
    # (the ring's read port is not transparent to its write port: Lattice block RAM emulates the old-data read)
    return (memory(depth, width, family, uram=uram, read_first=True) + logic
            + _counter(family, "folded_window", cb, padded_width, padded_height, depth)
            + _counter(family, "folded_window", cb, kw, kh, repeats, out_width, out_height))


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
              acc_bits: int, family: str = "xc7", pixel_slices: int | None = None, serial: bool = False) -> Resources:
    """PE × SIMD multipliers and their product register, a SIMD-way adder tree per PE into a register, PE
    accumulators, the weight ROM (``NF·SF``
    words of ``pe·simd·weight_bits``; constants when ``NF·SF = 1``), the SF:1 slice select of the held
    input vector, and the fold counters. Each product is ``(in_bits+1) × weight_bits`` signed (the
    unsigned activation widened by its sign bit). ``pixel_slices``: the array reads its ``simd``
    inputs from a line buffer (a transposed convolution's taps) instead of holding the whole vector: the
    buffer's read address picks the tap, and what remains to select is the slice of the pixel read (one
    of ``pixel_slices = channels / simd``). ``serial``: the folds arrive one per beat (from a folded
    window): the same array without the held vector and its select."""
    nf, sf = out_channels // pe, in_count // simd
    product_bits = in_bits + weight_bits
    # the product of an unsigned in_bits and a signed weight is in_bits + weight_bits wide (Amaranth)
    per_product = dsp_per_product(in_bits + 1, weight_bits, family, y_bits=in_bits + weight_bits)
    dsp = pe * simd * per_product
    soft = 0 if per_product else pe * simd * in_bits * weight_bits
    tree_bits = product_bits + _bits(simd)
    adders = pe * (simd - 1) * tree_bits
    accumulate = pe * 2 * acc_bits
    holds_vector = pixel_slices is None     # (or serial: registered products, weights read ahead)
    select = 0.0 if serial else _mux(sf if holds_vector else pixel_slices, simd * in_bits, family)
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
    # with one fold per vector (SF = 1) the accumulator only adds the bias to the tree sum: 7-series DSPs
    # take that add with both registers (P registers; measured, conv_3x3_c3_k4_full keeps only its held
    # vector and window on xc7)
    if family == "xc7" and per_product and holds_vector and not serial and sf == 1:
        stage_registers, accumulators = 0, 0
    else:
        stage_registers, accumulators = stage_registers + pe * tree_bits, pe * acc_bits
    logic = (_part(family, "mac_tree", lut=adders)
             + _part(family, "mac_soft", lut=soft)
             + _part(family, "mac_select", lut=select)
             + _part(family, "mac", lut=accumulate,
                     ff=(in_count * in_bits if holds_vector and not serial else 0) + stage_registers
                     + accumulators + 4))
    # (a transposed convolution's weight register is not absorbed: transposed_3x3s2_c4 keeps its 64)
    weights = (memory(nf * sf, pe * simd * weight_bits, family, rom=True,
                      register_absorbed=per_product > 0 and holds_vector)
               if nf * sf > 1 else Resources())
    bias = memory(nf, pe * 8, family, rom=True) if nf > 1 else Resources()
    return logic + weights + bias + Resources(dsp=dsp) + _counter(family, "mac", nf * sf, sf, nf)


def bit_mac_array(*, in_count: int, in_bits: int, out_channels: int, pe: int, simd: int, acc_bits: int,
                  family: str = "xc7") -> Resources:
    """PE × SIMD ±1-weight MACs by bit planes: per plane an AND and a popcount tree per PE, one shared
    popcount of the activations, shifts and adds; a 1-bit-per-weight ROM. No DSP."""
    nf, sf = out_channels // pe, in_count // simd
    # fully unfolded (NF·SF = 1) the weights are constants: each PE's popcount counts only the inputs
    # whose weight is +1 (about half), the AND disappears, which on LUT4 frees an input of every first-level
    # LUT: a part of its own
    unfolded = nf * sf == 1
    per_pe = 0.5 if unfolded else 1.0
    popcounts = (per_pe * pe + 1) * in_bits * simd * (1.0 if _lut6(family) else 2.0)
    combine = pe * in_bits * (_bits(simd) + 2) + pe * 2 * acc_bits
    select = _mux(sf, simd * in_bits, family)
    logic = (_part(family, "bitmac", lut=combine + select + (0 if unfolded else popcounts),
                   ff=in_count * in_bits + simd * in_bits + pe * (in_bits * (_bits(simd) + 1) + 2 * acc_bits) + 4)
             + _part(family, "bitmac_const", lut=popcounts if unfolded else 0))
    weights = memory(nf * sf, pe * simd, family, rom=True) if nf * sf > 1 else Resources()
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
    return (memory(words, width, family, uram=uram, read_first=True) + _part(family, "fifo", ff=2, lut=4)
            + _counter(family, "fifo", depth, depth, depth))


def upsampler(*, channels: int, elem_bits: int, bilinear: bool, shift: int, rows: int = 1, factor=(2, 2),
              height: int = 64, width: int = 64, family: str = "xc7") -> Resources:
    """Row/column counters, the line-buffer read select and the output register; bilinear adds per channel
    along each upsampled axis two products by the (signal) blend weights ``w0 ≤ 2f`` and ``w1 ≤ 2f − 1``
    (DSPs where Yosys maps them: on iCE40 a product under 11 bits stays in logic), the registers between
    the vertical and horizontal blends, and the rounding shift.

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
    widen = 1 if family in ("xc7", "xcup") else 0   # Xilinx DSPs are signed only: unsigned operands widen
    dsp, width = 0, elem_bits
    for f in factor:
        if f > 1:
            w0, w1 = (2 * f).bit_length() + 1, (2 * f - 1).bit_length()
            dsp += dsp_per_product(width + 1, w0, family) + dsp_per_product(width + widen, w1 + widen, family)
            width += (2 * f).bit_length()
    wide = elem_bits + shift + 1
    return (base + _part(family, "upsample_blend", lut=channels * 6 * wide, ff=channels * 2 * wide)
            + Resources(dsp=channels * dsp))


def channel_affine(*, channels: int, in_bits: int, acc_bits: int, weight_bits: int = 8, weights=None,
                   family: str = "xc7") -> Resources:
    """Per channel a product by a constant weight plus the bias, into the output register. Yosys puts the
    product in a DSP like any other (even a product by ±1), except a product by 0 and one whose result is
    too narrow for the family's DSP (``weights``: the per-channel values, when known; a constant takes at
    least 2 bits). On 7-series, a DSP48E1 whose product is the whole result takes the bias add (C port) and
    the output register (P register) with it; a weight with trailing zero bits is multiplied shifted
    (``w >> z``, then ``<< z``), which breaks that chain, so its add and register stay in logic (measured:
    affine_c8's 3 even weights keep 3 channels of output register, its 5 odd ones none)."""
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

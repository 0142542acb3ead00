"""Analytic resource formulas of the hardware blocks (LUT, FF, DSP, BRAM18).

These formulas describe the structure that ``hwseg/hw`` builds (see each block's docstring)
in terms of IR-level parameters, so that estimates never need to elaborate hardware. They
are calibrated against Yosys ``synth_xilinx`` of the emitted Verilog (``bench/``,
``tests/estimate``); the constants below carry the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

__all__ = ["Resources", "memory", "sliding_window", "mac_array", "bit_mac_array", "multi_threshold", "mul_shift", "window_max", "argmax",
           "lane_converter", "fifo", "axis_adapter", "MULTIPLIER_BITS"]

# Requantization multipliers are 16-bit signed (the frontend folds scales into them).
MULTIPLIER_BITS = 16
# Memories at most this deep map to distributed RAM (Yosys synth_xilinx: RAM32M / RAM64M), deeper ones to
# block RAM. A RAM32M holds 32 × 6 bits and a RAM64M 64 × 3 bits (simple dual port), 4 LUTs each.
LUTRAM_MAX_DEPTH = 64
# Block RAM18 aspect ratios (depth, width) of 7-series / UltraScale RAMB18.
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


@dataclass(frozen=True)
class Resources:
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram18: int = 0
    memory_bits: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp,
                         self.bram18 + other.bram18, self.memory_bits + other.memory_bits)

    def as_dict(self) -> dict[str, int]:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram18": self.bram18}


def _bits(n: int) -> int:
    return max(1, ceil(log2(max(n, 2))))


def memory(depth: int, width: int) -> Resources:
    """A simple dual-port memory (one write or ROM, one synchronous read)."""
    if depth <= 0 or width <= 0:
        return Resources()
    bits = depth * width
    if depth <= LUTRAM_MAX_DEPTH:
        cells = ceil(width / 6) if depth <= 32 else ceil(width / 3)
        return Resources(lut=4 * cells, ff=width, memory_bits=bits)  # plus the read register
    brams = min(ceil(depth / d) * ceil(width / w) for d, w in BRAM18_SHAPES)
    return Resources(bram18=brams, memory_bits=bits)


def _counters(*limits: int) -> Resources:
    bits = sum(_bits(n) for n in limits)
    return Resources(lut=2 * bits, ff=bits)


def sliding_window(*, channels: int, elem_bits: int, kernel, dilation, padded_width: int,
                   padded_height: int) -> Resources:
    """Line buffers + tap registers: ``kh`` rows of ``L = (kw−1)·dw+1`` pixel registers, and one memory
    of depth ``D = dh·Wp − L`` whose word holds a pixel for each of the ``kh−1`` delayed rows."""
    (kh, kw), (dh, dw) = kernel, dilation
    pixel = channels * elem_bits
    taps = (kw - 1) * dw + 1
    delay = dh * padded_width - taps
    rows = Resources()
    if kh > 1:
        rows = memory(delay, (kh - 1) * pixel) if delay >= 2 else Resources(ff=(kh - 1) * max(delay, 0) * pixel)
    registers = Resources(ff=kh * taps * pixel, lut=pixel)  # taps; pad/input select
    return rows + registers + _counters(padded_width, padded_height, max(delay, 2))


def line_buffer_bits(*, channels: int, elem_bits: int, kernel, dilation, padded_width: int) -> int:
    """Bits of row memory a sliding window holds: ``(kh−1)·(dh·Wp − L)`` pixels."""
    (kh, kw), (dh, dw) = kernel, dilation
    taps = (kw - 1) * dw + 1
    return max(kh - 1, 0) * max(dh * padded_width - taps, 0) * channels * elem_bits


def mac_array(*, in_count: int, in_bits: int, weight_bits: int, out_channels: int, pe: int, simd: int,
              acc_bits: int) -> Resources:
    """PE × SIMD multipliers, a SIMD-way adder tree per PE, PE accumulators, a weight ROM."""
    nf, sf = out_channels // pe, in_count // simd
    product_bits = in_bits + weight_bits
    dsp = pe * simd if min(in_bits, weight_bits) >= 2 else 0
    mult_lut = 0 if dsp else pe * simd * product_bits
    adder_lut = pe * (simd - 1) * (product_bits + _bits(simd))
    acc_lut = pe * acc_bits
    mux_lut = simd * in_bits * ceil((sf - 1) / 3) if sf > 1 else 0
    weights = memory(nf * sf, pe * simd * weight_bits)
    ff = in_count * in_bits + simd * in_bits + 3 * pe * acc_bits
    return weights + Resources(lut=mult_lut + adder_lut + acc_lut + mux_lut, ff=ff, dsp=dsp) + _counters(nf, sf)


def bit_mac_array(*, in_count: int, in_bits: int, out_channels: int, pe: int, simd: int,
                  acc_bits: int) -> Resources:
    """PE × SIMD ±1-weight MACs by bit planes: per plane an AND and a popcount tree per PE, one
    shared popcount of the activations, shifts and adds; a 1-bit-per-weight ROM. No DSP.

    Calibration: synth_xilinx of a 2-bit, 72-element, 16-channel unit at pe 4, simd 18 gave
    522 LUT / 343 FF (tests/hw/test_bitconv_synth.py); this formula gives 590 / 300."""
    nf, sf = out_channels // pe, in_count // simd
    popcounts = 3 * pe * simd * in_bits + simd * in_bits
    mux_lut = simd * in_bits * ceil((sf - 1) / 3) if sf > 1 else 0
    weights = memory(nf * sf, pe * simd)
    ff = in_count * in_bits + simd * in_bits + 3 * pe * acc_bits
    return weights + Resources(lut=popcounts + pe * acc_bits + mux_lut, ff=ff) + _counters(nf, sf)


def multi_threshold(*, lanes: int, channels: int, acc_bits: int, thresholds: int) -> Resources:
    """Per lane ``thresholds`` comparators at once (up to 7), else a pipelined binary search with one
    comparator per stage; thresholds of the current channel group from a table."""
    groups = channels // lanes
    comparator = acc_bits // 2 + 2
    stages = thresholds.bit_length()
    if thresholds <= 7:
        lut, ff = lanes * thresholds * comparator, lanes * (thresholds + stages)
    else:
        lut, ff = lanes * stages * (comparator + 4), lanes * stages * (acc_bits + stages)
    table = 0 if groups == 1 else lanes * thresholds * (acc_bits + 1) * ceil(groups / 64)
    return Resources(lut=lut + table, ff=ff) + _counters(groups)


def mul_shift(*, lanes: int, channels: int, acc_bits: int, out_bits: int) -> Resources:
    """Per lane one ``acc × M`` multiply, round, shift, clamp; multipliers selected by channel group."""
    groups = channels // lanes
    product = acc_bits + MULTIPLIER_BITS
    dsp = lanes * (1 if acc_bits <= 25 else 2)
    lut = lanes * (product + 2 * out_bits) + (lanes * MULTIPLIER_BITS * ceil((groups - 1) / 3) if groups > 1 else 0)
    ff = lanes * (product + out_bits)
    return Resources(lut=lut, ff=ff, dsp=dsp) + _counters(groups)


def window_max(*, window: int, channels: int, elem_bits: int) -> Resources:
    return Resources(lut=2 * (window - 1) * channels * elem_bits, ff=channels * elem_bits)


def window_mean(*, window: int, channels: int, elem_bits: int) -> Resources:
    """An adder tree per channel (window − 1 adders growing to elem_bits + log2 window), the rounding
    add, and a register every second level (WindowMean)."""
    n = max(window.bit_length() - 1, 0)
    adders = (window - 1) * (elem_bits + n // 2 + 1)
    registers = sum((window >> (2 * s)) * (elem_bits + 2 * s) for s in range(1, n // 2 + 1))
    return Resources(lut=channels * (adders + elem_bits + n), ff=channels * (registers + elem_bits))


def argmax(*, channels: int, elem_bits: int, index_bits: int) -> Resources:
    return Resources(lut=(channels - 1) * (2 * elem_bits + index_bits), ff=index_bits)


def lane_converter(*, in_lanes: int, out_lanes: int, elem_bits: int) -> Resources:
    if in_lanes == out_lanes:
        return Resources()
    if in_lanes < out_lanes:  # gather into a register
        return Resources(ff=out_lanes * elem_bits, lut=out_lanes * elem_bits // 2) + _counters(out_lanes // in_lanes)
    ratio = in_lanes // out_lanes  # scatter: hold and select
    return Resources(ff=in_lanes * elem_bits, lut=out_lanes * elem_bits * ceil((ratio - 1) / 3)) + _counters(ratio)


def fifo(*, depth: int, width: int) -> Resources:
    """A synchronous FIFO (at least 3 entries: ``StreamFIFO``), its pointers and output register."""
    depth = max(depth, 3)
    return memory(depth, width) + Resources(ff=width) + _counters(depth, depth)


def upsampler(*, channels: int, elem_bits: int, bilinear: bool, shift: int) -> Resources:
    """Row/column counters and the output register; bilinear adds per channel the vertical blend
    (two products by small constants), the two horizontal registers and the final blend."""
    base = Resources(ff=channels * elem_bits) + _counters(64, 64, 8)
    if not bilinear:
        return base + Resources(lut=channels * elem_bits)
    wide = elem_bits + shift + 1
    return base + Resources(lut=channels * 6 * wide, ff=channels * 2 * wide)


def channel_affine(*, channels: int, in_bits: int, acc_bits: int) -> Resources:
    """Per lane a product by a constant (shifts and adds) plus the bias, into a register."""
    return Resources(lut=channels * (in_bits + acc_bits), ff=channels * acc_bits + 1)


def stream_fork(*, outputs: int) -> Resources:
    """A fork's per-output 'taken' flags and the ready AND."""
    return Resources(ff=outputs, lut=outputs + ceil(outputs / 6))


def elementwise_add(*, lanes: int, out_bits: int) -> Resources:
    """Per lane an adder and a two-sided clamp into a registered output."""
    return Resources(lut=lanes * 3 * (out_bits + 1), ff=lanes * out_bits + 1)


def channel_concat(*, inputs: int) -> Resources:
    """A join: wires and one AND of the inputs' valid."""
    return Resources(lut=ceil(inputs / 6) + 1)


def axis_adapter(*, beats_per_frame: int) -> Resources:
    return _counters(beats_per_frame)

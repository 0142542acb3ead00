"""Multiply-shift requantization: an accumulator stream to the next layer's activations."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int, is_int, range_of, shape_for
from .groups import group_registers

__all__ = ["MulShiftRequant"]


class MulShiftRequant(wiring.Component):
    """Per-channel multiply, rounding shift and clamp of a pixel stream of accumulators.

    Computes, for the element of channel ``c`` (design.md ``MulShift``)::

        y = clamp((acc · multipliers[c] + 2^(shift−1)) >> shift, lo, hi)

    with an arithmetic (floor) shift, i.e. round half up; ``shift = 0`` has no rounding term.
    Beats cycle through the channel groups ``g = 0 … channels/lanes − 1`` (lane ``i`` of group
    ``g`` is channel ``g·lanes + i``) and wrap, so pixels and frames follow back to back.

    Architecture: the multipliers of the current group sit in a register loaded on each input
    transfer with the next group's (so no table lookup precedes the multiplier); stage 1
    registers the exact products, stage 2 adds the rounding term, shifts, clamps and is the
    output register. One enable, ``~o_stream.valid | o_stream.ready``, stalls both stages.
    Latency 2 cycles; throughput 1 beat/cycle. ``i_stream.ready`` is the enable (it never
    depends on ``i_stream.valid``).
    """

    def __init__(self, *, acc_shape, out_shape, channels, lanes, multipliers, shift, lo, hi):
        acc_shape_ = cast_shape("acc_shape", acc_shape)
        out_shape_ = cast_shape("out_shape", out_shape)
        check_int("channels", channels)
        check_int("lanes", lanes)
        if channels % lanes:
            raise ValueError(f"lanes must divide channels={channels}, not {lanes!r}")
        if (not isinstance(multipliers, (list, tuple)) or len(multipliers) != channels
                or not all(is_int(v) for v in multipliers)):
            raise ValueError(f"multipliers must be a list of {channels} ints (one per channel), "
                             f"not {multipliers!r}")
        check_int("shift", shift, minimum=0)
        out_lo, out_hi = range_of(out_shape_)
        for name, value in (("lo", lo), ("hi", hi)):
            if not is_int(value) or not out_lo <= value <= out_hi:
                raise ValueError(f"{name} must be an int that fits out_shape {out_shape!r} "
                                 f"([{out_lo}, {out_hi}]), not {value!r}")
        if lo > hi:
            raise ValueError(f"lo must not exceed hi, not lo={lo!r} > hi={hi!r}")
        self.acc_shape = acc_shape
        self.out_shape = out_shape
        self.channels = channels
        self.lanes = lanes
        self.multipliers = tuple(multipliers)
        self.shift = shift
        self.lo = lo
        self.hi = hi
        self._acc = acc_shape_
        self._m_shape = shape_for(min(-1, *multipliers), max(multipliers))
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(acc_shape, lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(out_shape, lanes))),
        })

    @property
    def groups(self):
        """Beats per pixel (``channels / lanes``)."""
        return self.channels // self.lanes

    @property
    def latency(self):
        """Cycles from an input transfer to its output beat being valid."""
        return 2

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        groups, lanes = self.groups, self.lanes

        en = Signal()
        m.d.comb += [en.eq(~o.valid | o.ready), i.ready.eq(en)]
        take = i.valid & i.ready

        # The multipliers of the group of the next input beat.
        if groups == 1:
            mult = [Const(v, self._m_shape) for v in self.multipliers]
        else:
            mult = [lane[0] for lane in group_registers(m, take, [(self._m_shape, "mult", self.multipliers)],
                                                        lanes=lanes, groups=groups)]

        # Stage 1: exact products.
        elems = [i.payload[j] for j in range(lanes)]
        prods = [Signal((e * r).shape(), name=f"prod_{j}") for j, (e, r) in enumerate(zip(elems, mult))]
        valid1 = Signal()
        with m.If(en):
            m.d.sync += valid1.eq(i.valid)
            m.d.sync += [p.eq(e * r) for p, e, r in zip(prods, elems, mult)]

        # Stage 2: round, arithmetic shift, clamp; the output register.
        with m.If(en):
            m.d.sync += o.valid.eq(valid1)
            for j, p in enumerate(prods):
                rounded = p + (1 << (self.shift - 1)) if self.shift else p
                shifted = rounded >> self.shift     # arithmetic: `p` is signed (mult is signed)
                clamped = Mux(shifted < self.lo, self.lo, Mux(shifted > self.hi, self.hi, shifted))
                m.d.sync += o.payload[j].eq(clamped)
        return m

"""Lane regrouping between pixel streams of different widths."""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int

__all__ = ["LaneConverter"]


class LaneConverter(wiring.Component):
    """Regroups a pixel stream of ``in_lanes`` lanes into one of ``out_lanes`` lanes.

    Computes: the same sequence of elements (lane ``i`` of beat ``b`` is element
    ``b·lanes + i`` of the stream), cut into beats of ``out_lanes`` elements. One of the lane
    counts must divide the other (a pixel's channel count is a multiple of both, so pixels
    stay aligned).

    * ``in_lanes == out_lanes``: wires, no latency.
    * gather (``out_lanes = R·in_lanes``): the pieces of a group are stored in a register as
      they arrive; the full group is presented the cycle after its ``R``-th piece and is sent
      while the first piece of the next group is taken. Latency 1 cycle (after the last piece);
      throughput 1 input beat/cycle, i.e. one output beat every ``R`` cycles.
    * scatter (``in_lanes = R·out_lanes``): an input beat is registered and its ``R`` pieces are
      sent one per cycle; the next input beat is taken as the last piece goes out. Latency
      1 cycle; throughput 1 output beat/cycle, i.e. one input beat every ``R`` cycles.

    ``i_stream.ready`` never depends on ``i_stream.valid`` (only on state and ``o_stream.ready``).
    """

    def __init__(self, *, elem_shape, in_lanes, out_lanes):
        cast_shape("elem_shape", elem_shape)
        check_int("in_lanes", in_lanes)
        check_int("out_lanes", out_lanes)
        if in_lanes % out_lanes and out_lanes % in_lanes:
            raise ValueError(f"one of in_lanes and out_lanes must divide the other, not "
                             f"in_lanes={in_lanes!r} and out_lanes={out_lanes!r}")
        self.elem_shape = elem_shape
        self.in_lanes = in_lanes
        self.out_lanes = out_lanes
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, in_lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, out_lanes))),
        })

    @property
    def ratio(self):
        """Beats on the narrow side per beat on the wide side."""
        return max(self.in_lanes, self.out_lanes) // min(self.in_lanes, self.out_lanes)

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        ratio = self.ratio
        if ratio == 1:
            m.d.comb += [o.payload.eq(i.payload), o.valid.eq(i.valid), i.ready.eq(o.ready)]
        elif self.out_lanes > self.in_lanes:
            self._gather(m, ratio)
        else:
            self._scatter(m, ratio)
        return m

    def _gather(self, m, ratio):
        i, o = self.i_stream, self.o_stream
        piece = Shape.cast(i.payload.shape()).width
        count = Signal(range(ratio))            # pieces stored of the group being filled
        full = Signal()                         # all `ratio` pieces stored, group on o_stream
        buf = Signal(piece * ratio)
        m.d.comb += [
            o.payload.eq(buf),
            o.valid.eq(full),
            i.ready.eq(~full | o.ready),
        ]
        with m.If(o.valid & o.ready):
            m.d.sync += full.eq(0)
        with m.If(i.valid & i.ready):
            m.d.sync += buf.word_select(count, piece).eq(i.payload)
            with m.If(count == ratio - 1):
                m.d.sync += [count.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)

    def _scatter(self, m, ratio):
        i, o = self.i_stream, self.o_stream
        piece = Shape.cast(o.payload.shape()).width
        index = Signal(range(ratio))            # piece of the held beat on o_stream
        full = Signal()                         # an input beat is held
        buf = Signal(piece * ratio)
        last = index == ratio - 1
        m.d.comb += [
            o.payload.eq(buf.word_select(index, piece)),
            o.valid.eq(full),
            i.ready.eq(~full | (o.ready & last)),
        ]
        with m.If(o.valid & o.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(last):
                m.d.sync += [index.eq(0), full.eq(0)]
        with m.If(i.valid & i.ready):
            m.d.sync += [buf.eq(i.payload), full.eq(1)]

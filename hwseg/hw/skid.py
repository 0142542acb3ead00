"""A one-beat skid buffer: registered ``ready`` at the layer boundaries, so no ready path crosses a layer."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes a stream of ``payload_shape`` on, with ``i_stream.ready`` a register.

    Computes: the output beats are the input beats, in order.

    Every block of the dataflow hands its ``o_stream.ready`` combinationally to its ``i_stream.ready`` (a stage
    enable), so without a break the ready path would run through the whole chain of layers. Here
    ``i_stream.ready`` is "not holding a beat", a flip-flop: while empty, a beat passes straight through (``valid``
    and ``payload`` through one 2:1 multiplexer, no register on the way); a beat the reader refuses is taken into
    the one-beat buffer, which then goes out first while ``i_stream.ready`` is low for that cycle.

    Latency: 0 cycles (an input beat is on ``o_stream`` in the cycle it arrives). Throughput: 1 beat per cycle in
    and out; after a refused beat the writer loses one cycle while the buffer drains, the reader none.
    ``i_stream.ready`` never depends on ``o_stream.ready`` in the same cycle.
    """

    #: cycles from an input beat to the output (the cycle model adds nothing)
    latency = 0

    def __init__(self, *, payload_shape):
        cast_shape("payload_shape", payload_shape)
        self.payload_shape = payload_shape
        super().__init__({
            "i_stream": In(stream.Signature(payload_shape)),
            "o_stream": Out(stream.Signature(payload_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        full = Signal()
        held = Signal(self.payload_shape)
        m.d.comb += [i.ready.eq(~full), o.valid.eq(full | i.valid)]
        with m.If(full):
            m.d.comb += o.payload.eq(held)
            with m.If(o.ready):
                m.d.sync += full.eq(0)
        with m.Else():
            m.d.comb += o.payload.eq(i.payload)
            with m.If(i.valid & ~o.ready):
                m.d.sync += [held.eq(i.payload), full.eq(1)]
        return m

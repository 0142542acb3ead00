"""A stream FIFO: the buffer the stitcher puts on skip connections and between layers."""

from amaranth.hdl import Module, Shape
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int

__all__ = ["StreamFIFO"]

# SyncFIFOBuffered holds its head in an output register; below this depth its write side
# only takes a beat every other cycle, so shallower requests get this many entries instead.
_MIN_FULL_RATE_DEPTH = 3


class StreamFIFO(wiring.Component):
    """First in, first out buffer between two streams of ``payload_shape``.

    Computes: the output beats are the input beats, in order.

    Storage: a :class:`amaranth.lib.fifo.SyncFIFOBuffered` (block-RAM friendly: synchronous
    read into an output register) holding :attr:`capacity` ``= max(depth, 3)`` beats. At least
    ``depth`` beats are always accepted without a read; 3 is the smallest depth at which
    SyncFIFOBuffered takes a beat every cycle, so shallower requests are rounded up to it.

    Latency: 2 cycles from an input transfer into an empty FIFO to ``o_stream.valid``.
    Throughput: 1 beat/cycle in and out at once. ``i_stream.ready`` is high while not full
    and ``o_stream.valid`` while not empty; neither depends combinationally on the other side.
    """

    def __init__(self, *, payload_shape, depth):
        cast_shape("payload_shape", payload_shape)
        check_int("depth", depth)
        self.payload_shape = payload_shape
        self.depth = depth
        self.capacity = max(depth, _MIN_FULL_RATE_DEPTH)
        super().__init__({
            "i_stream": In(stream.Signature(payload_shape)),
            "o_stream": Out(stream.Signature(payload_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self.payload_shape).width
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=width, depth=self.capacity)
        m.d.comb += [
            buf.w_data.eq(self.i_stream.payload),
            buf.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(buf.w_rdy),
            self.o_stream.payload.eq(buf.r_data),
            self.o_stream.valid.eq(buf.r_rdy),
            buf.r_en.eq(self.o_stream.ready),
        ]
        return m

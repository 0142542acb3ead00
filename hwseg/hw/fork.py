"""One stream copied to several consumers: the hardware of a tensor read by several layers."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int

__all__ = ["StreamFork"]


class StreamFork(wiring.Component):
    """Copies every beat of ``i_stream`` to each of ``outputs`` streams ``o_streams[k]``.

    Computes: each output carries exactly the input beats, in order.

    Each output takes the current beat on its own: ``taken[k]`` records the outputs that
    already have it, so a consumer that is ready does not wait for a stalled one within a beat
    (it waits at most one beat ahead). The input beat is released in the cycle its last
    consumer takes it. No storage besides the ``outputs`` flags; latency 0 (combinational
    valid, ``o_streams[k].valid = i_stream.valid & ~taken[k]``, which never depends on ready);
    throughput 1 beat/cycle when every consumer is ready.
    """

    def __init__(self, *, payload_shape, outputs):
        cast_shape("payload_shape", payload_shape)
        check_int("outputs", outputs, minimum=2)
        self.payload_shape = payload_shape
        self.outputs = outputs
        super().__init__({
            "i_stream": In(stream.Signature(payload_shape)),
            "o_streams": Out(stream.Signature(payload_shape)).array(outputs),
        })

    def elaborate(self, platform):
        m = Module()
        taken = Signal(self.outputs)
        done = Cat(taken[k] | self.o_streams[k].ready for k in range(self.outputs))
        m.d.comb += self.i_stream.ready.eq(done.all())
        for k, out in enumerate(self.o_streams):
            m.d.comb += [out.payload.eq(self.i_stream.payload), out.valid.eq(self.i_stream.valid & ~taken[k])]
        with m.If(self.i_stream.valid):
            with m.If(self.i_stream.ready):
                m.d.sync += taken.eq(0)
            with m.Else():
                m.d.sync += taken.eq(done)
        return m

"""Joins of several streams of the same pixels: residual addition and channel concatenation."""

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_elem_value, check_int, check_shape

__all__ = ["ElementwiseAdd", "ChannelConcat"]


class ElementwiseAdd(wiring.Component):
    """``y = clamp(a + b, lo, hi)`` lane by lane on two streams of ``lanes`` elements per beat.

    ``a_stream`` (``a_shape``) and ``b_stream`` (``b_shape``) carry the same sequence of
    positions; a beat is taken from both at once when both are valid and the output register is
    free or being emptied. Latency 1 cycle (registered output); throughput 1 beat/cycle.
    ``o_stream.valid`` is a register; the inputs' ``ready`` depends on both inputs' ``valid``
    and on ``o_stream.ready``.
    """

    def __init__(self, *, a_shape, b_shape, out_shape, lanes, lo, hi):
        check_shape("a_shape", a_shape)
        check_shape("b_shape", b_shape)
        check_shape("out_shape", out_shape)
        check_int("lanes", lanes)
        check_elem_value("lo", lo, out_shape)
        check_elem_value("hi", hi, out_shape)
        if lo > hi:
            raise ValueError(f"lo must not exceed hi, not lo={lo!r} and hi={hi!r}")
        self.a_shape, self.b_shape, self.out_shape = a_shape, b_shape, out_shape
        self.lanes, self.lo, self.hi = lanes, lo, hi
        super().__init__({
            "a_stream": In(stream.Signature(data.ArrayLayout(a_shape, lanes))),
            "b_stream": In(stream.Signature(data.ArrayLayout(b_shape, lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(out_shape, lanes))),
        })

    @property
    def i_streams(self):
        return [self.a_stream, self.b_stream]

    def elaborate(self, platform):
        m = Module()
        a, b, o = self.a_stream, self.b_stream, self.o_stream
        take = a.valid & b.valid & (~o.valid | o.ready)
        m.d.comb += [a.ready.eq(take), b.ready.eq(take)]
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(take):
            m.d.sync += o.valid.eq(1)
            for lane in range(self.lanes):
                total = a.payload[lane] + b.payload[lane]
                m.d.sync += o.payload[lane].eq(Mux(total < self.lo, self.lo, Mux(total > self.hi, self.hi, total)))
        return m


class ChannelConcat(wiring.Component):
    """Channel concatenation of ``len(channels)`` pixel streams: input ``k`` carries whole pixels
    of ``channels[k]`` elements; the output carries whole pixels of ``Σ channels`` elements, input
    0's channels first.

    A pure join: an output beat is valid when every input is, and takes one beat from each.
    No storage, latency 0; throughput 1 pixel/cycle. ``o_stream.valid`` depends only on the
    inputs' ``valid``; each input's ``ready`` on ``o_stream.ready`` and every input's ``valid``.
    The inputs are the ports ``i_stream_0``, ``i_stream_1``, … (:attr:`i_streams` lists them).
    """

    def __init__(self, *, elem_shape, channels):
        check_shape("elem_shape", elem_shape)
        if not isinstance(channels, (list, tuple)) or len(channels) < 2:
            raise ValueError(f"channels must list the channel counts of at least 2 inputs, not {channels!r}")
        for k, count in enumerate(channels):
            check_int(f"channels[{k}]", count)
        self.elem_shape = elem_shape
        self.channels = tuple(channels)
        ports = {f"i_stream_{k}": In(stream.Signature(data.ArrayLayout(elem_shape, count)))
                 for k, count in enumerate(channels)}
        super().__init__({**ports, "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, sum(channels))))})

    @property
    def i_streams(self):
        return [getattr(self, f"i_stream_{k}") for k in range(len(self.channels))]

    def elaborate(self, platform):
        m = Module()
        inputs, o = self.i_streams, self.o_stream
        all_valid = Cat(i.valid for i in inputs).all()
        m.d.comb += [o.valid.eq(all_valid), o.payload.eq(Cat(i.payload.as_value() for i in inputs))]
        for i in inputs:
            m.d.comb += i.ready.eq(o.ready & all_valid)
        return m

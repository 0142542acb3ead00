"""Per-pixel argmax over channels: logits to the class map."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int

__all__ = ["ArgMax"]


class ArgMax(wiring.Component):
    """Index of the first maximum over the ``channels`` lanes of each input beat.

    Computes ``numpy.argmax`` over channels: the lowest index among the lanes holding the
    largest value (signed comparison when ``elem_shape`` is signed). Each input beat is one
    whole pixel; each output beat is one lane of ``unsigned(index_bits)``.

    Architecture: a balanced tree of compare-select nodes; each node keeps its left (lower
    indices) candidate unless the right one is strictly greater, so ties go to the lowest
    index. The result is registered (the output register), stalled by
    ``~o_stream.valid | o_stream.ready``, which is also ``i_stream.ready``.
    Latency 1 cycle; throughput 1 beat/cycle.
    """

    def __init__(self, *, elem_shape, channels, index_bits):
        cast_shape("elem_shape", elem_shape)
        check_int("channels", channels)
        check_int("index_bits", index_bits)
        if channels > 1 << index_bits:
            raise ValueError(f"index_bits must hold the largest index {channels - 1} of "
                             f"{channels} channels, not {index_bits!r}")
        self.elem_shape = elem_shape
        self.channels = channels
        self.index_bits = index_bits
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(unsigned(index_bits), 1))),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        en = Signal()
        m.d.comb += [en.eq(~o.valid | o.ready), i.ready.eq(en)]

        # (value, index) candidates; the left one of each pair covers lower indices.
        nodes = [(i.payload[c], Const(c, unsigned(self.index_bits))) for c in range(self.channels)]
        while len(nodes) > 1:
            merged = []
            for j in range(0, len(nodes) - 1, 2):
                (lv, li), (rv, ri) = nodes[j], nodes[j + 1]
                right = rv > lv
                merged.append((Mux(right, rv, lv), Mux(right, ri, li)))
            if len(nodes) % 2:
                merged.append(nodes[-1])
            nodes = merged

        with m.If(en):
            m.d.sync += [o.valid.eq(i.valid), o.payload[0].eq(nodes[0][1])]
        return m

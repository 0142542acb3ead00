"""Pooling over window streams.

See :class:`WindowMax`.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, check_shape

__all__ = ["WindowMax"]


def _max_tree(values):
    """The maximum of ``values`` as a balanced tree of two-input compares (signed if they are)."""
    while len(values) > 1:
        pairs = [Mux(a >= b, a, b) for a, b in zip(values[0::2], values[1::2])]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
    return values[0]


class WindowMax(wiring.Component):
    """Per-channel maximum over a window (max pooling after a :class:`~hwseg.hw.window.SlidingWindow`).

    Input: a window stream, ``window·channels`` elements per beat, element ``w·channels + c``.
    Output: one pixel per beat, ``channels`` lanes; lane ``c`` is the maximum of elements
    ``w·channels + c`` over ``w`` (signed compare for a signed ``elem_shape``).

    One registered stage (a balanced compare tree of depth ``ceil(log2(window))`` before it),
    1 beat per cycle, latency 1 cycle; ``i_stream.ready = o_stream.ready | ~o_stream.valid``.
    """

    def __init__(self, *, elem_shape, channels, window):
        self._elem_shape = check_shape("elem_shape", elem_shape)
        self._channels = check_int("channels", channels)
        self._window = check_int("window", window)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, window * channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, channels))),
        })

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    window = property(lambda self: self._window)

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        i_stream, o_stream = self.i_stream, self.o_stream
        channels = self._channels

        maxima = Signal(data.ArrayLayout(self._elem_shape, channels))
        for c in range(channels):
            m.d.comb += maxima[c].eq(_max_tree([i_stream.payload[w * channels + c]
                                                for w in range(self._window)]))

        m.d.comb += i_stream.ready.eq(o_stream.ready | ~o_stream.valid)
        with m.If(i_stream.ready):
            m.d.sync += o_stream.valid.eq(i_stream.valid)
            with m.If(i_stream.valid):
                m.d.sync += o_stream.payload.eq(maxima)
        return m

"""Average pooling over windows of ``2^n`` elements, rounded half up.

See :class:`AvgPoolLayer` (a :class:`~hwseg.hw.window.SlidingWindow` followed by a
:class:`WindowMean`).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, check_pair, check_shape
from .window import SlidingWindow

__all__ = ["WindowMean", "AvgPoolLayer"]

#: Adder levels between two pipeline registers of the sum tree.
_LEVELS_PER_STAGE = 2


def _is_power_of_two(value):
    return value > 0 and value & (value - 1) == 0


def _pair_sums(terms, levels):
    """``levels`` levels of a balanced adder tree over ``terms`` (a power-of-two count).

    Amaranth widens each sum by one bit (signed if the terms are), so after level ``k`` every
    term is ``b + k`` bits wide and exact.
    """
    for _ in range(levels):
        terms = [a + b for a, b in zip(terms[0::2], terms[1::2])]
    return terms


class WindowMean(wiring.Component):
    """Per-channel rounded mean over a window of ``2^n`` elements (after a :class:`SlidingWindow`).

    Input: a window stream, ``window·channels`` elements per beat, element ``w·channels + c``.
    Output: one pixel per beat, ``channels`` lanes of ``elem_shape``; lane ``c`` is::

        y[c] = (Σ_w x[w·channels + c] + 2^(n−1)) >> n        (window = 2^n)

    with an arithmetic (floor) shift, i.e. the mean rounded half up; ``n = 0`` adds no rounding
    term (the element passes through). The result always fits ``elem_shape``: the rounded mean
    of values of a type lies within the type's range, so nothing is clamped.

    Architecture: per channel a balanced adder tree of ``n`` levels, each level one bit wider
    than the one before (the sum is exactly ``b + n`` bits, signed for a signed ``elem_shape``),
    cut by a pipeline register every :data:`_LEVELS_PER_STAGE` = 2 levels; the last stage adds
    the remaining level (if ``n`` is odd) and the rounding constant, and takes bits ``[n, n + b)``
    of the total into the output register. Every stage thus holds at most two carry chains.
    One enable, ``~o_stream.valid | o_stream.ready``, advances all stages;
    ``i_stream.ready`` is that enable (it never depends on ``i_stream.valid``).

    * Latency: :attr:`latency` ``= ⌊n/2⌋ + 1`` cycles from an input transfer to its output
      beat being valid (1 for a window of 1 or 2, 2 for 4 or 8, 3 for 16 or 32, 4 for 64).
    * Throughput: 1 beat per cycle.
    * Memory: no RAM; :attr:`register_bits` flip-flops of sums and output (valid flags not
      counted): ``channels · (b + Σ_{s=1}^{⌊n/2⌋} (window / 4^s) · (b + 2s))``.
    """

    def __init__(self, *, elem_shape, channels, window):
        self._elem_shape = check_shape("elem_shape", elem_shape)
        self._channels = check_int("channels", channels)
        self._window = check_int("window", window)
        if not _is_power_of_two(window):
            raise ValueError(f"window must be a power of two, not {window!r}")
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, window * channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, channels))),
        })

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    window = property(lambda self: self._window)

    @property
    def shift(self):
        """``n``: the window has ``2^n`` elements."""
        return self._window.bit_length() - 1

    @property
    def latency(self):
        """Cycles from an input transfer to its output beat being valid: ``⌊n/2⌋ + 1``."""
        return self.shift // _LEVELS_PER_STAGE + 1

    @property
    def register_bits(self):
        """Flip-flops of the pipeline sums and the output payload (not the valid flags)."""
        b = self._elem_shape.width
        bits = b
        for stage in range(1, self.latency):
            level = stage * _LEVELS_PER_STAGE
            bits += (self._window >> level) * (b + level)
        return self._channels * bits

    def elaborate(self, platform):
        m = Module()
        i_stream, o_stream = self.i_stream, self.o_stream
        channels, n, b = self._channels, self.shift, self._elem_shape.width

        en = Signal()
        m.d.comb += [en.eq(~o_stream.valid | o_stream.ready), i_stream.ready.eq(en)]

        # terms[c]: the partial sums of channel c entering the current stage.
        terms = [[i_stream.payload[w * channels + c] for w in range(self._window)] for c in range(channels)]
        valid = i_stream.valid
        for stage in range(self.latency - 1):
            sums = [_pair_sums(t, _LEVELS_PER_STAGE) for t in terms]
            regs = [[Signal(s.shape(), name=f"sum{stage}_c{c}_{k}") for k, s in enumerate(row)]
                    for c, row in enumerate(sums)]
            stage_valid = Signal(name=f"valid{stage}")
            with m.If(en):
                m.d.sync += stage_valid.eq(valid)
                m.d.sync += [r.eq(s) for row_r, row_s in zip(regs, sums) for r, s in zip(row_r, row_s)]
            terms, valid = regs, stage_valid

        # Last stage: the remaining level, the rounding term and the shift, into the output register.
        remaining = n - (self.latency - 1) * _LEVELS_PER_STAGE
        with m.If(en):
            m.d.sync += o_stream.valid.eq(valid)
            for c, row in enumerate(terms):
                (total,) = _pair_sums(row, remaining)
                rounded = total + (1 << (n - 1)) if n else total
                # The rounded total fits b + n bits, so bits [n, n + b) are the arithmetic shift.
                m.d.sync += o_stream.payload[c].eq(rounded[n:n + b])
        return m


class AvgPoolLayer(wiring.Component):
    """Average pooling of a pixel stream: sliding window (zero padding) → :class:`WindowMean`.

    Computes, for every channel ``c`` and output pixel ``(oy, ox)`` (design.md ``AvgPool``,
    ``hwseg.golden.avg_pool``)::

        out[c, oy, ox] = (Σ_{ky, kx} in[c, oy·sh − ph + ky, ox·sw − pw + kx] + 2^(n−1)) >> n

    over a ``kh × kw`` kernel of ``kh·kw = 2^n`` elements; positions outside the frame read 0 and
    count as elements (torch ``avg_pool2d`` with ``count_include_pad=True``); ``>>`` is an
    arithmetic shift (the mean rounded half up), ``n = 0`` adds no rounding term. As in torch,
    the padding is at most half the kernel. ``Ho = (H + 2ph − kh) // sh + 1``, ``Wo`` likewise.

    Streams: one whole pixel (``channels`` lanes of ``elem_shape``, signed or unsigned) per beat
    on both sides, raster order, frames back to back without reset; the output type is the
    input type.

    * Throughput: the :class:`SlidingWindow`'s, one padded position per cycle:
      :attr:`cycles_per_frame` ``= (H + 2ph)·(W + 2pw)`` at full rate (input always valid,
      output always ready).
    * Latency: :attr:`latency` ``= 1 + ⌊n/2⌋ + 1`` cycles from the push of a window's last
      padded position (for a window ending inside the frame: the transfer of its last input
      pixel) to its output beat being valid.
    * Memory: :attr:`line_buffer_bits` of the sliding window's line buffer (about
      ``(kh − 1)`` padded rows of ``channels·b`` bits); :attr:`register_bits` flip-flops (window
      taps and the adder-tree pipeline).
    """

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride, padding):
        kh, kw = check_pair("kernel", kernel)
        ph, pw = check_pair("padding", padding, minimum=0)
        if not _is_power_of_two(kh * kw):
            raise ValueError(f"kernel must have a power-of-two number of elements kh·kw, not {kernel!r} "
                             f"({kh * kw} elements)")
        if 2 * ph > kh or 2 * pw > kw:
            raise ValueError(f"padding must be at most half the kernel {tuple(kernel)!r} (2·p <= k, as torch), "
                             f"not {padding!r}")
        # The window first: it checks every other parameter, so the mean block is never left unused.
        self.sliding_window = SlidingWindow(elem_shape=elem_shape, channels=channels, height=height, width=width,
                                            kernel=kernel, stride=stride, padding=padding, dilation=(1, 1),
                                            pad_value=0)
        self.window_mean = WindowMean(elem_shape=elem_shape, channels=channels, window=kh * kw)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, channels))),
        })

    elem_shape = property(lambda self: self.sliding_window.elem_shape)
    channels = property(lambda self: self.sliding_window.channels)
    height = property(lambda self: self.sliding_window.height)
    width = property(lambda self: self.sliding_window.width)
    kernel = property(lambda self: self.sliding_window.kernel)
    stride = property(lambda self: self.sliding_window.stride)
    padding = property(lambda self: self.sliding_window.padding)
    out_height = property(lambda self: self.sliding_window.out_height)
    out_width = property(lambda self: self.sliding_window.out_width)
    shift = property(lambda self: self.window_mean.shift)

    @property
    def cycles_per_frame(self):
        """``Hp·Wp``: the sliding window's, one padded position per cycle, unstalled."""
        return self.sliding_window.cycles_per_frame

    @property
    def latency(self):
        """Cycles from the push of a window's last padded position to its output beat being valid."""
        return self.sliding_window.latency + self.window_mean.latency

    @property
    def line_buffer_bits(self):
        """Bits held in Memory (the sliding window's line buffer)."""
        return self.sliding_window.line_buffer_bits

    @property
    def register_bits(self):
        """Flip-flops holding pixels and sums (window taps, adder-tree pipeline, output)."""
        return self.sliding_window.register_bits + self.window_mean.register_bits

    def elaborate(self, platform):
        m = Module()
        m.submodules.sliding_window = window = self.sliding_window
        m.submodules.window_mean = mean = self.window_mean
        wiring.connect(m, wiring.flipped(self.i_stream), window.i_stream)
        wiring.connect(m, window.o_stream, mean.i_stream)
        wiring.connect(m, mean.o_stream, wiring.flipped(self.o_stream))
        return m

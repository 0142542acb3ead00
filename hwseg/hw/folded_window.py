"""Folded sliding window: every convolution window served ``simd`` elements per cycle out of one ring memory.

See :class:`FoldedWindow`.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int
from .window import Counter, WindowGeometry

__all__ = ["FoldedWindow"]


def _add_mod(value, step, modulus):
    """``(value + step) mod modulus`` for ``0 ≤ value < modulus`` and a constant ``0 ≤ step < modulus``."""
    total = value + step
    return Mux(total >= modulus, total - modulus, total)


class FoldedWindow(WindowGeometry, wiring.Component):
    """All convolution windows of a frame, each served ``repeats`` times, ``simd`` elements per beat.

    Input: a pixel stream of ``simd`` lanes, ``CB = channels / simd`` beats per pixel (lane ``i`` of
    beat ``b`` is channel ``b·simd + i``), frames of ``height`` × ``width`` in raster order, back to
    back. Output: for every window ``(oy, ox)`` in raster order, ``repeats`` times over, its
    ``kh·kw·CB`` slices in the order ``(ky, kx, b)``: beat ``(ky·kw + kx)·CB + b`` carries channels
    ``b·simd …`` of input pixel ``(oy·sh − ph + ky·dh, ox·sw − pw + kx·dw)``, ``pad_value`` outside the
    frame. This is the fold order of a :class:`~hwseg.hw.mac_array.MacArray` with ``NF = repeats`` and
    ``SF = kh·kw·CB`` fed one slice per beat, so the MAC array needs no copy of the window.

    Architecture (FINN's RTL sliding-window generator, with padding inside): a *writer* walks the
    padded frame (``Hp × Wp``) and writes every position's ``CB`` slices, the input's or
    ``pad_value``, into a ring :class:`~amaranth.lib.memory.Memory` of ``P = span + slack`` positions
    (``span = (kh−1)·dh·Wp + (kw−1)·dw + 1``, the raster distance a window covers), one slice per word;
    a *reader* reads each window's slices from it by address, one per cycle, through the memory's
    synchronous read port, whose data register is the output register. The two meet in one counter,
    ``ahead``: positions written beyond the newest of the window being read. The reader serves that
    window while ``ahead ≥ 0``; the writer writes while ``ahead < slack``, so it never overwrites a
    position the current window reads; moving to the next window takes that window's gap (in padded
    positions) off ``ahead``.

    * Registers: the counters and ``simd`` elements of output; the window is in memory
      (:attr:`memory_shape`, words of ``simd`` elements).
    * Throughput: one slice per cycle out, one slice per cycle in; frame cycles are
      :func:`hwseg.estimate.cycles.folded_window_cycles` (reader-bound: ``Ho·Wo·repeats·SF`` plus
      ``CB`` cycles per position the writer still needs at a frame's first window beyond ``slack``).
    * Latency: :attr:`latency` = 2 cycles from the input transfer that completes a window to its
      first beat's ``o_stream.valid``.
    * ``i_stream.ready`` depends on state only; the output is a register stage with one enable,
      ``~o_stream.valid | o_stream.ready``.
    """

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride=(1, 1), padding=(0, 0),
                 dilation=(1, 1), pad_value=0, simd, repeats=1, slack=None):
        self._check_geometry(elem_shape=elem_shape, channels=channels, height=height, width=width, kernel=kernel,
                             stride=stride, padding=padding, dilation=dilation, pad_value=pad_value)
        self._simd = check_int("simd", simd)
        if channels % simd:
            divisors = ", ".join(str(d) for d in range(1, channels + 1) if channels % d == 0)
            raise ValueError(f"simd must divide the {channels} channels (one of {divisors}), not {simd!r}")
        self._repeats = check_int("repeats", repeats)
        self._slack = self.default_slack if slack is None else check_int("slack", slack)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, simd))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, simd))),
        })

    # -- read-only parameters and figures (used by the backend and the estimates) ----------------
    # (the window's own, elem_shape … out_width, are WindowGeometry's)

    simd = property(lambda self: self._simd)
    repeats = property(lambda self: self._repeats)
    slack = property(lambda self: self._slack)

    @property
    def beats_per_pixel(self):
        """``CB = channels / simd``."""
        return self._channels // self._simd

    @property
    def slices_per_window(self):
        """``SF = kh·kw·CB``: beats of one serving of a window."""
        return self._kernel[0] * self._kernel[1] * self.beats_per_pixel

    @property
    def span(self):
        """Padded positions from a window's first tap to its last, both included."""
        (kh, kw), (dh, dw) = self._kernel, self._dilation
        return (kh - 1) * dh * self.padded_width + (kw - 1) * dw + 1

    @property
    def gaps(self):
        """``(in_row, next_row, next_frame)``: padded positions from a window's last tap to the next
        window's, within a row, to the next row's first window, to the next frame's first window."""
        (sh, sw), wp, hp = self._stride, self.padded_width, self.padded_height
        ho, wo = self.out_height, self.out_width
        return sw, sh * wp - (wo - 1) * sw, hp * wp - (ho - 1) * sh * wp - (wo - 1) * sw

    @property
    def default_slack(self):
        """Positions the writer may run past the window being read: the largest gap within a frame plus
        one stride, so that the writer has the next window ready whenever it keeps up on average."""
        in_row, next_row, _ = self.gaps
        largest = max(in_row if self.out_width > 1 else 1, next_row if self.out_height > 1 else 1)
        return largest + self._stride[1]

    @property
    def ring_positions(self):
        """``P = span + slack``: padded positions the ring memory holds."""
        return self.span + self._slack

    @property
    def memory_shape(self):
        """``(depth, width)`` of the ring memory: ``P·CB`` words of ``simd`` elements."""
        return self.ring_positions * self.beats_per_pixel, self._simd * self._elem_shape.width

    @property
    def latency(self):
        """Cycles from the input transfer completing a window to its first beat's ``o_stream.valid``."""
        return 2

    # -- hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        (kh, kw), (dh, dw) = self._kernel, self._dilation
        (ph, pw) = self._padding
        cb_count, wp = self.beats_per_pixel, self.padded_width
        i_stream, o_stream = self.i_stream, self.o_stream
        depth = self.memory_shape[0]
        in_row, next_row, next_frame = self.gaps

        m.submodules.ring = ring = Memory(shape=data.ArrayLayout(self._elem_shape, self._simd), depth=depth,
                                          init=[])
        wr_port = ring.write_port()
        rd_port = ring.read_port(transparent_for=())

        # `ahead`: positions written beyond the newest of the window the reader is on (negative while
        # that window is incomplete). It starts at −1 − (the first window's newest position).
        first_newest = self.span - 1
        ahead = Signal(signed(max(self._slack, in_row, next_row, next_frame, first_newest + 1).bit_length() + 2),
                       init=-1 - first_newest)
        en = Signal()
        m.d.comb += en.eq(~o_stream.valid | o_stream.ready)

        # Writer: over the padded frame, CB slices per position, at most `slack` positions ahead.
        beat = Counter(cb_count, "write_beat")
        px, py = Counter(wp, "px"), Counter(self.padded_height, "py")
        write_pointer = Signal(range(depth))
        in_frame = ((py.value >= ph) & (py.value < ph + self._height)
                    & (px.value >= pw) & (px.value < pw + self._width))
        may_write = ahead < self._slack
        write = Signal()
        m.d.comb += [
            i_stream.ready.eq(may_write & in_frame),
            write.eq(may_write & (i_stream.valid | ~in_frame)),
            wr_port.addr.eq(write_pointer),
            wr_port.en.eq(write),
            wr_port.data.eq(Mux(in_frame, i_stream.payload.as_value(),
                                data.ArrayLayout(self._elem_shape, self._simd)
                                .const([self._pad_value] * self._simd).as_value())),
        ]
        position_done = write & beat.last
        with m.If(write):
            m.d.sync += write_pointer.eq(Mux(write_pointer == depth - 1, 0, write_pointer + 1))
            beat.advance(m)
            with m.If(beat.last):
                px.advance(m)
                with m.If(px.last):
                    py.advance(m)

        # Reader: slices (b, kx, ky), then the repeats, then the windows (ox, oy); `cursor` is the
        # word to read, `base` the first word of the window (its oldest tap, slice 0).
        rb, kx, ky = Counter(cb_count, "read_beat"), Counter(kw, "kx"), Counter(kh, "ky")
        rep = Counter(self._repeats, "repeat")
        ox, oy = Counter(self.out_width, "ox"), Counter(self.out_height, "oy")
        cursor, base = Signal(range(depth)), Signal(range(depth))
        issue = Signal()
        m.d.comb += [
            issue.eq(en & (ahead >= 0)),
            rd_port.addr.eq(cursor),
            rd_port.en.eq(en),
        ]
        # word steps, each reduced modulo the ring (a step of a whole ring is no step)
        tap_step = ((dw - 1) * cb_count + 1) % depth
        row_step = ((dh * wp - (kw - 1) * dw) * cb_count - (cb_count - 1)) % depth
        gap = Signal(range(max(in_row, next_row, next_frame) + 1))
        m.d.comb += gap.eq(Mux(ox.last, Mux(oy.last, next_frame, next_row), in_row))
        window_step = Signal(range(depth))
        m.d.comb += window_step.eq(Mux(ox.last, Mux(oy.last, next_frame * cb_count % depth,
                                                    next_row * cb_count % depth), in_row * cb_count % depth))
        serving_done = rb.last & kx.last & ky.last
        window_done = Signal()
        m.d.comb += window_done.eq(issue & serving_done & rep.last)
        with m.If(issue):
            rb.advance(m)
            with m.If(rb.last):
                kx.advance(m)
                with m.If(kx.last):
                    ky.advance(m)
                    with m.If(ky.last):
                        rep.advance(m)
                        with m.If(rep.last):
                            ox.advance(m)
                            with m.If(ox.last):
                                oy.advance(m)
            next_base = _add_mod(base, window_step, depth)
            with m.If(serving_done):
                with m.If(rep.last):
                    m.d.sync += [base.eq(next_base), cursor.eq(next_base)]
                with m.Else():
                    m.d.sync += cursor.eq(base)
            with m.Elif(rb.last & kx.last):
                m.d.sync += cursor.eq(_add_mod(cursor, row_step, depth))
            with m.Elif(rb.last):
                m.d.sync += cursor.eq(_add_mod(cursor, tap_step, depth))
            with m.Else():
                m.d.sync += cursor.eq(_add_mod(cursor, 1 % depth, depth))
        with m.If(en):
            m.d.sync += o_stream.valid.eq(issue)
        m.d.comb += o_stream.payload.eq(rd_port.data)

        m.d.sync += ahead.eq(ahead + position_done - Mux(window_done, gap, 0))
        return m

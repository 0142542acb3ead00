"""Nearest and bilinear upsampling of a pixel stream by integer factors.

See :class:`UpsampleLayer`.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int, check_shape, is_int

__all__ = ["UpsampleLayer"]


def _lookup(values, index):
    """``values[index]`` for a signal ``index``: a constant when all values agree, else a mux."""
    if len(set(values)) == 1:
        return Const(values[0])
    return Array(Const(v) for v in values)[index]


def _mod_inc(value, modulus):
    return Mux(value == modulus - 1, 0, value + 1) if modulus > 1 else value


def _blend(first, second, weight, bits):
    """``first·(2^bits − weight) + second·weight`` as ``(first << bits) + (second − first)·weight``, the product
    by the narrow blend weight written as shift-and-add (one gated, shifted difference per weight bit): one
    product instead of two, and in logic rather than a DSP (a bilinear weight has at most ``bits`` bits)."""
    difference = second - first
    total = first << bits
    for k in range(weight.shape().width):
        total = total + (Mux(weight[k], difference, 0) << k)
    return total


class _Linear:
    """torch's ``align_corners=False`` linear interpolation along one axis, factor ``f`` (a power of two).

    Output ``d = q·f + r`` mixes source samples ``i0`` and ``i1 = min(i0 + 1, size − 1)`` with
    weights ``w0 + w1 = 2^bits``: for ``r ≥ f/2``, ``i0 = q`` and ``w1 = 2r + 1 − f``; for
    ``r < f/2``, ``i0 = q − 1`` and ``w1 = 2r + 1 + f``, except ``i0 = 0, w1 = 0`` when ``q = 0``.
    ``f = 1`` gives ``i0 = d``, ``w = (1, 0)``. Nearest (``linear=False``) is ``i0 = q``, ``w = (1, 0)``.
    """

    def __init__(self, size, factor, linear):
        self.size, self.factor, self.linear = size, factor, linear and factor > 1
        self.bits = factor.bit_length() if self.linear else 0

    def first(self, d):
        """``i0``: the first source sample of output ``d``."""
        q, r = divmod(d, self.factor)
        return q - 1 if self.linear and r < self.factor // 2 and q else q

    def last(self, d):
        """``i1``: the second source sample of output ``d``."""
        return min(self.first(d) + 1, self.size - 1) if self.linear else self.first(d)

    def signals(self, q, r):
        """``(i0, w0, w1)`` as expressions of the counters ``q = d div f`` and ``r = d mod f``."""
        if not self.linear:
            return q, Const(1), Const(0)
        f, half = self.factor, self.factor // 2
        upper = r >= half
        w1 = Mux(upper, _lookup([max(2 * k + 1 - f, 0) for k in range(f)], r),
                 Mux(q == 0, 0, _lookup([2 * k + 1 + f if k < half else 0 for k in range(f)], r)))
        i0 = Mux(upper | (q == 0), q, q - 1)
        return i0, (2 * f) - w1, w1


class UpsampleLayer(wiring.Component):
    """Nearest or bilinear upsampling of a pixel stream by integer factors ``(fh, fw)``.

    Computes ``out[c, y, x]`` on the ``Ho × Wo = H·fh × W·fw`` output, for every channel ``c``:

    * ``mode="nearest"`` (any ``fh, fw >= 1``): ``out[c, y, x] = in[c, y div fh, x div fw]``.
    * ``mode="bilinear"`` (``fh, fw`` powers of two): torch ``interpolate(mode="bilinear",
      align_corners=False)``, rounded half up exactly: along each axis output ``d`` mixes input
      samples ``i0(d)`` and ``i1(d) = min(i0 + 1, size − 1)`` with integer weights
      ``w0 + w1 = 2^b`` (``b = log2 f + 1``, 0 for ``f = 1``; edges clamp as torch does), and
      ``out = (Σ wy·wx·in + 2^(s−1)) >> s`` with ``s = bh + bw`` (arithmetic shift; no rounding
      term when ``s = 0``). The result always fits ``elem_shape`` (a rounded convex combination).

    Streams: one whole pixel (``channels`` lanes of ``elem_shape``) per beat on both sides,
    raster order, frames back to back without reset; the output type is the input type.

    Architecture: a line buffer, one :class:`~amaranth.lib.memory.Memory` of ``W`` words, each
    holding column ``x`` of all ``R`` buffered rows (:attr:`buffer_rows`; a ring over the input
    rows, written with one enable per row slot; one write and one read port). Input row ``iy``
    goes to slot ``iy mod R`` (counting rows across frames) and may overwrite column ``ix`` of
    the row ``R`` rows before once the reader has read that pixel for the last time.

    * Nearest, ``R = 1`` (2 when ``W = 1``): each cycle one output pixel reads
      input column ``x div fw`` of row ``y div fh``, straight to the output register. The
      first output row of a source row reads it while it arrives, the next ``fh − 1`` replay it.
    * Bilinear, ``R = min(3, H)`` (for ``fh = 1``: 1, or ``min(2, H)`` when ``W = 1``): the
      reader walks *targets*
      ``(output row, input column)`` in raster order; reading target ``(y, c)`` gives
      ``V = wy0·in[i0(y), c] + wy1·in[i1(y), c]`` (all channels). Two registers hold the
      horizontal pair ``(V(x0), V(x1))`` of the current output; when ``x0`` advances (``W``
      times per output row, the last of which fetches column 0 of the next row) the next target
      is read and shifted in, so every output step reads at most one target. Each frame starts
      with one extra step reading target ``(0, 0)``. Then
      ``out = (wx0·V(x0) + wx1·V(x1) + 2^(s−1)) >> s``.

    Input pixel ``(iy, ix)`` is taken once the reader has read pixel ``(iy − R, ix)`` for the
    last time (or all of its frame's targets); the input can finish up to :attr:`max_lead`
    frames ahead of the output. One enable, ``~o_stream.valid | o_stream.ready``, stalls the
    walker and all stages; ``i_stream.ready`` depends only on registers.

    Figures:

    * Throughput: one output pixel per cycle: at full rate (frames back to back, input always
      valid, output always ready) a frame takes :attr:`cycles_per_frame` ``= Ho·Wo`` (nearest)
      or ``Ho·Wo + 1`` (bilinear) cycles, exactly. The input is taken as the ring allows:
      nearest takes source row ``iy + 1`` during the last replay of row ``iy`` (behind the
      reader) and the first output row of ``iy + 1``; bilinear up to one row ahead.
    * Latency (:attr:`latency`): an output pixel's beat is valid 1 (nearest) or 3 (bilinear)
      cycles after its step issues; a step waiting for an input pixel issues the cycle after
      that pixel's transfer.
    * Memory: :attr:`line_buffer_bits` ``= R·W·channels·b``; bilinear adds two registers of
      ``channels`` sums.
    * Input needed: :meth:`inputs_needed` ``(oy, ox)`` is the number of input pixels of the
      current frame that must have been taken before output ``(oy, ox)`` can be emitted.
      Nearest: ``max((y div fh)·W + x div fw + 1, ((y − 1) div fh + 1)·W)`` (the second term
      for ``y ≥ 1``: the previous output rows replayed the whole source row). Bilinear: with
      ``k = x0(ox)`` the step reads target ``T = (oy, k + 1)``, or ``(oy + 1, 0)`` when
      ``k = W − 1`` (the frame's last row reads nothing new: ``T = (Ho − 1, W − 1)``); target
      ``(y, c)`` needs ``i1(y)·W + c + 1`` pixels, and the count is the maximum of that over
      ``T`` and the end ``(T.y − 1, W − 1)`` of the previous target row. The block never waits
      for more; the frame's last output always needs the whole frame (``H·W``).
    """

    MODES = ("nearest", "bilinear")

    def __init__(self, *, elem_shape, channels, height, width, factor, mode="nearest"):
        check_shape("elem_shape", elem_shape)
        check_int("channels", channels)
        check_int("height", height)
        check_int("width", width)
        if is_int(factor) and factor >= 1:
            factor = (factor, factor)
        if (not isinstance(factor, (tuple, list)) or len(factor) != 2
                or any(not is_int(f) or f < 1 for f in factor)):
            raise ValueError(f"factor must be a positive integer or a pair of positive integers, not {factor!r}")
        factor = tuple(factor)
        if mode not in self.MODES:
            raise ValueError(f"mode must be 'nearest' or 'bilinear', not {mode!r}")
        if mode == "bilinear" and any(f & (f - 1) for f in factor):
            raise ValueError(f"bilinear factors must be powers of two (1, 2, 4, …) so that the weights are "
                             f"exact binary fractions, not {factor!r}")
        self._elem_shape, self._channels = elem_shape, channels
        self._height, self._width = height, width
        self._factor, self._mode = factor, mode
        linear = mode == "bilinear"
        self._y = _Linear(height, factor[0], linear)
        self._x = _Linear(width, factor[1], linear)
        self._pixel_layout = data.ArrayLayout(elem_shape, channels)
        super().__init__({
            "i_stream": In(stream.Signature(self._pixel_layout)),
            "o_stream": Out(stream.Signature(self._pixel_layout)),
        })

    # -- read-only parameters and figures --------------------------------------------------------

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    factor = property(lambda self: self._factor)
    mode = property(lambda self: self._mode)

    @property
    def out_height(self):
        return self._height * self._factor[0]

    @property
    def out_width(self):
        return self._width * self._factor[1]

    @property
    def shift(self):
        """``s``: bilinear weights are integers over ``2^s``; 0 for nearest."""
        return self._y.bits + self._x.bits

    @property
    def buffer_rows(self):
        """``R``: input rows in the line buffer."""
        if self._mode == "bilinear" and self._factor[0] > 1:
            return min(3, self._height)
        # One row: the next row's pixel x is written behind the last read of pixel x. A one-pixel
        # row gets a second slot, or every row would wait for its predecessor's last read.
        return 1 if self._width > 1 else (2 if self._mode == "nearest" else min(2, self._height))

    @property
    def max_lead(self):
        """Most frames the input can finish ahead of the output: ``ceil((R + 1)/H)``.

        The last pixel of a frame overwrites row ``H − 1 − R`` of the frame ``lead`` frames before
        it, which is only possible while that row lies inside the output's frame (``lead·H ≤ R``).
        """
        return -(-(self.buffer_rows + 1) // self._height)

    @property
    def line_buffer_bits(self):
        """``R·W·channels·b``."""
        return self.buffer_rows * self._width * self._channels * self._elem_shape.width

    @property
    def cycles_per_frame(self):
        """``Ho·Wo`` (nearest) or ``Ho·Wo + 1`` (bilinear): one output per cycle, unstalled."""
        return self.out_height * self.out_width + (self._mode == "bilinear")

    @property
    def latency(self):
        """Cycles from an output step's issue to its ``o_stream.valid``."""
        return 1 if self._mode == "nearest" else 3

    def inputs_needed(self, oy, ox):
        """Input pixels of the frame that must have been taken before output ``(oy, ox)`` is emitted."""
        if not (0 <= oy < self.out_height and 0 <= ox < self.out_width):
            raise ValueError(f"(oy, ox) must lie in the {self.out_height}×{self.out_width} output, "
                             f"not {(oy, ox)!r}")
        width = self._width
        if self._mode == "nearest":
            fh, fw = self._factor
            need = (oy // fh) * width + ox // fw + 1
            return max(need, ((oy - 1) // fh + 1) * width) if oy else need
        k = self._x.first(ox)
        if k + 1 < width:
            target = (oy, k + 1)
        elif oy + 1 < self.out_height:
            target = (oy + 1, 0)
        else:
            target = (oy, width - 1)
        need = self._y.last(target[0]) * width + target[1] + 1
        if target[0]:
            need = max(need, self._y.last(target[0] - 1) * width + width)
        return need

    # -- hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        en = Signal()                               # stall-all enable of the walker and the stages
        m.d.comb += en.eq(~self.o_stream.valid | self.o_stream.ready)
        rows, pixel_bits = self.buffer_rows, self._pixel_layout.size
        m.submodules.line_buffer = memory = Memory(shape=unsigned(rows * pixel_bits), depth=self._width, init=[])
        reader = self._reader_state()
        self._input_side(m, memory, reader)
        rd_port = memory.read_port(transparent_for=())
        m.d.comb += [rd_port.addr.eq(reader.col), rd_port.en.eq(en)]
        if self._mode == "nearest":
            self._nearest(m, en, reader, rd_port.data)
        else:
            self._bilinear(m, en, reader, rd_port.data)
        return m

    def _reader_state(self):
        """The reader's next target and the frame bookkeeping shared by the input side and the walker."""
        height, width, (fh, _) = self._height, self._width, self._factor
        return SimpleNamespace(
            q=Signal(range(height), name="t_q"),          # target row = q·fh + r
            r=Signal(range(fh), name="t_r"),
            col=Signal(range(width), name="t_col"),
            y0=Signal(range(height), name="t_y0"),        # i0 of the target row
            slot=Signal(range(self.buffer_rows), name="t_slot"),   # its ring slot
            done=Signal(name="t_done"),                   # every target of the frame read
            lead=Signal(range(self.max_lead + 1), name="lead"),
            in_y=Signal(range(height), name="in_y"),
            in_x=Signal(range(width), name="in_x"),
            in_done=Signal(name="in_done"),
            out_done=Signal(name="out_done"),
        )

    def _target_last(self, reader):
        """The target row is the last to read row ``i0`` (the next row reads ``i0 + 1``, or none follows)."""
        fh = self._factor[0]
        if not self._y.linear:
            return reader.r == fh - 1
        last_row = (reader.q == self._height - 1) & (reader.r == fh - 1)
        return ((reader.r == fh // 2 - 1) & (reader.q != 0)) | last_row

    def _input_side(self, m, memory, reader):
        """Take input pixels into their ring slot once the row ``R`` rows before is read there."""
        height, width, rows, pixel_bits = self._height, self._width, self.buffer_rows, self._pixel_layout.size
        i, in_x, in_y, lead = self.i_stream, reader.in_x, reader.in_y, reader.lead
        write_slot = Signal(range(rows), name="write_slot")
        # The previous occupant of the slot, as a row of the walker's frame (< 0: an older frame).
        previous = in_y - rows + lead * height
        read_past = ((reader.y0 > previous)
                     | ((reader.y0 == previous) & self._target_last(reader) & (reader.col > in_x)))
        m.d.comb += i.ready.eq((previous < 0) | ((previous < height) & (reader.done | read_past)))
        transfer = i.valid & i.ready
        wr_port = memory.write_port(granularity=pixel_bits if rows > 1 else None)
        m.d.comb += [
            wr_port.addr.eq(in_x),
            wr_port.data.eq(Cat([i.payload.as_value()] * rows)),
            wr_port.en.eq(Mux(transfer, 1 << write_slot, 0) if rows > 1 else transfer),
            reader.in_done.eq(transfer & (in_x == width - 1) & (in_y == height - 1)),
        ]
        with m.If(transfer):
            m.d.sync += in_x.eq(Mux(in_x == width - 1, 0, in_x + 1))
            with m.If(in_x == width - 1):
                m.d.sync += [in_y.eq(Mux(in_y == height - 1, 0, in_y + 1)), write_slot.eq(_mod_inc(write_slot, rows))]
        with m.If(reader.in_done & ~reader.out_done):
            m.d.sync += lead.eq(lead + 1)
        with m.Elif(reader.out_done & ~reader.in_done):
            m.d.sync += lead.eq(lead - 1)

    def _need_met(self, reader, need_y):
        """The input pixel ``(need_y, target column)`` of the walker's frame has been taken."""
        return (reader.lead != 0) | (reader.in_y > need_y) | ((reader.in_y == need_y) & (reader.in_x > reader.col))

    def _nearest(self, m, en, reader, word):
        """One output per step, reading its source pixel; the walker is the reader."""
        height, width, rows, (fh, fw) = self._height, self._width, self.buffer_rows, self._factor
        rx = Signal(range(fw), name="rx")
        last_x = (reader.col == width - 1) & (rx == fw - 1)
        last_y = (reader.q == height - 1) & (reader.r == fh - 1)
        go = Signal(name="go")
        m.d.comb += [go.eq(en & self._need_met(reader, reader.q)), reader.y0.eq(reader.q),
                     reader.out_done.eq(go & last_x & last_y)]
        with m.If(go):
            m.d.sync += rx.eq(Mux(rx == fw - 1, 0, rx + 1))
            with m.If(rx == fw - 1):
                m.d.sync += reader.col.eq(Mux(reader.col == width - 1, 0, reader.col + 1))
            with m.If(last_x):
                m.d.sync += reader.r.eq(Mux(reader.r == fh - 1, 0, reader.r + 1))
                with m.If(reader.r == fh - 1):
                    m.d.sync += [reader.q.eq(Mux(reader.q == height - 1, 0, reader.q + 1)),
                                 reader.slot.eq(_mod_inc(reader.slot, rows))]

        # The read port's data register is the output register (both hold while stalled).
        slot1 = Signal.like(reader.slot)
        with m.If(en):
            m.d.sync += [self.o_stream.valid.eq(go), slot1.eq(reader.slot)]
        m.d.comb += self.o_stream.payload.eq(word.word_select(slot1, self._pixel_layout.size))

    def _bilinear(self, m, en, reader, word):
        """The output walker, the target reader one target ahead, and the three stages."""
        height, width, rows, (fh, fw) = self._height, self._width, self.buffer_rows, self._factor
        # Output walker: output (qy·fh + ry, qx·fw + rx); `primed` once the frame's first target is read.
        qy, ry = Signal(range(height), name="qy"), Signal(range(fh), name="ry")
        qx, rx = Signal(range(width), name="qx"), Signal(range(fw), name="rx")
        primed = Signal(name="primed")
        last_x = (qx == width - 1) & (rx == fw - 1)
        last_y = (qy == height - 1) & (ry == fh - 1)
        x0, _, wx1 = self._x.signals(qx, rx)
        # x0 advances (and the pair shifts) at the row start and wherever x0(ox) > x0(ox − 1).
        shift = (((qx == 0) & (rx == 0)) | ((qx != 0) & (rx == fw // 2))) if fw > 1 else Const(1)
        tail = x0 == width - 1                      # x1 = x0: the pair's second value is unused

        # The target row's vertical weights and its two rows' slots.
        _, _, wy1 = self._y.signals(reader.q, reader.r)
        y1 = Mux(reader.y0 == height - 1, reader.y0, reader.y0 + 1) if self._y.linear else reader.y0
        slot1 = Mux(reader.y0 == height - 1, reader.slot, _mod_inc(reader.slot, rows))

        reads = ~primed | (shift & ~reader.done)
        go = Signal(name="go")
        m.d.comb += [go.eq(en & (~reads | self._need_met(reader, y1))),
                     reader.out_done.eq(go & primed & last_x & last_y)]

        with m.If(go & primed):                       # an output step
            m.d.sync += rx.eq(Mux(rx == fw - 1, 0, rx + 1))
            with m.If(rx == fw - 1):
                m.d.sync += qx.eq(Mux(qx == width - 1, 0, qx + 1))
            with m.If(last_x):
                m.d.sync += ry.eq(Mux(ry == fh - 1, 0, ry + 1))
                with m.If(ry == fh - 1):
                    m.d.sync += qy.eq(Mux(qy == height - 1, 0, qy + 1))
        with m.If(go & ~primed):
            m.d.sync += primed.eq(1)
        with m.If(go & reads):                        # the target advances
            m.d.sync += reader.col.eq(Mux(reader.col == width - 1, 0, reader.col + 1))
            with m.If(reader.col == width - 1):
                target_last_row = (reader.q == height - 1) & (reader.r == fh - 1)
                m.d.sync += reader.r.eq(Mux(reader.r == fh - 1, 0, reader.r + 1))
                with m.If(reader.r == fh - 1):
                    m.d.sync += reader.q.eq(Mux(reader.q == height - 1, 0, reader.q + 1))
                with m.If(target_last_row):
                    m.d.sync += reader.done.eq(1)
                with m.Elif(self._target_last(reader)):
                    m.d.sync += [reader.y0.eq(reader.y0 + 1), reader.slot.eq(_mod_inc(reader.slot, rows))]
        with m.If(reader.out_done):                   # next frame: its row 0 follows row H − 1 in the ring
            m.d.sync += [primed.eq(0), reader.done.eq(0), reader.y0.eq(0),
                         reader.slot.eq(_mod_inc(reader.slot, rows))]

        # Stage 1 (the read port registers the word): what the step does with it.
        s1 = SimpleNamespace(**{name: Signal(shape, name=f"{name}1") for name, shape in [
            ("valid", 1), ("shift", 1), ("tail", 1), ("slot0", range(rows)), ("slot1", range(rows)),
            ("wy1", wy1.shape()), ("wx1", wx1.shape())]})
        with m.If(en):
            m.d.sync += [s1.valid.eq(go & primed), s1.shift.eq(go & (~primed | shift)), s1.tail.eq(tail),
                         s1.slot0.eq(reader.slot), s1.slot1.eq(slot1), s1.wy1.eq(wy1), s1.wx1.eq(wx1)]

        # Stage 2: the vertical mix V of the read column, per channel.
        bits = self._pixel_layout.size
        rows0 = word.word_select(s1.slot0, bits)
        rows1 = word.word_select(s1.slot1, bits)

        def elem(value, c):
            e = value.word_select(c, self._elem_shape.width)
            return e.as_signed() if self._elem_shape.signed else e

        by, bx = self._y.bits, self._x.bits
        mixes = [_blend(elem(rows0, c), elem(rows1, c), s1.wy1, by) for c in range(self._channels)]
        # V lies between its two samples: it needs the sample width plus `by` bits (and a sign bit)
        v_shape = signed(self._elem_shape.width + by + 1)
        v2 = [Signal(v_shape, name=f"v2_{c}") for c in range(self._channels)]
        s2 = SimpleNamespace(**{name: Signal.like(getattr(s1, name), name=f"{name}2")
                                for name in ("valid", "shift", "tail", "wx1")})
        with m.If(en):
            m.d.sync += [r.eq(v) for r, v in zip(v2, mixes)]
            m.d.sync += [getattr(s2, name).eq(getattr(s1, name)) for name in ("valid", "shift", "tail", "wx1")]

        # Stage 3: the horizontal pair (shifted on x0's advance) and the rounded output register.
        pair_a = [Signal(v_shape, name=f"a_{c}") for c in range(self._channels)]
        pair_b = [Signal(v_shape, name=f"b_{c}") for c in range(self._channels)]
        shift_s = self.shift
        rounding = (1 << (shift_s - 1)) if shift_s else 0
        with m.If(en):
            m.d.sync += self.o_stream.valid.eq(s2.valid)
            for c in range(self._channels):
                a = Mux(s2.shift, pair_b[c], pair_a[c])
                b = Mux(s2.shift, v2[c], pair_b[c])
                total = _blend(a, Mux(s2.tail, a, b), s2.wx1, bx) + rounding
                with m.If(s2.shift):
                    m.d.sync += [pair_a[c].eq(a), pair_b[c].eq(b)]
                with m.If(s2.valid):
                    m.d.sync += self.o_stream.payload[c].eq(total >> shift_s)

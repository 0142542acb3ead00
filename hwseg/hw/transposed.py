"""Transposed convolution on a pixel stream, by output phases (no inserted zeros are multiplied).

See :class:`ConvTranspose2dLayer`.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int, check_pair, check_shape, is_int, range_of, shape_for

__all__ = ["ConvTranspose2dLayer"]


def _divisors(n):
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _balanced_sum(terms):
    """Sum of ``terms`` by a balanced binary adder tree (Amaranth widens each sum: exact)."""
    while len(terms) > 1:
        terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j]
                 for j in range(0, len(terms), 2)]
    return terms[0]


def _lookup(values, index):
    """``values[index]`` for a signal ``index``: a constant when all values agree, else a mux."""
    if len(set(values)) == 1:
        return Const(values[0])
    return Array(Const(v) for v in values)[index]


def _mod_add(value, step, modulus):
    """``(value + step) mod modulus`` for ``0 <= value < modulus``, a constant ``step``."""
    step %= modulus
    if step == 0:
        return value
    return Mux(value >= modulus - step, value - (modulus - step), value + step)


class _Axis:
    """One axis of a dilation-1 transposed convolution, split into output phases.

    Output ``o`` has phase ``r = (o + p) mod s`` and anchor ``q = (o + p) div s``; it receives
    the taps ``k = r + j·s`` (``j = 0 … taps[r] − 1``), tap ``j`` reading input ``q − j`` (when
    that lies inside ``0 … size − 1``).
    """

    def __init__(self, size, kernel, stride, padding, out_size):
        self.size, self.kernel, self.stride, self.padding, self.out_size = size, kernel, stride, padding, out_size
        self.taps = [max(0, -(-(kernel - r) // stride)) for r in range(stride)]
        # A phase without taps still takes one fold (a zero-weight dummy tap): its output is the bias.
        self.slots = [max(t, 1) for t in self.taps]
        self.span = self.taps[0]                       # ceil(kernel / stride), the most taps of a phase

    def anchor(self, o):
        return (o + self.padding) // self.stride

    def phase(self, o):
        return (o + self.padding) % self.stride

    def folds(self):
        """``Σ_o slots[phase(o)]``: tap folds of one output row (or column)."""
        return sum(self.slots[self.phase(o)] for o in range(self.out_size))


class ConvTranspose2dLayer(wiring.Component):
    """An exact integer transposed convolution (``torch.nn.functional.conv_transpose2d``).

    Computes, for every output pixel ``(oy, ox)`` of the ``Ho × Wo`` output
    (``Ho = (H − 1)·sh − 2·ph + kh + oph``, ``Wo`` likewise; dilation 1, groups 1) and every
    output channel ``o``::

        acc[o, oy, ox] = bias[o] + Σ weights[i][o][ky][kx] · x[i, iy, ix]

    over input channels ``i`` and the taps with ``oy + ph = iy·sh + ky`` and
    ``ox + pw = ix·sw + kx``, ``(iy, ix)`` inside the ``H × W`` input. ``weights`` is
    in torch's layout ``(C_in, C_out, kh, kw)``.

    No zeros are inserted: output row ``oy`` has phase ``ry = (oy + ph) mod sh`` and anchor
    ``qy = (oy + ph) div sh``; only the ``Ty(ry) = ceil((kh − ry)/sh)`` taps
    ``ky = ry + jy·sh`` reach it, tap ``jy`` reading input row ``qy − jy`` (columns likewise).
    So each output pixel is a dot product over its phase's ``Ty·Tx`` taps × ``C_in`` channels,
    with the weights of that phase. A phase without taps (``sh > kh``) gets one zero-weight
    dummy tap (its outputs are the bias); write ``Ty'(ry) = max(Ty(ry), 1)`` (likewise ``Tx'``).

    Streams: ``i_stream`` takes one whole input pixel (``channels`` lanes of ``elem_shape``)
    per beat, raster order, frames back to back without reset. ``o_stream`` gives, per output
    pixel in raster order, ``NF = out_channels / pe`` beats of ``pe`` accumulators
    (channel ``beat·pe + lane``) of ``acc_shape`` (checked to hold every reachable value).

    Architecture:

    * Line buffer: a :class:`~amaranth.lib.memory.Memory` ring of :attr:`buffer_rows` ``R``
      input rows of ``W`` pixels, one pixel per word, 1 write + 1 read port. Only the rows
      ``top … bottom`` (:attr:`kept_rows`) that some tap reads are written; the others are taken
      and dropped. ``R = min(Ky + 1, 2·H)`` (``Ky = ceil(kh/sh)``, the most rows one output row
      reads) for every configuration with ``ph < sh`` and ``ph ≤ kh − 1 + oph``
      (ERFNet 3×3/2 upsampler: 3 rows, 2×2/2: 2 rows); see :attr:`buffer_rows` for the rest.
    * Scheduler: walks the output pixels in raster order; for each it issues
      ``NF·Ty'·Tx'·SF`` folds (``SF = channels / simd``; order ``nf``, ``jy``, ``jx``, ``sf``,
      innermost last), one per cycle: the line buffer reads the tap's input pixel, a ROM
      (``Memory``, phase-major) the ``pe × simd`` weights of the fold. Taps outside the input
      contribute 0. As in :class:`~hwseg.hw.mac_array.MacArray`, products are reduced per PE by
      an adder tree into a register, and the PE accumulators (starting from the bias at the
      first fold of each ``nf``) are the output register.
    * Flow control: a pixel's first fold issues only once the input pixel
      ``(min(qy, H − 1), min(qx, W − 1))`` of its frame has been taken (the raster-last
      pixel its taps read; the frame's last output pixel waits for the whole frame). A kept
      input row ``iy`` is accepted while ``iy + lead·(bottom − top + 1) < low + R``, where
      ``low = clamp(qy − Ky + 1, top, bottom)`` is the lowest row the scheduler's current output
      row (or any later one) reads and ``lead`` (0, 1, or 2 when ``R`` exceeds the kept rows
      of a frame, :attr:`max_lead`) counts the frames the input has finished ahead of the
      scheduler. Rows above ``top`` are always taken, rows below ``bottom`` while
      ``lead < max_lead``. ``i_stream.ready`` depends on registers only.
      One enable, ``~o_stream.valid | o_stream.ready``, stalls the scheduler and all stages.

    Figures:

    * Throughput: one fold per cycle; at full rate (frames back to back, input always valid,
      output always ready) a frame takes :attr:`cycles_per_frame`
      ``= max(NF·SF·(Σ_oy Ty'(ry(oy)))·(Σ_ox Tx'(rx(ox))), H·W)`` cycles (exactly: checked on
      a sweep of random small configurations). E.g. 3×3 stride 2 has ``(1 + 2 + 2 + 4)/4`` taps
      per output pixel on average, 2×2 stride 2 one tap per output pixel.
    * Latency: :attr:`latency` ``= 3``: a pixel's beat ``nf`` is valid 3 cycles after the issue of
      its last fold ``(nf, Ty' − 1, Tx' − 1, SF − 1)``. When the scheduler was waiting for the
      input, the first beat of ``(oy, ox)`` is valid ``Ty'·Tx'·SF + 3`` cycles after the transfer of
      the input pixel it waited for.
    * Memory: :attr:`line_buffer_bits` ``= R·W·channels·b`` in the line buffer,
      :attr:`weight_bits` in the weight ROM (``NF·SF·Σ_phases Ty'·Tx'`` words of ``pe·simd``
      weights), a bias ROM of ``NF`` words when ``NF > 1``.
    * Input needed: :meth:`inputs_needed` ``(oy, ox)`` is the number of input pixels of the
      current frame that must have been taken before output pixel ``(oy, ox)`` can be emitted:
      ``n(oy, ox) = min(qy, H − 1)·W + min(qx, W − 1) + 1`` maximized over ``(oy, ox)`` and all
      output pixels before it in raster order (they are emitted first), i.e.
      ``max(n(oy, ox), n(oy − 1, Wo − 1))``, and ``H·W`` for the last pixel of the frame. Given
      that many, the block emits the pixel without waiting for more input.
    """

    def __init__(self, *, elem_shape, channels, out_channels, height, width, kernel, stride, padding=(0, 0),
                 output_padding=(0, 0), dilation=(1, 1), groups=1, weights, bias, pe, simd, acc_shape):
        check_shape("elem_shape", elem_shape)
        check_int("channels", channels)
        check_int("out_channels", out_channels)
        check_int("height", height)
        check_int("width", width)
        kernel = check_pair("kernel", kernel)
        stride = check_pair("stride", stride)
        padding = check_pair("padding", padding, minimum=0)
        output_padding = check_pair("output_padding", output_padding, minimum=0)
        dilation = check_pair("dilation", dilation)
        if dilation != (1, 1):
            raise ValueError(f"dilation must be (1, 1) (dilated transposed convolutions are not supported), "
                             f"not {dilation!r}")
        if not is_int(groups) or groups != 1:
            raise ValueError(f"groups must be 1 (grouped transposed convolutions are not supported), "
                             f"not {groups!r}")
        if any(op >= s for op, s in zip(output_padding, stride)):
            raise ValueError(f"output_padding must be smaller than the stride {stride!r} on each axis "
                             f"(as torch requires with dilation 1), not {output_padding!r}")
        (kh, kw), (sh, sw), (ph, pw), (oph, opw) = kernel, stride, padding, output_padding
        out_height = (height - 1) * sh - 2 * ph + kh + oph
        out_width = (width - 1) * sw - 2 * pw + kw + opw
        if out_height < 1 or out_width < 1:
            raise ValueError(f"padding {padding!r} is too large: a {height}×{width} input gives an empty "
                             f"{out_height}×{out_width} output for a {kh}×{kw} kernel with stride {stride!r}")
        weights = self._check_weights(weights, (channels, out_channels, kh, kw))
        if bias is None:
            bias = [0] * out_channels
        if hasattr(bias, "tolist"):
            bias = bias.tolist()
        if (not isinstance(bias, (list, tuple)) or len(bias) != out_channels
                or not all(is_int(b) for b in bias)):
            raise ValueError(f"bias must be None or a list of {out_channels} ints (one per output "
                             f"channel), not {bias!r}")
        check_int("pe", pe)
        if out_channels % pe:
            raise ValueError(f"pe must divide the {out_channels} output channels (one of "
                             f"{_divisors(out_channels)}), not {pe!r}")
        check_int("simd", simd)
        if channels % simd:
            raise ValueError(f"simd must divide the {channels} input channels (one of "
                             f"{_divisors(channels)}), not {simd!r}")
        acc = cast_shape("acc_shape", acc_shape)

        self._elem_shape, self._channels, self._out_channels = elem_shape, channels, out_channels
        self._height, self._width = height, width
        self._kernel, self._stride, self._padding, self._output_padding = kernel, stride, padding, output_padding
        self._weights = weights
        self._bias = tuple(bias)
        self._pe, self._simd, self._acc_shape = pe, simd, acc_shape
        self._y = _Axis(height, kh, sh, ph, out_height)
        self._x = _Axis(width, kw, sw, pw, out_width)

        lo, hi, bound = self._accumulator_range()
        acc_lo, acc_hi = range_of(acc)
        if lo < acc_lo or hi > acc_hi:
            raise ValueError(f"acc_shape {acc_shape!r} cannot hold the accumulator range [{lo}, {hi}] "
                             f"of these weights, bias and elem_shape, which needs {shape_for(lo, hi)!r}")
        self._acc_range = (lo, hi)
        self._sum_shape = shape_for(-bound, bound)        # internal accumulators: never overflow
        flat = [w for plane in weights for row in plane for krow in row for w in krow]
        # ROM element shapes, always signed (the -1 makes shape_for choose a signed shape).
        self._w_shape = shape_for(min(-1, *flat), max(flat))
        self._b_shape = shape_for(min(-1, *bias), max(bias))
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, pe))),
        })

    @staticmethod
    def _check_weights(weights, dims):
        """``weights`` as nested tuples of ints of shape ``dims`` = (C_in, C_out, kh, kw), else an error."""
        names = ("channels", "out_channels", "kh", "kw")

        def walk(value, depth, path):
            if hasattr(value, "tolist"):
                value = value.tolist()
            if depth == len(dims):
                if not is_int(value):
                    raise TypeError(f"weights{path} must be an int, not {value!r}")
                return value
            if not isinstance(value, (list, tuple)) or len(value) != dims[depth]:
                raise ValueError(f"weights{path} must be a list of {names[depth]}={dims[depth]} "
                                 f"{'ints' if depth == len(dims) - 1 else 'lists'} (weights have torch's "
                                 f"layout (C_in, C_out, kh, kw) = {dims}), not {value!r}")
            return tuple(walk(v, depth + 1, f"{path}[{k}]") for k, v in enumerate(value))

        return walk(weights, 0, "")

    # -- read-only parameters and figures (used by the backend and the estimates) ----------------

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    out_channels = property(lambda self: self._out_channels)
    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    kernel = property(lambda self: self._kernel)
    stride = property(lambda self: self._stride)
    padding = property(lambda self: self._padding)
    output_padding = property(lambda self: self._output_padding)
    weights = property(lambda self: self._weights)
    bias = property(lambda self: self._bias)
    pe = property(lambda self: self._pe)
    simd = property(lambda self: self._simd)
    acc_shape = property(lambda self: self._acc_shape)
    acc_range = property(lambda self: self._acc_range)

    @property
    def out_height(self):
        return self._y.out_size

    @property
    def out_width(self):
        return self._x.out_size

    @property
    def fold(self):
        """``(NF, SF)``: output-channel folds and input-channel folds per tap."""
        return self._out_channels // self._pe, self._channels // self._simd

    @property
    def kept_rows(self):
        """``(top, bottom)``: the input rows any tap can read, ``top = max(qy(0) − Ky + 1, 0)`` and
        ``bottom = min(qy(Ho − 1), H − 1)``; the others are taken and dropped."""
        ay = self._y
        top = max(ay.anchor(0) - ay.span + 1, 0)
        return top, min(ay.anchor(self.out_height - 1), self._height - 1)

    @property
    def buffer_rows(self):
        """``R``: input rows held in the line buffer.

        ``R = min(max(Ky + 1, ny0 − top + bottom − low_end + 2), 2·(bottom − top + 1))`` with
        ``ny0 = min(qy(0), H − 1)`` and ``low_end = clamp(qy(Ho − 1) − Ky + 1, top, bottom)``:
        one row beyond the ``Ky`` rows an output row reads, and enough for the next frame's rows
        up to ``ny0`` to arrive while the last output row of a frame is computed, but never more
        than two frames' kept rows. ``R = min(Ky + 1, 2·H)`` for every configuration with
        ``ph < sh`` and ``ph ≤ kh − 1 + oph`` (e.g. 3×3 stride 2 padding 1: 3 rows; 2×2 stride 2: 2 rows).
        """
        ay, height = self._y, self._height
        top, bottom = self.kept_rows
        low_end = min(max(ay.anchor(self.out_height - 1) - ay.span + 1, top), bottom)
        first_need = min(ay.anchor(0), height - 1)
        return min(max(ay.span + 1, first_need - top + bottom - low_end + 2), 2 * (bottom - top + 1))

    @property
    def max_lead(self):
        """Most whole frames the input can run ahead of the output: 2 when the ring holds more than
        a frame's kept rows (tiny frames), else 1."""
        top, bottom = self.kept_rows
        return 2 if self.buffer_rows > bottom - top + 1 else 1

    @property
    def line_buffer_bits(self):
        """``R·W·channels·b``."""
        return self.buffer_rows * self._width * self._channels * self._elem_shape.width

    @property
    def weight_words(self):
        """Depth of the weight ROM: ``NF·SF·Σ_phases Ty'·Tx'``."""
        nf, sf = self.fold
        return nf * sf * sum(self._y.slots) * sum(self._x.slots)

    @property
    def weight_bits(self):
        return self.weight_words * self._pe * self._simd * self._w_shape.width

    def cycles_per_pixel(self, oy, ox):
        """Folds of output pixel ``(oy, ox)``: ``NF·SF·Ty'(ry)·Tx'(rx)``."""
        nf, sf = self.fold
        return nf * sf * self._y.slots[self._y.phase(oy)] * self._x.slots[self._x.phase(ox)]

    @property
    def cycles_per_frame(self):
        """``NF·SF·(Σ_oy Ty'(ry(oy)))·(Σ_ox Tx'(rx(ox)))``: one fold per cycle, unstalled."""
        nf, sf = self.fold
        return max(nf * sf * self._y.folds() * self._x.folds(), self._height * self._width)

    @property
    def latency(self):
        """Cycles from the issue of a beat's last fold to its ``o_stream.valid``."""
        return 3

    def _raw_need(self, oy, ox):
        qy = min(self._y.anchor(oy), self._height - 1)
        qx = min(self._x.anchor(ox), self._width - 1)
        return qy * self._width + qx + 1

    def inputs_needed(self, oy, ox):
        """Input pixels of the frame that must have been taken before output pixel ``(oy, ox)`` is emitted.

        ``max(n(oy, ox), n(oy − 1, Wo − 1))`` with ``n(oy, ox) = min(qy, H − 1)·W + min(qx, W − 1) + 1``
        (``n`` grows along a row and its row ends grow with ``oy``, so this is the maximum over
        every pixel up to ``(oy, ox)`` in raster order), and ``H·W`` for the frame's last pixel.
        """
        if not (0 <= oy < self.out_height and 0 <= ox < self.out_width):
            raise ValueError(f"(oy, ox) must lie in the {self.out_height}×{self.out_width} output, "
                             f"not {(oy, ox)!r}")
        if (oy, ox) == (self.out_height - 1, self.out_width - 1):
            return self._height * self._width
        need = self._raw_need(oy, ox)
        if oy > 0:
            need = max(need, self._raw_need(oy - 1, self.out_width - 1))
        return need

    def _phase_taps(self, ry, rx):
        """The kernel taps ``(ky, kx)`` of phase ``(ry, rx)`` in fold order (``None``: the dummy tap)."""
        ys = [ry + j * self._stride[0] for j in range(self._y.slots[ry])]
        xs = [rx + j * self._stride[1] for j in range(self._x.slots[rx])]
        return [(ky, kx) if ky < self._kernel[0] and kx < self._kernel[1] else None for ky in ys for kx in xs]

    def _accumulator_range(self):
        """``(lo, hi, bound)``: the exact accumulator range and a bound on every partial sum's magnitude."""
        x_lo, x_hi = range_of(self._elem_shape)
        x_abs = max(-x_lo, x_hi)
        lo = hi = None
        bound = 0
        for o, b in enumerate(self._bias):
            for ry in range(self._stride[0]):
                for rx in range(self._stride[1]):
                    ws = [self._weights[i][o][ky][kx] for tap in self._phase_taps(ry, rx) if tap is not None
                          for ky, kx in [tap] for i in range(self._channels)]
                    least = b + sum(min(w * x_lo, w * x_hi) for w in ws)
                    most = b + sum(max(w * x_lo, w * x_hi) for w in ws)
                    lo = least if lo is None else min(lo, least)
                    hi = most if hi is None else max(hi, most)
                    bound = max(bound, abs(b) + x_abs * sum(abs(w) for w in ws))
        return lo, hi, bound

    def _weight_rom(self):
        """ROM words, phase-major (``ry``, ``rx``), then ``nf``, tap, ``sf``; and each phase's first address."""
        nf_count, sf_count = self.fold
        pe, simd, wb = self._pe, self._simd, self._w_shape.width
        mask = (1 << wb) - 1
        words, bases = [], []
        for ry in range(self._stride[0]):
            for rx in range(self._stride[1]):
                bases.append(len(words))
                taps = self._phase_taps(ry, rx)
                for nf in range(nf_count):
                    for tap in taps:
                        for sf in range(sf_count):
                            word = 0
                            for p in range(pe):
                                for s in range(simd):
                                    if tap is not None:
                                        w = self._weights[sf * simd + s][nf * pe + p][tap[0]][tap[1]]
                                        word |= (w & mask) << ((p * simd + s) * wb)
                            words.append(word)
        return words, bases

    # -- hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        en = Signal()                                 # stall-all enable of the scheduler and datapath
        m.d.comb += en.eq(~self.o_stream.valid | self.o_stream.ready)
        m.submodules.line_buffer = line_buffer = Memory(
            shape=data.ArrayLayout(self._elem_shape, self._channels),
            depth=self.buffer_rows * self._width, init=[])
        position, lead, in_done = self._input_side(m, line_buffer)
        fold = self._scheduler(m, en, line_buffer, position, lead, in_done)
        self._datapath(m, en, fold)
        return m

    def _input_side(self, m, line_buffer):
        """Take input pixels into the ring of rows; returns the input position, ``lead`` and the frame-end pulse."""
        height, width, rows = self._height, self._width, self.buffer_rows
        top, bottom = self.kept_rows
        i = self.i_stream
        in_x = Signal(range(width), name="in_x")
        in_y = Signal(range(height), name="in_y")
        write_row = Signal(range(rows * width), name="write_row")    # slot·W of the current kept row
        # Frames the input has finished beyond the one the scheduler works on.
        lead = Signal(range(self.max_lead + 1), name="lead")
        low = Signal(range(height), name="low")      # set by the scheduler: lowest row it may still read
        keep = (in_y >= top) & (in_y <= bottom)
        kept = bottom - top + 1
        room = in_y + lead * kept < low + rows
        # Rows never read are dropped: those above `top` at once, those below `bottom` unless the
        # input is already max_lead frames ahead (so it never gets further ahead).
        m.d.comb += i.ready.eq(Mux(keep, room, (in_y < top) | (lead < self.max_lead)))
        transfer = i.valid & i.ready
        wr_port = line_buffer.write_port()
        m.d.comb += [
            wr_port.addr.eq(write_row + in_x),
            wr_port.data.eq(i.payload),
            wr_port.en.eq(transfer & keep),
        ]
        in_done = Signal(name="in_done")
        m.d.comb += in_done.eq(transfer & (in_x == width - 1) & (in_y == height - 1))
        with m.If(transfer):
            m.d.sync += in_x.eq(Mux(in_x == width - 1, 0, in_x + 1))
            with m.If(in_x == width - 1):
                m.d.sync += in_y.eq(Mux(in_y == height - 1, 0, in_y + 1))
                with m.If(keep):
                    m.d.sync += write_row.eq(_mod_add(write_row, width, rows * width))
        return (in_y, in_x, low), lead, in_done

    def _scheduler(self, m, en, line_buffer, position, lead, in_done):
        """The output walker and fold counters; issues one fold per cycle. Returns the stage-1 signals."""
        (in_y, in_x, low), (height, width), rows = position, (self._height, self._width), self.buffer_rows
        ay, ax = self._y, self._x
        (sh, sw), (ph, pw) = self._stride, self._padding
        nf_count, sf_count = self.fold
        ho, wo = self.out_height, self.out_width

        def counter(name, limit, init=0):
            return Signal(range(limit), name=name, init=init)

        ox, oy = counter("ox", wo), counter("oy", ho)
        rx, ry = counter("rx", sw, pw % sw), counter("ry", sh, ph % sh)
        qx = counter("qx", ax.anchor(wo - 1) + 1, pw // sw)
        qy = counter("qy", ay.anchor(ho - 1) + 1, ph // sh)
        # slot·W of input row qy in the ring (which counts kept rows across frames, from `top`).
        top, bottom = self.kept_rows
        q_row = counter("q_row", rows * width, ((ay.anchor(0) - top) % rows) * width)
        nf, sf = counter("nf", nf_count), counter("sf", sf_count)
        jy, jx = counter("jy", max(ay.slots)), counter("jx", max(ax.slots))
        fold = counter("fold", max(nf_count * sf_count * ty * tx for ty in ay.slots for tx in ax.slots))

        last_sf = sf == sf_count - 1
        last_jx = jx == _lookup([t - 1 for t in ax.slots], rx)
        last_jy = jy == _lookup([t - 1 for t in ay.slots], ry)
        last_nf = nf == nf_count - 1
        end_pixel = last_sf & last_jx & last_jy & last_nf
        last_ox, last_oy = ox == wo - 1, oy == ho - 1
        out_done = Signal(name="out_done")

        # The raster-last input pixel the taps read (the whole frame for the frame's last pixel).
        need_y = Mux(last_oy & last_ox, height - 1, Mux(qy >= height, height - 1, qy))
        need_x = Mux(last_oy & last_ox, width - 1, Mux(qx >= width, width - 1, qx))
        ready = (lead != 0) | (in_y > need_y) | ((in_y == need_y) & (in_x > need_x))
        issue = Signal(name="issue")
        m.d.comb += [issue.eq(en & ready), out_done.eq(issue & end_pixel & last_ox & last_oy)]
        lowest = qy - (ay.span - 1)
        m.d.comb += low.eq(Mux(lowest < top, top, Mux(lowest > bottom, bottom, lowest)))
        with m.If(in_done & ~out_done):
            m.d.sync += lead.eq(lead + 1)
        with m.Elif(out_done & ~in_done):
            m.d.sync += lead.eq(lead - 1)

        with m.If(issue):
            m.d.sync += [sf.eq(Mux(last_sf, 0, sf + 1)), fold.eq(Mux(end_pixel, 0, fold + 1))]
            with m.If(last_sf):
                m.d.sync += jx.eq(Mux(last_jx, 0, jx + 1))
                with m.If(last_jx):
                    m.d.sync += jy.eq(Mux(last_jy, 0, jy + 1))
                    with m.If(last_jy):
                        m.d.sync += nf.eq(Mux(last_nf, 0, nf + 1))
            with m.If(end_pixel):
                m.d.sync += ox.eq(Mux(last_ox, 0, ox + 1))
                with m.If(last_ox):
                    m.d.sync += [rx.eq(pw % sw), qx.eq(pw // sw), oy.eq(Mux(last_oy, 0, oy + 1))]
                    with m.If(last_oy):
                        # Next frame: qy goes back to its first anchor, H rows further on in the ring.
                        step = (bottom - top + 1) + ay.anchor(0) - ay.anchor(ho - 1)
                        m.d.sync += [ry.eq(ph % sh), qy.eq(ph // sh),
                                     q_row.eq(_mod_add(q_row, (step % rows) * width, rows * width))]
                    with m.Else():
                        m.d.sync += ry.eq(Mux(ry == sh - 1, 0, ry + 1))
                        with m.If(ry == sh - 1):
                            m.d.sync += [qy.eq(qy + 1), q_row.eq(_mod_add(q_row, width, rows * width))]
                with m.Else():
                    m.d.sync += rx.eq(Mux(rx == sw - 1, 0, rx + 1))
                    with m.If(rx == sw - 1):
                        m.d.sync += qx.eq(qx + 1)

        # The tap's input pixel (qy − jy, qx − jx): inside the frame or contributing nothing.
        inside = (jy <= qy) & (qy <= jy + (height - 1)) & (jx <= qx) & (qx <= jx + (width - 1))
        tap_row = Array(_mod_add(q_row, -(j % rows) * width, rows * width) for j in range(max(ay.slots)))[jy]
        rd_port = line_buffer.read_port(transparent_for=())
        m.d.comb += [rd_port.addr.eq(Mux(inside, tap_row + qx - jx, 0)), rd_port.en.eq(en)]

        words, bases = self._weight_rom()
        m.submodules.weights = rom = Memory(shape=unsigned(self._pe * self._simd * self._w_shape.width),
                                            depth=len(words), init=words)
        w_port = rom.read_port()
        base = _lookup(bases, ry * sw + rx) if len(bases) > 1 else Const(0)
        m.d.comb += [w_port.addr.eq(base + fold), w_port.en.eq(en)]

        # Stage 1: the registered fold (the memories register the pixel and the weights).
        v1, first1, last1, inside1 = Signal(), Signal(), Signal(), Signal()
        nf1, sf1 = Signal.like(nf), Signal.like(sf)
        with m.If(en):
            m.d.sync += [v1.eq(issue), first1.eq((jy == 0) & (jx == 0) & (sf == 0)),
                         last1.eq(last_sf & last_jx & last_jy), inside1.eq(inside), nf1.eq(nf), sf1.eq(sf)]
        return v1, first1, last1, inside1, nf1, sf1, rd_port.data, w_port.data

    def _datapath(self, m, en, fold):
        """Products, adder trees and the PE accumulators (the output register)."""
        v1, first1, last1, inside1, nf1, sf1, pixel, weights = fold
        o = self.o_stream
        nf_count, _ = self.fold
        pe, simd = self._pe, self._simd
        xw, wb, bb = self._elem_shape.width, self._w_shape.width, self._b_shape.width
        x1 = Mux(inside1, pixel.as_value().word_select(sf1, xw * simd), 0)

        def x_elem(s):
            value = x1.word_select(s, xw)
            return value.as_signed() if self._elem_shape.signed else value

        sums = [_balanced_sum([x_elem(s) * weights.word_select(p * simd + s, wb).as_signed()
                               for s in range(simd)]) for p in range(pe)]

        # Stage 2: one adder-tree sum per PE; the bias of the fold's channels.
        v2, first2, last2 = Signal(), Signal(), Signal()
        sum2 = [Signal(s.shape(), name=f"sum2_{p}") for p, s in enumerate(sums)]
        with m.If(en):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [r.eq(s) for r, s in zip(sum2, sums)]
        if not any(self._bias):
            biases = [Const(0, 1)] * pe
        elif nf_count == 1:
            biases = [Const(b, self._b_shape) for b in self._bias]
        else:
            init = [sum((self._bias[nf * pe + p] & ((1 << bb) - 1)) << (p * bb) for p in range(pe))
                    for nf in range(nf_count)]
            m.submodules.bias = bias_rom = Memory(shape=unsigned(pe * bb), depth=nf_count, init=init)
            b_port = bias_rom.read_port()
            m.d.comb += [b_port.addr.eq(nf1), b_port.en.eq(en)]
            biases = [b_port.data.word_select(p, bb).as_signed() for p in range(pe)]

        # Stage 3: the accumulators, which are also the output register.
        acc = [Signal(self._sum_shape, name=f"acc_{p}") for p in range(pe)]
        with m.If(en):
            m.d.sync += o.valid.eq(v2 & last2)
            with m.If(v2):
                m.d.sync += [a.eq(Mux(first2, b, a) + s) for a, b, s in zip(acc, biases, sum2)]
        m.d.comb += [o.payload[p].eq(a) for p, a in enumerate(acc)]

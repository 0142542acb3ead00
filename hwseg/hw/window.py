"""Sliding-window generator: a pixel stream in, one flattened convolution window per beat out.

See :class:`SlidingWindow`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_elem_value, check_int, check_pair, check_shape

__all__ = ["SlidingWindow", "WindowGeometry", "Counter"]


# A row delay shorter than this is built from registers instead of a Memory: a memory of depth 1
# would need a transparent read port, and such a tiny memory is better held in flip-flops anyway.
_MIN_MEMORY_DEPTH = 2


class Counter:
    """A wrapping counter ``0 .. modulus-1`` that advances when ``m.d.sync`` logic says so."""

    def __init__(self, modulus, name):
        self.modulus = modulus
        self.value = Signal(range(modulus), name=name)
        self.last = self.value == modulus - 1

    def advance(self, m):
        m.d.sync += self.value.eq(Mux(self.last, 0, self.value + 1))

    def reset(self, m):
        m.d.sync += self.value.eq(0)


class WindowGeometry:
    """A sliding window's validated parameters and the frame sizes they give: shared by
    :class:`SlidingWindow` and :class:`~hwseg.hw.folded_window.FoldedWindow`."""

    def _check_geometry(self, *, elem_shape, channels, height, width, kernel, stride, padding, dilation,
                        pad_value):
        self._elem_shape = check_shape("elem_shape", elem_shape)
        self._channels = check_int("channels", channels)
        self._height = check_int("height", height)
        self._width = check_int("width", width)
        self._kernel = check_pair("kernel", kernel)
        self._stride = check_pair("stride", stride)
        self._padding = check_pair("padding", padding, minimum=0)
        self._dilation = check_pair("dilation", dilation)
        self._pad_value = check_elem_value("pad_value", pad_value, elem_shape)

        (kh, kw), (dh, dw), (ph, pw) = self._kernel, self._dilation, self._padding
        span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if span_h > self.padded_height or span_w > self.padded_width:
            raise ValueError(
                f"kernel {self._kernel!r} with dilation {self._dilation!r} spans {span_h}×{span_w} pixels, "
                f"more than the padded frame {self.padded_height}×{self.padded_width} "
                f"(height {height} + 2·{ph}, width {width} + 2·{pw}): no window fits")

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    kernel = property(lambda self: self._kernel)
    stride = property(lambda self: self._stride)
    padding = property(lambda self: self._padding)
    dilation = property(lambda self: self._dilation)
    pad_value = property(lambda self: self._pad_value)

    @property
    def padded_height(self):
        return self._height + 2 * self._padding[0]

    @property
    def padded_width(self):
        return self._width + 2 * self._padding[1]

    @property
    def out_height(self):
        return (self.padded_height - self._dilation[0] * (self._kernel[0] - 1) - 1) // self._stride[0] + 1

    @property
    def out_width(self):
        return (self.padded_width - self._dilation[1] * (self._kernel[1] - 1) - 1) // self._stride[1] + 1


class SlidingWindow(WindowGeometry, wiring.Component):
    """All convolution windows of a frame, one flattened window per beat.

    Input: a pixel stream, one whole pixel (``channels`` lanes of ``elem_shape``) per beat, frames
    of ``height`` × ``width`` in raster order, one after another without reset. Output: for every
    window ``(oy, ox)`` in raster order one beat of ``kh·kw·channels`` elements; element
    ``(ky·kw + kx)·channels + c`` is input pixel ``(oy·sh − ph + ky·dh, ox·sw − pw + kx·dw)``,
    channel ``c``, or ``pad_value`` outside the frame. ``out_height = (H + 2ph − dh(kh−1) − 1)//sh + 1``,
    ``out_width`` likewise.

    Architecture: a walker visits the *padded* frame (``Hp × Wp = (H + 2ph) × (W + 2pw)``) in
    raster order, one position per cycle unless stalled. An in-frame position consumes one input
    beat, a padding position injects ``pad_value``; either way the pixel is *pushed* into a delay
    line of ``kh`` shift-register rows of ``L = (kw−1)·dw + 1`` pixels (taps every ``dw``), each row
    feeding the next through a delay of ``D = dh·Wp − L`` pixels, so that row ``i`` of the delay line
    lags the newest row by exactly ``i·dh`` padded rows. The ``kh−1`` row delays share one write
    pointer and are held in one :class:`~amaranth.lib.memory.Memory` of ``D`` words of
    ``(kh−1)·channels`` elements (one write port, one synchronous non-transparent read port reading
    the next write address ahead); when ``D < 2`` they are registers instead. A push that completes
    an output window sets ``o_stream.valid``; the payload is wired from the tap registers, which
    only move on a push, and a push needs ``not o_stream.valid or o_stream.ready`` (a window may
    leave in the very cycle the next push happens).

    * Throughput: one padded position per cycle; :attr:`cycles_per_frame` ``= Hp·Wp`` when input
      is always valid and output always ready.
    * Latency: the window is valid 1 cycle after the push (input transfer) of its last pixel.
    * Memory: :attr:`line_buffer_bits` ``= (kh−1)·D·channels·b`` bits in Memory (about
      ``(kh−1)·dh`` padded rows, never more), plus ``kh·L·channels·b`` flip-flops of taps.
    * Backpressure: ``i_stream.ready`` depends on ``o_stream.ready`` combinationally;
      ``o_stream.valid`` is a register and never depends on ``ready``.
    """

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride=(1, 1), padding=(0, 0),
                 dilation=(1, 1), pad_value=0):
        self._check_geometry(elem_shape=elem_shape, channels=channels, height=height, width=width, kernel=kernel,
                             stride=stride, padding=padding, dilation=dilation, pad_value=pad_value)
        (kh, kw) = self._kernel
        self._pixel_layout = data.ArrayLayout(elem_shape, channels)
        super().__init__({
            "i_stream": In(stream.Signature(self._pixel_layout)),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, kh * kw * channels))),
        })

    # -- read-only figures (used by the backend and the estimates) ---------------------------------

    @property
    def pixel_bits(self):
        return self._channels * self._elem_shape.width

    @property
    def row_length(self):
        """``L``: pixels in each shift-register row of the delay line."""
        return self._dilation[1] * (self._kernel[1] - 1) + 1

    @property
    def row_delay(self):
        """``D = dh·Wp − L``: pixels held between the end of one shift row and the start of the next."""
        return self._dilation[0] * self.padded_width - self.row_length

    @property
    def line_buffer_bits(self):
        """Bits held in Memory: ``(kh−1)·D·channels·b``, or 0 when the delays are registers."""
        if self._kernel[0] == 1 or self.row_delay < _MIN_MEMORY_DEPTH:
            return 0
        return (self._kernel[0] - 1) * self.row_delay * self.pixel_bits

    @property
    def tap_delay_bits(self):
        """Bits held in the tap-gap Memory: with ``dw − 1 ≥ 2`` pixels between the taps of a row, the
        ``kh·(kw−1)`` gaps are one Memory of ``dw − 1`` words (0 when they are registers)."""
        (kh, kw), dw = self._kernel, self._dilation[1]
        if kw == 1 or dw - 1 < _MIN_MEMORY_DEPTH:
            return 0
        return kh * (kw - 1) * (dw - 1) * self.pixel_bits

    @property
    def register_bits(self):
        """Flip-flops holding pixels: the tap rows (only the taps when the gaps between them are in
        Memory), plus the row delays when they are registers."""
        kh, kw = self._kernel
        taps = kw if self.tap_delay_bits else self.row_length
        bits = kh * taps * self.pixel_bits
        if self._kernel[0] > 1 and self.row_delay < _MIN_MEMORY_DEPTH:
            bits += (self._kernel[0] - 1) * self.row_delay * self.pixel_bits
        return bits

    @property
    def cycles_per_frame(self):
        """``Hp·Wp``: one padded position per cycle, unstalled."""
        return self.padded_height * self.padded_width

    @property
    def latency(self):
        """Cycles from the transfer of a window's last input pixel to its ``o_stream.valid``."""
        return 1

    # -- hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        (kh, kw), (sh, sw) = self._kernel, self._stride
        (ph, pw), (dh, dw) = self._padding, self._dilation
        i_stream, o_stream = self.i_stream, self.o_stream

        # Walker over the padded frame, with the row/column phases modulo the stride.
        px = Counter(self.padded_width, "px")
        py = Counter(self.padded_height, "py")
        cx = Counter(sw, "cx")
        cy = Counter(sh, "cy")
        in_frame = ((py.value >= ph) & (py.value < ph + self._height)
                    & (px.value >= pw) & (px.value < pw + self._width))
        # The window whose bottom-right tap is (py, px) is an output; its index is < out_* by
        # construction (the last matching column/row is the last that fits in the padded frame).
        x0, y0 = dw * (kw - 1), dh * (kh - 1)
        is_output = ((px.value >= x0) & (cx.value == x0 % sw)
                     & (py.value >= y0) & (cy.value == y0 % sh))

        can_push = ~o_stream.valid | o_stream.ready
        push = Signal()
        m.d.comb += [
            i_stream.ready.eq(can_push & in_frame),
            push.eq(can_push & (i_stream.valid | ~in_frame)),
        ]
        pad = self._pixel_layout.const([self._pad_value] * self._channels).as_value()
        pixel = Signal(self._pixel_layout)
        m.d.comb += pixel.eq(Mux(in_frame, i_stream.payload, pad))

        with m.If(push):
            px.advance(m)
            cx.advance(m)
            with m.If(px.last):
                cx.reset(m)
                py.advance(m)
                cy.advance(m)
                with m.If(py.last):
                    cy.reset(m)
            m.d.sync += o_stream.valid.eq(is_output)
        with m.Elif(o_stream.ready):
            m.d.sync += o_stream.valid.eq(0)

        if self.tap_delay_bits:
            taps = self._tap_rows_with_memory(m, pixel, push)
        else:
            # Delay line: after the push of padded pixel (py, px), rows[i][j] holds the pixel j raster
            # positions before (py − i·dh, px); within a window's span that is (py − i·dh, px − j).
            rows = [[Signal(self._pixel_layout, name=f"tap_{i}_{j}") for j in range(self.row_length)]
                    for i in range(kh)]
            row_inputs = [pixel] + self._row_delays(m, [row[-1] for row in rows[:-1]], push)
            with m.If(push):
                for row, row_input in zip(rows, row_inputs):
                    m.d.sync += row[0].eq(row_input)
                    m.d.sync += [row[j].eq(row[j - 1]) for j in range(1, self.row_length)]
            taps = [[row[k * dw] for k in range(kw)] for row in rows]

        # Window element (ky, kx) is tap k = kw−1−kx of row kh−1−ky (pixel (kw−1−kx)·dw of the row).
        m.d.comb += o_stream.payload.eq(Cat(
            taps[kh - 1 - ky][kw - 1 - kx].as_value() for ky in range(kh) for kx in range(kw)))
        return m

    def _tap_rows_with_memory(self, m, pixel, push):
        """The delay line with only the taps in registers: row ``i``'s tap ``k`` (pixel ``k·dw`` of the
        row) takes tap ``k − 1`` delayed by ``dw − 1`` pushes from one :class:`Memory` of ``dw − 1`` words
        of ``kh·(kw−1)`` pixels (all gaps move together), instead of ``dw − 1`` registers per gap; the
        rows follow one another through the row delays as in the register delay line."""
        (kh, kw), dw = self._kernel, self._dilation[1]
        taps = [[Signal(self._pixel_layout, name=f"tap_{i}_{k * dw}") for k in range(kw)] for i in range(kh)]
        gap_outputs = self._memory_delays(m, [row[k] for row in taps for k in range(kw - 1)], push,
                                          depth=dw - 1, memory_name="tap_gaps", pointer_name="gap_pointer")
        row_inputs = [pixel] + self._row_delays(m, [row[-1] for row in taps[:-1]], push)
        with m.If(push):
            for i, (row, row_input) in enumerate(zip(taps, row_inputs)):
                m.d.sync += row[0].eq(row_input)
                m.d.sync += [row[k].eq(gap_outputs[i * (kw - 1) + k - 1]) for k in range(1, kw)]
        return taps

    def _row_delays(self, m, outputs, push):
        """Delay each of ``outputs`` (the last pixel of each row but the newest) by ``D`` pushes.

        Returns the delayed pixels, the inputs of rows 1 .. kh−1.
        """
        if not outputs:
            return []
        depth = self.row_delay
        if depth == 0:
            return outputs
        if depth < _MIN_MEMORY_DEPTH:
            delayed = []
            for k, out in enumerate(outputs):
                chain = [Signal(self._pixel_layout, name=f"delay_{k}_{d}") for d in range(depth)]
                with m.If(push):
                    m.d.sync += chain[0].eq(out)
                    m.d.sync += [chain[d].eq(chain[d - 1]) for d in range(1, depth)]
                delayed.append(chain[-1])
            return delayed

        # One memory word holds the pixel of every row delay at the same delay position.
        return self._memory_delays(m, outputs, push, depth=depth, memory_name="line_buffer",
                                   pointer_name="line_pointer")

    def _memory_delays(self, m, outputs, push, *, depth, memory_name, pointer_name):
        """Each of ``outputs`` delayed by ``depth`` (≥ 2) pushes, through one :class:`Memory` of ``depth``
        words holding a pixel of each."""
        word = data.ArrayLayout(self._pixel_layout, len(outputs))
        memory = Memory(shape=word, depth=depth, init=[])
        m.submodules[memory_name] = memory
        wr_port = memory.write_port()
        rd_port = memory.read_port(transparent_for=())
        pointer = Counter(depth, pointer_name)
        with m.If(push):
            pointer.advance(m)
        next_pointer = Mux(push, Mux(pointer.last, 0, pointer.value + 1), pointer.value)
        m.d.comb += [
            wr_port.addr.eq(pointer.value),
            wr_port.en.eq(push),
            wr_port.data.eq(Cat(out.as_value() for out in outputs)),
            # Reading the next write address one cycle ahead gives, at the next push, the word
            # written D pushes earlier (read before write; the addresses differ since D >= 2).
            rd_port.addr.eq(next_pointer),
        ]
        return [rd_port.data[k] for k in range(len(outputs))]

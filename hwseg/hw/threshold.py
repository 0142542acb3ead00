"""Multi-threshold activation: an accumulator stream to low-bit activations by comparisons only."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int, is_int, popcount, range_of, shape_for

__all__ = ["MultiThreshold"]

METHODS = ("auto", "parallel", "search")

#: ``method="auto"`` compares in parallel up to this many thresholds per channel, searches above.
PARALLEL_MAX = 7


class MultiThreshold(wiring.Component):
    """Per-channel multi-threshold activation of a pixel stream of accumulators.

    Computes, for the element ``acc`` of channel ``c`` (design.md ``Threshold``)::

        y = Σ_j [acc ≥ thresholds[c][j]]        (0 … n, n = len(thresholds[c]) ≤ 2^out_bits − 1)

    with every row non-decreasing. Beats cycle through the channel groups
    ``g = 0 … channels/lanes − 1`` (lane ``i`` of group ``g`` is channel ``g·lanes + i``) and wrap,
    so pixels and frames follow back to back (as :class:`MulShiftRequant`).

    Thresholds may lie outside the range ``[lo, hi]`` of ``acc_shape``: they are clamped to
    ``[lo, hi + 1]`` (one below ``lo`` is always passed like ``lo``, one above ``hi`` never, like
    ``hi + 1``), which keeps every comparison exact and the rows sorted. The tables hold them in
    :attr:`threshold_shape`, the narrowest shape of the stored values (at most ``acc_shape`` plus
    one bit, for ``hi + 1``); comparisons extend both sides to a common shape, so stay exact.

    Two implementations (``method``), both 1 beat/cycle, one enable
    ``~o_stream.valid | o_stream.ready`` stalling every stage, ``i_stream.ready`` = that enable:

    * ``"parallel"``: every lane compares ``acc`` with all ``n`` thresholds of its channel at once
      (stage 1 registers the ``n`` comparison bits), stage 2 sums them by a balanced adder tree
      into the output register. Latency 2.
    * ``"search"``: a pipelined binary search over the sorted row padded to ``2^L − 1`` entries
      (``L = bit_length(n)``, padding "never" thresholds): stage ``s`` decides output bit
      ``L − 1 − s`` with a single comparator per lane against the threshold at index
      ``(y_prefix·2 + 1)·2^(L−1−s) − 1``, read from a per-stage table of ``2^s`` entries per
      channel (the ``n`` thresholds are spread over the stages, none is stored twice). Latency
      ``L``.

    Tables: with one channel group the thresholds are constants (constant comparators);
    otherwise they are :class:`~amaranth.lib.memory.Memory` ROMs read asynchronously by the
    group (and search prefix), which synthesis maps to LUTs or distributed RAM.

    ``method="auto"`` picks ``"parallel"`` for ``n ≤ 7`` and ``"search"`` above. Cost per lane
    for ``acc`` of width ``W``: parallel needs ``n`` comparators, an ``n``-bit popcount and ``n``
    flip-flops; search needs ``L = ⌈log2(n + 1)⌉`` comparators, but also ``L − 1`` pipeline
    copies of ``acc`` (``≈ (L − 1)·W`` flip-flops) and a table multiplexer per stage, so it pays
    only once ``n`` comparators clearly outweigh ``L`` comparators plus that overhead: for the
    BFCN case ``n = 3`` parallel is 3 comparators against 2 comparators, a ``W``-bit register and
    a multiplexer, at ``n = 7`` the two are about even, from ``n = 15`` (4-bit outputs) the
    linear cost of parallel loses (15 against 4 comparators; 255 against 8 for 8-bit outputs).
    Measured (Yosys ``synth_xilinx -family xc7 -dff``, ``acc`` signed(16), 4 lanes, 4 channels,
    LUT/FF parallel vs search): n = 3: 87/22 vs 76/78; n = 7: 190/42 vs 117/155; n = 15: 373/78 vs
    197/236; n = 255: 3078/1052 vs 799/600. Counting a flip-flop as half a LUT (7-series slices
    have two per LUT) that is 98 vs 115, 211 vs 195, 412 vs 315: the crossover lies at n ≈ 7.
    """

    def __init__(self, *, acc_shape, channels, lanes, thresholds, out_bits, method="auto"):
        acc = cast_shape("acc_shape", acc_shape)
        check_int("channels", channels)
        check_int("lanes", lanes)
        if channels % lanes:
            raise ValueError(f"lanes must divide channels={channels}, not {lanes!r}")
        check_int("out_bits", out_bits)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
        if not isinstance(thresholds, (list, tuple)) or len(thresholds) != channels:
            raise ValueError(f"thresholds must be a list of {channels} rows (one per channel), not {thresholds!r}")
        rows = []
        for c, row in enumerate(thresholds):
            if not isinstance(row, (list, tuple)) or not row:
                raise ValueError(f"thresholds[{c}] must be a non-empty list of ints, not {row!r}")
            for j, t in enumerate(row):
                if not is_int(t):
                    raise TypeError(f"thresholds[{c}][{j}] must be an int, not {t!r}")
            for j in range(1, len(row)):
                if row[j] < row[j - 1]:
                    raise ValueError(f"thresholds[{c}] must be ascending (non-decreasing), not "
                                     f"thresholds[{c}][{j}]={row[j]!r} after thresholds[{c}][{j - 1}]={row[j - 1]!r}")
            rows.append(tuple(row))
        count = len(rows[0])
        for c, row in enumerate(rows):
            if len(row) != count:
                raise ValueError(f"every channel needs the same number of thresholds ({count}, as channel 0), "
                                 f"not {len(row)} in thresholds[{c}]")
        if count > (1 << out_bits) - 1:
            raise ValueError(f"out_bits={out_bits} counts at most {(1 << out_bits) - 1} thresholds per channel, "
                             f"not {count}")

        lo, hi = range_of(acc)
        self.acc_shape = acc_shape
        self.channels = channels
        self.lanes = lanes
        self.out_bits = out_bits
        self.thresholds = tuple(rows)
        self.count = count
        self.method = ("parallel" if count <= PARALLEL_MAX else "search") if method == "auto" else method
        self._acc = acc
        self._never = hi + 1
        self.clamped_thresholds = tuple(tuple(min(max(t, lo), hi + 1) for t in row) for row in rows)
        stored = [t for row in self.clamped_thresholds for t in row]
        if self.method == "search" and count < (1 << count.bit_length()) - 1:
            stored.append(self._never)              # the search pads its rows with "never"
        self.threshold_shape = shape_for(min(stored), max(stored))
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(acc_shape, lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(unsigned(out_bits), lanes))),
        })

    @property
    def groups(self):
        """Beats per pixel (``channels / lanes``)."""
        return self.channels // self.lanes

    @property
    def stages(self):
        """Binary-search stages ``L = bit_length(n)`` (``"search"``), or 2 (``"parallel"``)."""
        return self.count.bit_length() if self.method == "search" else 2

    @property
    def latency(self):
        """Cycles from an input transfer to its output beat being valid."""
        return self.stages

    def _rows(self, lane, pad=0):
        """Per group, the clamped row of the lane's channel, padded with ``pad`` "never" thresholds."""
        return [self.clamped_thresholds[g * self.lanes + lane] + (self._never,) * pad for g in range(self.groups)]

    def _lookup(self, m, name, table, width, addr):
        """``table[addr]`` (words of ``width`` bits): a constant when the table has one word, else an async ROM."""
        if len(table) == 1:
            return Const(table[0], width)
        m.submodules[name] = mem = Memory(shape=unsigned(width), depth=len(table), init=table)
        port = mem.read_port(domain="comb")
        m.d.comb += port.addr.eq(addr)
        return port.data

    def _threshold(self, word, j=0):
        """Threshold ``j`` of a packed word, in :attr:`threshold_shape`."""
        tw = self.threshold_shape.width
        value = word[j * tw:(j + 1) * tw]
        return value.as_signed() if self.threshold_shape.signed else value

    def _pack(self, values):
        tw = self.threshold_shape.width
        return sum((v & ((1 << tw) - 1)) << (j * tw) for j, v in enumerate(values))

    def elaborate(self, platform):
        m = Module()
        i = self.i_stream
        en = Signal()
        m.d.comb += [en.eq(~self.o_stream.valid | self.o_stream.ready), i.ready.eq(en)]
        group = Const(0, 0)                          # no zero-width signals in the Verilog
        if self.groups > 1:
            group = Signal(range(self.groups))
            with m.If(i.valid & i.ready):
                m.d.sync += group.eq(Mux(group == self.groups - 1, 0, group + 1))
        (self._parallel if self.method == "parallel" else self._search)(m, en, group)
        return m

    def _parallel(self, m, en, group):
        """Stage 1: the ``n`` comparison bits per lane; stage 2: their sum, the output register."""
        i, o, lanes, n = self.i_stream, self.o_stream, self.lanes, self.count
        tw = self.threshold_shape.width
        words = self._lookup(m, "thresholds", [sum(self._pack(self._rows(lane)[g]) << (lane * n * tw)
                                                   for lane in range(lanes)) for g in range(self.groups)],
                             lanes * n * tw, group)
        bits = [Signal(n, name=f"bits_{lane}") for lane in range(lanes)]
        valid1 = Signal()
        with m.If(en):
            m.d.sync += [valid1.eq(i.valid), o.valid.eq(valid1)]
            for lane, b in enumerate(bits):
                word = words[lane * n * tw:(lane + 1) * n * tw]
                m.d.sync += b.eq(Cat(*(i.payload[lane] >= self._threshold(word, j) for j in range(n))))
                m.d.sync += o.payload[lane].eq(popcount(b, n))

    def _search(self, m, en, group):
        """Stage ``s`` decides bit ``k = L − 1 − s`` of ``y`` from the prefix ``q`` (the ``s`` bits above it)."""
        i, o, lanes, stages = self.i_stream, self.o_stream, self.lanes, self.stages
        tw = self.threshold_shape.width
        padded = [self._rows(lane, (1 << stages) - 1 - self.count) for lane in range(lanes)]
        acc_in, q_in = [i.payload[lane] for lane in range(lanes)], [Const(0, 0)] * lanes
        g_in, valid_in = group, i.valid
        for s in range(stages):
            k, last = stages - 1 - s, s == stages - 1
            acc_out = [Signal(self._acc, name=f"acc{s}_{lane}") for lane in range(lanes)] if not last else None
            q_out = [o.payload[lane] if last else Signal(s + 1, name=f"q{s}_{lane}") for lane in range(lanes)]
            g_out = Signal.like(group, name=f"group{s}") if self.groups > 1 and not last else group
            valid_out = o.valid if last else Signal(name=f"valid{s}")
            with m.If(en):
                m.d.sync += valid_out.eq(valid_in)
                if g_out is not group:
                    m.d.sync += g_out.eq(g_in)
                for lane in range(lanes):
                    # Entry (g, q): threshold index (2q + 1)·2^k − 1 of group g's row; address g·2^s + q.
                    table = [self._pack([row[(q << (k + 1)) + (1 << k) - 1]])
                             for row in padded[lane] for q in range(1 << s)]
                    t = self._threshold(self._lookup(m, f"t{s}_{lane}", table, tw, Cat(q_in[lane], g_in)))
                    m.d.sync += q_out[lane].eq(Cat(acc_in[lane] >= t, q_in[lane]))
                    if not last:
                        m.d.sync += acc_out[lane].eq(acc_in[lane])
            acc_in, q_in, g_in, valid_in = acc_out, q_out, g_out, valid_out

"""The bit-convolution unit: a multiplier-free matrix-vector array by bit planes and popcounts."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int, is_int, popcount, range_of, shape_for

__all__ = ["BitMacArray"]


def _divisors(n):
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _tree(terms):
    """Sum of ``terms`` by a balanced binary adder tree (Amaranth widens each sum: exact)."""
    while len(terms) > 1:
        terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j]
                 for j in range(0, len(terms), 2)]
    return terms[0]


def _signed_sum(pos, neg):
    """``Σ pos − Σ neg`` (lists of values; ``neg`` may be empty), each side a balanced tree."""
    if not neg:
        return _tree(pos)
    if not pos:
        return -_tree(neg)
    return _tree(pos) - _tree(neg)


class BitMacArray(wiring.Component):
    """Multiplier-free matrix-vector unit on bit planes, folded by PE and SIMD like :class:`MacArray`.

    Computes, for every input vector ``x`` (one beat of ``in_count`` elements, e.g. a flattened
    window) and every output channel ``c``::

        acc[c] = Σ_k weights[c][k] · x[k] + bias[c]

    exactly, sent as ``NF = C_out / pe`` beats of ``pe`` lanes (beat ``n`` carries channels
    ``n·pe … n·pe + pe − 1``) of ``acc_shape``, which the constructor checks holds the exact
    range of ``acc`` (from the weights, bias and input range), so nothing is lost.

    Operand types (design.md §2):

    * activations ``x``: ``UInt(in_bits)`` (default), ``Int(in_bits)`` with ``in_signed=True``
      (two's complement, the MSB plane counts ``−2^(in_bits−1)``), or ``Bipolar`` with
      ``in_bipolar=True`` (``in_bits = 1``: stored bit 1 is +1, 0 is −1; the payload carries
      the stored bits);
    * weights: ``weight_bits = 1`` means ``Bipolar`` (``weights`` hold −1 or +1, the ROM one bit
      ``b = (w == +1)``); ``weight_bits = B ≥ 2`` means two's-complement ``Int(B)`` (the MSB
      plane counts ``−2^(B−1)``).

    No multiplier anywhere: with activation bit planes ``x_j`` (``simd`` bits of the current
    slice) and plane weights ``a_j = ±2^j``, each fold adds per PE

    * Bipolar weights: ``Σ_j a_j · (2·popcount(x_j AND b) − popcount(x_j))``; the weight-independent
      ``Σ_j a_j · popcount(x_j)`` is computed once per fold and shared by all PE lanes;
    * Bipolar weights and activations: ``2·popcount(XNOR(x, b))``, the ``− simd`` of each fold
      (``Σ w·x = 2·popcount(XNOR) − simd``) being folded into the accumulator's start value
      ``bias[c] − in_count``;
    * ``Int(B)`` weights with planes ``w_i`` of weight ``t_i = ±2^i``:
      ``Σ_i Σ_j t_i·a_j · popcount(w_i AND x_j)`` (the general k-bit × k-bit case by planes);
      with Bipolar activations (``x = 2·x_b − 1``) ``Σ_i 2·t_i · popcount(w_i AND x_b)`` and the
      start value ``bias[c] − Σ_k weights[c][k]``.

    Popcounts are balanced adder trees of exact width; plane weights are shifts (and one
    subtraction for the negative planes), never multiplications, so synthesis uses no DSP.

    Architecture, handshake and timing are those of :class:`MacArray` (FINN MVAU style), so the
    backend can use either: the input vector is taken into a register as soon as the previous
    vector's last fold is issued; each cycle one fold ``(nf, sf)`` (``SF = in_count / simd``;
    ``nf`` outer, ``sf`` inner) is issued: the ``simd``-element slice and the fold's weight bits
    (``pe × weight_bits × simd``, a synchronous :class:`~amaranth.lib.memory.Memory` ROM of
    ``NF·SF`` words) are registered (stage 1); the per-PE fold sums, built from the popcounts,
    are registered (stage 2); the PE accumulators start from the start values (a ROM of ``NF``
    words, constants when ``NF = 1``) on ``sf = 0`` and add each fold sum; after
    ``sf = SF − 1`` they are the output beat (stage 3). Every register is exactly as wide as the
    range the weights allow: the per-lane fold sums and the per-lane partial accumulators (over
    the lane's channels and every prefix of folds), so only :attr:`acc_range` reaches the
    output. One enable, ``~o_stream.valid | o_stream.ready``, stalls every stage and ROM port.

    Throughput: one fold per cycle, i.e. one vector per ``NF·SF`` cycles back to back
    (:attr:`cycles_per_vector`). Latency: :attr:`latency` ``= SF + 3`` cycles from an input
    transfer to its first output beat; each further beat follows ``SF`` cycles later.
    ``i_stream.ready`` depends on state and ``o_stream.ready`` only, never on ``i_stream.valid``.

    With ``serial=True`` nothing is held: ``i_stream`` carries one fold's ``simd`` elements per beat, the
    ``NF·SF`` folds of every vector in issue order (``nf`` outer, ``sf`` inner), as a
    :class:`~hwseg.hw.folded_window.FoldedWindow` serves them; each beat is issued as it transfers
    (``i_stream.ready`` is the stage enable) and registered as the fold's slice. :attr:`latency` is then 3
    cycles from a vector's ``SF``-th beat to its first output beat, as on a serial :class:`MacArray`.

    Naming: as on :class:`MacArray`, the attribute :attr:`weight_bits` is the size of the weight
    ROM in bits (the resource figure); the constructor's ``weight_bits`` (bits per weight) is kept
    as :attr:`weight_width`.
    """

    def __init__(self, *, in_bits, in_signed=False, in_bipolar=False, in_count, weights, weight_bits=1,
                 bias=None, pe, simd, acc_shape, serial=False):
        check_int("in_bits", in_bits)
        if not isinstance(serial, bool):
            raise TypeError(f"serial must be a bool, not {serial!r}")
        for name, flag in (("in_signed", in_signed), ("in_bipolar", in_bipolar)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {flag!r}")
        if in_bipolar and in_bits != 1:
            raise ValueError(f"in_bipolar activations are one bit: in_bits must be 1, not {in_bits!r}")
        if in_bipolar and in_signed:
            raise ValueError("in_bipolar and in_signed exclude each other (Bipolar is ±1, Int(1) is −1 or 0), "
                             f"not in_signed={in_signed!r} with in_bipolar={in_bipolar!r}")
        check_int("in_count", in_count)
        check_int("weight_bits", weight_bits)
        if not isinstance(weights, (list, tuple)) or not weights:
            raise ValueError(f"weights must be a non-empty list of rows, not {weights!r}")
        weights = [list(row) if isinstance(row, (list, tuple)) else row for row in weights]
        if weight_bits == 1:
            w_lo, w_hi, w_kind = -1, 1, "-1 or +1 (Bipolar, weight_bits=1)"
        else:
            w_lo, w_hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
            w_kind = f"an int in [{w_lo}, {w_hi}] (weight_bits={weight_bits})"
        for c, row in enumerate(weights):
            if not isinstance(row, list) or len(row) != in_count:
                raise ValueError(f"weights[{c}] must be a list of in_count={in_count} ints, not {row!r}")
            for k, w in enumerate(row):
                if not is_int(w):
                    raise TypeError(f"weights[{c}][{k}] must be an int, not {w!r}")
                if not w_lo <= w <= w_hi or (weight_bits == 1 and w == 0):
                    raise ValueError(f"weights[{c}][{k}] must be {w_kind}, not {w!r}")
        out_channels = len(weights)
        if bias is None:
            bias = [0] * out_channels
        if (not isinstance(bias, (list, tuple)) or len(bias) != out_channels
                or not all(is_int(b) for b in bias)):
            raise ValueError(f"bias must be None or a list of {out_channels} ints (one per output "
                             f"channel), not {bias!r}")
        check_int("pe", pe)
        if out_channels % pe:
            raise ValueError(f"pe must divide the {out_channels} output channels (one of "
                             f"{_divisors(out_channels)}), not {pe!r}")
        check_int("simd", simd)
        if in_count % simd:
            raise ValueError(f"simd must divide in_count={in_count} (one of {_divisors(in_count)}), "
                             f"not {simd!r}")
        acc = cast_shape("acc_shape", acc_shape)

        self.in_bits = in_bits
        self.in_signed = in_signed
        self.in_bipolar = in_bipolar
        self.in_shape = signed(in_bits) if in_signed else unsigned(in_bits)
        self.in_count = in_count
        self.weight_width = weight_bits
        self.out_channels = out_channels
        self.weights = tuple(tuple(row) for row in weights)
        self.bias = tuple(bias)
        self.pe = pe
        self.simd = simd
        self.acc_shape = acc_shape
        self.serial = serial

        # Each fold adds Σ_(k in slice) e[c][k] to an accumulator that starts at start[c];
        # e's range per element gives every register's exact range.
        if in_bipolar:
            x_lo, x_hi = -1, 1
        else:
            x_lo, x_hi = range_of(self.in_shape)
        if in_bipolar and weight_bits == 1:         # XNOR: e = w·x + 1 ∈ {0, 2}
            start = [b - in_count for b in bias]
            e_range = [[(0, 2)] * in_count for _ in weights]
        elif in_bipolar:                            # e = 2·w·x_b = w·(x + 1)
            start = [b - sum(row) for row, b in zip(weights, bias)]
            e_range = [[(min(0, 2 * w), max(0, 2 * w)) for w in row] for row in weights]
        else:                                       # e = w·x
            start = list(bias)
            e_range = [[(min(w * x_lo, w * x_hi), max(w * x_lo, w * x_hi)) for w in row] for row in weights]
        self._start = tuple(start)
        sf_count = self.fold[1]
        fold_lo = [[sum(e[0] for e in row[f * simd:(f + 1) * simd]) for f in range(sf_count)] for row in e_range]
        fold_hi = [[sum(e[1] for e in row[f * simd:(f + 1) * simd]) for f in range(sf_count)] for row in e_range]

        lo = min(s + sum(row) for s, row in zip(start, fold_lo))
        hi = max(s + sum(row) for s, row in zip(start, fold_hi))
        acc_lo, acc_hi = range_of(acc)
        if lo < acc_lo or hi > acc_hi:
            raise ValueError(f"acc_shape {acc_shape!r} cannot hold the accumulator range [{lo}, {hi}] "
                             f"of these weights, bias and inputs, which needs {shape_for(lo, hi)!r}")
        self.acc_range = (lo, hi)

        def prefixes(values, s, pick):
            run, out = s, []
            for v in values:
                run += v
                out.append(run)
            return pick(out)

        # Per PE lane (channels p, pe + p, …): the fold-sum register and the accumulator.
        self._fold_shapes, self._acc_shapes = [], []
        for p in range(pe):
            chans = range(p, out_channels, pe)
            self._fold_shapes.append(shape_for(min(min(fold_lo[c]) for c in chans),
                                               max(max(fold_hi[c]) for c in chans)))
            self._acc_shapes.append(shape_for(min(prefixes(fold_lo[c], start[c], min) for c in chans),
                                              max(prefixes(fold_hi[c], start[c], max) for c in chans)))
        # Start-value ROM element shape, always signed (the -1 makes shape_for choose a signed shape).
        self._s_shape = shape_for(min(-1, *start), max(start))
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(self.in_shape, simd if serial else in_count))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, pe))),
        })

    @property
    def fold(self):
        """``(NF, SF)``: output-channel folds and input-element folds per vector."""
        return self.out_channels // self.pe, self.in_count // self.simd

    @property
    def cycles_per_vector(self):
        """Cycles per input vector at full rate (``NF·SF``)."""
        nf, sf = self.fold
        return nf * sf

    @property
    def latency(self):
        """Cycles from an input transfer (serial: a vector's ``SF``-th beat) to its first output beat, at
        full rate."""
        return 3 if self.serial else self.fold[1] + 3

    @property
    def held_bits(self):
        """Flip-flops holding the input vector: ``in_count`` elements, none when serial."""
        return 0 if self.serial else self.in_count * self.in_shape.width

    @property
    def weight_bits(self):
        """Bits of the weight ROM (``C_out · in_count · weight_width``), as :attr:`MacArray.weight_bits`."""
        return self.out_channels * self.in_count * self.weight_width

    @property
    def mode(self):
        """The fold arithmetic: ``"xnor"``, ``"and-shared"`` (Bipolar weights) or ``"planes"`` (Int weights)."""
        if self.weight_width == 1:
            return "xnor" if self.in_bipolar else "and-shared"
        return "planes"

    def _weight_words(self):
        nf_count, sf_count = self.fold
        ww, simd = self.weight_width, self.simd
        words = []
        for nf in range(nf_count):
            for sf in range(sf_count):
                word = 0
                for p in range(self.pe):
                    row = self.weights[nf * self.pe + p]
                    for s in range(simd):
                        w = row[sf * simd + s]
                        bits = int(w == 1) if ww == 1 else w & ((1 << ww) - 1)
                        for i in range(ww):
                            word |= ((bits >> i) & 1) << ((p * ww + i) * simd + s)
                words.append(word)
        return words

    def _start_words(self):
        sb = self._s_shape.width
        mask = (1 << sb) - 1
        return [sum((self._start[nf * self.pe + p] & mask) << (p * sb) for p in range(self.pe))
                for nf in range(self.fold[0])]

    def _fold_sums(self, m, x1, w_data):
        """Per PE the exact ``Σ e`` of the registered slice ``x1`` with the fold's weight bits."""
        pe, simd, ww, xw = self.pe, self.simd, self.weight_width, self.in_shape.width

        def plane_weight(j, width, signed_):
            return (-1 if signed_ and j == width - 1 else 1, j)     # (sign, shift)

        x_planes = [(Cat(*(x1[s * xw + j] for s in range(simd))), plane_weight(j, xw, self.in_signed))
                    for j in range(xw)]

        def w_plane(p, i):
            return w_data.word_select(p * ww + i, simd)

        sums = []
        if self.mode == "xnor":
            for p in range(pe):
                sums.append(popcount(~(x_planes[0][0] ^ w_plane(p, 0)), simd) << 1)
        elif self.mode == "and-shared":
            # The weight-independent Σ_j a_j·popcount(x_j), once for all PEs.
            pos = [popcount(x, simd) << j for x, (sign, j) in x_planes if sign > 0]
            neg = [popcount(x, simd) << j for x, (sign, j) in x_planes if sign < 0]
            lo = -simd * sum(1 << j for _, (sign, j) in x_planes if sign < 0)
            hi = simd * sum(1 << j for _, (sign, j) in x_planes if sign > 0)
            shared = Signal(shape_for(lo, hi), name="shared_popcount")
            m.d.comb += shared.eq(_signed_sum(pos, neg))
            for p in range(pe):
                b = w_plane(p, 0)
                pos = [popcount(x & b, simd) << (j + 1) for x, (sign, j) in x_planes if sign > 0]
                neg = [popcount(x & b, simd) << (j + 1) for x, (sign, j) in x_planes if sign < 0]
                sums.append(_signed_sum(pos, neg + [shared]))
        else:
            # Bipolar activations enter as the single plane x_b of weight 2 (x = 2·x_b − 1).
            planes = [(x_planes[0][0], (1, 1))] if self.in_bipolar else x_planes
            for p in range(pe):
                pos, neg = [], []
                for i in range(ww):
                    t_sign, t_shift = plane_weight(i, ww, True)
                    for x, (a_sign, a_shift) in planes:
                        term = popcount(x & w_plane(p, i), simd) << (t_shift + a_shift)
                        (pos if t_sign * a_sign > 0 else neg).append(term)
                sums.append(_signed_sum(pos, neg))
        return sums

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        nf_count, sf_count = self.fold
        pe, simd = self.pe, self.simd
        xw, ww, sb = self.in_shape.width, self.weight_width, self._s_shape.width

        en = Signal()                               # stall-all enable
        m.d.comb += en.eq(~o.valid | o.ready)

        # Stage 0: the held vector (unless the folds arrive one per beat) and the fold counters (as MacArray).
        addr = Signal(range(nf_count * sf_count))   # nf·SF + sf
        sf = Signal(range(sf_count))
        nf = Signal(range(nf_count))
        issue = Signal()
        last_fold = addr == nf_count * sf_count - 1
        if self.serial:
            m.d.comb += [issue.eq(i.valid & en), i.ready.eq(en)]
        else:
            vec = Signal(xw * self.in_count)
            have = Signal()
            m.d.comb += [
                issue.eq(have & en),
                i.ready.eq(~have | (en & last_fold)),
            ]
            with m.If(issue & last_fold):
                m.d.sync += have.eq(0)
            with m.If(i.valid & i.ready):           # (after: a vector taken as the last fold issues is held)
                m.d.sync += [vec.eq(i.payload), have.eq(1)]
        with m.If(issue):
            m.d.sync += addr.eq(Mux(last_fold, 0, addr + 1))
            m.d.sync += sf.eq(Mux(sf == sf_count - 1, 0, sf + 1))
            with m.If(sf == sf_count - 1):
                m.d.sync += nf.eq(Mux(nf == nf_count - 1, 0, nf + 1))

        m.submodules.weights = rom = Memory(shape=unsigned(pe * ww * simd), depth=nf_count * sf_count,
                                            init=self._weight_words())
        w_port = rom.read_port()
        m.d.comb += [w_port.addr.eq(addr), w_port.en.eq(en)]

        # Stage 1: the slice of the fold and (from the ROM) its weight bits.
        v1, first1, last1 = Signal(), Signal(), Signal()
        x1 = Signal(xw * simd)
        nf1 = Signal.like(nf)
        with m.If(en):
            m.d.sync += [v1.eq(issue), first1.eq(sf == 0), last1.eq(sf == sf_count - 1), nf1.eq(nf)]
            if self.serial:
                m.d.sync += x1.eq(i.payload)
            else:
                with m.Switch(sf):                  # an SF-way multiplexer (no shifter, no offset product)
                    for f in range(sf_count):
                        with m.Case(f):
                            m.d.sync += x1.eq(vec[f * xw * simd:(f + 1) * xw * simd])

        # Stage 2: one fold sum per PE, each register as wide as its lane's range.
        v2, first2, last2 = Signal(), Signal(), Signal()
        sum2 = [Signal(shape, name=f"sum2_{p}") for p, shape in enumerate(self._fold_shapes)]
        with m.If(en):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [r.eq(s) for r, s in zip(sum2, self._fold_sums(m, x1, w_port.data))]
        if not any(self._start):
            starts = [Const(0, 1)] * pe
        elif nf_count == 1:
            starts = [Const(s, self._s_shape) for s in self._start]
        else:
            m.submodules.start = start_rom = Memory(shape=unsigned(pe * sb), depth=nf_count,
                                                    init=self._start_words())
            s_port = start_rom.read_port()
            m.d.comb += [s_port.addr.eq(nf1), s_port.en.eq(en)]
            starts = [s_port.data.word_select(p, sb).as_signed() for p in range(pe)]

        # Stage 3: the accumulators, which are also the output register.
        acc = [Signal(shape, name=f"acc_{p}") for p, shape in enumerate(self._acc_shapes)]
        with m.If(en):
            m.d.sync += o.valid.eq(v2 & last2)
            with m.If(v2):
                m.d.sync += [a.eq(Mux(first2, s, a) + f) for a, s, f in zip(acc, starts, sum2)]
        m.d.comb += [o.payload[p].eq(a) for p, a in enumerate(acc)]
        return m

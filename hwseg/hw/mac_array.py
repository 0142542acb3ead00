"""The integer multiply-accumulate array of convolution and fully-connected layers."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int, is_int, range_of, shape_for
from .weights import weight_read_signature

__all__ = ["MacArray", "PACKED_WORD_BITS"]

#: loaded weights pack folds into memory words of up to this many bits (an UltraRAM word)
PACKED_WORD_BITS = 72


def _divisors(n):
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _shift_add_product(x, w):
    """``x · w`` as shifts and adds (no multiplier for synthesis to map to a DSP): a partial product of ``w`` per
    bit of ``x`` (the narrower operand's bits select, so swap them beforehand), the sign bit's subtracted
    where ``x`` is signed (two's complement: ``x = −2^{n−1}·x[n−1] + Σ 2^i·x[i]``). Exact: Amaranth widens."""
    n = len(x)
    terms = [Mux(x[i], w, 0) << i for i in range(n)]
    if x.shape().signed:
        terms[-1] = -terms[-1]
    return _balanced_sum(terms)


def _balanced_sum(terms):
    """Sum of ``terms`` by a balanced binary adder tree (Amaranth widens each sum: exact)."""
    while len(terms) > 1:
        terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j]
                 for j in range(0, len(terms), 2)]
    return terms[0]


#: Amaranth's netlist check gives each bit of a variable part-select an edge from every bit it selects from:
#: past this many edges (a 288-element slice of a 576-element window: 10.6 M, minutes) the held vector's
#: slice is selected by a case statement instead, which Yosys maps to the same multiplexers.
_PART_SELECT_EDGES = 1 << 20


def _slice_select(m, vector, index, width, count):
    """Slice ``index`` (of ``count``, ``width`` bits each) of ``vector``."""
    if width * len(vector) <= _PART_SELECT_EDGES:
        return vector.word_select(index, width)
    if count == 1:
        return vector
    selected = Signal(width)
    with m.Switch(index):
        for k in range(count):
            with m.Case(k):
                m.d.comb += selected.eq(vector.word_select(k, width))
    return selected


class MacArray(wiring.Component):
    """Integer matrix-vector unit folded by PE (output channels) and SIMD (input elements).

    Computes, for every input vector ``x`` (one beat of ``in_count`` elements, e.g. a
    flattened window) and every output channel ``c``::

        acc[c] = Σ_k weights[c][k] · x[k] + bias[c]

    exactly, sent as ``NF = C_out / pe`` beats of ``pe`` lanes (beat ``n`` carries channels
    ``n·pe … n·pe + pe − 1``), truncated to ``acc_shape`` (checked in the constructor to hold
    the exact range, so nothing is lost).

    Architecture (FINN MVAU style): the input vector is taken into a register as soon as the
    previous vector's last fold is issued, so the producer is never held while folding. Each
    cycle one fold ``(nf, sf)`` (``SF = in_count / simd``; ``nf`` outer, ``sf`` inner) is issued:
    slice ``sf`` of the held vector (``simd`` elements) and the ``pe × simd`` weights of the fold,
    read from a synchronous :class:`~amaranth.lib.memory.Memory` ROM of ``NF·SF`` words, are
    multiplied in the cycle the fold issues (the ROM reads one fold ahead, and so does a register of the slice
    where ``SF > 1``: the multipliers start at registers) and the ``pe × simd``
    products registered (stage 1); they are reduced per PE by balanced adder trees into a register
    (stage 2); the PE accumulators start from the bias (a second ROM of ``NF``
    words, or constants when ``NF = 1``) on ``sf = 0`` and add each tree sum; after ``sf = SF − 1``
    they are the output beat (stage 3, the accumulators are the output register). All
    products and sums are exact (Amaranth widens them) and only the final value is truncated.
    One enable, ``~o_stream.valid | o_stream.ready``, stalls every stage and the ROM read ports.

    Throughput: one fold per cycle, i.e. one vector per ``NF·SF`` cycles back to back
    (:attr:`cycles_per_vector`); the next vector is taken in the cycle its predecessor's last
    fold issues. Latency: :attr:`latency` ``= SF + 3`` cycles from an input transfer to its first
    output beat (its folds issue in the ``SF`` cycles after the transfer, then 3 register stages:
    products, adder trees, accumulators); each further beat follows ``SF`` cycles later.
    ``i_stream.ready`` depends on state and ``o_stream.ready`` only, never on ``i_stream.valid``.

    With ``serial=True`` nothing is held: ``i_stream`` carries one fold's ``simd`` elements per beat, the
    ``NF·SF`` folds of every vector in issue order (``nf`` outer, ``sf`` inner; a
    :class:`~hwseg.hw.folded_window.FoldedWindow` serves a window so), each beat issued as it transfers.
    Same stages and fold order; :attr:`latency` is then 3 cycles from a vector's ``SF``-th beat to its
    first output beat, and ``i_stream.ready`` is the stage enable (low only in the first cycle after
    reset, while the weight ROM reads fold 0).

    With ``pack=2`` two PEs share each multiplier (PEs ``2j`` and ``2j+1``, which multiply the same inputs): the
    multiplier forms ``x · (w₂ⱼ₊₁·2^S + w₂ⱼ)`` in one product, which one DSP48 takes where the two weights and the
    :attr:`lane_spacing` ``S`` fit its wide port (the int8 method of Xilinx WP486, without accumulating inside
    the DSP). ``S`` bits hold any one product ``x·w`` exactly, so the low lane is the product's low ``S`` bits as
    a signed number and the high lane the rest plus the low lane's borrow (its sign bit); the two are separated
    behind the product register, in front of the adder trees. Exact for any widths; same timing.

    With ``multiplier="logic"`` the products are shifts and adds in logic instead (a partial product per bit
    of the narrower operand, :func:`_shift_add_product`), where DSPs are the scarcer resource or a narrow
    weight makes logic cheaper; same stages and timing.

    With ``weights_loaded=True`` the weights are not in a ROM but in a RAM written from ``load`` (one memory word,
    :attr:`weight_word_bits` wide, per beat, in the order of :attr:`weight_words`; always ready), which takes
    UltraRAM where ROMs cannot go (UltraScale+ UltraRAM has no initial contents): nothing is issued, and
    ``i_stream`` is not ready, until every word has been written (``loaded``, from the cycle after the last
    write). ``weight_ram_style`` (``"ultra"``, ``"block"``) asks synthesis for that memory kind. With
    ``external_weights=True`` that RAM is outside, a :class:`~hwseg.hw.weights.WeightRam` another MAC array may share:
    the array reads it through ``weight_port`` (:func:`~hwseg.hw.weights.weight_read_signature`; the same words, the same
    timing) and waits for its ``loaded``.
    """

    def __init__(self, *, in_shape, in_count, weights, bias, pe, simd, acc_shape, serial=False, weights_loaded=False,
                 weight_ram_style=None, external_weights=False, pack=1, multiplier="dsp"):
        in_shape = cast_shape("in_shape", in_shape)
        check_int("in_count", in_count)
        if not isinstance(weights, (list, tuple)) or not weights:
            raise ValueError(f"weights must be a non-empty list of rows, not {weights!r}")
        weights = [list(row) if isinstance(row, (list, tuple)) else row for row in weights]
        for c, row in enumerate(weights):
            if not isinstance(row, list) or len(row) != in_count:
                raise ValueError(f"weights[{c}] must be a list of in_count={in_count} ints, not {row!r}")
            for k, w in enumerate(row):
                if not is_int(w):
                    raise TypeError(f"weights[{c}][{k}] must be an int, not {w!r}")
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
        if pack not in (1, 2):
            raise ValueError(f"pack must be 1 (a multiplier per product) or 2 (two PEs per multiplier), not {pack!r}")
        if pack == 2 and pe % 2:
            raise ValueError(f"pack=2 pairs the PEs and needs an even pe, not {pe!r}")
        if multiplier not in ("dsp", "logic"):
            raise ValueError(f"multiplier must be 'dsp' or 'logic', not {multiplier!r}")
        if multiplier == "logic" and pack != 1:
            raise ValueError(f"products in logic (multiplier='logic') are not packed: pack must be 1, not {pack!r}")
        self.multiplier = multiplier

        # The exact range of acc over every possible input, and the bound on partial sums.
        x_lo, x_hi = range_of(in_shape)
        x_abs = max(-x_lo, x_hi)
        lo = min(b + sum(min(w * x_lo, w * x_hi) for w in row) for row, b in zip(weights, bias))
        hi = max(b + sum(max(w * x_lo, w * x_hi) for w in row) for row, b in zip(weights, bias))
        acc_lo, acc_hi = range_of(acc)
        if lo < acc_lo or hi > acc_hi:
            raise ValueError(f"acc_shape {acc_shape!r} cannot hold the accumulator range [{lo}, {hi}] "
                             f"of these weights, bias and in_shape, which needs {shape_for(lo, hi)!r}")
        bound = max(abs(b) + sum(abs(w) for w in row) * x_abs for row, b in zip(weights, bias))

        self.in_shape = in_shape
        self.in_count = in_count
        self.out_channels = out_channels
        self.weights = tuple(tuple(row) for row in weights)
        self.bias = tuple(bias)
        self.pe = pe
        self.simd = simd
        self.acc_shape = acc_shape
        self.acc_range = (lo, hi)
        if not isinstance(serial, bool):
            raise TypeError(f"serial must be a bool, not {serial!r}")
        self.serial = serial
        if not isinstance(weights_loaded, bool):
            raise TypeError(f"weights_loaded must be a bool, not {weights_loaded!r}")
        if weight_ram_style not in (None, "block", "ultra"):
            raise ValueError(f"weight_ram_style must be None, 'block' or 'ultra', not {weight_ram_style!r}")
        if weight_ram_style is not None and not weights_loaded:
            raise ValueError("weight_ram_style applies to loaded weights (weights_loaded=True) only")
        if not isinstance(external_weights, bool):
            raise TypeError(f"external_weights must be a bool, not {external_weights!r}")
        if external_weights and (not weights_loaded or weight_ram_style is not None):
            raise ValueError("external_weights applies to loaded weights (weights_loaded=True) whose memory, with its "
                             "ram_style, is a WeightRam outside the MAC array")
        self.weights_loaded, self.weight_ram_style = weights_loaded, weight_ram_style
        self.external_weights = external_weights
        self._sum_shape = shape_for(-bound, bound)     # internal accumulators: never overflow
        # ROM element shapes, always signed (the -1 makes shape_for choose a signed shape).
        self._w_shape = shape_for(min(-1, *(min(row) for row in weights)), max(max(row) for row in weights))
        self._b_shape = shape_for(min(-1, *bias), max(bias))
        self.pack = pack
        w_lo, w_hi = min(min(row) for row in weights), max(max(row) for row in weights)
        products = [x * w for x in (x_lo, x_hi) for w in (w_lo, w_hi)]
        #: bits that hold any one product exactly (signed): the offset of a multiplier's second product
        self.lane_spacing = shape_for(min(-1, *products), max(products)).width
        spacing = 1 << self.lane_spacing
        #: the shape of a multiplier's weight operand (two weights ``w_hi·2^S + w_lo`` when packed)
        self.multiplicand_shape = (self._w_shape if pack == 1 else
                                   shape_for(min(-1, w_lo * spacing + min(w_lo, 0)),
                                             w_hi * spacing + max(w_hi, 0)))
        members = {
            "i_stream": In(stream.Signature(data.ArrayLayout(in_shape, simd if serial else in_count))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, pe))),
        }
        if external_weights:
            members["weight_port"] = Out(weight_read_signature(word_bits=self.weight_word_bits,
                                                           depth=len(self.weight_words)))
        elif weights_loaded:
            members.update({"load": In(stream.Signature(unsigned(self.weight_word_bits))), "loaded": Out(1)})
        super().__init__(members)

    @property
    def folds_per_word(self):
        """Folds per weight memory word: 1 for a ROM; loaded weights pack a power of two of folds, as many as
        fit :data:`PACKED_WORD_BITS` (a narrow fold would fill a fraction of a 72-bit UltraRAM word)."""
        fold_bits, folds = self.pe * self.simd * self._w_shape.width, self.fold[0] * self.fold[1]
        if not self.weights_loaded or fold_bits * 2 > PACKED_WORD_BITS:
            return 1
        packed = 1 << (PACKED_WORD_BITS // fold_bits).bit_length() - 1
        return min(packed, 1 << (folds - 1).bit_length())

    @property
    def weight_word_bits(self):
        """Bits of a weight memory word: the ``pe × simd`` weights of :attr:`folds_per_word` folds."""
        return self.pe * self.simd * self._w_shape.width * self.folds_per_word

    @property
    def weight_words(self):
        """The weight memory's words in address order (fold ``f`` in word ``f // folds_per_word``, at bit
        ``(f mod folds_per_word) · fold bits``; what ``load`` must bring)."""
        folds, packed = self._weight_words(), self.folds_per_word
        fold_bits = self.weight_word_bits // packed
        return [sum(word << (j * fold_bits) for j, word in enumerate(folds[k:k + packed]))
                for k in range(0, len(folds), packed)]

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
    def multipliers(self):
        """Multipliers of the array: ``pe · simd / pack``."""
        return self.pe * self.simd // self.pack

    @property
    def held_bits(self):
        """Flip-flops holding the input vector: ``in_count`` elements, none when serial."""
        return 0 if self.serial else self.in_count * self.in_shape.width

    @property
    def weight_bits(self):
        """Bits of the weight ROM (``C_out · in_count · weight width``)."""
        return self.out_channels * self.in_count * self._w_shape.width

    def _weight_words(self):
        nf_count, sf_count = self.fold
        wb = self._w_shape.width
        mask = (1 << wb) - 1
        words = []
        for nf in range(nf_count):
            for sf in range(sf_count):
                word = 0
                for p in range(self.pe):
                    row = self.weights[nf * self.pe + p]
                    for s in range(self.simd):
                        word |= (row[sf * self.simd + s] & mask) << ((p * self.simd + s) * wb)
                words.append(word)
        return words

    def _bias_words(self):
        bb = self._b_shape.width
        mask = (1 << bb) - 1
        return [sum((self.bias[nf * self.pe + p] & mask) << (p * bb) for p in range(self.pe))
                for nf in range(self.fold[0])]

    def _load(self, m, memory):
        """Writes the ``load`` beats into ``memory`` in address order; ``loaded`` the cycle after the last (so
        that the read-ahead register, read at every edge, holds loaded data before the first fold issues)."""
        depth = memory.depth
        address, written = Signal(range(depth)), Signal()
        port = memory.write_port()
        m.d.comb += [self.load.ready.eq(1), port.addr.eq(address), port.data.eq(self.load.payload),
                     port.en.eq(self.load.valid & ~written)]
        with m.If(self.load.valid & ~written):
            m.d.sync += address.eq(Mux(address == depth - 1, 0, address + 1))
            with m.If(address == depth - 1):
                m.d.sync += written.eq(1)
        m.d.sync += self.loaded.eq(written)

    def _unpack(self, registered):
        """Each PE's ``simd`` products from the registered multiplier outputs: a packed product ``P`` holds
        ``lo = P mod 2^S`` (signed) and ``hi = (P − lo) / 2^S = ⌊P / 2^S⌋ + [lo < 0]``."""
        if self.pack == 1:
            return registered
        spacing, lanes = self.lane_spacing, []
        for row in registered:
            lanes.append([p[:spacing].as_signed() for p in row])
            lanes.append([(p >> spacing) + p[spacing - 1] for p in row])
        return lanes

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        nf_count, sf_count = self.fold
        pe, simd = self.pe, self.simd
        xw, wb, bb = self.in_shape.width, self._w_shape.width, self._b_shape.width

        en = Signal()                               # stall-all enable
        m.d.comb += en.eq(~o.valid | o.ready)

        # Stage 0: the held vector (unless the folds arrive one per beat) and the fold counters.
        if not self.serial:
            vec = Signal(xw * self.in_count)
            have = Signal()
        addr = Signal(range(nf_count * sf_count))   # nf·SF + sf
        sf = Signal(range(sf_count))
        nf = Signal(range(nf_count))
        issue = Signal()
        last_fold = addr == nf_count * sf_count - 1
        # loaded weights: nothing is taken before the last word is in (ROM weights are there from the start)
        weights_in = (self.weight_port.loaded if self.external_weights else self.loaded) if self.weights_loaded else Const(1)
        if self.serial:
            # the weight ROM's read register holds fold 0 only after the first clock edge
            primed = Signal()
            m.d.sync += primed.eq(1)
            m.d.comb += [issue.eq(i.valid & en & primed & weights_in), i.ready.eq(en & primed & weights_in)]
        else:
            m.d.comb += [
                issue.eq(have & en),
                i.ready.eq(weights_in & (~have | (en & last_fold))),
            ]
        with m.If(issue):
            m.d.sync += addr.eq(Mux(last_fold, 0, addr + 1))
            m.d.sync += sf.eq(Mux(sf == sf_count - 1, 0, sf + 1))
            with m.If(sf == sf_count - 1):
                m.d.sync += nf.eq(Mux(nf == nf_count - 1, 0, nf + 1))
            if not self.serial:
                with m.If(last_fold):
                    m.d.sync += have.eq(0)
        if not self.serial:
            with m.If(i.valid & i.ready):
                m.d.sync += [vec.eq(i.payload), have.eq(1)]

        # The ROM reads ahead: its output register holds the weights of the fold `addr` names (the
        # next value of `addr` is read at every enabled edge; a stalled edge changes neither), so a
        # fold's products are formed in its issue cycle and registered (stage 1), and the multipliers
        # and the adder trees fall in different stages.
        next_fold = Mux(issue, Mux(last_fold, 0, addr + 1), addr)
        if self.weights_loaded:
            if self.external_weights:        # a WeightRam's port: the same synchronous read
                read = self.weight_port
            else:
                attrs = {"ram_style": self.weight_ram_style} if self.weight_ram_style else None
                words = self.weight_words
                m.submodules.weights = rom = Memory(shape=unsigned(self.weight_word_bits), depth=len(words),
                                                    init=[], attrs=attrs)
                self._load(m, rom)
                read = rom.read_port()
            # packed folds: the word holding the next fold is read, and its slice chosen by the fold's low bits,
            # registered with the read
            packing = (self.folds_per_word - 1).bit_length()
            slot = Signal(packing)
            m.d.comb += [read.addr.eq(next_fold >> packing), read.en.eq(en)]
            with m.If(en):
                m.d.sync += slot.eq(next_fold[:packing])
            fold_weights = read.data.word_select(slot, pe * simd * wb) if packing else read.data
        else:
            m.submodules.weights = rom = Memory(shape=unsigned(pe * simd * wb), depth=nf_count * sf_count,
                                                init=self._weight_words())
            read = rom.read_port()
            m.d.comb += [read.addr.eq(next_fold), read.en.eq(en)]
            fold_weights = read.data
        if self.serial:
            x0 = i.payload.as_value()
        elif sf_count == 1:
            x0 = vec
        else:
            # The slice select reads ahead too: a register holds slice `sf` of the held vector, so that the
            # multipliers start at a register and not at the fold counter behind an SF:1 multiplexer. It loads the
            # next fold's slice as a fold issues; slice 0 of the input while no vector is held or the last fold
            # issues (the only times a vector is taken). Its data is a function of registers alone: the stage
            # enable, which the ready path drives, only enables it.
            x0 = Signal(xw * simd)
            following = _slice_select(m, vec, Mux(sf == sf_count - 1, 0, sf + 1), xw * simd, sf_count)
            with m.If(~have | en):
                m.d.sync += x0.eq(Mux(~have | last_fold, i.payload.as_value()[:xw * simd], following))

        def x_elem(s):
            value = x0.word_select(s, xw)
            return value.as_signed() if self.in_shape.signed else value

        def weight(p, s):
            return fold_weights.word_select(p * simd + s, wb).as_signed()

        def multiplicand(k, s):
            """Multiplier ``k``'s weight operand for element ``s``: PE k's weight, or PEs 2k and 2k+1's packed."""
            if self.pack == 1:
                return weight(k, s)
            packed = Signal(self.multiplicand_shape, name=f"packed_{k}_{s}")
            m.d.comb += packed.eq((weight(2 * k + 1, s) << self.lane_spacing) + weight(2 * k, s))
            return packed

        def product(x, w):
            if self.multiplier == "dsp":
                return x * w
            # the narrower operand's bits select copies of the other (on a tie the activation's; the weight's would
            # save 12 % of the LUTs of 8 × 8 bits on xc7, left for a recalibration)
            return _shift_add_product(x, w) if len(x) <= len(w) else _shift_add_product(w, x)

        products = [[product(x_elem(s), multiplicand(k, s)) for s in range(simd)] for k in range(pe // self.pack)]

        # Stage 1: the products of the fold.
        v1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nf)
        prod1 = [[Signal(products[k][s].shape(), name=f"prod1_{k}_{s}") for s in range(simd)]
                 for k in range(pe // self.pack)]
        with m.If(en):
            m.d.sync += [v1.eq(issue), first1.eq(sf == 0), last1.eq(sf == sf_count - 1), nf1.eq(nf)]
            m.d.sync += [prod1[k][s].eq(products[k][s]) for k in range(len(prod1)) for s in range(simd)]

        sums = [_balanced_sum(lane) for lane in self._unpack(prod1)]

        # Stage 2: one adder-tree sum per PE; the bias of the fold's channels.
        v2, first2, last2 = Signal(), Signal(), Signal()
        sum2 = [Signal(s.shape(), name=f"sum2_{p}") for p, s in enumerate(sums)]
        with m.If(en):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [r.eq(s) for r, s in zip(sum2, sums)]
        if not any(self.bias):
            biases = [Const(0, 1)] * pe
        elif nf_count == 1:
            biases = [Const(b, self._b_shape) for b in self.bias]
        else:
            m.submodules.bias = bias_rom = Memory(shape=unsigned(pe * bb), depth=nf_count,
                                                  init=self._bias_words())
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
        return m

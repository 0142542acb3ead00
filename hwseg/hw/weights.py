"""Weights loaded from DRAM: the image that holds them, and the loader that writes them into the layers' RAMs.

Weight ROMs are initialized by the bitstream; UltraScale+ UltraRAM has no initial contents, so weights kept there
are written once after reset, from an image the host puts in DRAM beside the buffers (as the Vitis AI DPU loads
its weights). Each layer whose weights are loaded (a :class:`~hwseg.hw.mac_array.MacArray` with
``weights_loaded=True``) holds its input until its last word is in, so nothing needs to wait for the loader as a
whole.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int
from .dram import BurstReader, check_memory_geometry, memory_port_signature, words_per_beat
from .lanes import LaneConverter

__all__ = ["WeightLoader", "WeightRam", "weight_image", "weight_read_signature"]


def weight_image(stores, *, data_bits):
    """The bytes of the weight image: for each store ``(word_bits, words)`` in order, each word in
    ``ceil(word_bits / data_bits)`` memory words (low bits first, zero-padded), each memory word little-endian."""
    check_memory_geometry(address_bits=64, data_bits=data_bits, burst=1)
    image = bytearray()
    for word_bits, words in stores:
        beats = words_per_beat(word_bits, data_bits)
        for word in words:
            if not 0 <= word < 1 << word_bits:
                raise ValueError(f"a weight word must be an unsigned {word_bits}-bit int, not {word!r}")
            image += word.to_bytes(beats * data_bits // 8, "little")
    return bytes(image)


class WeightLoader(wiring.Component):
    """Streams the weight image from DRAM into the layers' weight memories, once after reset.

    ``stores`` lists each memory as ``(word_bits, depth)``, in the image's order (:func:`weight_image`); store
    ``k``'s words leave on ``store{k}``, one word per beat in address order. The image, :attr:`image_words`
    memory words at byte address ``base`` (aligned to a burst, constant while running), is read in bursts of up to
    ``burst`` words through a :class:`~hwseg.hw.dram.BurstReader` (``outstanding`` bursts in flight); a store's
    word gathers its ``ceil(word_bits / data_bits)`` memory words. ``done`` is high once the last word has been
    handed on. DRAM traffic: :attr:`image_words` words read, once; nothing written.
    """

    def __init__(self, *, stores, data_bits, address_bits, burst=16, outstanding=4):
        check_memory_geometry(address_bits=address_bits, data_bits=data_bits, burst=burst)
        check_int("outstanding", outstanding)
        if not isinstance(stores, (list, tuple)) or not stores:
            raise ValueError(f"stores must be a non-empty list of (word_bits, depth), not {stores!r}")
        for k, store in enumerate(stores):
            if (not isinstance(store, tuple) or len(store) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in store)):
                raise ValueError(f"stores[{k}] must be (word_bits, depth) of positive ints, not {store!r}")
        self.stores = tuple(stores)
        self.data_bits, self.address_bits, self.burst, self.outstanding = data_bits, address_bits, burst, outstanding
        self.beats_per_word = tuple(words_per_beat(bits, data_bits) for bits, _ in self.stores)
        if self.image_bytes > 1 << address_bits:
            raise ValueError(f"a weight image of {self.image_bytes} bytes does not fit {address_bits}-bit addresses")
        members = {f"store{k}": Out(stream.Signature(unsigned(bits))) for k, (bits, _) in enumerate(self.stores)}
        members.update({"base": In(address_bits), "done": Out(1),
                        "mem": Out(memory_port_signature(address_bits=address_bits, data_bits=data_bits))})
        super().__init__(members)

    @property
    def image_words(self):
        """Memory words of the image."""
        return sum(depth * beats for (_, depth), beats in zip(self.stores, self.beats_per_word))

    @property
    def image_bytes(self):
        return self.image_words * self.data_bits // 8

    @property
    def region_bytes(self):
        """The image's region in DRAM (read only)."""
        return self.image_bytes

    def elaborate(self, platform):
        m = Module()
        d, burst, total = self.data_bits, self.burst, self.image_words
        m.submodules.reader = reader = BurstReader(address_bits=self.address_bits, data_bits=d,
                                                   buffer_words=2 * burst, outstanding=self.outstanding)
        wiring.connect(m, wiring.flipped(self.mem.ar), reader.ar)
        wiring.connect(m, reader.r, wiring.flipped(self.mem.r))
        # (never writes: aw, w stay idle; b is never expected)

        # the bursts: the image in order, each up to the next burst boundary (the image starts on one)
        asked = Signal(range(total + 1))
        length = Mux(total - asked >= burst, burst, total - asked)
        m.d.comb += [reader.burst.valid.eq(asked < total),
                     reader.burst.payload.addr.eq(self.base + asked * (d // 8)),
                     reader.burst.payload.len.eq(length - 1)]
        with m.If(reader.burst.valid & reader.burst.ready):
            m.d.sync += asked.eq(asked + length)

        # the words, to the store whose turn it is: `left` memory words of it to go
        count = len(self.stores)
        store = Signal(range(count + 1))
        left = Signal(range(max(depth * beats for (_, depth), beats in zip(self.stores, self.beats_per_word)) + 1),
                      init=self.stores[0][1] * self.beats_per_word[0])
        words = reader.words[0]
        m.d.comb += self.done.eq(store == count)
        for k, ((bits, depth), beats) in enumerate(zip(self.stores, self.beats_per_word)):
            out = getattr(self, f"store{k}")
            if beats > 1:
                m.submodules[f"gather{k}"] = gather = LaneConverter(elem_shape=unsigned(d), in_lanes=1,
                                                                    out_lanes=beats)
                sink, source = gather.i_stream, gather.o_stream
                m.d.comb += [out.payload.eq(source.payload.as_value()[:bits]), out.valid.eq(source.valid),
                             source.ready.eq(out.ready)]
                m.d.comb += sink.payload.as_value().eq(words.payload)
            else:
                sink = out
                m.d.comb += sink.payload.eq(words.payload[:bits])
            with m.If(store == k):
                m.d.comb += [sink.valid.eq(words.valid), words.ready.eq(sink.ready)]
                with m.If(words.valid & sink.ready):
                    with m.If(left == 1):
                        following = (self.stores[k + 1][1] * self.beats_per_word[k + 1]) if k + 1 < count else 0
                        m.d.sync += [store.eq(k + 1), left.eq(following)]
                    with m.Else():
                        m.d.sync += left.eq(left - 1)
        return m


def weight_read_signature(*, word_bits, depth):
    """A MAC array's reads of a weight memory outside it, seen from the MAC array: ``addr`` and ``en`` out
    (a synchronous read: ``data`` holds the word ``addr`` named at the last edge ``en`` was high), ``data`` and
    ``loaded`` (every word written, from the cycle the read register can hold one) in."""
    return wiring.Signature({"addr": Out(range(depth)), "en": Out(1), "data": In(word_bits), "loaded": In(1)})


class WeightRam(wiring.Component):
    """The loaded weight memories of one or two MAC arrays in one RAM (the two ports of an UltraRAM).

    ``clients`` lists each MAC array's memory as ``(word_bits, depth)``; client ``k``'s words sit after the
    clients before it, written from ``load{k}`` (a word a beat, in address order, always ready; what
    :class:`WeightLoader`'s store gives) and then read through ``port{k}`` (:func:`weight_read_signature`:
    a synchronous read, as the MAC array's own memory reads). Each client has one port: its address is the write
    address until its last word is in, then the reads' — one read-write port per client, so two clients take the
    two ports of an UltraRAM (a second client's reads see the first's writes of the same cycle, as the UltraRAM's
    port B does). ``loaded{k}`` rises the cycle after the last write, when the read register can hold a word.
    ``ram_style`` (``"ultra"``, ``"block"``) asks synthesis for that memory kind. Two memories too small for one
    UltraRAM each, or two whose depths round up to more UltraRAMs apart than together, share one this way.
    """

    def __init__(self, *, clients, ram_style=None):
        if not isinstance(clients, (list, tuple)) or not 1 <= len(clients) <= 2:
            raise ValueError(f"clients must list one or two (word_bits, depth), not {clients!r}")
        for k, client in enumerate(clients):
            if (not isinstance(client, tuple) or len(client) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in client)):
                raise ValueError(f"clients[{k}] must be (word_bits, depth) of positive ints, not {client!r}")
        if ram_style not in (None, "block", "ultra"):
            raise ValueError(f"ram_style must be None, 'block' or 'ultra', not {ram_style!r}")
        self.clients, self.ram_style = tuple(clients), ram_style
        members = {}
        for k, (bits, depth) in enumerate(self.clients):
            members[f"load{k}"] = In(stream.Signature(unsigned(bits)))
            members[f"port{k}"] = In(weight_read_signature(word_bits=bits, depth=depth))
        super().__init__(members)

    @property
    def word_bits(self):
        return max(bits for bits, _ in self.clients)

    @property
    def depth(self):
        return sum(depth for _, depth in self.clients)

    def elaborate(self, platform):
        m = Module()
        attrs = {"ram_style": self.ram_style} if self.ram_style else None
        m.submodules.memory = memory = Memory(shape=unsigned(self.word_bits), depth=self.depth, init=[], attrs=attrs)
        start, writes = 0, []
        for k, (bits, depth) in enumerate(self.clients):
            load, port = getattr(self, f"load{k}"), getattr(self, f"port{k}")
            written = Signal(name=f"written{k}")
            fill = Signal(range(depth), name=f"fill{k}")
            address = Signal(range(self.depth), name=f"address{k}")
            write = memory.write_port()
            read = memory.read_port(transparent_for=writes)
            writes.append(write)
            m.d.comb += [address.eq(start + Mux(written, port.addr, fill)),
                         load.ready.eq(1), write.addr.eq(address), write.data.eq(load.payload),
                         write.en.eq(load.valid & ~written),
                         read.addr.eq(address), read.en.eq(port.en & written), port.data.eq(read.data[:bits])]
            with m.If(load.valid & ~written):
                m.d.sync += fill.eq(Mux(fill == depth - 1, 0, fill + 1))
                with m.If(fill == depth - 1):
                    m.d.sync += written.eq(1)
            m.d.sync += port.loaded.eq(written)
            start += depth
        return m

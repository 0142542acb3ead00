"""Buffers in DRAM: the memory port, the burst engines, the arbiter, and a DRAM-backed FIFO.

The memory port is AXI4 written as Amaranth streams (:func:`memory_port_signature`): five channels
``ar``, ``r``, ``aw``, ``w``, ``b``, each a ``stream.Signature`` (AXI's valid/ready rules are the stream
rules). Addresses are byte addresses; every burst is INCR of full-width beats, aligned to a beat, and
never crosses a ``burst``-beat boundary (at most 4 KiB), so never AXI's 4 KiB boundary either.

Deadlock freedom on the memory side comes from credits, not from the memory's good will: a
:class:`BurstReader` asks for a burst only when its buffer has room for every beat of it, so read data is
always taken the cycle it arrives and one slow buffer cannot hold up another's data behind it on the shared
``r`` channel; a :class:`BurstWriter` announces a burst only when all its beats are staged, so ``w`` never
waits on the buffer that owns it.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import cast_shape, check_int
from .lanes import LaneConverter

__all__ = ["MAX_BURST", "burst_request", "memory_port_signature", "BurstWriter", "BurstReader",
           "MemoryArbiter", "DramFifo", "DramRowTaps", "words_per_beat", "check_memory_geometry"]

#: the longest AXI4 INCR burst, in beats
MAX_BURST = 256
#: AXI4 bursts must not cross a 4 KiB boundary; ours never cross a burst-sized boundary, at most this
_BOUNDARY_BYTES = 4096


def burst_request(address_bits):
    """The payload of ``ar``/``aw``: a byte address and ``len`` (beats − 1, as AXI4 counts)."""
    return data.StructLayout({"addr": address_bits, "len": 8})


def _beat(data_bits):
    return data.StructLayout({"data": data_bits, "last": 1})


def memory_port_signature(*, address_bits, data_bits):
    """An AXI4 master port as five streams (seen from the master): ``ar``, ``aw`` and ``w`` out,
    ``r`` (data and ``last``) and ``b`` (the 2-bit response) in."""
    return wiring.Signature({
        "ar": Out(stream.Signature(burst_request(address_bits))),
        "r": In(stream.Signature(_beat(data_bits))),
        "aw": Out(stream.Signature(burst_request(address_bits))),
        "w": Out(stream.Signature(_beat(data_bits))),
        "b": In(stream.Signature(2)),
    })


def check_memory_geometry(*, address_bits, data_bits, burst):
    """Validates the memory port's widths and the burst length (beats), naming the bad value."""
    check_int("address_bits", address_bits, minimum=12)
    if address_bits > 64:
        raise ValueError(f"address_bits must be at most 64, not {address_bits!r}")
    if data_bits not in (32, 64, 128, 256, 512, 1024):
        raise ValueError(f"data_bits must be a power of two from 32 to 1024, not {data_bits!r}")
    check_int("burst", burst)
    if burst & (burst - 1) or burst > MAX_BURST or burst * data_bits // 8 > _BOUNDARY_BYTES:
        raise ValueError(f"burst must be a power of two of at most {MAX_BURST} beats and "
                         f"{_BOUNDARY_BYTES} bytes, not {burst!r}")


def words_per_beat(beat_bits, data_bits):
    """Memory words one stream beat of ``beat_bits`` takes (a beat starts a new word)."""
    return -(-beat_bits // data_bits)


def _no_reads(m, port):
    m.d.comb += [port.ar.valid.eq(0), port.r.ready.eq(1)]


class BurstWriter(wiring.Component):
    """Writes the words of ``words`` to memory in the bursts its owner asks for on ``burst``.

    The owner offers a burst (address, ``len`` = beats − 1) only while :attr:`can_start`; it is taken
    in that cycle if :attr:`staged` (the words waiting, all of them unclaimed while ``can_start``)
    holds all its beats, and then goes out: the address on ``aw`` while the staged words go out on ``w``,
    one a cycle, ``last`` on the burst's last. When the burst's response comes back on ``b``,
    ``committed`` carries its beat count for one cycle: from then on a read sees the data.

    Storage: a FIFO of ``staging`` words (at least two bursts, so the input keeps flowing while a burst
    drains) and the beat counts of up to ``outstanding`` bursts awaiting their response.
    Throughput: one word a cycle within a burst; a new burst one cycle after the last one's address and
    data went out.
    """

    def __init__(self, *, address_bits, data_bits, staging, outstanding):
        check_int("staging", staging, minimum=2)
        check_int("outstanding", outstanding)
        self.address_bits, self.data_bits = address_bits, data_bits
        self.staging, self.outstanding = staging, outstanding
        super().__init__({
            "words": In(stream.Signature(data_bits)),
            "burst": In(stream.Signature(burst_request(address_bits))),
            "can_start": Out(1),
            "staged": Out(range(staging + 1)),
            "committed": Out(stream.Signature(range(MAX_BURST + 1), always_ready=True)),
            "aw": Out(stream.Signature(burst_request(address_bits))),
            "w": Out(stream.Signature(_beat(data_bits))),
            "b": In(stream.Signature(2)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.staging = staging = fifo.SyncFIFOBuffered(width=self.data_bits, depth=self.staging)
        m.submodules.pending = pending = fifo.SyncFIFO(width=range(MAX_BURST + 1).stop.bit_length(),
                                                        depth=self.outstanding)
        m.d.comb += [staging.w_data.eq(self.words.payload), staging.w_en.eq(self.words.valid),
                     self.words.ready.eq(staging.w_rdy)]

        address_pending = Signal()
        remaining = Signal(range(MAX_BURST + 1))        # beats of the current burst still to go out on w
        address = Signal.like(self.aw.payload)
        beats = self.burst.payload.len + 1
        m.d.comb += [
            self.can_start.eq(~address_pending & (remaining == 0) & pending.w_rdy),
            self.staged.eq(staging.level),
            self.burst.ready.eq(self.can_start & (staging.level >= beats)),
            pending.w_data.eq(beats),
            pending.w_en.eq(self.burst.valid & self.burst.ready),
        ]
        with m.If(self.burst.valid & self.burst.ready):
            m.d.sync += [address_pending.eq(1), address.eq(self.burst.payload), remaining.eq(beats)]

        m.d.comb += [self.aw.valid.eq(address_pending), self.aw.payload.eq(address)]
        with m.If(self.aw.valid & self.aw.ready):
            m.d.sync += address_pending.eq(0)

        sending = remaining != 0
        m.d.comb += [
            self.w.valid.eq(sending & staging.r_rdy),
            self.w.payload.data.eq(staging.r_data),
            self.w.payload.last.eq(remaining == 1),
            staging.r_en.eq(sending & self.w.ready),
        ]
        with m.If(self.w.valid & self.w.ready):
            m.d.sync += remaining.eq(remaining - 1)

        m.d.comb += [
            self.b.ready.eq(1),
            pending.r_en.eq(self.b.valid),
            self.committed.valid.eq(self.b.valid),
            self.committed.payload.eq(pending.r_data),
        ]
        return m


class BurstReader(wiring.Component):
    """Reads the bursts its owner asks for on ``burst`` into ``destinations`` buffers, one per reader of
    the data; ``words[k]`` streams buffer ``k`` in the order its bursts were asked for.

    A burst (address, ``len``, ``dest``) is taken only when buffer ``dest`` has room for all its beats
    besides every beat already promised to it (credit), and fewer than ``outstanding`` bursts are in
    flight: so ``r`` is always ready, and no buffer ever waits on another's data. ``arrived`` is high in
    each cycle a word arrives. Each buffer holds ``buffer_words``; :attr:`reserved` ``[k]`` counts the
    words promised to it and not yet read out (zero: nothing in flight and nothing held).
    """

    def __init__(self, *, address_bits, data_bits, buffer_words, outstanding, destinations=1):
        check_int("buffer_words", buffer_words, minimum=2)
        check_int("outstanding", outstanding)
        check_int("destinations", destinations)
        if buffer_words > 4 * MAX_BURST * outstanding:
            raise ValueError(f"buffer_words must be at most {4 * MAX_BURST * outstanding}, not {buffer_words!r}")
        self.address_bits, self.data_bits = address_bits, data_bits
        self.buffer_words, self.outstanding, self.destinations = buffer_words, outstanding, destinations
        request = data.StructLayout({"addr": address_bits, "len": 8, "dest": range(destinations)})
        super().__init__({
            "burst": In(stream.Signature(request)),
            "can_start": Out(1),
            "reserved": Out(range(buffer_words + 1)).array(destinations),
            "words": Out(stream.Signature(data_bits)).array(destinations),
            "arrived": Out(1),
            "ar": Out(stream.Signature(burst_request(address_bits))),
            "r": In(stream.Signature(_beat(data_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.destinations
        dest_bits = max(1, (n - 1).bit_length())
        m.submodules.owners = owners = fifo.SyncFIFO(width=dest_bits, depth=self.outstanding)
        buffers = []
        for k in range(n):
            buffers.append(buf := fifo.SyncFIFOBuffered(width=self.data_bits, depth=self.buffer_words))
            m.submodules[f"buffer{k}"] = buf

        address_pending = Signal()
        address = Signal.like(self.ar.payload)
        request = self.burst.payload
        beats = request.len + 1
        credit = Signal()
        for k in range(n):
            with m.If(request.dest == k):
                m.d.comb += credit.eq(self.reserved[k] + beats <= self.buffer_words)
        m.d.comb += [
            self.can_start.eq(~address_pending & owners.w_rdy),
            self.burst.ready.eq(self.can_start & credit),
            owners.w_data.eq(request.dest),
            owners.w_en.eq(self.burst.valid & self.burst.ready),
        ]
        start = self.burst.valid & self.burst.ready
        with m.If(start):
            m.d.sync += [address_pending.eq(1), address.addr.eq(request.addr), address.len.eq(request.len)]
        m.d.comb += [self.ar.valid.eq(address_pending), self.ar.payload.eq(address)]
        with m.If(self.ar.valid & self.ar.ready):
            m.d.sync += address_pending.eq(0)

        # read data goes to the buffer of the oldest burst in flight; credit guarantees room
        owner = owners.r_data
        m.d.comb += [self.r.ready.eq(1), self.arrived.eq(self.r.valid),
                     owners.r_en.eq(self.r.valid & self.r.payload.last)]
        for k, buf in enumerate(buffers):
            out = self.words[k]
            m.d.comb += [
                buf.w_data.eq(self.r.payload.data),
                buf.w_en.eq(self.r.valid & (owner == k)),
                out.payload.eq(buf.r_data),
                out.valid.eq(buf.r_rdy),
                buf.r_en.eq(out.ready),
            ]
            taken = out.valid & out.ready
            promised = Mux(start & (request.dest == k), beats, 0)
            m.d.sync += self.reserved[k].eq(self.reserved[k] + promised - taken)
        return m


class MemoryArbiter(wiring.Component):
    """Shares one memory port among ``ports`` buffers' memory ports (``ports[k]``, seen as their slave).

    Reads: the requests on the ``ar`` channels take turns (round robin); each accepted request's port
    is remembered in order (up to ``outstanding``), and the read data, which the memory returns in
    request order, goes back to the port of the oldest. Writes: one burst at a time, its address and its
    data from the same port (a write burst is announced only when all of its data is staged, so the
    data never waits); the responses return to the ports in order. Each granted request costs one cycle
    besides its transfer; data beats pass at one a cycle.

    With ``offsets`` (a byte offset per port, each a multiple of 4 KiB) the ports' addresses are relative to their
    own regions and the arbiter places port ``k``'s at ``base + offsets[k]``: the sum is taken once, when the
    request is granted, instead of in every buffer. A buffer whose ``base`` is 0 then drives only the low address
    bits its region needs, and synthesis drops the rest of its address logic and of the request select.
    """

    def __init__(self, *, address_bits, data_bits, ports, outstanding=8, offsets=None):
        check_int("ports", ports)
        check_int("outstanding", outstanding)
        if offsets is not None:
            offsets = tuple(offsets) if isinstance(offsets, (list, tuple)) else offsets
            if (not isinstance(offsets, tuple) or len(offsets) != ports
                    or not all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o < 1 << address_bits
                               and o % _BOUNDARY_BYTES == 0 for o in offsets)):
                raise ValueError(f"offsets must be {ports} byte offsets, multiples of {_BOUNDARY_BYTES} below "
                                 f"2**{address_bits}, not {offsets!r}")
        self.address_bits, self.data_bits, self.ports_count, self.outstanding = \
            address_bits, data_bits, ports, outstanding
        self.offsets = offsets
        signature = memory_port_signature(address_bits=address_bits, data_bits=data_bits)
        members = {"ports": In(signature).array(ports), "mem": Out(signature)}
        if offsets is not None:
            members["base"] = In(address_bits)
        super().__init__(members)

    def _grant(self, m, name, requests):
        """A registered round-robin choice among ``requests``: ``(busy, chosen)``; ``release`` frees it.

        The first requesting port after the last one chosen: the lowest request above it (``after`` holds the
        ports above the last choice), else the lowest request at all — two priority encoders, linear in the
        ports (a compare per (last, next) pair would be quadratic: 25 k LUT for 80 buffers)."""
        n = self.ports_count
        busy = Signal(name=f"{name}_busy")
        chosen = Signal(range(n), name=f"{name}_chosen")
        after = Signal(n, name=f"{name}_after", init=((1 << n) - 1) & ~1)
        pending = Signal(n, name=f"{name}_pending")
        m.d.comb += pending.eq(Cat(*requests))
        region = Signal(self.address_bits, name=f"{name}_region")
        with m.If(~busy & pending.any()):
            first = Signal(range(n), name=f"{name}_first")
            later = pending & after
            for k in reversed(range(n)):            # the lowest index wins: the last assignment taken
                with m.If(Mux(later.any(), later[k], pending[k])):
                    m.d.comb += first.eq(k)
            m.d.sync += [busy.eq(1), chosen.eq(first), after.eq(Const((1 << n) - 1, n) << (first + 1))]
            if self.offsets is not None:
                offset = Signal(self.address_bits, name=f"{name}_offset")
                with m.Switch(first):
                    for k, value in enumerate(self.offsets):
                        with m.Case(k):
                            m.d.comb += offset.eq(value)
                m.d.sync += region.eq(self.base + offset)
        return busy, chosen, region

    def _request(self, m, name, target, region):
        """The granted port's request (assigned per port by the caller), forwarded to ``target`` (the memory's),
        its address placed in its region with ``offsets`` — one adder after the select."""
        request = Signal(burst_request(self.address_bits), name=f"{name}_request")
        if self.offsets is None:
            m.d.comb += target.eq(request)
        else:
            m.d.comb += [target.addr.eq(region + request.addr), target.len.eq(request.len)]
        return request

    def elaborate(self, platform):
        m = Module()
        n, mem = self.ports_count, self.mem
        owner_bits = max(1, (n - 1).bit_length())

        # reads
        m.submodules.read_owners = read_owners = fifo.SyncFIFO(width=owner_bits, depth=self.outstanding)
        reading, reader, read_region = self._grant(m, "read", [p.ar.valid for p in self.ports])
        read_request = self._request(m, "read", mem.ar.payload, read_region)
        for k, port in enumerate(self.ports):
            with m.If(reading & (reader == k)):
                m.d.comb += [mem.ar.valid.eq(port.ar.valid & read_owners.w_rdy), read_request.eq(port.ar.payload),
                             port.ar.ready.eq(mem.ar.ready & read_owners.w_rdy)]
            m.d.comb += [port.r.payload.eq(mem.r.payload),
                         port.r.valid.eq(mem.r.valid & read_owners.r_rdy & (read_owners.r_data == k))]
            with m.If(read_owners.r_data == k):
                m.d.comb += mem.r.ready.eq(port.r.ready & read_owners.r_rdy)
        m.d.comb += [read_owners.w_data.eq(reader), read_owners.w_en.eq(mem.ar.valid & mem.ar.ready),
                     read_owners.r_en.eq(mem.r.valid & mem.r.ready & mem.r.payload.last)]
        with m.If(mem.ar.valid & mem.ar.ready):
            m.d.sync += reading.eq(0)

        # writes: address and data of one burst, then the next
        m.submodules.write_owners = write_owners = fifo.SyncFIFO(width=owner_bits, depth=self.outstanding)
        writing, writer, write_region = self._grant(m, "write", [p.aw.valid for p in self.ports])
        write_request = self._request(m, "write", mem.aw.payload, write_region)
        address_sent, data_sent = Signal(), Signal()
        for k, port in enumerate(self.ports):
            with m.If(writing & (writer == k)):
                m.d.comb += [
                    mem.aw.valid.eq(port.aw.valid & ~address_sent & write_owners.w_rdy),
                    write_request.eq(port.aw.payload),
                    port.aw.ready.eq(mem.aw.ready & ~address_sent & write_owners.w_rdy),
                    mem.w.valid.eq(port.w.valid & ~data_sent),
                    mem.w.payload.eq(port.w.payload),
                    port.w.ready.eq(mem.w.ready & ~data_sent),
                ]
            m.d.comb += [port.b.payload.eq(mem.b.payload),
                         port.b.valid.eq(mem.b.valid & write_owners.r_rdy & (write_owners.r_data == k))]
            with m.If(write_owners.r_data == k):
                m.d.comb += mem.b.ready.eq(port.b.ready & write_owners.r_rdy)
        address_now = mem.aw.valid & mem.aw.ready
        data_done_now = mem.w.valid & mem.w.ready & mem.w.payload.last
        m.d.comb += [write_owners.w_data.eq(writer), write_owners.w_en.eq(address_now),
                     write_owners.r_en.eq(mem.b.valid & mem.b.ready)]
        with m.If(writing):
            with m.If((address_sent | address_now) & (data_sent | data_done_now)):
                m.d.sync += [writing.eq(0), address_sent.eq(0), data_sent.eq(0)]
            with m.Else():
                with m.If(address_now):
                    m.d.sync += address_sent.eq(1)
                with m.If(data_done_now):
                    m.d.sync += data_sent.eq(1)
        return m


class DramFifo(wiring.Component):
    """A FIFO of ``payload_shape`` beats whose storage is a region of DRAM: the skip connection of a
    join that is too long for block RAM.

    Computes: the output beats are the input beats, in order (the stream rules on both sides).

    Each beat takes :attr:`words_per_beat` memory words (the beat padded to whole words, split by a
    :class:`LaneConverter`). The region is a ring of :attr:`region_words` words (a power of two, at least
    ``depth`` beats' worth) at byte address ``base`` (an input, constant while running). Words are staged
    on chip and written in bursts of up to ``burst`` words that never cross a ``burst`` boundary; a burst
    waits until its words are staged, except that when the read side has nothing left to read (nothing
    committed unread, nothing in flight, nothing buffered) whatever is staged goes out at once, so every
    beat reaches the output within the memory's round trip. Reads run ahead of the output by up to
    ``read_buffer`` words (bursts up to ``burst``), as far as the written data allows.

    Capacity: at least :attr:`capacity` beats (the region's) are taken with the output held; the staging
    adds ``2 · burst`` words on the way in and ``read_buffer`` on the way out. Throughput: one beat per
    ``words_per_beat`` cycles, when the memory keeps up. DRAM traffic: every word written once and
    read once (:attr:`traffic_words_per_beat` ``= 2 · words_per_beat``).
    """

    def __init__(self, *, payload_shape, depth, data_bits, address_bits, burst=16, outstanding=4,
                 read_buffer=None):
        self.payload_width = cast_shape("payload_shape", payload_shape).width
        check_int("depth", depth)
        check_memory_geometry(address_bits=address_bits, data_bits=data_bits, burst=burst)
        check_int("outstanding", outstanding)
        self.payload_shape, self.depth = payload_shape, depth
        self.data_bits, self.address_bits, self.burst, self.outstanding = data_bits, address_bits, burst, outstanding
        self.words_per_beat = words_per_beat(self.payload_width, data_bits)
        region = max(burst, depth * self.words_per_beat)
        self.region_words = 1 << (region - 1).bit_length()
        if self.region_bytes > 1 << address_bits:
            raise ValueError(f"a region of {self.region_bytes} bytes does not fit {address_bits}-bit addresses")
        self.read_buffer = 2 * burst if read_buffer is None else check_int("read_buffer", read_buffer, minimum=burst)
        self.staging = 2 * burst
        self.traffic_words_per_beat = 2 * self.words_per_beat
        super().__init__({
            "i_stream": In(stream.Signature(payload_shape)),
            "o_stream": Out(stream.Signature(payload_shape)),
            "base": In(address_bits),
            "mem": Out(memory_port_signature(address_bits=address_bits, data_bits=data_bits)),
        })

    @property
    def region_bytes(self):
        return self.region_words * self.data_bits // 8

    @property
    def capacity(self):
        """Beats the region alone holds: what the deadlock analysis may count on."""
        return self.region_words // self.words_per_beat

    def elaborate(self, platform):
        m = Module()
        d, k, burst = self.data_bits, self.words_per_beat, self.burst
        m.submodules.split = split = LaneConverter(elem_shape=d, in_lanes=k, out_lanes=1)
        m.submodules.join = join = LaneConverter(elem_shape=d, in_lanes=1, out_lanes=k)
        m.submodules.writer = writer = BurstWriter(address_bits=self.address_bits, data_bits=d,
                                                   staging=self.staging, outstanding=self.outstanding)
        m.submodules.reader = reader = BurstReader(address_bits=self.address_bits, data_bits=d,
                                                   buffer_words=self.read_buffer, outstanding=self.outstanding)
        m.d.comb += [
            split.i_stream.payload.as_value().eq(Value.cast(self.i_stream.payload)),
            split.i_stream.valid.eq(self.i_stream.valid),
            self.i_stream.ready.eq(split.i_stream.ready),
            writer.words.payload.eq(split.o_stream.payload.as_value()),
            writer.words.valid.eq(split.o_stream.valid),
            split.o_stream.ready.eq(writer.words.ready),
            join.i_stream.payload.as_value().eq(reader.words[0].payload),
            join.i_stream.valid.eq(reader.words[0].valid),
            reader.words[0].ready.eq(join.i_stream.ready),
            self.o_stream.payload.eq(join.o_stream.payload.as_value()[:self.payload_width]),
            self.o_stream.valid.eq(join.o_stream.valid),
            join.o_stream.ready.eq(self.o_stream.ready),
        ]
        wiring.connect(m, wiring.flipped(self.mem.aw), writer.aw)
        wiring.connect(m, wiring.flipped(self.mem.w), writer.w)
        wiring.connect(m, writer.b, wiring.flipped(self.mem.b))
        wiring.connect(m, wiring.flipped(self.mem.ar), reader.ar)
        wiring.connect(m, reader.r, wiring.flipped(self.mem.r))

        # pointers into the ring, in words, modulo twice its size: written (asked), committed, read
        # (asked), read back; the ring holds what is written and not yet read back
        ring = self.region_words
        pointer = range(2 * ring)
        written, committed, asked, read_back = (Signal(pointer, name=n)
                                                for n in ("written", "committed", "asked", "read_back"))
        shift = (d // 8 - 1).bit_length()

        def address(pointer_):
            return self.base + (pointer_[:(ring - 1).bit_length()] << shift)

        def to_boundary(pointer_):
            return burst - pointer_[:(burst - 1).bit_length()] if burst > 1 else 1

        # write: a whole run to the next burst boundary, or what is staged when the reader starves
        room = Signal(range(2 * ring + 1))
        m.d.comb += room.eq(ring - (written - read_back)[:len(written)])
        starving = (committed == asked) & (reader.reserved[0] == 0)
        full_run = Signal(range(burst + 1))
        run = Signal(range(burst + 1))
        m.d.comb += [full_run.eq(to_boundary(written)),
                     run.eq(Mux(writer.staged >= full_run, full_run, writer.staged))]
        wanted = (writer.staged >= full_run) | (starving & (writer.staged != 0))
        m.d.comb += [writer.burst.valid.eq(writer.can_start & wanted & (room >= run)),
                     writer.burst.payload.addr.eq(address(written)),
                     writer.burst.payload.len.eq(run - 1)]
        with m.If(writer.burst.valid & writer.burst.ready):
            m.d.sync += written.eq(written + run)
        with m.If(writer.committed.valid):
            m.d.sync += committed.eq(committed + writer.committed.payload)

        # read: committed words, up to the next burst boundary
        unread = Signal(range(2 * ring))
        m.d.comb += unread.eq((committed - asked)[:len(asked)])
        read_run = Signal(range(burst + 1))
        m.d.comb += read_run.eq(Mux(unread >= to_boundary(asked), to_boundary(asked), unread))
        m.d.comb += [reader.burst.valid.eq(reader.can_start & (unread != 0)),
                     reader.burst.payload.addr.eq(address(asked)),
                     reader.burst.payload.len.eq(read_run - 1),
                     reader.burst.payload.dest.eq(0)]
        with m.If(reader.burst.valid & reader.burst.ready):
            m.d.sync += asked.eq(asked + read_run)
        with m.If(reader.arrived):
            m.d.sync += read_back.eq(read_back + 1)
        return m


class DramRowTaps(wiring.Component):
    """The rows a vertical window needs, kept in DRAM: a line buffer of ``(taps − 1)·dilation`` rows
    (and more) for a frame far too wide for block RAM.

    Computes, for a ``height × width`` frame of ``channels``-element pixels (whole pixels a beat), one
    output pixel of ``taps · channels`` elements for every output row ``oy`` (``0 ≤ oy < out_height``) and
    column ``x``: element ``ky·channels + c`` is input ``(oy·stride − padding + ky·dilation, x)``, channel
    ``c``, and 0 outside the frame. With ``lanes`` (a memory word's elements, dividing ``channels``) both
    streams carry a word a beat instead of whole pixels: the input ``channels / lanes`` beats a pixel, the
    output ``taps · channels / lanes`` (lane ``i`` of beat ``b`` is element ``b·lanes + i``), each straight
    from a tap's read buffer, so nothing holds a pixel. A ``taps × kw`` convolution is this followed by a ``1 × kw`` one over
    ``taps · channels`` channels, whose line buffer is a few pixels.

    Two sides that meet only in DRAM:

    * **intake**: every input row goes into a ring of :attr:`ring_rows` row slots (a power of two), each
      :attr:`row_words` words long (a pixel takes :attr:`words_per_beat` words; rows start on burst
      boundaries), in bursts that break at burst boundaries and at the row's end. It takes a row while the ring
      has a slot no output still needs, so it runs ahead of the output by up to :attr:`ahead_rows` rows: the
      next frame's first rows come in while this frame's last output rows (bottom padding) go out.
    * **output**: row times ``0 … frame_rows − 1``; in row time ``t`` the output row whose newest tap is row
      ``t`` (if any) goes out, every tap read back from DRAM (a read waits for the write of its data to be
      acknowledged): a tap inside the frame from its row's slot, one outside (padding) from a row of zeros kept
      after the ring, written once after reset before any input row, so that no tap needs a select. Reads run
      ahead of the output by up to ``tap_buffer`` words per tap, ``burst`` words a request.

    A slot is written again only once no output row time still to come, nor any read in flight, needs its
    row, however the memory orders reads and writes.

    Throughput: the read channel carries every tap: an output row time takes :attr:`words_per_beat` cycles per
    pixel per tap (a row time without output, one cycle); the intake a row of words per row on the write
    channel; the two overlap (:meth:`row_time_cycles`, :attr:`cycles_per_frame`). DRAM traffic per frame:
    :attr:`traffic_words`; once after reset, the zero row (:attr:`setup_write_words`).
    """

    def __init__(self, *, elem_shape, channels, height, width, taps, dilation=1, stride=1, padding=0,
                 data_bits, address_bits, burst=16, outstanding=4, tap_buffer=None, lanes=None):
        self.elem_width = cast_shape("elem_shape", elem_shape).width
        for name, value, minimum in (("channels", channels, 1), ("height", height, 1), ("width", width, 1),
                                     ("taps", taps, 2), ("dilation", dilation, 1), ("stride", stride, 1),
                                     ("padding", padding, 0)):
            check_int(name, value, minimum=minimum)
        check_memory_geometry(address_bits=address_bits, data_bits=data_bits, burst=burst)
        check_int("outstanding", outstanding)
        span = (taps - 1) * dilation
        if padding > span:
            raise ValueError(f"padding must be at most (taps - 1)·dilation = {span}, not {padding!r}")
        if height + 2 * padding <= span:
            raise ValueError(f"a frame of height {height} with padding {padding} is shorter than the window "
                             f"({span + 1} rows)")
        self.elem_shape, self.channels, self.height, self.width = elem_shape, channels, height, width
        self.taps, self.dilation, self.stride, self.padding = taps, dilation, stride, padding
        self.data_bits, self.address_bits, self.burst, self.outstanding = data_bits, address_bits, burst, outstanding
        self.out_height = (height + 2 * padding - span - 1) // stride + 1
        self.first_output_row = span - padding                  # row time of output row 0
        last_row_time = self.first_output_row + (self.out_height - 1) * stride
        self.frame_rows = max(height, last_row_time + 1)         # row times per frame
        self.words_per_beat = words_per_beat(channels * self.elem_width, data_bits)
        self.row_words = width * self.words_per_beat
        self.row_stride = -(-self.row_words // burst) * burst
        # the rows an output needs, and room for the intake to run on over a frame boundary
        self.ahead_rows = max(self.first_output_row, self.frame_rows - height) + 2
        self.ring_rows = 1 << (span + self.ahead_rows - 1).bit_length()
        if self.region_bytes > 1 << address_bits:
            raise ValueError(f"a region of {self.region_bytes} bytes does not fit {address_bits}-bit addresses")
        self.tap_buffer = 2 * burst if tap_buffer is None else check_int("tap_buffer", tap_buffer, minimum=burst)
        if lanes is not None and (lanes * self.elem_width != data_bits or channels % lanes):
            word = data_bits // self.elem_width if data_bits % self.elem_width == 0 else "none"
            raise ValueError(f"lanes must be None (whole pixels) or fill a {data_bits}-bit word and divide the "
                             f"{channels} channels ({word} here), not {lanes!r}")
        self.lanes = lanes
        beat = (lanes, lanes) if lanes is not None else (channels, taps * channels)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, beat[0]))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, beat[1]))),
            "base": In(address_bits),
            "mem": Out(memory_port_signature(address_bits=address_bits, data_bits=data_bits)),
        })

    @property
    def region_bytes(self):
        """The ring of row slots, and the row of zeros after it."""
        return (self.ring_rows + 1) * self.row_stride * self.data_bits // 8

    @property
    def setup_write_words(self):
        """Words written once after reset: the row of zeros."""
        return self.row_words

    def output_row(self, row_time):
        """The output row whose newest tap is row ``row_time``, or None."""
        offset = row_time - self.first_output_row
        if offset < 0 or offset % self.stride or offset // self.stride >= self.out_height:
            return None
        return offset // self.stride

    def tap_row(self, row_time, tap):
        """The input row tap ``tap`` reads in row time ``row_time`` (out of the frame: padding)."""
        return row_time - (self.taps - 1 - tap) * self.dilation

    def reads(self, row_time):
        """Taps read back from DRAM in row time ``row_time``: every tap (padding from the zero row), if it gives
        an output."""
        return 0 if self.output_row(row_time) is None else self.taps

    @property
    def write_words(self):
        """Words written per frame: every input row."""
        return self.height * self.row_words

    @property
    def read_words(self):
        """Words read per frame: each tap (padding too), once per output row."""
        return self.row_words * sum(self.reads(t) for t in range(self.frame_rows))

    @property
    def traffic_words(self):
        """Words written and read per frame."""
        return self.write_words + self.read_words

    def row_time_cycles(self, row_time):
        """Output cycles of a row time with a memory that answers at once: :attr:`words_per_beat` per pixel
        per tap read (at least one), or one cycle for a row time without output."""
        if self.output_row(row_time) is None:
            return 1
        return self.width * self.words_per_beat * max(self.reads(row_time), 1)

    @property
    def cycles_per_frame(self):
        """The output's row times, or the intake's rows if the write channel is slower."""
        return max(sum(self.row_time_cycles(t) for t in range(self.frame_rows)), self.write_words)

    def elaborate(self, platform):
        m = Module()
        d, k_words, burst, taps = self.data_bits, self.words_per_beat, self.burst, self.taps
        pixel_bits = self.channels * self.elem_width

        word_beats = self.lanes is not None          # a word a beat in and out: no split, no gathers
        if not word_beats:
            m.submodules.split = split = LaneConverter(elem_shape=d, in_lanes=k_words, out_lanes=1)
        m.submodules.writer = writer = BurstWriter(address_bits=self.address_bits, data_bits=d,
                                                   staging=2 * burst, outstanding=self.outstanding)
        m.submodules.reader = reader = BurstReader(address_bits=self.address_bits, data_bits=d,
                                                   buffer_words=self.tap_buffer, outstanding=self.outstanding,
                                                   destinations=taps)
        collectors = []
        for k in range(0 if word_beats else taps):
            collectors.append(gather := LaneConverter(elem_shape=d, in_lanes=1, out_lanes=k_words))
            m.submodules[f"tap{k}"] = gather
            m.d.comb += [gather.i_stream.payload.as_value().eq(reader.words[k].payload),
                         gather.i_stream.valid.eq(reader.words[k].valid),
                         reader.words[k].ready.eq(gather.i_stream.ready)]
        word_valid, word_ready = Signal(), Signal()
        # the row of zeros (after the ring) goes first: its words, then the input's
        zero_fed = Signal(range(self.row_words + 1))
        zeroing = zero_fed != self.row_words
        with m.If(zeroing):
            m.d.comb += [writer.words.payload.eq(0), writer.words.valid.eq(1)]
            with m.If(writer.words.ready):
                m.d.sync += zero_fed.eq(zero_fed + 1)
        with m.Else():
            if word_beats:             # the input's beats are the words (gated by the ring's room below)
                m.d.comb += [writer.words.payload.eq(self.i_stream.payload.as_value()),
                             writer.words.valid.eq(word_valid), word_ready.eq(writer.words.ready)]
            else:
                m.d.comb += [writer.words.payload.eq(split.o_stream.payload.as_value()),
                             writer.words.valid.eq(split.o_stream.valid),
                             split.o_stream.ready.eq(writer.words.ready)]
        wiring.connect(m, wiring.flipped(self.mem.aw), writer.aw)
        wiring.connect(m, wiring.flipped(self.mem.w), writer.w)
        wiring.connect(m, writer.b, wiring.flipped(self.mem.b))
        wiring.connect(m, wiring.flipped(self.mem.ar), reader.ar)
        wiring.connect(m, reader.r, wiring.flipped(self.mem.r))

        # absolute row numbers (input rows counted across frames) modulo 2^row_bits: the ring slot is their
        # low bits; rows in use are less than a ring apart, so differences are exact
        row_bits = (self.ring_rows - 1).bit_length() + 2
        shift = (d // 8 - 1).bit_length()

        def address(absolute_row, offset):
            slot = absolute_row[:(self.ring_rows - 1).bit_length()]
            return self.base + ((slot * self.row_stride + offset) << shift)

        def zero_address(offset):
            return self.base + ((self.ring_rows * self.row_stride + offset) << shift)

        def run(offset):
            """Words of the burst starting at ``offset`` of a row: to the next burst boundary or the row's end."""
            return Mux(self.row_words - offset >= burst, burst, self.row_words - offset)

        def gives(t):
            """Row time ``t`` gives an output row (:meth:`output_row`): two compares and, for a power-of-two
            stride, its low bits (a table of row times otherwise; a table always costs LUTs per row)."""
            flag = Signal(name="gives")
            stride, first = self.stride, self.first_output_row
            last = first + (self.out_height - 1) * stride
            if stride & (stride - 1) == 0:
                phase = (t - first)[:(stride - 1).bit_length()]
                m.d.comb += flag.eq((t >= first) & (t <= last) & (phase == 0))
            else:
                for row_time in range(self.frame_rows):
                    if self.output_row(row_time) is not None:
                        with m.If(t == row_time):
                            m.d.comb += flag.eq(1)
            return flag

        def in_frame(row):
            return (row >= 0) & (row < self.height)

        def before(a, b):
            """Modular ``a < b`` for absolute rows less than half the counter apart."""
            return (a - b)[row_bits - 1]

        # --- the output side's position: row time t, column x of frame base `frame`; the oldest row it needs
        t, x, frame = Signal(range(self.frame_rows)), Signal(range(self.width)), Signal(row_bits)
        oldest = Signal(row_bits)
        m.d.comb += oldest.eq(frame + Mux(t > (taps - 1) * self.dilation, t - (taps - 1) * self.dilation, 0))

        # --- intake: take a row while its slot is free (all of the row's pixels, then the next)
        in_row, in_x = Signal(row_bits), Signal(range(self.width))
        room = before(in_row, oldest + self.ring_rows)
        if word_beats:
            in_word = Signal(range(k_words))                # the pixel's word the next beat is
            pixel_in = in_word == k_words - 1
            m.d.comb += [word_valid.eq(self.i_stream.valid & room), self.i_stream.ready.eq(word_ready & room)]
            with m.If(self.i_stream.valid & self.i_stream.ready):
                m.d.sync += in_word.eq(Mux(pixel_in, 0, in_word + 1))
        else:
            pixel_in = 1
            m.d.comb += [split.i_stream.payload.as_value().eq(self.i_stream.payload.as_value()),
                         split.i_stream.valid.eq(self.i_stream.valid & room),
                         self.i_stream.ready.eq(split.i_stream.ready & room)]
        with m.If(self.i_stream.valid & self.i_stream.ready & pixel_in):
            m.d.sync += in_x.eq(Mux(in_x == self.width - 1, 0, in_x + 1))
            with m.If(in_x == self.width - 1):
                m.d.sync += in_row.eq(in_row + 1)

        # --- writes: the zero row, then every input row, in bursts; committed rows and words as their responses
        # come back (the zero row's first: responses come in order)
        w_row, w_offset = Signal(row_bits), Signal(range(self.row_words))
        c_row, c_offset = Signal(row_bits), Signal(range(self.row_words + 1))
        w_run = Signal(range(burst + 1))
        zero_asked, zero_committed = Signal(), Signal()
        m.d.comb += [w_run.eq(run(w_offset)),
                     writer.burst.valid.eq(writer.can_start),
                     writer.burst.payload.addr.eq(Mux(zero_asked, address(w_row, w_offset), zero_address(w_offset))),
                     writer.burst.payload.len.eq(w_run - 1)]
        with m.If(writer.burst.valid & writer.burst.ready):
            with m.If(w_offset + w_run == self.row_words):
                m.d.sync += w_offset.eq(0)
                with m.If(zero_asked):
                    m.d.sync += w_row.eq(w_row + 1)
                with m.Else():
                    m.d.sync += zero_asked.eq(1)
            with m.Else():
                m.d.sync += w_offset.eq(w_offset + w_run)
        with m.If(writer.committed.valid):
            with m.If(c_offset + writer.committed.payload == self.row_words):
                m.d.sync += c_offset.eq(0)
                with m.If(zero_committed):
                    m.d.sync += c_row.eq(c_row + 1)
                with m.Else():
                    m.d.sync += zero_committed.eq(1)
            with m.Else():
                m.d.sync += c_offset.eq(c_offset + writer.committed.payload)

        # --- reads, running ahead of the output: row times, then bursts along the row, then taps
        r_time, r_offset = Signal(range(self.frame_rows)), Signal(range(self.row_words))
        r_tap = Signal(range(taps))
        r_frame = Signal(row_bits)
        r_gives = gives(r_time)
        r_row, r_in_frame = Signal(row_bits), Signal()
        r_run = Signal(range(burst + 1))
        for k in range(taps):
            with m.If(r_tap == k):
                row = r_time - (taps - 1 - k) * self.dilation
                m.d.comb += [r_in_frame.eq(in_frame(row)), r_row.eq(r_frame + row)]
        m.d.comb += r_run.eq(run(r_offset))
        # (the committed counters count input rows once the zero row is in)
        written = Mux(r_in_frame,
                      zero_committed & (before(r_row, c_row) | ((r_row == c_row) & (c_offset >= r_offset + r_run))),
                      zero_committed)
        m.d.comb += [reader.burst.valid.eq(reader.can_start & r_gives & written),
                     reader.burst.payload.addr.eq(Mux(r_in_frame, address(r_row, r_offset), zero_address(r_offset))),
                     reader.burst.payload.len.eq(r_run - 1),
                     reader.burst.payload.dest.eq(r_tap)]
        advance = (reader.burst.valid & reader.burst.ready) | ~r_gives
        with m.If(advance):
            last_tap = (r_tap == taps - 1) | ~r_gives
            last_burst = (r_offset + r_run == self.row_words) | ~r_gives
            m.d.sync += r_tap.eq(Mux(last_tap, 0, r_tap + 1))
            with m.If(last_tap):
                m.d.sync += r_offset.eq(Mux(last_burst, 0, r_offset + r_run))
                with m.If(last_burst):
                    with m.If(r_time == self.frame_rows - 1):
                        m.d.sync += [r_time.eq(0), r_frame.eq(r_frame + self.height)]
                    with m.Else():
                        m.d.sync += r_time.eq(r_time + 1)

        # --- the output: every tap from its buffer (padding taps were read from the zero row)
        t_gives = gives(t)
        if word_beats:
            # a word a beat: tap after tap, each tap's words in order, straight from its read buffer
            o_tap, o_word = Signal(range(taps)), Signal(range(k_words))
            for k in range(taps):
                with m.If(o_tap == k):
                    m.d.comb += [self.o_stream.payload.as_value().eq(reader.words[k].payload),
                                 self.o_stream.valid.eq(t_gives & reader.words[k].valid),
                                 reader.words[k].ready.eq(t_gives & self.o_stream.ready)]
            sent = self.o_stream.valid & self.o_stream.ready
            pixel_out = (o_tap == taps - 1) & (o_word == k_words - 1)
            with m.If(sent):
                m.d.sync += o_word.eq(Mux(o_word == k_words - 1, 0, o_word + 1))
                with m.If(o_word == k_words - 1):
                    m.d.sync += o_tap.eq(Mux(o_tap == taps - 1, 0, o_tap + 1))
            step = Mux(t_gives, sent & pixel_out, 1)
        else:
            taps_ready = Signal()
            m.d.comb += taps_ready.eq(1)
            for k in range(taps):
                with m.If(~collectors[k].o_stream.valid):
                    m.d.comb += taps_ready.eq(0)
                m.d.comb += self.o_stream.payload.as_value()[k * pixel_bits:(k + 1) * pixel_bits].eq(
                    collectors[k].o_stream.payload.as_value()[:pixel_bits])
            m.d.comb += self.o_stream.valid.eq(t_gives & taps_ready)
            step = Mux(t_gives, self.o_stream.valid & self.o_stream.ready, 1)
            for k in range(taps):
                m.d.comb += collectors[k].o_stream.ready.eq(t_gives & self.o_stream.ready & taps_ready)
        with m.If(step):
            with m.If((x == self.width - 1) | ~t_gives):
                m.d.sync += x.eq(0)
                with m.If(t == self.frame_rows - 1):
                    m.d.sync += [t.eq(0), frame.eq(frame + self.height)]
                with m.Else():
                    m.d.sync += t.eq(t + 1)
            with m.Else():
                m.d.sync += x.eq(x + 1)
        return m

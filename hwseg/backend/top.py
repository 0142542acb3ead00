"""The accelerator's top level: AXI4-Stream in, the layers' graph stitched with forks and FIFOs, AXI4-Stream out."""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.dram import DramFifo, MemoryArbiter
from ..hw.fifo import StreamFIFO
from ..hw.fork import StreamFork
from ..hw.lanes import LaneConverter
from ..hw.skid import SkidBuffer
from ..hw.weights import WeightLoader, WeightRam, weight_image
from .lower import LoweredNode, input_ports

__all__ = ["Accelerator", "byte_padded", "REGION_ALIGN"]

#: each DRAM buffer's region starts on a 4 KiB boundary of the design's region
REGION_ALIGN = 4096


def byte_padded(bits: int) -> int:
    return (bits + 7) // 8 * 8


class Accelerator(wiring.Component):
    """One streaming accelerator for a whole network (any DAG of supported layers).

    ``s_axis_tdata`` carries one input pixel per beat (channel ``c`` in bits
    ``[c·b, (c+1)·b)``, padded to whole bytes); ``s_axis_tlast`` is accepted and ignored
    (frames are counted, not marked, on the way in). ``m_axis_tdata`` carries one output
    pixel per beat the same way, and ``m_axis_tlast`` marks each frame's last beat. Frames
    follow one another without reset.

    Stitching: a stream read by several layers goes through a :class:`~hwseg.hw.fork.StreamFork`
    (one copy per reading input, in graph order); on each edge, a
    :class:`~hwseg.hw.lanes.LaneConverter` where the producer's lanes differ from the consumer's,
    and a :class:`~hwseg.hw.fifo.StreamFIFO` where the node asks for one (in front of window
    layers, and on join inputs: ``hwseg.passes.size_skip_fifos``) — behind the converter, except a
    join's in front of one that splits a forked stream (of the same pixels in wide beats), so that the
    converter never holds up the fork while the FIFO has room. Where its node's ``skid_lanes`` says
    (``hwseg.passes.register_ready``), a layer input gets a :class:`~hwseg.hw.skid.SkidBuffer` of those lanes on
    the converter's narrower side (in front of it, or between it and the FIFO), so that the ready paths stop at a
    register at each layer boundary.

    Buffers in DRAM (a :class:`~hwseg.hw.dram.DramRowTaps` layer, a :class:`~hwseg.hw.dram.DramFifo` on a join's
    input, between converters to and from whole pixels) share one AXI4 master, ``m_axi_*`` (through a
    :class:`~hwseg.hw.dram.MemoryArbiter` when there are several; INCR bursts of full-width beats, every byte
    written, one ID: ``awid``/``arid`` 0, ``bid``/``rid`` ignored), and each has its region in the design's, which
    starts at byte address ``dram_base`` (an input,
    constant while running): in graph order, each on a 4 KiB boundary. :attr:`dram_regions` lists them (name,
    offset, bytes) once the design is elaborated, :attr:`dram_bytes` their total. A design with nothing in DRAM
    has neither port.

    Layers whose weights are loaded (a convolution lowered with ``weights_loaded``) get them from one
    :class:`~hwseg.hw.weights.WeightLoader`, the last user of the memory port, whose region (``weights``) must
    hold :attr:`weight_image` (known once the design is elaborated; empty when every weight is in ROM) before the
    design leaves reset.
    """

    def __init__(self, lowered: list[LoweredNode], *, in_channels: int, out_channels: int, out_pixels: int):
        if not lowered or lowered[0].build is not None or lowered[0].inputs:
            raise ValueError("the first lowered node must be the network input")
        known = set()
        for node in lowered:
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise ValueError(f"layer {node.name!r} reads {missing[0]!r}, which does not come before it")
            if node is not lowered[0] and node.build is None and len(node.inputs) != 1:
                raise ValueError(f"layer {node.name!r} has no component, so it must have exactly one input")
            known.add(node.name)
        self._lowered = tuple(lowered)
        self._in_channels, self._out_channels, self._out_pixels = in_channels, out_channels, out_pixels
        in_shape, out_shape = lowered[0].out_shape, lowered[-1].out_shape
        self.in_width = byte_padded(in_channels * Shape.cast(in_shape).width)
        self.out_width = byte_padded(out_channels * Shape.cast(out_shape).width)
        memories = [node.memory for node in lowered if node.memory is not None]
        port = lambda memory: (memory["data_bits"], memory["address_bits"])
        if any(port(memory) != port(memories[0]) for memory in memories):
            raise ValueError("every buffer in DRAM must use the same memory port (data and address widths)")
        self.memory = memories[0] if memories else None
        self.dram_regions: list[tuple[str, int, int]] = []
        self.weight_image = b""
        ports = {
            "s_axis_tdata": In(self.in_width),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.out_width),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        }
        if self.memory is not None:
            a, d = self.memory["address_bits"], self.memory["data_bits"]
            ports.update({"dram_base": In(a)})
            # (one ID, always 0: every burst in order; bid and rid are not looked at)
            for prefix in ("aw", "ar"):
                ports.update({f"m_axi_{prefix}id": Out(1), f"m_axi_{prefix}addr": Out(a), f"m_axi_{prefix}len": Out(8), f"m_axi_{prefix}size": Out(3),
                              f"m_axi_{prefix}burst": Out(2), f"m_axi_{prefix}valid": Out(1),
                              f"m_axi_{prefix}ready": In(1)})
                if prefix == "aw":
                    ports.update({"m_axi_wdata": Out(d), "m_axi_wstrb": Out(d // 8), "m_axi_wlast": Out(1),
                                  "m_axi_wvalid": Out(1), "m_axi_wready": In(1), "m_axi_bid": In(1), "m_axi_bresp": In(2),
                                  "m_axi_bvalid": In(1), "m_axi_bready": Out(1)})
            ports.update({"m_axi_rid": In(1), "m_axi_rdata": In(d), "m_axi_rresp": In(2), "m_axi_rlast": In(1), "m_axi_rvalid": In(1),
                          "m_axi_rready": Out(1)})
        super().__init__(ports)

    @property
    def dram_bytes(self) -> int:
        """The DRAM region the design needs (after elaboration)."""
        return max((offset + size for _, offset, size in self.dram_regions), default=0)

    @staticmethod
    def _adapt(m, name, producer, shape, from_lanes, to_lanes):
        """``producer`` regrouped from ``from_lanes`` to ``to_lanes`` lanes."""
        if from_lanes == to_lanes:
            return producer
        converter = LaneConverter(elem_shape=shape, in_lanes=from_lanes, out_lanes=to_lanes)
        m.submodules[name] = converter
        wiring.connect(m, producer, converter.i_stream)
        return converter.o_stream

    @staticmethod
    def _fifo(m, name, producer, shape, lanes, depth):
        """``producer`` through a FIFO of ``depth`` beats of ``lanes`` lanes."""
        fifo = StreamFIFO(payload_shape=data.ArrayLayout(shape, lanes), depth=depth)
        m.submodules[name] = fifo
        wiring.connect(m, producer, fifo.i_stream)
        return fifo.o_stream

    @staticmethod
    def _skid(m, name, producer, shape, lanes):
        """``producer`` through a :class:`~hwseg.hw.skid.SkidBuffer` of ``lanes`` lanes: its ready a register."""
        skid = SkidBuffer(payload_shape=data.ArrayLayout(shape, lanes))
        m.submodules[name] = skid
        wiring.connect(m, producer, skid.i_stream)
        return skid.o_stream

    def _dram_fifo(self, m, name, producer, shape, from_lanes, to_lanes, lanes, depth, memory):
        """``producer`` through a FIFO in DRAM of ``depth`` beats of ``to_lanes`` lanes, kept as beats of ``lanes``
        lanes (``hwseg.passes.place_fifos.dram_fifo_lanes``), with the staging ``memory`` gives."""
        stream_ = self._adapt(m, f"{name}_beats", producer, shape, from_lanes, lanes)
        fifo = DramFifo(payload_shape=data.ArrayLayout(shape, lanes), depth=-(-depth * to_lanes // lanes),
                        data_bits=memory["data_bits"], address_bits=memory["address_bits"], burst=memory["burst"],
                        outstanding=memory["outstanding"], read_buffer=memory["read_buffer"])
        m.submodules[name] = fifo
        wiring.connect(m, stream_, fifo.i_stream)
        self._memory_users.append((name, fifo))
        return self._adapt(m, f"{name}_lanes", fifo.o_stream, shape, lanes, to_lanes)

    def _connect_memory(self, m):
        """The DRAM buffers' regions and memory ports, through the arbiter, onto ``m_axi_*``. Several buffers
        address their own regions from 0 (only the bits a region needs) and the arbiter places each."""
        users, offset = self._memory_users, 0
        self.dram_regions = []
        for name, user in users:
            self.dram_regions.append((name, offset, user.region_bytes))
            offset += -(-user.region_bytes // REGION_ALIGN) * REGION_ALIGN
        if len(users) > 1:
            m.submodules.memory_arbiter = arbiter = MemoryArbiter(
                address_bits=self.memory["address_bits"], data_bits=self.memory["data_bits"], ports=len(users),
                offsets=[start for _, start, _ in self.dram_regions])
            m.d.comb += arbiter.base.eq(self.dram_base)
            for (_, user), port in zip(users, arbiter.ports):
                m.d.comb += user.base.eq(0)
                wiring.connect(m, user.mem, port)
            port = arbiter.mem
        else:
            m.d.comb += users[0][1].base.eq(self.dram_base)
            port = users[0][1].mem
        size = (self.memory["data_bits"] // 8 - 1).bit_length()
        m.d.comb += [
            self.m_axi_awaddr.eq(port.aw.payload.addr), self.m_axi_awlen.eq(port.aw.payload.len),
            self.m_axi_awsize.eq(size), self.m_axi_awburst.eq(1), self.m_axi_awvalid.eq(port.aw.valid),
            port.aw.ready.eq(self.m_axi_awready),
            self.m_axi_wdata.eq(port.w.payload.data), self.m_axi_wlast.eq(port.w.payload.last),
            self.m_axi_wstrb.eq(-1), self.m_axi_wvalid.eq(port.w.valid), port.w.ready.eq(self.m_axi_wready),
            port.b.payload.eq(self.m_axi_bresp), port.b.valid.eq(self.m_axi_bvalid), self.m_axi_bready.eq(port.b.ready),
            self.m_axi_araddr.eq(port.ar.payload.addr), self.m_axi_arlen.eq(port.ar.payload.len),
            self.m_axi_arsize.eq(size), self.m_axi_arburst.eq(1), self.m_axi_arvalid.eq(port.ar.valid),
            port.ar.ready.eq(self.m_axi_arready),
            port.r.payload.data.eq(self.m_axi_rdata), port.r.payload.last.eq(self.m_axi_rlast),
            port.r.valid.eq(self.m_axi_rvalid), self.m_axi_rready.eq(port.r.ready),
        ]

    def _load_weights(self, m, components):
        """One loader for every layer whose weights are loaded, in graph order; its image in :attr:`weight_image`.
        Layers whose weights share an UltraRAM (``LoweredNode.weight_ram``) read one :class:`WeightRam`, which the
        loader writes."""
        loaded = [(name, component) for name, component in components if getattr(component, "weights_loaded", False)]
        if not loaded:
            self.weight_image = b""
            return
        arrays = [component.mac_array for _, component in loaded]
        memory = self.memory
        loader = WeightLoader(stores=[(a.weight_word_bits, len(a.weight_words)) for a in arrays],
                              data_bits=memory["data_bits"], address_bits=memory["address_bits"], burst=memory["burst"],
                              outstanding=memory["outstanding"])
        m.submodules.weight_loader = loader
        shared = {node.name: node.weight_ram for node in self._lowered if node.weight_ram is not None}
        groups: dict[str, list] = {}
        for k, (name, component) in enumerate(loaded):
            if name in shared:
                group, index = shared[name]
                groups.setdefault(group, []).append((index, k, component))
            else:
                wiring.connect(m, getattr(loader, f"store{k}"), component.load)
        for group, members in groups.items():
            members.sort(key=lambda member: member[0])
            if [index for index, _, _ in members] != list(range(len(members))):
                raise ValueError(f"the layers sharing weight RAM {group!r} are not its clients 0, 1, …")
            ram = WeightRam(clients=[(c.mac_array.weight_word_bits, len(c.mac_array.weight_words))
                                     for _, _, c in members], ram_style="ultra")
            m.submodules[f"{group}_weight_ram"] = ram
            for index, k, component in members:
                wiring.connect(m, getattr(loader, f"store{k}"), getattr(ram, f"load{index}"))
                wiring.connect(m, component.weight_port, getattr(ram, f"port{index}"))
        self.weight_image = weight_image([(a.weight_word_bits, a.weight_words) for a in arrays],
                                         data_bits=memory["data_bits"])
        self._memory_users.append(("weights", loader))

    def _readers(self):
        """How many inputs (of all nodes, plus the accelerator's output) read each node's stream."""
        readers = {node.name: 0 for node in self._lowered}
        for node in self._lowered:
            for name in node.inputs:
                readers[name] += 1
        readers[self._lowered[-1].name] += 1
        return readers

    def elaborate(self, platform):
        m = Module()
        self._memory_users = []
        source = self._lowered[0]
        producer = stream.Signature(data.ArrayLayout(source.out_shape, self._in_channels)).create()
        in_bits = self._in_channels * Shape.cast(source.out_shape).width
        m.d.comb += [
            producer.payload.eq(self.s_axis_tdata[:in_bits]),
            producer.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(producer.ready),
        ]
        readers = self._readers()
        copies = {}    # node name -> streams not yet handed to a reader
        components = []
        lanes = {}

        def publish(name, stream_, lanes_):
            lanes[name] = lanes_
            if readers[name] > 1:
                fork = StreamFork(payload_shape=data.ArrayLayout(shape_of[name], lanes_), outputs=readers[name])
                m.submodules[f"{name}_fork"] = fork
                wiring.connect(m, stream_, fork.i_stream)
                copies[name] = list(fork.o_streams)
            else:
                copies[name] = [stream_]

        shape_of = {node.name: node.out_shape for node in self._lowered}
        publish(source.name, producer, source.out_lanes)
        for node in self._lowered[1:]:
            if node.build is None:                     # a Fork node: its input's stream, copied on
                publish(node.name, copies[node.inputs[0]].pop(0), lanes[node.inputs[0]])
                continue
            m.submodules[node.name] = component = node.build()
            components.append((node.name, component))
            if hasattr(component, "mem"):
                self._memory_users.append((node.name, component))
            for k, (name, port) in enumerate(zip(node.inputs, input_ports(component))):
                edge = f"{node.name}_in{k}" if len(node.inputs) > 1 else node.name
                stream_, depth = copies[name].pop(0), node.fifo_depths[k] if node.fifo_depths else 0
                if depth and node.fifo_offchip and node.fifo_offchip[k]:
                    stream_ = self._dram_fifo(m, f"{edge}_dram_fifo", stream_, node.in_shapes[k], lanes[name],
                                              node.in_lanes[k], node.fifo_lanes[k], depth, node.memory)
                    wiring.connect(m, stream_, port)
                    continue
                # a join's FIFO in front of a splitting converter behind a fork sits on the converter's wide
                # side, so that the fork hands over a beat per cycle while the converter sends the pieces of one
                wide = lanes[name] > node.in_lanes[k] and readers[name] > 1 and len(node.inputs) > 1
                if depth and wide:
                    stream_ = self._fifo(m, f"{edge}_fifo", stream_, node.in_shapes[k], lanes[name],
                                         -(-depth * node.in_lanes[k] // lanes[name]))
                # the skid buffer, at the lanes of one side of the converter (register_ready chose which)
                skid = node.skid_lanes[k] if node.skid_lanes else 0
                if skid and skid == lanes[name] != node.in_lanes[k]:
                    stream_ = self._skid(m, f"{edge}_skid", stream_, node.in_shapes[k], skid)
                stream_ = self._adapt(m, f"{edge}_lanes", stream_, node.in_shapes[k], lanes[name], node.in_lanes[k])
                if skid and skid == node.in_lanes[k]:
                    stream_ = self._skid(m, f"{edge}_skid", stream_, node.in_shapes[k], skid)
                if depth and not wide:
                    stream_ = self._fifo(m, f"{edge}_fifo", stream_, node.in_shapes[k], node.in_lanes[k], depth)
                wiring.connect(m, stream_, port)
            publish(node.name, component.o_stream, node.out_lanes)
        self._load_weights(m, components)
        if self._memory_users:
            self._connect_memory(m)
        last = self._lowered[-1]
        producer = self._adapt(m, "output_lanes", copies[last.name].pop(0), last.out_shape, lanes[last.name],
                               self._out_channels)

        # tlast: count the beats of each output frame.
        last_beat = self._out_pixels - 1
        beat_index = Signal(range(self._out_pixels))
        with m.If(producer.valid & self.m_axis_tready):
            m.d.sync += beat_index.eq(Mux(beat_index == last_beat, 0, beat_index + 1))
        m.d.comb += [
            self.m_axis_tdata.eq(producer.payload.as_value()),
            self.m_axis_tvalid.eq(producer.valid),
            producer.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(beat_index == last_beat),
        ]
        return m

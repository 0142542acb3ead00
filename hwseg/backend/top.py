"""The accelerator's top level: AXI4-Stream in, the layers' graph stitched with forks and FIFOs, AXI4-Stream out."""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.fifo import StreamFIFO
from ..hw.fork import StreamFork
from ..hw.lanes import LaneConverter
from .lower import LoweredNode, input_ports

__all__ = ["Accelerator", "byte_padded"]


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
    converter never holds up the fork while the FIFO has room.
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
        super().__init__({
            "s_axis_tdata": In(self.in_width),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.out_width),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

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
            for k, (name, port) in enumerate(zip(node.inputs, input_ports(component))):
                edge = f"{node.name}_in{k}" if len(node.inputs) > 1 else node.name
                stream_, depth = copies[name].pop(0), node.fifo_depths[k] if node.fifo_depths else 0
                # a join's FIFO in front of a splitting converter behind a fork sits on the converter's wide
                # side, so that the fork hands over a beat per cycle while the converter sends the pieces of one
                wide = lanes[name] > node.in_lanes[k] and readers[name] > 1 and len(node.inputs) > 1
                if depth and wide:
                    stream_ = self._fifo(m, f"{edge}_fifo", stream_, node.in_shapes[k], lanes[name],
                                         -(-depth * node.in_lanes[k] // lanes[name]))
                stream_ = self._adapt(m, f"{edge}_lanes", stream_, node.in_shapes[k], lanes[name], node.in_lanes[k])
                if depth and not wide:
                    stream_ = self._fifo(m, f"{edge}_fifo", stream_, node.in_shapes[k], node.in_lanes[k], depth)
                wiring.connect(m, stream_, port)
            publish(node.name, component.o_stream, node.out_lanes)
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

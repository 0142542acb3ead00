"""The accelerator's top level: AXI4-Stream in, the layers in a chain, AXI4-Stream out."""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.fifo import StreamFIFO
from ..hw.lanes import LaneConverter
from .lower import LoweredNode

__all__ = ["Accelerator", "byte_padded"]


def byte_padded(bits: int) -> int:
    return (bits + 7) // 8 * 8


class Accelerator(wiring.Component):
    """One streaming accelerator for a whole network.

    ``s_axis_tdata`` carries one input pixel per beat (channel ``c`` in bits
    ``[c·b, (c+1)·b)``, padded to whole bytes); ``s_axis_tlast`` is accepted and ignored
    (frames are counted, not marked, on the way in). ``m_axis_tdata`` carries one output
    pixel per beat the same way, and ``m_axis_tlast`` marks each frame's last beat. Frames
    follow one another without reset. Between two layers whose lanes differ a
    :class:`~hwseg.hw.lanes.LaneConverter` regroups the channels.
    """

    def __init__(self, lowered: list[LoweredNode], *, in_channels: int, out_channels: int, out_pixels: int):
        if not lowered or lowered[0].build is not None:
            raise ValueError("the first lowered node must be the network input")
        for previous, node in zip(lowered, lowered[1:]):
            if node.inputs != (previous.name,):
                raise ValueError(f"layer {node.name!r} does not follow {previous.name!r}: only chains are supported")
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
        lanes = source.out_lanes
        for node in self._lowered[1:]:
            producer = self._adapt(m, f"{node.name}_lanes", producer, node.in_shape, lanes, node.in_lanes)
            if node.fifo_depth:
                fifo = StreamFIFO(payload_shape=data.ArrayLayout(node.in_shape, node.in_lanes),
                                  depth=node.fifo_depth)
                m.submodules[f"{node.name}_fifo"] = fifo
                wiring.connect(m, producer, fifo.i_stream)
                producer = fifo.o_stream
            m.submodules[node.name] = component = node.build()
            wiring.connect(m, producer, component.i_stream)
            producer, lanes = component.o_stream, node.out_lanes
        last = self._lowered[-1]
        producer = self._adapt(m, "output_lanes", producer, last.out_shape, lanes, self._out_channels)

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

"""A per-channel affine map of a pixel stream: the hardware of a depthwise 1×1 convolution."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, check_shape, is_int, range_of, shape_for
from .groups import group_registers

__all__ = ["ChannelAffine"]


class ChannelAffine(wiring.Component):
    """``y[c] = weights[c]·x[c] + bias[c]`` on a pixel stream of ``lanes`` elements per beat.

    A 1×1 convolution with ``groups = channels`` (the frontend makes one when a BatchNorm after a
    concatenation is pushed into a branch that has no convolution of its own, e.g. the max-pool of
    ERFNet's downsampler).

    * ``lanes = channels`` (the default, whole pixels): each lane multiplies by its own constant, so
      synthesis reduces the products to shifts and adds (a power-of-two weight costs no logic).
    * ``lanes < channels`` (folded): beats cycle through the channel groups ``g = 0 … channels/lanes − 1``
      (lane ``i`` of group ``g`` is channel ``g·lanes + i``) and wrap, so pixels and frames follow back
      to back. Each lane's weight and bias sit in registers loaded on each input transfer with the next
      group's (as :class:`~hwseg.hw.requant.MulShiftRequant` does), so the product is by a register.

    Latency 1 cycle (registered output); throughput 1 beat/cycle; ``i_stream.ready =
    ~o_stream.valid | o_stream.ready``. ``acc_shape`` must hold every reachable result.
    """

    def __init__(self, *, in_shape, acc_shape, channels, weights, bias, lanes=None):
        check_shape("in_shape", in_shape)
        check_shape("acc_shape", acc_shape)
        check_int("channels", channels)
        lanes = channels if lanes is None else lanes
        check_int("lanes", lanes)
        if channels % lanes:
            raise ValueError(f"lanes must divide channels={channels}, not {lanes!r}")
        for name, values in (("weights", weights), ("bias", bias)):
            if (not isinstance(values, (list, tuple)) or len(values) != channels
                    or not all(is_int(v) for v in values)):
                raise ValueError(f"{name} must be a list of {channels} ints (one per channel), not {values!r}")
        x_lo, x_hi = range_of(in_shape)
        ends = [w * x + b for w, b in zip(weights, bias) for x in (x_lo, x_hi)]
        acc_lo, acc_hi = range_of(acc_shape)
        if min(ends) < acc_lo or max(ends) > acc_hi:
            raise ValueError(f"acc_shape must hold the results [{min(ends)}, {max(ends)}] (it needs "
                             f"{shape_for(min(ends), max(ends))!r}), not {acc_shape!r}")
        self.in_shape, self.acc_shape, self.channels, self.lanes = in_shape, acc_shape, channels, lanes
        self.weights, self.bias = tuple(weights), tuple(bias)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(in_shape, lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, lanes))),
        })

    @property
    def groups(self):
        """Beats per pixel (``channels / lanes``)."""
        return self.channels // self.lanes

    @property
    def latency(self):
        """Cycles from an input transfer to its output beat being valid."""
        return 1

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        take = i.valid & i.ready
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        if self.groups == 1:
            coefficients = list(zip(self.weights, self.bias))
        else:
            coefficients = group_registers(m, take, [
                (shape_for(min(-1, *self.weights), max(self.weights)), "weight", self.weights),
                (shape_for(min(-1, *self.bias), max(self.bias)), "bias", self.bias)], lanes=self.lanes, groups=self.groups)
        with m.If(take):
            m.d.sync += o.valid.eq(1)
            for lane, (w, b) in enumerate(coefficients):
                m.d.sync += o.payload[lane].eq(i.payload[lane] * w + b)
        return m

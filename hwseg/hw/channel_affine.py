"""A per-channel affine map of a pixel stream: the hardware of a depthwise 1×1 convolution."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, check_shape, is_int, range_of, shape_for

__all__ = ["ChannelAffine"]


class ChannelAffine(wiring.Component):
    """``y[c] = weights[c]·x[c] + bias[c]`` on whole pixels of ``channels`` elements.

    A 1×1 convolution with ``groups = channels`` (the frontend makes one when a BatchNorm after a
    concatenation is pushed into a branch that has no convolution of its own, e.g. the max-pool of
    ERFNet's downsampler). Each lane multiplies by its own constant, so synthesis reduces the
    products to shifts and adds (a power-of-two weight costs no logic).

    Latency 1 cycle (registered output); throughput 1 pixel/cycle; ``i_stream.ready =
    ~o_stream.valid | o_stream.ready``. ``acc_shape`` must hold every reachable result.
    """

    def __init__(self, *, in_shape, acc_shape, channels, weights, bias):
        check_shape("in_shape", in_shape)
        check_shape("acc_shape", acc_shape)
        check_int("channels", channels)
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
        self.in_shape, self.acc_shape, self.channels = in_shape, acc_shape, channels
        self.weights, self.bias = tuple(weights), tuple(bias)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(in_shape, channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, channels))),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            m.d.sync += o.valid.eq(1)
            for c, (w, b) in enumerate(zip(self.weights, self.bias)):
                m.d.sync += o.payload[c].eq(i.payload[c] * w + b)
        return m

"""Whole layers composed of the basic blocks: a convolution and a max-pool on pixel streams."""

from amaranth import Module, Shape, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import range_of
from .bitconv import BitMacArray
from .folded_window import FoldedWindow
from .mac_array import MacArray
from .pool import WindowMax
from .window import SlidingWindow

__all__ = ["Conv2dLayer", "MaxPoolLayer"]


def _is_pointwise(kernel, stride, padding):
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


class Conv2dLayer(wiring.Component):
    """A convolution: sliding window → folded MAC array.

    ``arithmetic="multiply"`` uses a :class:`MacArray` (multipliers, DSP slices; ``pack=2``: two PEs' products
    per multiplier; ``multiplier="logic"``: shift-and-add products);
    ``"popcount"`` takes ±1 weights to a :class:`BitMacArray` (bit planes and popcounts, no
    multiplier), with the same interface and timing.

    ``window="register"``: a :class:`SlidingWindow` hands whole windows (flip-flops) to the MAC array,
    which holds one while it folds it; consumes whole pixels (``channels`` lanes of ``elem_shape``).
    ``window="folded"`` (``simd`` divides ``channels``): a :class:`FoldedWindow` serves
    each window ``NF`` times, ``simd`` elements per cycle, out of its ring memory into a serial
    :class:`MacArray` (or :class:`BitMacArray`), and nothing holds a window; consumes ``simd`` lanes per beat.

    Produces, per output pixel, ``C_out / pe`` beats of ``pe`` accumulators of ``acc_shape``.
    ``weights[c]`` lists the window elements in the order ``(ky·kw + kx)·channels + c_in``. A 1×1
    convolution of stride 1 without padding needs no window: the pixel is the vector (held in the MAC array), or,
    with ``window="folded"``, a 1×1 window served from a ring of a few pixels, ``simd`` elements a beat.

    Throughput: register, one window per ``max(gap, NF·SF)`` cycles; folded, as
    ``hwseg.estimate.cycles.folded_window_cycles`` (see ``hwseg.estimate.cycles``).
    """

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride, padding, dilation,
                 weights, bias, pe, simd, acc_shape, arithmetic="multiply", window="register", weights_loaded=False,
                 weight_ram_style=None, external_weights=False, pack=1, multiplier="dsp"):
        # The blocks are built here so that bad parameters fail at construction with their own messages.
        if window not in ("register", "folded"):
            raise ValueError(f"window must be 'register' or 'folded', not {window!r}")
        self.sliding_window = None
        serial = window == "folded"        # (a pointwise one's pixel then a 1×1 window served from memory)
        if not serial and not _is_pointwise(kernel, stride, padding):
            self.sliding_window = SlidingWindow(elem_shape=elem_shape, channels=channels, height=height,
                                                width=width, kernel=kernel, stride=stride, padding=padding,
                                                dilation=dilation)
        in_count = kernel[0] * kernel[1] * channels
        if arithmetic == "multiply":
            self.mac_array = MacArray(in_shape=elem_shape, in_count=in_count, weights=weights, bias=bias, pe=pe,
                                      simd=simd, acc_shape=acc_shape, serial=serial, weights_loaded=weights_loaded,
                                      weight_ram_style=weight_ram_style, external_weights=external_weights,
                                      pack=pack, multiplier=multiplier)
        elif arithmetic == "popcount":
            if weights_loaded:
                raise ValueError("loaded weights (weights_loaded=True) need arithmetic='multiply', not 'popcount'")
            if pack != 1 or multiplier != "dsp":
                raise ValueError(f"a MAC variant (pack={pack!r}, multiplier={multiplier!r}) needs arithmetic='multiply', "
                                 f"not 'popcount'")
            shape = Shape.cast(elem_shape)
            self.mac_array = BitMacArray(in_bits=shape.width, in_signed=shape.signed, in_count=in_count,
                                         weights=weights, weight_bits=1, bias=bias, pe=pe, simd=simd,
                                         acc_shape=acc_shape, serial=serial)
        else:
            raise ValueError(f"arithmetic must be 'multiply' or 'popcount', not {arithmetic!r}")
        if serial:   # the window served once per output-channel fold of the MAC array
            self.sliding_window = FoldedWindow(elem_shape=elem_shape, channels=channels, height=height, width=width,
                                               kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                                               simd=simd, repeats=self.mac_array.fold[0])
        members = {
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, simd if serial else channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(acc_shape, pe))),
        }
        if external_weights:  # the MAC array reads a WeightRam outside the layer (MacArray.weight_port)
            members["weight_port"] = Out(self.mac_array.signature.members["weight_port"].signature)
        elif weights_loaded:   # the MAC array's weight memory is written through the layer (MacArray.load)
            members.update({"load": In(stream.Signature(unsigned(self.mac_array.weight_word_bits))), "loaded": Out(1)})
        super().__init__(members)

    @property
    def weights_loaded(self):
        return getattr(self.mac_array, "weights_loaded", False)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac_array = mac = self.mac_array
        if getattr(mac, "external_weights", False):
            wiring.connect(m, mac.weight_port, wiring.flipped(self.weight_port))
        elif self.weights_loaded:
            wiring.connect(m, wiring.flipped(self.load), mac.load)
            m.d.comb += self.loaded.eq(mac.loaded)
        if self.sliding_window is not None:
            m.submodules.sliding_window = window = self.sliding_window
            wiring.connect(m, wiring.flipped(self.i_stream), window.i_stream)
            wiring.connect(m, window.o_stream, mac.i_stream)
        else:
            # A pixel of `channels` lanes is exactly the 1×1 window the MAC array takes.
            wiring.connect(m, wiring.flipped(self.i_stream), mac.i_stream)
        wiring.connect(m, mac.o_stream, wiring.flipped(self.o_stream))
        return m


class MaxPoolLayer(wiring.Component):
    """A max-pool on whole pixels: sliding window (padding with the element minimum) → window max.

    Throughput: one padded input position per cycle.
    """

    def __init__(self, *, elem_shape, channels, height, width, kernel, stride, padding):
        # Padding must never win the max: pad with the least value of the element type.
        pad_value, _ = range_of(Shape.cast(elem_shape))
        self.sliding_window = SlidingWindow(elem_shape=elem_shape, channels=channels, height=height, width=width,
                                            kernel=kernel, stride=stride, padding=padding, dilation=(1, 1),
                                            pad_value=pad_value)
        self.window_max = WindowMax(elem_shape=elem_shape, channels=channels, window=kernel[0] * kernel[1])
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(elem_shape, channels))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(elem_shape, channels))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sliding_window = window = self.sliding_window
        m.submodules.window_max = window_max = self.window_max
        wiring.connect(m, wiring.flipped(self.i_stream), window.i_stream)
        wiring.connect(m, window.o_stream, window_max.i_stream)
        wiring.connect(m, window_max.o_stream, wiring.flipped(self.o_stream))
        return m

"""Pure Amaranth hardware blocks (they import nothing of hwseg's IR, golden model or torch).

Streams follow ``amaranth.lib.stream`` rules; see docs/internals.md for the stream formats.
"""

from .argmax import ArgMax
from .bitconv import BitMacArray
from .fifo import StreamFIFO
from .lanes import LaneConverter
from .layers import Conv2dLayer, MaxPoolLayer
from .mac_array import MacArray
from .pool import WindowMax
from .requant import MulShiftRequant
from .threshold import MultiThreshold
from .window import SlidingWindow

__all__ = ["ArgMax", "BitMacArray", "MultiThreshold", "StreamFIFO", "LaneConverter", "Conv2dLayer", "MaxPoolLayer", "MacArray", "WindowMax",
           "MulShiftRequant", "SlidingWindow"]

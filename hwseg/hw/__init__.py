"""Pure Amaranth hardware blocks (they import nothing of hwseg's IR, golden model or torch).

Streams follow ``amaranth.lib.stream`` rules; see docs/internals.md for the stream formats.
"""

from .argmax import ArgMax
from .avgpool import AvgPoolLayer, WindowMean
from .bitconv import BitMacArray
from .channel_affine import ChannelAffine
from .fifo import StreamFIFO
from .folded_window import FoldedWindow
from .fork import StreamFork
from .join import ChannelConcat, ElementwiseAdd
from .lanes import LaneConverter
from .layers import Conv2dLayer, MaxPoolLayer
from .mac_array import MacArray
from .pool import WindowMax
from .requant import MulShiftRequant
from .threshold import MultiThreshold
from .transposed import ConvTranspose2dLayer
from .upsample import UpsampleLayer
from .window import SlidingWindow

__all__ = ["ArgMax", "AvgPoolLayer", "WindowMean", "BitMacArray", "ChannelAffine", "StreamFIFO", "FoldedWindow", "StreamFork",
           "ChannelConcat", "ElementwiseAdd", "LaneConverter", "Conv2dLayer", "MaxPoolLayer", "MacArray", "WindowMax",
           "MulShiftRequant", "MultiThreshold", "ConvTranspose2dLayer", "UpsampleLayer", "SlidingWindow"]

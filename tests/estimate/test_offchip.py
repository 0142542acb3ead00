"""The estimate's geometry of the DRAM buffers is the hardware's (one set of figures, checked both ways)."""

import pytest
from amaranth.hdl import unsigned

from hwseg.estimate.offchip import fifo_geometry, row_taps_geometry
from hwseg.hw.dram import DramFifo, DramRowTaps

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("channels,bits,height,width,taps,stride,padding,dilation,data_bits,burst", [
    (3, 8, 7, 9, 3, 1, 1, 1, 32, 4), (128, 8, 64, 128, 3, 1, 16, 16, 128, 32), (16, 8, 256, 512, 3, 2, 1, 1, 64, 16),
    (20, 2, 33, 17, 5, 1, 2, 1, 64, 16), (64, 8, 32, 64, 3, 1, 8, 8, 128, 32), (7, 8, 10, 10, 3, 2, 0, 2, 32, 8)])
def test_row_taps_geometry_is_the_hardware(channels, bits, height, width, taps, stride, padding, dilation,
                                           data_bits, burst):
    hw = DramRowTaps(elem_shape=unsigned(bits), channels=channels, height=height, width=width, taps=taps,
                     stride=stride, padding=padding, dilation=dilation, data_bits=data_bits, address_bits=40,
                     burst=burst)
    est = row_taps_geometry(channels=channels, elem_bits=bits, height=height, width=width, taps=taps, stride=stride,
                            padding=padding, dilation=dilation, data_bits=data_bits, burst=burst)
    for name in ("words_per_beat", "row_words", "row_stride", "ring_rows", "out_height", "frame_rows",
                 "region_bytes", "write_words", "read_words", "cycles_per_frame", "ahead_rows"):
        assert getattr(est, name) == getattr(hw, name), name
    assert est.traffic_bytes == hw.traffic_words * data_bits // 8


@pytest.mark.parametrize("beat_bits,depth,data_bits,burst", [(8, 64, 64, 8), (1024, 3000, 128, 32), (160, 77, 128, 16),
                                                             (24, 1, 32, 4)])
def test_fifo_geometry_is_the_hardware(beat_bits, depth, data_bits, burst):
    hw = DramFifo(payload_shape=unsigned(beat_bits), depth=depth, data_bits=data_bits, address_bits=40, burst=burst)
    est = fifo_geometry(beat_bits=beat_bits, depth=depth, data_bits=data_bits, burst=burst)
    assert (est.words_per_beat, est.region_words, est.region_bytes, est.capacity) == \
        (hw.words_per_beat, hw.region_words, hw.region_bytes, hw.capacity)
    assert est.capacity >= depth

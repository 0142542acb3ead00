"""The estimate's geometry of the DRAM buffers and of loaded weights is the hardware's (one set of figures, checked
both ways)."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwseg.estimate.offchip import fifo_geometry, region_address_bits, row_taps_geometry, weight_store_of
from hwseg.hw.dram import DramFifo, DramRowTaps
from hwseg.hw.mac_array import MacArray
from hwseg.hw.weights import WeightLoader, weight_image
from hwseg.ir import Conv2d, Graph, Input, Int, Node, UInt

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


@pytest.mark.parametrize("cout,count,pe,simd,weight_max,data_bits", [
    (64, 192, 1, 1, 127, 128), (64, 192, 1, 3, 127, 128), (64, 192, 2, 8, 127, 64), (6, 27, 3, 9, 7, 32),
    (3, 10, 1, 1, 3, 32), (128, 384, 16, 24, 127, 128), (2, 3, 1, 1, 100, 64)])
def test_loaded_weight_store_is_the_hardware(cout, count, pe, simd, weight_max, data_bits):
    """The estimate's loaded weight memory (packing, word, depth, image bytes) is the MAC array's and the loader's."""
    weights = np.random.default_rng(cout + count).integers(-weight_max, weight_max + 1, (cout, count, 1, 1))
    hw = MacArray(in_shape=unsigned(8), in_count=count, weights=weights[:, :, 0, 0].tolist(), bias=None, pe=pe,
                  simd=simd, acc_shape=signed(40), weights_loaded=True)
    graph = Graph([Node("x", Input((count, 2, 2), UInt(8))),
                   Node("c", Conv2d(weights, np.zeros(cout, dtype=np.int64), Int(8)), ("x",),
                        {"pe": pe, "simd": simd, "memory": {"data_bits": data_bits}})])
    est = weight_store_of(graph, graph["c"])
    assert (est.folds_per_word, est.word_bits, est.depth) == (hw.folds_per_word, hw.weight_word_bits,
                                                              len(hw.weight_words))
    loader = WeightLoader(stores=[(hw.weight_word_bits, len(hw.weight_words))], data_bits=data_bits, address_bits=40)
    assert est.image_bytes == loader.image_bytes == len(weight_image([(hw.weight_word_bits, hw.weight_words)],
                                                                     data_bits=data_bits))


@pytest.mark.parametrize("region,bits", [(1, 1), (4096, 12), (4097, 13), (1 << 20, 20), (3 << 20, 22)])
def test_a_buffer_drives_the_address_bits_of_its_region(region, bits):
    """Each buffer addresses its region from 0 (the arbiter places it): bytes 0 … region − 1, by hand."""
    assert region_address_bits(region) == bits

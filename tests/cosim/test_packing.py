"""Packing frames into AXI4-Stream beats and reading beats back, against Python integers."""

import numpy as np
import pytest

from hwseg.cosim import pack_frames, unpack_beats
from hwseg.cosim.native import beats_to_bytes, read_beats


def _reference_beat(pixel, bits, tdata_bits):
    value = 0
    for channel, v in enumerate(pixel):
        value |= (int(v) & ((1 << bits) - 1)) << (channel * bits)
    return value.to_bytes(tdata_bits // 8, "little")


@pytest.mark.parametrize("channels, bits, signed, tdata_bits", [(3, 8, False, 24), (5, 3, True, 16),
                                                                (20, 5, True, 104), (1, 1, False, 8)])
def test_pack_and_unpack_agree_with_python_integers(channels, bits, signed, tdata_bits):
    rng = np.random.default_rng(channels * bits)
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    frames = rng.integers(low, high, size=(2, channels, 3, 5))
    beats = pack_frames(frames, bits, tdata_bits)
    pixels = np.moveaxis(frames, 1, -1).reshape(-1, channels)
    assert beats.shape == (30, tdata_bits // 8)
    for pixel, beat in zip(pixels, beats):
        assert beat.tobytes() == _reference_beat(pixel, bits, tdata_bits)
    np.testing.assert_array_equal(unpack_beats(beats, channels, bits, signed), pixels)


def test_channels_wider_than_tdata_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        pack_frames(np.zeros((1, 4, 1, 1), dtype=np.int64), 8, 24)


def test_stimulus_is_most_significant_byte_first_and_beats_read_back(tmp_path):
    beats = np.array([[0x01, 0x02, 0x03], [0xff, 0x00, 0x10]], dtype=np.uint8)
    assert beats_to_bytes(beats) == bytes([0x03, 0x02, 0x01, 0x10, 0x00, 0xff])
    # the harness writes `cycle tlast tdata` with as many hex digits as the port is wide (here 20 bits)
    (tmp_path / "beats.txt").write_text("7 0 30201\n9 1 000ff\n")
    got, last, when, undefined = read_beats(tmp_path / "beats.txt", 3)
    np.testing.assert_array_equal(got, [[0x01, 0x02, 0x03], [0xff, 0x00, 0x00]])
    assert last.tolist() == [0, 1] and when.tolist() == [7, 9] and undefined == 0


def test_undefined_output_bits_are_counted(tmp_path):
    (tmp_path / "beats.txt").write_text("3 0 x1\n4 1 22\n")
    got, _, _, undefined = read_beats(tmp_path / "beats.txt", 1)
    assert undefined == 1 and got[:, 0].tolist() == [0x01, 0x22]

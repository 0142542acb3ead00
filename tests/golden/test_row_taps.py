"""golden row_taps vs torch: stacking a window's rows as channels, then a 1×kw convolution, is the convolution."""

import numpy as np
import pytest
import torch

from hwseg.golden import conv2d, row_taps


@pytest.mark.parametrize("kh,kw,stride,padding,dilation", [
    (3, 1, 1, 1, 1), (3, 3, 2, 1, 1), (3, 1, 1, 4, 4), (3, 3, 1, 2, 2), (5, 1, 1, 2, 1), (3, 3, 2, 0, 1),
    (3, 1, 1, 16, 16), (2, 2, 2, 0, 1)])
def test_rows_as_channels_then_a_row_convolution_is_the_convolution(kh, kw, stride, padding, dilation):
    rng = np.random.default_rng(kh * 100 + padding)
    x = rng.integers(-128, 128, (2, 5, 40, 11))
    w = rng.integers(-127, 128, (6, 5, kh, kw))
    b = rng.integers(-1000, 1000, 6)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                          torch.from_numpy(b).double(), stride=(stride, 1),
                                          padding=(padding, kw // 2), dilation=(dilation, 1)).long().numpy()
    stacked = row_taps(x, kh, stride, padding, dilation)
    assert stacked.shape == (2, kh * 5, expected.shape[2], 11)
    row_weight = w.transpose(0, 2, 1, 3).reshape(6, kh * 5, 1, kw)   # channel ky·C + c
    got = conv2d(stacked, row_weight, b, (1, 1), (0, kw // 2), (1, 1))
    np.testing.assert_array_equal(got, expected)


def test_elements_and_padding():
    x = np.arange(2 * 4 * 3).reshape(1, 2, 4, 3)
    out = row_taps(x, 3, 1, 2, 2)          # rows y−2, y, y+2
    assert out.shape == (1, 6, 4, 3)
    for y in range(4):
        for ky in range(3):
            row = y - 2 + 2 * ky
            for c in range(2):
                want = x[0, c, row] if 0 <= row < 4 else np.zeros(3)
                np.testing.assert_array_equal(out[0, ky * 2 + c, y], want)

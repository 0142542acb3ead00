"""The input size that the error of a design that does not fit suggests is the largest that fits (issue 12).

A small ERFNet (three stride-2 stages: it takes multiples of 8, which the test checks on the frontend) on a
board with just the block RAM its design at 40×80 (80×40) needs: it fits there but not at 64×128 (128×64)
(all checked by building). Expected values
come from building: the
suggested size must fit when the flow builds it, and the next larger size keeping the aspect ratio (the
shorter side one granule of 8 more, the longer side scaled with it and rounded down to a multiple of 8)
must not.
"""

import re
from dataclasses import replace

import pytest
import torch

from hwseg.boards import load_board
from hwseg.errors import DoesNotFitError, InputSizeError
from hwseg.flow import compile_graph
from hwseg.frontend import to_graph
from hwseg.models import build_model
from hwseg.quant import calibrate

GRANULE = 8   # 2^3 for three stride-2 stages; checked in test_the_network_takes_multiples_of_eight


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model("erfnet", {"classes": 4, "width": 0.25, "blocks": [1, 1, 1, 1], "dropout": False,
                                 "input_size": [32, 64]})
    calibrate(net, [torch.randint(0, 256, (2, 3, 32, 64)).float()])
    return net.eval()


def _resize(model):
    return lambda size: to_graph(model, (3, *size), name="erfnet")


def _fits(model, size, board) -> bool:
    return not compile_graph(_resize(model)(size), board, estimate_only=True, offchip="none").estimate.overflows()


def _next_larger(size, full):
    """The candidate one granule larger than ``size`` on the shorter side of the input ``full``."""
    (height, width), (full_height, full_width) = size, full
    if full_height <= full_width:
        return height + GRANULE, (height + GRANULE) * full_width // full_height // GRANULE * GRANULE
    return (width + GRANULE) * full_height // full_width // GRANULE * GRANULE, width + GRANULE


def _error(model, size, board) -> str:
    with pytest.raises(DoesNotFitError) as error:
        compile_graph(_resize(model)(size), board, resize=_resize(model), offchip="none")
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_network_takes_multiples_of_eight(model):
    for size in ((36, 72), (40, 76), (44, 88)):
        with pytest.raises(InputSizeError):
            _resize(model)(size)
    for size in ((40, 80), (8, 16), (24, 40)):
        _resize(model)(size)


def _board_just_fitting(model, size):
    """pynq-z2 with the least block RAM at which the design at ``size`` fits (found by building), so that the
    test follows the estimate."""
    base = load_board("pynq-z2")
    for bram in range(1, base.resources["bram"] + 1):
        board = replace(base, resources={**base.resources, "bram": bram})
        if _fits(model, size, board):
            return board
    raise AssertionError(f"the design does not fit pynq-z2 at {size}")


@pytest.mark.parametrize("full", [(64, 128), (128, 64)])   # landscape and portrait
def test_the_suggested_input_is_the_largest_that_fits(model, full):
    smaller = (40, 80) if full[0] <= full[1] else (80, 40)   # neither 1/4, 1/2 nor 3/4 of the input
    board = _board_just_fitting(model, smaller)
    assert not _fits(model, full, board)
    message = _error(model, full, board)
    found = re.search(r"use a smaller input \(it fits at --input (\d+)x(\d+)\), fewer bits", message)
    assert found, message
    size = (int(found.group(1)), int(found.group(2)))
    assert size[0] % GRANULE == 0 and size[1] % GRANULE == 0 and size[0] < full[0] and size[1] < full[1], size
    assert size == (size[0], size[0] * full[1] // full[0] // GRANULE * GRANULE) or \
        size == (size[1] * full[0] // full[1] // GRANULE * GRANULE, size[1]), size   # the aspect ratio kept
    assert _fits(model, size, board), size
    larger = _next_larger(size, full)
    assert not _fits(model, larger, board), (size, larger)


def test_no_size_is_suggested_when_even_the_smallest_does_not_fit(model):
    base = load_board("pynq-z2")
    board = replace(base, resources={**base.resources, "lut": 1_000})
    assert not _fits(model, (GRANULE, 2 * GRANULE), board)   # the smallest input it takes at 1:2
    message = _error(model, (64, 128), board)
    assert "use a smaller input, fewer bits" in message and "fits at" not in message, message

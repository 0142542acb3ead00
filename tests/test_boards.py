"""Board files: each loads, cites its source, and names are unambiguous."""

import pytest

from hwseg.boards import RESOURCES, known_boards, load_board
from hwseg.errors import BoardError


def test_every_board_is_complete_and_cited():
    boards = known_boards()
    assert {"pynq-z1", "pynq-z2", "ultra96-v2", "zcu104", "kv260", "zcu102"} <= {b.name for b in boards}
    for board in boards:
        assert all(board.resources[key] > 0 for key in RESOURCES), board.name
        assert "Data Sheet" in board.source and board.clock_mhz > 0 and board.part
    names = [n for b in boards for n in (b.name, *b.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name, expected", [("pynq", "pynq-z2"), ("PYNQ-Z1", "pynq-z1"), ("ultra96", "ultra96-v2")])
def test_aliases_and_case(name, expected):
    assert load_board(name).name == expected


def test_datasheet_figures():
    z7020 = load_board("pynq-z2").resources
    assert (z7020["lut"], z7020["ff"], z7020["dsp"], z7020["bram18"]) == (53200, 106400, 220, 280)
    assert load_board("zcu104").uram == 96 and load_board("zcu102").resources["dsp"] == 2520


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError, match=r"^unknown board 'zedboard'; known boards: kv260 \(k26\), pynq-z1, "):
        load_board("zedboard")

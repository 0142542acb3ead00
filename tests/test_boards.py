"""Board files: each loads, cites its source, and names are unambiguous."""

import pytest

from hwseg.boards import FAMILIES, RESOURCES, known_boards, load_board
from hwseg.errors import BoardError


def test_every_board_is_complete_and_cited():
    boards = known_boards()
    assert {b.name for b in boards} == {"pynq-z1", "pynq-z2", "ultra96-v2", "zcu104", "kv260", "zcu102",
                                        "ulx3s-85f", "icebreaker"}
    for board in boards:
        assert all(board.resources[key] > 0 for key in RESOURCES), board.name
        assert "Data Sheet" in board.source and board.clock_mhz > 0 and board.part
        assert board.family in FAMILIES and board.bram_kbits in (4, 18) and board.bram_name
    names = [n for b in boards for n in (b.name, *b.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name, expected", [("pynq", "pynq-z2"), ("PYNQ-Z1", "pynq-z1"), ("ultra96", "ultra96-v2")])
def test_aliases_and_case(name, expected):
    assert load_board(name).name == expected


def test_datasheet_figures():
    z7020 = load_board("pynq-z2").resources
    assert (z7020["lut"], z7020["ff"], z7020["dsp"], z7020["bram"]) == (53200, 106400, 220, 280)
    assert load_board("zcu104").uram == 96 and load_board("zcu102").resources["dsp"] == 2520
    # URAM is checked like the other resources where the part has it, and absent where it has none
    assert load_board("kv260").resources["uram"] == 64 and "uram" not in load_board("zcu102").resources
    ecp5 = load_board("ulx3s")
    assert (ecp5.family, ecp5.bram_kbits, ecp5.lattice) == ("ecp5", 18, True)
    assert dict(ecp5.resources) == {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208}
    ice40 = load_board("icebreaker")
    assert (ice40.family, ice40.bram_kbits, ice40.bram_name, ice40.spram) == ("ice40", 4, "EBR4", 4)
    assert dict(ice40.resources) == {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30}
    # 30 blocks of 4 Kb: the data sheet's 120 Kb of EBR
    assert ice40.resources["bram"] * ice40.bram_kbits == 120
    assert not load_board("pynq").lattice and load_board("pynq").bram_name == "BRAM18"


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError,
                       match=r"^unknown board 'zedboard'; known boards: icebreaker, kv260 \(k26\), pynq-z1, "):
        load_board("zedboard")

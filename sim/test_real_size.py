"""A real-resolution network proven bit-exact in RTL: a zoo family at a 256×512 input, folded to fit
pynq-z2, two measured frames and two under random stalls on both ends, every beat equal to golden,
cycles within 5 % of the estimate. The generated harness makes this a matter of seconds."""

import pytest

from hwseg.cosim import simulate_design
from hwseg.flow import build

from .real_size import BOARD, INPUT, int_fcn_checkpoint


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    return build(int_fcn_checkpoint(tmp_path_factory.mktemp("real")), BOARD, input_size=INPUT)


def test_the_design_is_real_size_and_fits_its_board(design):
    _, height, width = design.graph.input_type.shape
    assert (height, width) == INPUT and height * width >= 256 * 512
    assert design.estimate.overflows() == {}
    assert any(type(node.op).__name__ == "Add" for node in design.graph)          # a skip join
    folded = [node for node in design.graph if node.attrs.get("simd") not in (None, 1)
              or node.attrs.get("pe") not in (None, 1)]
    assert folded, "folded to fit the board"


def test_two_stalled_frames_match_golden_and_the_cycle_model(design, work_dir):
    report = simulate_design(design, frames=2, simulator="verilator", seed=3, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    assert report.passed, report.summary()
    assert report.beats == 4 * design.graph.output_type.pixels
    assert abs(report.estimate_error) <= 0.05, report.summary()
    assert report.longest_silence < report.silence_limit / 2    # the watchdog's limit leaves room


def test_a_design_silent_for_most_of_a_frame_is_not_called_stalled(tmp_path, work_dir):
    """The false verdict of the old fixed 100,000-cycle watchdog: int_fcn (width 16, 4 stages) at 64×128 on
    pynq-z2 with --frames 1 --stall 0.1 legitimately goes most of a frame between output bursts."""
    import torch

    from hwseg.frontend import save_checkpoint
    from hwseg.models import build_model
    from hwseg.quant import calibrate

    args = {"classes": 20, "width": 16, "stages": 4, "convs": 2, "skips": 2, "integer_bn": True}
    torch.manual_seed(0)
    model = build_model("int_fcn", args)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    save_checkpoint(model.eval(), tmp_path / "int_fcn.pt", "int_fcn", args, (3, 64, 128))
    design = build(tmp_path / "int_fcn.pt", "pynq-z2", input_size=(64, 128))
    report = simulate_design(design, frames=1, seed=1, valid_prob=0.9, ready_prob=0.9, work_dir=work_dir)
    assert report.passed, report.summary()
    assert 100_000 < report.longest_silence < report.silence_limit / 2

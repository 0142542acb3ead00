"""The co-simulation checker itself: it must report a wrong beat precisely and detect a hang."""

import dataclasses

import numpy as np
import pytest

from hwseg.cosim import simulate_design
from hwseg.flow import compile_graph
from hwseg.ir import Conv2d, Graph, Input, Int, MulShift, Node, UInt

from .wrappers import never_valid


def _graph(multiplier):
    weight = np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3) % 7 - 3
    return Graph([
        Node("x", Input((2, 5, 6), UInt(8))),
        Node("conv", Conv2d(weight, np.array([5, -5]), Int(8), padding=1), ("x",)),
        Node("rq", MulShift(np.array([multiplier, 3]), 4, 0, 255), ("conv",)),
    ], name="checked")


def test_a_wrong_beat_is_reported_with_frame_pixel_channel(work_dir):
    design = compile_graph(_graph(7), "pynq-z2")
    # Golden now expects another multiplier on channel 0 than the hardware has.
    other = dataclasses.replace(design, graph=compile_graph(_graph(9), "pynq-z2").graph)
    report = simulate_design(other, frames=1, simulator="icarus", seed=2, work_dir=work_dir)
    assert not report.passed
    assert report.beats == report.expected_beats == 3 * 30
    first = report.mismatches[0]
    assert first.startswith("frame 0, pixel (") and ", channel 0: expected " in first and ", got " in first
    assert all(", channel 0:" in m for m in report.mismatches if m.startswith("frame"))
    assert "FAIL" in report.summary()


@pytest.mark.parametrize("harness", ["native", "cocotb"])
def test_a_silent_accelerator_is_detected_not_waited_for(work_dir, harness):
    design = compile_graph(_graph(7), "pynq-z2")
    hung = dataclasses.replace(design, verilog=never_valid(design))
    report = simulate_design(hung, frames=1, simulator="icarus", seed=2, work_dir=work_dir, silence_limit=500,
                             harness=harness)
    assert not report.passed
    assert report.beats == 0
    assert report.status.startswith("stalled: no transfer on either stream for 500 cycles, after ")
    assert report.status.endswith(f" input and 0 of 90 output beats (log: {work_dir / 'sim.log'})")

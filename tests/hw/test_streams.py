"""The stream test drivers themselves: the checks of run_stream_test and measure_full_rate do fire."""

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tests.hw.streams import measure_full_rate, run_stream_test

BEATS = [(k * 37 + 11) % 256 for k in range(20)]


class _Stage(wiring.Component):
    """A one-register stage; ``fault`` breaks it on purpose."""

    def __init__(self, fault=None):
        self.fault = fault
        super().__init__({"i_stream": In(stream.Signature(unsigned(8))), "o_stream": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        if self.fault is None:                      # correct
            m.d.comb += i.ready.eq(~o.valid | o.ready)
            with m.If(i.ready):
                m.d.sync += [o.valid.eq(i.valid), o.payload.eq(i.payload)]
        elif self.fault == "ignores ready":         # drops or replaces a beat it was offering
            m.d.comb += i.ready.eq(1)
            m.d.sync += [o.valid.eq(i.valid), o.payload.eq(i.payload)]
        elif self.fault == "never ready":
            m.d.comb += i.ready.eq(0)
            m.d.sync += o.valid.eq(0)
        elif self.fault == "swallows":              # takes every beat, sends nothing
            m.d.comb += i.ready.eq(1)
            m.d.sync += o.valid.eq(0)
        return m


def test_correct_stage_passes():
    assert run_stream_test(_Stage(), BEATS, len(BEATS), seed=1, valid_prob=0.6, ready_prob=0.6) == BEATS
    in_cycles, out_cycles, got = measure_full_rate(_Stage(), BEATS, len(BEATS))
    assert got == BEATS and in_cycles == list(range(20)) and out_cycles == list(range(1, 21))


def test_output_rule_monitor():
    with pytest.raises(AssertionError, match=r"^_Stage: o_stream broke the stream rule after \d+ beats: held \d+, "
                                             r"then valid=\d+ \d+$"):
        run_stream_test(_Stage("ignores ready"), BEATS, len(BEATS), seed=1, valid_prob=0.6, ready_prob=0.6)


def test_input_not_taken():
    with pytest.raises(AssertionError, match=r"^_Stage: input stream not ready for 50 cycles at beat 0 of 20 "
                                             r"\(0 of 20 input beats taken, 0 of 20 output beats collected\)$"):
        run_stream_test(_Stage("never ready"), BEATS, len(BEATS), timeout=50)


def test_output_silent():
    with pytest.raises(AssertionError, match=r"^_Stage: output stream silent for 50 cycles after 0 of 20 beats "
                                             r"\(20 of 20 input beats taken, 0 of 20 output beats collected\)$"):
        run_stream_test(_Stage("swallows"), BEATS, len(BEATS), timeout=50)


def test_every_input_must_be_taken():
    """After the last expected output beat ``ready`` stays down: the inputs must all be taken by then."""
    with pytest.raises(AssertionError, match=r"^_Stage: input stream not ready for 50 cycles at beat \d+ of 20 "
                                             r"\(\d+ of 20 input beats taken, 5 of 5 output beats collected\)$"):
        run_stream_test(_Stage(), BEATS, 5, seed=2, valid_prob=0.6, ready_prob=0.6, timeout=50)


def test_measure_full_rate_times_out():
    with pytest.raises(AssertionError, match=r"^_Stage: timed out after 30 cycles with 20 of 20 input beats taken "
                                             r"and 0 of 20 output beats out$"):
        measure_full_rate(_Stage("swallows"), BEATS, len(BEATS), limit=30)

"""The compute bound when a layer's MACs may go to DSPs, to DSP48s two lanes each, or to logic."""

import pytest

from hwseg.estimate.roofline import _compute_bound, _least_luts, _trade_curve


def test_the_trade_curve_keeps_the_variants_worth_mixing():
    # (dsp, lut) per lane: plain, packed, logic; a variant with more DSP and no fewer LUTs is never worth it,
    # and one above the line between its neighbours is beaten by mixing them
    options = [{"dsp": 1, "lut": 0}, {"dsp": 0.5, "lut": 10}, {"dsp": 0, "lut": 100}, {"dsp": 1.5, "lut": 5}]
    assert _trade_curve(options) == [(0, 100), (0.5, 10), (1, 0)]
    assert _trade_curve([{"dsp": 0, "lut": 100}, {"dsp": 0.5, "lut": 60}, {"dsp": 1, "lut": 0}]) == [(0, 100), (1, 0)]


def test_the_fewest_luts_for_a_dsp_cap():
    layers = [(100, [(0, 100), (0.5, 10), (1, 0)])]
    assert _least_luts(layers, 100) == (100, 0)                   # every lane plain
    assert _least_luts(layers, 50) == pytest.approx((50, 1000))   # every lane packed
    assert _least_luts(layers, 25) == pytest.approx((25, 5500))   # half packed, half in logic


def test_the_compute_bound_balances_dsps_and_luts():
    """100 MACs, 10 DSPs, 1,000 LUTs. Packed alone needs 5 cycles (50 DSP-cycles); moving a share x of the MACs
    to logic gives max(5(1 − x), 1 + 9x), least at x = 2/7: 25/7 cycles, both resources full."""
    cycles, demand = _compute_bound([(100, [(0, 100), (0.5, 10), (1, 0)])], {"dsp": 10, "lut": 1000})
    assert cycles == pytest.approx(25 / 7, rel=1e-9)
    assert demand["dsp"] == pytest.approx(10 * 25 / 7, rel=1e-9) and demand["lut"] == pytest.approx(1000 * 25 / 7, rel=1e-9)
    # only the plain variant: the DSPs bound it, 100 / 10
    assert _compute_bound([(100, [(1, 0)])], {"dsp": 10, "lut": 1000})[0] == pytest.approx(10)
    # two layers: the one saving more LUTs per DSP gets the DSPs
    cycles, _ = _compute_bound([(100, [(0, 100), (1, 0)]), (100, [(0, 10), (1, 0)])], {"dsp": 100, "lut": 10})
    # at T ≥ 1 layer 1 is all on DSPs (100 DSP-cycles) and layer 2 takes y = T − 1 of its MACs to the rest of the
    # 100·T: its logic needs 1,000·(2 − T) ≤ 10·T LUT-cycles, so T = 200/101
    assert cycles == pytest.approx(200 / 101, rel=1e-9)

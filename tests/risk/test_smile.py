"""The SSVI smile: its shape and no-arbitrage bound, its calibration from the shipped history,
and that the keeper's engine and marks price options on it."""

import numpy as np
import pytest

from offchain.chain.contracts import InstrumentTable
from offchain.chain.risk_inputs import risk_engine
from offchain.commands.backtest import load_series
from offchain.keeper.prices import instrument_marks
from offchain.paths import DATA_DIR
from offchain.risk import black76_price, load_params
from offchain.risk.pricing import CALL, PERPETUAL, PUT
from offchain.risk.smile import CALIBRATED, MAX_ETA_RHO, calibrate_ssvi, ssvi_vol

NOW, DAY = 1_718_582_400, 86_400


def test_ssvi_vol__atm_forward__equals_atm_vol_and_skew_follows_rho():
    for rho in (-0.5, 0.0, 0.4):
        assert ssvi_vol(100.0, 100.0, 0.1, 0.6, rho, 0.6) == pytest.approx(0.6, rel=1e-12)
    assert ssvi_vol(80.0, 100.0, 0.1, 0.6, -0.5, 0.6) > ssvi_vol(120.0, 100.0, 0.1, 0.6, -0.5, 0.6)
    assert ssvi_vol(80.0, 100.0, 0.1, 0.6, 0.5, 0.6) < ssvi_vol(120.0, 100.0, 0.1, 0.6, 0.5, 0.6)


@pytest.mark.parametrize("name", sorted(CALIBRATED))
def test_calibrated_smile__call_prices__convex_and_decreasing_in_strike(name):
    rho, eta = CALIBRATED[name]
    assert eta * (1 + abs(rho)) <= MAX_ETA_RHO
    for days in (7, 30, 90):
        t = days / 365
        k = np.linspace(30_000, 130_000, 201)
        c = black76_price(65_000.0, k, t, ssvi_vol(k, 65_000.0, t, 0.6, rho, eta), 0.0, True)
        assert np.all(np.diff(c) < 0)
        assert np.all(np.diff(c, 2) > -1e-9)     # no butterfly arbitrage on the grid


def test_calibrate_ssvi__shipped_history__gives_the_bundled_parameters():
    series = load_series(DATA_DIR)
    for name, (rho, eta) in CALIBRATED.items():
        fit = calibrate_ssvi(series[name][1])
        assert (fit["rho"], fit["eta"]) == pytest.approx((rho, eta), abs=2e-3)
        assert fit["rms_error"] < 0.03


def test_risk_engine__keeper_path__prices_options_on_the_smile():
    expiry = NOW + 30 * DAY
    table = InstrumentTable(ids=np.arange(1, 5), underlying_index=np.zeros(4, dtype=np.int64),
                            kind=np.array([PERPETUAL, CALL, PUT, CALL]),
                            strike=np.array([0.0, 80_000.0, 50_000.0, 65_000.0]),
                            expiry=np.array([0, expiry, expiry, expiry]),
                            active=np.ones(4, dtype=bool))
    spot, vol = np.array([65_000.0]), np.array([0.6])
    live = np.ones(4, dtype=bool)
    engine = risk_engine(load_params(), table, ["BTC"], spot, vol, NOW, live)
    rho, eta = CALIBRATED["BTC"]
    t = 30 / 365
    want = ssvi_vol(table.strike[1:], 65_000.0, t, 0.6, rho, eta)
    assert engine.inputs.vol[1:] == pytest.approx(want, rel=1e-12)
    assert engine.inputs.vol[1] != pytest.approx(0.6, rel=1e-3)        # not flat
    marks = instrument_marks(table, spot, vol, NOW, underlyings=["BTC"])
    assert marks[1:] == pytest.approx(engine.marks[1:], rel=1e-12)     # marks = margin inputs

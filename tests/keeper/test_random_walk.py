"""The live price source: a fat-tailed random walk calibrated on the shipped history."""

from __future__ import annotations

import numpy as np
import pytest

from offchain.errors import UserError
from offchain.keeper.prices import DAY
from offchain.keeper.random_walk import RandomWalkSource
from offchain.paths import DATA_DIR

VOLS = {"BTC": 0.8, "ETH": 0.95}
T0 = 1_800_000_000


def walk(seed=7, step_s=3600):
    return RandomWalkSource(DATA_DIR, ["BTC", "ETH"], VOLS, start=T0, step_s=step_s, seed=seed)


def test_spot__same_seed_any_order_of_questions__same_path():
    a, b = walk(), walk()
    late = b.spot(T0 + 400 * DAY)  # b extends far ahead first
    assert np.array_equal(a.spot(T0 + 400 * DAY), late)
    assert np.array_equal(a.spot(T0 + 3 * DAY + 1234), b.spot(T0 + 3 * DAY + 1234))
    assert not np.array_equal(walk(seed=8).spot(T0 + 3 * DAY), a.spot(T0 + 3 * DAY))


def test_spot__at_start__last_close_of_the_history():
    w = walk()
    assert np.allclose(w.spot(T0), w.start_spot) and np.allclose(w.spot(T0 - DAY), w.start_spot)


def test_returns__many_days__daily_vol_correlation_and_fat_tails_match_the_history():
    w = walk(step_s=DAY)
    days = T0 + DAY * np.arange(4000)
    logp = np.log(np.stack([w.spot(int(t)) for t in days], axis=1))
    r = np.diff(logp, axis=1)
    assert np.allclose(r.std(axis=1), w.daily_sigma, rtol=0.15)
    assert np.corrcoef(r)[0, 1] == pytest.approx(w.correlation[0, 1], abs=0.08)
    z = (r - r.mean(axis=1, keepdims=True)) / r.std(axis=1, keepdims=True)
    assert np.all((z**4).mean(axis=1) - 3 > 0.5)  # fat tails: excess kurtosis well above a normal's 0
    assert 3 <= w.dof <= 30


def test_vol__calibrated_vol_floored_at_the_configured_implied_vol():
    w = walk()
    v = w.vol(T0 + DAY)
    assert np.all(v >= [VOLS["BTC"], VOLS["ETH"]])
    assert np.allclose(v, np.maximum([0.8, 0.95], w.daily_sigma * np.sqrt(365)))


def test_init__underlying_without_vol__error_names_it():
    with pytest.raises(UserError, match="prices.vols.SOL"):
        RandomWalkSource(DATA_DIR, ["BTC", "SOL"], VOLS, start=T0)


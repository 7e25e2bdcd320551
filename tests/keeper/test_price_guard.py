"""PriceGuard: when the keeper refuses to sign (silent source, unconfirmed outlier)."""

import numpy as np
import pytest

from offchain.keeper.price_guard import PriceGuard

VOL = np.array([0.8, 0.9])


def guard(**kw):
    g = PriceGuard(["BTC", "ETH"], kw.get("max_jump_frac", 0.5), kw.get("confirm_cycles", 3))
    g.seed(np.array([60_000.0, 3_000.0]))
    return g


def const(x):
    return lambda: np.asarray(x, dtype=float)


def test_check__ordinary_move__accepted_and_becomes_reference():
    g = guard()
    check = g.check(const([57_000.0, 2_900.0]), const(VOL))
    assert check.ok and check.spot.tolist() == [57_000.0, 2_900.0]
    assert g.last.tolist() == [57_000.0, 2_900.0]


@pytest.mark.parametrize("spot", [[np.nan, 3_000.0], [60_000.0, 0.0], [60_000.0, -1.0], [60_000.0], []])
def test_check__missing_or_non_positive_price__holds_as_silent(spot):
    check = guard().check(const(spot), const(VOL))
    assert not check.ok and check.spot is None and check.reason.startswith("price source silent")


def test_check__source_raises__holds_and_names_the_error():
    def down():
        raise ConnectionError("feed unreachable")

    check = guard().check(down, const(VOL))
    assert not check.ok and "ConnectionError: feed unreachable" in check.reason


def test_check__bad_vol__holds():
    assert not guard().check(const([60_000.0, 3_000.0]), const([0.8, np.inf])).ok


def test_check__one_bad_print__held_then_normal_price_accepted_reference_unchanged():
    g = guard()
    held = g.check(const([1_200_000.0, 3_000.0]), const(VOL))  # a 20x print
    assert not held.ok and "BTC +1900.0%" in held.reason and "(1/3 cycles)" in held.reason
    assert g.check(const([60_100.0, 3_001.0]), const(VOL)).ok
    assert g.last.tolist() == [60_100.0, 3_001.0]


def test_check__crash_persists_for_confirm_cycles__accepted_on_the_last():
    g = guard(max_jump_frac=0.3, confirm_cycles=3)
    crash = const([36_000.0, 1_800.0])  # -40%
    assert [g.check(crash, const(VOL)).ok for _ in range(3)] == [False, False, True]
    assert g.last.tolist() == [36_000.0, 1_800.0]


def test_check__unseeded__first_price_accepted():
    g = PriceGuard(["BTC", "ETH"], 0.5, 3)
    g.seed(np.array([0.0, 0.0]))  # nothing posted on chain yet
    assert g.check(const([60_000.0, 3_000.0]), const(VOL)).ok


@pytest.mark.parametrize("kw", [{"max_jump_frac": 0.0}, {"confirm_cycles": 0}])
def test_init__bad_settings__error_names_field(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        PriceGuard(["BTC"], kw.get("max_jump_frac", 0.5), kw.get("confirm_cycles", 3))

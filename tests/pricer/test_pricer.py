"""pricer.vy against the float64 engine (offchain/risk/pricing.py): the accuracy metric and
domain are in accuracy.py (and docs/verification.md)."""

import itertools
import os

import boa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from offchain.risk.pricing import CALL, FUTURE, PERPETUAL, PUT, black76_greeks

from .accuracy import HOUR_YEARS, TARGET, WAD, errors, make_case, random_cases

# The sweep and the hypothesis examples: 400 and 50 under `make test`, 10,000 each under
# `make test-long` (the 10,000-input sweep is also benchmarks/bench_pricer.py); PRICER_EXAMPLES
# overrides the examples.
SWEEP = examples(400, 10_000)
EXAMPLES = int(os.environ.get("PRICER_EXAMPLES", examples(50, 10_000)))


def _prices(pricer, cases):
    return [pricer.black76(*c.args()) for c in cases]


def test_black76__random_domain_sweep__within_1e9(pricer):
    cases = random_cases(SWEEP, seed=12)
    err = errors(_prices(pricer, cases), cases)
    assert err.max() <= TARGET, f"max err {err.max():.3g} at {cases[int(err.argmax())]}"


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    moneyness=st.floats(0.2, 5.0),
    vol=st.floats(0.05, 5.0),
    tenor=st.floats(HOUR_YEARS, 2.0),
    fwd=st.floats(1.0, 1e6),
    rate=st.floats(-0.1, 0.2),
    is_call=st.booleans(),
)
def test_black76__hypothesis_inputs__within_1e9(pricer, moneyness, vol, tenor, fwd, rate, is_call):
    case = make_case(moneyness, vol, tenor, fwd, rate, is_call)
    assert errors([pricer.black76(*case.args())], [case])[0] <= TARGET


@pytest.mark.parametrize("is_call", [True, False])
def test_black76__domain_corners__within_1e9(pricer, is_call):
    """Deep ITM and OTM (moneyness 0.2 and 5) at the shortest and longest expiry and the
    lowest and highest vol, at a small and a large forward."""
    cases = [make_case(m, v, t, f, r, is_call) for m, v, t, f, r in itertools.product(
        (0.2, 0.9, 1.0, 1.1, 5.0), (0.05, 5.0), (HOUR_YEARS, 2.0), (1.0, 1e6), (0.0, 0.2))]
    err = errors(_prices(pricer, cases), cases)
    assert err.max() <= TARGET, f"max err {err.max():.3g} at {cases[int(err.argmax())]}"


def test_black76__near_the_money_short_expiry__within_1e9(pricer):
    """Tiny total variance (1 hour at 5 % vol) where d moves fastest with moneyness: the
    range that crosses every branch of the normal CDF (|d| around 0.67 and sqrt(32))."""
    cases = [make_case(m, 0.05, HOUR_YEARS, 100.0, 0.0, c)
             for m in np.linspace(0.995, 1.005, 81) for c in (True, False)]
    err = errors(_prices(pricer, cases), cases)
    assert err.max() <= TARGET, f"max err {err.max():.3g} at {cases[int(err.argmax())]}"


@pytest.mark.parametrize("tenor,vol", [(0, WAD // 2), (WAD // 2, 0), (0, 0)])
def test_black76__zero_variance__discounted_intrinsic(pricer, tenor, vol):
    """No time or no vol: the engine's minimum stdev (1e-12) gives the intrinsic value."""
    fwd, strike = 120 * WAD, 100 * WAD
    assert pricer.black76(fwd, strike, tenor, vol, 0, True) == fwd - strike
    assert pricer.black76(fwd, strike, tenor, vol, 0, False) == 0
    assert pricer.black76(strike, fwd, tenor, vol, 0, False) == fwd - strike


def test_black76__put_call_parity__within_two_wei(pricer):
    for c in random_cases(200, seed=5):
        call = pricer.black76(c.fwd, c.strike, c.tenor, c.vol, c.rate, True)
        put = pricer.black76(c.fwd, c.strike, c.tenor, c.vol, c.rate, False)
        disc = np.exp(-c.rate / WAD * c.tenor / WAD)
        parity = disc * (c.fwd - c.strike)
        # the float64 reference itself is good to a few ulps of the larger of F and K
        assert abs((call - put) - parity) <= 2 + 1e-15 * max(c.fwd, c.strike)


def test_black76_delta__random_domain__matches_engine_forward_delta(pricer):
    for c in random_cases(200, seed=7):
        price, delta = pricer.black76_delta(*c.args())
        assert price == pricer.black76(*c.args())
        g = black76_greeks(c.fwd / WAD, c.strike / WAD, c.tenor / WAD, c.vol / WAD,
                           c.rate / WAD, c.is_call)
        assert abs(delta / WAD - float(g["delta"])) <= 1e-12


def test_unit_value__linear_kinds__forward_and_spot(pricer):
    args = (101 * WAD, 100 * WAD, 90 * WAD, WAD // 10, WAD // 2, WAD // 20)
    assert pricer.unit_value(FUTURE, *args) == 101 * WAD
    assert pricer.unit_value(PERPETUAL, *args) == 100 * WAD
    assert pricer.unit_value(CALL, *args) == pricer.black76(101 * WAD, 90 * WAD, WAD // 10,
                                                           WAD // 2, WAD // 20, True)
    assert pricer.unit_value(PUT, *args) == pricer.black76(101 * WAD, 90 * WAD, WAD // 10,
                                                          WAD // 2, WAD // 20, False)


def test_unit_value__unknown_kind__reverts(pricer):
    with boa.reverts("pricer: unknown kind"):
        pricer.unit_value(4, WAD, WAD, WAD, WAD, WAD, 0)


@pytest.mark.parametrize("args,reason", [
    ((0, WAD, WAD, WAD, 0), "pricer: forward out of range"),
    ((2**128 + 1, WAD, WAD, WAD, 0), "pricer: forward out of range"),
    ((WAD, 0, WAD, WAD, 0), "pricer: strike out of range"),
    ((WAD, 2**128 + 1, WAD, WAD, 0), "pricer: strike out of range"),
    ((WAD, WAD, 100 * WAD + 1, WAD, 0), "pricer: tenor out of range"),
    ((WAD, WAD, WAD, 10 * WAD + 1, 0), "pricer: vol out of range"),
    ((WAD, WAD, WAD, WAD, WAD + 1), "pricer: rate out of range"),
    ((WAD, WAD, WAD, WAD, -WAD - 1), "pricer: rate out of range"),
    ((WAD, 10**9 * WAD + 1, WAD, WAD, 0), "pricer: moneyness out of range"),
    ((10**9 * WAD + 10**9, WAD, WAD, WAD, 0), "pricer: moneyness out of range"),
])
def test_black76__input_out_of_bounds__reverts_naming_it(pricer, args, reason):
    with boa.reverts(reason):
        pricer.black76(*args, True)


def test_black76__extreme_bounds__no_overflow(pricer):
    """The corners of the accepted domain price without reverting and within [0, bound]."""
    big = 2**128
    for fwd, strike in ((big, big), (big, big // 10**9), (big // 10**8, big), (1, 1)):
        for tenor, vol in ((0, 0), (100 * WAD, 10 * WAD), (1, 10 * WAD)):
            for rate in (0, WAD // 50):
                call = pricer.black76(fwd, strike, tenor, vol, rate, True)
                put = pricer.black76(fwd, strike, tenor, vol, rate, False)
                assert 0 <= call <= fwd and 0 <= put <= strike

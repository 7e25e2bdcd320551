"""Black-76 / Black-Scholes against published textbook values and parity.

References: J. C. Hull, Options, Futures, and Other Derivatives, 8th ed. (2012):
- Example 15.6: S0=42, K=40, r=10%, sigma=20%, T=0.5 -> c = 4.76, p = 0.81.
- Section 19 worked example (Table 19.x; the 20-week call used for every Greek): S0=49, K=50,
  r=5%, sigma=20%, T=0.3846 -> price 2.40, delta 0.522, gamma 0.066, vega 12.1 (per 1.00 of
  vol), theta -4.31 per year.
- Example 18.6 (Black's model): futures option F0=20, K=20, r=9%, sigma=25%, T=4/12 ->
  European put = 1.12.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from offchain.risk.pricing import black76_greeks, black76_price, black_scholes_greeks


def test_black_scholes__hull_example_15_6__call_4_76_put_0_81():
    g_call = black_scholes_greeks(42.0, 40.0, 0.5, 0.2, 0.1, True)
    g_put = black_scholes_greeks(42.0, 40.0, 0.5, 0.2, 0.1, False)
    assert round(float(g_call["price"]), 2) == 4.76
    assert round(float(g_put["price"]), 2) == 0.81


def test_black_scholes_greeks__hull_chapter_19_call__published_greeks():
    g = black_scholes_greeks(49.0, 50.0, 0.3846, 0.2, 0.05, True)
    assert round(float(g["price"]), 2) == 2.40
    assert round(float(g["delta"]), 3) == 0.522
    assert round(float(g["gamma"]), 3) == 0.066
    assert round(float(g["vega"]), 1) == 12.1
    assert round(float(g["theta"]), 2) == -4.31


def test_black76_price__hull_example_18_6__put_1_12():
    p = black76_price(20.0, 20.0, 4 / 12, 0.25, 0.09, False)
    c = black76_price(20.0, 20.0, 4 / 12, 0.25, 0.09, True)
    assert round(float(p), 2) == 1.12
    assert round(float(c), 2) == 1.12   # at the money forward: call = put


@settings(max_examples=examples(60, 1_000), deadline=None)
@given(fwd=st.floats(1.0, 1e6), k_ratio=st.floats(0.2, 5.0), t=st.floats(1e-3, 3.0),
       vol=st.floats(0.05, 3.0), rate=st.floats(-0.02, 0.2))
def test_black76_price__any_inputs__put_call_parity_holds(fwd, k_ratio, t, vol, rate):
    strike = fwd * k_ratio
    c = black76_price(fwd, strike, t, vol, rate, True)
    p = black76_price(fwd, strike, t, vol, rate, False)
    assert np.isclose(c - p, np.exp(-rate * t) * (fwd - strike), rtol=1e-9, atol=1e-9 * fwd)


def test_black76_greeks__vectorised_batch__match_finite_differences():
    rng = np.random.default_rng(7)
    n = 500
    fwd = rng.uniform(1e3, 1e5, n)
    strike = fwd * rng.uniform(0.6, 1.6, n)
    t, vol, rate = rng.uniform(0.02, 2, n), rng.uniform(0.2, 1.5, n), rng.uniform(0, 0.1, n)
    is_call = rng.random(n) < 0.5
    g = black76_greeks(fwd, strike, t, vol, rate, is_call)
    h = 1e-4 * fwd
    price = lambda f=fwd, tt=t, v=vol: black76_price(f, strike, tt, v, rate, is_call)  # noqa: E731
    assert np.allclose(g["delta"], (price(fwd + h) - price(fwd - h)) / (2 * h), atol=1e-6)
    assert np.allclose(g["gamma"], (price(fwd + h) - 2 * price() + price(fwd - h)) / h**2,
                       rtol=1e-3, atol=1e-9)
    assert np.allclose(g["vega"], (price(v=vol + 1e-5) - price(v=vol - 1e-5)) / 2e-5, rtol=1e-5)
    # theta = -dV/dT with the forward held fixed
    assert np.allclose(g["theta"], -(price(tt=t + 1e-6) - price(tt=t - 1e-6)) / 2e-6,
                       rtol=1e-4, atol=1e-6 * fwd)
    assert np.allclose(g["price"], price())

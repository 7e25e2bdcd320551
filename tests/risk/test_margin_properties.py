"""The properties the contracts rely on: subadditivity and positive homogeneity of the scenario
loss (and the other subadditive add-ons), the per-instrument rate bound, float32 safety, and
that hedged books need less than the sum of their legs."""

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from offchain.risk import RiskEngine, params_from_dict
from offchain.risk.explain import explain

N_INSTR = 2 * (1 + 3 * (1 + 14))  # conftest chain: 92 instruments


def sublinear_part(engine, books):
    b = engine.breakdown(np.atleast_2d(books), exact=True)
    return b.worst_loss + b.basis + b.short_option


books = st.lists(st.tuples(st.integers(0, N_INSTR - 1), st.floats(-50, 50)), min_size=1,
                 max_size=12).map(lambda legs: _dense(legs))


def _dense(legs):
    q = np.zeros(N_INSTR)
    for i, s in legs:
        q[i] += s
    return q


@settings(max_examples=examples(40, 1_000), deadline=None)
@given(a=books, b=books)
def test_scenario_loss__any_two_books__is_subadditive(engine, a, b):
    m = sublinear_part(engine, np.vstack([a, b, a + b]))
    assert m[2] <= m[0] + m[1] + 1e-9 * (1 + m[0] + m[1])
    worst = engine.breakdown(np.vstack([a, b, a + b]), exact=True).worst_loss
    assert worst[2] <= worst[0] + worst[1] + 1e-9 * (1 + worst[0] + worst[1])


@settings(max_examples=examples(30, 1_000), deadline=None)
@given(a=books, f=st.floats(0, 20))
def test_scenario_loss__scaled_book__is_positively_homogeneous(engine, a, f):
    m = sublinear_part(engine, np.vstack([a, f * a]))
    assert np.isclose(m[1], f * m[0], rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(20, 500), deadline=None)
@given(a=books, b=books, d=st.floats(0, 1))
def test_worst_loss__with_decorrelation_offset__stays_subadditive_and_below_per_unit(
        default_params, chain, a, b, d):
    raw = dict(default_params.raw, decorrelation=d)
    eng = RiskEngine(params_from_dict(raw), *chain, dtype=np.float64)
    base = RiskEngine(params_from_dict(dict(default_params.raw, decorrelation=1.0)), *chain,
                      dtype=np.float64)
    w = eng.breakdown(np.vstack([a, b, a + b]), exact=True).worst_loss
    assert w[2] <= w[0] + w[1] + 1e-9 * (1 + w[0] + w[1])
    assert w[2] <= base.breakdown(a + b, exact=True).worst_loss[0] + 1e-6
    # with the netted short-option floor too (the whole sublinear part)
    m = sublinear_part(eng, np.vstack([a, b, a + b]))
    assert m[2] <= m[0] + m[1] + 1e-9 * (1 + m[0] + m[1])


@settings(max_examples=examples(30, 1_000), deadline=None)
@given(book=books, i=st.integers(0, N_INSTR - 1), q=st.floats(-200, 200))
def test_margin_rates__any_book_and_trade__bound_the_new_margin(default_params, chain, book, i, q):
    # a low liquidity threshold so the non-subadditive add-on is exercised too
    raw = dict(default_params.raw, addons=dict(default_params.addons,
                                              liquidity_notional_threshold=10_000.0))
    eng = RiskEngine(params_from_dict(raw), *chain, dtype=np.float64)
    rates = eng.margin_rates()
    after = book.copy()
    after[i] += q
    b = eng.breakdown(np.vstack([book, after]), exact=True)
    rate_mm = rates.mm_long[i] if q > 0 else rates.mm_short[i]
    rate_im = rates.im_long[i] if q > 0 else rates.im_short[i]
    assert b.mm[1] <= b.mm[0] + abs(q) * rate_mm + 1e-7 * (1 + b.mm[0])
    assert b.im[1] <= b.im[0] + abs(q) * rate_im + 1e-7 * (1 + b.im[0])


def test_margin_rates__one_contract__at_least_its_standalone_margin(engine):
    rates = engine.margin_rates()
    eye = np.eye(N_INSTR)
    assert np.all(rates.mm_long >= engine.breakdown(eye, exact=True).mm - 1e-9)
    assert np.all(rates.mm_short >= engine.breakdown(-eye, exact=True).mm - 1e-9)
    assert np.allclose(rates.im_long * engine.params.mm_factor, rates.mm_long)


def test_margins__float32_many_accounts__never_below_float64_and_close(engine, fast_engine):
    rng = np.random.default_rng(3)
    p = sp.random(2000, N_INSTR, density=0.1, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.normal(0, 30, k))
    exact = engine.margins(p)
    fast = fast_engine.margins(p)
    assert np.all(fast.mm >= exact.mm)
    gap = (fast.mm - exact.mm) / np.maximum(exact.mm, 1.0)
    assert np.median(gap) < 1e-4 and gap.max() < 1e-2
    assert np.all(fast.im >= exact.im)


def test_margins__csr_rows__match_single_book_explain(engine):
    rng = np.random.default_rng(5)
    p = sp.random(20, N_INSTR, density=0.15, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.normal(0, 5, k))
    res = engine.margins(p)
    for r in range(20):
        e = explain(engine, p[r].toarray().ravel())
        assert np.isclose(e["maintenance_margin"], res.mm[r], rtol=1e-12)
        assert np.isclose(e["initial_margin"], res.im[r], rtol=1e-12)


def test_explain__covered_call__less_than_sum_of_legs(engine, find):
    q = np.zeros(N_INSTR)
    q[find("BTC", "perpetual")] = 1
    q[find("BTC", "call", strike=round(65666.19 * 1.1, -1), days=30)] = -1
    legs = sum(explain(engine, np.where(np.arange(N_INSTR) == i, q, 0))["maintenance_margin"]
               for i in np.flatnonzero(q))
    e = explain(engine, q)
    assert e["maintenance_margin"] < 0.85 * legs
    assert e["portfolio_margin"] < e["cross_margin"] <= e["isolated_margin"] + 1e-9


def test_explain__calendar_spread__far_below_sum_of_legs(engine, find):
    q = np.zeros(N_INSTR)
    q[find("ETH", "future", days=30)] = 10
    q[find("ETH", "future", days=90)] = -10
    e = explain(engine, q)
    assert e["maintenance_margin"] < 0.1 * e["isolated_margin"] * engine.params.mm_factor
    # basis shock is what remains: the spread is charged, not zero
    assert e["components"]["basis_shock"] > 0


def test_explain__delta_hedged_straddle__less_than_sum_of_legs(engine, find):
    q = np.zeros(N_INSTR)
    call, put = find("BTC", "call", strike=65670, days=30), find("BTC", "put", strike=65670, days=30)
    q[call], q[put] = -2, -1
    delta = q @ engine.greeks["delta"]
    q[find("BTC", "perpetual")] = -delta
    e = explain(engine, q)
    assert abs(sum(u["greeks"]["delta"] for u in e["underlyings"].values())) < 1e-9
    assert e["maintenance_margin"] < 0.8 * e["isolated_margin"] * engine.params.mm_factor
    shares = sum(p["share_of_binding_loss"] for p in e["positions"])
    assert np.isclose(shares, 1.0)


def test_what_if__adding_hedge__lowers_margin_and_respects_bound(engine, find):
    q = np.zeros(N_INSTR)
    q[find("BTC", "call", strike=65670, days=30)] = -3
    trade = np.zeros(N_INSTR)
    trade[find("BTC", "perpetual")] = 1.5
    w = engine.what_if(q, trade)
    assert w["initial_margin_after"] < w["initial_margin_before"]
    assert w["maintenance_margin_after"] <= w["maintenance_margin_bound"]


def test_breakdown__netted_floor_shortcut__equals_floor_on_every_row(engine, fast_engine):
    from offchain.risk.margin import worst_loss
    rng = np.random.default_rng(11)
    p = sp.random(3000, N_INSTR, density=0.05, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.normal(-2, 5, k))
    for eng, rtol in ((engine, 1e-12), (fast_engine, 1e-6)):
        b = eng.breakdown(p)
        full = worst_loss(b.pnl, eng.scenarios.weight.astype(b.pnl.dtype),
                   eng.params.decorrelation, eng.short_option_floor(p))[0]
        assert np.allclose(b.worst_loss + b.short_option, full, rtol=rtol, atol=1e-6)
        assert (b.short_option > 0).any()   # the floor binds on some of these books


def test_explain__conversion_100_lots__pays_no_short_option_minimum(engine, find):
    q = np.zeros(N_INSTR)
    k = 65670
    q[find("BTC", "perpetual")] = 100
    q[find("BTC", "call", strike=k, days=30)] = -100
    q[find("BTC", "put", strike=k, days=30)] = 100
    e = explain(engine, q)
    assert e["components"]["short_option_minimum"] == 0.0
    # a short call alone pays it
    only_call = np.where(np.arange(N_INSTR) == find("BTC", "call", strike=k, days=30), -1.0, 0)
    assert engine.single(only_call)["short_option_minimum"] >= 0.0

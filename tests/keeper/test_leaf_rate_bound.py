"""The per-trade bound the contracts rely on, through the keeper's own leaf path: its book of
the chain's WAD sizes (KeeperBook.apply_views), the rates it posts (ExactMargins.rates_wad)
and the margins it signs in the account leaves (MarketInputs.margins_wad, what
epoch_account_leaves puts in every leaf, over books keyed by instrument id as the bot builds
them). For every book A and trade q: MM(A + q) <= MM(A) + ceil(|q| * rate(side) / WAD),
exactly, in any batch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from offchain.chain.epoch_leaves import MarketInputs
from offchain.keeper.book import KeeperBook
from offchain.risk import (
    Instruments,
    Market,
    RiskEngine,
    UnderlyingMarket,
    load_params,
    params_from_dict,
)
from offchain.risk.exact import ExactMargins

WAD = 10**18
T0, DAY = 1718582400.0, 86400.0


def _chain():
    spots = {"BTC": 65666.19, "ETH": 3510.0}
    specs = []
    for u, spot in spots.items():
        specs.append({"underlying": u, "kind": "perpetual"})
        for d in (7, 30, 90):
            specs.append({"underlying": u, "kind": "future", "expiry": T0 + d * DAY})
            for j in range(-3, 4):
                for kind in ("call", "put"):
                    specs.append({"underlying": u, "kind": kind, "expiry": T0 + d * DAY,
                                  "strike": round(spot * (1 + 0.05 * j), -1)})
    return specs, Market(T0, {u: UnderlyingMarket(spot=s, rate=0.05, vol=0.6)
                              for u, s in spots.items()})


SPECS, MARKET = _chain()
N = len(SPECS)


def _engine(params):
    return RiskEngine(params, Instruments.from_specs(SPECS), MARKET)   # the keeper's float32


@pytest.fixture(scope="module")
def exact():
    return ExactMargins(_engine(load_params()))


@pytest.fixture(scope="module")
def exact_liquid():
    # a low liquidity threshold so the Lipschitz (non-subadditive) add-on is exercised too
    raw = load_params().raw
    under = {u: dict(c, liquidity_notional_threshold=20_000.0) for u, c in raw["underlyings"].items()}
    return ExactMargins(_engine(params_from_dict(dict(raw, underlyings=under))))


def _leaf_margins(exact, kb: KeeperBook, rows) -> tuple[list[int], list[int]]:
    """(IM, MM) in WAD of the leaves of book rows `rows`, every instrument live."""
    market = MarketInputs(0, exact.engine, exact, {i + 1: i for i in range(N)}, {})
    return market.margins_wad([{i + 1: q for i, q in kb.sizes_wad.get(r, {}).items()} for r in rows])


def _book_of(rows: list[dict[int, int]]) -> KeeperBook:
    book = KeeperBook(N)
    views = [(0, 1, [(i + 1, q, 0) for i, q in r.items() if q], 0, 0, 0, 0, 0, 0, 0) for r in rows]
    book.apply_views([f"0x{k:040x}" for k in range(len(rows))], views)
    return book


sizes = st.integers(-300 * WAD, 300 * WAD)
books = st.dictionaries(st.integers(0, N - 1), sizes, min_size=1, max_size=16)
trades = st.tuples(st.integers(0, N - 1),
                   st.one_of(st.integers(-WAD, WAD), sizes)).filter(lambda t: t[1] != 0)


def _check(exact, book, trade, other):
    i, q = trade
    after = dict(book)
    after[i] = after.get(i, 0) + q
    # A and A + q in different batches, each next to an unrelated (possibly huge) account
    kb = _book_of([book, other, after])
    im0, mm0 = _leaf_margins(exact, kb, [0])
    im1, mm1 = _leaf_margins(exact, kb, [1, 2])
    im_l, im_s, mm_l, mm_s = exact.rates_wad()
    rate_mm, rate_im = (mm_l[i], im_l[i]) if q > 0 else (mm_s[i], im_s[i])
    assert mm1[1] <= mm0[0] + -(-abs(q) * rate_mm // WAD)
    assert im1[1] <= im0[0] + -(-abs(q) * rate_im // WAD)
    # the batch does not matter
    assert _leaf_margins(exact, kb, [2]) == ([im1[1]], [mm1[1]])


@settings(max_examples=examples(40, 1_000), deadline=None)
@given(book=books, trade=trades, other=books)
def test_leaf_margins__any_book_and_trade__within_posted_rate_exactly(exact, book, trade,
                                                                           other):
    _check(exact, book, trade, other)


@settings(max_examples=examples(25, 500), deadline=None)
@given(book=books, trade=trades, other=books)
def test_leaf_margins__liquidity_addon_active__within_posted_rate_exactly(
        exact_liquid, book, trade, other):
    _check(exact_liquid, book, trade, other)


def test_leaf_margins__match_float_engine__to_1e9_relative(exact):
    # quantising the per-contract vectors to 2^-40 moves a margin by ~1e-12 of itself
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(50):
        idx = rng.choice(N, 8, replace=False)
        rows.append({int(i): int(rng.normal(0, 20) * WAD) for i in idx})
    kb = _book_of(rows)
    im, mm = _leaf_margins(exact, kb, list(range(50)))
    ref = exact.engine.breakdown(kb.positions, exact=True)
    assert np.allclose(np.asarray(mm, dtype=float) / WAD, ref.mm, rtol=1e-9, atol=1e-9)
    assert np.allclose(np.asarray(im, dtype=float) / WAD, ref.im, rtol=1e-9, atol=1e-9)


def test_rates_wad__one_contract__equal_its_leaf_margin_plus_liquidity_term(exact):
    im_l, im_s, mm_l, mm_s = exact.rates_wad()
    kb = _book_of([{i: WAD} for i in range(N)] + [{i: -WAD} for i in range(N)])
    im, mm = _leaf_margins(exact, kb, list(range(2 * N)))
    assert all(r >= m for r, m in zip(mm_l + mm_s, mm, strict=True))
    assert all(r >= m for r, m in zip(im_l + im_s, im, strict=True))

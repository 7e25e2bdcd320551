"""Portfolio margin reaching the engine as a leaf of a signed epoch root: the leaf's IM
replaces the per-leg pending bound (golden books shared with the risk engine), later trades
add their pending bounds on top, and anyone may apply a leaf. Binding and replay rules of
leaves are in test_account_leaves.py; signature rules in tests/oracle."""

import json
from pathlib import Path

import ape
import pytest
from conftest import (
    BTC,
    DAY,
    FUTURE_EXPIRY_DAYS,
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    WAD,
)

from .conftest import PERP

USDC = 10**6
GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "risk_cases.json").read_text())


@pytest.fixture(scope="module")
def long_book(fund, set_market, trade, trader, maker):
    """trader long 1 perp (pending IM 6k / MM 3k), 20k deposited."""
    fund(trader, 20_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, 60_000 * WAD)
    return trader


def test_apply_leaf__then_trade__pending_adds_on_top(engine, long_book, give_margin, trade, maker):
    give_margin(long_book, 4_000 * WAD, 2_000 * WAD)
    trade(maker, long_book, PERP, -WAD, 60_000 * WAD)
    h = engine.health(long_book)
    assert (h.im_wad, h.mm_wad) == (10_000 * WAD, 5_000 * WAD)


def test_apply_leaf__anyone_may_apply(engine, long_book, give_margin, attacker, oracle):
    tx = give_margin(long_book, 4_000 * WAD, 2_000 * WAD, sender=attacker)
    assert tx.sender == attacker.address
    assert engine.health(long_book).im_wad == 4_000 * WAD
    assert engine.account(long_book).margin_basis_timestamp == oracle.root_timestamp(engine)


# ------------------------------------------------------------------ golden books


@pytest.fixture(scope="module")
def golden_market(registry, admin, chain, set_market):
    """Golden instruments listed (perp = id 1; future, call, put listed anew with a future
    expiry) and priced with the golden marks and per-unit rates."""
    expiry = chain.pending_timestamp + (FUTURE_EXPIRY_DAYS + 1) * DAY
    ids = {"BTC-PERP": PERP}
    for inst in GOLDEN["instruments"]:
        if inst["kind"] == "perpetual":
            continue
        kind = {"future": KIND_FUTURE, "call": KIND_CALL, "put": KIND_PUT}[inst["kind"]]
        registry.list_instrument(BTC, kind, int(inst["strike_wad"] or 0), expiry, sender=admin)
        ids[inst["name"]] = registry.instrument_count()
    by_id = {ids[i["name"]]: i for i in GOLDEN["instruments"]}
    set_market(
        ids=list(by_id),
        marks={k: int(i["mark_wad"]) for k, i in by_id.items()},
        rates={k: tuple(int(i[f]) for f in ("im_long_wad", "im_short_wad", "mm_long_wad", "mm_short_wad"))
               for k, i in by_id.items()},
    )
    return ids, by_id


@pytest.fixture(scope="module")
def portfolio_trader(accounts):
    """A fresh account (the module's other books belong to `trader`)."""
    return accounts[7]


@pytest.mark.parametrize("book_name", sorted(GOLDEN["books"]))
def test_apply_leaf__golden_book__portfolio_margin_replaces_per_leg_bound(
        engine, golden_market, book_name, fund, make_order, portfolio_trader, maker, give_margin):
    trader = portfolio_trader
    ids, by_id = golden_market
    book = GOLDEN["books"][book_name]
    sum_legs = int(book["sum_leg_im_rates_wad"])
    fund(maker, 10_000_000 * USDC)
    fund(trader, (sum_legs // WAD + 2) * USDC)  # enough for the per-leg bound, nothing more
    for k, pos in enumerate(book["positions"]):
        iid = ids[pos["instrument"]]
        size = int(pos["size_wad"])
        # trader is the maker and trades at the golden mark: no fee, equity stays = deposit
        order, sig = make_order(trader, iid, size > 0, abs(size), int(by_id[iid]["mark_wad"]), order_nonce=k + 1)
        engine.fill(order.as_args(), sig, abs(size), sender=maker)
    h = engine.health(trader)
    # the engine's pending bound is the sum of the golden standalone leg rates, exactly in
    # integers (ceil per leg), and the risk engine's own float total to rounding
    legs = [(int(p["size_wad"]), by_id[ids[p["instrument"]]]) for p in book["positions"]]
    exact_im = sum(-(-abs(q) * int(i["im_long_wad" if q > 0 else "im_short_wad"]) // WAD) for q, i in legs)
    exact_mm = sum(-(-abs(q) * int(i["mm_long_wad" if q > 0 else "mm_short_wad"]) // WAD) for q, i in legs)
    assert (h.im_wad, h.mm_wad) == (exact_im, exact_mm)
    assert h.im_wad == pytest.approx(sum_legs, rel=1e-12)
    assert h.mm_wad == pytest.approx(int(book["sum_leg_mm_rates_wad"]), rel=1e-12)
    assert h.position_value_wad == pytest.approx(int(book["position_value_wad"]), rel=1e-12, abs=10**6)
    equity = h.equity_wad
    im = int(book["initial_margin_wad"])
    assert im <= sum_legs  # subadditivity: the portfolio never needs more than its legs
    free_units = (equity - im) // WAD
    if book_name == "covered_call":
        # the headline case (default-v2): per-leg 19.7k vs portfolio 10.4k
        assert sum_legs > 1.8 * im
    # before the leaf is applied, taking the portfolio's free collateral out is refused
    if free_units > (equity - sum_legs) // WAD and free_units > 0:
        with ape.reverts("engine: below initial margin"):
            engine.withdraw(free_units * USDC, sender=trader)
    give_margin(trader, im, int(book["maintenance_margin_wad"]), position_value_wad=int(book["position_value_wad"]))
    assert engine.health(trader).im_wad == im
    if free_units > 0:
        engine.withdraw(free_units * USDC, sender=trader)
    assert engine.health(trader).equity_wad >= im

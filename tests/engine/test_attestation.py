"""post_attestation: binding to the state nonce, strictly newer timestamps, oracle checks
bubbling up, pending adjustments; golden books shared with the risk engine."""

import json
from dataclasses import replace
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
    PARAMS_HASH,
    WAD,
)

from offchain.chain.eip712 import Attestation, sign, sign_multi

from .conftest import PERP

USDC = 10**6
GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "risk_cases.json").read_text())


def _att(engine, account, chain, **kw):
    ts = chain.blocks.head.timestamp
    fields = dict(engine=engine.address, account=account.address, state_nonce=engine.state_nonce(account), position_value_wad=0,
                  initial_margin_wad=1_000 * WAD, maintenance_margin_wad=500 * WAD, params_hash=PARAMS_HASH,
                  timestamp=ts, deadline=ts + 300)
    fields.update(kw)
    return Attestation(**fields)


@pytest.fixture(scope="module")
def long_book(fund, set_market, trade, trader, maker):
    """trader long 1 perp (pending IM 6k / MM 3k), 20k deposited."""
    fund(trader, 20_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, 60_000 * WAD)
    return trader


def test_post_attestation__valid__stores_margins_resets_pending_and_logs(engine, long_book, attest, keeper):
    tx = attest(long_book, 4_000 * WAD, 2_000 * WAD, value_wad=60_000 * WAD)
    view = engine.account(long_book)
    assert (view.attested_im_wad, view.attested_mm_wad) == (4_000 * WAD, 2_000 * WAD)
    assert (view.pending_im_wad, view.pending_mm_wad) == (0, 0)
    [log] = tx.decode_logs(engine.AttestationPosted)
    # (`log.timestamp` is the block time in ape: read the event field explicitly)
    assert view.attestation_timestamp == view.margin_basis_timestamp == log.event_arguments["timestamp"] <= tx.timestamp
    assert (log.account, log.state_nonce, log.position_value_wad) == (long_book.address, 1, 60_000 * WAD)
    assert (log.initial_margin_wad, log.maintenance_margin_wad) == (4_000 * WAD, 2_000 * WAD)


def test_post_attestation__then_trade__pending_adds_on_top(engine, long_book, attest, trade, maker):
    attest(long_book, 4_000 * WAD, 2_000 * WAD)
    trade(maker, long_book, PERP, -WAD, 60_000 * WAD)
    h = engine.health(long_book)
    assert (h.im_wad, h.mm_wad) == (10_000 * WAD, 5_000 * WAD)


def test_post_attestation__anyone_may_post(engine, long_book, attest, attacker):
    attest(long_book, 4_000 * WAD, 2_000 * WAD, sender=attacker)
    assert engine.account(long_book).attested_im_wad == 4_000 * WAD


def test_post_attestation__wrong_state_nonce__reverts(engine, long_book, chain, domain, signers, keeper, mine):
    mine(1)
    att = _att(engine, long_book, chain, state_nonce=0)  # the book changed since nonce 0
    with ape.reverts("engine: wrong state nonce"):
        engine.post_attestation(att.as_args(), sign_multi(att, domain, signers[:2]), sender=keeper)


def test_post_attestation__not_newer__reverts_and_keeps_first(engine, long_book, chain, domain, signers,
                                                              keeper, mine):
    mine(1)
    first = _att(engine, long_book, chain)
    engine.post_attestation(first.as_args(), sign_multi(first, domain, signers[:2]), sender=keeper)
    replay = _att(engine, long_book, chain, timestamp=first.timestamp, initial_margin_wad=600 * WAD)
    with ape.reverts("engine: attestation not newer"):
        engine.post_attestation(replay.as_args(), sign_multi(replay, domain, signers[:2]), sender=keeper)
    assert engine.account(long_book).attested_im_wad == 1_000 * WAD


def test_post_attestation__one_signature__oracle_reason_bubbles_up(engine, long_book, chain, domain, signers,
                                                                    keeper, mine):
    mine(1)
    att = _att(engine, long_book, chain)
    with ape.reverts("oracle: below threshold"):
        engine.post_attestation(att.as_args(), [sign(att, domain, signers[0])], sender=keeper)


def test_post_attestation__outsider_signature__reverts(engine, long_book, chain, domain, signers, outsider_signer,
                                                       keeper, mine):
    mine(1)
    att = _att(engine, long_book, chain)
    with ape.reverts():
        engine.post_attestation(att.as_args(), sign_multi(att, domain, [signers[0], outsider_signer]),
                                sender=keeper)
    assert engine.account(long_book).attested_im_wad == 0


def test_post_attestation__wrong_params_hash__reverts(engine, long_book, chain, domain, signers, keeper, mine):
    mine(1)
    att = _att(engine, long_book, chain, params_hash=b"\x01" * 32)
    with ape.reverts():
        engine.post_attestation(att.as_args(), sign_multi(att, domain, signers[:2]), sender=keeper)


def test_post_attestation__signed_for_other_account__reverts(engine, long_book, chain, domain, signers, keeper,
                                                             attacker, mine):
    mine(1)
    att = _att(engine, long_book, chain)
    moved = list(att.as_args())
    moved[1] = attacker.address  # reuse the trader's signatures for another account
    with ape.reverts():
        engine.post_attestation(tuple(moved), sign_multi(att, domain, signers[:2]), sender=keeper)


def test_post_attestation__signed_for_another_engine__reverts(engine, long_book, chain, domain, signers, keeper,
                                                              mine, token):
    mine(1)
    att = replace(_att(engine, long_book, chain), engine=token.address)  # validly signed, other engine
    with ape.reverts("engine: attestation for another engine"):
        engine.post_attestation(att.as_args(), sign_multi(att, domain, signers[:2]), sender=keeper)
    assert engine.account(long_book).attested_im_wad == 0


def test_post_attestation__im_below_mm__oracle_reason_bubbles_up(engine, long_book, chain, domain, signers,
                                                                 keeper, mine):
    mine(1)
    att = _att(engine, long_book, chain, initial_margin_wad=500 * WAD, maintenance_margin_wad=501 * WAD)
    with ape.reverts("oracle: initial margin below maintenance margin"):
        engine.post_attestation(att.as_args(), sign_multi(att, domain, signers[:2]), sender=keeper)


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
def test_post_attestation__golden_book__portfolio_margin_replaces_per_leg_bound(
        engine, golden_market, book_name, fund, make_order, portfolio_trader, maker, attest):
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
    # before the attestation, taking the portfolio's free collateral out is refused
    if free_units > (equity - sum_legs) // WAD and free_units > 0:
        with ape.reverts("engine: below initial margin"):
            engine.withdraw(free_units * USDC, sender=trader)
    attest(trader, im, int(book["maintenance_margin_wad"]), value_wad=int(book["position_value_wad"]))
    assert engine.health(trader).im_wad == im
    if free_units > 0:
        engine.withdraw(free_units * USDC, sender=trader)
    assert engine.health(trader).equity_wad >= im

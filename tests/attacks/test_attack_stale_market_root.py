"""A witness against a market root older than the book's marks (SECURITY.md V24). The
verifier re-prices the book at the root's inputs, the engine values it at the oracle's
marks: after a fall, an honest root from before it prices a long at its old spot (an MM
above the model's now) and liquidated or flagged a book the model calls healthy at the
current marks. The engine now judges a witness only against a root at least as new as
every mark of the book ("engine: marks newer than the market root").

Real Anvil chain, token, threshold-signed roots and market data, the default-v2 verifier.
The autouse `funds_add_up` check (tests/engine/conftest.py) runs after every test."""

import ape
import numpy as np
import pytest
from conftest import WAD
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture
from support.check_market import check_market
from support.margins import with_model_rates

from offchain.chain.witness import leaves_engine, liquidation_witness

from .conftest import PERP, TRADING

USDC = 10**6
PRICE = 60_000 * WAD
FALL = 54_000 * WAD
LIQ_PRICE_AGE = TRADING[4]          # max_liquidation_price_age (7,200 s)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, governance, oracle, verifier, leaf_for, post_root, set_market, fund, trade,
                  make_order, witness_for, liquidate, flag, market_leaf, attacker, accomplice, liquidator,
                  give_margin):  # noqa: F811
    """Deployments and session fixtures before the first test's snapshot (ape isolation)."""


def _model_mm_at_current_marks(engine, oracle, market_leaf, chain, account) -> int:
    """The exact float64 model's MM of the stored book with every perpetual's spot at the
    oracle's CURRENT mark (market_leaf reads it) and the model's per-unit rates: the figure
    the promise 'equity >= the model's MM at current marks' names. WAD."""
    book = [(p.instrument_id, p.size_wad) for p in engine.account(account).positions]
    now = chain.blocks.head.timestamp
    leaves = with_model_rates(WITNESS_PARAMS, [market_leaf(i) for i, _ in sorted(book)], now)
    by_id = {m.instrument_id: m for m in leaves}
    ordered = [by_id[i] for i, _ in book]
    eng, _ = leaves_engine(WITNESS_PARAMS, ordered, now)
    q = np.array([s / WAD for _, s in book])[None, :]
    return int(float(eng.breakdown(q, exact=True).mm[0]) * WAD)


def _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
                          post_root, market_leaf, chain, deposit_usdc=15_000):
    """The victim long 1 BTC perp at 60,000 (it makes: no fee) on `deposit_usdc`. The
    keeper's root, signed now, holds the victim's honest leaf (the model's MM at 60,000, IM
    twice that) and the honest market leaves (perp spot = the mark 60,000, the model's rates);
    the leaf is applied. Returns the victim, that root's trees and signed_at, and its MM."""
    victim = accounts[9]
    fund(victim, deposit_usdc * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)
    # the model's MM of the book at 60,000 from the leaves the root will carry
    signed_at = chain.blocks.head.timestamp + 1
    market = with_model_rates(WITNESS_PARAMS, [market_leaf(PERP)], signed_at)
    eng, _ = leaves_engine(WITNESS_PARAMS, market, signed_at)
    mm60 = int(float(eng.breakdown(np.array([[1.0]]), exact=True).mm[0]) * WAD)
    trees = post_root([leaf_for(victim, 2 * mm60, mm60)], market=market, timestamp=signed_at)
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    return victim, trees, signed_at, mm60


def _state(engine, token, *accounts):
    return (tuple(engine.account(a) for a in accounts), engine.insurance_wad(), engine.fees_wad(),
            engine.socialised_loss_wad(), token.balanceOf(engine))


STALE = "engine: marks newer than the market root"


def _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, seconds, mark):
    """The mark moves to `mark` `seconds` after the root (no new root): the victim's equity
    and the model's MM at the current mark."""
    mine(seconds)
    set_market(marks={PERP: mark})
    return engine.health(victim).equity_wad, _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)


def test_witness__honest_root_then_marks_fall_10pct__model_healthy_long_refused_state_kept(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine):
    """The victim is long 1 BTC perp on 15,000; an honest root signed at the mark 60,000 is
    applied (leaf MM = the model's at 60,000). 15 minutes later honest market data moves the
    mark to 54,000; no new root. Equity 9,000 covers the model's MM at 54,000 (~8,527), but
    the old root's witness re-prices the book at 60,000 (~9,474): before the fix the slice
    went through (fraction 0.1501, discount 142.18). Now refused with nothing changed."""
    victim, trees, signed_at, mm60 = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                           set_market, trade, leaf_for, post_root, market_leaf,
                                                           chain)
    equity, model_now = _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, 900, FALL)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, signed_at)
    verifier_mm = check_market(verifier, w).maintenance_wad
    print(f"\n  equity {equity / WAD:,.2f}, model MM at 54,000 {model_now / WAD:,.2f}, "
          f"the old root's witness MM {verifier_mm / WAD:,.2f}")
    assert model_now <= equity < verifier_mm                     # healthy now; short at the root's spot
    before = _state(engine, token, victim, liquidator)
    with ape.reverts(STALE):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w.encode(), sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before


def test_flag__honest_root_then_marks_fall_10pct__model_healthy_longs_clock_not_started(
        engine, token, verifier, oracle, accounts, maker, liquidator, attacker, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine):
    """As above, with `flag`: before the fix the old root's witness started the discount
    clock of the healthy long (a dip hours later inherited the grown discount). Refused."""
    victim, trees, signed_at, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                        set_market, trade, leaf_for, post_root, market_leaf, chain)
    equity, model_now = _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, 900, FALL)
    assert equity >= model_now
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, signed_at)
    before = _state(engine, token, victim, attacker)
    with ape.reverts(STALE):
        engine.flag(victim, w.encode(), sender=attacker)
    assert _state(engine, token, victim, attacker) == before
    assert engine.account(victim).liquidatable_since == 0


def test_witness__marks_fall_10pct_then_a_fresh_root_at_the_current_mark__model_healthy_long_refused_state_kept(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine, witness_for):
    """The same book and fall; the next root's market leaves carry the current mark (54,000).
    Its witness shows no shortfall: refused "witness scenarios show no shortfall", nothing
    changed, though the applied MM (60,000's) says liquidatable."""
    victim, _, _, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund, set_market,
                                            trade, leaf_for, post_root, market_leaf, chain)
    mine(900)
    set_market(marks={PERP: FALL})
    w = witness_for(victim)
    equity = engine.health(victim).equity_wad
    assert equity < engine.health(victim).mm_wad
    assert equity >= check_market(verifier, w).maintenance_wad
    before = _state(engine, token, victim, liquidator)
    with ape.reverts("engine: witness scenarios show no shortfall"):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w, sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before


def test_witness__fall_below_the_keepers_leaf_move_frac__owners_second_account_refused(
        engine, token, verifier, oracle, accounts, maker, liquidator, accomplice, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine):
    """With an honest keeper: long 1 BTC perp on 12,000, margined at 60,000; the mark falls
    4.83% to 57,100, which moves no MM by the keeper's `leaf_move_frac` (5%), so no root is
    due by margins. Equity 9,100 covers the model's MM at 57,100 (~9,016). The owner's
    second account sends the old root's witness (before the fix: fraction 0.1395, the pair
    lost the 26.44 insurance share). Refused, nothing changed."""
    victim, trees, signed_at, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                        set_market, trade, leaf_for, post_root, market_leaf, chain,
                                                        deposit_usdc=12_000)
    fund(accomplice, 50_000 * USDC)
    equity, model_now = _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, 60, 57_100 * WAD)
    assert equity >= model_now
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, signed_at)
    before = _state(engine, token, victim, accomplice)
    with ape.reverts(STALE):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w.encode(), sender=accomplice)
    assert _state(engine, token, victim, accomplice) == before


def test_clock__signers_hold_back_the_root_after_a_fall__flag_and_late_liquidation_both_refused(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine):
    """Colluding signers (or a keeper down) post marks but hold back roots after a fall to
    54,000 (long 1 BTC on 14,600: equity 8,600, the model's MM ~8,527). Before the fix the
    liquidator flagged at once with the old root's witness and liquidated 7,101 s after the
    root at ~1,977 bps of the slice's MM (discount 399.17). Now the flag and the late
    liquidation (the root still within `max_liquidation_price_age`) are both refused."""
    victim, trees, signed_at, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                        set_market, trade, leaf_for, post_root, market_leaf, chain,
                                                        deposit_usdc=14_600)
    _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, 60, FALL)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, signed_at).encode()
    with ape.reverts(STALE):
        engine.flag(victim, w, sender=liquidator)
    for _ in range(3):                      # marks kept fresh, the root is not
        mine(2_200)
        set_market(marks={PERP: FALL})
    mine(signed_at + LIQ_PRICE_AGE - 100 - chain.pending_timestamp)
    set_market(marks={PERP: FALL})
    equity = engine.health(victim).equity_wad
    assert equity >= _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)
    before = _state(engine, token, victim, liquidator)
    with ape.reverts(STALE):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w, sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before


def test_witness__short_by_the_model_after_a_fall__old_root_refused_then_a_root_as_new_as_the_marks_liquidates(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine, witness_for):
    """Liveness of the rule: a long 1 BTC on 12,000 falls to 54,000 (equity 6,000, below the
    model's MM there, ~8,527). The old root's witness is refused like any other; a root
    signed after the marks (the keeper posts both in one batch) liquidates it."""
    victim, trees, signed_at, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                        set_market, trade, leaf_for, post_root, market_leaf, chain,
                                                        deposit_usdc=12_000)
    equity, model_now = _after_fall(engine, oracle, market_leaf, chain, mine, set_market, victim, 900, FALL)
    assert equity < model_now
    old = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, signed_at).encode()
    with ape.reverts(STALE):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), old, sender=liquidator)
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness_for(victim), sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert 0 < log.fraction_wad and engine.position(victim, PERP) < WAD

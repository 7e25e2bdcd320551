"""The V24 rule (a liquidation or flag witness counts only against a market root whose signed
time is >= every mark's signed time of the book) compares times; what it is meant to
guarantee is that the witness and the equity price one snapshot. These tests attack the gap
between the two (SECURITY.md V25): a root newer than the marks, posted ahead of the keeper's
own marks by anyone (signed messages are public), and a root signed in the same second as
marks the oracle's per-update bound clamped. Both are refused by the price binding (each
witness leaf's mark must be the oracle's mark of its instrument). They also hold the time
rule where it works: a late mark on the last position of a slice, the clearing path, an
outsider relaying the keeper's signed marks, and the no-verifier path.

Real Anvil chain, token, threshold-signed roots and market data, the default-v2 verifier.
The autouse `funds_add_up` check (tests/engine/conftest.py) runs after every test."""

import ape
import numpy as np
import pytest
from conftest import PARAMS_HASH, WAD
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture
from support.check_market import check_market
from support.margins import next_epoch, sign_root, with_model_rates

from offchain.chain.eip712 import MarketData, sign_multi
from offchain.chain.witness import leaves_engine, liquidation_witness

from .conftest import FUTURE, PERP, assert_funds_add_up
from .test_attack_raise_only_leaf import bare  # noqa: F401 - the no-verifier deployment (a fixture)
from .test_attack_stale_market_root import (
    STALE,
    _long_margined_at_60k,
    _model_mm_at_current_marks,
    _state,
)

USDC = 10**6
UNMARKED = "engine: witness marks are not the oracle's"
PRICE = 60_000 * WAD
DEFAULT_RATES = (6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(bare, engine, extension, governance, oracle, verifier, leaf_for, post_root, set_market, fund,  # noqa: F811
                  trade, make_order, witness_for, liquidate, flag, market_leaf, attacker, accomplice, liquidator,
                  give_margin):  # noqa: F811
    """Deployments and session fixtures before the first test's snapshot (ape isolation)."""


def _model_mm(book, spot_wad, market_leaf, at) -> tuple[int, list]:
    """The exact model's MM (WAD) of `book` [(id, size_wad)] with every perpetual's spot at
    `spot_wad`, and the market leaves (model rates, marked at `spot_wad`) a root signed at `at`
    carries for it: the keeper's leaves carry the marks it signs with them."""
    leaves = with_model_rates(WITNESS_PARAMS, [market_leaf(i, spot_wad=spot_wad, forward_wad=spot_wad, mark_wad=spot_wad)
                                               for i, _ in sorted(book)], at)
    eng, _ = leaves_engine(WITNESS_PARAMS, leaves, at)
    q = np.array([s / WAD for _, s in book])[None, :]
    return int(float(eng.breakdown(q, exact=True).mm[0]) * WAD), leaves


def _signed_marks(domain, signers, at, marks, ids=(PERP,)):
    """Market data signed at `at` (2 of 3), not posted: the keeper's message for this cycle."""
    n = len(ids)
    data = MarketData(ids=list(ids), marks_wad=[marks[i] for i in ids], funding_indices_wad=[0] * n,
                      im_long_wad=[DEFAULT_RATES[0]] * n, im_short_wad=[DEFAULT_RATES[1]] * n,
                      mm_long_wad=[DEFAULT_RATES[2]] * n, mm_short_wad=[DEFAULT_RATES[3]] * n,
                      params_hash=PARAMS_HASH, timestamp=at, deadline=at + 300)
    return data, sign_multi(data, domain, signers[:2])


def _signed_root(engine, oracle, registry, domain, signers, at, account_leaves, market):
    """The keeper's epoch root signed at `at` (2 of 3), not posted."""
    return sign_root(engine, next_epoch(oracle, engine), account_leaves, timestamp=at, domain=domain,
                     signers=signers[:2], params_hash=PARAMS_HASH, market=market,
                     market_count=registry.instrument_count())


def _keepers_cycle_after_a_rally(engine, oracle, registry, domain, signers, verifier, accounts, maker, liquidator,
                                 fund, set_market, trade, leaf_for, post_root, market_leaf, chain, mine):
    """The victim is long 1 BTC perp at 60,000 on 10,000, margined by the 60,000 root (leaf
    MM ~9,474): healthy. 60 s later BTC is at 66,000 (+10%, one update within the oracle's
    20% bound). The keeper's cycle signs, at one time T2, market data (mark 66,000) and a root
    (perp spot 66,000, the victim's leaf at the model's MM there, ~10,421); it sends prices
    first. Returns what a mempool watcher has seen: the signed root and the signed marks."""
    victim, _, root60_at, mm60 = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                       set_market, trade, leaf_for, post_root, market_leaf,
                                                       chain, deposit_usdc=10_000)
    mine(60)
    t2 = chain.blocks.head.timestamp + 1
    rally = 66_000 * WAD
    mm66, market = _model_mm([(PERP, WAD)], rally, market_leaf, t2)
    root = _signed_root(engine, oracle, registry, domain, signers, t2, [leaf_for(victim, 2 * mm66, mm66)], market)
    marks = _signed_marks(domain, signers, t2, {PERP: rally})
    mine(1)
    return victim, root, marks, t2, mm60, mm66


def _frontrun_root(engine, oracle, root, victim, sender):
    """The watcher posts the keeper's root (anyone may) and applies the victim's leaf of it
    (anyone may) ahead of the keeper's market data of the same cycle."""
    oracle.post_root(*root.post_args(), sender=sender)
    leaf, proof = root.trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=sender)


def test_witness__watcher_posts_the_keepers_root_ahead_of_its_marks_after_a_rally__healthy_long_not_liquidated(
        engine, token, verifier, oracle, registry, domain, signers, accounts, maker, liquidator, fund, set_market,
        trade, leaf_for, post_root, market_leaf, chain, mine, keeper):
    """Sequence: long 1 BTC perp at 60,000 on 10,000 (model MM ~9,474 at 60,000: healthy).
    BTC rallies to 66,000. The keeper signs marks (66,000) and a root (spot 66,000, victim's
    leaf MM ~10,421) at T2 and sends prices first. A watcher copies the root from the mempool
    and, ahead of the keeper's marks, posts it, applies the victim's leaf and liquidates with a
    witness against it: the marks (60,000, signed before T2) are not newer than the root, so
    the rule passes; equity 10,000 (at 60,000) < the witness's MM at 66,000. The model at the
    current marks (60,000) calls the book healthy, and so does it at 66,000 (equity 16,000).
    The keeper's marks land next: the watcher bought the slice 6,000/BTC below them.
    Safe outcome: refused (witness and equity are not one snapshot)."""
    victim, root, (data, sigs), t2, mm60, mm66 = _keepers_cycle_after_a_rally(
        engine, oracle, registry, domain, signers, verifier, accounts, maker, liquidator, fund, set_market, trade,
        leaf_for, post_root, market_leaf, chain, mine)
    _frontrun_root(engine, oracle, root, victim, liquidator)
    equity = engine.health(victim).equity_wad
    model_now = _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], root.trees, t2)
    verifier_mm = check_market(verifier, w).maintenance_wad
    assert oracle.market_updated_at(PERP) < t2 == oracle.root_timestamp(engine)
    assert model_now <= equity < verifier_mm                  # healthy at the marks; short at the root's spot
    before = _state(engine, token, victim, liquidator)
    with ape.reverts(UNMARKED):   # the leaf says 66,000, the oracle 60,000
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w.encode(), sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before
    oracle.post_market_data(data.as_args(), sigs, sender=keeper)  # the keeper's marks land
    assert engine.health(victim).equity_wad >= verifier_mm        # healthy at 66,000: nothing to liquidate


def test_flag__watcher_posts_the_keepers_root_ahead_of_its_marks_after_a_rally__healthy_longs_clock_not_started(
        engine, token, verifier, oracle, registry, domain, signers, accounts, maker, liquidator, fund, set_market,
        trade, leaf_for, post_root, market_leaf, chain, mine, keeper):
    """As above with `flag`: the watcher posts the keeper's root, applies the victim's leaf and
    flags the long (equity 10,000 at the current mark 60,000, model MM there ~9,474) with a
    witness at the root's 66,000. Safe outcome: refused, clock not started."""
    victim, root, (data, sigs), t2, _, _ = _keepers_cycle_after_a_rally(
        engine, oracle, registry, domain, signers, verifier, accounts, maker, liquidator, fund, set_market, trade,
        leaf_for, post_root, market_leaf, chain, mine)
    _frontrun_root(engine, oracle, root, victim, liquidator)
    assert engine.health(victim).equity_wad >= _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], root.trees, t2).encode()
    with ape.reverts(UNMARKED):
        engine.flag(victim, w, sender=liquidator)
    oracle.post_market_data(data.as_args(), sigs, sender=keeper)
    assert engine.account(victim).liquidatable_since == 0


def test_witness__rally_past_the_step_bound_clamped_marks_and_target_root_same_second__short_not_liquidated(
        engine, token, verifier, oracle, registry, domain, signers, accounts, maker, liquidator, fund, set_market,
        trade, leaf_for, market_leaf, chain, mine, keeper):
    """Sequence: short 1 BTC perp at 60,000 on D. BTC gaps to 84,000 (+40%); the oracle's bound
    (20% of the previous mark) clamps this cycle's posted mark to 72,000, while the keeper's root
    signed in the same second carries spot 84,000 and the victim's leaf at the model's MM there.
    D = 12,000 + the midpoint of the model's MM at 72,000 and at 84,000: equity at the posted
    mark covers the model's MM there but not the root's. The rule (mark time <= root time)
    passes with equal times. Safe outcome per the promise 'no liquidation of a book the model
    calls healthy at the current marks': refused. (At 84,000 the short is short by the model
    too, so the victim loses the discount early, not a healthy book; the liquidator takes a
    short 12,000/BTC below the next step.)"""
    victim = accounts[9]
    clamped, target = 72_000 * WAD, 84_000 * WAD
    set_market()
    t0 = chain.blocks.head.timestamp + 1
    mm72, _ = _model_mm([(PERP, -WAD)], clamped, market_leaf, t0)
    mm84, _ = _model_mm([(PERP, -WAD)], target, market_leaf, t0)
    deposit = (12_000 * WAD + (mm72 + mm84) // 2) // 10**12 // USDC * USDC
    fund(victim, deposit)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, -WAD, PRICE)
    mine(60)
    t2 = chain.blocks.head.timestamp + 1
    data, sigs = _signed_marks(domain, signers, t2, {PERP: clamped})
    mm84, market = _model_mm([(PERP, -WAD)], target, market_leaf, t2)
    root = _signed_root(engine, oracle, registry, domain, signers, t2, [leaf_for(victim, 2 * mm84, mm84)], market)
    mine(1)
    oracle.post_market_data(data.as_args(), sigs, sender=keeper)        # the keeper's batch: prices first
    oracle.post_root(*root.post_args(), sender=keeper)
    leaf, proof = root.trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=keeper)
    assert oracle.market_updated_at(PERP) == t2 == oracle.root_timestamp(engine)
    assert oracle.marks([PERP])[0][0] == clamped
    equity = engine.health(victim).equity_wad
    model_now = _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, -WAD)], root.trees, t2)
    verifier_mm = check_market(verifier, w).maintenance_wad
    assert model_now <= equity < verifier_mm
    before = _state(engine, token, victim, liquidator)
    with ape.reverts(UNMARKED):   # the leaf says 84,000, the oracle 72,000
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w.encode(), sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before


def _two_leg_long_after_a_fall(engine, accounts, maker, liquidator, fund, set_market, trade):
    """The victim long 1 BTC perp and 1 BTC future on 20,000 (pending MM 6,000 at the default
    rates); a 15% fall (perp 51,000, future 51,425): equity ~1,925, short by every measure."""
    victim = accounts[9]
    fund(victim, 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)
    trade(victim, maker, FUTURE, WAD, 60_500 * WAD)
    set_market(marks={PERP: 51_000 * WAD, FUTURE: 51_425 * WAD})
    return victim


def test_slice__only_the_last_positions_mark_newer_than_the_root__whole_slice_reverts_nothing_moved(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, witness_for, chain,
        mine):
    """Sequence: long 1 BTC perp + 1 BTC future on 20,000; both marks fall 15% (equity ~1,925,
    below every MM). The liquidator's witness root is posted at T; one second later only the
    FUTURE's mark (the book's second, last position) is re-posted (same price, newer time).
    The slice loop has already moved the perp's part when it meets the late future mark; the
    `late` accumulator must still revert the whole call. Safe outcome: "marks newer than the
    market root" for a half slice, a full slice and a flag; both books, insurance, fees and the
    token balance as before. Control: a root as new as the marks then liquidates."""
    victim = _two_leg_long_after_a_fall(engine, accounts, maker, liquidator, fund, set_market, trade)
    assert [p.instrument_id for p in engine.account(victim).positions] == [PERP, FUTURE]
    w = witness_for(victim)
    root_at = oracle.root_timestamp(engine)
    set_market(marks={FUTURE: 51_425 * WAD}, ids=(FUTURE,))
    assert oracle.market_updated_at(PERP) <= root_at < oracle.market_updated_at(FUTURE)
    assert engine.health(victim).liquidatable
    before = _state(engine, token, victim, liquidator)
    for fraction in (WAD // 2, WAD):
        with ape.reverts(STALE):
            engine.liquidate(victim, fraction, 10**30, engine.state_nonce(victim), w, sender=liquidator)
    with ape.reverts(STALE):
        engine.flag(victim, w, sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before
    assert engine.account(victim).liquidatable_since == 0
    tx = engine.liquidate(victim, WAD // 2, 10**30, engine.state_nonce(victim), witness_for(victim), sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert log.fraction_wad > 0 and engine.position(liquidator, FUTURE) > 0


def test_clear__clock_cleared_with_a_root_older_than_a_rally__refused_clock_kept(
        engine, token, verifier, oracle, accounts, maker, liquidator, accomplice, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain, mine, witness_for):
    """The clearing path (fraction 0, no shortfall in the witness). Sequence: long 1 BTC perp
    at 60,000 on D (leaf MM ~9,474 applied). BTC falls to 54,000: equity D - 6,000 below the
    model's MM there (~8,527); a liquidator flags with a root at 54,000 (clock starts). BTC
    then rises to 55,000 (new marks, no new root): D is picked so that equity D - 5,000 is
    at or above the old root's witness MM (and its isolated bound) but below the model's MM at
    55,000, i.e. still short at the current marks. The owner's second account sends the old
    root's witness to clear the clock. Safe outcome: "marks newer than the market root", the
    clock kept (without the rule the clearing went through)."""
    set_market()
    at = chain.blocks.head.timestamp
    mm54, _ = _model_mm([(PERP, WAD)], 54_000 * WAD, market_leaf, at)
    mm55, _ = _model_mm([(PERP, WAD)], 55_000 * WAD, market_leaf, at)
    deposit_usdc = (5_000 * WAD + (mm54 + mm55) // 2) // WAD
    victim, _, _, mm60 = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund, set_market,
                                               trade, leaf_for, post_root, market_leaf, chain,
                                               deposit_usdc=deposit_usdc)
    mine(60)
    set_market(marks={PERP: 54_000 * WAD})
    raw = witness_for(victim, raw=True)
    assert engine.health(victim).equity_wad < check_market(verifier, raw).maintenance_wad
    engine.flag(victim, raw.encode(), sender=liquidator)
    since = engine.account(victim).liquidatable_since
    assert since != 0
    mine(60)
    set_market(marks={PERP: 55_000 * WAD})
    equity = engine.health(victim).equity_wad
    model_now = _model_mm_at_current_marks(engine, oracle, market_leaf, chain, victim)
    old_mm = check_market(verifier, raw).maintenance_wad
    print(f"\n  equity {equity / WAD:,.2f}, the old root's witness MM {old_mm / WAD:,.2f}, "
          f"model MM at 55,000 {model_now / WAD:,.2f}, applied MM {mm60 / WAD:,.2f}")
    assert old_mm <= equity < model_now and equity < engine.health(victim).mm_wad
    before = _state(engine, token, victim, accomplice)
    with ape.reverts(STALE):
        engine.flag(victim, raw.encode(), sender=accomplice)
    assert _state(engine, token, victim, accomplice) == before
    assert engine.account(victim).liquidatable_since == since


def test_liveness__outsider_posts_the_keepers_signed_marks_between_its_root_and_liquidation__batch_judged_at_one_time(
        engine, token, verifier, oracle, registry, domain, signers, accounts, maker, liquidator, attacker, fund,
        set_market, trade, leaf_for, post_root, market_leaf, chain, mine, keeper):
    """Liveness: an outsider (no key) holds only signed messages. The keeper's cycle signs
    marks and a root at one time T2 for a long 1 BTC on 12,000 that fell to 54,000 (equity
    6,000, model MM ~8,527). The outsider posts the keeper's marks itself (any order it likes);
    it cannot make a mark newer than T2 (a replay of an older batch is refused "not newer"), so
    the root signed at T2 still judges the book. Safe outcome: the liquidation goes through."""
    victim, old_trees, root60_at, _ = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund,
                                                            set_market, trade, leaf_for, post_root, market_leaf,
                                                            chain, deposit_usdc=12_000)
    old_marks = _signed_marks(domain, signers, chain.blocks.head.timestamp, {PERP: PRICE})
    mine(60)
    t2 = chain.blocks.head.timestamp + 1
    fall = 54_000 * WAD
    mm54, market = _model_mm([(PERP, WAD)], fall, market_leaf, t2)
    data, sigs = _signed_marks(domain, signers, t2, {PERP: fall})
    root = _signed_root(engine, oracle, registry, domain, signers, t2, [leaf_for(victim, 2 * mm54, mm54)], market)
    mine(1)
    oracle.post_market_data(data.as_args(), sigs, sender=attacker)
    with ape.reverts("oracle: market data not newer than stored"):
        oracle.post_market_data(old_marks[0].as_args(), old_marks[1], sender=attacker)
    oracle.post_root(*root.post_args(), sender=keeper)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], root.trees, t2).encode()
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert log.fraction_wad > 0 and engine.position(victim, PERP) < WAD


def test_no_verifier__marks_newer_than_every_root__liquidation_and_flag_as_before(bare, maker, accounts, liquidator):  # noqa: F811
    """The no-verifier path (root_ts = 2**64 - 1: every mark passes). Sequence on a deployment
    without a verifier: long 1 BTC perp at 60,000 on 8,000, margined by a root (IM 6,000 / MM
    3,000); marks fall to 54,000 after the root (newer than it): equity 2,000 < MM 3,000. Safe
    outcome: a flag and a liquidation with an empty witness go through as before the fix."""
    d = bare
    e = d.engine
    victim = accounts[9]
    d.fund(maker, 500_000 * USDC)
    d.fund(victim, 8_000 * USDC)
    d.fund(liquidator, 200_000 * USDC)
    d.post_marks()
    d.trade(victim, maker, PERP, WAD, PRICE)
    d.give_margin(victim, 6_000 * WAD, 3_000 * WAD)
    d.mine(60)
    d.post_marks(marks={PERP: 54_000 * WAD})
    assert d.oracle.market_updated_at(PERP) > d.oracle.root_timestamp(e) > 0
    assert d.equity(victim) == 2_000 * WAD and e.health(victim).liquidatable
    tx = e.flag(victim, b"", sender=liquidator)
    assert tx.decode_logs(e.Flagged)[0].since == e.account(victim).liquidatable_since != 0
    tx = e.liquidate(victim, WAD, 10**30, e.state_nonce(victim), b"", sender=liquidator)
    [log] = tx.decode_logs(e.Liquidation)
    assert log.fraction_wad > 0 and e.position(liquidator, PERP) > 0
    assert_funds_add_up(e, d.token, list(accounts))

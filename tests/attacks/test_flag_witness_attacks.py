"""Attacks on the witness-checked flag: once a verifier is registered, `flag(account, witness)`
runs as a liquidation of fraction 0 (witness checked, discount clock started or confirmed,
nothing taken). Tried here on a real Anvil engine with the real ScenarioVerifier, market
roots and signatures: whether flagging moves funds or the state nonce, resets, extends or
starts another's clock, replays an old market root, flags a book with an expired leg,
flags one's own book, runs while paused, and what flag-then-liquidate by one owner's second
account earns. Names say the sequence and the expected outcome."""

from dataclasses import replace

import ape
import pytest
from conftest import WAD
from engine.conftest import _PLACEHOLDER_LEAF, LIQUIDATION, TRADING
from support.check_market import check_market

from offchain.chain.witness import WitnessError

from .conftest import FUTURE, PERP

USDC = 10**6
PRICE = 60_000 * WAD
BPS = 10_000
HOUR = 3_600
WINDOW = TRADING[4]  # max_liquidation_price_age: a flag not confirmed within it lapses


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, witness_for,
                  flag, liquidate):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def book(engine, fund, set_market, trade, accounts, maker, liquidator):
    """book(deposit_usd, extra=()) -> accounts[9] long 1 BTC perp at 60k (plus `extra`
    (instrument, size) legs against the maker), the maker short, the liquidator funded."""

    def _open(deposit_usd: int, extra=()):
        owner = accounts[9]
        fund(owner, deposit_usd * USDC)
        fund(maker, 500_000 * USDC)
        fund(liquidator, 200_000 * USDC)
        set_market()
        trade(owner, maker, PERP, WAD, PRICE)  # the owner makes: no taker fee
        for iid, size in extra:
            trade(owner, maker, iid, size, 60_500 * WAD if iid == FUTURE else PRICE)
        return owner

    return _open


def _everything(engine, token, *accounts):
    """Every account's view but the clock, and the pools: what a flag must leave as it was."""
    views = []
    for a in accounts:
        v = engine.account(a)
        views.append((v.cash_wad, v.state_nonce, tuple((p.instrument_id, p.size_wad) for p in v.positions),
                      v.initial_margin_wad, v.maintenance_margin_wad, v.margin_basis_timestamp))
    return (tuple(views), engine.insurance_wad(), engine.fees_wad(), engine.socialised_loss_wad(),
            token.balanceOf(engine))


def _apply_rogue_leaf(engine, account, leaf_for, post_root, keeper, mm_wad):
    """A threshold-signed root whose leaf says the account's MM is `mm_wad` (IM twice
    that), applied: rogue when above the model's, honest near it."""
    leaf = leaf_for(account, mm_wad * 2, mm_wad)
    trees = post_root([leaf, _PLACEHOLDER_LEAF])
    leaf, proof = trees.account_proof(account.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=keeper)


def test_flag_with_witness__liquidatable_book__moves_no_funds_nor_nonce_only_starts_the_clock(
        engine, token, book, set_market, liquidator, flag):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})  # equity 2.5k < MM 3k and < the model's
    before = _everything(engine, token, owner, liquidator)
    tx = flag(owner, sender=liquidator)
    assert _everything(engine, token, owner, liquidator) == before
    assert engine.account(owner).liquidatable_since == tx.timestamp
    assert not tx.decode_logs(engine.Liquidation)


def test_flag__reflagged_by_anyone_within_the_window__keeps_the_episode_start(
        engine, book, set_market, liquidator, attacker, accomplice, mine, flag, chain):
    """Nobody resets a running clock by flagging it again (the owner's second account
    neither): the episode start stays, the discount grows from it."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    start = flag(owner, sender=liquidator).timestamp
    for who in (attacker, accomplice, liquidator):
        mine(HOUR // 2)
        set_market(marks={PERP: 55_500 * WAD})
        tx = flag(owner, sender=who)
        assert tx.decode_logs(engine.Flagged)[0].since == start == engine.account(owner).liquidatable_since
    elapsed = chain.blocks.head.timestamp - start
    grown = engine.liquidation_preview(owner, WAD).discount_bps
    assert elapsed >= 3 * HOUR // 2 and grown >= LIQUIDATION[0] + LIQUIDATION[1] * elapsed // HOUR


def test_flag__owner_flags_its_own_book__refused_nothing_moves(engine, token, book, set_market, flag):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    before = _everything(engine, token, owner)
    with ape.reverts("engine: self-flag"):
        flag(owner, sender=owner)
    assert _everything(engine, token, owner) == before and engine.account(owner).liquidatable_since == 0


def test_flag__witness_of_a_superseded_market_root__refused_nothing_moves(
        engine, token, book, set_market, liquidator, witness_for, flag):
    """Replay: a witness proven against the previous epoch's market root no longer verifies
    once a newer root with another market is posted (over the same leaves it would still
    be the current market, and is accepted as such)."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    old = witness_for(owner)
    witness_for(owner, leaves={PERP: {"spot_wad": PRICE - WAD, "forward_wad": PRICE - WAD}})  # the next root
    before = _everything(engine, token, owner, liquidator)
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        flag(owner, sender=liquidator, witness=old)
    assert _everything(engine, token, owner, liquidator) == before and engine.account(owner).liquidatable_since == 0


def test_flag__healthy_book_never_flagged__refused_whatever_witness(engine, book, liquidator, attacker, flag,
                                                                    witness_for):
    owner = book(20_000)
    for w in (witness_for(owner), b"", b"\x00" * 4):
        with ape.reverts("engine: account is healthy"):
            flag(owner, sender=attacker, witness=w)
    assert engine.account(owner).liquidatable_since == 0


def test_flag__book_with_an_expired_unsettled_leg__refused_until_anyone_settles_it(
        engine, token, book, set_market, liquidator, flag, expire_instruments, post_settlement, witness_for,
        post_root):
    """Expired instruments have no market leaf, so no witness covers the book: the clock
    waits (SECURITY.md: no witness, no liquidation). Settlement needs only the settlement
    price and is open to anyone; then the flag goes through."""
    owner = book(14_000, extra=[(FUTURE, -WAD)])  # long perp, short future: a hedge (MM 6k)
    early = witness_for(owner, raw=True)  # both legs' leaves, built while the future was live
    expire_instruments()
    set_market(marks={PERP: 51_000 * WAD, FUTURE: 60_500 * WAD})  # the hedge is gone: equity 5k
    assert engine.health(owner).liquidatable
    with pytest.raises(WitnessError, match="instrument_id 2: expired at the root"):
        witness_for(owner)
    # the same leaves in the current root: the chain refuses the expired leg too
    post_root([_PLACEHOLDER_LEAF], market=list(early.leaves))
    before = _everything(engine, token, owner, liquidator)
    with ape.reverts("ScenarioVerifier: instrument expired at the root"):
        flag(owner, sender=liquidator, witness=early.encode())
    assert _everything(engine, token, owner, liquidator) == before
    post_settlement(FUTURE, 60_500 * WAD)
    engine.settle(owner, FUTURE, sender=liquidator)
    set_market(marks={PERP: 51_000 * WAD})
    assert engine.health(owner).liquidatable
    tx = flag(owner, sender=liquidator)
    assert engine.account(owner).liquidatable_since == tx.timestamp


def test_flag__while_paused__starts_the_clock_and_moves_nothing(engine, token, book, set_market, liquidator, admin,
                                                                  flag):
    """Pause stops new risk, not liquidation: a flag in a pause behaves as outside one."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    engine.pause(sender=admin)
    before = _everything(engine, token, owner, liquidator)
    tx = flag(owner, sender=liquidator)
    assert _everything(engine, token, owner, liquidator) == before
    assert engine.account(owner).liquidatable_since == tx.timestamp


def test_flag_then_liquidate__owners_second_account__earns_only_the_discount_the_owner_loses(
        engine, token, book, set_market, accomplice, fund, mine, flag, liquidate):
    """The owner flags its own book from a second account and liquidates it there after the
    clock grew: the pair never gains together (the insurance fund takes its share of the
    discount, nothing is paid out of it)."""
    owner = book(7_000)
    fund(accomplice, 100_000 * USDC)
    set_market(marks={PERP: 55_500 * WAD})
    flag(owner, sender=accomplice)
    mine(HOUR)
    set_market(marks={PERP: 55_500 * WAD})
    pair_before = engine.health(owner).equity_wad + engine.health(accomplice).equity_wad
    insurance = engine.insurance_wad()
    tx = liquidate(owner, WAD, 10**30, engine.state_nonce(owner), sender=accomplice)
    [log] = tx.decode_logs(engine.Liquidation)
    pair_after = engine.health(owner).equity_wad + engine.health(accomplice).equity_wad
    assert log.discount_wad > 0 and engine.insurance_wad() == insurance + log.insurance_wad
    assert pair_after == pair_before - log.insurance_wad
    assert pair_after <= pair_before


def _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag, owner_usd=12_000):
    """V5's start: a real dip starts the clock, the price recovers (the model calls the book
    healthy again: equity 12k >= the 1-perp book's isolated MM of ~10.7k at 60k) and a
    rogue root keeps the applied MM (25k) above the equity. Returns (owner, since)."""
    owner = book(owner_usd)
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 9_500 * WAD)  # an honest leaf
    set_market(marks={PERP: 56_000 * WAD})  # equity 8k: below the model too
    since = flag(owner, sender=liquidator).timestamp
    set_market()  # back to 60k
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 25_000 * WAD)
    assert engine.health(owner).liquidatable and engine.account(owner).liquidatable_since == since
    return owner, since


def test_flag__rogue_mm_blocks_clearing_a_recovered_book__next_dip_gets_base_discount(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, mine, flag):
    """V5 (fixed). Real dip at t0 (clock starts), recovery, a rogue root keeps the applied MM
    above the equity, so `flag` takes the witness path. Its witness shows no shortfall and
    the equity covers the book's isolated bound at the root's rates: the clock is cleared
    (anyone may; nothing else moves). A real dip just inside the window is then liquidated
    at the base discount, not base + slope x (window - 1 min) = 1,984 bps."""
    owner, _ = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    before = _everything(engine, token, owner, accomplice)
    tx = flag(owner, sender=accomplice)  # the owner's second account ends the episode
    assert tx.decode_logs(engine.Unflagged) and not tx.decode_logs(engine.Flagged)
    assert engine.account(owner).liquidatable_since == 0 and _everything(engine, token, owner, accomplice) == before
    mine(WINDOW - 120)
    set_market(marks={PERP: 56_000 * WAD})
    assert engine.liquidation_preview(owner, WAD).discount_bps == LIQUIDATION[0]
    tx = flag(owner, sender=liquidator)  # the new dip starts a new episode now
    assert tx.decode_logs(engine.Flagged)[0].since == tx.timestamp == engine.account(owner).liquidatable_since


def test_flag__owner_clears_its_own_recovered_book__allowed_as_for_anyone(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, flag):
    """Clearing proves a public fact about the stored book; refusing the owner would only
    send it to a second account. Starting its own clock stays refused (above)."""
    owner, _ = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    before = _everything(engine, token, owner)
    assert flag(owner, sender=owner).decode_logs(engine.Unflagged)
    assert engine.account(owner).liquidatable_since == 0 and _everything(engine, token, owner) == before


def test_clear__front_running_a_liquidation_of_a_short_book__refused_with_every_named_scenario(
        engine, token, verifier, book, set_market, liquidator, accomplice, witness_for, flag):
    """The owner's race: a book short by the model, its clock running; before the liquidation
    lands the owner's second account sends a fraction-0 call naming a scenario in which the
    book does not lose (the witness's margin is a lower bound: the caller picks the
    scenarios). Whatever it names, the clock stays: a scenario with the loss confirms it, the
    others fail the isolated bound. The liquidation then takes the grown discount."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})  # equity 2.5k; the model's MM ~9.5k
    since = flag(owner, sender=liquidator).timestamp
    w = witness_for(owner, raw=True)
    nonce = engine.state_nonce(owner)
    before = _everything(engine, token, owner, accomplice)
    mild = 0
    for s in range(verifier.n_scenarios()):
        named = replace(w, scenarios=[s], joint_scenario=s)
        if check_market(verifier, named).maintenance_wad > engine.health(owner).equity_wad:
            tx = engine.liquidate(owner, 0, 0, nonce, named.encode(), sender=accomplice)
            assert tx.decode_logs(engine.Flagged)[0].since == since
        else:
            mild += 1
            with ape.reverts("engine: equity below the isolated bound"):
                engine.liquidate(owner, 0, 0, nonce, named.encode(), sender=accomplice)
        assert engine.account(owner).liquidatable_since == since
    assert mild > 0  # the price-up scenarios: the long perp gains
    assert _everything(engine, token, owner, accomplice) == before


def test_clear__mid_liquidation__cannot_lower_the_discount_the_insurance_fund_shares(
        engine, verifier, book, set_market, liquidator, accomplice, witness_for, flag, liquidate, mine):
    """Between two slices of a grown-discount liquidation (the book still short by the
    model), a clearing would restart the discount at the base and cut the insurance fund's
    share of it. Refused; the next slice pays the grown discount and the fund its share."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    flag(owner, sender=liquidator)
    mine(HOUR)
    set_market(marks={PERP: 55_500 * WAD})
    grown = engine.liquidation_preview(owner, WAD).discount_bps
    assert grown >= LIQUIDATION[0] + LIQUIDATION[1]
    liquidate(owner, WAD // 100, 10**30, engine.state_nonce(owner), sender=liquidator)  # a 1% slice
    assert engine.health(owner).liquidatable and engine.account(owner).liquidatable_since != 0
    w = witness_for(owner, raw=True)
    up = min(range(verifier.n_scenarios()),
             key=lambda s: check_market(verifier, replace(w, scenarios=[s], joint_scenario=s)).maintenance_wad)
    mildest = replace(w, scenarios=[up], joint_scenario=up)
    with ape.reverts("engine: equity below the isolated bound"):
        engine.flag(owner, mildest.encode(), sender=accomplice)
    preview = engine.liquidation_preview(owner, WAD)
    assert preview.discount_bps >= grown
    insurance = engine.insurance_wad()
    tx = liquidate(owner, WAD, 10**30, engine.state_nonce(owner), sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert log.insurance_wad == log.discount_wad * LIQUIDATION[3] // BPS > 0
    assert engine.insurance_wad() == insurance + log.insurance_wad


def test_clear__stale_superseded_or_other_book_witness__refused_nothing_moves(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, maker, witness_for,
        flag, mine):
    """A clearing is bound to the book as it stands, as a liquidation is: the witness of
    another book (the maker's), of this book before a trade, of a superseded market root, or
    of a root older than max_liquidation_price_age is refused and the clock stays."""
    owner, since = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    nonce = engine.state_nonce(owner)
    before = _everything(engine, token, owner, accomplice, maker)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, 0, 0, nonce, witness_for(maker), sender=accomplice)
    # the same instruments at another size: what a witness built before a trade shows
    w = witness_for(owner, raw=True)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, 0, 0, nonce, replace(w, sizes_wad=[q // 2 for q in w.sizes_wad]).encode(),
                         sender=accomplice)
    old = witness_for(owner)
    witness_for(owner, leaves={PERP: {"spot_wad": PRICE - WAD, "forward_wad": PRICE - WAD}})  # the next root
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        engine.liquidate(owner, 0, 0, nonce, old, sender=accomplice)
    with ape.reverts("engine: state nonce changed"):
        engine.liquidate(owner, 0, 0, nonce - 1, witness_for(owner), sender=accomplice)
    current = witness_for(owner)
    mine(WINDOW + 60)
    set_market()  # fresh marks, no newer root
    with ape.reverts("engine: stale market root"):
        engine.liquidate(owner, 0, 0, nonce, current, sender=accomplice)
    assert _everything(engine, token, owner, accomplice, maker) == before
    assert engine.account(owner).liquidatable_since == since


def test_clear__fraction_edges_and_the_bound_to_the_wei(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, witness_for, flag):
    """Only fraction 0 clears: 1 wei with the same witness is a liquidation, refused (no
    shortfall). The isolated bound is met to the wei (a leaf rate, per contract of the 1-perp
    book, one wei above the equity refuses; at the equity clears). A book whose clock is not
    running has nothing to clear (refused, no event)."""
    owner, since = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    nonce = engine.state_nonce(owner)
    before = _everything(engine, token, owner, accomplice)
    with ape.reverts("engine: witness scenarios show no shortfall"):
        engine.liquidate(owner, 1, 10**30, nonce, witness_for(owner), sender=accomplice)
    equity = engine.health(owner).equity_wad
    over = {PERP: {"mm_long_wad": equity + 1}}
    with ape.reverts("engine: equity below the isolated bound"):
        engine.liquidate(owner, 0, 0, nonce, witness_for(owner, leaves=over), sender=accomplice)
    assert engine.account(owner).liquidatable_since == since
    at = {PERP: {"mm_long_wad": equity}}
    tx = engine.liquidate(owner, 0, 0, nonce, witness_for(owner, leaves=at), sender=accomplice)
    assert tx.decode_logs(engine.Unflagged) and not tx.decode_logs(engine.Liquidation)
    assert engine.account(owner).liquidatable_since == 0 and _everything(engine, token, owner, accomplice) == before
    with ape.reverts("engine: witness scenarios show no shortfall"):
        flag(owner, sender=accomplice)

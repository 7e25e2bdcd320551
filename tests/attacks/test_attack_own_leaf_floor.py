"""An account refuses its own newer leaf (SECURITY.md V16). The engine applies an account's
leaf only at or above its leaf floor and, at an older nonce, only while the ring still
records that nonce. Both move with the account's own actions: a liquidation slice it takes
raises its floor (V13's fix), a reduction of a one-position book raises it, and 8 trades
push the snapshot's nonce out of the ring. The keeper signs a leaf at its snapshot of the
book; if the account moves its floor or its ring after the snapshot, that leaf never applies,
whoever sends it. When the new leaf is *higher* (the signers re-priced the book after a vol
rise), the account keeps its older, lower MM: it is not liquidatable, and while its basis is
young its IM backs withdrawals the current root refuses. Repeated after every snapshot.
Fixed: a leaf of the current root that the floor or the ring refuses still applies
raise-only (IM and MM become the larger of the stored and the leaf's, the basis stays), so
each route below ends with the higher margins in force.

Also pinned here: what holds around the liquidator's leaf floor and the registry's book check
on a liquidation slice. Real Anvil engine, token, signed roots and witnesses. Names say the
sequence and the outcome."""

import ape
import pytest
from conftest import WAD, committed
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture
from support.margins import with_model_rates

from offchain.chain.witness import liquidation_witness

from .conftest import FUTURE, PERP, TRADING, succeeds
from .test_verification_attacks import VOID, post_epoch, rebond, system, understate  # noqa: F401 - system is a fixture

USDC = 10**6
PRICE = 60_000 * WAD
FUTURE_PRICE = 60_500 * WAD
# per-unit rates (IM long/short, MM long/short) after a vol spike: three times the defaults
TRIPLE = (18_000 * WAD, 18_000 * WAD, 9_000 * WAD, 9_000 * WAD)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, make_order,
                  witness_for, liquidate, flag):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def _root_with(post_root, market_leaf, chain, own_leaves, book=()):
    """Posts the engine's next root holding `own_leaves` and a market leaf per instrument of
    `book` (the model's rates at the root's time). Returns (trees, signed_at)."""
    signed_at = chain.blocks.head.timestamp + 1
    market = with_model_rates(WITNESS_PARAMS, [market_leaf(i) for i in sorted({i for i, _ in book})], signed_at,
                              keep={}) if book else ()
    return post_root(list(own_leaves), market=market, timestamp=signed_at), signed_at


def _apply(engine, trees, account, sender):
    leaf, proof = trees.account_proof(account.address)
    return engine.apply_leaf(leaf.as_args(), proof, sender=sender)


def _one_position_long(engine, maker, owner, fund, set_market, trade, margin):
    """The owner long 1 BTC perp on 9,000 (equity 8,940 after the taker fee), margined by the
    signers' leaf at the default rates (IM 6,000, MM 3,000); then the perp's vol triples and
    the posted rates with it (IM 18,000, MM 9,000 per BTC): its honest next leaf (IM 18,000,
    MM 9,000) makes it liquidatable."""
    fund(maker, 1_000_000 * USDC)
    fund(owner, 9_000 * USDC)
    set_market()
    trade(maker, owner, PERP, -WAD, PRICE)
    margin(owner, 6_000 * WAD, 3_000 * WAD)
    set_market(rates={PERP: TRIPLE})
    assert not engine.health(owner).liquidatable


def _two_leg_long(engine, maker, owner, fund, set_market, trade, margin):
    """The owner long 1 BTC future and 0.01 BTC perp on 9,100, margined at the default rates
    (IM 6,060, MM 3,030). Then the future's vol triples (rates 18,000 / 9,000): its honest
    next leaf is IM 18,060, MM 9,030. Two positions: no one-position reduction raises its
    floor."""
    fund(maker, 1_000_000 * USDC)
    fund(owner, 9_100 * USDC)
    set_market()
    trade(maker, owner, FUTURE, -WAD, FUTURE_PRICE)
    trade(maker, owner, PERP, -(WAD // 100), PRICE)
    margin(owner, 6_060 * WAD, 3_030 * WAD)
    set_market(rates={FUTURE: TRIPLE})


def test_floor__one_position_book_reduces_1_wei_after_every_snapshot__its_higher_honest_leaf_still_applies(
        engine, admin, maker, accounts, accomplice, fund, set_market, trade, give_margin, leaf_for, post_root,  # noqa: F811
        keeper):
    """V16 (medium). The owner's book is one perp (long 1 BTC, equity 8,940). The signers
    re-price it after a vol spike: IM 18,000, MM 9,000, so it is liquidatable once the leaf is
    applied. After each keeper snapshot, before the root is posted (or between the posting and
    the first apply), the owner sells 1 wei of its perp to its second account at the mark: a
    risk-reducing fill (the second account, short, reduces too), which needs no fresh marks, no
    IM and no unpaused engine (the engine is paused here), and raises the leaf floor to its nonce. The root's leaf is refused ("leaf older than the book's last
    reduction") whoever sends it, three roots in a row here, and the book keeps MM 3,000: a
    liquidator's call reverts "account is healthy" while equity is 8,940 < 9,000 (whether a
    witness then shows the model's shortfall is the model's say, not the leaf's). Nothing
    bounds the repetition in time: the MM never ages.
    Safe outcome: the current root's leaf raises the margins anyway (a leaf refused by the
    floor or the ring may still apply raise-only: IM and MM = max(stored, leaf's), basis
    unchanged), so the book is liquidatable."""
    owner = accounts[9]
    _one_position_long(engine, maker, owner, fund, set_market, trade, give_margin)
    fund(accomplice, 10_000 * USDC)
    trade(maker, accomplice, PERP, WAD // 10, PRICE)            # the second account short 0.1 BTC
    engine.pause(sender=admin)        # two reductions at the mark need no unpaused engine
    for _ in range(3):
        snapshot = leaf_for(owner, 18_000 * WAD, 9_000 * WAD)   # honest at the tripled rates
        trade(accomplice, owner, PERP, 1, PRICE)                 # 1 wei back: both books reduce
        trees = post_root([snapshot])
        leaf, proof = trees.account_proof(owner.address)
        succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=keeper)
    assert engine.health(owner).equity_wad < 9_000 * WAD
    # the safe outcome: the newest root's leaf (IM 18,000, MM 9,000) margins the book
    # (before the raise-only rule: MM 3,000: `liquidate` reverts "engine: account is healthy")
    assert engine.health(owner).liquidatable


def test_floor__book_on_a_voided_root_reduces_1_wei_after_the_next_snapshot__the_valid_leaf_still_applies(
        engine, oracle, registry, token, domain, signers, chain, keeper, admin, maker, accounts, accomplice,
        system, fund, set_market, trade, leaf_for, post_root):  # noqa: F811
    """V16 after a fraud proof. The signers understate the victim's leaf 20x (1 BTC perp on
    7,000: IM ~504, MM ~474, the model's figures over 20); it is applied, proven and the epoch
    voided.
    The void holds the victim's new risk to the isolated bound, but liquidation reads the applied
    MM, "voided or not", until a later valid leaf is applied (trust assumptions). The victim
    refuses that leaf: after the signers' next snapshot it sells 1 wei to its second account at
    the mark, and the valid root's leaf (IM 6,000, MM 3,000) is refused. BTC falls to 55,000:
    equity 1,940, below the valid MM 3,000, and the book is not liquidatable (MM ~474); it can
    repeat at every root and is liquidated only below ~474, leaving more of a gap to the
    insurance fund. Safe outcome: the valid leaf raises the voided margins (raise-only), the
    book is liquidatable."""
    bond, fraud, _ = system()
    victim = accounts[8]
    fund(maker, 500_000 * USDC)
    fund(victim, 7_000 * USDC)
    fund(accomplice, 10_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)
    chain.pending_timestamp += 10
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    fraud.challenge(*committed(fraud, keeper, trees, record, victim.address, books[victim.address]), sender=keeper)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    for s in signers[:2]:
        rebond(token, bond, admin, s)
    snapshot = leaf_for(victim, 6_000 * WAD, 3_000 * WAD)      # the signers' next, valid root
    trade(accomplice, victim, PERP, 1, PRICE)                 # the victim sells 1 wei at the mark
    trees2 = post_root([snapshot])
    leaf2, proof2 = trees2.account_proof(victim.address)
    succeeds(engine.apply_leaf, leaf2.as_args(), proof2, sender=keeper)
    set_market(marks={PERP: 55_000 * WAD})
    assert engine.health(victim).equity_wad < 3_000 * WAD
    # the safe outcome (before the raise-only rule: MM ~474: not liquidatable)
    assert engine.health(victim).liquidatable


def test_floor__liquidator_takes_a_1_wei_slice_after_its_snapshot__its_higher_honest_leaf_still_applies(
        engine, oracle, maker, accounts, fund, set_market, trade, give_margin, leaf_for, post_root, market_leaf,  # noqa: F811
        keeper, chain):
    """V16 through V13's fix. The owner's two-leg book (long 1 BTC future, 0.01 BTC perp;
    equity ~8,994) is re-priced after the future's vol tripled: IM 18,060, MM 9,030, liquidatable.
    Any liquidatable book elsewhere will do: the owner takes a slice of f = 1e-18 of it (1 wei
    of its perp, no discount, 55,500 wei paid) after the keeper's snapshot, under the root that
    holds its own leaf. The slice raises the owner's leaf floor (V13), so its leaf is refused:
    it keeps IM 6,060 and MM 3,030 (+ wei), is not liquidatable, and withdraws ~2,930 where the
    current root frees nothing. It can repeat at every root while its basis is younger than
    max_margin_basis_age (the slice's own IM check uses the stale IM until then).
    Safe outcome: the leaf applies raise-only (max(stored, leaf's), basis unchanged): the owner
    is liquidatable and its withdrawal refused."""
    owner, victim = accounts[9], accounts[8]
    _two_leg_long(engine, maker, owner, fund, set_market, trade, give_margin)
    fund(victim, 7_000 * USDC)
    trade(maker, victim, PERP, -WAD, PRICE)                    # any long perp that will be liquidatable
    set_market(marks={PERP: 55_500 * WAD}, rates={FUTURE: TRIPLE})
    assert engine.health(victim).liquidatable
    snapshot = leaf_for(owner, 18_060 * WAD, 9_030 * WAD)       # the keeper's honest leaf of the owner
    book = [(p.instrument_id, p.size_wad) for p in engine.account(victim).positions]
    trees, signed_at = _root_with(post_root, market_leaf, chain, [snapshot], book)
    witness = liquidation_witness(WITNESS_PARAMS, engine.address, book, trees, signed_at, None, None).encode()
    engine.liquidate(victim, 1, 10**30, engine.state_nonce(victim), witness, sender=owner)
    assert engine.position(owner, PERP) == WAD // 100 + 1
    leaf, proof = trees.account_proof(owner.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=keeper)
    assert engine.health(owner).equity_wad < 9_030 * WAD
    before = engine.cash_wad(owner)
    # the safe outcome: margined by the current root's leaf, nothing is free to withdraw
    # (before the raise-only rule: IM 6,060 + wei: 2,000 leave, ~2,930 were free)
    assert not succeeds(engine.withdraw, 2_000 * USDC, sender=owner)
    assert engine.cash_wad(owner) == before
    assert engine.health(owner).liquidatable


def test_ring__owner_trades_1_wei_8_times_with_its_second_account_after_its_snapshot__higher_leaf_still_applies(
        engine, maker, accounts, accomplice, fund, set_market, trade, give_margin, leaf_for, post_root, keeper):  # noqa: F811
    """V16, the ring route (V11's eviction, done by the owner to itself): the two-leg book of
    the slice test re-priced to IM 18,060 / MM 9,030; after the snapshot the owner buys 1 wei
    of the future 8 times from its second account (new risk against its stale IM, 61 wei of fee
    each): nonce k + 8 takes k's slot and the leaf is refused ("nonce not recorded"). The book
    keeps MM 3,030 (+ 8 x 9,000 wei). A single trade would not do (finding 6: the leaf applies
    with the trade's bound, `test_apply_leaf__self_trade_before_higher_root__cannot_keep_lower_margin`).
    Safe outcome: the leaf applies raise-only, the book is liquidatable."""
    owner = accounts[9]
    _two_leg_long(engine, maker, owner, fund, set_market, trade, give_margin)
    set_market(marks={PERP: 55_500 * WAD}, rates={FUTURE: TRIPLE})
    fund(accomplice, 10_000 * USDC)
    snapshot = leaf_for(owner, 18_060 * WAD, 9_030 * WAD)
    for _ in range(8):
        trade(accomplice, owner, FUTURE, -1, FUTURE_PRICE)       # the owner buys 1 wei
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(owner.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=keeper)
    assert engine.health(owner).equity_wad < 9_030 * WAD
    # the safe outcome (before the raise-only rule: MM 3,030 + 8 x 9,000 wei)
    assert engine.health(owner).liquidatable


def test_floor__liquidators_flag_or_zero_fraction_call__raises_no_floor_its_leaf_applies(
        engine, maker, accounts, fund, set_market, trade, give_margin, leaf_for, post_root, market_leaf,  # noqa: F811
        keeper, chain):
    """Held: a fraction-0 call (`flag`, or `liquidate(account, 0, ...)`) moves only the
    victim's clock: the caller's nonce and leaf floor stay, so its leaf of the same root
    (here the higher one, IM 18,060 / MM 9,030) still applies afterwards."""
    owner, victim = accounts[9], accounts[8]
    _two_leg_long(engine, maker, owner, fund, set_market, trade, give_margin)
    fund(victim, 7_000 * USDC)
    trade(maker, victim, PERP, -WAD, PRICE)
    set_market(marks={PERP: 55_500 * WAD}, rates={FUTURE: TRIPLE})
    nonce, floor = engine.state_nonce(owner), engine.pending_total(owner) >> 192
    snapshot = leaf_for(owner, 18_060 * WAD, 9_030 * WAD)
    book = [(p.instrument_id, p.size_wad) for p in engine.account(victim).positions]
    trees, signed_at = _root_with(post_root, market_leaf, chain, [snapshot], book)
    witness = liquidation_witness(WITNESS_PARAMS, engine.address, book, trees, signed_at, None, None).encode()
    engine.flag(victim, witness, sender=owner)
    engine.liquidate(victim, 0, 0, engine.state_nonce(victim), witness, sender=owner)
    assert engine.account(victim).liquidatable_since != 0
    assert (engine.state_nonce(owner), engine.pending_total(owner) >> 192) == (nonce, floor)
    _apply(engine, trees, owner, keeper)
    h = engine.health(owner)
    assert (h.im_wad, h.mm_wad) == (18_060 * WAD, 9_030 * WAD) and h.liquidatable


def test_liquidate__liquidator_on_8_underlyings_takes_a_slice_on_a_ninth__refused_both_books_unchanged(
        engine, oracle, registry, maker, accounts, admin, fund, set_market, trade, liquidate, market_count):
    """Held (V9 on the liquidation path): a liquidator holding perps on 8 underlyings other than
    BTC (X5..X12) takes a slice of a liquidatable BTC perp book: the slice would give it a
    ninth underlying, and the engine asks the registry (the liquidator holds instruments the
    account does not and a position opens): "registry: book on more than 8 underlyings";
    both books, cash and the pools unchanged. The same liquidator takes the slice once it holds
    BTC among its 8 (no new underlying)."""
    count = market_count(12)                                    # ids 5..12: perpetuals on X5..X12
    others = tuple(range(5, count + 1))
    assert len(others) == 8
    engine.set_trading_params((16, *TRADING[1:]), sender=admin)
    liquidator, victim, other_maker = accounts[9], accounts[8], accounts[1]
    fund(maker, 2_000_000 * USDC)
    fund(other_maker, 100_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    fund(victim, 7_000 * USDC)
    set_market(ids=(PERP, FUTURE, 3, 4, *others))
    for iid in others:
        trade(maker, liquidator, iid, -(WAD // 100), PRICE)
    trade(other_maker, victim, PERP, -WAD, PRICE)
    set_market(marks={PERP: 55_500 * WAD}, ids=(PERP, FUTURE, 3, 4, *others))
    assert engine.health(victim).liquidatable
    before = (engine.account(liquidator), engine.account(victim), engine.insurance_wad())
    with ape.reverts("registry: book on more than 8 underlyings"):
        liquidate(victim, WAD // 10, 10**30, engine.state_nonce(victim), sender=liquidator)
    assert (engine.account(liquidator), engine.account(victim), engine.insurance_wad()) == before
    # one underlying fewer, BTC instead: the slice lands on a book of 8 underlyings
    trade(maker, liquidator, others[-1], WAD // 100, PRICE)      # closes X12
    trade(maker, liquidator, FUTURE, -(WAD // 100), FUTURE_PRICE)  # BTC future
    liquidate(victim, WAD // 10, 10**30, engine.state_nonce(victim), sender=liquidator)
    assert engine.position(liquidator, PERP) > 0


@pytest.mark.xfail(strict=True, reason="V11: after a slice the liquidator's only applicable leaf is at an unrecorded "
                                       "nonce, and one 1-wei fill of its resting order by anyone voids it")
def test_ring__one_1_wei_fill_of_the_liquidators_resting_order_after_its_slice__its_leaf_still_applies(
        engine, oracle, maker, accounts, attacker, fund, set_market, trade, make_order, leaf_for, post_root, keeper,
        liquidate):
    """V11 widened by V13's floor. A slice raises the liquidator's floor to the nonce it reaches
    and does not record that nonce in the ring, so the keeper's leaf of the liquidator's new book
    (signed at that nonce) applies only while it is the current nonce. A liquidator that also
    quotes (a resting buy order) loses that leaf to a single 1-wei fill of the order by anyone:
    not 8 fills (V11), one. Until a later snapshot escapes the same trick, the inherited slice
    keeps the victim's basis. Safe outcome: the leaf applies (a fix of V11 that bounds how
    small a fill of a resting order may be, or recording the slice's nonce, does it)."""
    liquidator, victim = accounts[9], accounts[8]
    fund(maker, 1_000_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    fund(victim, 7_000 * USDC)
    fund(attacker, 20_000 * USDC)
    set_market()
    trade(maker, liquidator, FUTURE, -(WAD // 100), FUTURE_PRICE)   # the liquidator's own book
    quote, sig = make_order(liquidator, FUTURE, True, WAD // 10, FUTURE_PRICE, order_nonce=91)
    trade(maker, victim, PERP, -WAD, PRICE)
    set_market(marks={PERP: 55_500 * WAD})
    liquidate(victim, WAD // 2, 10**30, engine.state_nonce(victim), sender=liquidator)
    assert engine.position(liquidator, PERP) > 0
    snapshot = leaf_for(liquidator, 5_000 * WAD, 2_500 * WAD)      # its book after the slice, at the slice's nonce
    filled = succeeds(engine.fill, quote.as_args(), sig, 1, sender=attacker)   # anyone: 1 wei of its resting buy
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(liquidator.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=keeper)
    # the safe outcome: the leaf's margins (+ the 1-wei fill's bound, if a fix still lets it
    # through) on the root's basis
    view = engine.account(liquidator)
    assert view.margin_basis_timestamp == oracle.root_timestamp(engine)
    assert (view.initial_margin_wad, view.maintenance_margin_wad) == (5_000 * WAD + 6_000 * filled,
                                                                      2_500 * WAD + 3_000 * filled)


def test_floor__pair_dodges_the_higher_mm_then_one_crash_step__insurance_pays_nothing(
        engine, admin, accounts, accomplice, liquidator, token, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, keeper, liquidate):
    """V16, what it costs the insurance fund. The owner's first account is long 1 BTC perp on
    12,000 (equity 11,940), its second account short the same perp. Rates triple (honest next
    leaf IM 18,000, MM 9,000); the first account refuses that leaf with a 1-wei reduction after
    the snapshot and keeps MM 3,000. BTC falls to 54,000: equity 5,940, below the true MM, but a
    liquidator's call reverts "account is healthy". One more update, within the oracle's step
    bound, takes BTC to 45,000: equity -3,060, and the liquidation of the now bankrupt book
    takes 3,060 from the insurance fund. The second account gained 15,000 on its short; the
    pair is up ~3,060 at the fund's expense. With the leaf applied the book is liquidated at
    54,000 (a partial slice leaves it solvent through the next step) and the fund only earns
    its share. Safe outcome: the insurance fund pays nothing."""
    owner = accounts[9]
    fund(accomplice, 100_000 * USDC)
    fund(owner, 12_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    token.mint(admin, 10_000 * USDC, sender=admin)
    token.approve(engine, 10_000 * USDC, sender=admin)
    engine.fund_insurance(10_000 * USDC, sender=admin)
    set_market()
    trade(accomplice, owner, PERP, -WAD, PRICE)                # the pair: owner long, its second account short
    give_margin(owner, 6_000 * WAD, 3_000 * WAD)
    set_market(rates={PERP: TRIPLE})
    snapshot = leaf_for(owner, 18_000 * WAD, 9_000 * WAD)
    trade(accomplice, owner, PERP, 1, PRICE)                   # 1 wei back to the second account
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(owner.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=keeper)
    insurance, socialised = engine.insurance_wad(), engine.socialised_loss_wad()
    set_market(marks={PERP: 54_000 * WAD}, rates={PERP: TRIPLE})
    assert 0 < engine.health(owner).equity_wad < 9_000 * WAD
    succeeds(liquidate, owner, WAD, 10**30, engine.state_nonce(owner), sender=liquidator)   # before the raise-only rule: "healthy"
    set_market(marks={PERP: 45_000 * WAD}, rates={PERP: TRIPLE})
    if engine.account(owner).positions:
        liquidate(owner, WAD, 10**30, engine.state_nonce(owner), sender=liquidator)
    assert engine.socialised_loss_wad() == socialised
    assert engine.insurance_wad() >= insurance

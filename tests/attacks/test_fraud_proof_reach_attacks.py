"""What an account-leaf fraud proof can reach: books the signers can lie about without a proof
ever landing. Real chain, bond, FraudProofs, verifier and threshold signatures (the
verification suite's fixtures and helpers).

V8 (fixed): `FraudProofs.challenge` needed a market leaf, proven at its id's slot, for every
position of the book the leaf commits to (`positions_hash`), also for a position in an
instrument expired at the root, which it then leaves out of the re-pricing. But the market
tree of an honest root holds no leaf for an expired instrument (its slot is empty, and a
leaf there is itself provable false by `challenge_market`). So the leaf of any book holding
an expired, not yet settled leg could say anything. Now such a slot is shown empty (the
registry's terms say the instrument expired at the root's time).

V9 (fixed): `FraudProofs.challenge` re-prices at most 8 underlyings (`MAX_UNITS`, the
verifier's bound) and reverts on a book with more, while the engine let a book hold positions
on up to 32. So the leaf of a book on 9 or more underlyings could say anything. Now the engine
refuses a trade (or a liquidation slice) that puts a book on a ninth underlying.

V10 (fixed): the book and pending counters of a leaf at an older state nonce are out of every
proof's reach too, so the engine accepts only those it recorded when a trade reached that
nonce; a leaf naming the empty book with the current counters never applies.
"""

from dataclasses import replace

import ape
from conftest import WAD, committed, committed_market

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.fraud import EMPTY_SLOT_ARGS, challenge_arguments
from offchain.chain.leaves import EMPTY_POSITIONS_HASH, MarketLeaf

from .conftest import FUTURE, PERP, TRADING
from .test_verification_attacks import (  # noqa: F401 - fixtures
    BOND,
    PRICE,
    USDC,
    VOID,
    _deploy_first,
    _isolated,
    bond_funds_add_up,
    market_leaves,
    post_epoch,
    system,
    traded,
    understate,
)


def _expired_leg_book(registry, chain, keeper, accounts, maker, fund, set_market, trade, expire_instruments):
    """The victim holds 1 BTC perp and a sliver (0.001) of the dated future; the future
    expires unsettled -> (victim, the live market leaves: the perp's only)."""
    victim = accounts[8]
    fund(victim, 10_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)
    trade(maker, victim, FUTURE, -WAD // 1_000, 60_500 * WAD)
    expire_instruments()
    set_market()
    return victim, [m for m in market_leaves(registry) if m.instrument_id == PERP]   # 2-4 expired: empty slots


def test_fraud__book_with_an_expired_unsettled_leg__false_leaf_is_provable(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, system,  # noqa: F811
        fund, set_market, trade, expire_instruments):
    """V8 (medium, fixed). The victim holds 1 BTC perp and a sliver (0.001) of the dated
    future. The future expires; its settlement price is not posted yet (the signers post it,
    or anyone settles later: the leaf still commits to the book at the state block). The
    signers' next root is honest in every market slot (the expired instruments' slots empty)
    but understates the victim's IM and MM 20x; the victim applies it and withdraws 9,000 of
    its 10,000 while holding the perp. `challenge` used to need a market leaf for every
    position, and the future's slot is empty: no proof reached the leaf. Now the future's
    slot is shown empty (the registry says it expired at the root's time), the perp is
    re-priced alone: the leaf is proven, the epoch voided and the signers slashed."""
    bond, fraud, _ = system()
    victim, live = _expired_leg_book(registry, chain, keeper, accounts, maker, fund, set_market, trade,
                                     expire_instruments)
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()}, market=live)
    leaf, proof = trees.account_proof(victim.address)
    assert books[victim.address] == {PERP: WAD, FUTURE: WAD // 1_000}
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    engine.withdraw(9_000 * USDC, sender=victim)           # 1 perp held on ~1,000 of equity

    # the book without the future is not the leaf's
    perp_leaf = trees.market_leaves_of([PERP])
    with ape.reverts("fraud: book does not match the leaf's positions hash"):
        fraud.challenge(engine.address, record.as_args(), leaf.as_args(), proof, [PERP], [WAD],
                        [perp_leaf[0].as_args()], trees.market.multiproof([PERP]).as_args(), [], 0, bytes(32),
                        sender=attacker)
    # the future's empty slot is what the registry makes it
    with ape.reverts("fraud: the slot holds what the registry says"):
        fraud.challenge_market(*committed_market(fraud, attacker, trees, record, FUTURE), sender=attacker)
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    assert args[6][1] == EMPTY_SLOT_ARGS                     # the future goes as its empty slot
    fraud.challenge(*args, sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    assert token.balanceOf(attacker) == 2 * BOND // 5        # 20% of both counted bonds
    bond_funds_add_up(token, bond)


def test_fraud__book_with_an_expired_unsettled_leg__honest_leaf_not_provable_live_slot_not_shown_empty(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, system,  # noqa: F811
        fund, set_market, trade, expire_instruments):
    """V8's fix does not make honest leaves provable: the same book (1 BTC perp, 0.001 of the
    expired, unsettled future) under an honest root, its leaf challenged with the future's
    slot shown empty, in the leaf's own scenarios or in others: "no fraud proven". And only an
    instrument expired at the root may be shown empty: the perp's slot shown empty is refused
    on the registry's terms (a root that did leave a live instrument out is
    `challenge_market`'s to prove)."""
    bond, fraud, _ = system()
    victim, live = _expired_leg_book(registry, chain, keeper, accounts, maker, fund, set_market, trade,
                                     expire_instruments)
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      market=live)
    for scenarios, joint in (((), 0), ((0,), 0), ((5,), 7)):
        args = challenge_arguments(trees, record, victim.address, books[victim.address], scenarios, joint)
        with ape.reverts("fraud: no fraud proven"):
            fraud.challenge(*args, sender=attacker)
    # the perp's slot shown empty: refused on the registry's terms, before any proof is read
    args = list(challenge_arguments(trees, record, victim.address, books[victim.address]))
    assert args[6][1] == EMPTY_SLOT_ARGS
    args[6] = [EMPTY_SLOT_ARGS, EMPTY_SLOT_ARGS]
    with ape.reverts("fraud: empty slot for an instrument live at the root"):
        fraud.challenge(*args, sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    bond_funds_add_up(token, bond)


def test_trade__ninth_underlying__refused_so_every_book_stays_provable(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, admin,  # noqa: F811
        system, fund, set_market, trade, market_count):  # noqa: F811
    """V9 (medium, fixed). FraudProofs re-prices at most 8 underlyings (the verifier's MAX_UNITS)
    and the engine let a book hold positions on up to 32: the signers understated the leaf of
    a book on 9 underlyings (1 BTC perp and 8 other perps) 20x, it withdrew 45,000 of its
    60,000, and the challenge reverted "fraud: too many underlyings". Now the engine refuses
    the trade that would put a book on a ninth underlying (the registry counts the book's
    underlyings once it has more than 8 positions), for both sides; a ninth position on an
    underlying the book already holds is taken. So a book never spans more than a proof
    re-prices: the same lie on the largest book allowed (8 underlyings, 9 positions) is proven."""
    bond, fraud, _ = system()
    count = market_count(12)                                   # ids 5..12: perpetuals on X5..X12
    eight = (PERP, *range(5, 12))                              # BTC and X5..X11
    engine.set_trading_params((16, *TRADING[1:]), sender=admin)
    victim = accounts[8]
    fund(victim, 60_000 * USDC)
    fund(maker, 1_000_000 * USDC)
    set_market(ids=(*eight, count, FUTURE, 3, 4))
    for iid in eight:
        trade(maker, victim, iid, -WAD, PRICE)
    before = (engine.account(victim).state_nonce, engine.account(maker).state_nonce)
    with ape.reverts("registry: book on more than 8 underlyings"):
        trade(maker, victim, count, -WAD, PRICE)               # X12: a ninth underlying
    assert (engine.account(victim).state_nonce, engine.account(maker).state_nonce) == before
    assert engine.position(victim, count) == 0
    trade(maker, victim, FUTURE, -WAD // 1_000, 60_500 * WAD)  # a ninth position, on BTC: taken
    assert len(engine.account(victim).positions) == 9

    extra = [MarketLeaf(i, 1, symbol_to_bytes32(f"X{i}"), 0, 0, WAD, PRICE, PRICE, 0, 0, 0, 0, 0, 0, 0)
             for i in range(5, count + 1)]
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()}, market=market_leaves(registry) + extra)
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    fraud.challenge(*args, sender=attacker)
    bond_funds_add_up(token, bond)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID


def test_apply__leaf_at_an_older_nonce_naming_the_empty_book_with_current_counters__refused(
        engine, oracle, registry, domain, signers, chain, keeper, system, traded):  # noqa: F811
    """V10 (high, fixed). The victim holds 1 BTC perp on 10,000 (state nonce 1: one trade). The
    signers sign its leaf at nonce 0, when its book was indeed empty (positions hash of the
    empty book, margins 0: true of that book), but with the pending counters of nonce 1 as
    its base, so that no growth would be added for the trade since: IM and MM 0 while it
    holds the perp, and no proof could show it (the counters and the book at an older nonce
    are out of every proof's reach). The engine now accepts an older leaf only with the
    counters and positions hash it recorded when a trade reached that nonce (nonce 0 is the
    empty book with zero counters, never recorded): the leaf is refused, the victim keeps the
    trade's pending bounds and cannot withdraw what they back."""
    system()
    victim, maker = traded()
    assert engine.state_nonce(victim) == 1

    def empty_book_at_nonce_zero(leaf):
        return replace(leaf, state_nonce=0, positions_hash=EMPTY_POSITIONS_HASH, position_value_wad=0,
                       initial_margin_wad=0, maintenance_margin_wad=0, worst_loss_wad=0, worst_scenarios=0,
                       basis_addon_wad=0, short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)

    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: empty_book_at_nonce_zero})
    leaf, proof = trees.account_proof(victim.address)
    before = engine.health(victim)
    assert before.im_wad > 0
    with ape.reverts("engine: leaf's book or pending base is not its nonce's"):
        engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    with ape.reverts("engine: leaf's book or pending base is not its nonce's"):
        engine.withdraw_with_leaf(9_900 * USDC, leaf.as_args(), proof, sender=victim)
    after = engine.health(victim)
    assert (after.im_wad, after.mm_wad) == (before.im_wad, before.mm_wad)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(9_900 * USDC, sender=victim)
    assert engine.position(victim, PERP) == WAD

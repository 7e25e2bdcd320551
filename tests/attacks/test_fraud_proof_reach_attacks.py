"""What an account-leaf fraud proof can reach: books the signers can lie about without a proof
ever landing. Real chain, bond, FraudProofs, verifier and threshold signatures (the
verification suite's fixtures and helpers).

V8: `FraudProofs.challenge` needs a market leaf, proven at its id's slot, for every position
of the book the leaf commits to (`positions_hash`), also for a position in an instrument
expired at the root, which it then leaves out of the re-pricing. But the market tree of an
honest root holds no leaf for an expired instrument (its slot is empty, and a leaf there is
itself provable false by `challenge_market`). So the leaf of any book holding an expired,
not yet settled leg can say anything: no proof reaches it.

V9: `FraudProofs.challenge` re-prices at most 8 underlyings (`MAX_UNITS`, the verifier's
bound) and reverts on a book with more, while the engine lets a book hold positions on up to
32 and the keeper signs leaves for up to 15 (`leaves.MAX_UNITS`). So the leaf of a book on 9
or more underlyings can say anything too.

V10 (fixed): the book and pending counters of a leaf at an older state nonce are out of every
proof's reach too, so the engine accepts only those it recorded when a trade reached that
nonce; a leaf naming the empty book with the current counters never applies.
"""

from dataclasses import replace

import ape
import pytest
from conftest import WAD, committed, committed_market

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.leaves import EMPTY_POSITIONS_HASH, MarketLeaf
from offchain.chain.merkle import MerkleError

from .conftest import FUTURE, PERP, TRADING
from .test_verification_attacks import (  # noqa: F401 - fixtures
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


@pytest.mark.xfail(strict=True, reason="V8: a false leaf of a book holding an expired unsettled leg cannot be "
                                       "proven (challenge needs a market leaf per position; an expired "
                                       "instrument's slot is empty)")
def test_fraud__book_with_an_expired_unsettled_leg__false_leaf_is_provable(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, system,  # noqa: F811
        fund, set_market, trade, expire_instruments):
    """V8 (medium). The victim holds 1 BTC perp and a sliver (0.001) of the dated future. The
    future expires; its settlement price is not posted yet (the signers post it, or anyone
    settles later: the leaf still commits to the book at the state block). The signers'
    next root is honest in every market slot (the expired instruments' slots empty) but
    understates the victim's IM and MM 20x; the victim applies it and withdraws 9,000 of its
    10,000 while holding the perp. No challenge reaches the leaf: the honest challenger
    cannot build one (the book's future has no market leaf), the book without the future is
    not the leaf's positions hash, and the future's empty slot is what the registry makes it.
    Safe outcome: the false leaf is proven, the epoch voided and the signers slashed.
    Fix (FraudProofs.challenge, and the same for the engine-side witness if wanted): accept,
    for an id whose instrument is expired at `record.signed_at` (registry expiry <= signed_at,
    not a perpetual), the slot shown empty in the multiproof instead of a market leaf (the
    registry's terms are enough: such a position carries no risk and is left out of the
    re-pricing anyway); or have the keeper keep a leaf for every instrument held by some book,
    expired or not, and let `challenge_market` accept it."""
    bond, fraud, _ = system()
    victim = accounts[8]
    fund(victim, 10_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)
    trade(maker, victim, FUTURE, -WAD // 1_000, 60_500 * WAD)
    expire_instruments()
    set_market()
    live = [m for m in market_leaves(registry) if m.instrument_id == PERP]   # 2-4 expired: empty slots
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()}, market=live)
    leaf, proof = trees.account_proof(victim.address)
    assert books[victim.address] == {PERP: WAD, FUTURE: WAD // 1_000}
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    engine.withdraw(9_000 * USDC, sender=victim)           # 1 perp held on ~1,000 of equity

    # the strongest attempts an honest challenger has
    with pytest.raises(MerkleError, match="no market leaf"):
        committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    perp_leaf = trees.market_leaves_of([PERP])
    with ape.reverts("fraud: book does not match the leaf's positions hash"):
        fraud.challenge(engine.address, record.as_args(), leaf.as_args(), proof, [PERP], [WAD],
                        [perp_leaf[0].as_args()], trees.market.multiproof([PERP]).as_args(), [], 0, bytes(32),
                        sender=attacker)
    with ape.reverts():
        fraud.challenge_market(*committed_market(fraud, attacker, trees, record, FUTURE), sender=attacker)
    bond_funds_add_up(token, bond)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID


@pytest.mark.xfail(strict=True, reason="V9: a false leaf of a book on more than 8 underlyings cannot be proven "
                                       "(FraudProofs re-prices at most MAX_UNITS = 8)")
def test_fraud__book_on_nine_underlyings__false_leaf_is_provable(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, admin,  # noqa: F811
        system, fund, set_market, trade, market_count):  # noqa: F811
    """V9 (medium). Eight more perpetuals are listed (one underlying each); the victim holds 1
    of the BTC perp and 1 of each (the owner allows 16 positions a book). The signers
    understate its leaf 20x; it applies and withdraws 45,000 of its 60,000 while holding nine
    perps worth 540,000. The challenge reverts "fraud: too many underlyings" whatever
    scenarios are named: the leaf is never proven, the signers keep their bonds.
    Fix: raise FraudProofs' and the verifier's unit bound to what a book can hold (the
    keeper's leaf format names up to 15 units), or make the engine refuse a trade or slice
    that gives a book more underlyings than the proofs can re-price (and the keeper sign no
    leaf for such a book)."""
    bond, fraud, _ = system()
    count = market_count(12)                                   # ids 5..12: perpetuals on X5..X12
    ids = (PERP, *range(5, count + 1))
    engine.set_trading_params((16, *TRADING[1:]), sender=admin)
    victim = accounts[8]
    fund(victim, 60_000 * USDC)
    fund(maker, 1_000_000 * USDC)
    set_market(ids=(*ids, FUTURE, 3, 4))
    for iid in ids:
        trade(maker, victim, iid, -WAD, PRICE)
    extra = [MarketLeaf(i, 1, symbol_to_bytes32(f"X{i}"), 0, 0, WAD, PRICE, PRICE, 0, 0, 0, 0, 0, 0, 0)
             for i in range(5, count + 1)]
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()}, market=market_leaves(registry) + extra)
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    engine.withdraw(45_000 * USDC, sender=victim)
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    with ape.reverts("fraud: too many underlyings"):
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

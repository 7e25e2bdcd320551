"""What an account-leaf fraud proof can reach: books the signers can lie about without a proof
ever landing. Real chain, bond, FraudProofs, verifier and threshold signatures (the
verification suite's fixtures and helpers).

V8: `FraudProofs.challenge` needs a market leaf, proven at its id's slot, for every position
of the book the leaf commits to (`positions_hash`), also for a position in an instrument
expired at the root, which it then leaves out of the re-pricing. But the market tree of an
honest root holds no leaf for an expired instrument (its slot is empty, and a leaf there is
itself provable false by `challenge_market`). So the leaf of any book holding an expired,
not yet settled leg can say anything: no proof reaches it.
"""

import ape
import pytest
from conftest import WAD, committed, committed_market

from offchain.chain.merkle import MerkleError

from .conftest import FUTURE, PERP
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

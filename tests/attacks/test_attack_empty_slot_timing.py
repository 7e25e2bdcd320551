"""V8's empty slot against the clock: `FraudProofs.challenge` lets a challenger show the slot of
an instrument expired *at the root's time* empty (the all-zero leaf). A challenger who waits
until a leg has expired after the root, and then shows that leg's slot empty to re-price an
honest leaf without it, is refused on the registry's terms at the root's time, whatever the
time of the challenge; the honest root and the signers' bonds stand. Real chain, bond,
FraudProofs, verifier and threshold signatures (the verification suite's helpers)."""

import ape
from conftest import WAD, committed_market

from offchain.chain.fraud import EMPTY_SLOT_ARGS, challenge_arguments

from .conftest import FUTURE, PERP
from .test_verification_attacks import (  # noqa: F401 - fixtures
    PRICE,
    USDC,
    WINDOW,
    _deploy_first,
    _isolated,
    bond_funds_add_up,
    post_epoch,
    system,
)


def test_fraud__leg_expiring_just_after_the_root__shown_empty_once_expired__refused_the_honest_root_stands(
        engine, oracle, registry, token, domain, signers, chain, keeper, accounts, maker, attacker, system,  # noqa: F811
        fund, set_market, trade):
    """Held. The victim holds 1 BTC perp and 1 BTC of the dated future (a hedge-free long of
    both). The signers' honest root is signed 30 s before the future's expiry: its market tree
    holds the future's leaf and the leaf margins both legs. Once the future has expired (inside
    the challenge window), a challenger re-prices the book without it by showing its slot empty:
    refused ("empty slot for an instrument live at the root": the registry's expiry is after
    the root's `signed_at`), with the leaf's own scenarios or others; the future's slot itself is
    what the registry made it at the root's time (`challenge_market` refused). Nothing is
    voided or slashed."""
    bond, fraud, _ = system()
    victim = accounts[8]
    fund(victim, 30_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)
    trade(maker, victim, FUTURE, -WAD, 60_500 * WAD)
    expiry = registry.instrument(FUTURE).expiry
    chain.mine(timestamp=expiry - 32)
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    assert record.signed_at < expiry
    chain.mine(timestamp=expiry + 10)
    assert chain.blocks.head.timestamp < record.signed_at + WINDOW
    for scenarios, joint in (((), 0), ((0,), 0), ((5,), 7)):
        args = list(challenge_arguments(trees, record, victim.address, books[victim.address], scenarios, joint))
        assert args[4] == [PERP, FUTURE]
        args[6] = [args[6][0], EMPTY_SLOT_ARGS]
        with ape.reverts("fraud: empty slot for an instrument live at the root"):
            fraud.challenge(*args, sender=attacker)
    with ape.reverts("fraud: the slot holds what the registry says"):
        fraud.challenge_market(*committed_market(fraud, attacker, trees, record, FUTURE), sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    bond_funds_add_up(token, bond)

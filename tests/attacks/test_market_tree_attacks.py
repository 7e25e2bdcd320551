"""Attacks on the positional market tree beyond test_verification_attacks.py's (a leaf at
another slot, a count not the registry's, ids twice, 0 or past the count): the liveness
boundary and delisting. A slot is live while its instrument is a perpetual or expires after
the root's `signed_at` (the verifier refuses a leaf expired at the root by the same rule),
whether or not it is still listed for trading: an honest root omits exactly the instruments
expired at `signed_at`, and no proof slashes it for that; a delisted instrument still carries
positions, so leaving it out is proven. Real Anvil, registry, bond, verifier, signatures."""

from dataclasses import replace

import ape
import pytest
from conftest import committed_market

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.fraud import market_challenge_arguments

from . import test_verification_attacks as va
from .conftest import FUTURE
from .test_verification_attacks import _deploy_first, _isolated  # noqa: F401 (fixtures)

KIND_FUTURE = 0


system = va.system
traded = va.traded


def _root_at(engine, oracle, registry, domain, signers, chain, keeper, accounts, signed_at, market):
    """A root signed at exactly `signed_at` (post_epoch signs 2 s after the pending time)."""
    chain.pending_timestamp = signed_at - 2
    trees, record, _ = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, accounts,
                                     market=market)
    assert record.signed_at == signed_at
    return trees, record


@pytest.mark.parametrize(("offset", "with_leaf", "proven"), [
    (0, False, False),    # expired at the root: omitted by an honest root, nothing to prove
    (0, True, True),      # a leaf for it: a leaf the registry does not make
    (-1, False, True),    # one second before expiry it is live: omitting it is proven
    (-1, True, False),    # ... and its leaf is what the registry makes
])
def test_market_slot__instrument_expiring_exactly_at_signed_at__omitted_honestly_proven_either_side(
        engine, oracle, registry, token, admin, domain, signers, chain, keeper, attacker, system, traded,
        offset, with_leaf, proven):
    """The boundary the keeper's leaves, the verifier and challenge_market must share: an
    instrument with expiry == signed_at is expired at the root. Were challenge_market's rule
    `>=` where the keeper's is `>`, every honest root signed at an expiry second would be
    slashable."""
    bond, fraud, _ = system()
    victim, maker = traded()
    expiry = chain.pending_timestamp + 100
    registry.list_instrument(symbol_to_bytes32("BTC"), KIND_FUTURE, 0, expiry, sender=admin)
    iid = registry.instrument_count()
    market = va.market_leaves(registry)
    if with_leaf:
        market = market + [replace(market[FUTURE - 1], instrument_id=iid, expiry=expiry)]
    trees, record = _root_at(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                             expiry + offset, market)
    if proven:
        tx = fraud.challenge_market(*committed_market(fraud, attacker, trees, record, iid), sender=attacker)
        assert tx.decode_logs(fraud.FraudProven)[0].code == 6
        assert oracle.epoch_record_hash(engine, record.signed_at) == va.VOID
    else:
        with ape.reverts("fraud: the slot holds what the registry says"):
            fraud.challenge_market(*market_challenge_arguments(trees, record, iid), sender=attacker)
        assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    va.bond_funds_add_up(token, bond)


def test_market_slot__delisted_unexpired_instrument_left_out__proven_its_leaf_kept_is_honest(
        engine, oracle, registry, token, admin, domain, signers, chain, keeper, attacker, system, traded):
    """Delisting stops new risk only: books still hold the future, so its slot must still
    hold its leaf. A root that drops it (margining those positions at zero) is proven; one
    that keeps it is not."""
    bond, fraud, _ = system()
    victim, maker = traded()
    registry.delist(FUTURE, sender=admin)
    with chain.isolate():
        trees, record, _ = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
        with ape.reverts("fraud: the slot holds what the registry says"):
            fraud.challenge_market(*market_challenge_arguments(trees, record, FUTURE), sender=attacker)
    dropped = [m for m in va.market_leaves(registry) if m.instrument_id != FUTURE]
    trees, record, _ = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                     market=dropped)
    tx = fraud.challenge_market(*committed_market(fraud, attacker, trees, record, FUTURE), sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].code == 6
    assert oracle.epoch_record_hash(engine, record.signed_at) == va.VOID
    va.bond_funds_add_up(token, bond)

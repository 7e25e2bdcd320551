"""Attacks on a market leaf's terms: what `challenge_market` compares with the registry and
what it leaves to the signers. Every field of a leaf is proven to be in the root, but only
the id, kind, underlying, strike and expiry are proven to be the registry's; the rest are
market inputs the trust assumptions leave to the signers (spot, forward, vol, rate) or per-unit
figures derived from them. The contract size is neither: on chain it is 1 (a size of 1e18
is one unit of the underlying), yet a leaf may name any. Real Anvil, registry, bond,
FraudProofs, verifier and threshold signatures (the verification suite's helpers)."""

from dataclasses import replace

import ape
from conftest import WAD, committed, committed_market

from . import test_verification_attacks as va
from .conftest import PERP
from .test_verification_attacks import _deploy_first, _isolated  # noqa: F401 (fixtures)

USDC = va.USDC
system = va.system
traded = va.traded


def test_market_slot__perp_leaf_naming_a_thousandth_contract_size__proven(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):  # noqa: F811
    """V12 (high, fixed). The signers publish the perp's market leaf with contract_size_wad =
    1e15 (every other field honest: the registry's terms, the true spot) and sign every
    account leaf consistently with it: the victim's 1 BTC perp is margined as 0.001 BTC. It
    applies its leaf and withdraws 9,000 of its 10,000 while holding the perp. `challenge`
    re-prices the book from that same market leaf and finds the account leaf right;
    `challenge_market` compares the slot with the registry's id, kind, underlying, strike and
    expiry only, so nothing lands. The trust assumptions call a leaf with other terms than the
    registry's provable; the contract size is such a term (on chain it is always 1).
    Safe outcome: challenge_market proves the slot (code 6), the epoch is voided.
    Fixed: challenge_market proves a present leaf whose contract_size_wad is not WAD."""
    bond, fraud, _ = system()
    victim, maker = traded()
    honest, _, _ = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    honest_mm = honest.account_proof(victim.address)[0].maintenance_margin_wad
    market = [replace(m, contract_size_wad=WAD // 1000) if m.instrument_id == PERP else m
              for m in va.market_leaves(registry)]
    trees, record, _ = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                     market=market)
    leaf, proof = trees.account_proof(victim.address)
    assert 0 < leaf.maintenance_margin_wad * 100 < honest_mm
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    engine.withdraw(9_000 * USDC, sender=victim)
    assert engine.position(victim, PERP) == WAD
    with ape.reverts("fraud: no fraud proven"):
        fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, {PERP: WAD}), sender=attacker)
    tx = fraud.challenge_market(*committed_market(fraud, attacker, trees, record, PERP), sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].code == 6
    assert oracle.epoch_record_hash(engine, record.signed_at) == va.VOID
    va.bond_funds_add_up(token, bond)

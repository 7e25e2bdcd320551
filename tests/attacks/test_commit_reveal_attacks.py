"""Attacks on FraudProofs' commit-reveal beyond the copier and replay cases of
test_verification_attacks.py: a bot that commits blindly to every account of each new epoch
(the documented residual of V2: it outbids a watcher's reveal and is paid, at the cost of one
commitment per account), a watcher's commitment for one account used to reveal another, a
salt shared between two accounts, and a commitment made before the root it names was posted.
Real Anvil, bond, verifier and signatures; the bond's funds add up after each."""

import secrets

import ape
from conftest import committed

from offchain.chain.fraud import challenge_arguments, commitment

from . import test_verification_attacks as va
from .test_verification_attacks import _deploy_first, _isolated  # noqa: F401 (fixtures)

BOND = va.BOND
GWEI = 10**9


system = va.system
traded = va.traded


def _false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker):
    return va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                         lie={victim.address: va.understate()})


def test_fraud__bot_committed_blindly_to_every_account__outbids_the_reveal_and_is_paid_documented_residual(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """V2's residual, pinned: a bot that commits to every account of each new epoch as soon
    as the root is posted (one commitment per account, not knowing which leaf is false)
    holds a mature commitment when the watcher reveals; it copies the reveal's proof with its
    own salt and a higher fee and is paid. The void and the slash happen either way. If
    this starts failing, the residual is closed: update SECURITY.md (V2)."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = _false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker)
    salts = {}
    for account in (victim.address, maker.address):   # blind: every account of the epoch
        salts[account] = secrets.token_bytes(32)
        fraud.commit(commitment(attacker.address, engine.address, record.signed_at, account, salts[account]),
                     sender=attacker)
    args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    copy = (*args[:-1], salts[victim.address])
    bot, honest = va._same_block(
        chain, dict(sender=attacker, to=fraud.address, data=fraud.challenge.encode_input(*copy), tip=50 * GWEI),
        dict(sender=liquidator, to=fraud.address, data=fraud.challenge.encode_input(*args), tip=1 * GWEI))
    assert [bot["status"], honest["status"]] == [1, 0]
    assert va._revert_reason(chain, honest) == "fraud: epoch already void"
    assert token.balanceOf(attacker) == 2 * BOND // 5 and token.balanceOf(liquidator) == 0
    assert oracle.epoch_record_hash(engine, record.signed_at) == va.VOID
    va.bond_funds_add_up(token, bond)


def test_fraud__commitment_for_one_account_revealed_for_another__refused_then_its_own_proves(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, system, traded):
    """The watcher committed to the maker's leaf (honest) and reveals the victim's (false)
    with that salt: the commitment binds the account, so it is refused; the victim's own
    commitment then proves it."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = _false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker)
    salt = secrets.token_bytes(32)
    fraud.commit(commitment(liquidator.address, engine.address, record.signed_at, maker.address, salt),
                 sender=liquidator)
    with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
        fraud.challenge(*challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt),
                        sender=liquidator)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    assert fraud.challenge(*args, sender=liquidator).decode_logs(fraud.FraudProven)[0].paid == 2 * BOND // 5
    va.bond_funds_add_up(token, bond)


def test_fraud__commitment_made_before_the_root_was_posted__authorises_its_reveal_once(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """A commitment names (engine, signed_at, account), not a posted epoch: one made before
    the root (the signers themselves know signed_at first) reveals once after it, and a
    second reveal of the same commitment is refused."""
    bond, fraud, _ = system()
    victim, maker = traded()
    salt = secrets.token_bytes(32)
    signed_at = chain.pending_timestamp + 100   # the root the signers are about to sign
    fraud.commit(commitment(liquidator.address, engine.address, signed_at, victim.address, salt), sender=liquidator)
    chain.pending_timestamp = signed_at - 2      # post_epoch signs 2 s after the pending time
    trees, record, books = _false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker)
    assert record.signed_at == signed_at
    args = challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt)
    assert fraud.challenge(*args, sender=liquidator).decode_logs(fraud.FraudProven)[0].paid == 2 * BOND // 5
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*args, sender=liquidator)
    va.bond_funds_add_up(token, bond)

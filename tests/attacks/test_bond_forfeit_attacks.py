"""Attacks on SignerBond's forfeited balance and its push to the engine's insurance fund, end
to end on Anvil (real bond, fraud proofs, verifier, oracle, engine and tokens): a push twice,
with nothing forfeited, of a dust slash, while the engine is paused, on a fee-on-transfer and
on a re-entering token; a signer removed from the oracle after signing; withdrawals around
a slash. After each, both identities hold: the bond's token balance = total_bonded +
forfeited, and over its life bonded = total_bonded + forfeited + withdrawn + paid to
challengers + pushed to the insurance fund (`to_insurance`); the engine's funds add up
(autouse for the suite's engine, `assert_funds_add_up` for the others)."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD

from offchain.chain.fraud import challenge_arguments
from offchain.chain.verifier import verifier_config

from . import test_verification_attacks as va
from .conftest import PERP, assert_funds_add_up, deploy_engine
from .test_verification_attacks import _deploy_first, _isolated  # noqa: F401 (fixtures)

BOND, WINDOW, DELAY, USDC, PRICE = va.BOND, va.WINDOW, va.DELAY, va.USDC, va.PRICE


@pytest.fixture
def wired(project, admin, oracle, signers):
    """wired(token, insurance_engine, required=BOND, stake=None) -> (bond, fraud): a SignerBond
    on `token` whose forfeits go to `insurance_engine`, FraudProofs with the suite's verifier
    params, both named on the oracle, signers 0 and 1 staking `stake` (default `required`)."""

    def _build(token, insurance_engine, required=BOND, stake=None):
        bond = project.SignerBond.deploy(token, required, WINDOW, DELAY, insurance_engine, sender=admin)
        generator, rows = verifier_config(va.PARAMS)
        verifier = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
        fraud = project.FraudProofs.deploy(oracle, bond, sender=admin)
        fraud.register_verifier(verifier, sender=admin)
        bond.set_slasher(fraud, sender=admin)
        oracle.set_fraud_contracts(bond, fraud, sender=admin)
        for s in signers[:2]:
            va.rebond(token, bond, admin, s, required if stake is None else stake)
        return bond, fraud

    return _build


def prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, who):
    """Signers 0 and 1 post a root understating the victim's margins; `who` proves it ->
    the amount paid to `who` (with a commitment first where FraudProofs takes one)."""
    trees, record, books = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                         lie={victim.address: va.understate()})
    try:
        from conftest import committed
    except ImportError:
        args = challenge_arguments(trees, record, victim.address, books[victim.address])
    else:
        args = committed(fraud, who, trees, record, victim.address, books[victim.address])
    tx = fraud.challenge(*args, sender=who)
    return tx.decode_logs(fraud.FraudProven)[0].paid


def identity(token, bond, bonded: int, withdrawn: int, paid: int) -> None:
    """Both of the bond's identities (see the module docstring)."""
    assert token.balanceOf(bond) == bond.total_bonded() + bond.forfeited()
    assert bonded == bond.total_bonded() + bond.forfeited() + withdrawn + paid + bond.to_insurance()


@pytest.fixture
def traded(engine, fund, set_market, trade, accounts, maker):
    def _open():
        victim = accounts[8]
        fund(victim, 10_000 * USDC)
        fund(maker, 100_000 * USDC)
        set_market()
        trade(maker, victim, PERP, -WAD, PRICE)
        return victim, maker

    return _open


def test_push_forfeited__twice__pays_once(engine, oracle, registry, token, domain, signers, chain, keeper,
                                          liquidator, attacker, wired, traded):
    bond, fraud = wired(token, engine)
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    forfeited = bond.forfeited()
    assert paid == 2 * BOND // 5 and forfeited == 2 * BOND - paid
    insurance = engine.insurance_wad()
    assert bond.push_forfeited(sender=attacker).return_value == forfeited
    assert engine.insurance_wad() - insurance == forfeited * engine.SCALE()
    with ape.reverts("bond: nothing forfeited"):
        bond.push_forfeited(sender=attacker)
    assert engine.insurance_wad() - insurance == forfeited * engine.SCALE() and bond.to_insurance() == forfeited
    assert token.allowance(bond, engine) == 0  # the engine pulled exactly what was approved
    identity(token, bond, 2 * BOND, 0, paid)


def test_push_forfeited__nothing_ever_forfeited__reverts_and_moves_nothing(token, engine, attacker, wired):
    bond, _ = wired(token, engine)
    insurance = engine.insurance_wad()
    with ape.reverts("bond: nothing forfeited"):
        bond.push_forfeited(sender=attacker)
    assert engine.insurance_wad() == insurance and bond.to_insurance() == 0
    identity(token, bond, 2 * BOND, 0, 0)


def test_push_forfeited__dust_slash_of_two_units__challenger_paid_nothing_all_to_insurance(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, wired, traded):
    """A required bond of 1 token unit: the slash takes 2 units, 20% of which rounds to 0
    (against the challenger), and the insurance fund gets both."""
    bond, fraud = wired(token, engine, required=1)
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    assert paid == 0 and bond.forfeited() == 2
    insurance = engine.insurance_wad()
    bond.push_forfeited(sender=attacker)
    assert engine.insurance_wad() - insurance == 2 * engine.SCALE()
    identity(token, bond, 2, 0, 0)


def test_push_forfeited__engine_paused__still_reaches_the_insurance_fund(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, admin, wired, traded):
    """Pause stops new risk, not deposits to the fund: the owner cannot hold forfeits in the
    bond by pausing."""
    bond, fraud = wired(token, engine)
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    engine.pause(sender=admin)
    insurance = engine.insurance_wad()
    forfeited = bond.forfeited()
    bond.push_forfeited(sender=attacker)
    assert engine.insurance_wad() - insurance == forfeited * engine.SCALE()
    identity(token, bond, 2 * BOND, 0, paid)


def test_slash__signer_removed_from_oracle_after_signing__still_slashed_pending_included(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, admin, wired, traded):
    """The owner removes signer 0 right after its false root and the signer asks for its
    bond at once: its signatures stop counting, but the root it signed is still proven
    against its stake, pending withdrawal included; nothing is paid after the delay."""
    bond, fraud = wired(token, engine)
    victim, maker = traded()
    trees, record, books = va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                         lie={victim.address: va.understate()})
    oracle.remove_signer(signers[0].address, sender=admin)
    s0 = va.as_sender(chain, signers[0])
    bond.request_withdrawal(BOND, sender=s0)
    try:
        from conftest import committed
    except ImportError:
        args = challenge_arguments(trees, record, victim.address, books[victim.address])
    else:
        args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    paid = fraud.challenge(*args, sender=liquidator).decode_logs(fraud.FraudProven)[0].paid
    assert paid == 2 * BOND // 5 and bond.pending(s0) == 0 and bond.stake(s0) == 0
    chain.pending_timestamp += DELAY + 1
    with ape.reverts("bond: nothing pending"):
        bond.withdraw(sender=s0)
    identity(token, bond, 2 * BOND, 0, paid)


def test_withdraw__requested_after_an_honest_root__paid_after_the_delay_only(
        engine, oracle, registry, token, domain, signers, chain, keeper, wired, traded):
    """A leaving signer: the stake stops counting at the request, is paid no earlier than
    the delay (longer than the window), in full when nothing was proven."""
    bond, _ = wired(token, engine)
    victim, maker = traded()
    va.post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    s1 = va.as_sender(chain, signers[1])
    bond.request_withdrawal(BOND, sender=s1)
    assert not bond.is_bonded(s1)
    chain.pending_timestamp = bond.unlock_at(s1) - 2
    with ape.reverts("bond: withdrawal delay not over"):
        bond.withdraw(sender=s1)
    chain.pending_timestamp = bond.unlock_at(s1)
    before = token.balanceOf(s1)
    bond.withdraw(sender=s1)
    assert token.balanceOf(s1) - before == BOND
    identity(token, bond, 2 * BOND, BOND, 0)


def test_push_forfeited__fee_on_transfer_token__insurance_credited_what_arrived_identities_hold(
        project, admin, engine, oracle, registry, domain, signers, chain, keeper, liquidator, attacker, wired,
        traded):
    """A 1% fee token: bonds are credited what arrived (the operator funds a little more),
    the challenger receives its share less the fee, the push sends the whole forfeited
    balance and the engine credits what arrived; the bond keeps no dust, nothing is
    double-counted."""
    fot = project.FeeOnTransferToken.deploy("Fee USD", "fUSD", 6, 100, sender=admin)
    fot_engine = deploy_engine(project, admin, fot, oracle, registry)
    gross = -(-BOND * 10_000 // 9_900)  # arrives as >= BOND after the 1% fee
    bond, fraud = wired(fot, fot_engine, stake=gross)
    bonded = 2 * (gross - gross // 100)
    assert bond.total_bonded() == bonded and bond.is_bonded(signers[0].address)
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    assert paid == bonded * 2_000 // 10_000 and fot.balanceOf(liquidator) == paid - paid // 100
    forfeited = bond.forfeited()
    bond.push_forfeited(sender=attacker)
    assert fot_engine.insurance_wad() == (forfeited - forfeited // 100) * fot_engine.SCALE()
    assert fot.balanceOf(bond) == 0
    identity(fot, bond, bonded, 0, paid)
    assert_funds_add_up(fot_engine, fot, [])


def test_push_forfeited__reentrant_token__reentry_into_push_or_engine_refused_whole(
        project, admin, engine, oracle, registry, domain, signers, chain, keeper, liquidator, attacker, wired,
        traded):
    """A token that calls back from the engine's pull: re-entering push_forfeited (the bond's
    lock) or the engine (its lock) reverts the whole push; the forfeited balance stays and
    a later push moves it once."""
    hook = project.ReentrantToken.deploy("Hook USD", "hUSD", 6, sender=admin)
    hook_engine = deploy_engine(project, admin, hook, oracle, registry)
    bond, fraud = wired(hook, hook_engine)
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    forfeited = bond.forfeited()
    for target, payload in ((bond, bond.push_forfeited.encode_input()),
                            (hook_engine, hook_engine.fund_insurance.encode_input(1))):
        hook.arm(target, payload, sender=attacker)
        with pytest.raises(ape.exceptions.ContractLogicError):
            bond.push_forfeited(sender=attacker)
        assert bond.forfeited() == forfeited and bond.to_insurance() == 0 and hook_engine.insurance_wad() == 0
    hook.arm(va.ZERO, b"", sender=attacker)
    bond.push_forfeited(sender=attacker)
    assert hook_engine.insurance_wad() == forfeited * hook_engine.SCALE() and bond.forfeited() == 0
    identity(hook, bond, 2 * BOND, 0, paid)
    assert_funds_add_up(hook_engine, hook, [])


@pytest.fixture
def blocklisted(project, admin, oracle, registry, wired):
    """blocklisted() -> (token, its engine, bond, fraud): a token whose owner (admin) can block
    addresses, as USDC's issuer can."""

    def _build():
        blk = project.BlocklistToken.deploy("Block USD", "bUSD", 6, sender=admin)
        blk_engine = deploy_engine(project, admin, blk, oracle, registry)
        return (blk, blk_engine, *wired(blk, blk_engine))

    return _build


def test_push_forfeited__engine_blocklisted_by_the_token__reverts_forfeit_kept_then_pushed_once_unblocked(
        engine, oracle, registry, domain, signers, chain, keeper, liquidator, attacker, admin, blocklisted, traded):
    blk, blk_engine, bond, fraud = blocklisted()
    victim, maker = traded()
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    forfeited = bond.forfeited()
    blk.set_blocked(blk_engine, True, sender=admin)
    with ape.reverts("token: receiver blocked"):
        bond.push_forfeited(sender=attacker)
    assert bond.forfeited() == forfeited and bond.to_insurance() == 0
    identity(blk, bond, 2 * BOND, 0, paid)
    blk.set_blocked(blk_engine, False, sender=admin)
    bond.push_forfeited(sender=attacker)
    assert blk_engine.insurance_wad() == forfeited * blk_engine.SCALE()
    identity(blk, bond, 2 * BOND, 0, paid)
    assert_funds_add_up(blk_engine, blk, [])


def test_fraud__bond_or_challenger_blocklisted_by_the_token_issuer__false_root_still_voided_and_slashed(
        engine, oracle, registry, domain, signers, chain, keeper, liquidator, admin, blocklisted, traded):
    """V6. The bond's token is one whose issuer can block addresses. Blocking the bond made
    every payout transfer revert, and the payout was part of the proof's transaction, so the
    proof reverted with it: the false root stayed valid, its signers kept their bonds. Now
    the refused payout is forfeited: the epoch is void, both bonds slashed, the challenger
    paid nothing; the same for a blocked challenger."""
    blk, _, bond, fraud = blocklisted()
    victim, maker = traded()
    blk.set_blocked(bond, True, sender=admin)
    paid = prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud, liquidator)
    assert paid == 0 and bond.total_bonded() == 0 and bond.forfeited() == 2 * BOND
    assert not bond.is_bonded(signers[0].address) and blk.balanceOf(liquidator) == 0
    identity(blk, bond, 2 * BOND, 0, 0)
    # a blocked challenger (the bond unblocked, signers re-bonded): proven, its share forfeited
    blk.set_blocked(bond, False, sender=admin)
    for s in signers[:2]:
        va.rebond(blk, bond, admin, s)
    blk.set_blocked(liquidator, True, sender=admin)
    assert prove_false_root(engine, oracle, registry, domain, signers, chain, keeper, victim, maker, fraud,
                            liquidator) == 0
    assert bond.total_bonded() == 0 and bond.forfeited() == 4 * BOND
    identity(blk, bond, 4 * BOND, 0, 0)

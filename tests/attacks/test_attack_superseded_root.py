"""A false root challenged after the signers have already superseded it with the next one
(their honest root, or their next false one), so that its leaves no longer verify: the
proof still lands within the window, voids only that epoch and slashes its signers; the
current root stays usable, and a book still margined by the voided root is held to the
isolated bound until it applies a leaf of the current one. Names say the sequence and the
outcome (held: passing tests)."""

import ape
import pytest
from conftest import WAD, committed

from .conftest import PERP
from .test_verification_attacks import (  # noqa: F401 - system is a fixture
    BOND,
    VOID,
    bond_funds_add_up,
    post_epoch,
    system,
    traded,
    understate,
)

USDC = 10**6
PRICE = 60_000 * WAD


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, set_market, fund, trade, make_order, witness_for):
    """Session deployments before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def test_fraud__false_root_superseded_before_its_challenge__proven_voids_only_it_current_root_still_applies(
        engine, oracle, registry, token, domain, signers, chain, keeper, maker, accounts, liquidator, attacker,
        system, fund, set_market, trade):  # noqa: F811
    """The signers post a root understating the victim's margin 20x, the victim applies it,
    and the signers post their next (honest) root at once, so the false one is no longer
    the engine's. Its challenge still lands (the window runs from its posting): only that
    epoch is voided, the current root is not (its leaves still verify), both counted bonds
    are slashed once (a second challenge of the same root, or one of the honest current root,
    is refused), and the victim's margins from the voided root back no withdrawal beyond the
    isolated bound until its leaf of the current root is applied."""
    bond, fraud, _ = system()
    victim = accounts[8]
    fund(maker, 500_000 * USDC)
    fund(victim, 20_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)       # the victim long 1 perp
    false_trees, false_record, false_books = post_epoch(
        engine, oracle, registry, domain, signers, chain, keeper, [victim, maker], lie={victim.address: understate()})
    leaf, proof = false_trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    assert engine.account(victim).initial_margin_wad == leaf.initial_margin_wad
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    assert oracle.epoch_root(engine)[0] == record.epoch

    fraud.challenge(*committed(fraud, liquidator, false_trees, false_record, victim.address,
                               false_books[victim.address]), sender=liquidator)
    assert oracle.epoch_record_hash(engine, false_record.signed_at) == VOID
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    assert token.balanceOf(liquidator) == 2 * BOND // 5
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*committed(fraud, attacker, false_trees, false_record, victim.address,
                                   false_books[victim.address]), sender=attacker)
    with ape.reverts("fraud: no fraud proven"):
        fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, books[victim.address]),
                        sender=attacker)

    # the voided basis: held to the isolated bound (6,000 for 1 BTC perp), not the false 1/20
    isolated_im, _ = oracle.isolated_margins([PERP], [WAD])
    free = (engine.health(victim).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1, sender=victim)
    # the current root's honest leaf applies and frees what it says
    honest, honest_proof = trees.account_proof(victim.address)
    engine.apply_leaf(honest.as_args(), honest_proof, sender=attacker)
    assert engine.account(victim).margin_basis_timestamp == record.signed_at
    engine.withdraw((engine.health(victim).equity_wad - honest.initial_margin_wad) // 10**12, sender=victim)
    assert token.balanceOf(attacker) == 0
    bond_funds_add_up(token, bond)


def _lands_with(chain, fraud, data, sender, gas) -> bool:
    """Whether the challenge with this call data lands with this gas limit (an eth_call at
    the head: no transaction, no state)."""
    try:
        chain.provider.web3.eth.call({"from": sender.address, "to": fraud.address, "data": data, "gas": gas})
    except Exception:  # noqa: BLE001 - out of gas or a revert: it does not land
        return False
    return True


def test_fraud__challenge_sent_with_just_enough_gas__engine_still_told_of_the_void(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):  # noqa: F811
    """The oracle tells the engine of a void with a call whose failure it ignores
    (`note_void`, so that an address that is no engine cannot block a proof), and only once
    the engine is told does new risk ask whether a margin basis is void. A challenger (the
    signers themselves, challenging their own root to keep a fifth of their bonds) sends
    the proof with just enough gas that the proof lands: with the least gas that lands it
    (found to 50 gas), the engine is still told, because a starved `note_void` leaves the
    oracle 1/64 of its gas, too little to finish `void_epoch`, and the whole proof reverts.
    The victim's margins from the voided root back no withdrawal beyond the isolated bound."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    data = fraud.challenge.encode_input(*args)
    chain.mine(1)  # the reveal is due from the block after the commitment's
    lo, hi = 50_000, 5_000_000
    assert _lands_with(chain, fraud, data, attacker, hi) and not _lands_with(chain, fraud, data, attacker, lo)
    while hi - lo > 50:
        mid = (lo + hi) // 2
        if _lands_with(chain, fraud, data, attacker, mid):
            hi = mid
        else:
            lo = mid
    fraud.challenge(*args, sender=attacker, gas=hi)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    isolated_im, _ = oracle.isolated_margins([PERP], [WAD])
    free = (engine.health(victim).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1, sender=victim)
    bond_funds_add_up(token, bond)

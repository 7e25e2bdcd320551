"""Attacks on the verification layer, end to end on Anvil (real engine, oracle, verifier, bond,
fraud proofs, token and threshold signatures): forged market multiproofs, witnesses for
another book or root, fraud-proof replays and griefing, bond escapes, and what a voided
epoch still lets through. Each test is named `test_<rule>__<attack>__<expected>` and asserts
the attack fails; the funds identity of the engine (autouse) and of the bond hold after each.
"""

from dataclasses import replace

import ape
import pytest
from conftest import PARAMS_HASH, WAD

from offchain.chain.eip712 import sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.fraud import EpochRecord, challenge_arguments
from offchain.chain.leaves import MarketLeaf
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.risk import load_params

from .conftest import PERP

USDC = 10**6
PRICE = 60_000 * WAD
BOND = 100_000 * USDC
WINDOW, DELAY = 3_600, 7_200
VOID = (1).to_bytes(32, "big")      # a voided epoch's record hash
PARAMS = load_params("default-v2")


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, set_market, fund, trade, make_order, witness_for):
    """Session deployments before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def system(project, admin, token, oracle, signers):
    """system() -> (bond, fraud, verifier): SignerBond with signers 0 and 1 bonded, the
    default-v2 verifier under the suite's params hash registered with FraudProofs, both named
    on the oracle. Built in the test body (ape isolation)."""

    def _build():
        bond = project.SignerBond.deploy(token, BOND, WINDOW, DELAY, sender=admin)
        generator, rows = verifier_config(PARAMS)
        verifier = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
        fraud = project.FraudProofs.deploy(oracle, bond, sender=admin)
        fraud.register_verifier(verifier, sender=admin)
        bond.set_slasher(fraud, sender=admin)
        oracle.set_fraud_contracts(bond, fraud, sender=admin)
        for s in signers[:2]:
            rebond(token, bond, admin, s)
        return bond, fraud, verifier

    return _build


def rebond(token, bond, admin, signer, amount=BOND):
    """The operator funds `signer`'s stake (after a slash: so its signatures count again)."""
    token.mint(admin, amount, sender=admin)
    token.approve(bond, amount, sender=admin)
    bond.bond(signer.address, amount, sender=admin)


def market_leaves(registry, spot=PRICE):
    """The epoch's market leaves: ids 1-4 on BTC at `spot`, options at 60% vol."""
    out = []
    for i in (1, 2, 3, 4):
        item = registry.instrument(i)
        out.append(MarketLeaf(
            instrument_id=i, kind=item.kind, underlying=symbol_to_bytes32("BTC"), strike_wad=item.strike_wad,
            expiry=item.expiry, contract_size_wad=WAD, spot_wad=spot, forward_wad=spot,
            vol_wad=6 * WAD // 10 if item.kind >= 2 else 0, rate_wad=0, mark_wad=0, im_long_wad=0,
            im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    return out


def book_of(engine, account):
    return {p.instrument_id: p.size_wad for p in engine.account(account).positions}


def post_epoch(engine, oracle, registry, domain, signers, chain, keeper, accounts, lie=None, spot=PRICE, by=None):
    """An epoch root over `accounts` with the keeper's own leaves (`lie` {account: fn} rewrites
    a leaf) -> (trees, record, books)."""
    chain.pending_timestamp += 2
    chain.mine(1)
    ts = chain.blocks.head.timestamp
    market = market_leaves(registry, spot)
    inputs = MarketInputs.from_leaves(PARAMS, market, ts)
    books = {a.address: book_of(engine, a) for a in accounts}
    leaves = epoch_account_leaves(inputs, [a.address for a in accounts],
                                  [engine.account(a).state_nonce for a in accounts], list(books.values()),
                                  [engine.pending_total(a) for a in accounts])
    lie = lie or {}
    leaves = [lie[leaf.account](leaf) if leaf.account in lie else leaf for leaf in leaves]
    epoch = oracle.epoch_root(engine)[0] + 1
    trees = EpochTrees.build(engine.address, epoch, leaves, market)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    by = signers[:2] if by is None else by
    tx = oracle.post_root(msg.as_args(), sign_multi(msg, domain, by), sender=keeper)
    counted = tuple(sorted((s.address for s in by), key=lambda a: int(a, 16)))
    record = EpochRecord(epoch, trees.accounts.root, trees.market.root, PARAMS_HASH, ts,
                         chain.provider.get_block(tx.block_number).timestamp, counted)
    assert oracle.epoch_record_hash(engine, ts) == record.hash()
    return trees, record, books


def understate(factor=20):
    """A lie: IM and MM divided by `factor` (provable: code 1)."""
    return lambda f: replace(f, initial_margin_wad=f.initial_margin_wad // factor,
                             maintenance_margin_wad=f.maintenance_margin_wad // factor)


def bond_funds_add_up(token, bond):
    assert token.balanceOf(bond) == bond.total_bonded() + bond.forfeited()


# ---------------------------------------------------------------------------------------
# (5) the void: margins from a voided root never back new risk again
# ---------------------------------------------------------------------------------------


def test_void__liquidator_launders_voided_basis_with_victims_older_one__still_held_to_isolated_bound(
        engine, oracle, registry, token, domain, signers, chain, keeper, admin, maker, accounts, liquidator,
        system, fund, set_market, trade, witness_for):
    """A book margined by a false root's leaf liquidates a 1-wei slice of any liquidatable book
    whose basis is older: the slice's margins keep the older of the two bases (a day-old IM
    never looks fresh), which replaced the voided basis with a valid one, and the understated
    IM backed withdrawals again. The merged basis must stay void."""
    bond, fraud, _ = system()
    attacker, victim = accounts[8], accounts[9]
    fund(maker, 500_000 * USDC)
    fund(attacker, 10_000 * USDC)
    fund(victim, 7_000 * USDC)
    set_market()
    trade(maker, attacker, PERP, WAD, PRICE)     # attacker short 1 perp
    trade(maker, victim, PERP, -WAD, PRICE)      # victim long 1 perp (basis: this trade)
    chain.pending_timestamp += 10
    # the false root understates the attacker's margin 20x; the attacker applies it
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper,
                                      [attacker, victim, maker], lie={attacker.address: understate()})
    leaf, proof = trees.account_proof(attacker.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    assert engine.health(attacker).im_wad == leaf.initial_margin_wad < 1_000 * WAD
    # an honest watcher proves it at once: void, bonds slashed; the operator re-bonds
    fraud.challenge(*challenge_arguments(trees, record, attacker.address, books[attacker.address]),
                    sender=liquidator)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    for s in signers[:2]:
        rebond(token, bond, admin, s)
    # the price falls: the victim is liquidatable, the short attacker gains 4.5k
    set_market(marks={PERP: 55_500 * WAD})
    assert engine.health(victim).liquidatable
    # held to the isolated bound (6k per perp): ~14.4k equity lets ~8.4k out, not ~13.9k
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(13_500 * USDC, sender=attacker)
    # the laundering step: a 1-wei slice of the victim's book (basis older than the void)
    engine.liquidate(victim, 1, 10**30, engine.state_nonce(victim), witness_for(victim), sender=attacker)
    assert engine.position(attacker, PERP) == -WAD + 1
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(13_500 * USDC, sender=attacker)
    engine.withdraw(8_000 * USDC, sender=attacker)
    bond_funds_add_up(token, bond)


def test_void__liquidator_with_older_basis_inherits_slice_of_voided_margins__held_to_isolated_bound(
        engine, oracle, registry, token, domain, signers, chain, keeper, admin, maker, accounts, liquidator,
        system, fund, set_market, trade, witness_for):
    """The other direction: the victim's margins come from the voided root and the
    liquidator's basis is older and valid. The slice carries the victim's understated margin
    into the liquidator's word; the merged basis must be the voided one, not the older."""
    bond, fraud, _ = system()
    taker, victim = accounts[8], accounts[9]
    fund(maker, 500_000 * USDC)
    fund(taker, 100_000 * USDC)
    fund(victim, 7_000 * USDC)
    set_market()
    trade(maker, taker, PERP, WAD, PRICE)        # the liquidator-to-be: short 1 perp, basis now
    trade(maker, victim, PERP, -WAD, PRICE)
    chain.pending_timestamp += 10
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper,
                                      [taker, victim, maker], lie={victim.address: understate()})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    fraud.challenge(*challenge_arguments(trees, record, victim.address, books[victim.address]),
                    sender=liquidator)
    for s in signers[:2]:
        rebond(token, bond, admin, s)
    # the victim is liquidatable even on its understated MM
    set_market(marks={PERP: 53_300 * WAD})
    h = engine.health(victim)
    assert h.liquidatable and h.mm_wad == leaf.maintenance_margin_wad
    taker_basis = engine.account(taker).margin_basis_timestamp
    assert taker_basis < record.signed_at
    engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness_for(victim), sender=taker)
    got = engine.account(taker)
    assert got.margin_basis_timestamp == record.signed_at   # not taker_basis: new risk on the isolated bound
    bond_funds_add_up(token, bond)

"""Fraud proofs on Anvil, against the real engine, oracle, token and signatures: a rogue root
that understates one account's margin is challenged, voided and paid out of the signers'
bonds, and the margin the engine had applied from it stops backing new risk (the book falls
back to the isolated bound); against an honest root every challenge reverts; griefing
(dust, a repeated challenge, the wrong epoch, after the window, forged market leaves or
record) costs the griefer only gas. Funds add up: bond balance = stakes + pending +
forfeited, and everything that left it went to the challenger (20%) or, pushed by anyone, into
the engine's insurance fund (80%), where the engine's own funds identity counts it."""

from dataclasses import replace

import ape
import pytest
from conftest import PARAMS_HASH, WAD, committed

from offchain.chain.eip712 import sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.fraud import EpochRecord, challenge_arguments
from offchain.chain.leaves import MarketLeaf
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.risk import load_params

from .conftest import PERP

USDC = 10**6
SCALE = 10**12                      # token units (6 decimals) -> WAD
PRICE = 60_000 * WAD
BOND = 100_000 * USDC
WINDOW, DELAY = 3_600, 7_200
VOID = (1).to_bytes(32, "big")      # a voided epoch's record hash


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, set_market, fund, trade, make_order):
    """Session deployments before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def system(project, admin, token, oracle, signers, engine):
    """system() -> dict: SignerBond (signers 0 and 1 bonded), the default-v2 verifier under the
    suite's params hash, FraudProofs wired to both. Built in the test body (ape isolation)."""

    def _build():
        bond = project.SignerBond.deploy(token, BOND, WINDOW, DELAY, engine, sender=admin)
        generator, rows = verifier_config(load_params("default-v2"))
        verifier = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
        fraud = project.FraudProofs.deploy(oracle, bond, sender=admin)
        fraud.register_verifier(verifier, sender=admin)
        bond.set_slasher(fraud, sender=admin)
        oracle.set_fraud_contracts(bond, fraud, sender=admin)
        token.mint(admin, 2 * BOND, sender=admin)
        token.approve(bond, 2 * BOND, sender=admin)
        for s in signers[:2]:
            bond.bond(s.address, BOND, sender=admin)
        return {"bond": bond, "fraud": fraud, "verifier": verifier}

    return _build


def _market_leaves(registry, ts):
    leaves = []
    for i in (1, 2, 3, 4):
        item = registry.instrument(i)
        leaves.append(MarketLeaf(
            instrument_id=i, kind=item.kind, underlying=symbol_to_bytes32("BTC"), strike_wad=item.strike_wad,
            expiry=item.expiry, contract_size_wad=WAD, spot_wad=PRICE, forward_wad=PRICE,
            vol_wad=6 * WAD // 10 if item.kind >= 2 else 0, rate_wad=0, mark_wad=0, im_long_wad=0,
            im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    return leaves


def _book(engine, account):
    return {p.instrument_id: p.size_wad for p in engine.account(account).positions}


def _post(engine, oracle, registry, domain, signers, chain, keeper, accounts, lie=None):
    """An epoch root over `accounts` with the engine's own leaves (`lie` rewrites the first
    account's leaf) -> (trees, record, books)."""
    chain.pending_timestamp += 2
    chain.mine(1)
    ts = chain.blocks.head.timestamp
    market = _market_leaves(registry, ts)
    inputs = MarketInputs.from_leaves(load_params("default-v2"), market, ts)
    books = {a.address: _book(engine, a) for a in accounts}
    leaves = epoch_account_leaves(inputs, [a.address for a in accounts],
                                  [engine.account(a).state_nonce for a in accounts], list(books.values()),
                                  [engine.pending_total(a) for a in accounts])
    if lie is not None:
        leaves[0] = lie(leaves[0])
    epoch = oracle.epoch_root(engine)[0] + 1
    trees = EpochTrees.build(engine.address, epoch, leaves, market)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    tx = oracle.post_root(msg.as_args(), sign_multi(msg, domain, signers[:2]), sender=keeper)
    record = EpochRecord(epoch, trees.accounts.root, trees.market.root, trees.market_count, PARAMS_HASH, ts,
                         chain.provider.get_block(tx.block_number).timestamp, tuple(s.address for s in signers[:2]))
    assert oracle.epoch_record_hash(engine, ts) == record.hash()
    return trees, record, books


@pytest.fixture
def books(engine, fund, set_market, trade, accounts, maker):
    """books() -> (victim, maker): accounts[8] long 1 perp at 60k with 10k deposited."""

    def _open():
        fresh = accounts[8]
        fund(fresh, 10_000 * USDC)
        fund(maker, 100_000 * USDC)
        set_market()
        trade(maker, fresh, PERP, -WAD, PRICE)
        return fresh, maker

    return _open


def _funds_add_up(token, bond, paid_out):
    """Bond balance = stakes + pending + forfeited; what was bonded = that + paid to
    challengers + pushed to the insurance fund."""
    assert token.balanceOf(bond) == bond.total_bonded() + bond.forfeited()
    assert bond.total_bonded() + bond.forfeited() + bond.to_insurance() + paid_out == 2 * BOND


def test_rogue_root__challenged_voided_paid__applied_margin_stops_backing_new_risk(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, system, books):
    s = system()
    bond, fraud = s["bond"], s["fraud"]
    victim, maker = books()
    trees, record, book = _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                lie=lambda f: replace(f, initial_margin_wad=f.initial_margin_wad // 20,
                                                      maintenance_margin_wad=f.maintenance_margin_wad // 20))
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=keeper)
    assert engine.health(victim).im_wad == leaf.initial_margin_wad
    # the understated IM lets value out that the isolated bound (6,000 per perp) would keep
    engine.withdraw(1_000 * USDC, sender=victim)
    engine.withdraw.call(3_500 * USDC, sender=victim)

    before = token.balanceOf(liquidator)
    tx = fraud.challenge(*committed(fraud, liquidator, trees, record, victim.address, book[victim.address]),
                         sender=liquidator)
    [log] = tx.decode_logs(fraud.FraudProven)
    assert (log.code, log.account, log.paid) == (1, victim.address, 2 * BOND // 5)   # 20% of both bonds
    assert token.balanceOf(liquidator) - before == 2 * BOND // 5
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    _funds_add_up(token, bond, 2 * BOND // 5)
    # the forfeited 80% goes to the engine's insurance fund, pushed by anyone
    insurance, held = engine.insurance_wad(), token.balanceOf(engine)
    tx = bond.push_forfeited(sender=victim)
    [pushed] = tx.decode_logs(bond.ForfeitedToInsurance)
    assert (pushed.engine, pushed.sender, pushed.amount) == (engine.address, victim.address, 2 * BOND * 4 // 5)
    assert engine.insurance_wad() - insurance == 2 * BOND * 4 // 5 * SCALE
    assert token.balanceOf(engine) - held == 2 * BOND * 4 // 5 and bond.forfeited() == 0
    assert token.allowance(bond, engine) == 0
    _funds_add_up(token, bond, 2 * BOND // 5)
    with ape.reverts("bond: nothing forfeited"):
        bond.push_forfeited(sender=victim)
    # no leaf of the voided epoch applies any more, and the applied one backs no new risk
    with ape.reverts("oracle: epoch voided by a fraud proof"):
        engine.apply_leaf(*(lambda lp: (lp[0].as_args(), lp[1]))(trees.account_proof(maker.address)), sender=keeper)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(3_500 * USDC, sender=victim)
    # the slashed signers no longer count: their next root is refused
    with ape.reverts("oracle: below threshold of bonded signers"):
        _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])


def test_honest_root__every_challenge_reverts__costs_only_gas(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, books):
    s = system()
    bond, fraud = s["bond"], s["fraud"]
    victim, maker = books()
    trees, record, book = _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    n = s["verifier"].n_scenarios()
    for account in (victim, maker):
        for scen in [()] + [[k] for k in range(0, n, 3)]:
            with ape.reverts("fraud: no fraud proven"):
                fraud.challenge(*challenge_arguments(trees, record, account.address, book[account.address],
                                                     scen, scen[0] if scen else 0), sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    assert token.balanceOf(attacker) == 0
    _funds_add_up(token, bond, 0)


def test_griefing__dust_repeat_wrong_epoch_window_forgeries__refused(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, liquidator, system, books):
    s = system()
    bond, fraud = s["bond"], s["fraud"]
    victim, maker = books()
    # dust: an understatement inside the tolerance (1e-9 of the notional) proves nothing
    trees, record, book = _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                lie=lambda f: replace(f, maintenance_margin_wad=f.maintenance_margin_wad - 10**6))
    args = list(challenge_arguments(trees, record, victim.address, book[victim.address]))
    with ape.reverts("fraud: no fraud proven"):
        fraud.challenge(*args, sender=attacker)
    # a forged market leaf (a calmer vol), or a record naming the unbonded third signer
    forged_rogue = _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                         lie=lambda f: replace(f, maintenance_margin_wad=f.maintenance_margin_wad // 20,
                                               initial_margin_wad=f.initial_margin_wad // 20))
    trees2, record2, _ = forged_rogue
    good = list(challenge_arguments(trees2, record2, victim.address, book[victim.address]))
    bad = list(good)
    bad[6] = [replace(MarketLeaf.from_words(m), vol_wad=WAD // 10).as_args() for m in good[6]]
    with ape.reverts("fraud: market leaves not in the market root"):
        fraud.challenge(*bad, sender=attacker)
    other = EpochRecord(*record2.as_args()[:7], (signers[2].address,))
    with ape.reverts("fraud: record does not match the posted epoch"):
        fraud.challenge(*(good[:1] + [other.as_args()] + good[2:]), sender=attacker)
    # the wrong epoch: epoch N's record renumbered is no posted record, and the previous
    # epoch's own record does not hold epoch N's leaf (its hash covers the epoch)
    wrong = EpochRecord(record2.epoch - 1, *record2.as_args()[1:7], record2.signers)
    with ape.reverts("fraud: record does not match the posted epoch"):
        fraud.challenge(*(good[:1] + [wrong.as_args()] + good[2:]), sender=attacker)
    with ape.reverts("fraud: account leaf not in the accounts root"):
        fraud.challenge(*(good[:1] + [record.as_args()] + good[2:]), sender=attacker)
    # a book that is not the leaf's
    with ape.reverts("fraud: book does not match the leaf's positions hash"):
        fraud.challenge(*(good[:5] + [[2 * WAD]] + good[6:]), sender=attacker)
    # after the window: refused, even for a true fraud
    chain.pending_timestamp += WINDOW + 1
    with ape.reverts("fraud: challenge window over"):
        fraud.challenge(*good, sender=attacker)
    assert token.balanceOf(attacker) == 0
    _funds_add_up(token, bond, 0)


def test_repeated_challenge__second_reverts(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, books):
    s = system()
    bond, fraud = s["bond"], s["fraud"]
    victim, maker = books()
    trees, record, book = _post(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                lie=lambda f: replace(f, basis_addon_wad=f.basis_addon_wad + 10**21))
    args = committed(fraud, liquidator, trees, record, victim.address, book[victim.address])
    tx = fraud.challenge(*args, sender=liquidator)
    assert tx.decode_logs(fraud.FraudProven)[0].code == 4
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*args, sender=attacker)
    _funds_add_up(token, bond, 2 * BOND // 5)

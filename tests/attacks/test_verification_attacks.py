"""Attacks on the verification layer, end to end on Anvil (real engine, oracle, verifier, bond,
fraud proofs, token and threshold signatures): forged market multiproofs, witnesses for
another book or root, fraud-proof replays and griefing, bond escapes, and what a voided
epoch still lets through. Each test is named `test_<rule>__<attack>__<expected>` and asserts
the attack fails; the funds identity of the engine (autouse) and of the bond hold after each.
"""

from dataclasses import replace

import ape
import pytest
from conftest import PARAMS_HASH, WAD, committed, committed_market
from engine.conftest import _PLACEHOLDER_LEAF, WITNESS_PARAMS
from support.check_market import check_market

from offchain.chain.eip712 import sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.fraud import (
    EpochRecord,
    challenge_arguments,
    commitment,
    market_challenge_arguments,
    new_salt,
)
from offchain.chain.leaves import MarketLeaf
from offchain.chain.merkle import PositionalTree
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.chain.witness import WitnessError, liquidation_witness
from offchain.risk import load_params

from .conftest import CALL, FUTURE, PERP, PUT, deploy_engine

USDC = 10**6
PRICE = 60_000 * WAD
BOND = 100_000 * USDC
WINDOW, DELAY = 3_600, 7_200
VOID = (1).to_bytes(32, "big")      # a voided epoch's record hash
ZERO = "0x" + "00" * 20
PARAMS = load_params("default-v2")


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, set_market, fund, trade, make_order, witness_for):
    """Session deployments before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def system(project, admin, token, oracle, signers, engine):
    """system() -> (bond, fraud, verifier): SignerBond with signers 0 and 1 bonded, the
    default-v2 verifier under the suite's params hash registered with FraudProofs, both named
    on the oracle. Built in the test body (ape isolation)."""

    def _build():
        bond = project.SignerBond.deploy(token, BOND, WINDOW, DELAY, engine, sender=admin)
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


def as_sender(chain, signer):
    """An ape account sending as a risk signer's key (Anvil impersonation, gas funded): the
    signers are eth-account keys that sign messages; here they also send transactions."""
    chain.set_balance(signer.address, 10**20)
    return ape.accounts.test_accounts.impersonate_account(signer.address)


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


def post_epoch(engine, oracle, registry, domain, signers, chain, keeper, accounts, lie=None, spot=PRICE, by=None,
               counted=None, market=None):
    """An epoch root over `accounts` with the keeper's own leaves (`lie` {account: fn} rewrites
    a leaf; `market` replaces the market leaves), signed by `by` (signers 0 and 1), of which
    `counted` are bonded -> (trees, record, books)."""
    chain.pending_timestamp += 2
    chain.mine(1)
    ts = chain.blocks.head.timestamp
    market = market_leaves(registry, spot) if market is None else market
    inputs = MarketInputs.from_leaves(PARAMS, market, ts)
    books = {a.address: book_of(engine, a) for a in accounts}
    leaves = epoch_account_leaves(inputs, [a.address for a in accounts],
                                  [engine.account(a).state_nonce for a in accounts], list(books.values()),
                                  [engine.pending_total(a) for a in accounts])
    lie = lie or {}
    leaves = [lie[leaf.account](leaf) if leaf.account in lie else leaf for leaf in leaves]
    epoch = oracle.epoch_root(engine)[0] + 1
    trees = EpochTrees.build(engine.address, epoch, leaves, market, registry.instrument_count())
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    by = signers[:2] if by is None else by
    tx = oracle.post_root(msg.as_args(), sign_multi(msg, domain, by), sender=keeper)
    counted = tuple(sorted((s.address for s in (counted or by)), key=lambda a: int(a, 16)))
    record = EpochRecord(epoch, trees.accounts.root, trees.market.root, trees.market_count, PARAMS_HASH, ts,
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
    fraud.challenge(*committed(fraud, liquidator, trees, record, attacker.address, books[attacker.address]), sender=liquidator)
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
    fraud.challenge(*committed(fraud, liquidator, trees, record, victim.address, books[victim.address]), sender=liquidator)
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


# ---------------------------------------------------------------------------------------
# (1) the market multiproof and (2) the witness
# ---------------------------------------------------------------------------------------


@pytest.fixture
def two_leg_victim(engine, fund, set_market, trade, accounts, maker, liquidator):
    """two_leg_victim() -> accounts[9] long 1 perp and 1 future with 12.5k deposited (pending MM
    6k), marks then down 4k each: equity ~4.4k, liquidatable on the applied and the model's MM."""

    def _open():
        victim = accounts[9]
        fund(victim, 12_500 * USDC)
        fund(maker, 500_000 * USDC)
        fund(liquidator, 200_000 * USDC)
        set_market()
        trade(maker, victim, PERP, -WAD, PRICE)
        trade(maker, victim, FUTURE, -WAD, 60_500 * WAD)
        set_market(marks={PERP: 56_000 * WAD, FUTURE: 56_500 * WAD})
        assert engine.health(victim).liquidatable
        return victim

    return _open


def _liquidate_with(engine, victim, witness, liquidator):
    return engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness.encode(), sender=liquidator)


def _mp(w, **over):
    """The witness with its multiproof fields replaced."""
    return replace(w, proof=replace(w.proof, **over))


def test_multiproof__forged_leaves_and_proofs__refused(
        engine, verifier, two_leg_victim, liquidator, witness_for, market_leaf):
    """The positional market tree (each leaf at its instrument id's slot): a leaf not in the
    root (a calmer vol with the real proof), a leaf given twice, the leaves in the other
    order, an order naming no leaf, a proof element more or less, an empty sibling replaced,
    a leaf id past the root's count, no leaves. Every forgery reverts and the book stays."""
    victim = two_leg_victim()
    w = witness_for(victim, extra_ids=(CALL, PUT), raw=True)     # 4 instruments, 4 slots filled
    before = engine.account(victim)
    genuine = check_market(verifier, w)
    assert genuine.maintenance_wad > 0
    leaves, proof, order = list(w.leaves), tuple(w.proof.proof), w.proof.order
    calm = replace(w, leaves=[replace(leaves[0], vol_wad=1, spot_wad=leaves[0].spot_wad - 1), leaves[1]])
    perp_twice = replace(w, leaves=[leaves[0], leaves[0]])
    swapped = _mp(w, order=((order & 0xFF) << 8) | ((order >> 8) & 0xFF))
    for forged, reason in [
        (calm, "ScenarioVerifier: invalid market multiproof"),
        (perp_twice, "multiproof: ids not strictly ascending (an id twice)"),
        (swapped, "multiproof: ids not strictly ascending (an id twice)"),
        (_mp(w, order=(order & ~0xFF) | ((order >> 8) & 0xFF)), "multiproof: ids not strictly ascending (an id twice)"),
        (_mp(w, order=order | 0x07), "multiproof: order names no leaf"),
        (_mp(w, proof=proof + (proof[0],)), "multiproof: proof elements left over"),
        (_mp(w, proof=proof[:-1]), "multiproof: proof too short"),
        # slot 1's sibling is slot 0, empty: shown as a node it gives another root
        (_mp(w, proof=(b"\x07" * 32,) + proof[1:]), "ScenarioVerifier: invalid market multiproof"),
        (replace(w, leaves=[leaves[0], replace(leaves[1], instrument_id=5)]),
         "multiproof: instrument id beyond the root's count"),
        (replace(w, sizes_wad=[], leaves=[]), "multiproof: no leaves"),
    ]:
        with pytest.raises(ape.exceptions.ContractLogicError) as err:
            check_market(verifier, forged)
        assert reason in str(err.value), (reason, str(err.value))
    # through the engine, the leaf given twice is another book before any proof is checked
    with ape.reverts("engine: witness for another book"):
        _liquidate_with(engine, victim, perp_twice, liquidator)
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        _liquidate_with(engine, victim, calm, liquidator)
    assert engine.account(victim) == before
    assert check_market(verifier, w) == genuine


def test_multiproof__leaf_at_another_slot__refused(
        engine, verifier, oracle, registry, fund, set_market, trade, accounts, maker, post_root, market_leaf):
    """Signers put the perpetual's leaf at the future's slot and leave the perp's slot empty:
    the perp leaf proves neither with the future slot's proof nor with its own slot's (empty)
    one, and no witness of a perp book exists (the slot is provable instead: challenge_market)."""
    owner = accounts[9]
    fund(owner, 20_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, owner, PERP, -WAD, PRICE)
    perp = market_leaf(PERP)
    trees = post_root([_PLACEHOLDER_LEAF], market=[replace(perp, instrument_id=FUTURE)])
    assert oracle.market_tree(engine)[2] == registry.instrument_count() == trees.market_count
    units = [symbol_to_bytes32("BTC")]
    for mp in (trees.market.multiproof([FUTURE]), trees.market.multiproof([PERP])):
        with pytest.raises(ape.exceptions.ContractLogicError, match="invalid market multiproof"):
            check_market(verifier, engine.address, [WAD], [perp.as_args()], mp.as_args(), units, [0], 0)
    with pytest.raises(WitnessError, match="no market leaf"):
        liquidation_witness(PARAMS, engine.address, [(PERP, WAD)], trees, oracle.root_timestamp(engine))


def test_witness__another_book_reordered_omitted_duplicated_or_resized__refused(
        engine, two_leg_victim, liquidator, witness_for, market_leaf):
    """The witness must be the stored book: legs swapped, one omitted, one duplicated, a
    size off by 1 wei or a 1-wei book, each refused before the verifier is asked."""
    victim = two_leg_victim()
    w = witness_for(victim, raw=True)
    before = engine.account(victim)
    sizes, leaves = list(w.sizes_wad), list(w.leaves)
    forgeries = [
        replace(w, sizes_wad=sizes[::-1], leaves=leaves[::-1]),
        replace(w, sizes_wad=sizes[:1], leaves=leaves[:1]),
        replace(w, sizes_wad=[sizes[0], sizes[0]], leaves=[leaves[0], leaves[0]]),
        replace(w, sizes_wad=[sizes[0] - 1, sizes[1]]),
        replace(w, sizes_wad=[1, 1]),
        replace(w, sizes_wad=sizes + [WAD], leaves=leaves + [market_leaf(CALL)]),
    ]
    for forged in forgeries:
        with ape.reverts("engine: witness for another book"):
            _liquidate_with(engine, victim, forged, liquidator)
    assert engine.account(victim) == before
    _liquidate_with(engine, victim, w, liquidator)       # the genuine witness goes through


def test_witness__units_duplicated_missing_or_scenario_out_of_range__refused_and_extra_unit_adds_nothing(
        engine, verifier, two_leg_victim, liquidator, witness_for):
    """Units are the caller's list: a unit twice, the book's unit missing, a scenario index
    past the table (unit or joint) revert; a unit the book does not hold adds no margin."""
    victim = two_leg_victim()
    w = witness_for(victim, raw=True)
    n = verifier.n_scenarios()
    eth = symbol_to_bytes32("ETH")
    for forged, reason in [
        (replace(w, units=w.units * 2, scenarios=w.scenarios * 2), "ScenarioVerifier: duplicate unit"),
        (replace(w, units=[eth], scenarios=[0]), "ScenarioVerifier: leaf underlying not among units"),
        (replace(w, scenarios=[n]), None),
        (replace(w, scenarios=[2**64]), None),
        (replace(w, joint_scenario=n), None),
    ]:
        with ape.reverts(reason) if reason else pytest.raises(ape.exceptions.ContractLogicError):
            _liquidate_with(engine, victim, forged, liquidator)
    wider = replace(w, units=list(w.units) + [eth], scenarios=list(w.scenarios) + [0])
    assert check_market(verifier, wider).maintenance_wad <= check_market(verifier, w).maintenance_wad


def test_witness__root_of_another_engine_or_a_stale_root__refused(
        project, admin, token, oracle, registry, engine, two_leg_victim, liquidator, witness_for, post_root):
    """Market leaves proven against another engine's root (the leaf hash covers the engine),
    a witness naming another engine, and a witness built on a root that is no longer current
    are refused."""
    victim = two_leg_victim()
    other = deploy_engine(project, admin, token, oracle, registry)
    w = witness_for(victim, raw=True)
    # the same market posted for the other engine: its leaves hash with the other address
    with ape.reverts("engine: witness for another book"):
        _liquidate_with(engine, victim, replace(w, engine=other.address), liquidator)
    post_root([_PLACEHOLDER_LEAF], eng=other, market=list(w.leaves))
    other_root = replace(w, engine=other.address)
    with pytest.raises(ape.exceptions.ContractLogicError):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), other_root.encode(), sender=liquidator)
    # a newer root for this engine whose market moved (one forward 1 higher) makes w's
    # leaves stale; over the same leaves, w would still be exactly the current market
    newer = [replace(m, forward_wad=m.forward_wad + WAD) for m in w.leaves]
    post_root([_PLACEHOLDER_LEAF], market=newer)
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        _liquidate_with(engine, victim, w, liquidator)


# ---------------------------------------------------------------------------------------
# (3) fraud proofs and bonds, (4) funds after every slash
# ---------------------------------------------------------------------------------------


@pytest.fixture
def traded(engine, fund, set_market, trade, accounts, maker):
    """traded() -> (victim, maker): accounts[8] long 1 perp at 60k with 10k deposited."""

    def _open():
        victim = accounts[8]
        fund(victim, 10_000 * USDC)
        fund(maker, 100_000 * USDC)
        set_market()
        trade(maker, victim, PERP, -WAD, PRICE)
        return victim, maker

    return _open


def test_fraud__replayed_challenge_or_second_false_leaf_of_voided_epoch__refused(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """A root lying about two accounts is proven once: the replay of the proven challenge and
    the challenge of the second false leaf both revert (the epoch is void, the bonds are
    gone), so nobody is paid twice; the engine's insurance fund is untouched."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate(), maker.address: understate()})
    insurance = engine.insurance_wad()
    args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    fraud.challenge(*args, sender=liquidator)
    for again in (args, committed(fraud, attacker, trees, record, maker.address, books[maker.address])):
        with ape.reverts("fraud: epoch already void"):
            fraud.challenge(*again, sender=attacker)
    assert token.balanceOf(attacker) == 0 and token.balanceOf(liquidator) == 2 * BOND // 5
    assert engine.insurance_wad() == insurance
    bond_funds_add_up(token, bond)


def test_fraud__understatement_just_inside_tolerance__not_proven_just_outside__proven(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """Rounding dust is no fraud: an MM lowered by half the tolerance (1e-9 of the gross
    notional + 1e-9 per leg) reverts; lowered by three tolerances it is proven (code 1)."""
    bond, fraud, _ = system()
    victim, maker = traded()
    tol = 60_000 * WAD // 10**9 + 10**9                        # 1 perp at a 60k forward
    for cut, proven in ((tol // 2, False), (3 * tol, True)):
        lie = {victim.address: lambda f, c=cut: replace(f, maintenance_margin_wad=f.maintenance_margin_wad - c)}
        trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper,
                                          [victim, maker], lie=lie)
        args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
        if not proven:
            with ape.reverts("fraud: no fraud proven"):
                fraud.challenge(*args, sender=attacker)
            assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
        else:
            tx = fraud.challenge(*args, sender=attacker)
            [log] = tx.decode_logs(fraud.FraudProven)
            assert log.code == 1 and log.tolerance_wad == tol
    bond_funds_add_up(token, bond)


def test_fraud__leaf_of_another_engine_or_epoch__refused(
        project, admin, engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """The record and the leaf hash name the engine and the epoch: the same proof against
    another engine's address, or a false leaf of one epoch against the next epoch's record,
    reverts."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    trees2, record2, _ = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    other = deploy_engine(project, admin, token, oracle, registry)
    args = list(committed(fraud, attacker, trees, record, victim.address, books[victim.address]))
    with ape.reverts("fraud: record does not match the posted epoch"):
        fraud.challenge(*([other.address] + args[1:]), sender=attacker)
    with ape.reverts("fraud: account leaf not in the accounts root"):
        fraud.challenge(*(args[:1] + [record2.as_args()] + args[2:]), sender=attacker)
    fraud.challenge(*args, sender=attacker)                   # the true proof still goes through
    bond_funds_add_up(token, bond)


def _same_block(chain, *txs) -> list[dict]:
    """Send raw transactions {sender, data, tip} to FraudProofs with automine off, mine them in
    one block (ordered by tip, as Anvil orders) -> their receipts."""
    w3 = chain.provider.web3
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        hashes = [w3.eth.send_transaction({"from": t["sender"].address, "to": t["to"], "data": t["data"],
                                           "gas": 3_000_000, "maxPriorityFeePerGas": t["tip"],
                                           "maxFeePerGas": 1_000 * 10**9}) for t in txs]
        chain.mine(1)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    return [w3.eth.get_transaction_receipt(h) for h in hashes]


def _revert_reason(chain, receipt) -> str:
    """The revert reason of a mined transaction, from Anvil's call tracer."""
    trace = chain.provider.web3.provider.make_request(
        "debug_traceTransaction", [receipt["transactionHash"].to_0x_hex(), {"tracer": "callTracer"}])["result"]
    return trace.get("revertReason", trace.get("error", ""))


def test_fraud__challenge_copied_from_mempool_and_front_run__copier_not_paid(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """V2. The watcher committed a block ago and reveals. A copier reading the reveal from the
    mempool (its salt included) sends the same arguments with a higher fee, first as they are
    (no commitment of its own), then after committing with the copied salt in the same block
    as the reveal, ahead of it: both copies revert, the watcher's reveal proves the fraud and
    the watcher is paid its 20%."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    reveal = fraud.challenge.encode_input(*args)
    copy_commit = fraud.commit.encode_input(commitment(attacker.address, engine.address, record.signed_at,
                                                       victim.address, args[-1]))
    gwei = 10**9
    plain, commit, copy, honest = _same_block(
        chain, dict(sender=attacker, to=fraud.address, data=reveal, tip=60 * gwei),
        dict(sender=attacker, to=fraud.address, data=copy_commit, tip=50 * gwei),
        dict(sender=attacker, to=fraud.address, data=reveal, tip=40 * gwei),
        dict(sender=liquidator, to=fraud.address, data=reveal, tip=1 * gwei))
    assert plain["blockNumber"] == commit["blockNumber"] == copy["blockNumber"] == honest["blockNumber"]
    assert [r["status"] for r in (plain, commit, copy, honest)] == [0, 1, 0, 1]
    assert _revert_reason(chain, plain) == "fraud: no commitment by the sender to this epoch and account"
    assert _revert_reason(chain, copy) == "fraud: commitment too young (reveal from the block after the commit)"
    [log] = fraud.FraudProven.from_receipt(chain.get_receipt(honest["transactionHash"].to_0x_hex()))
    assert (log.challenger, log.paid) == (liquidator.address, 2 * BOND // 5)
    assert token.balanceOf(attacker) == 0 and token.balanceOf(liquidator) == 2 * BOND // 5
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    # the copier's commitment, now mature, is worth nothing: the epoch is void
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*args, sender=attacker)
    bond_funds_add_up(token, bond)


def test_fraud__reveal_in_the_same_block_as_its_commit__too_young(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """A commitment proves nothing before its block is over: the commit and the reveal of the
    same challenger mined in one block (commit first) revert the reveal, leaving the epoch
    and bonds alone; the same reveal a block later is proven."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    salt = new_salt()
    args = challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt)
    h = commitment(attacker.address, engine.address, record.signed_at, victim.address, salt)
    assert fraud.commitment_of(attacker, engine, record.signed_at, victim, salt) == h
    commit, reveal = _same_block(chain, dict(sender=attacker, to=fraud.address, data=fraud.commit.encode_input(h),
                                             tip=10**9),
                                 dict(sender=attacker, to=fraud.address, data=fraud.challenge.encode_input(*args),
                                      tip=10**9))
    assert commit["blockNumber"] == reveal["blockNumber"] and (commit["status"], reveal["status"]) == (1, 0)
    assert _revert_reason(chain, reveal) == "fraud: commitment too young (reveal from the block after the commit)"
    assert fraud.commitments(attacker, h) == commit["blockNumber"]
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash() and bond.stake(signers[0].address) == BOND
    tx = fraud.challenge(*args, sender=attacker)
    assert tx.block_number == commit["blockNumber"] + 1
    assert tx.decode_logs(fraud.FraudProven)[0].paid == 2 * BOND // 5
    bond_funds_add_up(token, bond)


def test_fraud__reveal_without_commit__refused_state_unchanged(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """A true proof with no commitment (any salt) reverts with the commit-reveal reason, and
    only that reason: everything before it holds, so an eth_call tells a challenger its
    proof is good before it commits. Nothing moves."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    for salt in (bytes(32), new_salt()):
        with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
            fraud.challenge(*challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt),
                            sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    assert bond.stake(signers[0].address) == bond.stake(signers[1].address) == BOND and token.balanceOf(attacker) == 0
    bond_funds_add_up(token, bond)


def test_fraud__same_commitment_revealed_twice__second_refused_paid_once(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """A proven reveal spends its commitment (the slot is cleared) and voids the epoch it is
    bound to: the same reveal again, or another false leaf of that epoch under a fresh
    commitment, pays nothing."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate(), maker.address: understate()})
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    h = commitment(attacker.address, engine.address, record.signed_at, victim.address, args[-1])
    assert fraud.commitments(attacker, h) != 0
    fraud.challenge(*args, sender=attacker)
    assert fraud.commitments(attacker, h) == 0
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*args, sender=attacker)
    other = committed(fraud, attacker, trees, record, maker.address, books[maker.address])
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*other, sender=attacker)
    assert token.balanceOf(attacker) == 2 * BOND // 5
    bond_funds_add_up(token, bond)


def test_fraud__commitment_made_by_another_address__pays_nobody_else(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """A commitment counts only for the address that sent it and that its hash names: the
    attacker revealing with the watcher's salt (the watcher's commitment), or after storing
    the watcher's own hash under its address (copied from the mempool), is refused; so is the
    watcher revealing on the hash the attacker stored. The watcher's own commitment pays it."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    args = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    watchers = commitment(liquidator.address, engine.address, record.signed_at, victim.address, args[-1])
    with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
        fraud.challenge(*args, sender=attacker)
    fraud.commit(watchers, sender=attacker)                   # the watcher's hash, under the attacker
    assert fraud.commitments(attacker, watchers) != 0
    with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
        fraud.challenge(*args, sender=attacker)
    # the attacker's hash stored first does not keep the watcher from committing it, nor pays the watcher
    salt = new_salt()
    mine = commitment(liquidator.address, engine.address, record.signed_at, victim.address, salt)
    fraud.commit(mine, sender=attacker)
    with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
        fraud.challenge(*challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt),
                        sender=liquidator)
    fraud.commit(mine, sender=liquidator)
    tx = fraud.challenge(*challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt),
                         sender=liquidator)
    assert tx.decode_logs(fraud.FraudProven)[0].challenger == liquidator.address
    assert token.balanceOf(attacker) == 0 and token.balanceOf(liquidator) == 2 * BOND // 5
    bond_funds_add_up(token, bond)


def test_fraud__committed_in_the_window_revealed_after_it__refused(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """The commitment does not extend the window: committed a second before the window
    closes, revealed a second after, the true proof reverts and the bonds stay."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    chain.pending_timestamp = record.posted_at + WINDOW - 1
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    chain.pending_timestamp = record.posted_at + WINDOW + 1
    with ape.reverts("fraud: challenge window over"):
        fraud.challenge(*args, sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash() and bond.stake(signers[0].address) == BOND
    bond_funds_add_up(token, bond)


def test_fraud__commitment_for_an_epoch_voided_by_another__reveal_refused_costs_gas_only(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """Two challengers commit to the same false epoch (the attacker first); the watcher
    reveals first and is paid: the first valid reveal wins, not the earliest commitment. The
    attacker's reveal then meets a void epoch and reverts; its commitment cost it gas only."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate(), maker.address: understate()})
    early = committed(fraud, attacker, trees, record, maker.address, books[maker.address])
    late = committed(fraud, liquidator, trees, record, victim.address, books[victim.address])
    fraud.challenge(*late, sender=liquidator)
    with ape.reverts("fraud: epoch already void"):
        fraud.challenge(*early, sender=attacker)
    assert token.balanceOf(attacker) == 0 and token.balanceOf(liquidator) == 2 * BOND // 5
    bond_funds_add_up(token, bond)


def test_fraud__commitment_for_another_epoch_or_engine__does_not_authorise_the_reveal(
        project, admin, engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """The hash names the engine, the epoch's signed_at and the account: a commitment to the
    previous epoch, to another engine or to another account of the same epoch, all with the
    reveal's salt, authorise nothing."""
    bond, fraud, _ = system()
    victim, maker = traded()
    before = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    other = deploy_engine(project, admin, token, oracle, registry)
    salt = new_salt()
    for eng, signed_at, account in ((engine.address, before[1].signed_at, victim.address),
                                    (other.address, record.signed_at, victim.address),
                                    (engine.address, record.signed_at, maker.address)):
        fraud.commit(commitment(attacker.address, eng, signed_at, account, salt), sender=attacker)
    args = challenge_arguments(trees, record, victim.address, books[victim.address], salt=salt)
    with ape.reverts("fraud: no commitment by the sender to this epoch and account"):
        fraud.challenge(*args, sender=attacker)
    assert oracle.epoch_record_hash(engine, record.signed_at) == record.hash()
    bond_funds_add_up(token, bond)


def test_commit__zero_repeated_or_with_value__refused(attacker, system):
    """A commitment is a hash and nothing else: zero, the same hash twice from one address
    (it would restart its maturity) and any ether sent with it are refused."""
    _, fraud, _ = system()
    h = new_salt()
    with ape.reverts("fraud: zero commitment"):
        fraud.commit(bytes(32), sender=attacker)
    tx = fraud.commit(h, sender=attacker)
    assert fraud.commitments(attacker, h) == tx.block_number
    [log] = tx.decode_logs(fraud.ChallengeCommitted)
    assert (log.committer, log.commitment) == (attacker.address, h)
    with ape.reverts("fraud: commitment already made"):
        fraud.commit(h, sender=attacker)
    with pytest.raises(ape.exceptions.ContractLogicError):
        fraud.commit(new_salt(), sender=attacker, value=1)
    assert fraud.commitments(attacker, h) == tx.block_number


def test_slash__signers_challenge_their_own_false_root__coalition_loses_eighty_percent(
        engine, oracle, registry, token, domain, signers, chain, keeper, system, traded):
    """The signers know first and challenge themselves: the challenger signer gets 20% of
    both bonds back; together they lose 80% of what they staked, for good."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    before = [token.balanceOf(s.address) for s in signers[:2]]
    s0 = as_sender(chain, signers[0])
    fraud.challenge(*committed(fraud, s0, trees, record, victim.address, books[victim.address]), sender=s0)
    gained = sum(token.balanceOf(s.address) for s in signers[:2]) - sum(before)
    assert gained == 2 * BOND // 5 and bond.forfeited() == 2 * BOND - gained
    assert not bond.is_bonded(signers[0].address) and not bond.is_bonded(signers[1].address)
    for s in signers[:2]:
        with ape.reverts("bond: nothing pending"):
            bond.withdraw(sender=as_sender(chain, s))
    bond_funds_add_up(token, bond)
    # the forfeited 80% goes to the engine's insurance fund (the signers pushing it gain nothing)
    insurance = engine.insurance_wad()
    bond.push_forfeited(sender=as_sender(chain, signers[0]))
    assert engine.insurance_wad() - insurance == (2 * BOND - gained) * 10**12
    assert sum(token.balanceOf(s.address) for s in signers[:2]) - sum(before) == gained
    bond_funds_add_up(token, bond)


def test_bond__unbonded_signer__never_counted_nor_named_in_the_record(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """Signer 2 has no bond: with one bonded signer it cannot reach the threshold, signing
    beside both bonded ones it is not in the record, and a record naming it is refused."""
    bond, fraud, _ = system()
    victim, maker = traded()
    with ape.reverts("oracle: below threshold of bonded signers"):
        post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                   by=[signers[0], signers[2]])
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()}, by=signers[:3], counted=signers[:2])
    assert set(record.signers) == {s.address for s in signers[:2]}   # post_epoch checked the hash
    named = replace(record, signers=tuple(sorted((s.address for s in signers[:3]), key=lambda a: int(a, 16))))
    args = list(committed(fraud, attacker, trees, record, victim.address, books[victim.address]))
    with ape.reverts("fraud: record does not match the posted epoch"):
        fraud.challenge(*(args[:1] + [named.as_args()] + args[2:]), sender=attacker)
    tx = fraud.challenge(*args, sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].paid == 2 * BOND // 5
    bond_funds_add_up(token, bond)


def test_bond__signer_withdraws_inside_the_window__pending_still_slashed(
        engine, oracle, registry, token, admin, domain, signers, chain, keeper, attacker, system, traded):
    """Signer 0 requests its whole stake right after the false root; signer 1 had asked for a
    surplus before signing and takes it once due, inside the window. The request stops
    counting at once but unlocks only after the window: the challenge still takes signer
    0's pending stake and signer 1's counted one. A new request restarts the clock."""
    bond, fraud, _ = system()
    victim, maker = traded()
    rebond(token, bond, admin, signers[1])                    # signer 1: 2 x BOND
    s0, s1 = as_sender(chain, signers[0]), as_sender(chain, signers[1])
    bond.request_withdrawal(BOND, sender=s1)                  # surplus; still counts with BOND
    chain.pending_timestamp += DELAY - WINDOW // 2
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    bond.request_withdrawal(BOND, sender=s0)
    with ape.reverts("bond: withdrawal delay not over"):
        bond.withdraw(sender=s0)
    chain.pending_timestamp += WINDOW // 2 + 1
    bond.withdraw(sender=s1)                                  # the surplus, not what counted
    chain.pending_timestamp += WINDOW // 2 - 10
    tx = fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, books[victim.address]), sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].paid == 2 * BOND // 5
    assert bond.stake(signers[0].address) == bond.pending(signers[0].address) == bond.stake(signers[1].address) == 0
    with ape.reverts("bond: nothing pending"):
        bond.withdraw(sender=s0)
    bond_funds_add_up(token, bond)


def test_slash__same_signers_two_false_roots__second_proof_voids_but_pays_nothing(
        engine, oracle, registry, token, domain, signers, chain, keeper, liquidator, attacker, system, traded):
    """Slashing twice: the newer false root is proven first and takes both bonds; the older
    one is still voided by its proof, paying nothing (there is nothing left to take), and
    the bond's funds add up after each."""
    bond, fraud, _ = system()
    victim, maker = traded()
    lie = {victim.address: understate()}
    old = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker], lie=lie)
    new = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker], lie=lie)
    paid = []
    for (trees, record, books), who in ((new, liquidator), (old, attacker)):
        tx = fraud.challenge(*committed(fraud, who, trees, record, victim.address, books[victim.address]), sender=who)
        paid.append(tx.decode_logs(fraud.FraudProven)[0].paid)
        assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
        bond_funds_add_up(token, bond)
    assert paid == [2 * BOND // 5, 0] and token.balanceOf(attacker) == 0


def test_bond__griefer_bonds_dust_for_a_signer__cannot_delay_or_block_its_withdrawal(
        token, attacker, signers, system, chain):
    """Anyone may fund a signer's stake, nobody but the signer moves it: dust bonded by a
    griefer after the request neither restarts the clock nor blocks the payout."""
    bond, _, _ = system()
    s = as_sender(chain, signers[0])
    bond.request_withdrawal(BOND, sender=s)
    unlock = bond.unlock_at(s)
    token.mint(attacker, 1, sender=attacker)
    token.approve(bond, 1, sender=attacker)
    bond.bond(s.address, 1, sender=attacker)
    with ape.reverts("bond: amount above stake"):
        bond.request_withdrawal(2, sender=s)
    assert bond.unlock_at(s) == unlock and bond.stake(s) == 1
    chain.pending_timestamp = unlock
    before = token.balanceOf(s)
    bond.withdraw(sender=s)
    assert token.balanceOf(s) - before == BOND
    bond_funds_add_up(token, bond)


def test_bond__reentrant_token__payout_and_withdrawal_reentry_refused(
        project, admin, engine, oracle, registry, domain, signers, chain, keeper, attacker, traded):
    """On a token that calls back mid-transfer (the bond's insurance fund an engine on it): the
    slash payout re-entering FraudProofs hits its lock, so the token refuses the payout; the
    proof stands (epoch void, bonds slashed) and the refused share is forfeited (finding V6:
    no payout can undo a proof). A withdrawal re-entering SignerBond (a second withdrawal)
    reverts as a whole and leaves the stake as it was; unarmed, it goes through."""
    hook = project.ReentrantToken.deploy("Hook USD", "hUSD", 6, sender=admin)
    bond = project.SignerBond.deploy(hook, BOND, WINDOW, DELAY, deploy_engine(project, admin, hook, oracle, registry),
                                     sender=admin)
    generator, rows = verifier_config(PARAMS)
    verifier = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
    fraud = project.FraudProofs.deploy(oracle, bond, sender=admin)
    fraud.register_verifier(verifier, sender=admin)
    bond.set_slasher(fraud, sender=admin)
    oracle.set_fraud_contracts(bond, fraud, sender=admin)
    for s in signers[:3]:
        rebond(hook, bond, admin, s)
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate(), maker.address: understate()})
    args = committed(fraud, attacker, trees, record, victim.address, books[victim.address])
    # any re-entry of FraudProofs hits its lock (unlocked, the inner call would fail with
    # "fraud: only the deployer registers verifiers"); the mock's payload is short
    hook.arm(fraud, fraud.register_verifier.encode_input(verifier), sender=attacker)
    tx = fraud.challenge(*args, sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].paid == 0 and not tx.decode_logs(hook.Reentered)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID and bond.stake(signers[0].address) == 0
    assert bond.forfeited() == 2 * BOND and hook.balanceOf(attacker) == 0
    hook.arm(bond, bond.withdraw.encode_input(), sender=attacker)
    s2 = as_sender(chain, signers[2])
    bond.request_withdrawal(BOND, sender=s2)
    chain.pending_timestamp += DELAY
    with pytest.raises(ape.exceptions.ContractLogicError) as err:
        bond.withdraw(sender=s2)
    assert err.value.revert_message in (None, "", "Transaction failed.")
    assert bond.pending(signers[2].address) == BOND
    hook.arm(ZERO, b"", sender=attacker)
    bond.withdraw(sender=s2)
    bond_funds_add_up(hook, bond)


# ---------------------------------------------------------------------------------------
# (5) the void: old and voided leaves, and liquidations after a void
# ---------------------------------------------------------------------------------------


def test_void__voided_or_older_leaf__never_applies_and_withdrawal_held_to_isolated_bound(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """After the current epoch is voided: its leaves (apply, withdraw_with_leaf) revert, a
    leaf of the epoch before it does not verify against any root, and the book that applied
    the false leaf withdraws only what the isolated bound (6k per perp) leaves."""
    bond, fraud, _ = system()
    victim, maker = traded()
    old_trees, _, _ = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                 lie={victim.address: understate(2)})
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, books[victim.address]), sender=attacker)
    maker_leaf, maker_proof = trees.account_proof(maker.address)
    with ape.reverts("oracle: epoch voided by a fraud proof"):
        engine.apply_leaf(maker_leaf.as_args(), maker_proof, sender=maker)
    with ape.reverts("oracle: epoch voided by a fraud proof"):
        engine.withdraw_with_leaf(1, leaf.as_args(), proof, sender=victim)
    old_leaf, old_proof = old_trees.account_proof(victim.address)
    with ape.reverts("oracle: epoch voided by a fraud proof"):
        engine.apply_leaf(old_leaf.as_args(), old_proof, sender=victim)
    # equity ~9.9k: the understated IM would free ~9.5k, the isolated bound 3.9k
    equity = engine.health(victim).equity_wad
    free = (equity - 6_000 * WAD) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1, sender=victim)
    engine.withdraw(free, sender=victim)
    bond_funds_add_up(token, bond)


def test_void__current_root_voided__liquidations_wait_for_the_next_root_then_resume(
        engine, oracle, registry, token, admin, domain, signers, chain, keeper, attacker, liquidator, system,
        two_leg_victim):
    """Liveness, by design (fails closed): a voided current root takes its market root with
    it, so no witness verifies and no book can be liquidated until a new root; the slashed
    signers no longer count, so that root needs bonded signers (here signer 2 and a
    re-bonded signer 0). Then the same book is liquidated at once."""
    bond, fraud, _ = system()
    victim = two_leg_victim()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim],
                                      lie={victim.address: understate()}, spot=56_000 * WAD)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, [(i, q) for i, q in books[victim.address].items()],
                            trees, record.signed_at)
    fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, books[victim.address]), sender=attacker)
    assert oracle.root_timestamp(engine) == 0
    with ape.reverts("ScenarioVerifier: no current root for engine"):
        _liquidate_with(engine, victim, w, liquidator)
    with ape.reverts("oracle: below threshold of bonded signers"):
        post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim])
    rebond(token, bond, admin, signers[2])
    rebond(token, bond, admin, signers[0])
    by = [signers[0], signers[2]]
    # the new root's leaves carry the oracle's marks, as honest signers' do (else no witness counts)
    marked = [replace(m, mark_wad=oracle.marks([m.instrument_id])[0][0]) for m in market_leaves(registry, 56_000 * WAD)]
    trees2, record2, books2 = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim],
                                         by=by, market=marked)
    w2 = liquidation_witness(WITNESS_PARAMS, engine.address, [(i, q) for i, q in books2[victim.address].items()],
                             trees2, record2.signed_at)
    nonce = engine.state_nonce(victim)
    _liquidate_with(engine, victim, w2, liquidator)
    assert engine.state_nonce(victim) == nonce + 1
    bond_funds_add_up(token, bond)


def test_fraud__live_instrument_left_out_of_market_root__empty_slot_proven_and_epoch_voided(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """(V4) The signers leave the perpetual out of the market root: the keeper's own leaf
    function then margins a perp book at zero (positions without a market leaf carry none,
    as expired ones do), the leaf applies and the book withdraws all but its loss buffer. The
    root commits to the registry's instrument count, so the perp has a slot, and that slot
    proves empty while the registry lists the perp live: the epoch is voided, the signers'
    bonds slashed, and the book's voided basis backs no further withdrawal."""
    bond, fraud, _ = system()
    victim, maker = traded()
    market = [m for m in market_leaves(registry) if m.instrument_id != PERP]
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      market=market)
    leaf, proof = trees.account_proof(victim.address)
    assert leaf.initial_margin_wad == leaf.maintenance_margin_wad == 0
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    engine.withdraw(9_000 * USDC, sender=victim)             # 1 perp held on ~900 of equity
    # the account leaf's own challenge has no perp leaf to re-price with ...
    with ape.reverts("fraud: market leaves not in the market root"):
        fraud.challenge(engine.address, record.as_args(), leaf.as_args(), proof, [PERP], [WAD],
                        [market_leaves(registry)[0].as_args()], trees.market.multiproof([PERP]).as_args(), [], 0,
                        bytes(32), sender=attacker)
    # ... the market root itself is provable: slot 1 is empty, the registry lists a perpetual
    assert trees.market_proof(PERP)[0] is None
    before = token.balanceOf(attacker)
    tx = fraud.challenge_market(*committed_market(fraud, attacker, trees, record, PERP), sender=attacker)
    (ev,) = tx.decode_logs(fraud.FraudProven)
    assert (ev.code, ev.scenarios_packed, bytes(ev.leaf_hash)) == (6, PERP, bytes(32))
    assert token.balanceOf(attacker) - before == ev.paid == 2 * BOND // 5
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    assert oracle.market_tree(engine)[1] == oracle.root_timestamp(engine) == 0
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(100 * USDC, sender=victim)
    bond_funds_add_up(token, bond)


def test_fraud__market_slot_with_false_terms_or_another_id__proven(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system):
    """The same omission in disguise: the perp's slot holds a leaf whose terms say it is a
    future that expired at t=1 (margined at zero as expired), the future's leaf, or a leaf on
    another underlying; the call's slot a leaf with another strike. Each slot is not what the
    registry makes it: proven (code 6)."""
    bond, fraud, _ = system()
    true = market_leaves(registry)
    for slot, shown in ((PERP, replace(true[0], kind=0, expiry=1)),
                        (PERP, true[1]),
                        (PERP, replace(true[0], underlying=symbol_to_bytes32("ETH"))),
                        (CALL, replace(true[2], strike_wad=true[2].strike_wad + 1))):
        with chain.isolate():
            epoch = oracle.epoch_root(engine)[0] + 1
            # the signers' tree, hand-built (the keeper's EpochTrees puts each leaf at its own id)
            hashes = {m.instrument_id: m.leaf_hash(engine.address, epoch) for m in true}
            hashes[slot] = shown.leaf_hash(engine.address, epoch)
            forged = PositionalTree(hashes, registry.instrument_count())
            trees, record = _post_market_tree(engine, oracle, domain, signers, chain, keeper, epoch, forged)
            tx = fraud.challenge_market(*committed_market(fraud, attacker, trees, record, slot, shown,
                                                          forged.proof(slot)), sender=attacker)
            assert tx.decode_logs(fraud.FraudProven)[0].code == 6
            assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
            bond_funds_add_up(token, bond)


def _post_market_tree(engine, oracle, domain, signers, chain, keeper, epoch, market_tree):
    """Post `epoch` with a placeholder accounts root and the given market tree -> (trees, record)."""
    chain.pending_timestamp += 2
    chain.mine(1)
    ts = chain.blocks.head.timestamp
    built = EpochTrees.build(engine.address, epoch, [_PLACEHOLDER_LEAF], [], market_tree.count)
    built.market = market_tree
    msg = built.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    tx = oracle.post_root(msg.as_args(), sign_multi(msg, domain, signers[:2]), sender=keeper)
    record = EpochRecord(epoch, built.accounts.root, market_tree.root, market_tree.count, PARAMS_HASH, ts,
                         chain.provider.get_block(tx.block_number).timestamp,
                         tuple(sorted((s.address for s in signers[:2]), key=lambda a: int(a, 16))))
    assert oracle.epoch_record_hash(engine, ts) == record.hash()
    return built, record


def test_fraud__market_slot_as_the_registry_makes_it__challenge_refused(
        engine, oracle, registry, admin, token, domain, signers, chain, keeper, attacker, system, traded):
    """An honest root: every live instrument's slot holds its leaf with the registry's terms,
    the slot of an instrument expired at the root is empty. No slot proves anything; a slot
    shown empty where a leaf is, a slot past the count or slot 0 is refused."""
    bond, fraud, _ = system()
    victim, maker = traded()
    # a future expiring in 60 s, then the root 120 s later: its slot stays empty
    expiry = chain.pending_timestamp + 60
    registry.list_instrument(symbol_to_bytes32("BTC"), 0, 0, expiry, sender=admin)
    chain.pending_timestamp += 120
    trees, record, _ = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker])
    n = registry.instrument_count()
    assert record.market_count == n == 5 and trees.market_proof(5)[0] is None
    for iid in range(1, n + 1):
        with ape.reverts("fraud: the slot holds what the registry says"):
            fraud.challenge_market(*market_challenge_arguments(trees, record, iid), sender=attacker)
    leaf, proof = trees.market_proof(PERP)
    with ape.reverts("fraud: slot not in the market root"):
        fraud.challenge_market(*market_challenge_arguments(trees, record, PERP, None, proof), sender=attacker)
    for iid in (0, n + 1):
        with ape.reverts("fraud: instrument id outside the root's count"):
            fraud.challenge_market(*market_challenge_arguments(trees, record, iid, None, proof), sender=attacker)
    # a leaf for the expired future in its slot would be a leaf the registry does not make
    extra = replace(market_leaves(registry)[1], instrument_id=5, expiry=expiry)
    trees2, record2, _ = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                    market=market_leaves(registry) + [extra])
    tx = fraud.challenge_market(*committed_market(fraud, attacker, trees2, record2, 5), sender=attacker)
    assert tx.decode_logs(fraud.FraudProven)[0].code == 6
    bond_funds_add_up(token, bond)


def test_fraud__true_fraud_proven_after_the_window__refused_and_bond_leaves_after_its_delay(
        engine, oracle, registry, token, domain, signers, chain, keeper, attacker, system, traded):
    """The window is the watchers' deadline: a true proof one second late reverts and the
    signer's bond, requested right after the root, is paid out once its delay (longer than
    the window) has passed. Bonds answer only for roots challenged in time."""
    bond, fraud, _ = system()
    victim, maker = traded()
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [victim, maker],
                                      lie={victim.address: understate()})
    s0 = as_sender(chain, signers[0])
    bond.request_withdrawal(BOND, sender=s0)
    chain.pending_timestamp = record.posted_at + WINDOW + 1
    with ape.reverts("fraud: challenge window over"):
        fraud.challenge(*committed(fraud, attacker, trees, record, victim.address, books[victim.address]), sender=attacker)
    chain.pending_timestamp = bond.unlock_at(signers[0].address)
    before = token.balanceOf(signers[0].address)
    bond.withdraw(sender=s0)
    assert token.balanceOf(signers[0].address) - before == BOND
    bond_funds_add_up(token, bond)

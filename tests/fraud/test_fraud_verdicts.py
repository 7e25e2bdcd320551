"""FraudProofs verdicts on titanoboa (fast): a real RiskOracle with a threshold-signed root,
the SignerBond, the default-v2 ScenarioVerifier, and books on two underlyings built by the
engine's own leaf code (offchain/chain/epoch_leaves.py). Every scenario challenge against an
honest root reverts; each kind of lie (MM, IM, worst loss, named scenario, add-on, scenario
index) is proven with its code, voids the epoch and pays the bonds. The slot convention of
`worst_scenarios` (units by bytes32 symbol, joint in slot 15) is what the contract re-prices,
also for a book holding only the second underlying."""

from __future__ import annotations

from dataclasses import replace

import boa
import pytest
from eth_account import Account
from eth_utils import keccak
from support.boa_contracts import deploy
from support.boa_engine import load_engine

from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.fraud import EpochRecord, challenge_arguments, commitment, new_salt
from offchain.chain.fraud_model import candidates, predict
from offchain.chain.leaves import MarketLeaf, pack_scenarios, unpack_scenarios
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import params_hash_bytes, verifier_config
from offchain.risk import load_params
from offchain.risk.pricing import CALL, PERPETUAL, PUT

WAD = 10**18
VOID = (1).to_bytes(32, "big")      # a voided epoch's record hash
USDC = 10**6
BOND = 50_000 * USDC
WINDOW, DELAY = 3_600, 7_200
SIGNERS = sorted((Account.from_key(keccak(text=f"netmargin fraud signer {i}")) for i in range(3)),
                 key=lambda a: int(a.address, 16))
ENGINE = "0x" + "e2" * 20
A, B, C = ("0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20)
BOOKS = {
    A: {1: 2 * WAD, 2: -5 * WAD, 3: 10 * WAD, 4: -20 * WAD},   # BTC and ETH
    B: {1: -2 * WAD, 2: 5 * WAD, 3: -10 * WAD, 4: 20 * WAD},
    C: {3: 4 * WAD, 4: -30 * WAD},                              # ETH only: slot 0 is ETH
}


@pytest.fixture(scope="module")
def system():
    params = load_params("default-v2")
    ph = params_hash_bytes(params)
    token = deploy("mocks/MockERC20", "USD Coin", "USDC", 6)
    registry = deploy("InstrumentRegistry")
    # four instruments, so the roots' market trees (ids 1-4, `_market`) have the registry's count
    for i in range(4):
        registry.list_instrument(symbol_to_bytes32(f"R{i}"), PERPETUAL, 0, 0)
    oracle = deploy("RiskOracle", registry.address, [s.address for s in SIGNERS], 2, ph, 2_000)
    bond = deploy("SignerBond", token.address, BOND, WINDOW, DELAY,
                  load_engine(token, oracle, registry).address)
    generator, rows = verifier_config(params)
    verifier = deploy("ScenarioVerifier", oracle.address, ph, generator, rows)
    fraud = deploy("FraudProofs", oracle.address, bond.address)
    fraud.register_verifier(verifier.address)
    bond.set_slasher(fraud.address)
    oracle.set_fraud_contracts(bond.address, fraud.address)
    for s in SIGNERS:
        token.mint(s.address, BOND)
        with boa.env.prank(s.address):
            token.approve(bond.address, BOND)
            bond.bond(s.address, BOND)
    domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
    return dict(params=params, token=token, oracle=oracle, bond=bond, verifier=verifier, fraud=fraud,
                domain=domain)


def _market(ts: int) -> list[MarketLeaf]:
    btc, eth = symbol_to_bytes32("BTC"), symbol_to_bytes32("ETH")
    month = ts + 30 * 86_400

    def leaf(i, kind, und, strike, expiry, spot, vol):
        return MarketLeaf(instrument_id=i, kind=kind, underlying=und, strike_wad=strike, expiry=expiry,
                          contract_size_wad=WAD, spot_wad=spot, forward_wad=spot, vol_wad=vol, rate_wad=0,
                          mark_wad=0, im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0)

    return [leaf(1, PERPETUAL, btc, 0, 0, 60_000 * WAD, 0),
            leaf(2, CALL, btc, 66_000 * WAD, month, 60_000 * WAD, 6 * WAD // 10),
            leaf(3, PERPETUAL, eth, 0, 0, 3_000 * WAD, 0),
            leaf(4, PUT, eth, 2_700 * WAD, month, 3_000 * WAD, 8 * WAD // 10)]


def _post(system, epoch, lie=None, by=SIGNERS[:2]):
    """Post an epoch root over BOOKS (honest leaves from the engine's leaf code; `lie(leaf)`
    rewrites A's leaf) -> (trees, record, honest leaves by account)."""
    boa.env.time_travel(seconds=60)
    ts = boa.env.evm.patch.timestamp
    market = _market(ts)
    inputs = MarketInputs.from_leaves(system["params"], market, ts)
    accounts = list(BOOKS)
    leaves = epoch_account_leaves(inputs, accounts, [1] * 3, [BOOKS[a] for a in accounts], [0] * 3)
    honest = {leaf.account.lower(): leaf for leaf in leaves}
    if lie is not None:
        leaves = [lie(leaf) if leaf.account.lower() == A else leaf for leaf in leaves]
    trees = EpochTrees.build(ENGINE, epoch, leaves, market)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=system["oracle"].params_hash())
    system["oracle"].post_root(msg.as_args(), sign_multi(msg, system["domain"], by))
    record = EpochRecord(epoch, trees.accounts.root, trees.market.root, trees.market_count, msg.params_hash, ts,
                         boa.env.evm.patch.timestamp, tuple(s.address for s in by))
    assert system["oracle"].epoch_record_hash(trees.engine, ts) == record.hash()
    return trees, record, honest


def _challenge(system, trees, record, account, scenarios=(), joint=0, sender=None, commit=True):
    """Commit, move to the next block, reveal (the contract pays only a matured commitment);
    `commit=False`: reveal only (a proof that fails reverts before the commitment is read)."""
    sender = sender or "0x" + "cc" * 20
    salt = new_salt()
    args = challenge_arguments(trees, record, account, BOOKS[account.lower()], scenarios, joint, salt=salt)
    if commit:
        with boa.env.prank(sender):
            system["fraud"].commit(commitment(sender, trees.engine, record.signed_at, account, salt))
        boa.env.time_travel(blocks=1, block_delta=1)
    with boa.env.prank(sender):
        return system["fraud"].challenge(*args)


def test_leaf_details__slots_follow_the_books_units_by_symbol(system):
    with boa.env.anchor():
        _, _, honest = _post(system, 1)
    # C holds only ETH: its slot 0 is ETH's scenario; A: BTC (slot 0) < ETH (slot 1)
    ts = boa.env.evm.patch.timestamp
    inputs = MarketInputs.from_leaves(system["params"], _market(ts), ts)
    assert [bytes(symbol_to_bytes32(u)) for u in ("BTC", "ETH")] == sorted(
        bytes(symbol_to_bytes32(u)) for u in inputs.engine.underlyings)
    for account in (A, C):
        scen, joint = unpack_scenarios(honest[account].worst_scenarios, 2)
        assert pack_scenarios(scen if account == A else scen[:1], joint) == honest[account].worst_scenarios
    assert honest[A].worst_loss_wad > 0 and honest[A].basis_addon_wad > 0


def test_honest_root__every_challenge_reverts(system):
    with boa.env.anchor():
        trees, record, _ = _post(system, 1)
        n = system["verifier"].n_scenarios()
        for account, units in ((A, 2), (B, 2), (C, 1)):
            leaf = trees.account_proof(account)[0]
            with boa.reverts("fraud: no fraud proven"):
                _challenge(system, trees, record, account, commit=False)
            # the watcher's model agrees: no challenge of an honest leaf would prove anything
            assert [v.code for v in candidates(system["params"], leaf, leaf, BOOKS[account], trees.market_leaves,
                                               record.signed_at)] == [0]
            for s in range(n):
                with boa.reverts("fraud: no fraud proven"):
                    _challenge(system, trees, record, account, [s] * units, s, commit=False)
                assert predict(system["params"], leaf, BOOKS[account], trees.market_leaves, record.signed_at,
                               [s] * units, s).code == 0


@pytest.mark.parametrize("code,lie,scenarios", [
    # MM and IM understated (the rogue root's purpose)
    (1, lambda f: replace(f, maintenance_margin_wad=f.maintenance_margin_wad // 2,
                          initial_margin_wad=f.initial_margin_wad // 2), ()),
    # IM alone understated (IM = MM: the leaf's IM stands for MM x mm_factor < MM)
    (1, lambda f: replace(f, initial_margin_wad=f.maintenance_margin_wad), ()),
    # worst loss understated, MM honest: the loss of the binding scenario is above it
    (2, lambda f: replace(f, worst_loss_wad=f.worst_loss_wad // 3), None),
    # the leaf names a scenario that does not give its loss
    (3, lambda f: replace(f, worst_scenarios=pack_scenarios([0, 0], 0)), ()),
    # an add-on that is not its closed form
    (4, lambda f: replace(f, basis_addon_wad=0), ()),
    (5, lambda f: replace(f, worst_scenarios=pack_scenarios([999, 0], 0)), ()),
])
def test_rogue_leaf__proven_with_its_code__voided_and_bonds_paid(system, code, lie, scenarios):
    token, bond, oracle, fraud = system["token"], system["bond"], system["oracle"], system["fraud"]
    challenger = "0x" + "cc" * 20
    with boa.env.anchor():
        trees, record, honest = _post(system, 1, lie)
        if scenarios is None:    # the binding scenarios of the honest leaf, named by the challenger
            own, joint = unpack_scenarios(honest[A].worst_scenarios, 2)
            scenarios = own
        else:
            joint = 0
        before = token.balanceOf(challenger)
        leaf = trees.account_proof(A)[0]
        # the watcher's model predicts the contract's code, for this challenge and for the
        # first candidate it would try itself (knowing only the lie and the honest leaf)
        assert predict(system["params"], leaf, BOOKS[A], trees.market_leaves, record.signed_at, scenarios,
                       joint if scenarios else 0).code == code
        first = candidates(system["params"], leaf, honest[A], BOOKS[A], trees.market_leaves, record.signed_at)[0]
        assert first.code == code
        paid = _challenge(system, trees, record, A, scenarios, joint if scenarios else 0)
        [log] = [e for e in fraud.get_logs() if type(e).__name__ == "FraudProven"]
        assert log.code == code
        assert abs(log.maintenance_wad - first.maintenance) <= log.tolerance_wad or first.scenarios != tuple(scenarios)
        assert paid == 2 * BOND // 5 and token.balanceOf(challenger) - before == 2 * BOND // 5
        assert oracle.epoch_record_hash(ENGINE, record.signed_at) == VOID
        # the two signers of the root stop counting; the third alone is below threshold
        assert not bond.is_bonded(SIGNERS[0].address) and not bond.is_bonded(SIGNERS[1].address)
        assert bond.total_bonded() == BOND and bond.forfeited() == 2 * BOND - 2 * BOND // 5
        assert token.balanceOf(bond.address) == bond.total_bonded() + bond.forfeited()
        with boa.reverts("fraud: epoch already void"):
            _challenge(system, trees, record, A, scenarios, joint if scenarios else 0)

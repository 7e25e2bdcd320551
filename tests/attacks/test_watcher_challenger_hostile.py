"""The watcher's challenger given a false root it cannot prove, on the suite's Anvil chain: a
system of its own under the bundled default parameter set (registry with a BTC perpetual
and a BTC future expiring in ten minutes, oracle with one bonded signer, SignerBond,
FraudProofs with its verifier, engine), the real `Watcher` and `Challenger` through web3.

Rule: no root stops the watcher. A false leaf that no fraud proof can reach is reported as
not provable (naming why) and the watcher goes on; it must not raise on every poll. A book
holding a leg expired at the root (no market leaf) is provable: its slot is shown empty.
"""

from dataclasses import replace

import ape
import pytest
from conftest import WAD

from offchain.chain.contracts import Deployment, engine_abi
from offchain.chain.eip712 import Domain, MarketData, sign_multi, symbol_to_bytes32
from offchain.chain.epoch_record import FraudContracts
from offchain.chain.leaves import MarketLeaf
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.chain.verifier import verifier_config
from offchain.devnet.rogue import post_rogue_root
from offchain.risk import load_params
from offchain.watcher.challenge import Challenger
from offchain.watcher.config import WatchConfig
from offchain.watcher.watch import Watcher, WatchMetrics

from .conftest import deploy_engine

PARAMS = load_params()
PARAMS_HASH = bytes.fromhex(PARAMS.hash[2:])
BTC = symbol_to_bytes32("BTC")
USDC = 10**6
BOND = 100_000 * USDC
PERP, FUTURE = 1, 2
SPOT = 60_000 * WAD


def _abi(contract) -> list[dict]:
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in contract.contract_type.abi]


def _bind(w3, contract, abi=None):
    return w3.eth.contract(address=contract.address, abi=abi or _abi(contract))


@pytest.fixture(scope="module")
def world(project, admin, token, signers, chain, keeper):
    """(dep, fraud contracts, oracle, registry, engine, future expiry)."""
    registry = project.InstrumentRegistry.deploy(sender=admin)
    expiry = chain.pending_timestamp + 600
    registry.list_instrument(BTC, 1, 0, 0, sender=admin)
    registry.list_instrument(BTC, 0, 0, expiry, sender=admin)
    oracle = project.RiskOracle.deploy(registry, [signers[0].address], 1, PARAMS_HASH, 2_000, sender=admin)
    engine = deploy_engine(project, admin, token, oracle, registry)
    generator, rows = verifier_config(PARAMS)
    verifier = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
    bond = project.SignerBond.deploy(token, BOND, 86_400, 2 * 86_400, engine, sender=admin)
    fraud = project.FraudProofs.deploy(oracle, bond, sender=admin)
    fraud.register_verifier(verifier, sender=admin)
    bond.set_slasher(fraud, sender=admin)
    token.mint(admin, BOND, sender=admin)
    token.approve(bond, BOND, sender=admin)
    bond.bond(signers[0].address, BOND, sender=admin)
    oracle.set_fraud_contracts(bond, fraud, sender=admin)
    w3 = chain.provider.web3
    dep = Deployment(w3=w3, engine=_bind(w3, engine, engine_abi(_abi(engine), _abi(project.MarginEngineExtension))),
                     oracle=_bind(w3, oracle), registry=_bind(w3, registry), token=_bind(w3, token),
                     signer_bond=_bind(w3, bond), fraud_proofs=_bind(w3, fraud), verifier=_bind(w3, verifier))
    fc = FraudContracts(dep.fraud_proofs, dep.signer_bond, token.address, int(fraud.CHALLENGE_WINDOW()))
    return dep, fc, oracle, engine, expiry


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def post_marks(chain, oracle, signer):
    """Fresh marks (60k) and rates for both instruments, one second on, signed by the signer."""
    chain.mine(timestamp=chain.pending_timestamp + 1)
    ts = chain.blocks.head.timestamp
    rate = [6_000 * WAD, 6_000 * WAD]
    data = MarketData(ids=[PERP, FUTURE], marks_wad=[SPOT, SPOT], funding_indices_wad=[0, 0], im_long_wad=rate,
                      im_short_wad=rate, mm_long_wad=[3_000 * WAD] * 2, mm_short_wad=[3_000 * WAD] * 2,
                      params_hash=PARAMS_HASH, timestamp=ts, deadline=ts + 300)
    oracle.post_market_data(data.as_args(), sign_multi(data, Domain(chain.chain_id, oracle.address), [signer]),
                            sender=signer_sender(chain, signer))


def signer_sender(chain, signer):
    """The signer's key as a sender (Anvil impersonation, gas funded)."""
    chain.set_balance(signer.address, 10**20)
    return ape.accounts.test_accounts.impersonate_account(signer.address)


def buy(chain, engine, maker, taker, keys, iid, size_wad, n):
    """The taker buys `size_wad` of `iid` from the maker's signed order at the mark."""
    order = Order(maker.address, iid, False, size_wad, SPOT, n, chain.pending_timestamp + 3_600)
    sig = sign_order(order, EngineDomain(chain.chain_id, engine.address), keys[maker.address])
    engine.fill(order.as_args(), sig, size_wad, sender=taker)


def test_watch__false_leaf_of_a_book_holding_an_expired_leg__challenged_and_proven(
        world, chain, token, signers, maker, accounts, attacker, keeper, local_keys, tmp_path):
    """The victim holds 1 BTC perp and 0.001 of the future, which then expires. The signers'
    next root understates the victim's margins and publishes the leaf (epoch file). The
    expired future has no market leaf: the challenger's model once raised KeyError on it, so
    every poll failed on this root and the watcher checked nothing after it (W2); then it
    reported the leaf as not provable (V8). Now the challenge shows the future's slot empty
    and re-prices the perp: the watcher commits, reveals, and the epoch is void."""
    dep, fc, oracle, engine, expiry = world
    victim = accounts[8]
    for who, units in ((victim, 10_000 * USDC), (maker, 100_000 * USDC)):
        token.mint(who, units, sender=who)
        token.approve(engine, units, sender=who)
        engine.deposit(units, sender=who)
    post_marks(chain, oracle, signers[0])
    buy(chain, engine, maker, victim, local_keys, PERP, WAD, 1)
    buy(chain, engine, maker, victim, local_keys, FUTURE, WAD // 1_000, 2)
    chain.mine(timestamp=expiry + 10)
    post_marks(chain, oracle, signers[0])
    inputs = [MarketLeaf(PERP, 1, BTC, 0, 0, WAD, SPOT, SPOT, 0, 0, 0, 0, 0, 0, 0)]   # the future expired: no leaf

    def understate(leaf):
        return replace(leaf, initial_margin_wad=leaf.initial_margin_wad // 20,
                       maintenance_margin_wad=leaf.maintenance_margin_wad // 20)

    post_rogue_root(dep, local_keys[keeper.address], [signers[0]], PARAMS, inputs, [victim.address, maker.address],
                    1, victim.address, understate, tmp_path / "signers")
    cfg = WatchConfig(engine_address=dep.engine.address, start_epoch=1, epoch_dir=str(tmp_path / "signers"),
                      data_dir=str(tmp_path / "watch"))
    metrics = WatchMetrics()
    w = Watcher(cfg, dep, metrics, Challenger(cfg, dep, local_keys[attacker.address], metrics, contracts=fc))
    w.start()
    found = w.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(1, False)]
    assert found[0].account == victim.address
    outcome = found[0].challenge
    assert outcome.status == "proven" and outcome.account == victim.address, outcome
    assert outcome.entry["code"] == 1 and outcome.entry["paid"] == BOND // 5
    assert dep.oracle.functions.epoch_record_hash(dep.engine.address, found[0].root.signed_at).call() == \
        (1).to_bytes(32, "big")
    assert w.next_epoch == 2 and w.poll() == []

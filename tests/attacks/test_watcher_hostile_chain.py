"""The watcher given hostile chain data, on the suite's Anvil chain: a system of its own (a
registry with one BTC perpetual, an oracle under the bundled default parameter set with one
signer, an engine) and the real `Watcher` reading it through web3. The signers are the
attacker: they post roots they never publish and publish market leaves the model cannot price.

Rule: no root stops the watcher. A root that cannot be rebuilt is tried again while it is the
current one (its data may still come) and reported false once a newer root supersedes it; the
roots after it are still checked. Published leaves the model cannot price are a finding, and a
slot the registry contradicts is still named (what `challenge_market` proves).
"""

from dataclasses import replace

import pytest
from conftest import WAD

from offchain.chain.contracts import Deployment, engine_abi
from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import epoch_account_leaves, finish_market_leaves
from offchain.chain.leaves import MarketLeaf
from offchain.chain.rebuild import find_root, rebuild_from_chain
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError
from offchain.risk import load_params
from offchain.watcher.challenge import market_slots
from offchain.watcher.config import WatchConfig
from offchain.watcher.watch import Watcher, WatchMetrics

from .conftest import deploy_engine

PARAMS = load_params()          # the bundled set: the watcher finds it by the root's hash
BTC = symbol_to_bytes32("BTC")


def _abi(contract) -> list[dict]:
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in contract.contract_type.abi]


@pytest.fixture(scope="module")
def world(project, admin, token, signers, chain, keeper):
    """(deployment, signer, poster): its own registry, oracle and engine, bound through web3."""
    registry = project.InstrumentRegistry.deploy(sender=admin)
    registry.list_instrument(BTC, 1, 0, 0, sender=admin)          # id 1: BTC perpetual
    oracle = project.RiskOracle.deploy(registry, [signers[0].address], 1, bytes.fromhex(PARAMS.hash[2:]), 2_000,
                                       sender=admin)
    engine = deploy_engine(project, admin, token, oracle, registry)
    w3 = chain.provider.web3
    ext_abi = _abi(project.MarginEngineExtension)
    dep = Deployment(
        w3=w3,
        engine=w3.eth.contract(address=engine.address, abi=engine_abi(_abi(engine), ext_abi)),
        oracle=w3.eth.contract(address=oracle.address, abi=_abi(oracle)),
        registry=w3.eth.contract(address=registry.address, abi=_abi(registry)),
        token=w3.eth.contract(address=token.address, abi=_abi(token)))
    return dep, oracle, signers[0], keeper


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def post_epoch(world, chain, epoch, publish=True, **market):
    """Epoch `epoch`: one account leaf (an address the engine never listed, so the rebuild has
    none: every root here is false), the perpetual's leaf finished at the root's time and then
    altered by `market` (field: value), posted and, with `publish`, its data published."""
    dep, oracle, signer, poster = world
    chain.mine(timestamp=chain.pending_timestamp + 1)
    state_block = chain.blocks.head.number
    chain.mine(timestamp=chain.pending_timestamp + 1)
    now = chain.blocks.head.timestamp
    inputs = MarketLeaf(1, 1, BTC, 0, 0, WAD, 60_000 * WAD, 60_000 * WAD, 0, 0, 0, 0, 0, 0, 0)
    leaves, priced = finish_market_leaves(PARAMS, [inputs], now)
    leaves = [replace(m, **market) for m in leaves]
    accounts = epoch_account_leaves(priced, [poster.address], [0], [{}], [0])
    trees = EpochTrees.build(dep.engine.address, epoch, accounts, leaves, 1)
    domain = Domain(chain.chain_id, oracle.address)
    msg = trees.root_message(timestamp=now, deadline=now + 3_600, params_hash=bytes.fromhex(PARAMS.hash[2:]))
    oracle.post_root(msg.as_args(), sign_multi(msg, domain, [signer]), sender=poster)
    if publish:
        data = trees.data_message(state_block)
        oracle.publish_epoch_data(data.as_args(), [m.as_args() for m in leaves], sign_multi(data, domain, [signer]),
                                  sender=poster)
    return trees


def watcher(world):
    dep = world[0]
    w = Watcher(WatchConfig(engine_address=dep.engine.address, start_epoch=1), dep, WatchMetrics())
    w.start()
    return w


def test_watch__root_never_published_then_superseded__reported_false_and_the_next_root_still_checked(world, chain):
    """The signers post epoch 1 and never publish its data, then post epoch 2. The watcher
    used to retry epoch 1 on every poll (the oracle publishes an epoch's data only while it
    is current, so it never could come) and never looked at epoch 2: a false root hidden
    behind an unpublished one was never checked nor challenged."""
    post_epoch(world, chain, 1, publish=False)
    w = watcher(world)
    # while epoch 1 is the current root its data may still come: tried again next poll
    with pytest.raises(UserError, match="no EpochDataPublished"):
        w.poll()
    assert w.next_epoch == 1
    post_epoch(world, chain, 2)
    found = w.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(1, False), (2, False)]
    assert "cannot be rebuilt and was superseded" in found[0].reason
    assert "accounts root" in found[1].reason      # epoch 2 was rebuilt and compared
    assert w.next_epoch == 3
    ok, status = w.metrics.health(10, 600)
    assert not ok and status["reason"] == found[0].reason     # latched on the first false root
    assert w.poll() == []                                      # nothing retried


def test_rebuild__published_underlying_that_is_no_symbol__slot_named_as_the_registry_contradicts_it(world, chain):
    """A market leaf whose underlying is not ASCII (the oracle only checks that the published
    leaves make the signed root) made the rebuild raise UnicodeDecodeError, so the watcher
    stalled on the root and never proved the slot, which `challenge_market` proves (the
    underlying is not the registry's)."""
    post_epoch(world, chain, 1, underlying=b"\xff" * 32)
    dep = world[0]
    result = rebuild_from_chain(dep, root=find_root(dep, 1))
    fields = {(iid, name) for iid, name, *_ in result.market_errors}
    assert (1, "underlying") in fields and (0, "leaves") in fields
    assert market_slots(result) == [1]
    assert not result.matches and result.trees.account_leaves == []
    w = watcher(world)
    found = w.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(1, False)]
    assert "underlying" in found[0].reason


def test_watch__published_live_perpetual_with_zero_spot__reported_false_and_the_watcher_moves_on(world, chain):
    """A zero spot for a live instrument cannot be priced (nor proven on chain: a market
    input). The rebuild says so as a finding instead of raising, and the next root is
    checked."""
    post_epoch(world, chain, 1, spot_wad=0)
    w = watcher(world)
    found = w.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(1, False)]
    assert "zero spot" in found[0].reason
    post_epoch(world, chain, 2)
    assert [(f.root.epoch, f.ok) for f in w.poll()] == [(2, False)]
    assert w.next_epoch == 3



@pytest.mark.parametrize("content", ["[1, 2]", '{"root": "0x00"}', '"epoch"'])
def test_watch__signers_epoch_file_not_an_object__ignored_and_the_root_still_judged(world, chain, tmp_path, content):
    """The epoch folder holds the signers' files: any JSON may be there. A file that is not an
    object with a root object made the watcher's leaf comparison raise (AttributeError) on
    every poll, so it never judged that root nor any after it."""
    dep = world[0]
    post_epoch(world, chain, 1)
    folder = tmp_path / dep.engine.address
    folder.mkdir()
    (folder / "epoch-1.json").write_text(content)
    w = Watcher(WatchConfig(engine_address=dep.engine.address, start_epoch=1, epoch_dir=str(tmp_path)), dep,
                WatchMetrics())
    w.start()
    found = w.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(1, False)]
    assert "accounts root" in found[0].reason and w.next_epoch == 2

"""RiskOracle.publish_epoch_data: the signed state block and every market leaf of the current
epoch, logged for anyone who rebuilds the epoch; refused unless the leaves give the stored
market root, the roots and epoch are the stored ones, the block is past and the signers sign."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from test_roots import _leaf, _market_leaf

from offchain.chain.eip712 import EpochData, digest
from offchain.chain.epoch_leaves import market_leaves_of
from offchain.chain.leaves import MarketLeaf
from offchain.chain.roots import EpochTrees


@pytest.fixture
def posted(oracle, keeper, chain, sign, market_count):
    """An engine (the keeper's address) holding epoch 1 with 5 market leaves of 6 instruments
    (slot 6 empty)."""
    count = market_count(6)
    ts = chain.blocks.head.timestamp
    trees = EpochTrees.build(keeper.address, 1, [_leaf(i) for i in range(4)],
                             [_market_leaf(i) for i in range(1, 6)], count)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    oracle.post_root(msg.as_args(), sign(msg), sender=keeper)
    return trees


def _publish(oracle, sign, trees, state_block, leaves=None, sender=None, by=None, **over):
    data = trees.data_message(state_block)
    if over:
        data = EpochData(**{**data.message(), **over})
    leaves = trees.market_leaves_by_id() if leaves is None else leaves
    return oracle.publish_epoch_data(data.as_args(), [m.as_args() for m in leaves], sign(data, by),
                                     sender=sender)


def test_publish_epoch_data__leaves_of_root__logged_with_state_block(oracle, posted, sign, chain, trader):
    block = chain.blocks.head.number - 1
    tx = _publish(oracle, sign, posted, block, sender=trader)
    (ev,) = tx.decode_logs(oracle.EpochDataPublished)
    assert (ev.engine, ev.epoch, ev.state_block) == (posted.engine, 1, block)
    assert bytes(ev.market_root) == posted.market.root and bytes(ev.accounts_root) == posted.accounts.root
    logged = market_leaves_of(ev.market_leaves)
    assert sorted(logged, key=lambda m: m.instrument_id) == posted.market_leaves


def test_epoch_data_digest__python__equals_contract(oracle, domain, keeper):
    data = EpochData(engine=keeper.address, epoch=4, state_block=99, accounts_root=b"\x01" * 32,
                     market_root=b"\x02" * 32)
    assert bytes(oracle.epoch_data_digest(data.as_args())) == digest(data, domain)
    assert bytes(oracle.EPOCH_DATA_TYPEHASH()) == EpochData.typehash()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9])
def test_publish_epoch_data__any_leaf_count__contract_tree_equals_python(oracle, keeper, chain, sign, size,
                                                                        market_count):
    count = market_count(size)
    ts = chain.blocks.head.timestamp
    trees = EpochTrees.build(keeper.address, 1, [_leaf(0)], [_market_leaf(i) for i in range(1, size + 1)], count)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    oracle.post_root(msg.as_args(), sign(msg), sender=keeper)
    _publish(oracle, sign, trees, chain.blocks.head.number - 1, sender=keeper)


def test_publish_epoch_data__forged_missing_moved_or_unordered_leaf__reverts(oracle, posted, sign, chain, trader):
    block = chain.blocks.head.number - 1
    leaves = posted.market_leaves_by_id()
    forged = list(leaves)
    forged[2] = MarketLeaf(**{**leaves[2].as_dict(), "underlying": leaves[2].underlying, "vol_wad": WAD})
    with ape.reverts("oracle: market leaves do not give the market root"):
        _publish(oracle, sign, posted, block, leaves=forged, sender=trader)
    with ape.reverts("oracle: market leaves do not give the market root"):
        _publish(oracle, sign, posted, block, leaves=leaves[:-1], sender=trader)
    # the last leaf relabelled to the empty slot 6: each leaf sits at its own id's slot
    moved = leaves[:-1] + [MarketLeaf(**{**leaves[-1].as_dict(), "underlying": leaves[-1].underlying,
                                         "instrument_id": 6})]
    with ape.reverts("oracle: market leaves do not give the market root"):
        _publish(oracle, sign, posted, block, leaves=moved, sender=trader)
    with ape.reverts("oracle: market leaves not in ascending id order"):
        _publish(oracle, sign, posted, block, leaves=leaves[::-1], sender=trader)
    with ape.reverts("oracle: market leaves not in ascending id order"):
        _publish(oracle, sign, posted, block, leaves=leaves + leaves[-1:], sender=trader)
    beyond = leaves + [MarketLeaf(**{**leaves[-1].as_dict(), "underlying": leaves[-1].underlying, "instrument_id": 7})]
    with ape.reverts("oracle: market leaf id beyond the root's instrument count"):
        _publish(oracle, sign, posted, block, leaves=beyond, sender=trader)


def test_publish_epoch_data__not_current_epoch_or_roots__reverts(oracle, posted, sign, chain, trader):
    block = chain.blocks.head.number - 1
    with ape.reverts("oracle: epoch is not the engine's current epoch"):
        _publish(oracle, sign, posted, block, sender=trader, epoch=2)
    with ape.reverts("oracle: accounts root mismatch"):
        _publish(oracle, sign, posted, block, sender=trader, accounts_root=b"\x05" * 32)
    with ape.reverts("oracle: market root mismatch"):
        _publish(oracle, sign, posted, block, sender=trader, market_root=b"\x05" * 32)
    with ape.reverts("oracle: no root for engine"):
        _publish(oracle, sign, posted, block, sender=trader, engine=trader.address)


def test_publish_epoch_data__future_state_block__reverts(oracle, posted, sign, chain, trader):
    # the block being mined has no readable state yet: a leaf cannot have been built on it
    with ape.reverts("oracle: state block not in the past"):
        _publish(oracle, sign, posted, chain.blocks.head.number + 1, sender=trader)


def test_publish_epoch_data__outsider_signature__reverts(oracle, posted, sign, chain, trader, signers,
                                                         outsider_signer):
    by = sorted([signers[0], outsider_signer], key=lambda a: int(a.address, 16))
    with ape.reverts("oracle: not a signer"):
        _publish(oracle, sign, posted, chain.blocks.head.number - 1, sender=trader, by=by)


@pytest.mark.parametrize("size", [1, 16, 64, 256])
def test_publish_epoch_data__gas__within_the_keepers_fixed_limit(oracle, keeper, chain, sign, size, market_count):
    """The keeper sends publish_epoch_data in the same batch as its root, with a fixed gas
    limit (its estimate would revert before the root is mined): that limit must cover it."""
    from offchain.keeper.bot import PUBLISH_GAS_BASE, PUBLISH_GAS_PER_LEAF
    count = market_count(size)
    ts = chain.blocks.head.timestamp
    trees = EpochTrees.build(keeper.address, 1, [_leaf(0)], [_market_leaf(i) for i in range(1, size + 1)], count)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    oracle.post_root(msg.as_args(), sign(msg), sender=keeper)
    tx = _publish(oracle, sign, trees, chain.blocks.head.number - 1, sender=keeper)
    print(f"publish_epoch_data, {size} market leaves, 2 signatures: {tx.gas_used:,} gas")
    assert tx.gas_used <= PUBLISH_GAS_BASE + PUBLISH_GAS_PER_LEAF * size

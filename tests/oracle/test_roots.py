"""RiskOracle epoch roots: posting rules, leaf verification against the Python trees (same
roots, same proofs), domain separation of leaves (engine, epoch), and the gas of a post."""

import random

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from support.margins import filler_leaves

from offchain.chain.eip712 import EpochRoot, digest
from offchain.chain.leaves import AccountLeaf, MarketLeaf, account_leaf_hashes, positions_hash
from offchain.chain.merkle import (
    EMPTY,
    MerkleTree,
    MultiProof,
    hash_pair,
    process_multiproof,
    verify,
)
from offchain.chain.roots import EpochTrees


def _leaf(i: int, **over) -> AccountLeaf:
    fields = dict(
        account=f"0x{(0x1000 + i):040x}", state_nonce=i, positions_hash=positions_hash([1, 3], [i * WAD + 1, -WAD]),
        pending_base_im_wad=i * 7, pending_base_mm_wad=i * 3, position_value_wad=-i * WAD,
        initial_margin_wad=(i + 2) * 1_000 * WAD, maintenance_margin_wad=(i + 1) * 1_000 * WAD,
        worst_loss_wad=i * 900 * WAD, worst_scenarios=(i % 30) | (7 << 16), basis_addon_wad=11,
        short_option_addon_wad=12, liquidity_addon_wad=13, rounding_guard_wad=14,
    )
    fields.update(over)
    return AccountLeaf(**fields)


def _market_leaf(i: int) -> MarketLeaf:
    return MarketLeaf(instrument_id=i, kind=i % 4, underlying=b"BTC".ljust(32, b"\0"), strike_wad=60_000 * WAD,
                      expiry=2_000_000_000, contract_size_wad=WAD, spot_wad=59_000 * WAD, forward_wad=59_100 * WAD,
                      vol_wad=6 * WAD // 10, rate_wad=-WAD // 100, mark_wad=2_500 * WAD + i,
                      im_long_wad=6_000 * WAD, im_short_wad=9_000 * WAD, mm_long_wad=3_000 * WAD, mm_short_wad=4_500 * WAD)


@pytest.fixture
def post_root(oracle, keeper, chain, sign, market_count):
    """post_root(engine, trees or leaves, epoch=1, ...) -> (tx, EpochRoot, trees)."""

    def post(engine, account_leaves, epoch=1, market=(), timestamp=None, deadline=None, by=None, sender=None,
             **over):
        ts = chain.blocks.head.timestamp if timestamp is None else timestamp
        count = market_count(max((m.instrument_id for m in market), default=0))
        trees = EpochTrees.build(engine, epoch, account_leaves, market, count)
        msg = trees.root_message(timestamp=ts, deadline=ts + 300 if deadline is None else deadline,
                                 params_hash=PARAMS_HASH)
        if over:
            msg = EpochRoot(**{**msg.message(), **over})
        return oracle.post_root(msg.as_args(), sign(msg, by), sender=sender or keeper), msg, trees

    return post


# ------------------------------------------------------------------ Python tree == contract


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 64])
def test_verify_account_leaf__python_tree__every_proof_accepted(oracle, post_root, keeper, n):
    leaves = [_leaf(i) for i in range(n)]
    tx, msg, trees = post_root(keeper.address, leaves)
    epoch, ts, count, accounts_root, market_root = oracle.epoch_root(keeper)
    assert (epoch, count, bytes(accounts_root)) == (1, n, trees.accounts.root)
    for leaf in leaves:
        leaf_, proof = trees.account_proof(leaf.account)
        assert oracle.verify_account_leaf(leaf_.as_args(), proof, sender=keeper) == msg.timestamp


def test_account_leaf_hash__python_encoders__equal_contract(oracle, post_root, keeper):
    """Extreme field values hashed by Python are what the oracle hashes: every leaf of a root
    built from them verifies (the contract hashes (engine, epoch, leaf) itself)."""
    rng = random.Random(7)
    batch = [_leaf(i, position_value_wad=-rng.randrange(2**200), worst_scenarios=rng.randrange(2**256))
             for i in range(5)]
    batch.append(_leaf(5, position_value_wad=2**255 - 1, initial_margin_wad=2**256 - 1))
    assert account_leaf_hashes(keeper.address, 9, batch) == [leaf.leaf_hash(keeper.address, 9) for leaf in batch]
    tx, msg, trees = post_root(keeper.address, batch, epoch=9)
    for leaf in batch:
        leaf_, proof = trees.account_proof(leaf.account)
        assert oracle.verify_account_leaf(leaf_.as_args(), proof, sender=keeper) == msg.timestamp


def test_positions_hash__python__equals_abi_of_sorted_book():
    assert positions_hash([3, 1], [-WAD, 2 * WAD]) == positions_hash([1, 3], [2 * WAD, -WAD])
    assert positions_hash([3, 1, 2], [-WAD, 2 * WAD, 0]) == positions_hash([1, 3], [2 * WAD, -WAD])
    assert positions_hash([1], [WAD]) != positions_hash([1], [WAD + 1])


def test_epoch_root_digest__python__equals_contract(oracle, domain, keeper):
    msg = EpochRoot(engine=keeper.address, epoch=3, timestamp=5, deadline=6, params_hash=PARAMS_HASH,
                    market_root=b"\x01" * 32, market_count=4, accounts_root=b"\x02" * 32, account_count=10)
    assert bytes(oracle.epoch_root_digest(msg.as_args())) == digest(msg, domain)
    assert bytes(oracle.EPOCH_ROOT_TYPEHASH()) == EpochRoot.typehash()


def test_market_root__python_proofs__give_the_stored_root(oracle, post_root, keeper):
    """Market leaves are proven by ScenarioVerifier / FraudProofs (one multiproof,
    tests/verifier/test_multiproof.py) against the root the oracle stores, each at its own
    id's slot; the registry's instruments without a leaf prove empty."""
    market = [_market_leaf(i) for i in (1, 2, 4, 5)]
    tx, msg, trees = post_root(keeper.address, [_leaf(0)], market=market)
    epoch, signed_at, count, stored = oracle.market_tree(keeper)
    assert (epoch, signed_at, count, bytes(stored)) == (1, msg.timestamp, 5, trees.market.root)
    ids = [5, 1, 4]
    hashes = [m.leaf_hash(keeper.address, msg.epoch) for m in trees.market_leaves_of(ids)]
    assert process_multiproof(trees.market_multiproof(ids), ids, hashes, count) == bytes(stored)
    leaf, proof = trees.market_proof(3)
    assert leaf is None and process_multiproof(MultiProof(tuple(proof), 0), [3], [EMPTY], count) == bytes(stored)


def test_post_root__market_count_not_the_registry_s__reverts(oracle, post_root, keeper, market_count):
    """The signed count must be the registry's instrument count when posted: a lower one
    would put listed instruments outside the tree (unprovable), a higher one slots that no
    instrument fills yet."""
    n = market_count()
    for wrong in (n - 1, n + 1, 0):
        with ape.reverts("oracle: market count is not the registry's instrument count"):
            post_root(keeper.address, [_leaf(1)], market_count=wrong)
    post_root(keeper.address, [_leaf(1)], market_count=n)


def test_post_root__instrument_listed_after_signing__root_refused(oracle, keeper, chain, sign, market_count):
    """A root signed over n instruments, then the registry lists one more before the post:
    the root no longer covers every listed instrument and is refused; re-signed, it posts."""
    n = market_count()
    ts = chain.blocks.head.timestamp
    trees = EpochTrees.build(keeper.address, 1, [_leaf(1)], [_market_leaf(1)], n)
    msg = trees.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    market_count(n + 1)
    with ape.reverts("oracle: market count is not the registry's instrument count"):
        oracle.post_root(msg.as_args(), sign(msg), sender=keeper)
    again = EpochTrees.build(keeper.address, 1, [_leaf(1)], [_market_leaf(1)], n + 1)
    msg = again.root_message(timestamp=ts, deadline=ts + 300, params_hash=PARAMS_HASH)
    oracle.post_root(msg.as_args(), sign(msg), sender=keeper)
    assert oracle.market_tree(keeper)[2] == n + 1


# ------------------------------------------------------------------ forged leaves and proofs


@pytest.fixture
def posted(post_root, keeper):
    leaves = [_leaf(i) for i in range(9)]
    return post_root(keeper.address, leaves)


def test_verify_account_leaf__forged_field__reverts(oracle, posted, keeper):
    _, _, trees = posted
    leaf, proof = trees.account_proof(_leaf(4).account)
    forged = _leaf(4, initial_margin_wad=leaf.initial_margin_wad - 1)
    with ape.reverts("oracle: invalid proof"):
        oracle.verify_account_leaf(forged.as_args(), proof, sender=keeper)


def test_verify_account_leaf__forged_or_truncated_proof__reverts(oracle, posted, keeper):
    _, _, trees = posted
    leaf, proof = trees.account_proof(_leaf(4).account)
    for bad in (proof[:-1], proof + [b"\x00" * 32], [b"\x11" * 32] + proof[1:], []):
        with ape.reverts("oracle: invalid proof"):
            oracle.verify_account_leaf(leaf.as_args(), bad, sender=keeper)


def test_verify_account_leaf__inner_node_as_leaf__reverts(oracle, posted, keeper):
    """An inner node with the rest of its path passes the bare Merkle check, but the oracle
    hashes the leaf struct twice: the node's two children reinterpreted as a leaf never match."""
    _, _, trees = posted
    leaf, proof = trees.account_proof(_leaf(4).account)
    node = hash_pair(leaf.leaf_hash(keeper.address, 1), proof[0])
    assert verify(proof[1:], trees.accounts.root, node)
    a, b = sorted([leaf.leaf_hash(keeper.address, 1), proof[0]])
    as_leaf = _leaf(0, positions_hash=a, pending_base_im_wad=int.from_bytes(b, "big"))
    with ape.reverts("oracle: invalid proof"):
        oracle.verify_account_leaf(as_leaf.as_args(), proof[1:], sender=keeper)


def test_verify_account_leaf__leaf_of_another_engine__reverts(oracle, post_root, keeper, trader):
    leaves = [_leaf(i) for i in range(4)]
    _, _, trees_a = post_root(keeper.address, leaves)
    post_root(trader.address, [_leaf(9)])
    leaf, proof = trees_a.account_proof(leaves[1].account)
    with ape.reverts("oracle: invalid proof"):
        oracle.verify_account_leaf(leaf.as_args(), proof, sender=trader)


def test_verify_account_leaf__leaf_of_previous_epoch__reverts(oracle, post_root, keeper, chain):
    leaves = [_leaf(i) for i in range(4)]
    _, _, old = post_root(keeper.address, leaves, epoch=1)
    chain.mine(timestamp=chain.pending_timestamp + 1)
    post_root(keeper.address, leaves, epoch=2)  # the very same leaves, next epoch
    leaf, proof = old.account_proof(leaves[1].account)
    with ape.reverts("oracle: invalid proof"):
        oracle.verify_account_leaf(leaf.as_args(), proof, sender=keeper)


def test_verify_account_leaf__no_root__reverts(oracle, trader):
    with ape.reverts("oracle: no root for engine"):
        oracle.verify_account_leaf(_leaf(1).as_args(), [], sender=trader)


def test_verify_account_leaf__im_below_mm__reverts(oracle, post_root, keeper):
    bad = _leaf(1, initial_margin_wad=1, maintenance_margin_wad=2)
    _, _, trees = post_root(keeper.address, [bad, _leaf(2)])
    leaf, proof = trees.account_proof(bad.account)
    with ape.reverts("oracle: initial margin below maintenance margin"):
        oracle.verify_account_leaf(leaf.as_args(), proof, sender=keeper)


def test_verify_account_leaf__params_hash_changed__reverts(oracle, posted, keeper, admin):
    _, _, trees = posted
    leaf, proof = trees.account_proof(_leaf(2).account)
    oracle.set_params_hash(b"\x42" * 32, sender=admin)
    with ape.reverts("oracle: root signed under old params"):
        oracle.verify_account_leaf(leaf.as_args(), proof, sender=keeper)
    assert oracle.root_timestamp(keeper) == 0


# ------------------------------------------------------------------ posting rules


def test_post_root__stale_epoch_or_timestamp__reverts(oracle, post_root, keeper, chain):
    _, msg, _ = post_root(keeper.address, [_leaf(1)], epoch=5)
    chain.mine(timestamp=chain.pending_timestamp + 1)
    with ape.reverts("oracle: epoch not newer than stored"):
        post_root(keeper.address, [_leaf(1)], epoch=5)
    with ape.reverts("oracle: root not newer than stored"):
        post_root(keeper.address, [_leaf(1)], epoch=6, timestamp=msg.timestamp)


def test_post_root__future_timestamp__reverts(post_root, keeper, chain):
    with ape.reverts("oracle: timestamp in the future"):
        post_root(keeper.address, [_leaf(1)], timestamp=chain.pending_timestamp + 60)


def test_post_root__deadline_passed__reverts(post_root, keeper, chain):
    ts = chain.blocks.head.timestamp
    with ape.reverts("oracle: deadline passed"):
        post_root(keeper.address, [_leaf(1)], timestamp=ts - 10, deadline=ts - 1)


def test_post_root__wrong_params_or_empty_root__reverts(post_root, keeper):
    with ape.reverts("oracle: params hash mismatch"):
        post_root(keeper.address, [_leaf(1)], params_hash=b"\x01" * 32)
    with ape.reverts("oracle: empty accounts root"):
        post_root(keeper.address, [_leaf(1)], accounts_root=b"\x00" * 32)


def test_post_root__below_threshold_or_outsider__reverts(post_root, keeper, signers, outsider_signer):
    with ape.reverts("oracle: below threshold"):
        post_root(keeper.address, [_leaf(1)], by=signers[:1])
    with ape.reverts("oracle: not a signer"):
        post_root(keeper.address, [_leaf(1)], by=sorted([signers[0], outsider_signer], key=lambda a: int(a.address, 16)))


def test_post_root__signer_set_changed_between_epochs__old_signer_refused(oracle, post_root, keeper, admin, signers,
                                                                          outsider_signer, chain):
    post_root(keeper.address, [_leaf(1)], epoch=1, by=signers[:2])
    oracle.remove_signer(signers[1].address, sender=admin)
    oracle.add_signer(outsider_signer.address, sender=admin)
    chain.mine(timestamp=chain.pending_timestamp + 1)
    with ape.reverts("oracle: not a signer"):
        post_root(keeper.address, [_leaf(1)], epoch=2, by=signers[:2])
    new_set = sorted([signers[0], outsider_signer], key=lambda a: int(a.address, 16))
    tx, msg, trees = post_root(keeper.address, [_leaf(2)], epoch=2, by=new_set)
    leaf, proof = trees.account_proof(_leaf(2).account)
    assert oracle.verify_account_leaf(leaf.as_args(), proof, sender=keeper) == msg.timestamp


def test_post_root__event__carries_roots(post_root, keeper, oracle):
    tx, msg, trees = post_root(keeper.address, [_leaf(i) for i in range(3)], epoch=7)
    [log] = tx.decode_logs(oracle.RootPosted)
    assert (log.engine, log.epoch, log.signed_at, log.account_count) == (keeper.address, 7, msg.timestamp, 3)
    assert log.market_count == msg.market_count == 4 and bytes(log.market_root) == trees.market.root
    assert bytes(log.accounts_root) == trees.accounts.root


# ------------------------------------------------------------------ isolated bound and gas


def test_isolated_margins__book__sums_side_rates_rounded_up(oracle, post_market):
    post_market()
    im, mm = oracle.isolated_margins([1, 3], [2 * WAD + 1, -WAD])
    r1 = oracle.rates(1)[0]
    r3 = oracle.rates(3)[0]
    assert im == -(-(2 * WAD + 1) * r1.im_long_wad // WAD) + r3.im_short_wad
    assert mm == -(-(2 * WAD + 1) * r1.mm_long_wad // WAD) + r3.mm_short_wad


def test_post_root__gas__below_target_for_any_n(oracle, post_root, keeper, signers, chain, admin):
    """<= 100k with one signer (steady state: the engine's slots already hold a root) and
    <= 8k per extra signer, whatever the number of accounts."""
    oracle.set_threshold(1, sender=admin)
    figures = {}
    for k, n in ((1, 10), (1, 100_000), (2, 10), (3, 10)):
        leaves = [_leaf(i) for i in range(min(n, 64))]
        chain.mine(timestamp=chain.pending_timestamp + 1)
        post_root(keeper.address, leaves, epoch=len(figures) * 2 + 1, by=signers[:k], account_count=n)
        chain.mine(timestamp=chain.pending_timestamp + 1)
        tx, _, _ = post_root(keeper.address, leaves, epoch=len(figures) * 2 + 2, by=signers[:k], account_count=n)
        figures[(k, n)] = tx.gas_used
    print("\npost_root gas:", {f"{k} signer(s), {n} accounts": g for (k, n), g in figures.items()})
    # N only changes the calldata of the count word (a few nonzero bytes)
    assert figures[(1, 10)] <= 100_000 and abs(figures[(1, 100_000)] - figures[(1, 10)]) <= 64
    assert figures[(2, 10)] - figures[(1, 10)] <= 8_000 and figures[(3, 10)] - figures[(2, 10)] <= 8_000


def test_merkle_tree__depth_17__proof_length(keeper):
    hashes = account_leaf_hashes(keeper.address, 1, [_leaf(0), *filler_leaves(2**16)])
    tree = MerkleTree(hashes)
    assert tree.depth == 17 and len(tree.proof(hashes[0])) in (16, 17)
    assert verify(tree.proof(hashes[-1]), tree.root, hashes[-1])

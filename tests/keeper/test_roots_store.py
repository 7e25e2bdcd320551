"""The keeper's epoch store: leaves from books, per-epoch files, proofs served from them
(plain function and the keeper's HTTP port), and two independent builds of one epoch."""

import json
import random
import urllib.error
import urllib.request

import pytest

from offchain.chain.leaves import positions_hash
from offchain.chain.merkle import verify
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError
from offchain.keeper.metrics import KeeperMetrics, MetricsServer
from offchain.keeper.roots import EpochStore, account_leaves, leaf_args, proof_for

ENGINE = "0x" + "ab" * 20
WAD = 10**18


def _inputs(n: int, seed: int = 1):
    rng = random.Random(seed)
    addresses = [f"0x{(0x5000 + i):040x}" for i in range(n)]
    books = [{1: rng.randrange(1, 10) * WAD, 3: -rng.randrange(1, 5) * WAD // 10} for _ in range(n)]
    mm = [rng.randrange(1, 10**6) * WAD for _ in range(n)]
    return dict(addresses=addresses, state_nonces=list(range(n)), books_wad=books,
                im_wad=[2 * m for m in mm], mm_wad=mm, value_wad=[-i * WAD for i in range(n)],
                pending_totals=[(i << 96) | (3 * i) for i in range(n)])


def _trees(n: int, epoch: int = 1, order_seed: int | None = None) -> EpochTrees:
    leaves = account_leaves(**_inputs(n))
    if order_seed is not None:
        random.Random(order_seed).shuffle(leaves)
    return EpochTrees.build(ENGINE, epoch, leaves)


def _root(trees):
    return trees.root_message(timestamp=1_700_000_000, deadline=1_700_000_060, params_hash=b"\x01" * 32)


def test_account_leaves__inputs__bind_book_nonce_and_counters():
    leaf = account_leaves(**_inputs(3))[2]
    assert leaf.state_nonce == 2 and leaf.pending_base_im_wad == 6 and leaf.pending_base_mm_wad == 2
    assert leaf.positions_hash == positions_hash([3, 1], [_inputs(3)["books_wad"][2][3], _inputs(3)["books_wad"][2][1]])
    assert leaf.worst_loss_wad == leaf.maintenance_margin_wad


def test_epoch_trees__two_keepers_any_order__same_root_and_proofs():
    a, b = _trees(1_000, order_seed=None), _trees(1_000, order_seed=7)
    assert a.accounts.root == b.accounts.root
    account = _inputs(1)["addresses"][0]
    assert a.account_proof(account) == b.account_proof(account)


def test_proof_for__file_written__proof_verifies_against_signed_root(tmp_path):
    trees = _trees(300)
    store = EpochStore(tmp_path)
    path = store.write(trees, _root(trees), [b"\x01" * 65])
    assert json.loads(path.read_text())["root"]["accounts_root"] == "0x" + trees.accounts.root.hex()
    fresh = EpochStore(tmp_path)  # another process reading the file
    account = _inputs(300)["addresses"][123]
    doc = proof_for(fresh, ENGINE, account)
    assert doc["epoch"] == 1 and doc["leaf"]["account"].lower() == account
    leaf, proof = leaf_args(doc)
    from offchain.chain.leaves import AccountLeaf
    h = AccountLeaf(*leaf).leaf_hash(trees.engine, 1)
    assert verify(proof, trees.accounts.root, h)


def test_proof_for__latest_epoch_and_unknowns(tmp_path):
    store = EpochStore(tmp_path)
    for epoch in (1, 2):
        t = _trees(10, epoch=epoch)
        store.write(t, _root(t), [])
    assert proof_for(store, ENGINE, _inputs(1)["addresses"][0])["epoch"] == 2
    assert proof_for(store, ENGINE, _inputs(1)["addresses"][0], epoch=1)["epoch"] == 1
    assert proof_for(store, ENGINE, "0x" + "99" * 20) is None
    assert proof_for(store, ENGINE, _inputs(1)["addresses"][0], epoch=9) is None
    with pytest.raises(UserError, match="account: expected a 0x-prefixed 20-byte address"):
        proof_for(store, ENGINE, "0x1234")


def test_epoch_store__tampered_file__refused(tmp_path):
    trees = _trees(5)
    store = EpochStore(tmp_path)
    path = store.write(trees, _root(trees), [])
    doc = json.loads(path.read_text())
    doc["account_leaves"][0]["initial_margin_wad"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="rebuild accounts root"):
        EpochStore(tmp_path).load(ENGINE)


def test_metrics_server__proof_route__200_404_400(tmp_path):
    trees = _trees(20)
    store = EpochStore(tmp_path)
    store.write(trees, _root(trees), [])
    server = MetricsServer(KeeperMetrics(), 0, proofs=lambda a: proof_for(store, ENGINE, a)).start()
    base = f"http://127.0.0.1:{server.port}/proof/"
    try:
        with urllib.request.urlopen(base + _inputs(1)["addresses"][0]) as r:
            doc = json.loads(r.read())
            assert r.status == 200 and doc["leaf"]["account"].lower() == _inputs(1)["addresses"][0]
        for path, code in ((("0x" + "99" * 20), 404), ("nonsense", 400)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path)
            assert err.value.code == code and "account" in json.loads(err.value.read())["error"]
    finally:
        server.stop()

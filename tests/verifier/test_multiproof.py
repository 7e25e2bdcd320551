"""Merkle multiproofs: offchain/chain/merkle.py builds them, contracts/modules/multiproof.vy
checks them (through a harness on titanoboa). Same roots as the single-leaf tree for every
tree size and subset, leaves in any order; a proof that leaves a leaf out, reuses one, or
has elements left over is refused on both sides."""

from __future__ import annotations

import os
import random
from pathlib import Path

import boa
import pytest

from offchain.chain.merkle import (
    OP_CARRY,
    OP_HASH_PROOF,
    MerkleError,
    MerkleTree,
    MultiProof,
    _pack_ops,
    process_multiproof,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness():
    source = (Path(__file__).parent / "MultiproofHarness.vy").read_text()
    return boa.loads(source, filename=str(ROOT / "contracts" / "MultiproofHarness.vy"))


def test_multiproof__every_tree_size_and_subset__contract_equals_python_equals_root(harness):
    rng = random.Random(7)
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100, 257):
        hashes = [os.urandom(32) for _ in range(n)]
        tree = MerkleTree(hashes)
        for k in sorted({1, 2, 3, min(n, 16), min(n, 32)}):
            chosen = rng.sample(hashes, min(k, n))
            mp = tree.multiproof(chosen)
            assert process_multiproof(mp, chosen) == tree.root
            assert bytes(harness.root(chosen, mp.as_args())) == tree.root, (n, k)


def test_multiproof__sixteen_of_256__fewer_siblings_than_single_proofs():
    hashes = [os.urandom(32) for _ in range(256)]
    tree = MerkleTree(hashes)
    mp = tree.multiproof(hashes[:16])
    assert len(mp.proof) < sum(len(tree.proof(h)) for h in hashes[:16]) // 2


def test_multiproof__forged_inputs__refused_by_both(harness):
    hashes = [os.urandom(32) for _ in range(40)]
    tree = MerkleTree(hashes)
    chosen = hashes[3:9]
    mp = tree.multiproof(chosen)
    args = mp.as_args()
    # a leaf that is not in the tree in place of a true one: another root
    fake = [os.urandom(32)] + chosen[1:]
    assert bytes(harness.root(fake, args)) != tree.root
    # one leaf dropped: a node is missing or one is left over
    with pytest.raises(MerkleError):
        process_multiproof(mp, chosen[:-1])
    with boa.reverts():
        harness.root(chosen[:-1], args)
    # the same leaf twice in the order (the other leaf never hashed in)
    twice = mp.order & ~0xFF | ((mp.order >> 8) & 0xFF)
    with pytest.raises(MerkleError, match="permutation"):
        process_multiproof(MultiProof(mp.proof, mp.flags, twice), chosen)
    with boa.reverts("multiproof: order is not a permutation of the leaves"):
        harness.root(chosen, (args[0], args[1], twice))
    # a spare proof element, or ops that end early: something left over
    with boa.reverts("multiproof: nodes or proof elements left over"):
        harness.root(chosen, (args[0] + [os.urandom(32)], args[1], args[2]))
    with boa.reverts("multiproof: nodes or proof elements left over"):
        harness.root(chosen, (args[0], [], args[2]))
    # more hashes with the proof than the proof holds
    with boa.reverts("multiproof: proof too short"):
        harness.root(chosen[:1], ([], list(_pack_ops([OP_HASH_PROOF])), 0))
    # a carried leaf alone "proves" only a one-leaf tree: never the root of this one
    assert bytes(harness.root(chosen[:1], ([], list(_pack_ops([OP_CARRY])), 0))) != tree.root
    with boa.reverts("multiproof: no leaves"):
        harness.root([], ([], [], 0))


def test_multiproof__leaf_not_in_tree__python_names_it():
    tree = MerkleTree([os.urandom(32) for _ in range(5)])
    with pytest.raises(MerkleError, match=r"leaf_hashes\[0\]"):
        tree.multiproof([os.urandom(32)])

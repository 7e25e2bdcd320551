"""Market multiproofs over the positional tree: offchain/chain/merkle.py builds them,
contracts/modules/multiproof.vy checks them (through a harness on titanoboa). Same roots as
the tree for every instrument count (1, powers of two and their neighbours) and subset of
slots, leaves in any order; the attacker's inputs of the positional format (a leaf at
another slot, an id twice, id 0 or past the count, a slot shown empty while it holds a leaf,
a proof short or long) are refused on both sides."""

from __future__ import annotations

import os
import random
from pathlib import Path

import boa
import pytest

from offchain.chain.merkle import (
    EMPTY,
    MerkleError,
    MultiProof,
    PositionalTree,
    parent,
    process_multiproof,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness():
    source = (Path(__file__).parent / "MultiproofHarness.vy").read_text()
    return boa.loads(source, filename=str(ROOT / "contracts" / "MultiproofHarness.vy"))


def _tree(count: int, rng: random.Random, holes: float = 0.2) -> tuple[PositionalTree, dict[int, bytes]]:
    leaves = {i: os.urandom(32) for i in range(1, count + 1) if rng.random() >= holes}
    return PositionalTree(leaves, count), leaves


def test_multiproof__every_count_and_subset__contract_equals_python_equals_root(harness):
    rng = random.Random(7)
    for count in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100, 257):
        tree, leaves = _tree(count, rng, holes=0.0 if count < 4 else 0.2)
        ids = sorted(leaves)
        for k in sorted({1, 2, 3, min(len(ids), 16), min(len(ids), 32)}):
            chosen = rng.sample(ids, min(k, len(ids)))
            hashes = [leaves[i] for i in chosen]
            mp = tree.multiproof(chosen)
            assert process_multiproof(mp, chosen, hashes, count) == tree.root
            assert bytes(harness.root(chosen, hashes, mp.as_args(), count)) == tree.root, (count, k)


def test_multiproof__one_instrument__root_is_the_pair_with_empty_slot_zero(harness):
    """count 1: two slots, slot 0 (no instrument) empty; the proof is that empty node."""
    h = os.urandom(32)
    tree = PositionalTree({1: h}, 1)
    assert tree.depth == 1 and tree.root == parent(EMPTY, h)
    mp = tree.multiproof([1])
    assert mp.proof == (EMPTY,)
    assert bytes(harness.root([1], [h], mp.as_args(), 1)) == tree.root
    # an empty market: no slot to prove, the root is empty
    assert PositionalTree({}, 0).root == EMPTY


def test_multiproof__sixteen_of_256__fewer_siblings_than_single_proofs():
    rng = random.Random(1)
    tree, leaves = _tree(256, rng, holes=0.0)
    ids = list(range(1, 17))
    mp = tree.multiproof(ids)
    assert len(mp.proof) < sum(len(tree.proof(i)) for i in ids) // 2


def test_multiproof__leaf_at_another_slot__refused(harness):
    """A leaf proven at the slot of another id: the same hash and the other slot's proof
    give another root (slots are positions, not sorted pairs)."""
    rng = random.Random(3)
    tree, leaves = _tree(20, rng, holes=0.0)
    mp = tree.multiproof([5])
    assert bytes(harness.root([6], [leaves[5]], mp.as_args(), 20)) != tree.root
    assert bytes(harness.root([5], [leaves[6]], mp.as_args(), 20)) != tree.root
    # two leaves swapped between their slots (the caller's order kept): another root
    mp2 = tree.multiproof([5, 9])
    assert bytes(harness.root([5, 9], [leaves[9], leaves[5]], mp2.as_args(), 20)) != tree.root


def test_multiproof__same_id_twice__refused_by_both(harness):
    rng = random.Random(4)
    tree, leaves = _tree(12, rng, holes=0.0)
    mp = tree.multiproof([3, 4])
    with pytest.raises(MerkleError, match="listed twice"):
        tree.multiproof([3, 3])
    with pytest.raises(MerkleError, match="not strictly ascending"):
        process_multiproof(mp, [3, 3], [leaves[3], leaves[3]], 12)
    with boa.reverts("multiproof: ids not strictly ascending (an id twice)"):
        harness.root([3, 3], [leaves[3], leaves[3]], mp.as_args(), 12)
    # an order naming one leaf twice (the other never hashed in)
    twice = (mp.order & ~0xFF) | ((mp.order >> 8) & 0xFF)
    with boa.reverts("multiproof: ids not strictly ascending (an id twice)"):
        harness.root([3, 4], [leaves[3], leaves[4]], (list(mp.proof), twice), 12)
    with boa.reverts("multiproof: order names no leaf"):
        harness.root([3, 4], [leaves[3], leaves[4]], (list(mp.proof), 5), 12)


def test_multiproof__id_zero_or_beyond_the_count__refused_by_both(harness):
    """Slot 0 is no instrument; a slot past the committed count is not in the signers' tree
    (a padding slot of a non-power-of-two count, or one listed after the root)."""
    rng = random.Random(5)
    tree, leaves = _tree(5, rng, holes=0.0)          # 8 slots: 6 and 7 are padding
    proof6 = [tree.layers[0][7], tree.layers[1][2], tree.layers[2][0]]
    with pytest.raises(MerkleError, match="outside 1..5"):
        tree.multiproof([6])
    with pytest.raises(MerkleError, match="beyond the root's instrument count"):
        process_multiproof(MultiProof(tuple(proof6), 0), [6], [os.urandom(32)], 5)
    with boa.reverts("multiproof: instrument id beyond the root's count"):
        harness.root([6], [os.urandom(32)], (proof6, 0), 5)
    with boa.reverts("multiproof: ids not strictly ascending (an id twice)"):
        harness.root([0], [os.urandom(32)], (proof6, 0), 5)


def test_multiproof__empty_slot_shown_for_a_leaf__another_root():
    """Showing a slot empty (node zero) where the tree holds a leaf gives another root, and
    an empty slot of the tree proves empty with its own proof (what challenge_market uses)."""
    leaves = {1: os.urandom(32), 2: os.urandom(32), 4: os.urandom(32)}
    tree = PositionalTree(leaves, 4)
    assert process_multiproof(tree.multiproof([2]), [2], [EMPTY], 4) != tree.root
    assert process_multiproof(tree.multiproof([3]), [3], [EMPTY], 4) == tree.root


def test_multiproof__short_or_long_proof__refused_by_both(harness):
    rng = random.Random(6)
    tree, leaves = _tree(40, rng, holes=0.0)
    chosen = [7, 3, 20, 21]
    hashes = [leaves[i] for i in chosen]
    mp = tree.multiproof(chosen)
    with pytest.raises(MerkleError, match="left over"):
        process_multiproof(MultiProof(mp.proof + (os.urandom(32),), mp.order), chosen, hashes, 40)
    with boa.reverts("multiproof: proof elements left over"):
        harness.root(chosen, hashes, (list(mp.proof) + [os.urandom(32)], mp.order), 40)
    with pytest.raises(MerkleError, match="too short"):
        process_multiproof(MultiProof(mp.proof[:-1], mp.order), chosen, hashes, 40)
    with boa.reverts("multiproof: proof too short"):
        harness.root(chosen, hashes, (list(mp.proof[:-1]), mp.order), 40)
    # a leaf dropped with its entry: its sibling is now missing from the proof
    with boa.reverts():
        harness.root(chosen[:-1], hashes[:-1], mp.as_args(), 40)
    with boa.reverts("multiproof: no leaves"):
        harness.root([], [], ([], 0), 40)
    # a fake leaf with the true proof: another root
    assert bytes(harness.root(chosen, [os.urandom(32)] + hashes[1:], mp.as_args(), 40)) != tree.root
    # a smaller count (one level less) with the same proof: an element is left over
    with boa.reverts("multiproof: proof elements left over"):
        harness.root(chosen, hashes, mp.as_args(), 31)


def test_multiproof__python_names_bad_input():
    tree = PositionalTree({1: os.urandom(32)}, 3)
    with pytest.raises(MerkleError, match="slot 4 outside 1..3"):
        PositionalTree({4: os.urandom(32)}, 3)
    with pytest.raises(MerkleError, match="non-zero 32-byte"):
        PositionalTree({1: EMPTY}, 3)
    with pytest.raises(MerkleError, match="expected 1..32 leaves"):
        tree.multiproof([])

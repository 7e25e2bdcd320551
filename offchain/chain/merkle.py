"""The epoch trees: accounts in a sorted-pair Merkle tree (snekmate's
`merkle_proof_verification`), market leaves in a positional tree keyed by instrument id.

    tree = MerkleTree(leaf_hashes)      # 32-byte leaf hashes (already hashed twice)
    tree.root                           # bytes32; bytes(32) for an empty tree
    tree.proof(leaf_hash)               # sibling hashes from the leaf up to the root
    verify(proof, tree.root, leaf_hash) # what the contract computes

    market = PositionalTree({instrument_id: leaf_hash}, count)   # count: the registry's
    market.multiproof(ids)              # one MultiProof for those slots, in the caller's order
    process_multiproof(mp, ids, leaf_hashes, count)               # the root the contracts compute

Sorted pairs (OpenZeppelin / snekmate): a parent is keccak256 of its two children in
ascending byte order, so a proof needs no left/right flags. Leaves are hashed twice by their
encoders (`offchain.chain.leaves`), so an inner node (keccak of 64 bytes) can never pass as a
leaf. Layout: the leaf hashes sorted ascending form the bottom layer (so every keeper that
holds the same leaves builds the same root, whatever order it computed them in); each layer
pairs neighbours (0,1), (2,3), ...; an odd last node moves up unchanged.

Positional (contracts/modules/multiproof.vy): slot i of the bottom layer holds instrument id
i's leaf hash, every other slot (0, instruments without a leaf, the padding up to a power of
two) the empty node, zero; the tree has `count.bit_length()` levels; a parent is keccak256(left
|| right) by position, and a parent of two empty nodes is empty. So a root names one leaf (or
none) per slot, and proving a slot empty is as easy as proving a leaf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sha3 import keccak_256


class MerkleError(ValueError):
    """A leaf that is not in the tree, or a malformed leaf hash."""


def hash_pair(a: bytes, b: bytes) -> bytes:
    """keccak256 of the two nodes in ascending order (snekmate `_hash_pair`)."""
    return keccak_256(a + b if a <= b else b + a).digest()


def process_proof(proof: Iterable[bytes], leaf_hash: bytes) -> bytes:
    node = leaf_hash
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(proof: Iterable[bytes], root: bytes, leaf_hash: bytes) -> bool:
    return process_proof(proof, leaf_hash) == root


class MerkleTree:
    """All layers of the tree, bottom first; proofs are read from them."""

    def __init__(self, leaf_hashes: Sequence[bytes]):
        for i, h in enumerate(leaf_hashes[:1] if len(leaf_hashes) > 64 else leaf_hashes):
            if not isinstance(h, bytes | bytearray) or len(h) != 32:
                raise MerkleError(f"leaf_hashes[{i}]: expected 32 bytes, got {h!r}")
        bottom = sorted(bytes(h) for h in leaf_hashes)
        self._index = {h: i for i, h in enumerate(bottom)}
        if len(self._index) != len(bottom):
            raise MerkleError("leaf_hashes: duplicate leaves (each leaf must be distinct)")
        self.layers: list[list[bytes]] = [bottom]
        layer = bottom
        while len(layer) > 1:
            pairs = [hash_pair(layer[i], layer[i + 1]) for i in range(0, len(layer) - 1, 2)]
            if len(layer) % 2:
                pairs.append(layer[-1])
            self.layers.append(pairs)
            layer = pairs

    def __len__(self) -> int:
        return len(self.layers[0])

    def __contains__(self, leaf_hash: bytes) -> bool:
        return bytes(leaf_hash) in self._index

    @property
    def root(self) -> bytes:
        return self.layers[-1][0] if self.layers[0] else bytes(32)

    @property
    def depth(self) -> int:
        """Longest proof length."""
        return len(self.layers) - 1

    def proof(self, leaf_hash: bytes) -> list[bytes]:
        i = self._index.get(bytes(leaf_hash))
        if i is None:
            raise MerkleError(f"leaf_hash: 0x{bytes(leaf_hash).hex()} is not a leaf of this tree")
        out = []
        for layer in self.layers[:-1]:
            sibling = i ^ 1
            if sibling < len(layer):
                out.append(layer[sibling])
            i >>= 1
        return out


# Leaves per multiproof (the engine's MAX_POSITIONS) and tree levels (counts below 2**32):
# contracts/modules/multiproof.vy.
MAX_MULTI_LEAVES = 32
MAX_DEPTH = 32
EMPTY = bytes(32)


def parent(left: bytes, right: bytes) -> bytes:
    """A positional node from its children; two empty children make an empty node."""
    if left == EMPTY and right == EMPTY:
        return EMPTY
    return keccak_256(left + right).digest()


@dataclass(frozen=True)
class MultiProof:
    """Proof of several slots of a positional tree at once (the contracts' `MultiProof`).

    `proof`: the siblings that are not computed from the proven leaves, level by level from
    the bottom, left to right. `order` byte j (bits 8j..8j+7) is the index, in the caller's
    leaf list, of the leaf with the j-th smallest id, so the leaves travel in whatever order
    the caller needs (e.g. aligned with a book's sizes in storage order)."""

    proof: tuple[bytes, ...]
    order: int

    def as_args(self) -> tuple:
        return (list(self.proof), self.order)


def _depth(count: int) -> int:
    if not 0 <= count < 2**MAX_DEPTH:
        raise MerkleError(f"count: expected 0..2**{MAX_DEPTH}-1 instruments, got {count}")
    return count.bit_length()


def _walk(slots: Sequence[int], nodes: list[bytes], count: int, sibling) -> bytes:
    """The root from `nodes` at ascending `slots`, a missing sibling from `sibling(level, slot)`."""
    slots = list(slots)
    for level in range(_depth(count)):
        up_slots, up_nodes = [], []
        j = 0
        while j < len(slots):
            s, h = slots[j], nodes[j]
            if s % 2 == 0 and j + 1 < len(slots) and slots[j + 1] == s + 1:
                h = parent(h, nodes[j + 1])
                j += 2
            else:
                other = sibling(level, s ^ 1)
                h = parent(h, other) if s % 2 == 0 else parent(other, h)
                j += 1
            up_slots.append(s >> 1)
            up_nodes.append(h)
        slots, nodes = up_slots, up_nodes
    return nodes[0]


def _sorted(ids: Sequence[int], count: int) -> tuple[list[int], int]:
    """The caller's indices by ascending id and the packed `order`; raises MerkleError where
    the contract reverts (no ids, more than 32, an id twice, outside 1..count)."""
    k = len(ids)
    if not 0 < k <= MAX_MULTI_LEAVES:
        raise MerkleError(f"ids: expected 1..{MAX_MULTI_LEAVES} leaves, got {k}")
    by_id = sorted(range(k), key=lambda j: ids[j])
    for a, b in zip(by_id, by_id[1:], strict=False):
        if ids[a] == ids[b]:
            raise MerkleError(f"ids: instrument id {ids[a]} is listed twice")
    bad = [i for i in ids if not 1 <= i <= count]
    if bad:
        raise MerkleError(f"ids: {bad} outside 1..{count} (the root's instrument count)")
    return by_id, sum(j << (8 * q) for q, j in enumerate(by_id))


def process_multiproof(mp: MultiProof, ids: Sequence[int], leaf_hashes: Sequence[bytes], count: int) -> bytes:
    """The root the contracts compute from `mp` for `leaf_hashes` at slots `ids` (caller's
    order) in a tree of `count` instruments; raises MerkleError where the contract reverts."""
    k = len(leaf_hashes)
    if len(ids) != k:
        raise MerkleError(f"ids: {len(ids)} ids for {k} leaves")
    if not 0 < k <= MAX_MULTI_LEAVES:
        raise MerkleError(f"leaf_hashes: expected 1..{MAX_MULTI_LEAVES} leaves, got {k}")
    idx = [(mp.order >> (8 * j)) & 0xFF for j in range(k)]
    if any(i >= k for i in idx):
        raise MerkleError(f"order: names leaf {max(idx)} of {k}")
    slots = [ids[i] for i in idx]
    if any(b <= a for a, b in zip([0, *slots], slots, strict=False)):
        raise MerkleError(f"order: ids {slots} not strictly ascending (an id twice, or id 0)")
    if slots[-1] > count:
        raise MerkleError(f"ids: {slots[-1]} beyond the root's instrument count {count}")
    proof = iter(mp.proof)
    used = [0]

    def sibling(_level, _slot):
        used[0] += 1
        try:
            return next(proof)
        except StopIteration:
            raise MerkleError("multiproof: proof too short") from None

    root = _walk(slots, [bytes(leaf_hashes[i]) for i in idx], count, sibling)
    if used[0] != len(mp.proof):
        raise MerkleError(f"multiproof: {len(mp.proof) - used[0]} proof elements left over")
    return root


def verify_multiproof(mp: MultiProof, root: bytes, ids: Sequence[int], leaf_hashes: Sequence[bytes],
                      count: int) -> bool:
    try:
        return process_multiproof(mp, ids, leaf_hashes, count) == root
    except MerkleError:
        return False


class PositionalTree:
    """The market tree: `leaves` {slot (instrument id): leaf hash} over ids 1..count, every
    other slot empty. All layers are kept (2**depth <= 2 count + 1 nodes at the bottom)."""

    def __init__(self, leaves: Mapping[int, bytes], count: int):
        depth = _depth(count)
        for i, h in leaves.items():
            if not isinstance(i, int) or not 1 <= i <= count:
                raise MerkleError(f"leaves: slot {i!r} outside 1..{count} (the instrument count)")
            if not isinstance(h, bytes | bytearray) or len(h) != 32 or bytes(h) == EMPTY:
                raise MerkleError(f"leaves[{i}]: expected a non-zero 32-byte hash, got {h!r}")
        self.count = count
        bottom = [EMPTY] * (1 << depth)
        for i, h in leaves.items():
            bottom[i] = bytes(h)
        self.layers: list[list[bytes]] = [bottom]
        for _ in range(depth):
            below = self.layers[-1]
            self.layers.append([parent(below[i], below[i + 1]) for i in range(0, len(below), 2)])

    @property
    def depth(self) -> int:
        return len(self.layers) - 1

    @property
    def root(self) -> bytes:
        return self.layers[-1][0]

    def node(self, slot: int) -> bytes:
        """The bottom node at `slot` (EMPTY for a slot without a leaf)."""
        return self.layers[0][slot]

    def proof(self, slot: int) -> list[bytes]:
        """The single proof of `slot` (1..count): its siblings from the bottom up."""
        return list(self.multiproof([slot]).proof)

    def multiproof(self, ids: Sequence[int]) -> MultiProof:
        """One proof of the slots `ids` (distinct, in the order the caller passes the leaves)."""
        by_id, order = _sorted(ids, self.count)
        proof: list[bytes] = []

        def sibling(level, slot):
            proof.append(self.layers[level][slot])
            return self.layers[level][slot]

        slots = [ids[j] for j in by_id]
        _walk(slots, [self.layers[0][s] for s in slots], self.count, sibling)
        return MultiProof(tuple(proof), order)

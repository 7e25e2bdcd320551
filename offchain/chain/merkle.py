"""Merkle tree with sorted pairs, as snekmate's `merkle_proof_verification` checks it.

    tree = MerkleTree(leaf_hashes)      # 32-byte leaf hashes (already hashed twice)
    tree.root                           # bytes32; bytes(32) for an empty tree
    tree.proof(leaf_hash)               # sibling hashes from the leaf up to the root
    verify(proof, tree.root, leaf_hash) # what the contract computes
    mp = tree.multiproof(leaf_hashes)   # one proof for several leaves (MultiProof)
    process_multiproof(mp, leaf_hashes) # the root the contracts compute from it

Convention (OpenZeppelin / snekmate): a parent is keccak256 of its two children in ascending
byte order, so a proof needs no left/right flags. Leaves are hashed twice by their encoders
(`offchain.chain.leaves`), so an inner node (keccak of 64 bytes) can never pass as a leaf.
Layout: the leaf hashes sorted ascending form the bottom layer (so every keeper that holds
the same leaves builds the same root, whatever order it computed them in); each layer pairs
neighbours (0,1), (2,3), ...; an odd last node moves up unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


# Multiproof op codes, 2 bits each (contracts/modules/multiproof.vy): pop one node from the
# queue and hash it with the next queued node, or with the next proof element, or carry it up
# unchanged (the odd last node of a layer); 0 ends the list.
OP_END, OP_HASH_QUEUE, OP_HASH_PROOF, OP_CARRY = 0, 1, 2, 3
OPS_PER_WORD = 128
MAX_MULTI_LEAVES = 32
MAX_MULTI_OPS = 1024


@dataclass(frozen=True)
class MultiProof:
    """Proof of several leaves at once (the contracts' `MultiProof` struct).

    `order` byte k (bits 8k..8k+7) is the index, in the caller's leaf list, of the k-th leaf of
    the verifier's queue (leaves in tree order: ascending hash), so the leaves travel in
    whatever order the caller needs (e.g. aligned with a book's sizes). `flags` packs the ops,
    2 bits each, op i in word i // 128 at bit 2 (i % 128). The verifier processes a queue that
    starts with the leaves and appends every node it computes: the tree is walked layer by
    layer, left to right, so each layer's nodes are queued in order."""

    proof: tuple[bytes, ...]
    flags: tuple[int, ...]
    order: int

    def as_args(self) -> tuple:
        return (list(self.proof), list(self.flags), self.order)


def _pack_ops(ops: Sequence[int]) -> tuple[int, ...]:
    words = [0] * ((len(ops) + OPS_PER_WORD - 1) // OPS_PER_WORD)
    for i, op in enumerate(ops):
        words[i // OPS_PER_WORD] |= op << (2 * (i % OPS_PER_WORD))
    return tuple(words)


def process_multiproof(mp: MultiProof, leaf_hashes: Sequence[bytes]) -> bytes:
    """The root the contracts compute from `mp` and the leaves in the caller's order; raises
    MerkleError where the contract reverts (bad order, ops that run out of nodes or proof,
    nodes or proof left over)."""
    k = len(leaf_hashes)
    if not 0 < k <= MAX_MULTI_LEAVES:
        raise MerkleError(f"leaf_hashes: expected 1..{MAX_MULTI_LEAVES} leaves, got {k}")
    idx = [(mp.order >> (8 * j)) & 0xFF for j in range(k)]
    if sorted(idx) != list(range(k)):
        raise MerkleError(f"order: expected a permutation of 0..{k - 1}, got {idx}")
    queue = [bytes(leaf_hashes[i]) for i in idx]
    head, p = 0, 0
    for i in range(MAX_MULTI_OPS):
        word = i // OPS_PER_WORD
        op = (mp.flags[word] >> (2 * (i % OPS_PER_WORD))) & 3 if word < len(mp.flags) else OP_END
        if op == OP_END:
            break
        if head >= len(queue):
            raise MerkleError(f"flags: op {i} has no queued node")
        a = queue[head]
        head += 1
        if op == OP_HASH_QUEUE:
            if head >= len(queue):
                raise MerkleError(f"flags: op {i} has no second queued node")
            a = hash_pair(a, queue[head])
            head += 1
        elif op == OP_HASH_PROOF:
            if p >= len(mp.proof):
                raise MerkleError(f"flags: op {i} needs proof element {p}, the proof has {len(mp.proof)}")
            a = hash_pair(a, mp.proof[p])
            p += 1
        queue.append(a)
    if len(queue) - head != 1 or p != len(mp.proof):
        raise MerkleError(f"multiproof: {len(queue) - head} nodes and {len(mp.proof) - p} proof "
                          f"elements left, expected 1 and 0")
    return queue[head]


def verify_multiproof(mp: MultiProof, root: bytes, leaf_hashes: Sequence[bytes]) -> bool:
    try:
        return process_multiproof(mp, leaf_hashes) == root
    except MerkleError:
        return False


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

    def multiproof(self, leaf_hashes: Sequence[bytes]) -> MultiProof:
        """One proof of every leaf in `leaf_hashes` (distinct, in the order the caller will
        pass them): each shared inner node is computed once, and siblings that are
        themselves proven come from the queue instead of the proof."""
        k = len(leaf_hashes)
        if not 0 < k <= MAX_MULTI_LEAVES:
            raise MerkleError(f"leaf_hashes: expected 1..{MAX_MULTI_LEAVES} leaves, got {k}")
        pos = []
        for j, h in enumerate(leaf_hashes):
            i = self._index.get(bytes(h))
            if i is None:
                raise MerkleError(f"leaf_hashes[{j}]: 0x{bytes(h).hex()} is not a leaf of this tree")
            pos.append(i)
        if len(set(pos)) != k:
            raise MerkleError("leaf_hashes: a leaf is listed twice")
        by_pos = sorted(range(k), key=lambda j: pos[j])
        order = sum(j << (8 * q) for q, j in enumerate(by_pos))
        ops: list[int] = []
        proof: list[bytes] = []
        current = sorted(pos)
        for layer in self.layers[:-1]:
            known = set(current)
            nxt = []
            for i in current:
                if i % 2 == 1 and i - 1 in known:
                    continue        # consumed with its left neighbour
                if i == len(layer) - 1 and len(layer) % 2 == 1:
                    ops.append(OP_CARRY)
                elif i % 2 == 0 and i + 1 in known:
                    ops.append(OP_HASH_QUEUE)
                else:
                    ops.append(OP_HASH_PROOF)
                    proof.append(layer[i ^ 1])
                nxt.append(i >> 1)
            current = nxt
        if len(ops) > MAX_MULTI_OPS:
            raise MerkleError(f"multiproof: {len(ops)} ops, the contracts take at most {MAX_MULTI_OPS}")
        return MultiProof(tuple(proof), _pack_ops(ops), order)

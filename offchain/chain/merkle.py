"""Merkle tree with sorted pairs, as snekmate's `merkle_proof_verification` checks it.

    tree = MerkleTree(leaf_hashes)      # 32-byte leaf hashes (already hashed twice)
    tree.root                           # bytes32; bytes(32) for an empty tree
    tree.proof(leaf_hash)               # sibling hashes from the leaf up to the root
    verify(proof, tree.root, leaf_hash) # what the contract computes

Convention (OpenZeppelin / snekmate): a parent is keccak256 of its two children in ascending
byte order, so a proof needs no left/right flags. Leaves are hashed twice by their encoders
(`offchain.chain.leaves`), so an inner node (keccak of 64 bytes) can never pass as a leaf.
Layout: the leaf hashes sorted ascending form the bottom layer (so every keeper that holds
the same leaves builds the same root, whatever order it computed them in); each layer pairs
neighbours (0,1), (2,3), ...; an odd last node moves up unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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

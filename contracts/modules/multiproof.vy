# pragma version 0.4.3
"""
@title multiproof
@custom:contract-name multiproof
@license MIT
@notice Merkle multiproof over the epoch market tree (offchain/chain/merkle.py
        `PositionalTree`): a positional tree in which slot i holds instrument id i's leaf
        (leaves already hashed twice by the caller), slot 0 and the slots of instruments
        without a leaf hold the empty node (zero), and the tree has as many levels as the
        root's instrument count has bits. A parent is keccak256(left, right) by position; a
        parent of two empty nodes is empty (zero), so empty subtrees cost nothing to build.
        One proof for k leaves costs one hash per inner node on their paths.
@dev The slots (the leaves' instrument ids) decide which nodes are computed and which come
     from the proof: no ops, no flags. The leaves are taken in ascending id order through
     `order` (byte j: the caller's index of the j-th), strictly ascending, so an id given
     twice is refused and `order` is a permutation. Every id must be in 1..count (the
     root's committed instrument count): slot 0 is never an instrument, and a slot past
     the count is not in the tree the signers committed to. A leaf hash is never zero
     (keccak), so a computed path node is never taken for an empty one.
     `_root` takes the proof in memory; `_root_at` reads it from the call data where the
     caller's ABI encoding put a bytes32[] (no copy: a memory copy of a proof argument
     reserves its whole 512-hash bound, whose memory expansion every later word pays for).
"""

# Leaves per multiproof (the engine's MAX_POSITIONS), proof elements (32 leaves x 16
# levels), tree levels (instrument counts below 2**32).
MAX_LEAVES: constant(uint256) = 32
MAX_PROOF: constant(uint256) = 512
MAX_DEPTH: constant(uint256) = 32


struct MultiProof:
    # sibling hashes, level by level from the bottom, left to right within a level
    proof: DynArray[bytes32, MAX_PROOF]
    # byte j: index in the caller's leaf list of the j-th leaf in ascending id order
    order: uint256


@internal
@pure
def _parent(left: bytes32, right: bytes32) -> bytes32:
    """
    @dev A node from its two children by position; two empty children make an empty node.
    """
    if left == empty(bytes32) and right == empty(bytes32):
        return empty(bytes32)
    # abi_encode of two words is the 64 bytes concat would build, for less copying
    return keccak256(abi_encode(left, right))


@internal
@pure
def _depth(count: uint256) -> uint256:
    """
    @dev Levels of a tree whose slots 0..count are addressable: the bit length of `count`.
    """
    d: uint256 = 0
    for _: uint256 in range(MAX_DEPTH):
        if count >> d == 0:
            break
        d = unsafe_add(d, 1)
    assert count >> d == 0, "multiproof: instrument count above 2**32"
    return d


@internal
@pure
def _root(ids: DynArray[uint256, MAX_LEAVES], leaves: DynArray[bytes32, MAX_LEAVES], mp: MultiProof,
          count: uint256) -> bytes32:
    """
    @dev The root `mp` proves for `leaves` at slots `ids` (caller's order, aligned) in a
         tree of `count` instruments. Reverts "multiproof: <reason>" for no leaves, ids not
         strictly ascending through `order` (an id twice), an id outside 1..count, a proof
         too short or too long.
    """
    k: uint256 = len(leaves)
    assert k != 0, "multiproof: no leaves"
    slot: uint256[MAX_LEAVES] = empty(uint256[MAX_LEAVES])
    node: bytes32[MAX_LEAVES] = empty(bytes32[MAX_LEAVES])
    last: uint256 = 0
    for j: uint256 in range(k, bound=MAX_LEAVES):
        i: uint256 = (mp.order >> (8 * j)) & 255
        assert i < k, "multiproof: order names no leaf"
        iid: uint256 = ids[i]
        # strictly ascending from 0: ids are >= 1 and distinct, so `order` is a permutation
        assert iid > last, "multiproof: ids not strictly ascending (an id twice)"
        last = iid
        slot[j] = iid
        node[j] = leaves[i]
    assert last <= count, "multiproof: instrument id beyond the root's count"
    n: uint256 = k
    p: uint256 = 0
    n_proof: uint256 = len(mp.proof)
    # unsafe arithmetic below: w <= j <= n <= 32, p <= n_proof <= MAX_PROOF
    for _: uint256 in range(self._depth(count), bound=MAX_DEPTH):
        w: uint256 = 0
        j: uint256 = 0
        for _r: uint256 in range(MAX_LEAVES):
            if j >= n:
                break
            s: uint256 = slot[j]
            h: bytes32 = node[j]
            if s & 1 == 0:
                if j + 1 < n and slot[j + 1] == s + 1:
                    # its right sibling is proven too: hashed from the nodes, no proof element
                    h = self._parent(h, node[j + 1])
                    j = unsafe_add(j, 2)
                else:
                    assert p < n_proof, "multiproof: proof too short"
                    h = self._parent(h, mp.proof[p])
                    p = unsafe_add(p, 1)
                    j = unsafe_add(j, 1)
            else:
                assert p < n_proof, "multiproof: proof too short"
                h = self._parent(mp.proof[p], h)
                p = unsafe_add(p, 1)
                j = unsafe_add(j, 1)
            slot[w] = s >> 1
            node[w] = h
            w = unsafe_add(w, 1)
        n = w
    assert p == n_proof, "multiproof: proof elements left over"
    return node[0]


@internal
@view
def _root_at(ids: DynArray[uint256, MAX_LEAVES], leaves: DynArray[bytes32, MAX_LEAVES], order: uint256,
             proof_at: uint256, count: uint256) -> bytes32:
    """
    @dev `_root` with the proof read from the call data: a bytes32[] whose length word is at
         byte `proof_at` of msg.data (for an external argument declared as the offset of an
         ABI bytes32[]: 4 + that offset), its hashes after it. Each hash is read only while
         p < its length, and a read past the call data reverts (slice's bounds check), so the
         proof is exactly that array's elements, as `_root`'s: the same reverts, the same root.
    """
    k: uint256 = len(leaves)
    assert k != 0, "multiproof: no leaves"
    slot: uint256[MAX_LEAVES] = empty(uint256[MAX_LEAVES])
    node: bytes32[MAX_LEAVES] = empty(bytes32[MAX_LEAVES])
    last: uint256 = 0
    for j: uint256 in range(k, bound=MAX_LEAVES):
        i: uint256 = (order >> (8 * j)) & 255
        assert i < k, "multiproof: order names no leaf"
        iid: uint256 = ids[i]
        # strictly ascending from 0: ids are >= 1 and distinct, so `order` is a permutation
        assert iid > last, "multiproof: ids not strictly ascending (an id twice)"
        last = iid
        slot[j] = iid
        node[j] = leaves[i]
    assert last <= count, "multiproof: instrument id beyond the root's count"
    n: uint256 = k
    p: uint256 = 0
    n_proof: uint256 = convert(slice(msg.data, proof_at, 32), uint256)
    # hash p at byte `at` (checked: proof_at + 32 came from the call data)
    at: uint256 = proof_at + 32
    # unsafe arithmetic below: w <= j <= n <= 32, p < n_proof and `at` stays a readable
    # call-data offset (each read is bounds-checked before `at` grows by 32)
    for _: uint256 in range(self._depth(count), bound=MAX_DEPTH):
        w: uint256 = 0
        j: uint256 = 0
        for _r: uint256 in range(MAX_LEAVES):
            if j >= n:
                break
            s: uint256 = slot[j]
            h: bytes32 = node[j]
            if s & 1 == 0:
                if j + 1 < n and slot[j + 1] == s + 1:
                    # its right sibling is proven too: hashed from the nodes, no proof element
                    h = self._parent(h, node[j + 1])
                    j = unsafe_add(j, 2)
                else:
                    assert p < n_proof, "multiproof: proof too short"
                    h = self._parent(h, convert(slice(msg.data, at, 32), bytes32))
                    p = unsafe_add(p, 1)
                    at = unsafe_add(at, 32)
                    j = unsafe_add(j, 1)
            else:
                assert p < n_proof, "multiproof: proof too short"
                h = self._parent(convert(slice(msg.data, at, 32), bytes32), h)
                p = unsafe_add(p, 1)
                at = unsafe_add(at, 32)
                j = unsafe_add(j, 1)
            slot[w] = s >> 1
            node[w] = h
            w = unsafe_add(w, 1)
        n = w
    assert p == n_proof, "multiproof: proof elements left over"
    return node[0]

# pragma version 0.4.3
"""
@title multiproof
@custom:contract-name multiproof
@license MIT
@notice Merkle multiproof over the epoch trees' layout (offchain/chain/merkle.py): sorted
        pairs, leaves already hashed twice by the caller, the sorted leaf hashes as the
        bottom layer, an odd last node carried up unchanged. One proof for k leaves costs
        one hash per inner node on their paths, instead of k full paths.
@dev A queue starts with the leaves (in tree order, read through `order`) and gets every
     computed node appended; ops (2 bits each) pop one node and hash it with the next queued
     node (1), with the next proof element (2), or push it unchanged (3); 0 ends. Soundness
     does not depend on the ops: every computed node is a sorted-pair hash, so a root equal
     to the stored one means each leaf is a node of the tree, and a leaf hash (keccak of 32
     bytes) is never an inner node (keccak of 64 bytes). What the ops must guarantee, and
     `_root` checks, is that every leaf and every proof element is used and exactly one node
     is left: no leaf is passed without being hashed into the root. At most k nodes are
     queued at once, so a 32-slot ring holds the queue.
"""

# Leaves per multiproof (the engine's MAX_POSITIONS), proof elements, and op words
# (128 ops of 2 bits per word).
MAX_LEAVES: constant(uint256) = 32
MAX_PROOF: constant(uint256) = 512
MAX_FLAG_WORDS: constant(uint256) = 8
OPS_PER_WORD: constant(uint256) = 128
RING_MASK: constant(uint256) = MAX_LEAVES - 1

OP_END: constant(uint256) = 0
OP_HASH_QUEUE: constant(uint256) = 1
OP_HASH_PROOF: constant(uint256) = 2
OP_CARRY: constant(uint256) = 3


struct MultiProof:
    # sibling hashes, in the order the ops consume them
    proof: DynArray[bytes32, MAX_PROOF]
    # ops, 2 bits each: op i in word i // 128, bits 2 (i % 128)
    flags: DynArray[uint256, MAX_FLAG_WORDS]
    # byte k: index in the caller's leaf list of the k-th leaf in tree order
    order: uint256


@internal
@pure
def _root(leaves: DynArray[bytes32, MAX_LEAVES], mp: MultiProof) -> bytes32:
    """
    @dev The root `mp` proves for `leaves` (caller's order). Reverts "multiproof: <reason>"
         if the order is not a permutation, an op runs out of nodes or proof elements, or
         nodes or proof elements are left over.
    """
    k: uint256 = len(leaves)
    assert k != 0, "multiproof: no leaves"
    queue: bytes32[MAX_LEAVES] = empty(bytes32[MAX_LEAVES])
    used: uint256 = 0
    for j: uint256 in range(k, bound=MAX_LEAVES):
        i: uint256 = (mp.order >> (8 * j)) & 255
        assert i < k and (used >> i) & 1 == 0, "multiproof: order is not a permutation of the leaves"
        used |= 1 << i
        queue[j] = leaves[i]
    head: uint256 = 0
    tail: uint256 = k
    p: uint256 = 0
    n_proof: uint256 = len(mp.proof)
    ended: bool = False
    other: bytes32 = empty(bytes32)
    # unsafe arithmetic below: head <= tail <= k + ops < 2**11, p <= n_proof <= MAX_PROOF
    for word: uint256 in mp.flags:
        bits: uint256 = word
        for _: uint256 in range(OPS_PER_WORD):
            op: uint256 = bits & 3
            if op == OP_END:
                ended = True
                break
            bits >>= 2
            assert tail > head, "multiproof: op without a queued node"
            node: bytes32 = queue[head & RING_MASK]
            head = unsafe_add(head, 1)
            if op != OP_CARRY:
                if op == OP_HASH_QUEUE:
                    assert tail > head, "multiproof: op without a second queued node"
                    other = queue[head & RING_MASK]
                    head = unsafe_add(head, 1)
                else:
                    assert p < n_proof, "multiproof: proof too short"
                    other = mp.proof[p]
                    p = unsafe_add(p, 1)
                # sorted pair, inlined (this loop is most of a multiproof's cost); abi_encode
                # of two words is the 64 bytes concat would build, for less copying
                if convert(node, uint256) < convert(other, uint256):
                    node = keccak256(abi_encode(node, other))
                else:
                    node = keccak256(abi_encode(other, node))
            # at most k nodes are live (every op pops at least one), so the slot is free
            queue[tail & RING_MASK] = node
            tail = unsafe_add(tail, 1)
        if ended:
            break
    assert tail == head + 1 and p == len(mp.proof), "multiproof: nodes or proof elements left over"
    return queue[head & RING_MASK]

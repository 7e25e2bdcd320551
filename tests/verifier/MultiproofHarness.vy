# pragma version 0.4.3
"""
@title MultiproofHarness
@notice Test-only: exposes the multiproof module's `_root` as a view.
"""

from modules import multiproof


@external
@pure
def root(ids: DynArray[uint256, 32], leaves: DynArray[bytes32, 32], mp: multiproof.MultiProof,
         count: uint256) -> bytes32:
    return multiproof._root(ids, leaves, mp, count)

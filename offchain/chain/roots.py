"""One epoch's trees: account leaves and market leaves -> two Merkle roots, the signed
EpochRoot message, and proofs.

    tree = EpochTrees.build(engine, epoch, account_leaves, market_leaves)
    msg = tree.root_message(timestamp=t, deadline=t + 60, params_hash=h)   # eip712.EpochRoot
    oracle.post_root(msg.as_args(), sign_multi(msg, domain, signers))
    oracle.publish_epoch_data(tree.data_message(state_block).as_args(),
                              [m.as_args() for m in tree.market_leaves_by_hash()], signatures)
    leaf, proof = tree.account_proof(account)
    mp = tree.market_multiproof(instrument_ids)   # leaves in that order, one MultiProof
    engine.apply_leaf(leaf.as_args(), proof)

Every keeper that computes the same leaves builds the same roots: the trees sort their leaf
hashes (offchain.chain.merkle), so neither the account order nor the process matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from offchain.chain.eip712 import EpochData, EpochRoot
from offchain.chain.leaves import AccountLeaf, MarketLeaf, account_leaf_hashes
from offchain.chain.merkle import MerkleError, MerkleTree, MultiProof


@dataclass
class EpochTrees:
    engine: str
    epoch: int
    account_leaves: list[AccountLeaf]
    market_leaves: list[MarketLeaf]
    accounts: MerkleTree
    market: MerkleTree
    _by_account: dict[str, int] = field(default_factory=dict)
    _account_hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def build(cls, engine: str, epoch: int, account_leaves: Sequence[AccountLeaf],
              market_leaves: Sequence[MarketLeaf] = ()) -> EpochTrees:
        engine = to_checksum_address(str(getattr(engine, "address", engine)))
        leaves = list(account_leaves)
        hashes = account_leaf_hashes(engine, epoch, leaves)
        by_account = {}
        for i, leaf in enumerate(leaves):
            if leaf.account in by_account:
                raise MerkleError(f"account_leaves[{i}].account: {leaf.account} has two leaves")
            by_account[leaf.account] = i
        market = list(market_leaves)
        market_tree = MerkleTree([m.leaf_hash(engine, epoch) for m in market])
        return cls(engine, epoch, leaves, market, MerkleTree(hashes), market_tree, by_account, hashes)

    def root_message(self, timestamp: int, deadline: int, params_hash: bytes) -> EpochRoot:
        return EpochRoot(engine=self.engine, epoch=self.epoch, timestamp=timestamp, deadline=deadline,
                         params_hash=params_hash, market_root=self.market.root,
                         accounts_root=self.accounts.root, account_count=len(self.account_leaves))

    def data_message(self, state_block: int) -> EpochData:
        """The signed EpochData of `RiskOracle.publish_epoch_data` for this epoch."""
        return EpochData(engine=self.engine, epoch=self.epoch, state_block=state_block,
                         accounts_root=self.accounts.root, market_root=self.market.root)

    def market_leaves_by_hash(self) -> list[MarketLeaf]:
        """The market leaves in ascending leaf-hash order, as publish_epoch_data takes them
        (the bottom layer of the tree, so the contract rebuilds the root without sorting)."""
        return sorted(self.market_leaves, key=lambda m: m.leaf_hash(self.engine, self.epoch))

    def has_account(self, account: str) -> bool:
        return to_checksum_address(account) in self._by_account

    def account_proof(self, account: str) -> tuple[AccountLeaf, list[bytes]]:
        i = self._by_account.get(to_checksum_address(account))
        if i is None:
            raise MerkleError(f"account: {account} has no leaf in epoch {self.epoch}")
        return self.account_leaves[i], self.accounts.proof(self._account_hashes[i])

    def market_proof(self, instrument_id: int) -> tuple[MarketLeaf, list[bytes]]:
        for m in self.market_leaves:
            if m.instrument_id == instrument_id:
                return m, self.market.proof(m.leaf_hash(self.engine, self.epoch))
        raise MerkleError(f"instrument_id: {instrument_id} has no market leaf in epoch {self.epoch}")

    def market_multiproof(self, instrument_ids: Sequence[int]) -> MultiProof:
        """One multiproof of the market leaves of `instrument_ids`, in that order (the order
        the caller passes the leaves in: `market_leaves_of`)."""
        return self.market.multiproof([m.leaf_hash(self.engine, self.epoch)
                                       for m in self.market_leaves_of(instrument_ids)])

    def market_leaves_of(self, instrument_ids: Sequence[int]) -> list[MarketLeaf]:
        by_id = {m.instrument_id: m for m in self.market_leaves}
        missing = [i for i in instrument_ids if i not in by_id]
        if missing:
            raise MerkleError(f"instrument_ids: {missing} have no market leaf in epoch {self.epoch}")
        return [by_id[i] for i in instrument_ids]

"""One epoch's trees: account leaves and market leaves -> two Merkle roots, the signed
EpochRoot message, and proofs.

    tree = EpochTrees.build(engine, epoch, account_leaves, market_leaves, market_count)
    msg = tree.root_message(timestamp=t, deadline=t + 60, params_hash=h)   # eip712.EpochRoot
    oracle.post_root(msg.as_args(), sign_multi(msg, domain, signers))
    oracle.publish_epoch_data(tree.data_message(state_block).as_args(),
                              [m.as_args() for m in tree.market_leaves_by_id()], signatures)
    leaf, proof = tree.account_proof(account)
    mp = tree.market_multiproof(instrument_ids)   # leaves in that order, one MultiProof
    engine.apply_leaf(leaf.as_args(), proof)

Every keeper that computes the same leaves builds the same roots: the accounts tree sorts its
leaf hashes and the market tree puts each leaf at its instrument id's slot
(offchain.chain.merkle), so neither the order nor the process matters. `market_count` is the
registry's `instrument_count()` when the root is posted (the oracle refuses any other): every
instrument listed then has a slot, empty only if it is expired at the root's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from offchain.chain.eip712 import EpochData, EpochRoot
from offchain.chain.leaves import AccountLeaf, MarketLeaf, account_leaf_hashes
from offchain.chain.merkle import MerkleError, MerkleTree, MultiProof, PositionalTree


@dataclass
class EpochTrees:
    engine: str
    epoch: int
    account_leaves: list[AccountLeaf]
    market_leaves: list[MarketLeaf]
    accounts: MerkleTree
    market: PositionalTree
    _by_account: dict[str, int] = field(default_factory=dict)
    _account_hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def build(cls, engine: str, epoch: int, account_leaves: Sequence[AccountLeaf],
              market_leaves: Sequence[MarketLeaf] = (), market_count: int | None = None) -> EpochTrees:
        """`market_count`: the registry's instrument count the root commits to (None: the
        highest id among the market leaves, enough for a tree the tests build by hand)."""
        engine = to_checksum_address(str(getattr(engine, "address", engine)))
        leaves = list(account_leaves)
        hashes = account_leaf_hashes(engine, epoch, leaves)
        by_account = {}
        for i, leaf in enumerate(leaves):
            if leaf.account in by_account:
                raise MerkleError(f"account_leaves[{i}].account: {leaf.account} has two leaves")
            by_account[leaf.account] = i
        market = sorted(market_leaves, key=lambda m: m.instrument_id)
        by_id = {m.instrument_id: m.leaf_hash(engine, epoch) for m in market}
        if len(by_id) != len(market):
            raise MerkleError(f"market_leaves: an instrument has two leaves (ids {[m.instrument_id for m in market]})")
        if market_count is None:
            market_count = max(by_id, default=0)
        market_tree = PositionalTree(by_id, int(market_count))
        return cls(engine, epoch, leaves, market, MerkleTree(hashes), market_tree, by_account, hashes)

    def root_message(self, timestamp: int, deadline: int, params_hash: bytes) -> EpochRoot:
        return EpochRoot(engine=self.engine, epoch=self.epoch, timestamp=timestamp, deadline=deadline,
                         params_hash=params_hash, market_root=self.market.root, market_count=self.market.count,
                         accounts_root=self.accounts.root, account_count=len(self.account_leaves))

    def data_message(self, state_block: int) -> EpochData:
        """The signed EpochData of `RiskOracle.publish_epoch_data` for this epoch."""
        return EpochData(engine=self.engine, epoch=self.epoch, state_block=state_block,
                         accounts_root=self.accounts.root, market_root=self.market.root)

    def market_leaves_by_id(self) -> list[MarketLeaf]:
        """The market leaves in ascending instrument id, as publish_epoch_data takes them
        (each at its own slot, so the contract rebuilds the root in one pass)."""
        return list(self.market_leaves)

    @property
    def market_count(self) -> int:
        return self.market.count

    def has_account(self, account: str) -> bool:
        return to_checksum_address(account) in self._by_account

    def account_proof(self, account: str) -> tuple[AccountLeaf, list[bytes]]:
        i = self._by_account.get(to_checksum_address(account))
        if i is None:
            raise MerkleError(f"account: {account} has no leaf in epoch {self.epoch}")
        return self.account_leaves[i], self.accounts.proof(self._account_hashes[i])

    def market_proof(self, instrument_id: int) -> tuple[MarketLeaf | None, list[bytes]]:
        """The leaf at `instrument_id`'s slot (None: the slot is empty) and the slot's proof:
        what FraudProofs.challenge_market takes."""
        proof = self.market.proof(instrument_id)
        by_id = {m.instrument_id: m for m in self.market_leaves}
        return by_id.get(instrument_id), proof

    def market_multiproof(self, instrument_ids: Sequence[int]) -> MultiProof:
        """One multiproof of the market leaves of `instrument_ids`, in that order (the order
        the caller passes the leaves in: `market_leaves_of`)."""
        self.market_leaves_of(instrument_ids)       # a slot without a leaf proves nothing
        return self.market.multiproof(list(instrument_ids))

    def market_leaves_of(self, instrument_ids: Sequence[int]) -> list[MarketLeaf]:
        by_id = {m.instrument_id: m for m in self.market_leaves}
        missing = [i for i in instrument_ids if i not in by_id]
        if missing:
            raise MerkleError(f"instrument_ids: {missing} have no market leaf in epoch {self.epoch}")
        return [by_id[i] for i in instrument_ids]

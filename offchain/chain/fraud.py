"""Fraud-proof arguments: what `FraudProofs.challenge` takes for one account leaf of a posted
epoch, built from the epoch's trees (offchain.chain.roots.EpochTrees) and its record.

    record = EpochRecord(epoch, accounts_root, market_root, market_count, params_hash, signed_at, posted_at,
                         signers)
    salt = new_salt()
    fraud_proofs.commit(commitment(challenger, engine, record.signed_at, account, salt), sender=challenger)
    # ... then in a later block:
    args = challenge_arguments(trees, record, account, book_wad, salt=salt)          # the leaf's scenarios
    args = challenge_arguments(trees, record, account, book_wad, [s], s, salt=salt)  # scenario s everywhere
    fraud_proofs.challenge(*args, sender=challenger)
    # a market slot (no account leaf): commit with the instrument id in the account's place
    fraud_proofs.commit(commitment(challenger, engine, record.signed_at, slot_account(instrument_id), salt), ...)
    fraud_proofs.challenge_market(*market_challenge_arguments(trees, record, instrument_id, salt=salt))

Commit-reveal: the payout goes to msg.sender, so FraudProofs pays only a challenger that
committed to (its address, the engine, the epoch's signed_at, the account, a secret salt) in an
earlier block than its `challenge`; the salt is the last argument.

`EpochRecord` is what RiskOracle hashed when the root was posted (`epoch_record_hash(engine,
signed_at)`): the epoch, the two roots, the market tree's instrument count and the params hash
(RootPosted), the signed time, the block time of the posting, and the signers that counted
(recovered from the post_root signatures, ascending).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.roots import EpochTrees

RECORD_ABI = "(uint256,bytes32,bytes32,uint256,bytes32,uint256,uint256,address[])"
COMMITMENT_ABI = ["address", "address", "uint256", "address", "bytes32"]
NO_SALT = bytes(32)
# FraudProofs' revert when everything but the commitment holds (it is checked last): a dry run
# of a proof without a commitment that reverts with this is a proof the chain accepts
NO_COMMITMENT = "fraud: no commitment by the sender to this epoch and account"
# FraudProven codes (contracts/FraudProofs.vy)
CODES = {1: "margin below a re-priced scenario", 2: "loss above the leaf's worst loss",
         3: "named scenario does not give the leaf's loss", 4: "add-on differs from its closed form",
         5: "leaf names a scenario the table does not have",
         6: "market slot is not what the registry makes it (an instrument left out, a leaf misplaced or "
            "with other terms)"}
# the `leaf` argument of a market slot shown empty (ignored by `challenge_market`)
_EMPTY_LEAF = MarketLeaf(instrument_id=0, kind=0, underlying=bytes(32), strike_wad=0, expiry=0, contract_size_wad=0,
                         spot_wad=0, forward_wad=0, vol_wad=0, rate_wad=0, mark_wad=0, im_long_wad=0, im_short_wad=0,
                         mm_long_wad=0, mm_short_wad=0)
# `challenge`'s market leaf of a position whose slot is shown empty (an instrument expired at
# the root): the seven packed words all zero (head 0, which no signed leaf has)
EMPTY_SLOT_ARGS = (0, bytes(32), 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    accounts_root: bytes
    market_root: bytes
    market_count: int
    params_hash: bytes
    signed_at: int
    posted_at: int
    signers: tuple[str, ...]

    def as_args(self) -> tuple:
        return (self.epoch, self.accounts_root, self.market_root, self.market_count, self.params_hash,
                self.signed_at, self.posted_at, [to_checksum_address(s) for s in self.signers])

    def hash(self) -> bytes:
        """keccak256(abi_encode(record)): RiskOracle's `epoch_record_hash(engine, signed_at)`."""
        return keccak(encode([RECORD_ABI], [self.as_args()]))


def new_salt() -> bytes:
    """A fresh secret salt for one commitment (32 random bytes)."""
    return secrets.token_bytes(32)


def commitment(challenger: str, engine: str, signed_at: int, account: str, salt: bytes) -> bytes:
    """What `FraudProofs.commit` takes: keccak256(abi_encode(challenger, engine, signed_at,
    account, salt)), the contract's `commitment_of`."""
    if len(salt) != 32:
        raise ValueError(f"salt: must be 32 bytes, got {len(salt)}")
    return keccak(encode(COMMITMENT_ABI, [to_checksum_address(challenger), to_checksum_address(engine), int(signed_at),
                                          to_checksum_address(account), bytes(salt)]))


def challenge_arguments(trees: EpochTrees, record: EpochRecord, account: str, book_wad: dict[int, int],
                        scenarios: Sequence[int] = (), joint_scenario: int = 0, *, salt: bytes = NO_SALT) -> tuple:
    """`FraudProofs.challenge` arguments for `account`'s leaf; `book_wad` {instrument id: size
    WAD} is the book the leaf commits to (zeros dropped, ids ascending). Empty `scenarios`:
    the leaf's own named scenarios. `salt`: the one of the sender's commitment (the last argument)."""
    leaf, proof = trees.account_proof(account)
    return leaf_challenge_arguments(trees, record, leaf, proof, book_wad, scenarios, joint_scenario, salt=salt)


def leaf_challenge_arguments(market: EpochTrees, record: EpochRecord, leaf: AccountLeaf, proof: Sequence[bytes],
                             book_wad: dict[int, int], scenarios: Sequence[int] = (),
                             joint_scenario: int = 0, *, salt: bytes = NO_SALT) -> tuple:
    """The same for a leaf held apart from its tree (a keeper's `/proof/<account>` answer):
    `proof` is its proof in `record.accounts_root`, `market` any trees holding the epoch's
    market leaves (the market root is the record's). A position whose instrument has no
    market leaf (expired at the root) is shown with its slot empty."""
    ids = sorted(i for i, q in book_wad.items() if q != 0)
    sizes = [int(book_wad[i]) for i in ids]
    by_id = {m.instrument_id: m for m in market.market_leaves}
    # an id without a market leaf goes as the all-zero leaf, its slot proven empty: what an
    # honest root holds for an instrument expired at its time (the contract checks the
    # registry and refuses it for a live one; `challenge_market` proves that slot instead)
    leaves = [by_id[i].as_args() if i in by_id else EMPTY_SLOT_ARGS for i in ids]
    mp = market.market.multiproof(ids)
    return (market.engine, record.as_args(), leaf.as_args(), list(proof), ids, sizes, leaves, mp.as_args(),
            [int(s) for s in scenarios], int(joint_scenario), bytes(salt))


def slot_account(instrument_id: int) -> str:
    """What a market-slot challenge commits to in the account's place: the instrument id as an
    address (FraudProofs `challenge_market`)."""
    return to_checksum_address(int(instrument_id).to_bytes(20, "big"))


def market_challenge_arguments(trees: EpochTrees, record: EpochRecord, instrument_id: int,
                               leaf: MarketLeaf | None = None, proof: Sequence[bytes] | None = None, *,
                               salt: bytes = NO_SALT) -> tuple:
    """`FraudProofs.challenge_market` arguments for the slot of `instrument_id` in the
    epoch's market tree: what `trees` holds there (its leaf, or empty) and its proof, or the
    given `leaf` (None: the slot shown empty) with `proof`. `salt`: the one of the sender's
    commitment to (engine, signed_at, `slot_account(instrument_id)`)."""
    if proof is None:
        leaf, proof = trees.market_proof(instrument_id)
    present = leaf is not None
    shown = leaf if present else _EMPTY_LEAF
    return (trees.engine, record.as_args(), int(instrument_id), present, shown.as_args(), list(proof), bytes(salt))

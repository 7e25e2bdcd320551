"""Margins the way production gives them: the risk signers sign one epoch root per engine
whose accounts tree holds a leaf per account (offchain/chain/roots.py), anyone posts it to
RiskOracle.post_root, and an account's leaf reaches the engine with its Merkle proof
(apply_leaf, or inline in withdraw_with_leaf / fill_with_leaf).

Framework-free: `engine` and `oracle` are any contract handles whose views can be called
(ape on Anvil in tests/engine and tests/attacks, titanoboa in tests/stateful); sending the
transactions is the caller's job, so each suite keeps its own revert handling.

    leaf = book_leaf(engine, account, im_wad, mm_wad)
    root = sign_root(engine, next_epoch(oracle, engine), [leaf, ...], timestamp=t,
                     domain=oracle_domain, signers=signers[:2], params_hash=h)
    oracle.post_root(root.message.as_args(), root.signatures)
    engine.apply_leaf(*root.apply_args(account))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from offchain.chain.eip712 import Domain, EpochRoot, sign_multi
from offchain.chain.leaves import AccountLeaf, positions_hash
from offchain.chain.roots import EpochTrees

M96 = 2**96 - 1


def _address(account) -> str:
    return str(getattr(account, "address", account))


def book_leaf(engine, account, im_wad: int, mm_wad: int, **overrides) -> AccountLeaf:
    """A leaf for the account's book as the engine holds it now: its state nonce, positions
    hash and pending counters (what the keeper reads before computing the margin).
    `overrides` replace fields (a leaf for another book, nonce or counter base)."""
    view = engine.account(_address(account))
    total = int(engine.pending_total(_address(account)))
    fields = dict(
        account=_address(account), state_nonce=int(view.state_nonce),
        positions_hash=positions_hash([int(p.instrument_id) for p in view.positions],
                                      [int(p.size_wad) for p in view.positions]),
        pending_base_im_wad=total & M96, pending_base_mm_wad=(total >> 96) & M96, position_value_wad=0,
        initial_margin_wad=im_wad, maintenance_margin_wad=mm_wad, worst_loss_wad=mm_wad, worst_scenarios=0,
        basis_addon_wad=0, short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0,
    )
    fields.update(overrides)
    return AccountLeaf(**fields)


def next_epoch(oracle, engine) -> int:
    """The epoch after the engine's stored one (epochs strictly increase per engine)."""
    return int(oracle.epoch_root(_address(engine))[0]) + 1


@dataclass(frozen=True)
class SignedRoot:
    """One epoch's trees, the EpochRoot message over them and its signatures."""

    trees: EpochTrees
    message: EpochRoot
    signatures: list[bytes]

    def post_args(self) -> tuple:
        return self.message.as_args(), self.signatures

    def proof(self, account) -> tuple[AccountLeaf, list[bytes]]:
        return self.trees.account_proof(_address(account))

    def apply_args(self, account) -> tuple:
        """(leaf args, proof) for apply_leaf (and the tail of the *_with_leaf calls)."""
        leaf, proof = self.proof(account)
        return leaf.as_args(), proof


def sign_root(engine, epoch: int, leaves: Sequence[AccountLeaf], *, timestamp: int, domain: Domain,
              signers: Sequence, params_hash: bytes, deadline: int | None = None, market=(),
              market_count: int | None = None) -> SignedRoot:
    """Build both trees over `leaves` (and market leaves over `market_count` instruments: the
    registry's count, which the oracle requires), and sign the root with `signers` (ascending
    address order is sign_multi's job)."""
    trees = EpochTrees.build(_address(engine), epoch, list(leaves), list(market), market_count)
    msg = trees.root_message(timestamp=timestamp, deadline=timestamp + 300 if deadline is None else deadline,
                             params_hash=params_hash)
    return SignedRoot(trees, msg, sign_multi(msg, domain, list(signers)))


RATE_FIELDS = ("im_long_wad", "im_short_wad", "mm_long_wad", "mm_short_wad")


def with_model_rates(params, leaves: Sequence, timestamp: int, keep: dict[int, dict] | None = None) -> list:
    """The market leaves with the per-unit rates honest signers put in them (the exact model's
    standalone margin of +1 / -1 contract at the leaves' inputs, `finish_market_leaves`);
    `keep` {instrument id: fields} are overrides that win (a test's own rates). Marks stay."""
    from offchain.chain.epoch_leaves import finish_market_leaves

    # a leaf expired at `timestamp` has no standalone margin (the verifier refuses it anyway)
    live = [m for m in leaves if m.kind == 1 or m.expiry > timestamp]
    finished = finish_market_leaves(params, live, timestamp)[0] if live else []
    rates = {m.instrument_id: {f: getattr(m, f) for f in RATE_FIELDS} for m in finished}
    keep = keep or {}
    return [type(m)(**{**m.as_dict(), "underlying": m.underlying, **rates.get(m.instrument_id, {}),
                       **{f: v for f, v in keep.get(m.instrument_id, {}).items() if f in RATE_FIELDS}})
            for m in leaves]


@cache
def filler_leaves(n: int) -> tuple[AccountLeaf, ...]:
    """`n` leaves of made-up accounts (0x...F0000 + i, margin 1 wei) that pad a root's accounts
    tree: 2**16 of them beside a real leaf make it 17 deep. Built once per session and shared
    (checking and hashing 65,536 leaves' fields costs tens of seconds on 2 cores)."""
    return tuple(AccountLeaf(account=f"0x{(0xF0000 + i):040x}", state_nonce=1, positions_hash=b"\x01" * 32,
                             pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=0,
                             initial_margin_wad=1, maintenance_margin_wad=1, worst_loss_wad=1, worst_scenarios=0,
                             basis_addon_wad=0, short_option_addon_wad=0, liquidity_addon_wad=0,
                             rounding_guard_wad=0) for i in range(n))

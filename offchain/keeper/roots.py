"""The keeper's epoch roots: account leaves from its book and exact margins, the per-epoch
file every leaf and proof can be served from, and `proof_for`, the one function that answers
"give me account A's proof" (the keeper's HTTP port and the API both call it).

    leaves = account_leaves(book, idx, im_wad, mm_wad, value_wad, pending_totals)
    trees = EpochTrees.build(engine, epoch, leaves, market_leaves)
    store = EpochStore(data_dir / "roots")
    store.write(trees, root_message, signatures)          # roots/<engine>/epoch-<n>.json
    proof_for(store, account)                             # latest epoch, or epoch=n

A file holds the signed root and every leaf (not the proofs: any tree is rebuilt from its
leaves in ~0.1 s per 10,000 and proofs are read from it), so a second keeper, an auditor or a
user can rebuild and check every proof from the file alone.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from eth_utils import is_address, to_checksum_address

from offchain.chain.eip712 import EpochRoot
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError

M96 = 2**96 - 1
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.json$")


def account_leaves(addresses: Sequence[str], state_nonces: Sequence[int], books_wad: Sequence[dict[int, int]],
                   im_wad: Sequence[int], mm_wad: Sequence[int], value_wad: Sequence[int],
                   pending_totals: Sequence[int], details: dict[str, Sequence[int]] | None = None,
                   positions_hashes: Sequence[bytes] | None = None) -> list[AccountLeaf]:
    """One leaf per account. `books_wad[k]` maps instrument id -> WAD size (the chain's own
    integers); `pending_totals[k]` is the engine's `pending_total(account)` word at the same
    block; `details` optionally gives worst_loss_wad, worst_scenarios and the add-ons per
    account (default: MM all in the worst loss, no add-ons); `positions_hashes[k]` the book's
    positions hash when already known."""
    d = details or {}
    n = len(addresses)

    def col(name, default):
        return d[name] if name in d else default

    worst = col("worst_loss_wad", mm_wad)
    scen = col("worst_scenarios", [0] * n)
    basis = col("basis_addon_wad", [0] * n)
    short = col("short_option_addon_wad", [0] * n)
    liq = col("liquidity_addon_wad", [0] * n)
    guard = col("rounding_guard_wad", [0] * n)
    from offchain.chain.epoch_leaves import positions_hash_fast
    hashes = positions_hashes if positions_hashes is not None else [positions_hash_fast(b) for b in books_wad]
    out = []
    for k in range(n):
        total = int(pending_totals[k])
        # integers computed by the caller, in range: skip the per-field checks (140k of them
        # per 10,000 accounts) that guard leaves coming from outside
        out.append(_trusted_leaf(
            account=_checksummed(addresses[k]), state_nonce=int(state_nonces[k]),
            positions_hash=hashes[k],
            pending_base_im_wad=total & M96, pending_base_mm_wad=(total >> 96) & M96,
            position_value_wad=int(value_wad[k]), initial_margin_wad=int(im_wad[k]),
            maintenance_margin_wad=int(mm_wad[k]), worst_loss_wad=int(worst[k]), worst_scenarios=int(scen[k]),
            basis_addon_wad=int(basis[k]), short_option_addon_wad=int(short[k]), liquidity_addon_wad=int(liq[k]),
            rounding_guard_wad=int(guard[k])))
    return out


@functools.lru_cache(maxsize=1 << 20)
def _checksummed(a: str) -> str:
    """to_checksum_address, remembered: the same accounts come back every epoch and
    checksumming 10,000 addresses costs ~0.3 s."""
    return to_checksum_address(a)


def _trusted_leaf(**fields) -> AccountLeaf:
    leaf = object.__new__(AccountLeaf)
    leaf.__dict__.update(fields)
    return leaf


class EpochStore:
    """Per-epoch files under `directory/<engine>/epoch-<n>.json`, written atomically."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self._cache: dict[tuple[str, int], EpochTrees] = {}

    def _dir(self, engine: str) -> Path:
        return self.directory / to_checksum_address(engine)

    def write(self, trees: EpochTrees, root: EpochRoot, signatures: Sequence[bytes],
              state_block: int | None = None) -> Path:
        """`state_block`: the block whose state the account leaves were built on (the one
        the signers publish with the market leaves, docs/oracle.md)."""
        doc = {
            "state_block": state_block,
            "root": {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in root.message().items()},
            "signatures": ["0x" + bytes(s).hex() for s in signatures],
            "account_leaves": [leaf.as_dict() for leaf in trees.account_leaves],
            "market_leaves": [leaf.as_dict() for leaf in trees.market_leaves],
        }
        folder = self._dir(trees.engine)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch-{trees.epoch}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
        self._cache[(trees.engine, trees.epoch)] = trees
        return path

    def remember(self, trees: EpochTrees) -> None:
        """Serve an epoch from memory before its file is written."""
        self._cache[(trees.engine, trees.epoch)] = trees

    def epochs(self, engine: str) -> list[int]:
        folder = self._dir(engine)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name)))

    def load(self, engine: str, epoch: int | None = None) -> EpochTrees | None:
        """The epoch's trees (the latest epoch if None), rebuilt from its file; None if absent."""
        engine = to_checksum_address(engine)
        if epoch is None:
            known = self.epochs(engine)
            if not known:
                return None
            epoch = known[-1]
        key = (engine, int(epoch))
        if key not in self._cache:
            path = self._dir(engine) / f"epoch-{int(epoch)}.json"
            if not path.exists():
                return None
            doc = json.loads(path.read_text())
            trees = EpochTrees.build(engine, int(epoch), [AccountLeaf.from_dict(d) for d in doc["account_leaves"]],
                                     [MarketLeaf.from_dict(d) for d in doc["market_leaves"]],
                                     doc["root"].get("market_count"))
            if "0x" + trees.accounts.root.hex() != doc["root"]["accounts_root"]:
                raise UserError(f"{path}: its leaves rebuild accounts root 0x{trees.accounts.root.hex()}, "
                                f"the file's signed root is {doc['root']['accounts_root']}")
            self._cache[key] = trees
        return self._cache[key]


def proof_for(store: EpochStore, engine: str, account: str, epoch: int | None = None) -> dict | None:
    """{"engine", "epoch", "accounts_root", "leaf": {...}, "proof": [hex]} for `account` in
    the epoch (latest if None): what `apply_leaf` / `withdraw_with_leaf` take. None if the
    store has no such epoch or the account has no leaf in it; UserError for a malformed
    address."""
    if not isinstance(account, str) or not is_address(account):
        raise UserError(f"account: expected a 0x-prefixed 20-byte address, got {account!r}")
    trees = store.load(engine, epoch)
    if trees is None or not trees.has_account(account):
        return None
    leaf, proof = trees.account_proof(account)
    return {"engine": trees.engine, "epoch": trees.epoch, "accounts_root": "0x" + trees.accounts.root.hex(),
            "leaf": leaf.as_dict(), "proof": ["0x" + p.hex() for p in proof]}


def leaf_args(doc: dict) -> tuple[tuple, list[bytes]]:
    """(leaf tuple, proof) of a `proof_for` answer, ready for an engine call."""
    leaf = AccountLeaf.from_dict(doc["leaf"])
    return leaf.as_args(), [bytes.fromhex(p.removeprefix("0x")) for p in doc["proof"]]


def value_wad(values: np.ndarray) -> list[int]:
    """Position values (USD floats) -> WAD integers rounded down."""
    return [int(v) for v in np.floor(np.asarray(values, dtype=np.float64) * 1e18)]

"""What a keeper published for an epoch, as a rebuild compares against it: its epoch file
(`<data_dir>/roots/<engine>/epoch-<n>.json`: signed root, state block, every leaf) or its
HTTP answer `GET /proof/<account>` (leaf and Merkle proof of the latest epoch).

A published leaf is only evidence when it is in the chain's root: `PublishedLeaf.in_root`
checks its proof against the on-chain accounts root, so a leaf that differs from the rebuilt
one *and* verifies against the chain is a false leaf the signers committed to.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from eth_utils import to_checksum_address

from offchain.chain.leaves import AccountLeaf
from offchain.chain.merkle import MerkleError, verify
from offchain.chain.rebuild import Rebuild, leaf_diff
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError


@dataclass(frozen=True)
class PublishedLeaf:
    epoch: int
    leaf: AccountLeaf
    proof: list[bytes]
    source: str

    def in_root(self, engine: str, accounts_root: bytes) -> bool:
        return verify(self.proof, accounts_root, self.leaf.leaf_hash(engine, self.epoch))


def load_epoch_file(path: str | Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"--epoch-file: cannot read {str(path)!r}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--epoch-file: {str(path)!r} is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("root"), dict) or \
            not isinstance(doc.get("account_leaves"), list):
        raise UserError(f"--epoch-file: {str(path)!r} is not a keeper epoch file (expected root, "
                        "account_leaves, market_leaves)")
    return doc


def file_epoch(doc: dict, where: str) -> int:
    try:
        return int(doc["root"]["epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: its root has no epoch") from exc


def file_leaves(doc: dict, where: str) -> list[AccountLeaf]:
    try:
        return [AccountLeaf.from_dict(d) for d in doc["account_leaves"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: malformed account leaf ({exc})") from exc


def leaf_from_file(doc: dict, engine: str, account: str, where: str) -> PublishedLeaf | None:
    """The account's leaf in an epoch file, with its proof in the file's own tree; None if
    the file has no leaf for it."""
    epoch = file_epoch(doc, where)
    leaves = file_leaves(doc, where)
    try:
        trees = EpochTrees.build(engine, epoch, leaves)
    except MerkleError as exc:
        raise UserError(f"{where}: {exc}") from exc
    if not trees.has_account(account):
        return None
    leaf, proof = trees.account_proof(account)
    return PublishedLeaf(epoch, leaf, proof, where)


def leaf_from_keeper(url: str, account: str, timeout_s: float = 10.0) -> PublishedLeaf | None:
    """GET <url>/proof/<account> (the keeper's metrics port or the HTTP API): the leaf and
    proof of the keeper's latest epoch; None on 404 (no leaf for the account)."""
    target = f"{url.rstrip('/')}/proof/{to_checksum_address(account)}"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as r:  # noqa: S310 - user-given keeper URL
            doc = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise UserError(f"--keeper: {target} answered {exc.code}: {exc.read()[:200]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"--keeper: no answer from {target}: {getattr(exc, 'reason', exc)}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"--keeper: {target} did not answer JSON ({exc})") from exc
    try:
        return PublishedLeaf(int(doc["epoch"]), AccountLeaf.from_dict(doc["leaf"]),
                             [bytes.fromhex(p.removeprefix("0x")) for p in doc["proof"]], target)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"--keeper: {target} is not a proof answer (epoch, leaf, proof): {exc}") from exc


def first_false_leaf_at_keeper(rebuilt: Rebuild, url: str) -> tuple[str, list] | None:
    """The first account (address order) whose leaf served at `url`/proof/<account> is in the
    chain's accounts root and differs from the rebuilt one, with the differing fields. The
    keeper serves its latest epoch only: answers of another epoch are skipped. One request
    per account, so meant for a root already known not to match."""
    root = rebuilt.root
    for leaf in sorted(rebuilt.trees.account_leaves, key=lambda x: x.account.lower()):
        published = leaf_from_keeper(url, leaf.account)
        if published is None or published.epoch != root.epoch:
            continue
        diff = leaf_diff(leaf, published.leaf)
        if diff and published.in_root(root.engine, root.accounts_root):
            return leaf.account, diff
    return None

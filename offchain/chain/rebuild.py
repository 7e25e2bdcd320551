"""Rebuild a posted epoch root from public data alone and compare it with the chain.

    root = find_root(dep, epoch)                 # the RootPosted log (latest epoch if None)
    published = read_publication(dep, root)      # market leaves + state block the root names
    result = rebuild_epoch(dep, params, root, published)
    result.matches                               # both roots and the account count agree
    result.trees.account_proof(account)          # our leaf and proof for any account

Every account leaf is recomputed by offchain.chain.epoch_leaves, the function the keeper
signs with, from the chain's own state at the root's state block (`account(a)` and
`pending_total(a)` of every account in the engine's list) and the published market leaves;
the params file must be the one whose hash the oracle held when the root was posted. Nothing
here trusts the keeper: its files and HTTP answers are only compared against (`leaf_diff`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from eth_utils import to_checksum_address
from web3.exceptions import Web3Exception

from offchain.chain.contracts import (
    WAD,
    Deployment,
    batch_call,
    read_accounts,
)
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.events import event_logs, topic_address, topic_uint
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.merkle import MerkleError
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError
from offchain.risk import Params
from offchain.risk.pricing import PERPETUAL


@dataclass(frozen=True)
class PostedRoot:
    """One `RootPosted` log, with the params hash the oracle held at its block."""

    engine: str
    epoch: int
    signed_at: int
    accounts_root: bytes
    market_root: bytes
    market_count: int
    account_count: int
    params_hash: bytes
    block: int
    tx_hash: str


@dataclass(frozen=True)
class Publication:
    """What the root's publisher put on chain besides the root: the block whose state the
    account leaves describe, and every market leaf."""

    state_block: int
    market_leaves: list[MarketLeaf]
    source: str = ""


def _posted_root(dep: Deployment, log: dict, values: dict) -> PostedRoot:
    block = int(log["blockNumber"])
    return PostedRoot(
        engine=dep.engine.address, epoch=int.from_bytes(bytes(log["topics"][2]), "big"),
        signed_at=int(values["signed_at"]), accounts_root=bytes(values["accounts_root"]),
        market_root=bytes(values["market_root"]), market_count=int(values["market_count"]),
        account_count=int(values["account_count"]),
        params_hash=bytes(dep.oracle.functions.params_hash().call(block_identifier=block)),
        block=block, tx_hash="0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"))


def posted_roots(dep: Deployment, from_block: int = 0, to_block: int | str = "latest") -> list[PostedRoot]:
    """Every root posted for the engine in blocks from_block..to_block, oldest first."""
    return [_posted_root(dep, log, v) for log, v in
            event_logs(dep.oracle, "RootPosted", [topic_address(dep.engine.address)], from_block, to_block)]


def find_root(dep: Deployment, epoch: int | None = None, from_block: int = 0) -> PostedRoot:
    """The engine's `RootPosted` log for `epoch` (the latest root when None)."""
    topics = [topic_address(dep.engine.address)]
    if epoch is not None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise UserError(f"--epoch: expected a non-negative integer, got {epoch!r}")
        topics.append(topic_uint(epoch))
    logs = event_logs(dep.oracle, "RootPosted", topics, from_block)
    if not logs:
        if epoch is None:
            raise UserError(f"no root posted: the oracle {dep.oracle.address} holds no RootPosted log "
                            f"for engine {dep.engine.address}")
        latest = dep.oracle.functions.epoch_root(dep.engine.address).call()
        raise UserError(f"--epoch: no root posted for epoch {epoch} of engine {dep.engine.address} "
                        f"(latest epoch posted: {latest[0] if latest[1] else 'none'})")
    return _posted_root(dep, *logs[-1])


def read_publications(dep: Deployment, root: PostedRoot) -> list[Publication]:
    """Every `EpochDataPublished` log of the root's engine and epoch that names the root's
    two roots, oldest first (the oracle checked its market leaves against the market root
    and the signers' threshold over its state block)."""
    if not any(i.get("type") == "event" and i["name"] == "EpochDataPublished" for i in dep.oracle.abi):
        return []   # an oracle that predates published epoch data: only an epoch file can help
    topics = [topic_address(root.engine), topic_uint(root.epoch)]
    out = []
    for log, v in event_logs(dep.oracle, "EpochDataPublished", topics, root.block):
        if bytes(v["accounts_root"]) == root.accounts_root and bytes(v["market_root"]) == root.market_root:
            out.append(Publication(int(v["state_block"]), [MarketLeaf.from_words(m) for m in v["market_leaves"]],
                                   source=f"EpochDataPublished in block {int(log['blockNumber'])}"))
    return out


def publication_from_file(doc: dict, root: PostedRoot, where: str) -> Publication:
    """The state block and market leaves of a keeper's epoch file, for a root whose data
    was never published on chain. The market leaves are checked against the chain's market
    root here; the state block is checked by the rebuild itself (another block's books
    give another accounts root)."""
    try:
        state_block = int(doc["state_block"])
        leaves = [MarketLeaf.from_dict(d) for d in doc["market_leaves"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: not a keeper epoch file with state_block and market_leaves ({exc})") from exc
    try:
        got = EpochTrees.build(root.engine, root.epoch, [], leaves, root.market_count).market.root
    except MerkleError as exc:
        raise UserError(f"{where}: its market leaves do not make a market tree of {root.market_count} "
                        f"instruments: {exc}") from exc
    if got != root.market_root:
        raise UserError(f"{where}: its market leaves give market root 0x{got.hex()}, the chain's root of "
                        f"epoch {root.epoch} is 0x{root.market_root.hex()}")
    return Publication(state_block, leaves, source=where)


def check_params(params: Params, root: PostedRoot) -> None:
    """The params file must be the one the root was signed under (the oracle refuses a root
    posted with another hash, so the oracle's hash at the root's block is the root's)."""
    if params.hash != "0x" + root.params_hash.hex():
        raise UserError(f"params: {params.label} has hash {params.hash}, the root of epoch {root.epoch} "
                        f"was posted under params_hash 0x{root.params_hash.hex()}; pass that parameter "
                        "file with --params")


@dataclass(frozen=True)
class EpochBooks:
    """Every account of the engine's list and its book at one block."""

    block: int
    addresses: list[str]
    state_nonces: list[int]
    books_wad: list[dict[int, int]]   # instrument id -> size WAD
    pending_totals: list[int]


def read_books(dep: Deployment, block: int) -> EpochBooks:
    """`account(a)` and `pending_total(a)` of every account at `block` (batched eth_calls)."""
    # the engine's list only ever appends (account_at(i) never changes once written), so the
    # list at `block` is the first account_count(block) entries read at the head: historical
    # eth_calls cost several times a current one on some nodes (4x on Anvil)
    count = dep.engine.functions.account_count().call(block_identifier=block)
    addresses = [to_checksum_address(a) for a in
                 batch_call(dep.w3, [dep.engine.functions.account_at(i) for i in range(count)])]
    views = read_accounts(dep, addresses, block) if addresses else []
    totals = batch_call(dep.w3, [dep.engine.functions.pending_total(a) for a in addresses], block)
    return EpochBooks(block, addresses, [int(v[1]) for v in views],
                      [{int(i): int(q) for i, q, _f in v[2] if int(q)} for v in views], [int(t) for t in totals])


@dataclass
class Rebuild:
    root: PostedRoot
    publication: Publication
    books: EpochBooks
    trees: EpochTrees
    # (instrument id, field, published, expected): a market leaf that disagrees with the
    # registry (missing, extra, kind, underlying, strike, expiry) or whose mark or per-unit
    # rates are not what its own inputs give; id 0, field "leaves": the model cannot price
    # the published leaves at all (then no account leaf is rebuilt)
    market_errors: list[tuple[int, str, object, object]]
    seconds: dict[str, float] = field(default_factory=dict)   # read, leaves, tree

    @property
    def accounts_root_ok(self) -> bool:
        return self.trees.accounts.root == self.root.accounts_root

    @property
    def market_root_ok(self) -> bool:
        return self.trees.market.root == self.root.market_root

    @property
    def count_ok(self) -> bool:
        return len(self.trees.account_leaves) == self.root.account_count

    @property
    def matches(self) -> bool:
        return self.accounts_root_ok and self.market_root_ok and self.count_ok and not self.market_errors

    def leaf(self, account: str) -> AccountLeaf:
        if not self.trees.has_account(account):
            raise UserError(f"account: {account} has no leaf in epoch {self.root.epoch} (not in the engine's "
                            f"account list at the state block {self.publication.state_block})")
        return self.trees.account_proof(account)[0]


def rebuild_epoch(dep: Deployment, params: Params, root: PostedRoot, publication: Publication) -> Rebuild:
    """Recompute every account leaf and both trees for `root` (raises UserError on a params
    file other than the root's)."""
    check_params(params, root)
    if publication.state_block > root.block:
        raise UserError(f"state_block: {publication.state_block} is after the root's block {root.block}; "
                        "a root can only describe state that existed when it was posted")
    t0 = time.perf_counter()
    books = read_books(dep, publication.state_block)
    t1 = time.perf_counter()
    # The published market leaves are the signers' word (the oracle checked only that they
    # make the signed root): leaves the model cannot price (a zero spot, an underlying that
    # is no symbol) rebuild no account leaf, but their slots are still compared with the
    # registry, so a slot the registry contradicts stays provable (challenge_market).
    unpriced = ""
    try:
        market = MarketInputs.from_leaves(params, publication.market_leaves, root.signed_at)
        leaves = epoch_account_leaves(market, books.addresses, books.state_nonces, books.books_wad,
                                      books.pending_totals)
    except (UserError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, Web3Exception):
            raise
        unpriced, leaves = f"{type(exc).__name__}: {exc}"[:300], []
    t2 = time.perf_counter()
    trees = EpochTrees.build(dep.engine.address, root.epoch, leaves, publication.market_leaves, root.market_count)
    errors = registry_errors(dep, root.block, root.signed_at, publication.market_leaves, root.market_count)
    if unpriced:
        errors.append((0, "leaves", unpriced, "market leaves the model can price"))
    else:
        errors += market_errors(market, publication.market_leaves)
    t3 = time.perf_counter()
    return Rebuild(root, publication, books, trees, errors,
                   {"read": t1 - t0, "leaves": t2 - t1, "tree": t3 - t2})


def market_errors(market: MarketInputs, leaves: Sequence[MarketLeaf]) -> list[tuple[int, str, object, object]]:
    """Fields of the market leaves that their own inputs contradict (mark, per-unit rates)."""
    expected = market.leaf_outputs()
    out = []
    for leaf in sorted(leaves, key=lambda m: m.instrument_id):
        for name, value in expected.get(leaf.instrument_id, {}).items():
            if getattr(leaf, name) != value:
                out.append((leaf.instrument_id, name, getattr(leaf, name), value))
    return out


def registry_errors(dep: Deployment, block: int, timestamp: int, leaves: Sequence[MarketLeaf],
                    count: int) -> list[tuple[int, str, object, object]]:
    """The market leaves against the registry's first `count` instruments (the root's count,
    the registry's when it was posted, at the root's `block`): every instrument live at the
    root's time (perpetual, or expiring after it) has exactly one leaf, and a leaf's kind,
    underlying, strike and expiry are the registry's, its contract size one. A missing leaf would leave its
    positions without margin; a leaf's strike or expiry is a fact, not a model input. Each
    such error is provable on chain (FraudProofs.challenge_market)."""
    rows = batch_call(dep.w3, [dep.registry.functions.instrument(i) for i in range(1, count + 1)], block)
    by_id = {m.instrument_id: m for m in leaves}
    out: list[tuple[int, str, object, object]] = []
    for iid, (underlying, kind, strike, expiry, _active) in enumerate(rows, start=1):
        live = kind == PERPETUAL or expiry > timestamp
        leaf = by_id.pop(iid, None)
        if leaf is None:
            if live:
                out.append((iid, "leaf", "missing", "a leaf (live at the root's time)"))
            continue
        if not live:
            out.append((iid, "leaf", "present", f"none (expired at {expiry}, root time {timestamp})"))
        # the engine holds positions in units of the underlying: every contract size is one
        for name, value in (("kind", kind), ("underlying", bytes(underlying)), ("strike_wad", strike),
                            ("expiry", expiry), ("contract_size_wad", WAD)):
            if getattr(leaf, name) != value:
                out.append((iid, name, getattr(leaf, name), value))
    out += [(iid, "leaf", "present", f"none (beyond the root's {count} instruments)") for iid in sorted(by_id)]
    return out


def leaf_diff(ours: AccountLeaf, theirs: AccountLeaf) -> list[tuple[str, object, object]]:
    """(field, our value, their value) of every field where two leaves differ."""
    out = []
    for f in fields(ours):
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        if (a.lower() != b.lower()) if isinstance(a, str) else a != b:
            out.append((f.name, a, b))
    return out


def first_false_leaf(ours: Rebuild, theirs: Sequence[AccountLeaf]) -> tuple[str, list] | None:
    """The first account (in address order) whose published leaf differs from the rebuilt
    one, with its differences; a published leaf for an account we have none for counts."""
    for leaf in sorted(theirs, key=lambda x: x.account.lower()):
        if not ours.trees.has_account(leaf.account):
            return leaf.account, [("account", None, leaf.account)]
        diff = leaf_diff(ours.leaf(leaf.account), leaf)
        if diff:
            return leaf.account, diff
    return None


def params_for_root(root: PostedRoot, name_or_path: str | None = None) -> Params:
    """The params file of the root: `name_or_path` (refused unless its hash is the root's),
    else the bundled set whose hash is the root's."""
    from offchain.risk.params import PARAMS_DIR, load_params
    if name_or_path:
        params = load_params(name_or_path)
        check_params(params, root)
        return params
    bundled = sorted(p.stem for p in PARAMS_DIR.glob("*.json"))
    for name in bundled:
        params = load_params(name)
        if params.hash == "0x" + root.params_hash.hex():
            return params
    raise UserError(f"params: the root of epoch {root.epoch} was posted under params_hash "
                    f"0x{root.params_hash.hex()}, which is none of the bundled sets {bundled}; "
                    "pass that parameter file with --params")


def rebuild_from_chain(dep: Deployment, epoch: int | None = None, params: str | None = None,
                       epoch_file: dict | None = None, epoch_file_name: str = "epoch file",
                       root: PostedRoot | None = None) -> Rebuild:
    """Find the root, its params file and its publication, and rebuild it. Of several
    publications of one epoch the first whose state block rebuilds the accounts root is
    used (else the first); a keeper epoch file stands in only when the chain has none."""
    root = root or find_root(dep, epoch)
    p = params_for_root(root, params)
    publications = read_publications(dep, root)
    if not publications:
        if epoch_file is None:
            raise UserError(f"epoch {root.epoch}: no EpochDataPublished log names this root, so its state "
                            "block and market leaves are not on chain; pass the keeper's epoch file "
                            "with --epoch-file")
        publications = [publication_from_file(epoch_file, root, epoch_file_name)]
    first = None
    for publication in publications:
        result = rebuild_epoch(dep, p, root, publication)
        if result.accounts_root_ok:
            return result
        first = first or result
    return first

"""The watcher's challenger: for a root found false, prove the first false market slot
(instrument id order) or else the first false account leaf (address order) the chain accepts
with FraudProofs' commit-reveal, and remember every step. Both kinds go the same way (a
`Target`): dry run, commit, reveal, ledger; they differ in the function (`challenge_market`
or `challenge`) and in what the commitment names (the instrument id as an address, or the
account).

A market slot is a candidate when the rebuild found it not what the registry makes it (a
live instrument left out, a leaf for an expired one, other terms: `Rebuild.market_errors`);
its proof is the published market tree's slot.

For each false leaf the signers published (in the posted root, proof checked): the book is
the chain's at the root's state block, and must be the one the leaf commits to (a leaf that
lies about its book or its nonce re-prices nothing: fraud proofs cannot show it); a position
without a market leaf in the root (an instrument expired at its time) goes with its slot
shown empty and is not re-priced, as FraudProofs does (SECURITY.md, V8); the
candidate scenarios come from offchain.chain.fraud_model, which predicts the contract's
verdict; each candidate is dry-run on the node (`eth_call`, free): FraudProofs checks the
commitment last, so "no commitment" is the chain's word that the proof holds. For the first
such candidate, while at least `challenge_min_window_left_s` of the window is left:
  1. commit: a fresh salt, kept in `salts.json` in `data_dir` (mode 0600) before the
     `commit(keccak(challenger, engine, signed_at, account, salt))` transaction leaves;
  2. reveal: once the commit is mined, `challenge(..., salt)` is estimated against the
     pending block (the block after the commit's) and sent if within `challenge_gas_limit`.
`challenges.json` records every (epoch, account or slot) before its commit leaves, the hash of each
signed transaction (commit and reveal, bumps too) before it is sent, and the reveal's call
data with the salt left out, so no leaf is committed to or challenged twice, across restarts
too. At start (`reconcile`): an entry left "committing" is committed if the chain holds its
commitment, failed when its commit reverted or is unmined `challenge_reconcile_blocks` after
it was sent; a committed one is revealed with its stored salt; one left "sending" is resolved
from its receipt (proven, or failed: reverted or unmined that long). A failed entry is tried
again (a new commitment) when the window is still open and the epoch not void.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from offchain.chain.contracts import Deployment
from offchain.chain.epoch_leaves import positions_hash_fast
from offchain.chain.epoch_record import VOID_RECORD, FraudContracts, epoch_record, fraud_contracts
from offchain.chain.fraud import (
    CODES,
    NO_COMMITMENT,
    commitment,
    leaf_challenge_arguments,
    market_challenge_arguments,
    new_salt,
    slot_account,
)
from offchain.chain.fraud_model import candidates
from offchain.chain.merkle import MerkleError
from offchain.chain.published import PublishedLeaf
from offchain.chain.rebuild import Rebuild, find_root, params_for_root
from offchain.errors import UserError
from offchain.keeper.executor import Encoder, Executor, PreparedCall
from offchain.watcher.config import WatchConfig

log = logging.getLogger("netmargin.watch")


class Ledger:
    """challenges.json: {"<engine>:<epoch>:<account>": {status, tx, code, paid, gas, ...}},
    rewritten whole (atomically) on every change; a few entries per false root."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"config.data_dir: {path} is not a challenges file ({exc}); move it away to "
                                "start afresh") from exc

    @staticmethod
    def key(engine: str, epoch: int, account: str) -> str:
        return f"{to_checksum_address(engine)}:{epoch}:{to_checksum_address(account)}"

    def get(self, engine: str, epoch: int, account: str) -> dict | None:
        return self.entries.get(self.key(engine, epoch, account))

    def of_epoch(self, engine: str, epoch: int) -> list[dict]:
        prefix = f"{to_checksum_address(engine)}:{epoch}:"
        return [e for k, e in sorted(self.entries.items()) if k.startswith(prefix)]

    def put(self, engine: str, epoch: int, account: str, entry: dict) -> None:
        self.entries[self.key(engine, epoch, account)] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        tmp.replace(self.path)


class SaltStore:
    """salts.json in `data_dir`: {ledger key: {"salt", "commitment"}}, mode 0600. A salt is
    written before its commit leaves, so a restart can reveal it; anyone reading it learns
    which leaf the commitment names before the reveal shows it (it cannot take the payout:
    the commitment names the challenger)."""

    def __init__(self, path: Path):
        self.path = path
        self.salts: dict[str, dict] = {}
        if path.is_file():
            if path.stat().st_mode & 0o077:
                log.warning("salts file readable by others: made private", extra={"path": str(path)})
                path.chmod(0o600)
            try:
                self.salts = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"config.data_dir: {path} is not a salts file ({exc}); its commitments cannot be "
                                "revealed; move it away to start afresh") from exc

    def get(self, key: str) -> bytes | None:
        item = self.salts.get(key)
        return bytes.fromhex(item["salt"].removeprefix("0x")) if item else None

    def put(self, key: str, salt: bytes, commitment_: bytes) -> None:
        self.salts[key] = {"salt": "0x" + salt.hex(), "commitment": "0x" + commitment_.hex()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.salts, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)       # an older tmp file kept its mode through O_CREAT
        tmp.replace(self.path)


@dataclass
class Outcome:
    """What the challenger did about one false root."""

    # proven, failed, not_provable, already_challenged (by us), already_void (by another), window_over
    # (or too little of it left to commit and reveal), error
    status: str
    account: str = ""
    detail: str = ""
    entry: dict | None = None


@dataclass(frozen=True)
class Target:
    """One thing to challenge, of either kind: an account leaf (`challenge`) or a market
    slot (`challenge_market`). `subject` is the address the commitment and the ledger key
    name: the account, or the instrument id as an address (`slot_account`)."""

    kind: str                 # "account" | "market"
    subject: str
    function: str             # FraudProofs function the reveal calls
    call: PreparedCall        # its call data without a salt (filled in when revealed)
    predicted_code: int
    fields: dict              # kind-specific ledger fields


class Challenger:
    def __init__(self, cfg: WatchConfig, dep: Deployment, account: LocalAccount, metrics, *,
                 contracts: FraudContracts | None = None):
        self.cfg = cfg
        self.dep = dep
        self.account = account
        self.metrics = metrics
        known = dep.fraud_proofs.address if dep.fraud_proofs is not None else ""
        self.fc = contracts or fraud_contracts(dep, cfg.fraud_proofs_address or known)
        self.encode = Encoder(self.fc.fraud)
        # the transaction goes out through challenge_rpc_url when set (a private endpoint);
        # reads and estimates stay on rpc_url
        send_w3 = Web3(HTTPProvider(cfg.challenge_rpc_url, request_kwargs={"timeout": 60})) \
            if cfg.challenge_rpc_url else dep.w3
        self.executor = Executor(send_w3, account, cfg.gas, on_signed=self._signed)
        self.ledger = Ledger(Path(cfg.data_dir) / "challenges.json")
        self.salts = SaltStore(Path(cfg.data_dir) / "salts.json")
        # (engine, epoch, account, entry, ledger field of the hashes) of the transaction in flight
        self._sending: tuple[str, int, str, dict, str] | None = None

    def describe(self) -> dict:
        return {"challenger": self.account.address, "fraud_proofs": self.fc.fraud.address,
                "sent_through": self.cfg.challenge_rpc_url or self.cfg.rpc_url,
                "bond": self.fc.bond.address, "window_s": self.fc.window_s,
                "ledger": str(self.ledger.path), "salts": str(self.salts.path),
                "challenged_before": len(self.ledger.entries)}

    def handle(self, result: Rebuild, false_leaves: Iterable[PublishedLeaf]) -> Outcome:
        """Challenge the first provable leaf of `false_leaves` (address order) of a false root."""
        t0 = time.perf_counter()
        root = result.root
        ours = self.ledger.of_epoch(root.engine, root.epoch)
        now_hash = bytes(self.dep.oracle.functions.epoch_record_hash(root.engine, root.signed_at).call())
        if now_hash == VOID_RECORD:
            # proven already: by this watcher before a restart (its ledger says so), or by someone else
            ours = [e for e in ours if e.get("status") == "proven"] or ours
            if ours:
                return self._report(Outcome("already_challenged", ours[0].get("account", ""),
                                            f"{ours[0].get('status')} (tx {ours[0].get('tx') or 'none'}); the epoch "
                                            "is void", ours[0]), root.epoch)
            return self._report(Outcome("already_void", detail="the epoch was voided by another challenger"),
                                root.epoch)
        try:
            record = epoch_record(self.dep, root, self.fc.bond)
        except UserError as exc:
            return self._report(Outcome("error", detail=str(exc)), root.epoch)
        now = int(self.dep.w3.eth.get_block("latest")["timestamp"])
        closes = record.posted_at + self.fc.window_s
        if now > closes:
            return self._report(Outcome("window_over", detail=f"the challenge window closed at {closes}, "
                                                                f"chain time is {now}"), root.epoch)
        if closes - now < self.cfg.challenge_min_window_left_s:
            return self._report(Outcome("window_over", detail=f"the challenge window closes at {closes}, "
                                        f"{closes - now} s after chain time {now}: less than "
                                        f"challenge_min_window_left_s ({self.cfg.challenge_min_window_left_s}) to "
                                        "commit and reveal"), root.epoch)
        reasons = []
        # a false market slot first: provable from the registry alone, no re-pricing
        for iid in market_slots(result):
            subject = slot_account(iid)
            before = self.blocking(root.engine, root.epoch, subject)
            if before is not None:
                return self._resume(root.engine, root.epoch, subject, before, t0)
            try:
                call = self.encode("challenge_market", *market_challenge_arguments(result.trees, record, iid))
            except MerkleError as exc:
                reasons.append(f"market slot {iid}: {str(exc)[:200]}")
                continue
            reason = _dry_run(self.dep.w3, self.account.address, call)
            if reason != NO_COMMITMENT:
                reasons.append(f"market slot {iid}: chain: {reason}")
                continue
            return self._commit(result, record, Target("market", subject, "challenge_market", call, 6,
                                                       {"instrument_id": iid}), closes - now, t0)
        params = params_for_root(root, self.cfg.params or None)
        books = dict(zip([a.lower() for a in result.books.addresses], result.books.books_wad, strict=True))
        market_ids = {m.instrument_id for m in result.trees.market_leaves}
        for published in false_leaves:
            leaf = published.leaf
            account = to_checksum_address(leaf.account)
            before = self.blocking(root.engine, root.epoch, account)
            if before is not None:
                return self._resume(root.engine, root.epoch, account, before, t0)
            why = self._unprovable(leaf, books.get(account.lower()), market_ids)
            if why:
                reasons.append(f"{account}: {why}")
                continue
            book = books[account.lower()]
            honest = result.trees.account_proof(account)[0] if result.trees.has_account(account) else None
            try:
                tried = []
                for verdict in candidates(params, leaf, honest, book, result.trees.market_leaves, root.signed_at):
                    # without a salt: the reveal's call data, its salt filled in when sent
                    args = leaf_challenge_arguments(result.trees, record, leaf, published.proof, book,
                                                    verdict.scenarios, verdict.joint)
                    call = self.encode("challenge", *args)
                    named = "the leaf's own scenarios" if verdict.own else \
                        f"scenarios {list(verdict.scenarios)} joint {verdict.joint}"
                    # dry run: the commitment is checked last, so "no commitment" = the proof holds
                    reason = _dry_run(self.dep.w3, self.account.address, call)
                    if reason != NO_COMMITMENT:
                        tried.append(f"{named} (model: code {verdict.code}): chain: {reason}")
                        continue
                    target = Target("account", account, "challenge", call, verdict.code,
                                    {"scenarios": list(verdict.scenarios), "joint": verdict.joint})
                    return self._commit(result, record, target, closes - now, t0)
            except (MerkleError, UserError) as exc:
                tried.append(str(exc)[:200])
            reasons.append(f"{account}: " + "; ".join(tried))
        if not reasons:
            reasons.append("every account leaf is the rebuild's and every market slot the registry's: the lie is "
                           "in a market leaf's prices, which a fraud proof takes as given" if result.accounts_root_ok
                           else "no published leaf at hand in the posted root (set epoch_dir or keeper_url)")
        return self._report(Outcome("not_provable", detail=" | ".join(reasons)), root.epoch)

    def _resume(self, engine: str, epoch: int, subject: str, before: dict, t0: float) -> Outcome:
        """A (epoch, subject) this watcher challenged before: a reveal left undone is sent now,
        anything else is reported as it stands."""
        if before.get("status") == "committed":
            return self._reveal(engine, epoch, subject, before, t0)
        return self._report(Outcome("already_challenged", subject, f"{before.get('status')} "
                                    f"(tx {before.get('tx') or 'none'})", before), epoch)

    @staticmethod
    def _unprovable(leaf, book: dict | None, market_ids: set[int]) -> str:
        """Why no fraud proof can show this leaf false, before any pricing ("" if one may)."""
        if book is None:
            return "not in the engine's account list at the state block (no book to re-price)"
        if not any(book.values()):
            return "the account holds no position (nothing to re-price)"
        if positions_hash_fast(book) != leaf.positions_hash:
            return ("its positions_hash is not the chain's book at the state block: the book it commits to is "
                    "unknown, nothing can be re-priced")
        if not any(q and i in market_ids for i, q in book.items()):
            # a position without a market leaf (expired at the root) is shown with its slot
            # empty and not re-priced (SECURITY.md, V8): a book of such positions only has none
            return "every position of its book is expired at the root (no market leaf): nothing to re-price"
        return ""

    def _commit(self, result: Rebuild, record, target: Target, window_left: int, t0: float) -> Outcome:
        """Commit to (epoch, target subject) with a fresh salt, then reveal."""
        root = result.root
        account = target.subject
        key = Ledger.key(root.engine, root.epoch, account)
        salt = new_salt()
        h = commitment(self.account.address, root.engine, root.signed_at, account, salt)
        self.salts.put(key, salt, h)               # before the commit leaves: a restart reveals it
        entry = {"status": "committing", "kind": target.kind, "function": target.function, "epoch": root.epoch,
                 "account": account, "predicted_code": target.predicted_code, **target.fields,
                 "root_tx": root.tx_hash, "root_block": root.block, "signed_at": root.signed_at,
                 "posted_at": record.posted_at, "commitment": "0x" + h.hex(), "reveal_data": target.call.data,
                 "commit_txs": [], "commit_sent_block": int(self.dep.w3.eth.block_number), "at": time.time()}
        self.ledger.put(root.engine, root.epoch, account, entry)
        log.warning("challenge commitment sent", extra={
            "epoch": root.epoch, "kind": target.kind, "account": account, "predicted_code": target.predicted_code,
            "predicted": CODES.get(target.predicted_code, "none"), "window_left_s": window_left,
            **target.fields, "commitment": entry["commitment"]})
        res = self._send_tracked(root.engine, root.epoch, account, entry, "commit_txs",
                                 f"commit:{root.epoch}:{account}", self.encode("commit", h))
        if not (res.ok and self._committed_block(h)):
            return self._failed(root.engine, root.epoch, account, entry, f"commit: {res.error or 'not stored'}",
                                res.tx_hash)
        entry.update(status="committed", commit_tx=res.tx_hash, commit_block=res.block, commit_gas=res.gas_used)
        self.ledger.put(root.engine, root.epoch, account, entry)
        self.metrics.challenges.labels(outcome="committed", kind=_kind(entry)).inc()
        self.metrics.commit_gas.set(res.gas_used)
        self._report(Outcome("committed", account, f"commitment mined in block {res.block}", entry), root.epoch)
        return self._reveal(root.engine, root.epoch, account, entry, t0)

    def _reveal(self, engine: str, epoch: int, account: str, entry: dict, t0: float) -> Outcome:
        """Send the reveal (`challenge` or `challenge_market`, the entry's function, with the
        salt last) for a mined commitment, from its ledger entry and salt."""
        salt = self.salts.get(Ledger.key(engine, epoch, account))
        if salt is None:
            return self._failed(engine, epoch, account, entry, f"no salt for commitment {entry.get('commitment')} "
                                f"in {self.salts.path}: it cannot be revealed")
        function = entry.get("function", "challenge")
        args = list(self.encode.decode(function, entry["reveal_data"]))
        call = self.encode(function, *args[:-1], salt)
        try:
            gas = self._estimate_reveal(call, int(entry["commit_block"]))
        except ContractLogicError as exc:
            return self._failed(engine, epoch, account, entry,
                                f"reveal: {str(exc.message or exc).removeprefix('execution reverted: ')}")
        entry["gas_estimate"] = gas
        if gas > self.cfg.challenge_gas_limit:
            return self._failed(engine, epoch, account, entry, f"reveal: gas estimate {gas} above "
                                f"challenge_gas_limit {self.cfg.challenge_gas_limit}")
        entry.update(status="sending", sent_block=int(self.dep.w3.eth.block_number), txs=entry.get("txs", []))
        self.ledger.put(engine, epoch, account, entry)
        self.metrics.challenges.labels(outcome="submitted", kind=_kind(entry)).inc()
        log.warning("challenge sent", extra={"epoch": epoch, "kind": _kind(entry), "account": account,
                                             "predicted_code": entry.get("predicted_code"),
                                             "gas_estimate": gas, "commit_block": entry.get("commit_block")})
        res = self._send_tracked(engine, epoch, account, entry, "txs", f"challenge:{epoch}:{account}",
                                 call.with_gas(gas * 12 // 10 + 20_000))
        entry.update(tx=res.tx_hash, block=res.block, gas=res.gas_used)
        proven = [e for e in (_decode(self.fc.fraud.events.FraudProven(), x) for x in res.logs) if e]
        if not (res.ok and proven):
            return self._failed(engine, epoch, account, entry, res.error or "mined without FraudProven")
        ev = proven[0]["args"]
        mined_at = int(self.dep.w3.eth.get_block(res.block)["timestamp"])
        entry.update(status="proven", code=int(ev["code"]), paid=int(ev["paid"]),
                     chain_seconds_after_post=mined_at - int(entry["posted_at"]),
                     blocks_after_post=res.block - int(entry["root_block"]), seconds=round(time.perf_counter() - t0, 3))
        self.ledger.put(engine, epoch, account, entry)
        self.metrics.challenges.labels(outcome="succeeded", kind=_kind(entry)).inc()
        self.metrics.payout.inc(int(ev["paid"]))
        self.metrics.challenge_gas.set(res.gas_used)
        log.warning("challenge proven: epoch voided, bonds paid", extra={
            "epoch": epoch, "kind": _kind(entry), "account": account, "code": entry["code"], "fraud": CODES.get(entry["code"], ""),
            "paid": entry["paid"], "token": self.fc.token, "gas": res.gas_used, "tx": res.tx_hash,
            "block": res.block, "commit_tx": entry.get("commit_tx"), "commit_gas": entry.get("commit_gas"),
            "blocks_after_post": entry["blocks_after_post"],
            "chain_seconds_after_post": entry["chain_seconds_after_post"], "seconds": entry["seconds"]})
        return self._report(Outcome("proven", account, f"code {entry['code']}: {CODES.get(entry['code'], '')}",
                                    entry), epoch)

    def _estimate_reveal(self, call: PreparedCall, commit_block: int) -> int:
        """The reveal's gas, estimated where the commitment is mature: the pending block (the
        one after the commit's). A node without a pending block, or whose pending block is
        still the commit's, is asked again on the latest block once the head is past the commit
        (up to `challenge_reveal_wait_s`). Raises ContractLogicError when the reveal reverts."""
        tx = {"from": self.account.address, "to": call.to, "data": call.data}
        try:
            return self.dep.w3.eth.estimate_gas(tx, "pending")
        except ContractLogicError as exc:
            if "commitment too young" not in str(exc.message or exc):
                raise
        except (ValueError, Web3RPCError) as exc:       # no "pending" block on this node
            log.info("pending block refused: waiting for the block after the commit",
                     extra={"error": str(exc)[:200], "commit_block": commit_block})
        deadline = time.monotonic() + self.cfg.challenge_reveal_wait_s
        while int(self.dep.w3.eth.block_number) <= commit_block and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.dep.w3.eth.estimate_gas(tx, "latest")

    def _send_tracked(self, engine: str, epoch: int, account: str, entry: dict, field: str, label: str, call):
        """Send with every signed hash written to entry[field] before it leaves (`_signed`)."""
        self._sending = (engine, epoch, account, entry, field)
        try:
            return self.executor.send(label, call)
        finally:
            self._sending = None

    def _failed(self, engine: str, epoch: int, account: str, entry: dict, error: str, tx: str = "") -> Outcome:
        entry.update(status="failed", error=error)
        if tx and not entry.get("tx"):
            entry["tx"] = tx
        self.ledger.put(engine, epoch, account, entry)
        self.metrics.challenges.labels(outcome="failed", kind=_kind(entry)).inc()
        log.error("challenge failed", extra={"epoch": epoch, "account": account, "tx": entry.get("tx", ""),
                                             "commit_tx": entry.get("commit_tx", ""), "error": error[:300]})
        return self._report(Outcome("failed", account, error, entry), epoch)

    def _committed_block(self, h: bytes) -> int:
        """The block FraudProofs stored our commitment `h` in (0: none, or revealed)."""
        return int(self.fc.fraud.functions.commitments(self.account.address, h).call())

    def blocking(self, engine: str, epoch: int, account: str) -> dict | None:
        """The ledger entry that keeps (epoch, account) from being challenged again, if any (a
        reconciled failure whose window was still open does not)."""
        entry = self.ledger.get(engine, epoch, account)
        return None if entry is None or entry.get("retry") else entry

    def _signed(self, _label: str, tx_hash: str, nonce: int) -> None:
        """Executor hook: every signed commit or challenge (a gas bump too) is in the ledger
        before it is sent, so a crash before its receipt leaves a hash to look up."""
        if self._sending is None:
            return
        engine, epoch, account, entry, field = self._sending
        entry[field] = [*entry.get(field, []), tx_hash]
        entry["nonce"] = nonce
        self.ledger.put(engine, epoch, account, entry)

    def reconcile(self) -> list[dict]:
        """Resolve from the chain every ledger entry a crash left "committing", "committed" or
        "sending" -> the entries changed. A commitment found mined is revealed now."""
        changed = []
        head = int(self.dep.w3.eth.block_number)
        for key, entry in sorted(self.ledger.entries.items()):
            status = entry.get("status")
            if status not in ("committing", "committed", "sending"):
                continue
            engine, epoch, account = key.split(":")
            if status in ("committing", "committed"):
                if self._reconcile_commit(engine, int(epoch), account, entry, head):
                    changed.append(entry)
                continue
            receipt = _receipt(self.dep.w3, entry.get("txs", []))
            if receipt is not None:
                self._settle(entry, receipt)
                if receipt["status"] != 1:     # reverted (too little gas, a copier first): again if still open
                    entry["retry"] = self._still_open(engine, int(epoch), entry)
            else:
                waited = head - int(entry.get("sent_block", 0))
                if waited < self.cfg.challenge_reconcile_blocks:
                    log.warning("challenge still unresolved: no receipt yet", extra={
                        "epoch": int(epoch), "account": account, "txs": entry.get("txs", []),
                        "blocks_since_sent": waited})
                    continue
                entry.update(status="failed", error=f"no receipt for {entry.get('txs') or 'no transaction'} "
                                                    f"{waited} blocks after it was sent")
                entry["retry"] = self._still_open(engine, int(epoch), entry)
            self._reconciled(engine, int(epoch), account, entry)
            changed.append(entry)
        return changed

    def _reconcile_commit(self, engine: str, epoch: int, account: str, entry: dict, head: int) -> bool:
        """A commitment a crash left before its reveal: revealed when the chain holds it (its
        salt from salts.json), failed when its commit reverted or stayed unmined too long.
        -> whether the entry changed."""
        if entry["status"] == "committing":
            h = bytes.fromhex(entry["commitment"].removeprefix("0x"))
            block = self._committed_block(h)
            receipt = _receipt(self.dep.w3, entry.get("commit_txs", []))
            if block:
                entry.update(status="committed", commit_block=block)
                if receipt is not None:
                    entry.update(commit_tx=receipt["transactionHash"].to_0x_hex(), commit_gas=int(receipt["gasUsed"]))
                self.metrics.challenges.labels(outcome="committed", kind=_kind(entry)).inc()
            elif receipt is not None or head - int(entry.get("commit_sent_block", 0)) >= \
                    self.cfg.challenge_reconcile_blocks:
                entry.update(status="failed", error="commit reverted" if receipt is not None else
                             f"no receipt for the commit {entry.get('commit_txs') or 'no transaction'} "
                             f"{head - int(entry.get('commit_sent_block', 0))} blocks after it was sent")
                entry["retry"] = self._still_open(engine, epoch, entry)
                self.metrics.challenges.labels(outcome="failed", kind=_kind(entry)).inc()
                self._reconciled(engine, epoch, account, entry)
                return True
            else:
                log.warning("challenge commitment still unresolved: no receipt yet", extra={
                    "epoch": epoch, "account": account, "commit_txs": entry.get("commit_txs", [])})
                return False
        self._reconciled(engine, epoch, account, entry)
        if bytes(self.dep.oracle.functions.epoch_record_hash(engine, int(entry["signed_at"])).call()) == VOID_RECORD:
            self._failed(engine, epoch, account, entry, "reveal: fraud: epoch already void")
        elif not self._still_open(engine, epoch, entry):
            self._failed(engine, epoch, account, entry, "reveal: the challenge window closed before the reveal")
        else:
            self._reveal(engine, epoch, account, entry, time.perf_counter())
        return True

    def _reconciled(self, engine: str, epoch: int, account: str, entry: dict) -> None:
        entry["reconciled_at"] = time.time()
        self.ledger.put(engine, epoch, account, entry)
        log.warning("challenge reconciled with the chain", extra={
            "epoch": epoch, "account": account, "status": entry["status"], "tx": entry.get("tx", ""),
            "commit_block": entry.get("commit_block"), "retry": entry.get("retry", False),
            "error": entry.get("error", "")[:300]})

    def _settle(self, entry: dict, receipt) -> None:
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
        entry.update(tx=tx_hash, block=int(receipt["blockNumber"]), gas=int(receipt["gasUsed"]))
        proven = [e for e in (_decode(self.fc.fraud.events.FraudProven(), x) for x in receipt["logs"]) if e]
        if receipt["status"] == 1 and proven:
            ev = proven[0]["args"]
            entry.update(status="proven", code=int(ev["code"]), paid=int(ev["paid"]))
            self.metrics.challenges.labels(outcome="succeeded", kind=_kind(entry)).inc()
            self.metrics.payout.inc(int(ev["paid"]))
        else:
            entry.update(status="failed", error="reverted" if receipt["status"] != 1 else "mined without FraudProven")
            self.metrics.challenges.labels(outcome="failed", kind=_kind(entry)).inc()

    def _still_open(self, engine: str, epoch: int, entry: dict) -> bool:
        """May this (epoch, account) be challenged again: window open and epoch not void."""
        signed_at, posted_at = entry.get("signed_at"), entry.get("posted_at")
        if signed_at is None or posted_at is None:
            root = find_root(self.dep, epoch)
            signed_at = root.signed_at
            posted_at = int(self.dep.w3.eth.get_block(root.block)["timestamp"])
        if bytes(self.dep.oracle.functions.epoch_record_hash(engine, signed_at).call()) == VOID_RECORD:
            return False
        return int(self.dep.w3.eth.get_block("latest")["timestamp"]) <= int(posted_at) + self.fc.window_s

    def _report(self, outcome: Outcome, epoch: int) -> Outcome:
        if outcome.status == "not_provable":
            self.metrics.challenges.labels(outcome="not_provable", kind="none").inc()
            log.error("false root not provable on chain: no challenge sent",
                      extra={"epoch": epoch, "reasons": outcome.detail[:1500]})
        elif outcome.status in ("window_over", "error", "already_challenged", "already_void"):
            log.error(f"challenge not sent: {outcome.status.replace('_', ' ')}",
                      extra={"epoch": epoch, "account": outcome.account, "detail": outcome.detail[:500]})
        self.metrics.challenge_status = {"epoch": epoch, "status": outcome.status, "account": outcome.account,
                                         "kind": _kind(outcome.entry) if outcome.entry else "none",
                                         "detail": outcome.detail[:500],
                                         **{k: (outcome.entry or {}).get(k)
                                            for k in ("tx", "code", "paid", "gas", "commit_tx", "commit_block",
                                                      "instrument_id")
                                            if (outcome.entry or {}).get(k) is not None}}
        return outcome


def market_slots(result: Rebuild) -> list[int]:
    """The market slots the rebuild found not what the registry makes them (an instrument
    left out, a leaf for an expired one, other terms), ascending: the ids inside the root's
    count, the ones `challenge_market` can show."""
    return sorted({iid for iid, name, *_ in result.market_errors
                   if name in _SLOT_FIELDS and 1 <= iid <= result.root.market_count})


# registry_errors' fields (offchain.chain.rebuild): the slot's presence and terms; a market
# leaf's prices (mark, rates) are inputs no fraud proof re-derives
_SLOT_FIELDS = frozenset({"leaf", "kind", "underlying", "strike_wad", "expiry"})


def _kind(entry: dict) -> str:
    """The kind of challenge a ledger entry is (entries written before market slots: account)."""
    return entry.get("kind", "account")


def _dry_run(w3: Web3, sender: str, call: PreparedCall) -> str:
    """The revert reason of `call` from `sender` on the latest block ("" if it would succeed)."""
    try:
        w3.eth.call({"from": sender, "to": call.to, "data": call.data})
    except ContractLogicError as exc:
        return str(exc.message or exc).removeprefix("execution reverted: ")
    return ""


def _receipt(w3: Web3, hashes: list[str]):
    """The receipt of the first of `hashes` that was mined, latest first (a bump replaces)."""
    for tx_hash in reversed(hashes):
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            continue
        if receipt is not None:
            return receipt
    return None


def _decode(event, log_entry) -> dict | None:
    try:
        return event.process_log(log_entry)
    except Exception:  # noqa: BLE001 - another contract's log in the receipt
        return None

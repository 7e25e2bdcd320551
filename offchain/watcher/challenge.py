"""The watcher's challenger: for a root found false, send `FraudProofs.challenge` against the
first false leaf (address order) the chain accepts, and remember what was sent.

For each false leaf the signers published (in the posted root, proof checked): the book is
the chain's at the root's state block, and must be the one the leaf commits to (a leaf that
lies about its book or its nonce re-prices nothing: fraud proofs cannot show it); the
candidate scenarios come from offchain.chain.fraud_model, which predicts the contract's
verdict; each candidate is estimated on the node (a revert costs nothing) and the first the
chain accepts is sent, if its gas estimate is within `challenge_gas_limit` and the window
is open. `challenges.json` in `data_dir` records every (epoch, account) challenged before
the transaction leaves, and the hash of each signed transaction before it is sent, so no
leaf is challenged twice, across restarts too. An entry a crash left "sending" is resolved
from the chain at start (`reconcile`): mined -> proven or failed from its receipt; reverted,
or no receipt `challenge_reconcile_blocks` after it was sent -> failed, and challenged again
when the window is still open and the epoch not void.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TransactionNotFound

from offchain.chain.contracts import Deployment
from offchain.chain.epoch_leaves import positions_hash_fast
from offchain.chain.epoch_record import VOID_RECORD, FraudContracts, epoch_record, fraud_contracts
from offchain.chain.fraud import CODES, leaf_challenge_arguments
from offchain.chain.fraud_model import candidates
from offchain.chain.merkle import MerkleError
from offchain.chain.published import PublishedLeaf
from offchain.chain.rebuild import Rebuild, find_root, params_for_root
from offchain.errors import UserError
from offchain.keeper.executor import Encoder, Executor
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


@dataclass
class Outcome:
    """What the challenger did about one false root."""

    # proven, failed, not_provable, already_challenged (by us), already_void (by another), window_over, error
    status: str
    account: str = ""
    detail: str = ""
    entry: dict | None = None


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
        self._sending: tuple[str, int, str, dict] | None = None    # (engine, epoch, account, entry) in flight

    def describe(self) -> dict:
        return {"challenger": self.account.address, "fraud_proofs": self.fc.fraud.address,
                "sent_through": self.cfg.challenge_rpc_url or self.cfg.rpc_url,
                "bond": self.fc.bond.address, "window_s": self.fc.window_s,
                "ledger": str(self.ledger.path), "challenged_before": len(self.ledger.entries)}

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
        params = params_for_root(root, self.cfg.params or None)
        books = dict(zip([a.lower() for a in result.books.addresses], result.books.books_wad, strict=True))
        reasons = []
        for published in false_leaves:
            leaf = published.leaf
            account = to_checksum_address(leaf.account)
            before = self.blocking(root.engine, root.epoch, account)
            if before is not None:
                return self._report(Outcome("already_challenged", account, f"{before.get('status')} "
                                            f"(tx {before.get('tx') or 'none'})", before), root.epoch)
            why = self._unprovable(leaf, books.get(account.lower()))
            if why:
                reasons.append(f"{account}: {why}")
                continue
            book = books[account.lower()]
            honest = result.trees.account_proof(account)[0] if result.trees.has_account(account) else None
            try:
                tried = []
                for verdict in candidates(params, leaf, honest, book, result.trees.market_leaves, root.signed_at):
                    args = leaf_challenge_arguments(result.trees, record, leaf, published.proof, book,
                                                    verdict.scenarios, verdict.joint)
                    call = self.encode("challenge", *args)
                    named = "the leaf's own scenarios" if verdict.own else \
                        f"scenarios {list(verdict.scenarios)} joint {verdict.joint}"
                    try:
                        gas = self.dep.w3.eth.estimate_gas({"from": self.account.address, "to": call.to,
                                                            "data": call.data})
                    except ContractLogicError as exc:
                        tried.append(f"{named} (model: code {verdict.code}): chain: "
                                     f"{str(exc.message or exc).removeprefix('execution reverted: ')}")
                        continue
                    if gas > self.cfg.challenge_gas_limit:
                        tried.append(f"{named}: gas estimate {gas} above challenge_gas_limit "
                                     f"{self.cfg.challenge_gas_limit}")
                        continue
                    return self._send(result, record, account, verdict, call, gas, closes - now, t0)
            except (MerkleError, UserError) as exc:
                tried.append(str(exc)[:200])
            reasons.append(f"{account}: " + "; ".join(tried))
        if not reasons:
            reasons.append("every account leaf is the rebuild's: the lie is in the market leaves, which a fraud "
                           "proof takes as given" if result.accounts_root_ok else
                           "no published leaf at hand in the posted root (set epoch_dir or keeper_url)")
        return self._report(Outcome("not_provable", detail=" | ".join(reasons)), root.epoch)

    @staticmethod
    def _unprovable(leaf, book: dict | None) -> str:
        """Why no fraud proof can show this leaf false, before any pricing ("" if one may)."""
        if book is None:
            return "not in the engine's account list at the state block (no book to re-price)"
        if not any(book.values()):
            return "the account holds no position (nothing to re-price)"
        if positions_hash_fast(book) != leaf.positions_hash:
            return ("its positions_hash is not the chain's book at the state block: the book it commits to is "
                    "unknown, nothing can be re-priced")
        return ""

    def _send(self, result: Rebuild, record, account: str, verdict, call, gas: int, window_left: int,
              t0: float) -> Outcome:
        root = result.root
        entry = {"status": "sending", "epoch": root.epoch, "account": account, "predicted_code": verdict.code,
                 "scenarios": list(verdict.scenarios), "joint": verdict.joint, "gas_estimate": gas,
                 "root_tx": root.tx_hash, "signed_at": root.signed_at, "posted_at": record.posted_at,
                 "sent_block": int(self.dep.w3.eth.block_number), "txs": [], "at": time.time()}
        self.ledger.put(root.engine, root.epoch, account, entry)
        self._sending = (root.engine, root.epoch, account, entry)
        self.metrics.challenges.labels(outcome="submitted").inc()
        log.warning("challenge sent", extra={"epoch": root.epoch, "account": account, "predicted_code": verdict.code,
                                             "predicted": CODES.get(verdict.code, "none"), "gas_estimate": gas,
                                             "window_left_s": window_left,
                                             "scenarios": list(verdict.scenarios) or "own"})
        try:
            res = self.executor.send(f"challenge:{root.epoch}:{account}", call)
        finally:
            self._sending = None
        entry.update(tx=res.tx_hash, block=res.block, gas=res.gas_used)
        proven = [e for e in (_decode(self.fc.fraud.events.FraudProven(), x) for x in res.logs) if e]
        if res.ok and proven:
            ev = proven[0]["args"]
            mined_at = int(self.dep.w3.eth.get_block(res.block)["timestamp"])
            entry.update(status="proven", code=int(ev["code"]), paid=int(ev["paid"]),
                         chain_seconds_after_post=mined_at - record.posted_at,
                         blocks_after_post=res.block - root.block, seconds=round(time.perf_counter() - t0, 3))
            self.ledger.put(root.engine, root.epoch, account, entry)
            self.metrics.challenges.labels(outcome="succeeded").inc()
            self.metrics.payout.inc(int(ev["paid"]))
            self.metrics.challenge_gas.set(res.gas_used)
            log.warning("challenge proven: epoch voided, bonds paid", extra={
                "epoch": root.epoch, "account": account, "code": entry["code"], "fraud": CODES.get(entry["code"], ""),
                "paid": entry["paid"], "token": self.fc.token, "gas": res.gas_used, "tx": res.tx_hash,
                "block": res.block, "blocks_after_post": entry["blocks_after_post"],
                "chain_seconds_after_post": entry["chain_seconds_after_post"], "seconds": entry["seconds"]})
            return self._report(Outcome("proven", account, f"code {entry['code']}: {CODES.get(entry['code'], '')}",
                                        entry), root.epoch)
        entry.update(status="failed", error=res.error or "mined without FraudProven")
        self.ledger.put(root.engine, root.epoch, account, entry)
        self.metrics.challenges.labels(outcome="failed").inc()
        log.error("challenge failed", extra={"epoch": root.epoch, "account": account, "tx": res.tx_hash,
                                             "error": entry["error"][:300]})
        return self._report(Outcome("failed", account, entry["error"], entry), root.epoch)

    def blocking(self, engine: str, epoch: int, account: str) -> dict | None:
        """The ledger entry that keeps (epoch, account) from being challenged again, if any (a
        reconciled failure whose window was still open does not)."""
        entry = self.ledger.get(engine, epoch, account)
        return None if entry is None or entry.get("retry") else entry

    def _signed(self, _label: str, tx_hash: str, nonce: int) -> None:
        """Executor hook: every signed challenge (a gas bump too) is in the ledger before it
        is sent, so a crash before its receipt leaves a hash to look up."""
        if self._sending is None:
            return
        engine, epoch, account, entry = self._sending
        entry["txs"] = [*entry.get("txs", []), tx_hash]
        entry["nonce"] = nonce
        self.ledger.put(engine, epoch, account, entry)

    def reconcile(self) -> list[dict]:
        """Resolve every ledger entry left "sending" (a crash between sending a challenge and
        reading its receipt) from the chain -> the entries changed."""
        changed = []
        head = int(self.dep.w3.eth.block_number)
        for key, entry in sorted(self.ledger.entries.items()):
            if entry.get("status") != "sending":
                continue
            engine, epoch, account = key.split(":")
            receipt = None
            for tx_hash in reversed(entry.get("txs", [])):    # a bump replaces: the latest is likelier
                try:
                    receipt = self.dep.w3.eth.get_transaction_receipt(tx_hash)
                except TransactionNotFound:
                    continue
                if receipt is not None:
                    break
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
            entry["reconciled_at"] = time.time()
            self.ledger.put(engine, int(epoch), account, entry)
            changed.append(entry)
            log.warning("challenge reconciled with the chain", extra={
                "epoch": int(epoch), "account": account, "status": entry["status"], "tx": entry.get("tx", ""),
                "retry": entry.get("retry", False), "error": entry.get("error", "")[:300]})
        return changed

    def _settle(self, entry: dict, receipt) -> None:
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
        entry.update(tx=tx_hash, block=int(receipt["blockNumber"]), gas=int(receipt["gasUsed"]))
        proven = [e for e in (_decode(self.fc.fraud.events.FraudProven(), x) for x in receipt["logs"]) if e]
        if receipt["status"] == 1 and proven:
            ev = proven[0]["args"]
            entry.update(status="proven", code=int(ev["code"]), paid=int(ev["paid"]))
            self.metrics.challenges.labels(outcome="succeeded").inc()
            self.metrics.payout.inc(int(ev["paid"]))
        else:
            entry.update(status="failed", error="reverted" if receipt["status"] != 1 else "mined without FraudProven")
            self.metrics.challenges.labels(outcome="failed").inc()

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
            self.metrics.challenges.labels(outcome="not_provable").inc()
            log.error("false root not provable on chain: no challenge sent",
                      extra={"epoch": epoch, "reasons": outcome.detail[:1500]})
        elif outcome.status in ("window_over", "error", "already_challenged", "already_void"):
            log.error(f"challenge not sent: {outcome.status.replace('_', ' ')}",
                      extra={"epoch": epoch, "account": outcome.account, "detail": outcome.detail[:500]})
        self.metrics.challenge_status = {"epoch": epoch, "status": outcome.status, "account": outcome.account,
                                         "detail": outcome.detail[:500],
                                         **{k: (outcome.entry or {}).get(k) for k in ("tx", "code", "paid", "gas")
                                            if (outcome.entry or {}).get(k) is not None}}
        return outcome


def _decode(event, log_entry) -> dict | None:
    try:
        return event.process_log(log_entry)
    except Exception:  # noqa: BLE001 - another contract's log in the receipt
        return None

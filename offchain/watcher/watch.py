"""The watcher loop: every newly posted root of an engine is rebuilt from the chain
(offchain.chain.rebuild) and either confirmed or reported as false, naming the first false
leaf when a keeper's published leaves are at hand (its epoch files or its `/proof/<account>`).

Signers who post a false root can withhold its leaves, but a leaf applied on chain carries
itself and its proof in calldata: for every false root, while it is the current one, the
watcher also reads the leaves applied from it (offchain.watcher.harvest), and a false one is
reported and challenged like a published one (each leaf once).

A false root latches the alarm: `/health` answers 503 with the epoch, account, field and
figures until the watcher is restarted, because a root the signers got wrong stays a fact
whatever roots follow it. With a challenger key (offchain.watcher.challenge) the watcher
then sends a fraud proof against the first false market slot or account leaf the chain
accepts; without one it reports only. A root that cannot be rebuilt (its data never
published) is tried again while it is the current root and reported false once a newer root
supersedes it, so no root can stop the watcher from checking the ones after it.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from eth_utils import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Gauge

from offchain.chain.contracts import Deployment
from offchain.chain.merkle import MerkleError
from offchain.chain.published import PublishedLeaf, file_epoch, file_leaves, leaf_from_keeper
from offchain.chain.rebuild import (
    PostedRoot,
    Rebuild,
    leaf_diff,
    posted_roots,
    rebuild_from_chain,
)
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError
from offchain.watcher.config import WatchConfig
from offchain.watcher.harvest import AppliedLeaf, Harvester

log = logging.getLogger("netmargin.watch")


class WatchMetrics:
    """Prometheus gauges and counters, and the health verdict MetricsServer serves."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.head_block = Gauge("watch_head_block", "Chain head block number at the last poll", registry=r)
        self.epoch_checked = Gauge("watch_epoch_checked", "Last epoch rebuilt", registry=r)
        self.checks = Counter("watch_roots_checked", "Roots rebuilt by outcome", ["outcome"], registry=r)
        self.false_root = Gauge("watch_false_root", "1 once a posted root was found false (latched)", registry=r)
        self.rebuild_seconds = Gauge("watch_rebuild_seconds", "Duration of the last rebuild", registry=r)
        self.accounts = Gauge("watch_accounts", "Account leaves in the last rebuilt epoch", registry=r)
        self.last_poll = Gauge("watch_last_poll_timestamp_seconds", "End of the last successful poll", registry=r)
        self.errors = Counter("watch_errors", "Errors by kind", ["kind"], registry=r)
        self.challenges = Counter("watch_challenges", "Fraud proofs by outcome: committed (commitment mined), "
                                  "submitted (reveal sent), succeeded, failed, not_provable; and by kind: account "
                                  "(a leaf), market (a slot), none (nothing sent)", ["outcome", "kind"], registry=r)
        self.payout = Counter("watch_challenge_payout", "Bond payout received for proven challenges "
                              "(token base units)", registry=r)
        self.challenge_gas = Gauge("watch_challenge_gas", "Gas used by the last proven challenge", registry=r)
        self.commit_gas = Gauge("watch_challenge_commit_gas", "Gas used by the last challenge commitment", registry=r)
        self.harvested = Counter("watch_applied_leaves", "Leaves of false roots applied on chain, read back from "
                                 "their transactions, by verdict: honest, false, not_harvested", ["verdict"],
                                 registry=r)
        self.alarm_reason = ""
        # "report only" or the challenger's address; the last challenge's outcome (for /health)
        self.challenge_mode = "report only: no challenger_key"
        self.challenge_status: dict = {}

    def health(self, max_lag_blocks: int, max_cycle_age_s: float) -> tuple[bool, dict]:
        last = self.last_poll._value.get()
        age = time.time() - last if last else float("inf")
        status = {"head_block": int(self.head_block._value.get()),
                  "epoch_checked": int(self.epoch_checked._value.get()),
                  "last_poll_age_s": round(age, 3), "challenge_mode": self.challenge_mode}
        if self.challenge_status:
            status["challenge"] = self.challenge_status
        if self.alarm_reason:
            status["reason"] = self.alarm_reason
            return False, status
        if age > max_cycle_age_s:
            status["reason"] = "no poll finished recently"
            return False, status
        return True, status


@dataclass
class Finding:
    """The verdict on one root."""

    root: PostedRoot
    ok: bool
    reason: str = ""
    account: str = ""
    fields: list[tuple[str, object, object]] = field(default_factory=list)
    seconds: float = 0.0
    accounts: int = 0
    challenge: object = None      # the challenger's Outcome, when one ran
    published: PublishedLeaf | None = None   # the first false leaf, as the signers published it
    applied: list[AppliedLeaf] = field(default_factory=list)   # a harvest's false applied leaves


@dataclass
class _Open:
    """A false root whose applied leaves are still read: from `next_block` up to `until`, the
    block of the next root (None while it is the current root: leaves apply only from it)."""

    result: Rebuild
    next_block: int
    until: int | None = None


class Watcher:
    def __init__(self, cfg: WatchConfig, dep: Deployment, metrics: WatchMetrics | None = None, challenger=None):
        self.cfg = cfg
        self.dep = dep
        self.metrics = metrics or WatchMetrics()
        # offchain.watcher.challenge.Challenger, or None: report only
        self.challenger = challenger
        if challenger is not None:
            self.metrics.challenge_mode = f"challenging from {challenger.account.address}"
        self.next_block = 0           # RootPosted logs are read from here on
        self.next_epoch = cfg.start_epoch
        self.findings: list[Finding] = []
        self.harvester = Harvester(dep)
        self.open: dict[int, _Open] = {}          # false roots by epoch, their applied leaves still read
        self.applied: deque[AppliedLeaf] = deque(maxlen=10_000)   # the latest applied leaves of false roots
        self._judged: set[tuple[int, str, bytes]] = set()   # (epoch, account, leaf hash): each leaf once

    def start(self) -> None:
        """Without start_epoch, begin at the latest root posted (history is `netmargin rebuild`'s job).
        Challenges a crash left "sending" are first resolved from the chain."""
        if self.challenger is not None:
            self.challenger.reconcile()
        if self.cfg.start_epoch == 0:
            epoch, ts = self.dep.oracle.functions.epoch_root(self.dep.engine.address).call()[:2]
            self.next_epoch = int(epoch) if ts else 0
        log.info("watch started", extra={"engine": self.dep.engine.address, "oracle": self.dep.oracle.address,
                                         "from_epoch": self.next_epoch,
                                         "published_leaves": self.cfg.epoch_dir or self.cfg.keeper_url or "none",
                                         "challenge": self.challenger.describe() if self.challenger else
                                         "off: no challenger_key, false leaves are reported, not challenged"})

    def poll(self) -> list[Finding]:
        """Rebuild every root posted since the last poll whose epoch is >= next_epoch."""
        head = self.dep.w3.eth.block_number
        self.metrics.head_block.set(head)
        if head < self.next_block:        # no new block since the last poll
            self.metrics.last_poll.set(time.time())
            return []
        roots = [r for r in posted_roots(self.dep, self.next_block, head) if r.epoch >= self.next_epoch]
        out = []
        for root in roots:
            finding = self.check(root)
            out.append(finding)
            self.next_epoch = root.epoch + 1
            self.next_block = root.block + 1   # if a later check raises, the next poll resumes there
        out.extend(self._harvest(head))
        self.next_block = head + 1
        self.metrics.last_poll.set(time.time())
        self.findings.extend(out)
        return out

    def _harvest(self, head: int) -> list[Finding]:
        """Read the leaves applied from each open false root up to `head` (or up to the next
        root), challenge the false ones; a root is closed once a newer one is read past or its
        epoch is settled (proven, void, window over)."""
        out = []
        for epoch, o in sorted(self.open.items()):
            last = head if o.until is None else min(o.until, head)
            if last >= o.next_block:
                applied = self.harvester.applied(o.result.root, o.next_block, last)
                o.next_block = last + 1
                finding = self._judge(o.result, applied)
                if finding is not None:
                    out.append(finding)
                    if _settled(finding.challenge):
                        del self.open[epoch]
                        continue
            if o.until is not None and o.next_block > o.until:
                del self.open[epoch]
        return out

    def _judge(self, result: Rebuild, applied: list[AppliedLeaf]) -> Finding | None:
        """Compare each newly applied leaf with the rebuilt one; the false ones go to the
        challenger (in application order) -> a Finding when one is false."""
        root = result.root
        false: list[AppliedLeaf] = []
        for a in applied:
            self.applied.append(a)
            extra = {"epoch": root.epoch, "account": a.account, "tx": a.tx_hash, "block": a.block}
            if a.leaf is None:
                self.metrics.harvested.labels(verdict="not_harvested").inc()
                log.warning("applied leaf not harvested", extra={**extra, "why": a.note})
                continue
            key = (root.epoch, a.account.lower(), a.leaf_hash)
            if key in self._judged:
                continue
            self._judged.add(key)
            diff = self._diff(result, a.published())
            self.metrics.harvested.labels(verdict="false" if diff else "honest").inc()
            if diff:
                false.append(a)
                log.error("applied leaf FALSE", extra={**extra, "function": a.function, "via": a.via or "direct",
                                                       "fields": {n: {"rebuilt": str(x), "applied": str(y)}
                                                                  for n, x, y in diff}})
        if not false:
            return None
        first = false[0]
        diff = self._diff(result, first.published())
        figures = "; ".join(f"{n} rebuilt {x} applied {y}" for n, x, y in diff)
        finding = Finding(root, False, f"epoch {root.epoch}: false leaf applied on chain (tx {first.tx_hash}, "
                                       f"{first.function}): account {first.account}: {figures}",
                          first.account, diff, published=first.published(), applied=false)
        if self.challenger is not None:
            # a leaf this watcher challenged before (from the signers' files or an earlier
            # transaction) is not sent again, nor does it stop the others being tried
            fresh = [a for a in false if self.challenger.blocking(root.engine, root.epoch, a.account) is None]
            finding.challenge = self.challenger.handle(result, (a.published() for a in (fresh or false[:1])))
        return finding

    def check(self, root: PostedRoot) -> Finding:
        doc = self._epoch_file(root)
        t0 = time.perf_counter()
        try:
            result = rebuild_from_chain(self.dep, params=self.cfg.params or None, epoch_file=doc,
                                        epoch_file_name=f"epoch file of epoch {root.epoch}", root=root)
        except UserError as exc:
            # Its data may still come while it is the current root (the oracle takes an
            # epoch's publication only then): the next poll tries again. Once a newer root
            # is posted nothing about it can change, and retrying it would stop every later
            # root from being checked: a signer could hide a false root behind one it never
            # published. Such a root is false (docs/verification.md) and latches the alarm.
            if int(self.dep.oracle.functions.epoch_root(root.engine).call()[0]) <= root.epoch:
                raise
            return self._unrebuildable(root, str(exc))
        seconds = time.perf_counter() - t0
        false_leaves = self._false_leaves(result, doc) if not result.matches else iter(())
        finding = self._verdict(result, false_leaves)
        finding.seconds, finding.accounts = seconds, len(result.trees.account_leaves)
        m = self.metrics
        m.epoch_checked.set(root.epoch)
        m.rebuild_seconds.set(seconds)
        m.accounts.set(finding.accounts)
        m.checks.labels(outcome="match" if finding.ok else "false").inc()
        for o in self.open.values():      # a newer root: no leaf of an older one applies after its block
            if o.until is None:
                o.until = root.block
        extra = {"epoch": root.epoch, "root_block": root.block, "state_block": result.publication.state_block,
                 "accounts": finding.accounts, "seconds": round(seconds, 3),
                 "accounts_root": "0x" + root.accounts_root.hex()}
        if finding.ok:
            log.info("root checked: match", extra=extra)
        else:
            extra.update(reason=finding.reason, account=finding.account,
                         fields={n: {"rebuilt": str(a), "published": str(b)} for n, a, b in finding.fields},
                         challenge="sending" if self.challenger else "off")
            log.error("root checked: FALSE", extra=extra)
            m.false_root.set(1)
            if not m.alarm_reason:
                m.alarm_reason = finding.reason
            if self.challenger is not None:
                first = [finding.published] if finding.published is not None else []
                finding.challenge = self.challenger.handle(result, itertools.chain(first, false_leaves))
            if not result.accounts_root_ok and not _settled(finding.challenge):
                self.open[root.epoch] = _Open(result, root.block)
        return finding

    def _unrebuildable(self, root: PostedRoot, why: str) -> Finding:
        """The verdict on a superseded root that cannot be rebuilt (no publication, no epoch
        file): false, latched, nothing to challenge (no market leaf to re-price with)."""
        finding = Finding(root, False, f"epoch {root.epoch}: cannot be rebuilt and was superseded: {why}")
        self.metrics.epoch_checked.set(root.epoch)
        self.metrics.checks.labels(outcome="false").inc()
        self.metrics.false_root.set(1)
        if not self.metrics.alarm_reason:
            self.metrics.alarm_reason = finding.reason
        for o in self.open.values():      # a newer root: no leaf of an older one applies after its block
            if o.until is None:
                o.until = root.block
        log.error("root checked: FALSE", extra={"epoch": root.epoch, "root_block": root.block,
                                                "reason": finding.reason,
                                                "accounts_root": "0x" + root.accounts_root.hex()})
        return finding

    def _epoch_file(self, root: PostedRoot) -> dict | None:
        if not self.cfg.epoch_dir:
            return None
        path = Path(self.cfg.epoch_dir) / to_checksum_address(root.engine) / f"epoch-{root.epoch}.json"
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("epoch file unreadable", extra={"path": str(path), "error": str(exc)[:200]})
            return None
        # the signers' file: any JSON may be there, and a crash here would stop the watcher
        if not isinstance(doc, dict) or not isinstance(doc.get("root"), dict):
            log.warning("epoch file unusable", extra={"path": str(path), "error": "not a keeper epoch file "
                                                      "(expected an object with a root object)"})
            return None
        return doc

    def _verdict(self, result: Rebuild, false_leaves: Iterator[PublishedLeaf]) -> Finding:
        root = result.root
        if result.market_errors:
            iid, name, published, expected = result.market_errors[0]
            return Finding(root, False, f"epoch {root.epoch}: market leaf of instrument {iid}: {name} is "
                                        f"{published!r}, expected {expected!r}",
                           fields=[(name, expected, published)])
        if result.matches:
            return Finding(root, True)
        what = ", ".join(n for n, ok in (("accounts root", result.accounts_root_ok), ("market root", result.market_root_ok),
                                         ("account count", result.count_ok)) if not ok)
        published = next(false_leaves, None)
        if published is None:
            return Finding(root, False, f"epoch {root.epoch}: {what} differs from the rebuild; no published "
                                        "leaf at hand names the account")
        account = to_checksum_address(published.leaf.account)
        diff = self._diff(result, published)
        figures = "; ".join(f"{n} rebuilt {a} published {b}" for n, a, b in diff)
        finding = Finding(root, False, f"epoch {root.epoch}: {what} differs; first false leaf: account {account}: "
                                       f"{figures}", account, diff)
        finding.published = published
        return finding

    @staticmethod
    def _diff(result: Rebuild, published: PublishedLeaf) -> list:
        if not result.trees.has_account(published.leaf.account):
            return [("account", None, published.leaf.account)]
        return leaf_diff(result.leaf(published.leaf.account), published.leaf)

    def _false_leaves(self, result: Rebuild, doc: dict | None) -> Iterator[PublishedLeaf]:
        """The signers' published leaves that are in the posted root and differ from the
        rebuilt ones, in address order: every leaf of their epoch file, else their
        `/proof/<account>` answers (one request per account, asked lazily)."""
        root = result.root
        where = f"epoch file of epoch {root.epoch}"
        if doc is not None and doc.get("root", {}).get("accounts_root") == "0x" + root.accounts_root.hex():
            try:
                trees = EpochTrees.build(root.engine, file_epoch(doc, where), file_leaves(doc, where))
            except (UserError, MerkleError) as exc:
                log.warning("epoch file unusable", extra={"epoch": root.epoch, "error": str(exc)[:200]})
                return
            if trees.epoch != root.epoch or trees.accounts.root != root.accounts_root:
                return      # not the posted tree: its leaves prove nothing about this root
            for leaf in sorted(trees.account_leaves, key=lambda x: x.account.lower()):
                published = PublishedLeaf(root.epoch, *trees.account_proof(leaf.account), where)
                if self._diff(result, published):
                    yield published
            return
        if not self.cfg.keeper_url:
            return
        for leaf in sorted(result.trees.account_leaves, key=lambda x: x.account.lower()):
            try:
                published = leaf_from_keeper(self.cfg.keeper_url, leaf.account)
            except UserError as exc:
                log.warning("keeper proof unavailable", extra={"error": str(exc)[:200]})
                return
            if published is None or published.epoch != root.epoch:
                continue
            if leaf_diff(leaf, published.leaf) and published.in_root(root.engine, root.accounts_root):
                yield published

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except UserError as exc:
                self.metrics.errors.labels(kind="UserError").inc()
                log.error("poll failed", extra={"error": str(exc)[:300]})
            except Exception as exc:  # noqa: BLE001 - a watcher logs, counts and keeps going
                self.metrics.errors.labels(kind=type(exc).__name__).inc()
                log.exception("poll failed", extra={"error": str(exc)[:300]})
            stop.wait(self.cfg.poll_interval_s)


def _settled(outcome) -> bool:
    """Nothing more to challenge in this epoch: proven (by us or another), or window closed."""
    status = getattr(outcome, "status", "")
    return status in ("proven", "already_void", "window_over") or \
        (status == "already_challenged" and (outcome.entry or {}).get("status") == "proven")

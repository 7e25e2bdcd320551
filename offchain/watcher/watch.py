"""The watcher loop: every newly posted root of an engine is rebuilt from the chain
(offchain.chain.rebuild) and either confirmed or reported as false, naming the first false
leaf when a keeper's published leaves are at hand (its epoch files or its `/proof/<account>`).

A false root latches the alarm: `/health` answers 503 with the epoch, account, field and
figures until the watcher is restarted, because a root the signers got wrong stays a fact
whatever roots follow it. Submitting an on-chain challenge is not wired: the watcher reports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_utils import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Gauge

from offchain.chain.contracts import Deployment
from offchain.chain.published import file_leaves, first_false_leaf_at_keeper
from offchain.chain.rebuild import (
    PostedRoot,
    Rebuild,
    first_false_leaf,
    posted_roots,
    rebuild_from_chain,
)
from offchain.errors import UserError
from offchain.watcher.config import WatchConfig

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
        self.alarm_reason = ""

    def health(self, max_lag_blocks: int, max_cycle_age_s: float) -> tuple[bool, dict]:
        last = self.last_poll._value.get()
        age = time.time() - last if last else float("inf")
        status = {"head_block": int(self.head_block._value.get()),
                  "epoch_checked": int(self.epoch_checked._value.get()),
                  "last_poll_age_s": round(age, 3)}
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


class Watcher:
    def __init__(self, cfg: WatchConfig, dep: Deployment, metrics: WatchMetrics | None = None):
        self.cfg = cfg
        self.dep = dep
        self.metrics = metrics or WatchMetrics()
        self.next_block = 0           # RootPosted logs are read from here on
        self.next_epoch = cfg.start_epoch
        self.findings: list[Finding] = []

    def start(self) -> None:
        """Without start_epoch, begin at the latest root posted (history is `netmargin rebuild`'s job)."""
        if self.cfg.start_epoch == 0:
            epoch, ts = self.dep.oracle.functions.epoch_root(self.dep.engine.address).call()[:2]
            self.next_epoch = int(epoch) if ts else 0
        log.info("watch started", extra={"engine": self.dep.engine.address, "oracle": self.dep.oracle.address,
                                         "from_epoch": self.next_epoch,
                                         "published_leaves": self.cfg.epoch_dir or self.cfg.keeper_url or "none",
                                         "challenge": "not wired: false leaves are reported, not challenged"})

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
        self.next_block = head + 1
        self.metrics.last_poll.set(time.time())
        self.findings.extend(out)
        return out

    def check(self, root: PostedRoot) -> Finding:
        doc = self._epoch_file(root)
        t0 = time.perf_counter()
        result = rebuild_from_chain(self.dep, params=self.cfg.params or None, epoch_file=doc,
                                    epoch_file_name=f"epoch file of epoch {root.epoch}", root=root)
        seconds = time.perf_counter() - t0
        finding = self._verdict(result, doc)
        finding.seconds, finding.accounts = seconds, len(result.trees.account_leaves)
        m = self.metrics
        m.epoch_checked.set(root.epoch)
        m.rebuild_seconds.set(seconds)
        m.accounts.set(finding.accounts)
        m.checks.labels(outcome="match" if finding.ok else "false").inc()
        extra = {"epoch": root.epoch, "root_block": root.block, "state_block": result.publication.state_block,
                 "accounts": finding.accounts, "seconds": round(seconds, 3),
                 "accounts_root": "0x" + root.accounts_root.hex()}
        if finding.ok:
            log.info("root checked: match", extra=extra)
        else:
            extra.update(reason=finding.reason, account=finding.account,
                         fields={n: {"rebuilt": str(a), "published": str(b)} for n, a, b in finding.fields},
                         challenge="not wired")
            log.error("root checked: FALSE", extra=extra)
            m.false_root.set(1)
            if not m.alarm_reason:
                m.alarm_reason = finding.reason
        return finding

    def _epoch_file(self, root: PostedRoot) -> dict | None:
        if not self.cfg.epoch_dir:
            return None
        path = Path(self.cfg.epoch_dir) / to_checksum_address(root.engine) / f"epoch-{root.epoch}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("epoch file unreadable", extra={"path": str(path), "error": str(exc)[:200]})
            return None

    def _verdict(self, result: Rebuild, doc: dict | None) -> Finding:
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
        false = self._first_false_leaf(result, doc)
        if false is None:
            return Finding(root, False, f"epoch {root.epoch}: {what} differs from the rebuild; no published "
                                        "leaf at hand names the account")
        account, diff = false
        figures = "; ".join(f"{n} rebuilt {a} published {b}" for n, a, b in diff)
        return Finding(root, False, f"epoch {root.epoch}: {what} differs; first false leaf: account {account}: "
                                    f"{figures}", account, diff)

    def _first_false_leaf(self, result: Rebuild, doc: dict | None):
        root = result.root
        if doc is not None and doc.get("root", {}).get("accounts_root") == "0x" + root.accounts_root.hex():
            return first_false_leaf(result, file_leaves(doc, f"epoch file of epoch {root.epoch}"))
        if not self.cfg.keeper_url:
            return None
        try:
            return first_false_leaf_at_keeper(result, self.cfg.keeper_url)
        except UserError as exc:
            log.warning("keeper proof unavailable", extra={"error": str(exc)[:200]})
            return None

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

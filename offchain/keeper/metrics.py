"""Prometheus metrics and a health endpoint for the keeper.

`/metrics` is the Prometheus text format; `/health` answers 200 while the keeper is keeping
up (processed block within `max_lag_blocks` of head and a cycle finished recently), else 503
with the reason, so an orchestrator can restart it.
"""

from __future__ import annotations

import errno
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from offchain.errors import UserError

# gauges that hold block numbers: exposed as integers, not prometheus_client's 1.234e+06
_BLOCK_LINE = re.compile(rb"^(keeper_(?:head|processed)_block) (\S+)$", re.M)


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format, block numbers written as integers."""
    return _BLOCK_LINE.sub(lambda m: m.group(1) + b" %d" % int(float(m.group(2))),
                           generate_latest(registry))


class KeeperMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.head_block = Gauge("keeper_head_block", "Chain head block number", registry=r)
        self.processed_block = Gauge("keeper_processed_block", "Last block fully processed", registry=r)
        self.accounts = Gauge("keeper_accounts", "Accounts in the book", registry=r)
        self.unhealthy = Gauge("keeper_unhealthy_accounts", "Accounts with equity < MM", registry=r)
        self.epoch = Gauge("keeper_epoch", "The engine's current epoch root on the oracle", registry=r)
        self.root_age = Gauge("keeper_root_age_seconds", "Age of the current epoch root (0: none)", registry=r)
        self.last_liquidation = Gauge(
            "keeper_last_liquidation_timestamp_seconds", "When this keeper last liquidated", registry=r)
        self.cycle_seconds = Gauge("keeper_cycle_seconds", "Duration of the last cycle", registry=r)
        self.last_cycle = Gauge("keeper_last_cycle_timestamp_seconds", "End of the last cycle", registry=r)
        self.errors = Counter("keeper_errors", "Errors by kind", ["kind"], registry=r)
        self.actions = Counter("keeper_actions", "Actions sent by kind and outcome",
                               ["kind", "outcome"], registry=r)
        self.reorgs = Counter("keeper_reorgs", "Reorgs rewound", registry=r)
        self.price_alarm = Gauge("keeper_price_alarm", "1 while the keeper holds on untrusted prices "
                                 "(silent source or unconfirmed outlier) and signs nothing", registry=r)
        self.price_alarm_reason = ""
        # forfeited signer bonds (offchain/keeper/forfeits.py), in the token's units
        self.forfeited_pushes = Counter("keeper_forfeited_pushes", "push_forfeited transactions this keeper "
                                        "mined (forfeited bonds moved to the insurance fund)", registry=r)
        self.forfeited_pushed = Counter("keeper_forfeited_pushed_units", "Forfeited bond token units this "
                                        "keeper moved to the insurance fund", registry=r)
        self.forfeited_push_gas = Gauge("keeper_forfeited_push_gas", "Gas used by the last push_forfeited",
                                        registry=r)
        self.forfeited_pending = Gauge("keeper_forfeited_pending_units", "The signer bond's forfeited balance "
                                       "(token units) not yet in the insurance fund, at the last cycle", registry=r)
        self.forfeited_status: dict | None = None   # /health's "forfeited" (None: no bond)
        self.liquidations_blocked = Gauge(
            "keeper_liquidations_blocked", "Liquidatable books that no liquidator account could take (room for "
            "the positions and underlyings, or margin): an alarm", registry=r)

    def health(self, max_lag_blocks: int, max_cycle_age_s: float) -> tuple[bool, dict]:
        head = int(self.head_block._value.get())
        done = int(self.processed_block._value.get())
        last = self.last_cycle._value.get()
        age = time.time() - last if last else float("inf")
        status = {"head_block": head, "processed_block": done, "lag_blocks": head - done,
                  "last_cycle_age_s": round(age, 3)}
        if self.forfeited_status is not None:   # informational: a refused push raises no alarm
            status["forfeited"] = self.forfeited_status
        alarm = bool(self.price_alarm._value.get())
        blocked = int(self.liquidations_blocked._value.get())
        ok = (head - done) <= max_lag_blocks and age <= max_cycle_age_s and not alarm and not blocked
        if not ok:
            status["reason"] = ("behind head" if head - done > max_lag_blocks
                                else "no cycle finished recently" if age > max_cycle_age_s
                                else self.price_alarm_reason if alarm
                                else f"{blocked} liquidatable book(s) no liquidator account has room or margin "
                                     f"for: add or fund a spare in liquidator_keys, or close the keeper's positions")
        return ok, status


class MetricsServer:
    """`/metrics`, `/health` and `/proof/<account>` (the account's leaf and Merkle proof in
    the latest epoch root, when the keeper is given a `proofs` function) on one port, served
    from a daemon thread."""

    def __init__(self, metrics: KeeperMetrics, port: int, host: str = "127.0.0.1",
                 max_lag_blocks: int = 5, max_cycle_age_s: float = 60.0, proofs=None):
        metrics_ref = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                self._answer(*self._route())

            def do_HEAD(self):  # noqa: N802
                self._answer(*self._route(), head=True)

            def _refuse_method(self):
                # read-only endpoints: a client error, not http.server's 501 (a 5xx reads as
                # the keeper failing)
                self._answer(f"method {self.command} not allowed: GET only\n".encode(), 405, "text/plain",
                             {"Allow": "GET, HEAD"})

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

            def _route(self) -> tuple[bytes, int, str]:
                if self.path.startswith("/metrics"):
                    return exposition(metrics_ref.registry), 200, CONTENT_TYPE_LATEST
                if self.path.startswith("/health"):
                    ok, status = metrics_ref.health(max_lag_blocks, max_cycle_age_s)
                    return json.dumps(status).encode(), 200 if ok else 503, "application/json"
                if self.path.startswith("/proof/") and proofs is not None:
                    body, code = _proof_response(proofs, self.path.removeprefix("/proof/").split("?")[0])
                    return body, code, "application/json"
                return b"not found: try /metrics, /health or /proof/<account>\n", 404, "text/plain"

            def _answer(self, body: bytes, code: int, ctype: str, headers: dict | None = None, head: bool = False):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args):  # keep the keeper's log structured
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"config.metrics_port: {host}:{port} is already in use (another keeper?); "
                                "choose a free port, or 0 to disable metrics") from exc
            raise UserError(f"config.metrics_port: cannot listen on {host}:{port}: {exc.strerror}") from exc
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _proof_response(proofs, account: str) -> tuple[bytes, int]:
    """200 with the proof, 404 when the account has no leaf, 400 for a malformed address."""
    try:
        doc = proofs(account)
    except UserError as exc:
        return json.dumps({"error": str(exc)}).encode(), 400
    if doc is None:
        return json.dumps({"error": f"account: {account} has no leaf in the latest epoch root"}).encode(), 404
    return json.dumps(doc).encode(), 200

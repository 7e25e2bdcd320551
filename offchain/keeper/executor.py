"""Transactions: one nonce manager per key, retries with backoff, gas bumps, dry-run.

A revert is an answer, not an RPC failure: it is returned (never retried), so "already
liquidated" or "nonce moved" ends that action for this cycle instead of looping. Connection
errors and node hiccups are retried with exponential backoff; a transaction left unmined is
replaced at the same nonce with fees raised by `bump_pct`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

from offchain.keeper.config import GasConfig

log = logging.getLogger("netmargin.keeper.executor")

GWEI = 10**9


def backoff_delays(cfg: GasConfig) -> list[float]:
    """Delay before each retry: base, 2*base, 4*base, ... capped at backoff_max_s."""
    return [min(cfg.backoff_base_s * 2**i, cfg.backoff_max_s) for i in range(cfg.max_retries - 1)]


def bumped_fees(max_fee: int, tip: int, cfg: GasConfig) -> tuple[int, int]:
    """Replacement fees: both raised by bump_pct (rounded up so a node's 10% rule holds)."""
    cap = int(cfg.max_fee_gwei * GWEI)
    new_tip = -(-tip * (100 + cfg.bump_pct) // 100)
    new_max = -(-max_fee * (100 + cfg.bump_pct) // 100)
    new_max = min(new_max, cap)
    return new_max, min(new_tip, new_max)


# the node or the link failed, not the transaction: worth retrying
TRANSIENT_ERRORS = (ConnectionError, TimeoutError, OSError, requests.RequestException,
                    Web3RPCError, ProviderConnectionError, TimeExhausted)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the node or the link, not the transaction (nor our own bugs)."""
    if isinstance(exc, ContractLogicError):
        return False
    if any(s in str(exc).lower() for s in ("execution reverted", "revert")):
        return False
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class PreparedCall:
    """A contract call already ABI-encoded (web3's own encoding costs ~10 ms a call)."""

    to: str
    data: str
    # a fixed gas limit for a call that depends on an earlier one of the same batch (a leaf
    # applied after the root it proves is posted): estimating it before that one is mined
    # would revert. A revert is then reported from the receipt instead.
    gas: int = 0

    def estimate_gas(self, w3: Web3, sender: str) -> int:
        if self.gas:
            return self.gas
        return w3.eth.estimate_gas({"from": sender, "to": self.to, "data": self.data})

    def with_gas(self, gas: int) -> PreparedCall:
        return PreparedCall(self.to, self.data, gas)


class Encoder:
    """Encodes calls to one contract with eth_abi directly, selectors and types cached."""

    def __init__(self, contract):
        self.address = contract.address
        self._fns: dict[str, tuple[bytes, list[str]]] = {}
        for item in contract.abi:
            if item.get("type") == "function":
                types = [_abi_type(i) for i in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self._fns[item["name"]] = (selector, types)

    def __call__(self, name: str, *args) -> PreparedCall:
        selector, types = self._fns[name]
        return PreparedCall(self.address, "0x" + (selector + abi_encode(types, list(args))).hex())

    def decode(self, name: str, data: str) -> tuple:
        """The arguments of a call to `name` this encoder made (`PreparedCall.data`)."""
        selector, types = self._fns[name]
        raw = bytes.fromhex(data.removeprefix("0x"))
        if raw[:4] != selector:
            raise ValueError(f"data: not a call to {name} (selector 0x{raw[:4].hex()})")
        return tuple(abi_decode(types, raw[4:]))


def _abi_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + item["type"][5:]
    return item["type"]


class NonceManager:
    """Hands out consecutive nonces for one key; resyncs from the node after a failure."""

    def __init__(self, w3: Web3, address: str):
        self._w3 = w3
        self.address = address
        self._next: int | None = None
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if self._next is None:
                self._next = self._w3.eth.get_transaction_count(self.address, "pending")
            nonce = self._next
            self._next += 1
            return nonce

    def resync(self) -> None:
        with self._lock:
            self._next = None


@dataclass
class TxResult:
    label: str
    ok: bool
    tx_hash: str = ""
    block: int = 0
    gas_used: int = 0
    error: str = ""
    dry_run: bool = False
    logs: list = field(default_factory=list)


@dataclass
class _Pending:
    label: str
    tx: dict
    tx_hash: str
    sent_at: float


class Executor:
    """Sends contract calls from one gas key. `send_batch` pipelines: sign and send all, then wait."""

    def __init__(self, w3: Web3, account: LocalAccount, cfg: GasConfig, dry_run: bool = False,
                 on_error: Callable[[str, str], None] | None = None,
                 receipt_timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 on_signed: Callable[[str, str, int], None] | None = None):
        self.w3 = w3
        self.account = account
        self.cfg = cfg
        self.dry_run = dry_run
        self.nonces = NonceManager(w3, account.address)
        self._chain_id = w3.eth.chain_id
        self._on_error = on_error or (lambda label, err: None)
        self._receipt_timeout_s = receipt_timeout_s
        self._sleep = sleep
        # (label, tx hash, nonce) of every signed transaction (bumps too), before it is sent:
        # a caller that must survive a crash records the hash and finds the receipt later
        self._on_signed = on_signed

    # ---- public ----
    def send(self, label: str, call) -> TxResult:
        return self.send_batch([(label, call)])[0]

    def send_batch(self, calls: Sequence[tuple[str, object]]) -> list[TxResult]:
        """Build, sign and send every call, then wait for all receipts (bumping stuck ones)."""
        results: list[TxResult | None] = [None] * len(calls)
        pending: dict[int, _Pending] = {}
        fees = self._fees() if calls else (0, 0)
        for i, (label, call) in enumerate(calls):
            outcome = self._submit(label, call, fees)
            if isinstance(outcome, TxResult):
                results[i] = outcome
            else:
                pending[i] = outcome
        for i, p in pending.items():
            results[i] = self._wait(p)
        return results  # type: ignore[return-value]

    def call_with_retry(self, fn: Callable[[], object], what: str):
        """Run a read (eth_call, get_logs...) with backoff on transient errors."""
        delays = backoff_delays(self.cfg)
        for attempt in range(len(delays) + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc) or attempt == len(delays):
                    raise
                log.warning("rpc retry", extra={"what": what, "error": str(exc)[:200],
                                                "attempt": attempt + 1})
                self._sleep(delays[attempt])
        raise AssertionError("unreachable")

    # ---- internals ----
    def _fees(self) -> tuple[int, int]:
        block = self.call_with_retry(lambda: self.w3.eth.get_block("latest"), "get_block")
        base = int(block.get("baseFeePerGas", 0) or 0)
        tip = 1 * GWEI
        cap = int(self.cfg.max_fee_gwei * GWEI)
        return min(2 * base + tip, cap), min(tip, cap)

    def _submit(self, label: str, call, fees: tuple[int, int]) -> _Pending | TxResult:
        delays = backoff_delays(self.cfg)
        for attempt in range(len(delays) + 1):
            try:
                if isinstance(call, PreparedCall):
                    gas = call.estimate_gas(self.w3, self.account.address)
                else:
                    gas = call.estimate_gas({"from": self.account.address})
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    reason = _revert_reason(exc)
                    log.info("skip: would revert", extra={"label": label, "reason": reason})
                    return TxResult(label, ok=False, error=reason)
                if attempt == len(delays):
                    return self._fail(label, f"rpc: {exc}")
                self._sleep(delays[attempt])
                continue
            if self.dry_run:
                log.info("dry-run", extra={"label": label, "gas": gas})
                return TxResult(label, ok=True, dry_run=True, gas_used=gas)
            fields = {
                "from": self.account.address,
                "nonce": self.nonces.take(),
                "gas": gas if isinstance(call, PreparedCall) and call.gas else gas * 12 // 10 + 20_000,
                "maxFeePerGas": fees[0],
                "maxPriorityFeePerGas": fees[1],
                "chainId": self._chain_id,
            }
            if isinstance(call, PreparedCall):
                tx = {**fields, "to": call.to, "data": call.data, "value": 0, "type": 2}
            else:
                tx = call.build_transaction(fields)
            try:
                tx_hash = self._broadcast(tx, label)
                return _Pending(label, tx, tx_hash, time.monotonic())
            except Exception as exc:  # noqa: BLE001
                self.nonces.resync()
                if not is_transient(exc):
                    return TxResult(label, ok=False, error=_revert_reason(exc))
                if attempt == len(delays):
                    return self._fail(label, f"rpc: {exc}")
                log.warning("send retry", extra={"label": label, "error": str(exc)[:200]})
                self._sleep(delays[attempt])
        raise AssertionError("unreachable")

    def _broadcast(self, tx: dict, label: str) -> str:
        signed = self.account.sign_transaction(tx)
        if self._on_signed is not None:
            self._on_signed(label, signed.hash.to_0x_hex(), tx["nonce"])
        try:
            return self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()
        except Web3RPCError as exc:
            if "already known" in str(exc).lower():
                return signed.hash.to_0x_hex()
            raise

    def _wait(self, p: _Pending) -> TxResult:
        deadline = time.monotonic() + self._receipt_timeout_s
        poll = 0.005
        while True:
            try:
                receipt = self.w3.eth.get_transaction_receipt(p.tx_hash)
            except (TransactionNotFound, TimeExhausted):
                receipt = None
            except Exception as exc:  # noqa: BLE001 - rpc hiccup while waiting
                log.warning("receipt retry", extra={"label": p.label, "error": str(exc)[:200]})
                receipt = None
            if receipt is not None:
                ok = receipt["status"] == 1
                error = "" if ok else self._replay_reason(p.tx, receipt["blockNumber"], p.tx_hash)
                if not ok:
                    log.info("reverted", extra={"label": p.label, "reason": error})
                return TxResult(p.label, ok=ok, tx_hash=p.tx_hash, block=receipt["blockNumber"],
                                gas_used=receipt["gasUsed"], error=error, logs=receipt["logs"])
            now = time.monotonic()
            if now > deadline:
                return self._fail(p.label, f"not mined after {self._receipt_timeout_s}s: {p.tx_hash}")
            if now - p.sent_at > self.cfg.bump_after_s:
                p = self._bump(p)
            self._sleep(poll)
            poll = min(poll * 2, 0.05)   # a block lands any moment: a receipt seen late costs the cycle

    def _bump(self, p: _Pending) -> _Pending:
        tx = dict(p.tx)
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = bumped_fees(
            tx["maxFeePerGas"], tx["maxPriorityFeePerGas"], self.cfg)
        log.warning("gas bump", extra={"label": p.label, "nonce": tx["nonce"],
                                       "max_fee": tx["maxFeePerGas"]})
        try:
            tx_hash = self._broadcast(tx, p.label)
        except Exception as exc:  # noqa: BLE001 - the old one may have been mined meanwhile
            log.warning("bump failed", extra={"label": p.label, "error": str(exc)[:200]})
            return _Pending(p.label, p.tx, p.tx_hash, time.monotonic())
        return _Pending(p.label, tx, tx_hash, time.monotonic())

    def _replay_reason(self, tx: dict, block: int, tx_hash: str = "") -> str:
        """Why a mined transaction reverted: its own trace's reason where the node traces
        (the state it ran on, whatever else its block held), else a replay on the state
        before its block (wrong when an earlier transaction of the block changed what it
        read, as a root posted in the same block does)."""
        if tx_hash:
            reason = self._traced_reason(tx_hash)
            if reason:
                return reason
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        try:
            self.w3.eth.call(call, block - 1)
        except Exception as exc:  # noqa: BLE001
            return _revert_reason(exc)
        return "reverted"

    def _traced_reason(self, tx_hash: str) -> str:
        """The revert reason of `tx_hash` from `debug_traceTransaction`'s call tracer ("" when
        the node does not trace or the revert carries no Error(string))."""
        try:
            trace = self.w3.provider.make_request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        except Exception:  # noqa: BLE001 - a node without the debug namespace
            return ""
        result = trace.get("result") if isinstance(trace, dict) else None
        if not isinstance(result, dict):
            return ""
        if result.get("revertReason"):
            return str(result["revertReason"])
        out = str(result.get("output") or "")
        if out.startswith("0x08c379a0") and len(out) >= 10 + 128:
            try:
                return abi_decode(["string"], bytes.fromhex(out[10:]))[0]
            except Exception:  # noqa: BLE001 - not an Error(string) after all
                return ""
        return ""

    def _fail(self, label: str, error: str) -> TxResult:
        log.error("tx failed", extra={"label": label, "error": error[:300]})
        self._on_error(label, error)
        return TxResult(label, ok=False, error=error)


def _revert_reason(exc: BaseException) -> str:
    if isinstance(exc, ContractLogicError) and exc.message:
        return str(exc.message).removeprefix("execution reverted: ")
    return str(exc)[:300]

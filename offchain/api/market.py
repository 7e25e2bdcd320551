"""The market as the API prices it: instruments, the oracle's marks, rates and index prices,
and one RiskEngine over the live instruments, rebuilt when the chain moves.

A snapshot is taken at most once per new head block (and at most every `refresh_s` seconds),
in one batched round trip, so a request only pays for the account it asks about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from offchain.chain.client import Instrument as ClientInstrument
from offchain.chain.contracts import WAD, Deployment, InstrumentTable, batch_call, underlying_name
from offchain.chain.risk_inputs import live_instruments, risk_engine
from offchain.errors import UserError
from offchain.risk import Params, RiskEngine
from offchain.risk.pricing import KIND_NAMES

VolFn = Callable[[int], np.ndarray]
log = logging.getLogger("netmargin.api")


class MarketNotReady(UserError):
    """The oracle has no prices yet (the keeper has not posted)."""


@dataclass(frozen=True)
class Snapshot:
    block: int
    now: int
    table: InstrumentTable
    underlyings: list[str]
    spot: np.ndarray          # index price per underlying (oracle)
    vol: np.ndarray           # annualised vol per underlying (the keeper's source)
    marks: np.ndarray         # oracle mark per instrument (what the engine values books at)
    marks_at: np.ndarray      # oracle mark timestamps (0 = never posted)
    rates: np.ndarray         # (4, n) im_long, im_short, mm_long, mm_short per unit (oracle)
    live: np.ndarray          # bool per instrument: priced by the risk engine
    engine: RiskEngine | None  # over table[live]; None when nothing is live
    live_index: np.ndarray    # instrument row -> row in engine (or -1)
    max_positions: int        # the engine's trading parameters
    taker_fee_bps: int
    max_price_age_s: int

    def row(self, instrument_id: int) -> int:
        """Row of an on-chain instrument id, or -1."""
        i = int(instrument_id) - 1
        return i if 0 <= i < len(self.table) and int(self.table.ids[i]) == int(instrument_id) else -1

    def describe(self, i: int) -> dict:
        t = self.table
        kind = KIND_NAMES[int(t.kind[i])]
        underlying = self.underlyings[int(t.underlying_index[i])]
        name = ClientInstrument(int(t.ids[i]), underlying, int(t.kind[i]), float(t.strike[i]), int(t.expiry[i]),
                                bool(t.active[i])).name
        return {"instrument_id": int(t.ids[i]), "name": name, "underlying": underlying,
                "kind": kind, "strike": float(t.strike[i]) if kind in ("call", "put") else None,
                "expiry": int(t.expiry[i]) or None, "active": bool(t.active[i])}


class MarketCache:
    def __init__(self, dep: Deployment, params: Params, underlyings: list[str], vols: VolFn,
                 refresh_s: float = 0.5):
        self.dep = dep
        self.params = params
        self.underlyings = list(underlyings)
        self.vols = vols
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._checked = 0.0
        self._table: InstrumentTable | None = None
        self._background = False

    def follow(self, stop: threading.Event) -> threading.Thread:
        """Rebuild the snapshot in a background thread as blocks arrive (every refresh_s), so
        no request waits for a rebuild: get() then answers the latest built snapshot, at most
        refresh_s behind the chain's head."""
        self.get()
        self._background = True

        def loop() -> None:
            while not stop.wait(self.refresh_s):
                try:
                    self._refresh()
                except Exception as exc:  # noqa: BLE001 - the node may blip; keep the last snapshot
                    log.warning("market snapshot: %s", str(exc)[:200])

        thread = threading.Thread(target=loop, name="api-market", daemon=True)
        thread.start()
        return thread

    def get(self) -> Snapshot:
        snap = self._snap
        if self._background and snap is not None:
            return snap
        return self._refresh()

    def _refresh(self) -> Snapshot:
        with self._lock:
            if self._snap is None or time.monotonic() - self._checked > self.refresh_s:
                head = self.dep.w3.eth.block_number
                self._checked = time.monotonic()
                if self._snap is None or head != self._snap.block:
                    self._snap = self._take(head)
            return self._snap

    def _instruments(self) -> InstrumentTable:
        reg = self.dep.registry.functions
        count = reg.instrument_count().call()
        if self._table is not None and len(self._table) == count:
            return self._table
        rows = batch_call(self.dep.w3, [reg.instrument(i) for i in range(1, count + 1)])
        names = self.underlyings
        parsed = []
        for i, (u, kind, strike, expiry, active) in enumerate(rows, start=1):
            name = underlying_name(u)
            if name not in names:
                names.append(name)
            parsed.append((i, names.index(name), kind, strike / WAD, expiry, active))
        cols = list(zip(*parsed, strict=True)) if parsed else [[]] * 6
        self._table = InstrumentTable(
            ids=np.asarray(cols[0], dtype=np.int64), underlying_index=np.asarray(cols[1], dtype=np.int64),
            kind=np.asarray(cols[2], dtype=np.int64), strike=np.asarray(cols[3], dtype=np.float64),
            expiry=np.asarray(cols[4], dtype=np.int64), active=np.asarray(cols[5], dtype=bool))
        return self._table

    def _take(self, head: int) -> Snapshot:
        w3 = self.dep.w3
        table = self._instruments()
        now = int(w3.eth.get_block(head)["timestamp"])
        oracle = self.dep.oracle.functions
        ids = [int(i) for i in table.ids]
        u = len(self.underlyings)
        first = batch_call(w3, [oracle.index_price(x.encode().ljust(32, b"\0")) for x in self.underlyings]
                           + [oracle.market_updated_at(i) for i in ids] + [self.dep.engine.functions.trading_params()])
        trading = first.pop()
        spot = np.asarray([p for p, _at in first[:u]], dtype=object).astype(np.float64) / WAD
        marks_at = np.asarray(first[u:], dtype=np.int64)
        # ids never priced revert on marks()/rates(): read only the priced ones
        posted = [i for i, at in zip(ids, marks_at, strict=True) if at]
        chunks = [posted[k:k + 32] for k in range(0, len(posted), 32)]
        second = batch_call(w3, [oracle.rates(i) for i in posted] + [oracle.marks(c) for c in chunks]) \
            if posted else []
        rates = np.full((4, len(ids)), np.nan)
        marks_arr = np.full(len(ids), np.nan)
        rows = np.asarray(posted, dtype=np.int64) - 1
        if posted:
            rates[:, rows] = np.asarray([r[:4] for r, _at in second[:len(posted)]],
                                        dtype=object).astype(np.float64).T / WAD
            values = [m for mk, _f, _at in second[len(posted):] for m in mk]
            marks_arr[rows] = np.asarray(values, dtype=object).astype(np.float64) / WAD
        vol = np.asarray(self.vols(now), dtype=np.float64)[:u]
        live = live_instruments(table, now) if len(table) else np.zeros(0, dtype=bool)
        engine = None
        index = np.full(len(table), -1)
        if live.any() and np.all(spot > 0):
            engine = risk_engine(self.params, table, self.underlyings, spot, vol, now, live)
            index[live] = np.arange(int(live.sum()))
        return Snapshot(head, now, table, list(self.underlyings), spot, vol, marks_arr, marks_at,
                        rates, live, engine, index, int(trading[0]), int(trading[1]), int(trading[2]))

    def require_engine(self) -> tuple[Snapshot, RiskEngine]:
        snap = self.get()
        if snap.engine is None:
            raise MarketNotReady("market: no index prices posted yet (is the keeper running?)")
        return snap, snap.engine

"""What the API runs on, passed to the app factory (tests build it over a real devnet)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from offchain.api.books import AccountReader
from offchain.api.market import MarketCache
from offchain.api.orderbook import OrderBook
from offchain.chain.contracts import Deployment
from offchain.keeper.store import StateStore
from offchain.risk import Params

# account -> proof document, or None while no root covers it (set once margin roots exist)
ProofFn = Callable[[str], dict | None]


@dataclass
class ApiContext:
    dep: Deployment
    params: Params
    market: MarketCache
    orders: OrderBook
    # the keeper's state store (history); None: history answers 503
    store_path: Path | None = None
    # deployment.json as written by the devnet (chain id, RPC URL, addresses, ABIs)
    deployment: dict = field(default_factory=dict)
    # the built web app (offchain/api/static); None or missing: the API alone
    static_dir: Path | None = None
    proofs: ProofFn | None = None
    _reader: AccountReader | None = None
    _store: StateStore | None = None
    _store_lock: threading.Lock = field(default_factory=threading.Lock)

    def reader(self) -> AccountReader:
        if self._reader is None:
            self._reader = AccountReader(self.dep)
        return self._reader

    def account_events(self, address: str, names: list[str], arg_keys: list[str], limit: int):
        """The keeper store's events naming `address` (None: no store configured). One
        connection, used under a lock by the server's worker threads."""
        if self.store_path is None:
            return None
        with self._store_lock:
            if self._store is None:
                self._store = StateStore(self.store_path)
            return self._store.account_events(address, names, arg_keys, limit)

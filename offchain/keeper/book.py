"""Every account's book as arrays, refreshed from the engine's `account()` view.

Event handlers only say *which* accounts changed; the book re-reads those accounts, so it is
exactly the chain's state (no re-implementation of fills, funding or liquidation maths that
could drift). Integers stay integers where they go back on chain (state nonces); cash and
sizes become floats (settlement units, contracts) for the risk engine.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

WAD = 10**18


class KeeperBook:
    def __init__(self, n_instruments: int, capacity: int = 1024):
        self.n_instruments = n_instruments
        self.addresses: list[str] = []
        self.index: dict[str, int] = {}
        # the chain's own sizes, WAD integers: {row: {instrument index: size}}; what the
        # exact leaf margins are computed from (the float positions are for screening)
        self.sizes_wad: dict[int, dict[int, int]] = {}
        # the engine's pending_total word per row, read with the book at the same block (a
        # leaf carries it; it changes only with the book, so it is re-read with it)
        self.pending_total: dict[int, int] = {}
        self._cap = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        def grow(name, dtype, fill):
            new = np.full(capacity, fill, dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                new[: len(old)] = old
            setattr(self, name, new)
        grow("cash", np.float64, 0.0)
        grow("state_nonce", np.int64, 0)
        # effective margins on chain (last applied leaf + pending trades) and their basis time
        grow("im", np.float64, 0.0)
        grow("mm", np.float64, 0.0)
        grow("basis_ts", np.int64, 0)
        grow("liq_since", np.int64, 0)
        # the account's leaf in the keeper's latest epoch (nonce -1: none), for deciding when
        # the next root is due and what the engine judges once the leaf is applied
        grow("leaf_nonce", np.int64, -1)
        grow("leaf_im", np.float64, 0.0)
        grow("leaf_mm", np.float64, 0.0)
        pos = np.zeros((capacity, self.n_instruments))
        old = getattr(self, "_positions", None)
        if old is not None:
            pos[: old.shape[0], : old.shape[1]] = old
        self._positions = pos
        self._cap = capacity

    def __len__(self) -> int:
        return len(self.addresses)

    @property
    def positions(self) -> np.ndarray:
        """(accounts x instruments) sizes in contracts (a view, do not write)."""
        return self._positions[: len(self)]

    def positions_csr(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.positions)

    def view(self, name: str) -> np.ndarray:
        return getattr(self, name)[: len(self)]

    def add_accounts(self, addresses: list[str]) -> list[int]:
        new = [a for a in addresses if a not in self.index]
        need = len(self) + len(new)
        if need > self._cap:
            self._alloc(max(need, 2 * self._cap))
        for a in new:
            self.index[a] = len(self.addresses)
            self.addresses.append(a)
        return [self.index[a] for a in addresses]

    def set_instrument_count(self, n: int) -> None:
        if n > self.n_instruments:
            self.n_instruments = n
            self._alloc(self._cap)

    def apply_views(self, addresses: list[str], views: list[tuple], pending_totals: list[int] | None = None) -> None:
        """Store AccountView tuples (see chain.read_accounts) and the `pending_total` words
        read at the same block for `addresses`."""
        if not addresses:
            return
        idx = np.asarray(self.add_accounts(addresses))
        cols = list(zip(*views, strict=True))
        self.cash[idx] = np.asarray(cols[0], dtype=object).astype(np.float64) / WAD
        self.state_nonce[idx] = np.asarray(cols[1], dtype=np.int64)
        self.im[idx] = np.asarray(cols[3], dtype=object).astype(np.float64) / WAD
        self.mm[idx] = np.asarray(cols[4], dtype=object).astype(np.float64) / WAD
        self.basis_ts[idx] = np.asarray(cols[5], dtype=np.int64)
        self.liq_since[idx] = np.asarray(cols[6], dtype=np.int64)
        self._positions[idx] = 0.0
        if pending_totals is not None:
            for row, total in zip(idx, pending_totals, strict=True):
                self.pending_total[int(row)] = int(total)
        rows, ids, sizes = [], [], []
        for row, view in zip(idx, views, strict=True):
            self.sizes_wad[int(row)] = {int(iid) - 1: int(size) for iid, size, _f in view[2]}
            for iid, size, _funding in view[2]:
                rows.append(row)
                ids.append(iid)
                sizes.append(size)
        if rows:
            self.set_instrument_count(max(ids))
            self._positions[np.asarray(rows), np.asarray(ids) - 1] = (
                np.asarray(sizes, dtype=object).astype(np.float64) / WAD)

    def set_leaves(self, idx: np.ndarray, nonce: np.ndarray, im: np.ndarray, mm: np.ndarray) -> None:
        """Record the leaves of an epoch this keeper just posted (IM/MM as floats)."""
        self.leaf_nonce[: len(self)] = -1
        self.leaf_nonce[idx] = nonce
        self.leaf_im[idx] = im
        self.leaf_mm[idx] = mm

"""Refuse to sign on prices the keeper cannot trust.

A price source can go silent (an error, a missing, zero or non-finite price) or glitch (one
print far from every other). Signing on either would post marks and roots that make
healthy accounts liquidatable, so the keeper holds instead: it signs nothing, raises its
health alarm, and leaves liquidations to what the chain already says. A jump larger than
`max_jump_frac` from the last accepted price is accepted only once it has persisted for
`confirm_cycles` consecutive cycles (a real crash persists; a bad print does not), and the
oracle's own per-update bound then steps the marks toward it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PriceCheck:
    ok: bool
    spot: np.ndarray | None  # the accepted prices (None when holding)
    vol: np.ndarray | None
    reason: str = ""  # why the keeper holds ("" when ok)


class PriceGuard:
    def __init__(self, underlyings: Sequence[str], max_jump_frac: float, confirm_cycles: int):
        if not max_jump_frac > 0:
            raise ValueError(f"max_jump_frac: must be > 0, got {max_jump_frac}")
        if confirm_cycles < 1:
            raise ValueError(f"confirm_cycles: must be >= 1, got {confirm_cycles}")
        self.underlyings = list(underlyings)
        self.max_jump_frac = max_jump_frac
        self.confirm_cycles = confirm_cycles
        self.last: np.ndarray | None = None  # last accepted spot per underlying
        self._pending: np.ndarray | None = None  # an outlier waiting for confirmation
        self._seen = 0

    def seed(self, spot: np.ndarray) -> None:
        """Start from prices already trusted (the oracle's index prices at startup); zeros
        (never posted) leave the guard unseeded for those underlyings."""
        spot = np.asarray(spot, dtype=np.float64)
        if spot.size and np.all(spot > 0):
            self.last = spot.copy()

    def check(self, read_spot: Callable[[], np.ndarray], read_vol: Callable[[], np.ndarray]) -> PriceCheck:
        try:
            spot = np.asarray(read_spot(), dtype=np.float64)
            vol = np.asarray(read_vol(), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - any failure of the source means "silent"
            return self._hold(f"price source silent: {type(exc).__name__}: {str(exc)[:120]}")
        n = len(self.underlyings)
        if spot.shape != (n,) or vol.shape != (n,):
            return self._hold(f"price source silent: expected {n} prices and vols for "
                              f"{', '.join(self.underlyings)}, got spot {spot.tolist()}, vol {vol.tolist()}")
        bad = ~np.isfinite(spot) | (spot <= 0) | ~np.isfinite(vol) | (vol <= 0)
        if bad.any():
            names = [u for u, b in zip(self.underlyings, bad, strict=True) if b]
            return self._hold(f"price source silent: no usable price for {', '.join(names)} "
                              f"(spot {spot.tolist()}, vol {vol.tolist()})")
        if self.last is None or np.all(np.abs(spot / self.last - 1) <= self.max_jump_frac):
            return self._accept(spot, vol)
        if self._pending is not None and np.all(np.abs(spot / self._pending - 1) <= self.max_jump_frac):
            self._seen += 1
        else:
            self._pending, self._seen = spot, 1
        if self._seen >= self.confirm_cycles:
            return self._accept(spot, vol)
        jump = spot / self.last - 1
        worst = int(np.argmax(np.abs(jump)))
        return self._hold(f"price outlier: {self.underlyings[worst]} {jump[worst]:+.1%} from the last "
                          f"accepted {self.last[worst]:,.2f}; holding until it persists "
                          f"({self._seen}/{self.confirm_cycles} cycles)")

    def _accept(self, spot: np.ndarray, vol: np.ndarray) -> PriceCheck:
        self.last, self._pending, self._seen = spot.copy(), None, 0
        return PriceCheck(True, spot, vol)

    @staticmethod
    def _hold(reason: str) -> PriceCheck:
        return PriceCheck(False, None, None, reason)

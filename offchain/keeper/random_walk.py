"""A live price source: a fat-tailed, correlated random walk calibrated on the shipped history.

Daily log returns of the history give each underlying's volatility, the correlation between
underlyings and the tails: the excess kurtosis fixes the degrees of freedom of a Student-t
(method of moments, nu = 4 + 6 / kurtosis). The walk draws multivariate-t returns (one shared
chi-square per step, so the tails move together, as crypto does) on a fixed grid of chain time,
extended lazily and deterministically from a seed, and interpolates between knots, so
`spot(t)` is the same whenever it is asked (settlement prices of past expiries included).

Same interface as ReplaySource: `underlyings`, `spot(t)`, `vol(t)`, `check_range`.
"""

from __future__ import annotations

import threading

import numpy as np

from offchain.errors import UserError
from offchain.keeper.prices import DAY, load_bars

# knots generated per extension of the path
_CHUNK = 4096


class RandomWalkSource:
    def __init__(self, data_dir, underlyings: list[str], vols: dict[str, float], start: int,
                 step_s: int = 300, seed: int = 7):
        if step_s <= 0:
            raise UserError(f"random_walk.step_s: must be > 0, got {step_s}")
        self.underlyings = list(underlyings)
        missing = [u for u in self.underlyings if u not in vols]
        if missing:
            raise UserError(f"prices.vols.{missing[0]}: no implied vol configured; configured: {sorted(vols)}")
        bars = [load_bars(data_dir, u) for u in self.underlyings]
        days = bars[0].day
        for b in bars[1:]:
            days = np.intersect1d(days, b.day)
        closes = np.stack([b.close[np.isin(b.day, days)] for b in bars])
        returns = np.diff(np.log(closes), axis=1)  # (U, days - 1)
        self.daily_sigma = returns.std(axis=1)
        self.correlation = np.corrcoef(returns) if len(self.underlyings) > 1 else np.ones((1, 1))
        z = (returns - returns.mean(axis=1, keepdims=True)) / self.daily_sigma[:, None]
        kurtosis = float(np.mean((z**4).mean(axis=1) - 3.0))
        self.dof = float(np.clip(4.0 + 6.0 / max(kurtosis, 1e-6), 3.0, 30.0))
        self.start_spot = closes[:, -1].copy()
        self.start = int(start)
        self.step_s = int(step_s)
        self.first, self.last = self.start, 2**62
        self._chol = np.linalg.cholesky(self.correlation)
        self._rng = np.random.default_rng(seed)
        self._log_path = np.log(self.start_spot)[:, None]  # (U, knots), knot k at start + k*step
        self._lock = threading.Lock()
        self._base_vol = np.asarray([float(vols[u]) for u in self.underlyings])

    def check_range(self, start: int, end: int) -> None:
        if start < self.start:
            raise UserError(f"random walk: starts at {self.start}, asked from {start}")

    def _extend(self, knots: int) -> None:
        with self._lock:
            while self._log_path.shape[1] < knots:
                u = len(self.underlyings)
                normal = self._chol @ self._rng.standard_normal((u, _CHUNK))
                chi = self._rng.chisquare(self.dof, _CHUNK)
                # unit-variance Student-t, scaled to one step of each underlying's daily vol
                t = normal * np.sqrt((self.dof - 2.0) / chi)[None, :]
                step_sigma = self.daily_sigma * np.sqrt(self.step_s / DAY)
                r = t * step_sigma[:, None] - 0.5 * step_sigma[:, None] ** 2
                path = self._log_path[:, -1:] + np.cumsum(r, axis=1)
                self._log_path = np.concatenate([self._log_path, path], axis=1)

    def spot(self, t: int) -> np.ndarray:
        x = max(0.0, (float(t) - self.start) / self.step_s)
        k = int(x)
        self._extend(k + 2)
        lo, hi = self._log_path[:, k], self._log_path[:, k + 1]
        return np.exp(lo + (hi - lo) * (x - k))

    def vol(self, t: int) -> np.ndarray:
        """Annualised: the calibrated realised vol, floored at the configured implied vol."""
        return np.maximum(self._base_vol, self.daily_sigma * np.sqrt(365.0))

"""Price source for the keeper: a replay of the shipped daily history (data/), and instrument marks from it.

Intraday path: each historical day runs open -> high -> low -> close (or open -> low -> high
-> close on an up day) at 0, 1/3, 2/3 and 1 of the day, interpolated in log price, so a
replay of 2020-03-12 actually visits that day's low rather than gliding close to close.
Vols: the configured implied vol, raised to the EWMA realised vol when markets get wilder.
Options are marked with the risk engine's Black-76 (offchain.risk.pricing.unit_value).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from offchain.chain.contracts import InstrumentTable
from offchain.errors import UserError
from offchain.risk.pricing import unit_value

DAY = 86_400
YEAR = 365.0 * DAY
# EWMA decay for realised vol (RiskMetrics daily lambda)
EWMA_LAMBDA = 0.94


def parse_date(text: str, field: str) -> int:
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError as exc:
        raise UserError(f"{field}: must be a date YYYY-MM-DD, got {text!r}") from exc


@dataclass(frozen=True)
class DailyBars:
    day: np.ndarray  # unix seconds at 00:00 UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


def load_bars(data_dir: str | Path, symbol: str) -> DailyBars:
    path = Path(data_dir) / f"{symbol}-USD.csv"
    if not path.is_file():
        raise UserError(f"prices.data_dir: {path} not found; point it at a folder "
                        "holding BTC-USD.csv and ETH-USD.csv")
    days, rows = [], []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if row["Close"] in ("null", ""):
                continue  # Yahoo leaves a few holes; the path interpolates over them
            days.append(parse_date(row["Date"], f"{path.name}.Date"))
            rows.append([float(row[k]) for k in ("Open", "High", "Low", "Close")])
    arr = np.asarray(rows)
    return DailyBars(np.asarray(days, dtype=np.int64), arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def intraday_path(bars: DailyBars) -> tuple[np.ndarray, np.ndarray]:
    """(times, log prices) with four knots per day: open, first extreme, second extreme, close."""
    up = bars.close >= bars.open
    first = np.where(up, bars.low, bars.high)
    second = np.where(up, bars.high, bars.low)
    t = bars.day[:, None] + np.array([0, DAY // 3, 2 * DAY // 3, DAY - 1])[None, :]
    p = np.stack([bars.open, first, second, bars.close], axis=1)
    return t.ravel(), np.log(p.ravel())


def ewma_vol(closes: np.ndarray) -> np.ndarray:
    """Annualised EWMA realised vol known at the end of each day (first day: nan)."""
    r2 = np.diff(np.log(closes)) ** 2
    out = np.full(len(closes), np.nan)
    var = r2[:20].mean() if len(r2) else 0.0
    for i, x in enumerate(r2):  # a 1-D recursion over days, not accounts
        var = EWMA_LAMBDA * var + (1 - EWMA_LAMBDA) * x
        out[i + 1] = np.sqrt(var * 365.0)
    return out


class ReplaySource:
    """Spot and vol per underlying at any unix time inside the history."""

    def __init__(self, data_dir: str | Path, underlyings: list[str], vols: dict[str, float]):
        self.underlyings = list(underlyings)
        self._paths, self._vol_days, self._vols = {}, {}, {}
        self._base_vol = {}
        for u in self.underlyings:
            if u not in vols:
                raise UserError(f"prices.vols.{u}: no implied vol configured for {u}; "
                                f"configured: {sorted(vols)}")
            bars = load_bars(data_dir, u)
            self._paths[u] = intraday_path(bars)
            self._vol_days[u] = bars.day + DAY  # a day's realised vol is known at its close
            self._vols[u] = ewma_vol(bars.close)
            self._base_vol[u] = float(vols[u])
        self.first = max(int(p[0][0]) for p in self._paths.values())
        self.last = min(int(p[0][-1]) for p in self._paths.values())

    def check_range(self, start: int, end: int) -> None:
        if not (self.first <= start < end <= self.last):
            fmt = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")  # noqa: E731
            raise UserError(f"replay window: {fmt(start)}..{fmt(end)} is outside the data "
                            f"({fmt(self.first)}..{fmt(self.last)}) or empty")

    def spot(self, t: int) -> np.ndarray:
        return np.array([np.exp(np.interp(t, *self._paths[u])) for u in self.underlyings])

    def vol(self, t: int) -> np.ndarray:
        out = []
        for u in self.underlyings:
            i = np.searchsorted(self._vol_days[u], t, side="right") - 1
            realised = self._vols[u][i] if i >= 0 else np.nan
            out.append(max(self._base_vol[u], 0.0 if np.isnan(realised) else float(realised)))
        return np.asarray(out)


def instrument_marks(table: InstrumentTable, spot: np.ndarray, vol: np.ndarray, now: int,
                     rate: float = 0.0) -> np.ndarray:
    """Mark of one unit of every instrument at `now` (expired: intrinsic at spot)."""
    s = spot[table.underlying_index]
    v = vol[table.underlying_index]
    t = np.where(table.expiry > 0, np.maximum(table.expiry - now, 0) / YEAR, 0.0)
    fwd = s * np.exp(rate * t)
    return unit_value(table.kind, fwd, s, table.strike, t, v, rate)

"""Price sources for the keeper, and instrument marks from their spot and vol.

A price source is anything with the `PriceSource` shape: `underlyings` (names, in the order
of the arrays it returns), `spot(t)` and `vol(t)` (one float per underlying at unix time `t`;
raise, or return a non-finite or non-positive value, when it does not know: the keeper's
price guard then holds and signs nothing). `spot(t)` for a past `t` is what the keeper posts
as the settlement price of an instrument that expired at `t`.

Kinds shipped (`prices.kind` in the keeper config), built by `make_source`:
- `replay`: the shipped daily history (data/), with an intraday path through each day's
  open, high, low and close (below);
- `http`: a live feed polled over HTTP(S) for JSON (`HttpJsonSource`).
A new kind registers a factory with `register_source(kind, factory)`.

Replay intraday path: each historical day runs open -> first extreme -> second extreme ->
close (low first on an up day), with the extremes at times drawn once per day (seeded, so a
replay is reproducible) between 5% and 95% of the day, interpolated in log price; a replay of
2020-03-12 visits that day's low, and a fixed time of day (an 08:00 expiry) is not pinned to
an extreme. Vols: the configured implied vol, raised to the EWMA realised vol when markets
get wilder. Options are marked with the risk engine's Black-76 (offchain.risk.pricing.unit_value).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from offchain.chain.contracts import InstrumentTable
from offchain.errors import UserError
from offchain.risk.pricing import unit_value
from offchain.risk.smile import surface_vols

if TYPE_CHECKING:
    from offchain.keeper.config import PriceSourceConfig

log = logging.getLogger("netmargin.keeper.prices")

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


class PriceSource(Protocol):
    """What the keeper reads prices from (see the module docstring)."""

    underlyings: list[str]

    def spot(self, t: int) -> np.ndarray: ...

    def vol(self, t: int) -> np.ndarray: ...


def intraday_path(bars: DailyBars, seed: int = 2020) -> tuple[np.ndarray, np.ndarray]:
    """(times, log prices) with four knots per day: open, first extreme, second extreme,
    close. The extremes' times are drawn per day in [5%, 95%] of the day, at least 5% apart."""
    up = bars.close >= bars.open
    first = np.where(up, bars.low, bars.high)
    second = np.where(up, bars.high, bars.low)
    u = np.sort(np.random.default_rng(seed).uniform(0.05, 0.90, size=(len(bars.day), 2)), axis=1)
    u[:, 1] += 0.05  # strictly increasing knots: open < first < second < close
    offsets = np.column_stack([np.zeros(len(u)), u * DAY, np.full(len(u), DAY - 1)]).astype(np.int64)
    t = bars.day[:, None] + offsets
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


class HttpJsonSource:
    """A live spot feed: one HTTP(S) GET per underlying, returning JSON, read at most every
    `poll_s` seconds. `url` holds `{underlying}` (e.g. `.../prices/{underlying}-USD/spot`);
    `json_path` is the dotted path to the price in the reply (e.g. `data.amount`; a string
    or a number). Vol is the configured implied vol per underlying.

    Each reading is kept under the time it was asked for, so `spot(t)` for a past `t` (a
    settlement) is the first reading at or after `t` (within `settle_window_s`); a keeper
    started after an expiry has no such reading and posts no settlement price (`spot` raises).
    A failed or malformed reply raises: the keeper's price guard holds and says why."""

    def __init__(self, url: str, json_path: str, underlyings: list[str], vols: dict[str, float],
                 poll_s: float = 5.0, timeout_s: float = 5.0, settle_window_s: int = 3600,
                 clock: Callable[[], float] = time.time):
        if "{underlying}" not in url or not url.startswith(("http://", "https://")):
            raise UserError(f"prices.url: must be an http(s) URL containing {{underlying}}, got {url!r}")
        missing = [u for u in underlyings if u not in vols]
        if missing:
            raise UserError(f"prices.vols.{missing[0]}: no implied vol configured for {missing[0]}")
        self.url, self.json_path = url, [p for p in json_path.split(".") if p]
        self.underlyings = list(underlyings)
        self._vols = np.asarray([float(vols[u]) for u in underlyings])
        self.poll_s, self.timeout_s, self.settle_window_s = poll_s, timeout_s, settle_window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._times: list[int] = []
        self._prices: list[np.ndarray] = []
        self._read_at = -math.inf

    def _fetch_one(self, underlying: str) -> float:
        url = self.url.format(underlying=underlying)
        try:
            with urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - http(s) checked above
                    url, headers={"Accept": "application/json", "User-Agent": "netmargin-keeper"}),
                    timeout=self.timeout_s) as reply:
                node = json.loads(reply.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise ConnectionError(f"price feed {url}: {exc}") from exc
        for part in self.json_path:
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise ValueError(f"price feed {url}: no {'.'.join(self.json_path)!r} in the reply") from exc
        try:
            price = float(node)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"price feed {url}: {'.'.join(self.json_path)} is {node!r}, not a number") from exc
        return price

    def spot(self, t: int) -> np.ndarray:
        """Price at `t` (the chain's time, as the keeper asks): a new `t` reads the feed (at
        most every `poll_s` wall-clock seconds) and records the reading under `t`; a past `t`
        (a settlement) answers the first reading recorded at or after it."""
        with self._lock:
            if self._times and t <= self._times[-1]:
                k = int(np.searchsorted(self._times, t, side="left"))
                if self._times[k] - t > self.settle_window_s:
                    raise LookupError(f"price feed: no reading within {self.settle_window_s} s after {t}")
                return self._prices[k]
            wall = self._clock()
            if self._prices and wall - self._read_at < self.poll_s:
                return self._prices[-1]
            prices = np.asarray([self._fetch_one(u) for u in self.underlyings])
            self._read_at = wall
            self._times.append(int(t))
            self._prices.append(prices)
            return prices

    def vol(self, t: int) -> np.ndarray:
        return self._vols.copy()


# kind -> factory(config, underlyings); "oracle" (no source: read what other signers post) is
# handled by the keeper itself
SOURCES: dict[str, Callable[[PriceSourceConfig, list[str]], PriceSource]] = {
    "replay": lambda cfg, names: ReplaySource(cfg.data_dir, names, cfg.vols),
    "http": lambda cfg, names: HttpJsonSource(cfg.url, cfg.json_path, names, cfg.vols,
                                              poll_s=cfg.poll_s, timeout_s=cfg.timeout_s),
}


def register_source(kind: str, factory: Callable[[PriceSourceConfig, list[str]], PriceSource]) -> None:
    """Make `prices.kind = "<kind>"` build a source with `factory(config.prices, underlyings)`."""
    SOURCES[kind] = factory


def make_source(cfg: PriceSourceConfig) -> PriceSource | None:
    """The configured source; None for `oracle` (marks and index prices read from chain)."""
    if cfg.kind == "oracle":
        return None
    if cfg.kind not in SOURCES:
        raise UserError(f"config.prices.kind: must be one of {sorted([*SOURCES, 'oracle'])}, got {cfg.kind!r}")
    return SOURCES[cfg.kind](cfg, list(cfg.underlyings))


def option_vols(table: InstrumentTable, underlyings: list[str], spot: np.ndarray,
                vol: np.ndarray, now: int, rate: float = 0.0) -> np.ndarray:
    """Per-instrument implied vol (NaN for futures and perps): each option on its
    underlying's calibrated smile for its expiry (offchain.risk.smile, SSVI) around the
    source's ATM vol `vol`, strikes in log-moneyness to the expiry forward."""
    t = np.where(table.expiry > 0, np.maximum(table.expiry - now, 0) / YEAR, 0.0)
    fwd = spot[table.underlying_index] * np.exp(rate * t)
    return surface_vols(underlyings, table.underlying_index, table.kind, table.strike, t, fwd,
                        vol)


def instrument_marks(table: InstrumentTable, spot: np.ndarray, vol: np.ndarray, now: int,
                     rate: float = 0.0, underlyings: list[str] | None = None) -> np.ndarray:
    """Mark of one unit of every instrument at `now` (expired: intrinsic at spot); options on
    the smile of their expiry when `underlyings` (the names of spot/vol's entries) is given."""
    s = spot[table.underlying_index]
    v = vol[table.underlying_index]
    if underlyings is not None:
        smile = option_vols(table, underlyings, spot, vol, now, rate)
        v = np.where(np.isnan(smile), v, smile)
    t = np.where(table.expiry > 0, np.maximum(table.expiry - now, 0) / YEAR, 0.0)
    fwd = s * np.exp(rate * t)
    return unit_value(table.kind, fwd, s, table.strike, t, v, rate)

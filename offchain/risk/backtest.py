"""Backtest of the maintenance margin on historical daily closes over a liquidation horizon of
h days (pure: price arrays in, table rows out; the CLI reads the CSV files).

Each day t the reference books are opened at close_t (options at a 30-day trailing realised
vol, floored, as the implied-vol proxy; futures at spot * exp(rate * T)), margined with the
parameter set, and revalued at close_{t+h}, h days later, with vol and rate unchanged. A day
is covered when the book's loss is at most its MM (IM coverage: at most its IM). All days of
one book are one vectorised engine call (one instrument row per day and leg)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offchain.risk.arrays import InstrumentInputs
from offchain.risk.engine import RiskEngine
from offchain.risk.params import Params
from offchain.risk.pricing import CALL, KIND_CODES, PERPETUAL, black76_greeks, unit_value
from offchain.risk.scenarios import DAYS_PER_YEAR


@dataclass(frozen=True)
class Leg:
    asset: int            # index into the book's assets
    kind: str
    size: float           # contracts; for `notional_hedge` legs, times spot_0 / spot_asset
    strike_ratio: float = 1.0
    days: float = 0.0     # tenor at inception (futures and options)
    notional_hedge: bool = False
    delta_hedge: bool = False   # size: minus the other legs' delta (a perp or future leg)


# name -> (number of assets, legs). Single-asset books run on every asset.
REFERENCE_BOOKS: dict[str, tuple[int, tuple[Leg, ...]]] = {
    "naked long perp": (1, (Leg(0, "perpetual", 1.0),)),
    "naked short perp": (1, (Leg(0, "perpetual", -1.0),)),
    "covered call (perp, -1 30d 110% call)": (1, (Leg(0, "perpetual", 1.0),
                                                  Leg(0, "call", -1.0, 1.10, 30))),
    "short strangle (30d 90% put, 110% call)": (1, (Leg(0, "call", -1.0, 1.10, 30),
                                                    Leg(0, "put", -1.0, 0.90, 30))),
    "option calendar (-30d, +90d ATM call)": (1, (Leg(0, "call", -1.0, 1.0, 30),
                                                  Leg(0, "call", 1.0, 1.0, 90))),
    "delta-hedged short straddle (30d ATM)": (1, (Leg(0, "call", -1.0, 1.0, 30),
                                                  Leg(0, "put", -1.0, 1.0, 30),
                                                  Leg(0, "perpetual", 0.0, delta_hedge=True))),
    "calendar spread (+30d, -90d future)": (1, (Leg(0, "future", 1.0, days=30),
                                                Leg(0, "future", -1.0, days=90))),
    "spread (+1 perp, -equal notional perp of 2nd)": (2, (Leg(0, "perpetual", 1.0),
                                                           Leg(1, "perpetual", -1.0,
                                                               notional_hedge=True))),
}
HORIZONS = (1, 2)


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Annualised trailing std of daily log returns ending at each day (NaN before `window`)."""
    r = np.diff(np.log(close))
    c1, c2 = np.concatenate([[0], np.cumsum(r)]), np.concatenate([[0], np.cumsum(r * r)])
    out = np.full(len(close), np.nan)
    n = window
    s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]
    out[n:] = np.sqrt(np.maximum((s2 - s1 * s1 / n) / (n - 1), 0.0) * DAYS_PER_YEAR)
    return out


def align(series: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]):
    """Common dates of several (dates, close) series -> dates, closes (n_days, n_assets)."""
    dates = series[names[0]][0]
    for n in names[1:]:
        dates = np.intersect1d(dates, series[n][0])
    closes = np.stack([series[n][1][np.searchsorted(series[n][0], dates)] for n in names], axis=1)
    return dates, closes


def backtest_book(params: Params, names: tuple[str, ...], dates: np.ndarray, closes: np.ndarray,
                  legs: tuple[Leg, ...], rate: float = 0.05, vol_window: int = 30,
                  vol_floor: float = 0.20, horizon: int = 1, series: bool = False) -> dict:
    vols = np.stack([realised_vol(closes[:, a], vol_window) for a in range(len(names))], axis=1)
    days = np.arange(vol_window, len(dates) - horizon)
    n = len(days)
    spot, spot_next = closes[days], closes[days + horizon]
    vol = np.maximum(vols[days], vol_floor)
    cols, delta = [], np.zeros(n)
    for leg in legs:
        kind = KIND_CODES[leg.kind]
        s, s1 = spot[:, leg.asset], spot_next[:, leg.asset]
        t = np.full(n, 0.0 if kind == PERPETUAL else leg.days / DAYS_PER_YEAR)
        t1 = np.maximum(t - horizon / DAYS_PER_YEAR, 0.0)
        strike = s * leg.strike_ratio
        size = leg.size * (spot[:, 0] / s if leg.notional_hedge else np.ones(n))
        if leg.delta_hedge:
            size = -delta / np.where(kind == PERPETUAL, 1.0, np.exp(rate * t))
        inputs = dict(kind=np.full(n, kind, dtype=np.int8), u_idx=np.full(n, leg.asset),
                      spot=s, fwd=s * np.exp(rate * t), strike=strike, tenor=t,
                      vol=vol[:, leg.asset], rate=np.full(n, rate), contract_size=np.ones(n))
        mark = unit_value(kind, inputs["fwd"], s, strike, t, inputs["vol"], rate)
        nxt = unit_value(kind, s1 * np.exp(rate * t1), s1, strike, t1, inputs["vol"], rate)
        if kind in (CALL, KIND_CODES["put"]):
            g = black76_greeks(inputs["fwd"], strike, t, inputs["vol"], rate, kind == CALL)
            delta = delta + size * g["delta"] * np.exp(rate * t)
        else:
            delta = delta + size * (1.0 if kind == PERPETUAL else np.exp(rate * t))
        cols.append((inputs, size, nxt - mark, size * s))
    inputs = InstrumentInputs(**{k: np.concatenate([c[0][k] for c in cols])
                                 for k in cols[0][0]})
    engine = RiskEngine.from_inputs(params, inputs, names)
    k = len(legs)
    p = sp.csr_matrix((np.concatenate([c[1] for c in cols]),
                       (np.tile(np.arange(n), k), np.arange(n * k))), shape=(n, n * k))
    mm = engine.breakdown(p, exact=True).mm
    im = mm / params.mm_factor
    loss = -sum(c[1] * c[2] for c in cols)
    gross = sum(np.abs(c[3]) for c in cols)
    breach = loss > mm
    ratio = loss / np.maximum(mm, 1e-12)
    worst = int(np.argmax(ratio))
    row = {
        "horizon_days": horizon, "days": n, "breaches": int(breach.sum()),
        "coverage": 1.0 - breach.mean(),
        "im_breaches": int((loss > im).sum()), "im_coverage": 1.0 - (loss > im).mean(),
        "worst_loss_over_mm": float(ratio[worst]), "worst_day": str(dates[days[worst] + horizon]),
        "worst_day_loss_pct": float(loss[worst] / gross[worst]),
        "mean_mm_pct_notional": float(np.mean(mm / gross)),
        "first_day": str(dates[days[0]]), "last_day": str(dates[days[-1] + horizon]),
    }
    if series:   # for the calibration chart: realised loss and MM per day, % of gross notional
        row["series"] = {"date": dates[days + horizon], "loss_pct": loss / gross,
                         "mm_pct": mm / gross}
    return row


def run_backtest(params: Params, series: dict[str, tuple[np.ndarray, np.ndarray]],
                 horizons=HORIZONS, **kwargs) -> list[dict]:
    """Rows {book, assets, horizon_days, days, breaches, coverage, im_coverage,
    worst_loss_over_mm, ...} for every reference book on every asset (two-asset books on each
    pair) and every horizon."""
    assets = tuple(series)
    rows = []
    for book, (n_assets, legs) in REFERENCE_BOOKS.items():
        combos = [(a,) for a in assets] if n_assets == 1 else \
            [(a, b) for a in assets for b in assets if a < b]
        for names in combos:
            dates, closes = align(series, names)
            for h in horizons:
                row = backtest_book(params, names, dates, closes, legs, horizon=h, **kwargs)
                rows.append({"book": book, "assets": "/".join(names), **row})
    return rows


def tail_frequency(close: np.ndarray, thresholds) -> dict[float, float]:
    """Share of days whose |1-day return| exceeds each threshold."""
    r = np.abs(np.diff(close) / close[:-1])
    return {float(t): float((r > t).mean()) for t in thresholds}

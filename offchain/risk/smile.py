"""Volatility smile per expiry: SSVI (Gatheral and Jacquier's surface SVI), and its calibration
to what the price history allows.

Total implied variance at log-moneyness k = ln(K / F) for an expiry with ATM total variance
theta = atm_vol^2 * T:

    w(k) = theta / 2 * (1 + rho * phi * k + sqrt((phi * k + rho)^2 + 1 - rho^2)),
    phi = eta / sqrt(theta)

rho < 0 tilts the smile towards puts (skew), eta sets its curvature; with
eta * (1 + |rho|) <= 2 the surface has no calendar or butterfly arbitrage (Gatheral and
Jacquier 2014, power-law phi with gamma = 1/2). With phi = eta / sqrt(theta) the smile in
standardised moneyness x = k / sqrt(theta) is the same for every expiry, so one (rho, eta) per
underlying gives a smile for each expiry that scales with its ATM vol and tenor.

The history has spot closes only, no option quotes, so the calibration fits (rho, eta) to the
implied vols of the *empirical* distribution of 30-day returns, each standardised by the vol
known when it started (trailing 30-day realised): what the data allows about skew and tails."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from offchain.risk.pricing import black76_price

DAYS_PER_YEAR = 365.0
MAX_ETA_RHO = 2.0   # eta * (1 + |rho|) <= 2: no static arbitrage


def ssvi_vol(strike, fwd, t, atm_vol, rho: float, eta: float) -> np.ndarray:
    """Implied vol of each strike (broadcasts); t in years, atm_vol the ATM-forward vol."""
    strike, fwd, t, atm_vol = (np.asarray(a, dtype=np.float64) for a in (strike, fwd, t, atm_vol))
    theta = np.maximum(atm_vol * atm_vol * np.maximum(t, 0.0), 1e-16)
    phi = eta / np.sqrt(theta)
    k = np.log(strike / fwd)
    w = 0.5 * theta * (1.0 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1.0 - rho * rho))
    return np.sqrt(w / np.maximum(t, 1e-16))


def _ratio(x: np.ndarray, rho: float, eta: float) -> np.ndarray:
    """w / theta at standardised moneyness x (the same for every expiry)."""
    return 0.5 * (1.0 + rho * eta * x + np.sqrt((eta * x + rho) ** 2 + 1.0 - rho * rho))


def empirical_smile(close: np.ndarray, days: int = 30, window: int = 30,
                    x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, implied variance / ATM implied variance) of options priced on the empirical
    distribution of `days`-day returns standardised by the trailing realised vol."""
    x = np.linspace(-2.0, 2.0, 17) if x is None else x
    r = np.diff(np.log(close))
    c1, c2 = np.concatenate([[0], np.cumsum(r)]), np.concatenate([[0], np.cumsum(r * r)])
    n = len(close)
    start = np.arange(window, n - days)
    s1 = c1[start] - c1[start - window]
    s2 = c2[start] - c2[start - window]
    daily = np.sqrt(np.maximum((s2 - s1 * s1 / window) / (window - 1), 1e-12))
    ret = np.log(close[start + days] / close[start])
    z = ret / (daily * np.sqrt(days))                       # standardised horizon returns
    t, sigma = days / DAYS_PER_YEAR, 1.0                    # unit-vol frame
    growth = np.exp(z * sigma * np.sqrt(t))
    growth /= growth.mean()                                 # a martingale: forward = 1
    strikes = np.exp(x * sigma * np.sqrt(t))
    calls = np.maximum(growth[None, :] - strikes[:, None], 0.0).mean(axis=1)
    puts = calls - (1.0 - strikes)                          # parity with forward 1
    prices = np.where(strikes >= 1.0, calls, puts)
    vols = np.array([_implied(p, k, t, k >= 1.0) for p, k in zip(prices, strikes, strict=True)])
    atm = _implied(float(calls[np.argmin(np.abs(x))]), 1.0, t, True)
    return x, (vols / atm) ** 2


def _implied(price: float, strike: float, t: float, is_call: bool) -> float:
    lo, hi = 1e-4, 20.0
    for _ in range(100):   # bisection: a handful of strikes, once per calibration
        mid = 0.5 * (lo + hi)
        if black76_price(1.0, strike, t, mid, 0.0, is_call) > price:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def calibrate_ssvi(close: np.ndarray, days: int = 30) -> dict:
    """(rho, eta) of the SSVI smile closest (least squares in variance ratio over
    x in [-2, 2]) to the empirical smile of the closes; within the no-arbitrage bound."""
    x, target = empirical_smile(close, days)

    def resid(p):
        rho, eta = p
        penalty = max(0.0, eta * (1 + abs(rho)) - MAX_ETA_RHO) * 100.0
        return _ratio(x, rho, eta) - target + penalty

    fit = least_squares(resid, x0=[-0.1, 0.5], bounds=([-0.99, 0.0], [0.99, MAX_ETA_RHO]))
    rho, eta = (float(v) for v in fit.x)
    return {"rho": round(rho, 3), "eta": round(eta, 3),
            "rms_error": float(np.sqrt(np.mean(resid(fit.x) ** 2)))}


# (rho, eta) per underlying, from calibrate_ssvi over the shipped history (data/, 30-day
# returns); tests/risk/test_smile.py re-derives them. The history's skew is towards calls
# (crypto's largest 30-day moves were rallies). Other underlyings: a flat smile.
CALIBRATED: dict[str, tuple[float, float]] = {"BTC": (0.408, 0.624), "ETH": (0.122, 0.567)}


def surface_vols(underlyings, u_index, kind, strike, tenor, fwd, atm_vol) -> np.ndarray:
    """Implied vol of every row (options; NaN elsewhere) on its underlying's calibrated SSVI
    smile for its expiry, around the ATM vol `atm_vol[u_index]` (flat where uncalibrated)."""
    from offchain.risk.pricing import CALL, PUT
    kind, u_index = np.asarray(kind), np.asarray(u_index)
    out = np.full(len(kind), np.nan)
    opt = np.flatnonzero(((kind == CALL) | (kind == PUT)) & (np.asarray(tenor) > 0))
    atm = np.asarray(atm_vol, dtype=np.float64)[u_index]
    for i in opt:
        rho, eta = CALIBRATED.get(underlyings[u_index[i]], (0.0, 0.0))
        out[i] = float(ssvi_vol(strike[i], fwd[i], tenor[i], atm[i], rho, eta))
    return out

"""Black-76 on the expiry forward, vectorised over numpy arrays (Black-Scholes is the case
F = S * exp(r * T)). Every function broadcasts its arguments; kinds use the contract codes."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

# Instrument kind codes shared with the contracts.
FUTURE, PERPETUAL, CALL, PUT = 0, 1, 2, 3
KIND_CODES = {"future": FUTURE, "perpetual": PERPETUAL, "call": CALL, "put": PUT}
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
# Below this total variance an option is priced at its discounted intrinsic value.
_MIN_STDEV = 1e-12


def _npdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _d1_d2(fwd, strike, t, vol):
    stdev = np.maximum(vol * np.sqrt(np.maximum(t, 0.0)), _MIN_STDEV)
    d1 = (np.log(fwd / strike) + 0.5 * stdev * stdev) / stdev
    return d1, d1 - stdev, stdev


def black76_price(fwd, strike, t, vol, rate, is_call):
    """Premium of a European option on the forward `fwd` (discounted at `rate` over `t` years)."""
    fwd, strike, t, vol, rate = (np.asarray(a, dtype=np.float64) for a in (fwd, strike, t, vol, rate))
    d1, d2, _ = _d1_d2(fwd, strike, t, vol)
    disc = np.exp(-rate * t)
    call = disc * (fwd * ndtr(d1) - strike * ndtr(d2))
    put = disc * (strike * ndtr(-d2) - fwd * ndtr(-d1))
    return np.where(is_call, call, put)


def black76_greeks(fwd, strike, t, vol, rate, is_call) -> dict[str, np.ndarray]:
    """Price and sensitivities with the forward held fixed: delta = dV/dF, gamma = d2V/dF2,
    vega = dV/dvol (per 1.00 of vol), theta = dV/dt per year of calendar time (= -dV/dT)."""
    fwd, strike, t, vol, rate = (np.asarray(a, dtype=np.float64) for a in (fwd, strike, t, vol, rate))
    d1, d2, stdev = _d1_d2(fwd, strike, t, vol)
    disc = np.exp(-rate * t)
    sqrt_t = np.sqrt(np.maximum(t, 0.0))
    price = np.where(
        is_call,
        disc * (fwd * ndtr(d1) - strike * ndtr(d2)),
        disc * (strike * ndtr(-d2) - fwd * ndtr(-d1)),
    )
    pdf = _npdf(d1)
    delta = np.where(is_call, disc * ndtr(d1), -disc * ndtr(-d1))
    gamma = disc * pdf / (fwd * stdev)
    vega = disc * fwd * pdf * sqrt_t
    theta = rate * price - disc * fwd * pdf * vol / (2.0 * np.maximum(sqrt_t, _MIN_STDEV))
    return {"price": price, "delta": delta, "gamma": gamma, "vega": vega, "theta": theta}


def black_scholes_greeks(spot, strike, t, vol, rate, is_call) -> dict[str, np.ndarray]:
    """Black-Scholes (no dividends) through Black-76 with F = S exp(rT): spot delta and gamma,
    and theta with the forward rolling down to spot as time passes (Hull's convention)."""
    spot, t, rate = (np.asarray(a, dtype=np.float64) for a in (spot, t, rate))
    growth = np.exp(rate * t)
    fwd = spot * growth
    g = black76_greeks(fwd, strike, t, vol, rate, is_call)
    # dF/dS = exp(rT); dF/dt (calendar) = -r F, so theta_BS = theta_76 - r F dV/dF.
    return {
        "price": g["price"],
        "delta": g["delta"] * growth,
        "gamma": g["gamma"] * growth * growth,
        "vega": g["vega"],
        "theta": g["theta"] - rate * fwd * g["delta"],
    }


def unit_value(kind, fwd, spot, strike, t, vol, rate) -> np.ndarray:
    """Mark of one unit of each instrument: perps at spot, dated futures at their forward,
    options at their Black-76 premium. Strike/vol are ignored where they do not apply."""
    kind = np.asarray(kind)
    is_option = (kind == CALL) | (kind == PUT)
    safe_strike = np.where(is_option, strike, 1.0)
    safe_vol = np.where(is_option, vol, 0.0)
    option = black76_price(fwd, safe_strike, t, safe_vol, rate, kind == CALL)
    return np.where(kind == PERPETUAL, spot, np.where(kind == FUTURE, fwd, option))

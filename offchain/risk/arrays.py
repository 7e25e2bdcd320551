"""Instrument risk arrays: the P&L of one unit of every instrument in every scenario of its
underlying, plus the per-unit vectors the add-ons are linear in. Computed once per epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offchain.risk.params import Params
from offchain.risk.pricing import CALL, FUTURE, PERPETUAL, PUT, black76_greeks, unit_value
from offchain.risk.scenarios import DAYS_PER_YEAR, ScenarioSet


@dataclass(frozen=True)
class InstrumentInputs:
    """Flat per-instrument pricing inputs (any number of instruments, any underlyings)."""

    kind: np.ndarray
    u_idx: np.ndarray
    spot: np.ndarray
    fwd: np.ndarray
    strike: np.ndarray
    tenor: np.ndarray
    vol: np.ndarray
    rate: np.ndarray
    contract_size: np.ndarray

    @property
    def is_option(self) -> np.ndarray:
        return (self.kind == CALL) | (self.kind == PUT)


def unit_greeks(x: InstrumentInputs) -> dict[str, np.ndarray]:
    """Per contract: mark, delta = dV/dS (spot units), gamma = d2V/dS2, vega (per 1.00 vol),
    theta (per year). Forwards move one-for-one in proportion with spot."""
    opt = x.is_option
    g = black76_greeks(x.fwd, np.where(opt, x.strike, 1.0), x.tenor, np.where(opt, x.vol, 1.0),
                       x.rate, x.kind == CALL)
    ratio = x.fwd / x.spot                 # dF/dS
    linear = (x.kind == FUTURE) | (x.kind == PERPETUAL)
    cs = x.contract_size
    return {
        "mark": unit_value(x.kind, x.fwd, x.spot, x.strike, x.tenor, x.vol, x.rate) * cs,
        "delta": np.where(linear, ratio, g["delta"] * ratio) * cs,
        "gamma": np.where(linear, 0.0, g["gamma"] * ratio * ratio) * cs,
        "vega": np.where(linear, 0.0, g["vega"]) * cs,
        "theta": np.where(linear, 0.0, g["theta"]) * cs,
    }


def _col(a) -> np.ndarray:
    return np.asarray(a)[:, None]


def risk_arrays(x: InstrumentInputs, scen: ScenarioSet) -> np.ndarray:
    """(n_instr, n_scen) float64: value change of one contract when its underlying's spot and
    every forward move by move[u, s] and its implied vol takes its shocked value."""
    move = scen.move[x.u_idx]                                   # (n, S)
    vols = scen.shocked_vols(x.vol, x.tenor, x.u_idx)
    base = unit_value(x.kind, x.fwd, x.spot, x.strike, x.tenor, x.vol, x.rate)
    shocked = unit_value(_col(x.kind), _col(x.fwd) * (1.0 + move), _col(x.spot) * (1.0 + move),
                         _col(x.strike), _col(x.tenor), vols, _col(x.rate))
    return (shocked - base[:, None]) * _col(x.contract_size)


def addon_vectors(x: InstrumentInputs, greeks: dict[str, np.ndarray], params: Params,
                  names: tuple[str, ...]) -> dict:
    """Per-contract vectors the add-ons are built from (coefficients per underlying):
    - basis: value change when the instrument's forward moves by
      basis_rate * sqrt(max(T, basis_min_days)) of itself (roll/basis shock, charged on |sum|;
      options too unless the set says `basis_applies_to: linear`);
    - delta_notional: delta * spot, the liquidity shock's input;
    - short_option: short_option_min_rate * forward per option contract (the short-option
      minimum: per short contract, or per net short contract of a strike and expiry)."""
    def per_u(key):
        return np.array([float(params.coeff(n, key)) for n in names])[x.u_idx]
    tenor = np.maximum(x.tenor, per_u("basis_min_days") / DAYS_PER_YEAR)
    shift = per_u("basis_rate_per_sqrt_year") * np.sqrt(tenor)
    if not params.basis_on_options:
        shift = np.where(x.is_option, 0.0, shift)
    delta_fwd = greeks["delta"] * x.spot / x.fwd                 # dV/dF per contract
    return {
        "basis": delta_fwd * x.fwd * shift,
        "delta_notional": greeks["delta"] * x.spot,
        "short_option": np.where(x.is_option, per_u("short_option_min_rate") * x.fwd
                                 * x.contract_size, 0.0),
        "liquidity_rate": np.array([float(params.coeff(n, "liquidity_rate")) for n in names]),
        "liquidity_threshold": np.array([float(params.coeff(n, "liquidity_notional_threshold"))
                                         for n in names]),
    }


def strike_groups(x: InstrumentInputs, strike: np.ndarray, expiry: np.ndarray,
                  n_underlyings: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Options grouped by (underlying, expiry, strike): G (n_instr x n_groups) holding each
    option's contract size in its group's column, and each group's underlying index. Calls and
    puts of one strike and expiry net in a group (a conversion has no net short option)."""
    opt = np.flatnonzero(x.is_option)
    keys = np.stack([x.u_idx[opt].astype(np.float64), expiry[opt], strike[opt]], axis=1)
    uniq, group = (np.unique(keys, axis=0, return_inverse=True) if len(opt)
                   else (np.zeros((0, 3)), np.zeros(0, dtype=np.intp)))
    g = sp.csr_matrix((x.contract_size[opt], (opt, group.ravel())),
                      shape=(len(x.kind), len(uniq)))
    return g, uniq[:, 0].astype(np.intp)

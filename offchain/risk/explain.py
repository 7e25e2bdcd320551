"""Explain one book: margin components, binding scenario, each position's share of the binding
loss, greeks, isolated and cross margin for the same book, and what-if after a trade."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from offchain.risk.instruments import iso
from offchain.risk.margin import liquidity_shock, worst_loss
from offchain.risk.pricing import KIND_NAMES

if TYPE_CHECKING:
    from offchain.risk.engine import RiskEngine


def single_margin(engine: RiskEngine, q: np.ndarray) -> dict:
    """Exact (float64) margin of one dense book without going through scipy: touches only the
    instruments the book holds (the what-if fast path)."""
    nz = np.flatnonzero(q)
    u, s = len(engine.underlyings), engine.n_scenarios
    out = (q[nz] @ engine._block64[nz]).reshape(1, u, s + 2)
    worst, unit_loss, binding = worst_loss(out[:, :, :s], engine.scenarios.weight,
                                           engine.params.decorrelation)
    a = engine.params.addons
    basis = float(np.abs(out[0, :, s]).sum())
    liquidity = float(liquidity_shock(out[0, :, s + 1], float(a["liquidity_notional_threshold"]),
                                      float(a["liquidity_rate"])).sum())
    short_option = float(np.maximum(-q[nz], 0.0) @ engine.short_option_vec[nz])
    mm = float(worst[0]) + basis + liquidity + short_option
    return {
        "initial_margin": mm / engine.params.mm_factor, "maintenance_margin": mm,
        "worst_loss": float(worst[0]), "basis_shock": basis, "short_option_minimum": short_option,
        "liquidity_shock": liquidity, "unit_loss": unit_loss[0], "binding": binding[0],
        "pnl": out[0, :, :s],
    }


def isolated_and_cross(engine: RiskEngine, q: np.ndarray) -> tuple[float, float]:
    """Initial margin if every position stood alone (isolated), and if only futures and perps of
    one underlying offset each other while options stand alone (cross: pooled collateral,
    netted linear delta)."""
    nz = np.flatnonzero(q)
    isolated = sum(single_margin(engine, _only(q, [i]))["initial_margin"] for i in nz)
    linear = ~engine.instruments.is_option
    cross = 0.0
    for u in range(len(engine.underlyings)):
        legs = nz[linear[nz] & (engine.inputs.u_idx[nz] == u)]
        if len(legs):
            cross += single_margin(engine, _only(q, legs))["initial_margin"]
    cross += sum(single_margin(engine, _only(q, [i]))["initial_margin"]
                 for i in nz if not linear[i])
    return isolated, cross


def _only(q: np.ndarray, idx) -> np.ndarray:
    out = np.zeros_like(q)
    out[idx] = q[idx]
    return out


def what_if(engine: RiskEngine, q: np.ndarray, trade: np.ndarray) -> dict:
    before, after = single_margin(engine, q), single_margin(engine, q + trade)
    rates = engine.cached_margin_rates()
    bound = before["maintenance_margin"] + float(
        np.where(trade > 0, rates.mm_long, rates.mm_short) @ np.abs(trade))
    return {
        "initial_margin_before": before["initial_margin"],
        "maintenance_margin_before": before["maintenance_margin"],
        "initial_margin_after": after["initial_margin"],
        "maintenance_margin_after": after["maintenance_margin"],
        "initial_margin_change": after["initial_margin"] - before["initial_margin"],
        "maintenance_margin_bound": bound,   # what the contracts assume until re-attested
        "binding_after": [int(b) for b in after["binding"]],
    }


def explain(engine: RiskEngine, q: np.ndarray, trade: np.ndarray | None = None) -> dict:
    m = single_margin(engine, q)
    scen, names = engine.scenarios, engine.underlyings
    weight = scen.weight
    u_idx = engine.inputs.u_idx
    top = int(np.argmax(m["unit_loss"])) if len(names) else 0
    per_u = {}
    for u, name in enumerate(names):
        b = int(m["binding"][u])
        per_u[name] = {
            "worst_loss": float(m["unit_loss"][u]),
            "binding_scenario": scen.describe(u, b),
            "risk_array": [float(v) for v in m["pnl"][u]],
            "greeks": {g: float(q[u_idx == u] @ engine.greeks[g][u_idx == u])
                       for g in ("delta", "gamma", "vega", "theta")},
        }
    positions = []
    for i in np.flatnonzero(q):
        u, b = int(u_idx[i]), int(m["binding"][u_idx[i]])
        loss = float(-q[i] * engine.instrument_arrays[i, b] * weight[u, b])
        unit = m["unit_loss"][u]
        positions.append({
            "index": int(i), "underlying": names[u],
            "kind": KIND_NAMES[int(engine.instruments.kind[i])],
            "strike": None if np.isnan(engine.instruments.strike[i])
            else float(engine.instruments.strike[i]),
            "expiry": None if np.isnan(engine.instruments.expiry[i])
            else iso(float(engine.instruments.expiry[i])),
            "size": float(q[i]), "mark": float(engine.marks[i]),
            "value": float(q[i] * engine.marks[i]),
            "loss_in_binding_scenario": loss,
            "share_of_binding_loss": loss / unit if unit > 0 else 0.0,
        })
    isolated, cross = isolated_and_cross(engine, q)
    binding = dict(scen.describe(top, int(m["binding"][top])), underlying=names[top])
    out = {
        "params": engine.params.label,
        "params_hash": engine.params.hash,
        "valuation_time": iso(engine.market.valuation_time),
        "initial_margin": m["initial_margin"],
        "maintenance_margin": m["maintenance_margin"],
        "components": {k: m[k] for k in ("worst_loss", "basis_shock", "short_option_minimum",
                                          "liquidity_shock")},
        "position_value": float(q @ engine.marks),
        "isolated_margin": isolated,
        "cross_margin": cross,
        "portfolio_margin": m["initial_margin"],
        "binding_scenario": binding,
        # book P&L per scenario, summed over underlyings (scenario s is the same kind of move
        # for every underlying); per-underlying arrays are under `underlyings`.
        "risk_array": [float(v) for v in m["pnl"].sum(axis=0)],
        "scenarios": [{
            "index": s, "kind": scen.kinds[s], "vol": scen.describe(0, s)["vol"],
            "price_move": {n: float(scen.move[u, s]) for u, n in enumerate(names)},
            "weight": {n: float(weight[u, s]) for u, n in enumerate(names)},
        } for s in range(scen.n)],
        "underlyings": per_u,
        "positions": positions,
    }
    if trade is not None:
        out["what_if"] = what_if(engine, q, trade)
    return out

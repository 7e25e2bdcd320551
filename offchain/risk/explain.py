"""Explain one book: margin components, binding scenario, each position's share of the binding
loss, greeks, isolated and cross margin for the same book, and what-if after a trade."""

from __future__ import annotations

import numpy as np

from offchain.risk.engine import RiskEngine
from offchain.risk.instruments import iso
from offchain.risk.pricing import KIND_NAMES
from offchain.risk.scenarios import DAYS_PER_YEAR

# Greeks as traders quote them: theta per calendar day, vega per vol point (0.01)
GREEK_UNITS = {"delta": "underlying units", "gamma": "per underlying unit",
               "vega": "USD per vol point", "theta": "USD per day"}
_GREEK_SCALE = {"delta": 1.0, "gamma": 1.0, "vega": 0.01, "theta": 1.0 / DAYS_PER_YEAR}


def isolated_and_cross(engine: RiskEngine, q: np.ndarray) -> tuple[float, float]:
    """Initial margin if every position stood alone (isolated), and if only futures and perps of
    one underlying offset each other while options stand alone (cross: pooled collateral,
    netted linear delta). Every sub-book is one row of a single exact breakdown."""
    nz = np.flatnonzero(q)
    if len(nz) == 0:
        return 0.0, 0.0
    linear = ~engine.instruments.is_option
    groups = [nz[linear[nz] & (engine.inputs.u_idx[nz] == u)] for u in range(len(engine.underlyings))]
    groups = [g for g in groups if len(g)]
    rows = [_only(q, [i]) for i in nz] + [_only(q, g) for g in groups]
    im = engine.breakdown(np.vstack(rows), exact=True).im
    isolated = float(im[:len(nz)].sum())
    cross = float(im[len(nz):].sum() + im[:len(nz)][~linear[nz]].sum())
    return isolated, cross


def _only(q: np.ndarray, idx) -> np.ndarray:
    out = np.zeros_like(q)
    out[idx] = q[idx]
    return out


def explain(engine: RiskEngine, book, trade=None) -> dict:
    """Binding scenario, position shares, greeks, isolated/cross margin (+ what-if)."""
    q = engine.book_vector(book)
    trade = None if trade is None else engine.book_vector(trade)
    m = engine.single(q)
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
            "greeks": {g: float(q[u_idx == u] @ engine.greeks[g][u_idx == u]) * _GREEK_SCALE[g]
                       for g in ("delta", "gamma", "vega", "theta")},
            "grid": grid(m["pnl"][u], scen, u),
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
        "greek_units": GREEK_UNITS,
        "underlyings": per_u,
        "positions": positions,
    }
    if trade is not None:
        out["what_if"] = engine.what_if(q, trade)
    return out


def grid(pnl: np.ndarray, scen, u: int) -> dict:
    """The range part of one underlying's risk array as a price x vol table of book P&L
    (rows: price moves ascending; columns: vol up, flat, down), plus the tail moves."""
    core = [s for s in range(scen.n) if scen.kinds[s] in ("range", "scan")]
    moves = sorted({float(scen.move[u, s]) for s in core})
    cols = {1: "vol up", 0: "vol flat", -1: "vol down"}
    rows = []
    for mv in moves:
        row = {"price_move": mv}
        for d, name in cols.items():
            hit = [s for s in core if float(scen.move[u, s]) == mv and scen.vol_dir[s] == d]
            row[name] = float(pnl[hit[0]]) if hit else None
        rows.append(row)
    tails = [{"price_move": float(scen.move[u, s]), "pnl": float(pnl[s]),
              "weight": float(scen.weight[u, s])}
             for s in range(scen.n) if scen.kinds[s] not in ("range", "scan")]
    return {"columns": list(cols.values()), "rows": rows, "tails": tails}

"""One account's book over a market snapshot: read it from chain, value it, explain it.

Everything here works on one account (a few dozen positions at most); the maths is vectorised
over instruments and over a price grid, never a Python loop over accounts.
"""

from __future__ import annotations

import numpy as np

from offchain.api.market import Snapshot
from offchain.chain.contracts import WAD, Deployment, batch_call
from offchain.risk import RiskEngine
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import unit_value

TOKEN_UNITS = 10**6
# an account counts as near liquidation when equity < (1 + NEAR) * MM
NEAR_LIQUIDATION = 0.20
# liquidation price search: spot multiples from 1/50x to 20x, log-spaced
_GRID = np.geomspace(0.02, 20.0, 4001)


def read_account(dep: Deployment, address: str) -> dict:
    """AccountView, Health, wallet balance and allowance in one round trip."""
    e, t = dep.engine.functions, dep.token.functions
    view, health, balance, allowance, decimals = batch_call(dep.w3, [
        e.account(address), e.health(address), t.balanceOf(address),
        t.allowance(address, dep.engine.address), t.decimals()])
    cash, nonce, positions, att_im, att_mm, att_ts, *_rest = view
    equity, value, im, mm, liquidatable, _marks_at = health
    unit = 10 ** int(decimals)
    return {"cash": cash / WAD, "state_nonce": int(nonce), "attestation_timestamp": int(att_ts),
            "positions": [(int(i), size / WAD) for i, size, _funding in positions],
            "equity": equity / WAD, "position_value": value / WAD, "im": im / WAD, "mm": mm / WAD,
            "liquidatable": bool(liquidatable), "wallet_balance": balance / unit,
            "allowance": allowance / unit}


def book_vector(snap: Snapshot, positions: list[tuple[int, float]]) -> np.ndarray:
    """Dense sizes over every listed instrument."""
    q = np.zeros(len(snap.table))
    for iid, size in positions:
        row = snap.row(iid)
        if row >= 0:
            q[row] = size
    return q


def live_book(snap: Snapshot, q: np.ndarray) -> np.ndarray:
    return q[snap.live]


def model_margins(engine: RiskEngine, q_live: np.ndarray) -> tuple[float, float]:
    if not np.any(q_live):
        return 0.0, 0.0
    m = engine.single(q_live)
    return m["initial_margin"], m["maintenance_margin"]


def liquidation_prices(snap: Snapshot, q: np.ndarray, equity: float, mm: float) -> list[dict]:
    """Per underlying held: the nearest index price below and above spot at which equity falls
    under `mm`, moving that underlying alone and holding margin at its current value."""
    t = snap.table
    out = []
    held = (q != 0) & snap.live
    for u, name in enumerate(snap.underlyings):
        rows = np.flatnonzero(held & (t.underlying_index == u))
        if len(rows) == 0 or not snap.spot[u] > 0:
            continue
        s = snap.spot[u] * _GRID[:, None]  # (grid, held)
        tenor = np.where(t.expiry[rows] > 0, np.maximum(t.expiry[rows] - snap.now, 0) / SECONDS_PER_YEAR, 0.0)
        v = unit_value(t.kind[rows], s, s, t.strike[rows], tenor, snap.vol[u], 0.0) @ q[rows]
        v0 = unit_value(t.kind[rows], snap.spot[u], snap.spot[u], t.strike[rows], tenor, snap.vol[u], 0.0) @ q[rows]
        short = (equity + v - v0) < mm
        below = np.flatnonzero(short & (_GRID < 1.0))
        above = np.flatnonzero(short & (_GRID > 1.0))
        out.append({"underlying": name, "spot": float(snap.spot[u]),
                    "below": float(snap.spot[u] * _GRID[below[-1]]) if len(below) else None,
                    "above": float(snap.spot[u] * _GRID[above[0]]) if len(above) else None})
    return out


def grids(explained: dict) -> list[dict]:
    """Each held underlying's risk array as a price x vol grid (the core scenarios), tail moves
    apart, with the binding scenario's cell."""
    scen = explained["scenarios"]
    held = {p["underlying"] for p in explained["positions"]}
    out = []
    for name, u in explained["underlyings"].items():
        if name not in held:
            continue
        pnl = u["risk_array"]
        core = [s for s in scen if s["kind"] in ("range", "scan")]
        moves = sorted({round(s["price_move"][name], 10) for s in core})
        vols = [v for v in ("vol up", "vol flat", "vol down") if any(s["vol"] == v for s in core)]
        cells: list[list[float | None]] = [[None] * len(moves) for _ in vols]
        for s in core:
            cells[vols.index(s["vol"])][moves.index(round(s["price_move"][name], 10))] = pnl[s["index"]]
        b = u["binding_scenario"]
        binding = None
        if b["kind"] in ("range", "scan"):
            binding = {"vol": vols.index(b["vol"]), "price": moves.index(round(b["price_move"], 10))}
        tails = [{"index": s["index"], "price_move": s["price_move"][name], "vol": s["vol"],
                  "weight": s["weight"][name], "pnl": pnl[s["index"]],
                  "binding": s["index"] == b["index"]}
                 for s in scen if s["kind"] not in ("range", "scan")]
        out.append({"underlying": name, "price_moves": moves, "vols": vols, "pnl": cells,
                    "binding": binding, "tails": tails})
    return out


def pnl_curves(snap: Snapshot, q: np.ndarray, points: int = 61) -> dict[str, list[list[float]]]:
    """Book value change against each held underlying's price (+/-50%), others fixed."""
    t = snap.table
    held = (q != 0) & snap.live
    out = {}
    for u, name in enumerate(snap.underlyings):
        rows = np.flatnonzero(held & (t.underlying_index == u))
        if len(rows) == 0 or not snap.spot[u] > 0:
            continue
        prices = snap.spot[u] * np.linspace(0.5, 1.5, points)
        s = prices[:, None]
        tenor = np.where(t.expiry[rows] > 0, np.maximum(t.expiry[rows] - snap.now, 0) / SECONDS_PER_YEAR, 0.0)
        v = unit_value(t.kind[rows], s, s, t.strike[rows], tenor, snap.vol[u], 0.0) @ q[rows]
        v0 = unit_value(t.kind[rows], snap.spot[u], snap.spot[u], t.strike[rows], tenor, snap.vol[u], 0.0) @ q[rows]
        out[name] = [[float(p), float(x)] for p, x in zip(prices, v - v0, strict=True)]
    return out

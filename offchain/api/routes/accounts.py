"""An account: summary, margin report and what-if for a proposed order."""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter, Request

from offchain.api import books
from offchain.api.errors import ApiError
from offchain.api.models import Account, MarginReport, WhatIf, WhatIfRequest
from offchain.api.routes.common import AddressPath, checksum
from offchain.risk.explain import explain

router = APIRouter(prefix="/accounts", tags=["accounts"])


def _positions(snap, raw) -> list[dict]:
    out = []
    for iid, size in raw["positions"]:
        row = snap.row(iid)
        d = snap.describe(row) if row >= 0 else {"instrument_id": iid, "name": f"#{iid}", "underlying": "?",
                                                 "kind": "?", "strike": None, "expiry": None}
        mark = float(snap.marks[row]) if row >= 0 and math.isfinite(snap.marks[row]) else None
        out.append({**{k: d[k] for k in ("instrument_id", "name", "underlying", "kind", "strike", "expiry")},
                    "size": size, "mark": mark, "value": None if mark is None else size * mark})
    return out


def account_summary(ctx, address: str) -> dict:
    snap = ctx.market.get()
    raw = ctx.reader().read(address)
    q = books.book_vector(snap, raw["positions"])
    model_im = model_mm = None
    if snap.engine is not None:
        model_im, model_mm = books.model_margins(snap.engine, q[snap.live])
    has_positions = bool(raw["positions"])
    # the engine: without positions up to all cash; with positions while equity stays >= IM
    available = max(0.0, raw["equity"] - raw["im"]) if has_positions else max(raw["cash"], 0.0)
    mm = raw["mm"] if raw["mm"] > 0 else (model_mm or 0.0)
    return {
        "address": address, "block": snap.block, "timestamp": snap.now,
        "wallet_balance": raw["wallet_balance"], "allowance": raw["allowance"], "cash": raw["cash"],
        "position_value": raw["position_value"], "equity": raw["equity"],
        "initial_margin": raw["im"], "maintenance_margin": raw["mm"],
        "model_initial_margin": model_im, "model_maintenance_margin": model_mm,
        "available_to_withdraw": available, "liquidatable": raw["liquidatable"],
        "near_liquidation": has_positions and raw["equity"] < (1 + books.NEAR_LIQUIDATION) * mm,
        "margin_basis_timestamp": raw["margin_basis_timestamp"], "state_nonce": raw["state_nonce"],
        "positions": _positions(snap, raw),
        "liquidation_prices": books.liquidation_prices(snap, q, raw["equity"], mm) if has_positions else [],
    }


@router.get("/{address}", response_model=Account)
def account(request: Request, address: AddressPath) -> dict:
    """Positions, cash, equity, IM/MM (enforced and model), available to withdraw, and the
    price of each underlying at which the book would become liquidatable."""
    return account_summary(request.app.state.ctx, checksum(address))


@router.get("/{address}/report", response_model=MarginReport)
def report(request: Request, address: AddressPath) -> dict:
    """The margin report: each underlying's price x vol grid with the binding scenario,
    each position's share of the binding loss, isolated vs cross vs portfolio margin."""
    ctx = request.app.state.ctx
    address = checksum(address)
    snap, engine = ctx.market.require_engine()
    raw = ctx.reader().read(address, wallet=False)
    q = books.book_vector(snap, raw["positions"])
    x = explain(engine, q[snap.live])
    live_rows = np.flatnonzero(snap.live)
    positions = [{"instrument_id": int(snap.table.ids[live_rows[p["index"]]]), "underlying": p["underlying"],
                  "kind": p["kind"], "size": p["size"], "loss_in_binding_scenario": p["loss_in_binding_scenario"],
                  "share_of_binding_loss": p["share_of_binding_loss"]} for p in x["positions"]]
    return {"address": address, "block": snap.block, "timestamp": snap.now, "params": x["params"],
            "params_hash": x["params_hash"], "initial_margin": x["initial_margin"],
            "maintenance_margin": x["maintenance_margin"], "components": x["components"],
            "isolated_margin": x["isolated_margin"], "cross_margin": x["cross_margin"],
            "portfolio_margin": x["portfolio_margin"], "binding_scenario": x["binding_scenario"],
            "grids": books.grids(x), "positions": positions, "pnl_curve": books.pnl_curves(snap, q)}


@router.post("/{address}/what-if", response_model=WhatIf)
def what_if(request: Request, address: AddressPath, body: WhatIfRequest) -> dict:
    """Margin before and after the proposed trades (as taker at the oracle's marks), and
    whether the engine would accept them now."""
    ctx = request.app.state.ctx
    address = checksum(address)
    snap, engine = ctx.market.require_engine()
    raw = ctx.reader().read(address, wallet=False)
    q = books.book_vector(snap, raw["positions"])
    trade = np.zeros(len(snap.table))
    for k, t in enumerate(body.trades):
        row = snap.row(t.instrument_id)
        if row < 0:
            raise ApiError(422, ["body", "trades", k, "instrument_id"],
                           f"no such instrument: {t.instrument_id} (listed: 1..{len(snap.table)})")
        if not snap.live[row] or not snap.table.active[row]:
            raise ApiError(422, ["body", "trades", k, "instrument_id"],
                           f"instrument {t.instrument_id} is not open for trading (inactive or expired)")
        if not math.isfinite(snap.marks[row]):
            raise ApiError(422, ["body", "trades", k, "instrument_id"],
                           f"instrument {t.instrument_id} has no mark posted yet")
        trade[row] += t.size
    w = engine.what_if(q[snap.live], trade[snap.live])
    # the engine: each leg adds |size| x its posted per-unit rate to the pending IM
    rate = np.where(trade > 0, snap.rates[0], snap.rates[1])
    held = np.flatnonzero(trade)
    add_im = float(np.abs(trade[held]) @ rate[held])
    engine_im_after = raw["im"] + add_im
    max_positions, fee_bps = snap.max_positions, snap.taker_fee_bps
    fee = float(np.abs(trade[held]) @ np.abs(snap.marks[held])) * fee_bps / 10_000
    equity_after = raw["equity"] - fee
    n_pos = len(raw["positions"])
    reducing = len(held) == 1 and n_pos == 1 and q[held[0]] != 0 and \
        abs(q[held[0]] + trade[held[0]]) < abs(q[held[0]]) and \
        np.sign(q[held[0]] + trade[held[0]]) in (0, np.sign(q[held[0]]))
    # new risk needs fresh marks for the whole book after the trade (the engine's check)
    book_rows = np.flatnonzero((q != 0) | (trade != 0))
    oldest = int(snap.marks_at[book_rows].min()) if len(book_rows) else snap.now
    if reducing:
        accepted, reason = True, "risk-reducing: always accepted"
    elif snap.now > oldest + snap.max_price_age_s:
        accepted, reason = False, (f"stale marks: the oldest mark of the book is {snap.now - oldest} s old "
                                   f"(the engine accepts {snap.max_price_age_s} s); wait for the keeper")
    elif n_pos + int(np.count_nonzero(trade[held] != 0) - np.count_nonzero(q[held])) > \
            max_positions:
        accepted, reason = False, "too many positions"
    elif (units := _underlyings_after(snap, q, trade)) > MAX_BOOK_UNITS:
        accepted, reason = False, (f"the book would span {units} underlyings: the engine allows {MAX_BOOK_UNITS}, what "
                                   "a fraud proof re-prices (close a position on another underlying first)")
    elif equity_after >= engine_im_after:
        accepted, reason = True, (f"equity {equity_after:,.2f} >= initial margin after "
                                  f"{engine_im_after:,.2f}")
    else:
        accepted, reason = False, (f"below initial margin: equity {equity_after:,.2f} < initial margin "
                                   f"after {engine_im_after:,.2f}; deposit "
                                   f"{engine_im_after - equity_after:,.2f} more or trade less")
    return {"address": address, "initial_margin_before": w["initial_margin_before"],
            "initial_margin_after": w["initial_margin_after"],
            "maintenance_margin_before": w["maintenance_margin_before"],
            "maintenance_margin_after": w["maintenance_margin_after"], "equity": raw["equity"],
            "engine_initial_margin_after": engine_im_after, "accepted": bool(accepted), "reason": reason}


# underlyings a book may span (the engine asks InstrumentRegistry.check_book once a trade gives
# a book of more than 8 positions a new one): FraudProofs' and the ScenarioVerifier's MAX_UNITS
MAX_BOOK_UNITS = 8


def _underlyings_after(snap, q: np.ndarray, trade: np.ndarray) -> int:
    """How many underlyings the book spans after `trade` when it opens a position and ends with
    more than MAX_BOOK_UNITS positions (0 otherwise: the engine does not ask)."""
    after = np.flatnonzero(q + trade != 0)
    opens = bool(np.any((q == 0) & (trade != 0)))
    if not opens or len(after) <= MAX_BOOK_UNITS:
        return 0
    return len({int(snap.table.underlying_index[r]) for r in after})

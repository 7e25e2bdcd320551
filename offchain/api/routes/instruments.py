"""GET /api/instruments: the listed instruments with marks, greeks and per-unit rates."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request

from offchain.api.models import InstrumentList

router = APIRouter(tags=["instruments"])


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@router.get("/instruments", response_model=InstrumentList)
def instruments(request: Request) -> dict:
    ctx = request.app.state.ctx
    snap = ctx.market.get()
    engine = snap.engine
    out = []
    for i in range(len(snap.table)):
        d = snap.describe(i)
        j = int(snap.live_index[i])
        greeks = None
        model_mark = None
        if engine is not None and j >= 0:
            greeks = {g: float(engine.greeks[g][j]) for g in ("delta", "gamma", "vega", "theta")}
            model_mark = float(engine.marks[j])
        r = snap.rates[:, i]
        rates = None if not all(math.isfinite(x) for x in r) else dict(
            zip(("im_long", "im_short", "mm_long", "mm_short"), map(float, r), strict=True))
        out.append({**d, "live": bool(snap.live[i]), "mark": _num(snap.marks[i]),
                    "model_mark": model_mark, "greeks": greeks, "rates": rates})
    return {"block": snap.block, "timestamp": snap.now,
            "underlyings": [{"name": u, "index_price": float(snap.spot[k]), "vol": float(snap.vol[k])}
                            for k, u in enumerate(snap.underlyings)],
            "instruments": out}

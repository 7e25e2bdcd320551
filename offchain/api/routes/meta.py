"""GET /api/deployment (chain id, RPC URL, addresses, ABIs) and GET /api/health."""

from __future__ import annotations

from fastapi import APIRouter, Request

router = APIRouter(tags=["meta"])


@router.get("/deployment")
def deployment(request: Request) -> dict:
    """deployment.json: what an integrator (and the web app) needs to talk to the contracts."""
    return request.app.state.ctx.deployment


@router.get("/health")
def health(request: Request) -> dict:
    snap = request.app.state.ctx.market.get()
    return {"ok": True, "block": snap.block, "timestamp": snap.now,
            "prices_posted": bool(snap.engine is not None)}

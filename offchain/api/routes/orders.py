"""The order book: POST a signed maker order (validated before listing), list open orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from offchain.api.errors import ApiError
from offchain.api.models import ADDRESS_PATTERN, ListedOrder, OrderBook, SignedOrder
from offchain.api.routes.common import checksum

router = APIRouter(prefix="/orders", tags=["orders"])


@router.post("", response_model=ListedOrder, status_code=201)
def post_order(request: Request, body: SignedOrder) -> dict:
    """List a maker order signed with eth_signTypedData_v4 over the engine's EIP-712 domain.
    Refused (4xx naming the field) unless the signature recovers to `order.account`, the
    deadline is after the chain's time, the instrument is open, and the order is neither
    cancelled nor filled on chain."""
    ctx = request.app.state.ctx
    snap = ctx.market.get()
    return ctx.orders.add(body.order.model_dump(), body.signature, snap)


@router.get("", response_model=OrderBook)
def list_orders(request: Request,
                instrument_id: Annotated[int | None, Query(ge=1)] = None,
                account: Annotated[str | None, Query(pattern=ADDRESS_PATTERN)] = None) -> dict:
    """Open orders (filled, cancelled and expired ones drop off), by instrument then price."""
    ctx = request.app.state.ctx
    snap = ctx.market.get()
    return {"block": snap.block, "orders": ctx.orders.list(snap, instrument_id,
                                                           checksum(account) if account else None)}


@router.get("/{order_hash}", response_model=ListedOrder)
def get_order(request: Request,
              order_hash: Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$")]) -> dict:
    ctx = request.app.state.ctx
    found = ctx.orders.get(order_hash, ctx.market.get())
    if found is None:
        raise ApiError(404, ["path", "order_hash"], f"no open order {order_hash}", "not_found")
    return found

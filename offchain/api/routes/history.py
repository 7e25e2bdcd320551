"""GET /api/accounts/{address}/history: fills, liquidations, settlements, funding, deposits and
withdrawals, from the keeper's indexed store (newest first)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from offchain.api.errors import ApiError
from offchain.api.models import History
from offchain.api.routes.common import AddressPath, checksum
from offchain.chain.contracts import WAD

router = APIRouter(prefix="/accounts", tags=["history"])

# event -> (history kind, the args that name an account)
EVENTS = {
    "OrderFilled": ("fill", ("maker", "taker")),
    "Liquidation": ("liquidation", ("account", "liquidator")),
    "Settlement": ("settlement", ("account",)),
    "FundingApplied": ("funding", ("account",)),
    "Deposit": ("deposit", ("account",)),
    "Withdrawal": ("withdrawal", ("account",)),
}
# WAD-scaled args shown as floats
_WAD_SUFFIX = "_wad"


def _details(name: str, args: dict, address: str) -> dict:
    out = {}
    for k, v in args.items():
        if k.endswith(_WAD_SUFFIX):
            out[k[: -len(_WAD_SUFFIX)]] = int(v) / WAD
        elif k == "amount":
            out[k] = int(v) / 10**6
        else:
            out[k] = v
    if name == "OrderFilled":
        out["side"] = "maker" if args["maker"] == address else "taker"
        buy = bool(args["maker_is_buy"]) == (out["side"] == "maker")
        out["direction"] = "buy" if buy else "sell"
    if name == "Liquidation":
        out["role"] = "liquidated" if args["account"] == address else "liquidator"
    return out


@router.get("/{address}/history", response_model=History)
def history(request: Request, address: AddressPath,
            limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    ctx = request.app.state.ctx
    address = checksum(address)
    keys = sorted({k for _, ks in EVENTS.values() for k in ks})
    rows = ctx.account_events(address, list(EVENTS), keys, limit)
    if rows is None:
        raise ApiError(503, ["server"], "history: this server has no keeper store configured", "unavailable")
    blocks = sorted({e.block for e in rows})
    stamps = _timestamps(ctx.dep.w3, blocks)
    events = []
    for e in rows:
        kind, _keys = EVENTS[e.name]
        events.append({"kind": kind, "block": e.block, "timestamp": stamps.get(e.block),
                       "tx_hash": e.tx_hash, "details": _details(e.name, e.args, address)})
    return {"address": address, "events": events}


def _timestamps(w3, blocks: list[int]) -> dict[int, int]:
    if not blocks:
        return {}
    replies = w3.provider.make_batch_request([("eth_getBlockByNumber", [hex(b), False]) for b in blocks])
    out = {}
    for b, r in zip(blocks, replies if isinstance(replies, list) else [], strict=False):
        if isinstance(r, dict) and r.get("result"):
            out[b] = int(r["result"]["timestamp"], 16)
    return out

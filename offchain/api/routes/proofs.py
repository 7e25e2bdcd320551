"""GET /api/proofs/{address}: the Merkle proof of the account's leaf in the latest margin root.

Until a root covers the account (or while the server runs without a proof source) the
answer is 404 with `no root posted yet`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from offchain.api.errors import ApiError
from offchain.api.models import Proof
from offchain.api.routes.common import AddressPath, checksum

router = APIRouter(prefix="/proofs", tags=["proofs"])


@router.get("/{address}", response_model=Proof, responses={404: {"description": "no root posted yet"}})
def proof(request: Request, address: AddressPath) -> dict:
    ctx = request.app.state.ctx
    address = checksum(address)
    found = ctx.proofs(address) if ctx.proofs is not None else None
    if found is None:
        raise ApiError(404, ["path", "address"], f"no root posted yet that covers {address}", "not_found")
    return found

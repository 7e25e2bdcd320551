"""Errors as 4xx answers that name the field: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`,
the same shape FastAPI gives its own validation errors, so clients read one format."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from offchain.chain.eip712 import Eip712Error
from offchain.errors import UserError

log = logging.getLogger("netmargin.api")


class ApiError(Exception):
    def __init__(self, status: int, loc: list, msg: str, kind: str = "value_error"):
        super().__init__(msg)
        self.status, self.loc, self.msg, self.kind = status, loc, msg, kind


def body(loc: list, msg: str, kind: str) -> dict:
    return {"detail": [{"loc": [str(x) if not isinstance(x, int) else x for x in loc], "msg": msg,
                        "type": kind}]}


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse(body(exc.loc, exc.msg, exc.kind), status_code=exc.status)

    @app.exception_handler(Eip712Error)
    async def _eip712(_request: Request, exc: Eip712Error):
        # messages start with the field: "Order.size_wad: expected > 0, got 0"
        field, _, msg = str(exc).partition(": ")
        return JSONResponse(body(["body", *field.replace("Order.", "order.").split(".")], msg or str(exc),
                                 "value_error"), status_code=422)

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, exc: UserError):
        # the chain or the market refused (no prices yet, node down): the service is unavailable
        return JSONResponse(body(["server"], str(exc), "unavailable"), status_code=503)

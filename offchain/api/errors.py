"""Errors as 4xx answers that name the field: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`,
the same shape FastAPI gives its own validation errors, so clients read one format."""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
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


def _json_safe(value):
    """A validation error's `input` as JSON can carry it: a body such as {"size": 1e999}
    parses to an infinity, which strict JSON cannot encode (the answer would be a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        # FastAPI's own answer, with non-finite numbers in the echoed input written as text
        detail = _json_safe(jsonable_encoder(exc.errors()))
        json.dumps(detail, allow_nan=False)  # what JSONResponse will do: fails here, not in the response
        return JSONResponse({"detail": detail}, status_code=422)

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

"""The HTTP API and the web app, one FastAPI application.

    app = create_app(ApiContext(dep=..., params=..., market=MarketCache(...), orders=OrderBook(...)))
    uvicorn.run(app)

The API is under /api (OpenAPI at /docs); the built web app (offchain/api/static, built from
web/ by `make install`) is served at /. Read-only except order posting; it holds no keys.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from offchain.api.context import ApiContext
from offchain.api.errors import install_handlers
from offchain.api.routes import accounts, history, instruments, meta, orders, proofs

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="netmargin", version="1",
                  description="Portfolio margin: instruments, accounts, margin reports, what-if, "
                              "history, an order book of signed maker orders, proofs.")
    app.state.ctx = ctx
    install_handlers(app)
    for module in (meta, instruments, accounts, history, orders, proofs):
        app.include_router(module.router, prefix="/api")
    static = ctx.static_dir if ctx.static_dir is not None else STATIC_DIR
    index = static / "index.html"
    if index.is_file():
        app.mount("/assets", StaticFiles(directory=static / "assets"), name="assets")

        @app.get("/", include_in_schema=False)
        def _index() -> FileResponse:
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
    else:
        @app.get("/", include_in_schema=False)
        def _no_app() -> JSONResponse:
            return JSONResponse({"detail": "the web app is not built: run `make install`",
                                 "api": "/docs"}, status_code=404)
    return app

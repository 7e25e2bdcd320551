"""The risk engine over on-chain instruments: the one place that turns an InstrumentTable and
the prices of a moment into a RiskEngine (the keeper and the API price books the same way)."""

from __future__ import annotations

import math

import numpy as np

from offchain.chain.contracts import InstrumentTable
from offchain.risk import Instruments, Market, Params, RiskEngine, UnderlyingMarket
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import CALL, PERPETUAL, PUT
from offchain.risk.smile import surface_vols


def live_instruments(table: InstrumentTable, now: int) -> np.ndarray:
    """Instruments the risk engine prices: perpetuals and anything expiring after `now`."""
    return (table.kind == PERPETUAL) | (table.expiry > now)


def risk_engine(params: Params, table: InstrumentTable, underlyings: list[str], spot: np.ndarray,
                vol: np.ndarray, now: int, live: np.ndarray) -> RiskEngine:
    """A RiskEngine over the `live` rows of `table` (spot and vol indexed like `underlyings`):
    `vol` is each underlying's ATM vol, options sit on its calibrated smile for their expiry
    (offchain.risk.smile), the same vols the keeper marks them with."""
    names = tuple(underlyings[i] for i in table.underlying_index[live])
    is_opt = (table.kind == CALL) | (table.kind == PUT)
    instruments = Instruments(
        underlying=names, kind=table.kind[live].astype(np.int8),
        strike=np.where(is_opt, table.strike, math.nan)[live],
        expiry=np.where(table.kind == PERPETUAL, math.nan, table.expiry.astype(np.float64))[live],
        contract_size=np.ones(int(live.sum())))
    market = Market(valuation_time=float(now), underlyings={
        u: UnderlyingMarket(spot=float(spot[i]), vol=float(vol[i])) for i, u in enumerate(underlyings)})
    t = np.where(table.expiry > 0, np.maximum(table.expiry - now, 0) / SECONDS_PER_YEAR, 0.0)
    vols = surface_vols(underlyings, table.underlying_index, table.kind, table.strike, t,
                        spot[table.underlying_index], vol)
    return RiskEngine(params, instruments, market, option_vols=vols[live])

"""Request and response models: the OpenAPI schema at /docs is the API's contract.

Amounts are floats in settlement-token units (USD) for display; everything that goes back on
chain (order sizes and prices) is an integer WAD carried as a decimal string, so JavaScript
clients never lose precision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
UINT_PATTERN = r"^[0-9]{1,78}$"
UINT256_MAX = 2**256 - 1
# contracts per what-if leg (a trillion: far above any book, far below float64 overflow)
MAX_TRADE_SIZE = 1e12


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- instruments ----
class Greeks(BaseModel):
    delta: float
    gamma: float
    vega: float
    theta: float


class Rates(BaseModel):
    im_long: float
    im_short: float
    mm_long: float
    mm_short: float


class Instrument(BaseModel):
    instrument_id: int
    name: str = Field(description="BTC-PERP, BTC-20240628 (future), BTC-20240628-70000-C (call), ...-P")
    underlying: str
    kind: Literal["future", "perpetual", "call", "put"]
    strike: float | None
    expiry: int | None = Field(description="unix seconds; null for perpetuals")
    active: bool
    live: bool = Field(description="priced by the risk engine (perpetual or not yet expired)")
    mark: float | None = Field(description="the oracle's mark (what the engine values books at)")
    model_mark: float | None = Field(description="the risk engine's mark at the index price")
    greeks: Greeks | None
    rates: Rates | None = Field(description="per-unit standalone margin posted by the oracle")


class Underlying(BaseModel):
    name: str
    index_price: float
    vol: float


class InstrumentList(BaseModel):
    block: int
    timestamp: int
    underlyings: list[Underlying]
    instruments: list[Instrument]


# ---- accounts ----
class Position(BaseModel):
    instrument_id: int
    name: str
    underlying: str
    kind: str
    strike: float | None
    expiry: int | None
    size: float
    mark: float | None
    value: float | None


class LiquidationPrice(BaseModel):
    underlying: str
    spot: float
    below: float | None = Field(description="highest price under spot where equity < MM (null: none)")
    above: float | None = Field(description="lowest price over spot where equity < MM (null: none)")


class Account(BaseModel):
    address: str
    block: int
    timestamp: int
    wallet_balance: float = Field(description="settlement tokens in the wallet (not deposited)")
    allowance: float = Field(description="tokens the engine may pull from the wallet")
    cash: float
    position_value: float
    equity: float
    initial_margin: float = Field(description="what the engine enforces: the applied leaf's + pending trades'")
    maintenance_margin: float
    model_initial_margin: float | None = Field(description="the risk engine's IM for the book now")
    model_maintenance_margin: float | None
    available_to_withdraw: float
    liquidatable: bool
    near_liquidation: bool = Field(description="equity within 20% above maintenance margin")
    margin_basis_timestamp: int = Field(description="root time of the applied leaf, or of the first trade since; 0 when flat")
    state_nonce: int
    positions: list[Position]
    liquidation_prices: list[LiquidationPrice]


class Grid(BaseModel):
    underlying: str
    price_moves: list[float]
    vols: list[str]
    pnl: list[list[float | None]] = Field(description="pnl[vol][price], book P&L in USD")
    binding: dict[str, int] | None = Field(description="{vol, price} cell of the binding scenario")
    tails: list[dict]


class PositionShare(BaseModel):
    instrument_id: int
    underlying: str
    kind: str
    size: float
    loss_in_binding_scenario: float
    share_of_binding_loss: float


class MarginReport(BaseModel):
    address: str
    block: int
    timestamp: int
    params: str
    params_hash: str
    initial_margin: float
    maintenance_margin: float
    components: dict[str, float]
    isolated_margin: float
    cross_margin: float
    portfolio_margin: float
    binding_scenario: dict
    grids: list[Grid]
    positions: list[PositionShare]
    pnl_curve: dict[str, list[list[float]]] = Field(
        description="per underlying: [[price, book value change], ...] for the chart")


class Trade(Strict):
    instrument_id: int = Field(ge=1)
    # bounded so every margin of the answer stays a finite float (the risk engine multiplies
    # sizes by prices and scenario moves in float64; 1e308 contracts overflowed into nulls)
    size: float = Field(description="contracts, > 0 buys, < 0 sells", allow_inf_nan=False,
                        ge=-MAX_TRADE_SIZE, le=MAX_TRADE_SIZE)

    @field_validator("size")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("must not be 0")
        return v


class WhatIfRequest(Strict):
    trades: list[Trade] = Field(min_length=1, max_length=32)


class WhatIf(BaseModel):
    address: str
    initial_margin_before: float
    initial_margin_after: float
    maintenance_margin_before: float
    maintenance_margin_after: float
    equity: float
    engine_initial_margin_after: float = Field(
        description="what the engine will require right after the trade: its IM plus each leg's posted per-unit rate")
    accepted: bool
    reason: str


# ---- history ----
class HistoryEvent(BaseModel):
    kind: str
    block: int
    timestamp: int | None
    tx_hash: str
    details: dict


class History(BaseModel):
    address: str
    events: list[HistoryEvent]


# ---- orders ----
class OrderBody(Strict):
    account: str = Field(pattern=ADDRESS_PATTERN)
    instrument_id: int = Field(ge=1, le=UINT256_MAX)
    is_buy: bool
    size_wad: str = Field(pattern=UINT_PATTERN, description="decimal string")
    limit_price_wad: str = Field(pattern=UINT_PATTERN)
    order_nonce: str = Field(pattern=UINT_PATTERN)
    deadline: int = Field(ge=0, le=2**64)


class SignedOrder(Strict):
    order: OrderBody
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{130}|[0-9a-fA-F]{128})$")


class ListedOrder(BaseModel):
    hash: str
    order: OrderBody
    signature: str
    filled_wad: str
    remaining_wad: str
    size: float
    remaining: float
    price: float
    instrument: dict


class OrderBook(BaseModel):
    block: int
    orders: list[ListedOrder]


# ---- misc ----
class Proof(BaseModel):
    """An account's leaf in the engine's current epoch root and its Merkle proof: the
    arguments of `apply_leaf` / `withdraw_with_leaf` / `fill_with_leaf`."""

    engine: str
    epoch: int
    accounts_root: str = Field(description="the epoch's accounts root (0x hex)")
    leaf: dict = Field(description="AccountLeaf fields by name (docs/oracle.md); bytes as 0x hex, WAD integers")
    proof: list[str] = Field(description="sibling hashes, leaf to root (0x hex)")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: list[ErrorItem]

"""netmargin risk engine: pure Python + numpy, no I/O beyond reading bundled parameter files.
Public API documented in docs/risk.md."""

from offchain.risk.book import Book, load_book, parse_book
from offchain.risk.engine import Breakdown, MarginResult, Rates, RiskEngine
from offchain.risk.instruments import Instruments, Market, UnderlyingMarket, parse_time
from offchain.risk.params import Params, load_params, params_from_dict, params_hash
from offchain.risk.pricing import (
    CALL,
    FUTURE,
    KIND_CODES,
    PERPETUAL,
    PUT,
    black76_greeks,
    black76_price,
    black_scholes_greeks,
)
from offchain.risk.scenarios import ScenarioSet, build_scenarios

__all__ = [
    "Book", "Breakdown", "CALL", "FUTURE", "Instruments", "KIND_CODES", "MarginResult", "Market",
    "PERPETUAL", "PUT", "Params", "Rates", "RiskEngine", "ScenarioSet", "UnderlyingMarket",
    "black76_greeks", "black76_price", "black_scholes_greeks", "build_scenarios", "load_book",
    "load_params", "params_from_dict", "params_hash", "parse_book", "parse_time",
]

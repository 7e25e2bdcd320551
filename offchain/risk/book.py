"""The book JSON format (a book and its market) -> Instruments, Market and sizes. Every
rejection names the field and the value. See docs/risk.md for the format."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from offchain.errors import UserError
from offchain.risk.instruments import (
    INSTRUMENT_KEYS,
    MAX_VOL,
    Instruments,
    Market,
    UnderlyingMarket,
    _number,
    check_keys,
    instrument_from_spec,
    parse_time,
)
from offchain.risk.params import Params
from offchain.risk.pricing import CALL, PUT


@dataclass(frozen=True)
class Book:
    instruments: Instruments      # one instrument per position, in the book's order
    market: Market
    sizes: np.ndarray             # contracts per position (signed)
    option_vols: np.ndarray       # per-position implied vol (NaN: use smile / market vol)

    def engine(self, params: Params, dtype=np.float64):
        from offchain.risk.engine import RiskEngine
        return RiskEngine(params, self.instruments, self.market, self.option_vols, dtype=dtype,
                          where="positions")


def load_book(text: str) -> Book:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"book: malformed JSON at line {exc.lineno} column {exc.colno}: "
                        f"{exc.msg}") from exc
    return parse_book(obj)


def _parse_underlying_market(name: str, spec) -> UnderlyingMarket:
    where = f"market.{name}"
    if not isinstance(spec, dict):
        raise UserError(f"{where}: must be an object with spot (and vol, rate), got {spec!r}")
    check_keys(spec, MARKET_KEYS, where)
    spot = _number(spec, "spot", where, positive=True)
    rate = _number(spec, "rate", where, required=False, default=0.0)
    if not -1.0 <= rate <= 1.0:
        raise UserError(f"{where}.rate: must be a yearly rate between -1 and 1 (0.05 = 5%), "
                        f"got {rate!r}")
    vol = _vol(spec, "vol", where)
    forwards = {}
    for key, f in (spec.get("forwards") or {}).items():
        fw = _number({key: f}, key, f"{where}.forwards", positive=True)
        forwards[parse_time(key, f"{where}.forwards.{key}")] = fw
    smiles = {}
    for key, smile in (spec.get("smile") or {}).items():
        w = f"{where}.smile.{key}"
        if not isinstance(smile, dict) or not isinstance(smile.get("strikes"), list) \
                or not isinstance(smile.get("vols"), list) \
                or len(smile["strikes"]) != len(smile["vols"]) or not smile["strikes"]:
            raise UserError(f"{w}: must be {{strikes: [...], vols: [...]}} of equal non-zero "
                            f"length, got {smile!r}")
        strikes = np.array([_number({"strike": k}, "strike", w, positive=True)
                            for k in smile["strikes"]])
        vols = np.array([_vol({"vol": v}, "vol", w) for v in smile["vols"]])
        if np.any(np.diff(strikes) <= 0):
            raise UserError(f"{w}.strikes: must be strictly increasing, got {smile['strikes']}")
        smiles[parse_time(key, w)] = (strikes, vols)
    return UnderlyingMarket(spot=spot, rate=rate, vol=vol, forwards=forwards, smiles=smiles)


MARKET_KEYS = ("spot", "vol", "rate", "forwards", "smile")
POSITION_KEYS = INSTRUMENT_KEYS + ("size", "vol")
BOOK_KEYS = ("valuation_time", "market", "positions")


def _vol(spec: dict, key: str, where: str) -> float | None:
    """An implied vol as a fraction: 0.5 is 50%; 50 is refused as a percentage."""
    vol = _number(spec, key, where, positive=True, required=False)
    if vol is not None and vol > MAX_VOL:
        raise UserError(f"{where}.{key}: must be a fraction (0.5 for 50%), got {vol!r}, "
                        f"which reads as a percentage")
    return vol


def parse_book(obj) -> Book:
    if not isinstance(obj, dict):
        raise UserError(f"book: must be a JSON object, got {type(obj).__name__}")
    check_keys(obj, BOOK_KEYS, "book")
    if "valuation_time" not in obj:
        raise UserError("valuation_time: missing, expected an ISO-8601 time")
    t0 = parse_time(obj["valuation_time"], "valuation_time")
    market_spec = obj.get("market")
    if not isinstance(market_spec, dict) or not market_spec:
        raise UserError(f"market: must be a non-empty object keyed by underlying, got "
                        f"{market_spec!r}")
    market = Market(t0, {n: _parse_underlying_market(n, s) for n, s in market_spec.items()})
    positions = obj.get("positions")
    if not isinstance(positions, list) or not positions:
        raise UserError(f"positions: must be a non-empty list, got {positions!r}")
    rows, sizes, vols = [], [], []
    for i, p in enumerate(positions):
        where = f"positions[{i}]"
        if isinstance(p, dict):
            check_keys(p, POSITION_KEYS, where)
        rows.append(instrument_from_spec(p, where))
        sizes.append(_number(p, "size", where))
        vol = _vol(p, "vol", where)
        if vol is not None and rows[-1][1] not in (CALL, PUT):
            raise UserError(f"{where}.vol: only options take a vol, got {vol!r} on a "
                            f"{p['kind']}")
        vols.append(math.nan if vol is None else vol)
        if rows[-1][0] not in market.underlyings:
            raise UserError(f"market.{rows[-1][0]}: missing, needed by {where}")
    instruments = Instruments(
        underlying=tuple(r[0] for r in rows),
        kind=np.array([r[1] for r in rows], dtype=np.int8),
        strike=np.array([r[2] for r in rows]),
        expiry=np.array([r[3] for r in rows]),
        contract_size=np.array([r[4] for r in rows]),
    )
    return Book(instruments, market, np.array(sizes), np.array(vols))

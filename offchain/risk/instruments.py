"""The instrument table (one row per instrument, column index of the positions matrix) and the
market data that values it, with field-named validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from offchain.errors import UserError
from offchain.risk.pricing import CALL, FUTURE, KIND_CODES, PERPETUAL, PUT

SECONDS_PER_YEAR = 365.0 * 86400.0
# Magnitudes past these are input mistakes, not books: they would print `inf` or lose all
# precision (sizes and prices in contracts and USD; unix seconds before year 5138)
MAX_MAGNITUDE = 1e12
MAX_UNIX_SECONDS = 1e11
# an implied vol above this is a percentage typed as a number (50 for 50%)
MAX_VOL = 5.0
INSTRUMENT_KEYS = ("underlying", "kind", "strike", "expiry", "contract_size")


def check_keys(spec: dict, allowed, where: str) -> None:
    """Reject keys the format does not know (a typo would otherwise fall back silently)."""
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: unknown key, expected one of {sorted(allowed)}")


def parse_time(value, where: str) -> float:
    """ISO-8601 (`2024-06-28T08:00:00Z`) or unix seconds -> unix seconds."""
    if isinstance(value, bool):
        raise UserError(f"{where}: must be an ISO-8601 time or unix seconds, got {value!r}")
    if isinstance(value, int | float) and math.isfinite(value):
        if abs(value) >= MAX_UNIX_SECONDS:
            raise UserError(f"{where}: must be unix seconds, got {value!r} (milliseconds? "
                            f"divide by 1000)")
        return float(value)
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            ts = None
        if ts is not None:
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            return ts.timestamp()
    raise UserError(f"{where}: must be an ISO-8601 time or unix seconds, got {value!r}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(spec: dict, key: str, where: str, *, positive: bool = False, required: bool = True,
            default: float | None = None, nonneg: bool = False) -> float | None:
    if key not in spec or spec[key] is None:
        if required:
            raise UserError(f"{where}.{key}: missing, expected a number")
        return default
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise UserError(f"{where}.{key}: must be a finite number, got {v!r}")
    if abs(v) > MAX_MAGNITUDE:
        raise UserError(f"{where}.{key}: must be at most {MAX_MAGNITUDE:g} in size, got {v!r}")
    if positive and v <= 0:
        raise UserError(f"{where}.{key}: must be > 0, got {v!r}")
    if nonneg and v < 0:
        raise UserError(f"{where}.{key}: must be >= 0, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Instruments:
    """Columns of the positions matrix. strike is NaN for futures/perps, expiry (unix seconds)
    is NaN for perps; contract_size multiplies every per-unit figure."""

    underlying: tuple[str, ...]
    kind: np.ndarray
    strike: np.ndarray
    expiry: np.ndarray
    contract_size: np.ndarray

    def __len__(self) -> int:
        return len(self.underlying)

    @property
    def is_option(self) -> np.ndarray:
        return (self.kind == CALL) | (self.kind == PUT)

    @classmethod
    def from_specs(cls, specs: list[dict], where: str = "instruments") -> Instruments:
        """Build from dicts {underlying, kind, strike?, expiry?, contract_size?}."""
        if not isinstance(specs, list | tuple) or not specs:
            raise UserError(f"{where}: must be a non-empty list, got {specs!r}")
        rows = [instrument_from_spec(s, f"{where}[{i}]") for i, s in enumerate(specs)]
        return cls(
            underlying=tuple(r[0] for r in rows),
            kind=np.array([r[1] for r in rows], dtype=np.int8),
            strike=np.array([r[2] for r in rows], dtype=np.float64),
            expiry=np.array([r[3] for r in rows], dtype=np.float64),
            contract_size=np.array([r[4] for r in rows], dtype=np.float64),
        )


def instrument_from_spec(spec, where: str) -> tuple[str, int, float, float, float]:
    if not isinstance(spec, dict):
        raise UserError(f"{where}: must be an object, got {spec!r}")
    u = spec.get("underlying")
    if not isinstance(u, str) or not u:
        raise UserError(f"{where}.underlying: must be a non-empty string, got {u!r}")
    kind_name = spec.get("kind")
    if kind_name not in KIND_CODES:
        raise UserError(f"{where}.kind: must be one of {list(KIND_CODES)}, got {kind_name!r}")
    kind = KIND_CODES[kind_name]
    for key, needs in (("strike", (CALL, PUT)), ("expiry", (CALL, PUT, FUTURE))):
        if key in spec and kind not in needs:
            raise UserError(f"{where}.{key}: a {kind_name} has no {key}, got {spec[key]!r}")
    strike = math.nan
    expiry = math.nan
    if kind in (CALL, PUT):
        strike = _number(spec, "strike", where, positive=True)
    if kind in (CALL, PUT, FUTURE):
        if "expiry" not in spec:
            raise UserError(f"{where}.expiry: missing, a {kind_name} needs an expiry")
        expiry = parse_time(spec["expiry"], f"{where}.expiry")
    size = _number(spec, "contract_size", where, positive=True, required=False, default=1.0)
    return u, kind, strike, expiry, size


@dataclass
class UnderlyingMarket:
    """Market of one underlying. `forwards` and `smiles` are keyed by expiry (unix seconds);
    a smile is (strikes ascending, vols), interpolated linearly in strike, flat outside.
    Missing forwards are spot * exp(rate * T); missing smiles fall back to the flat `vol`."""

    spot: float
    rate: float = 0.0
    vol: float | None = None
    forwards: dict[float, float] = field(default_factory=dict)
    smiles: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class Market:
    valuation_time: float
    underlyings: dict[str, UnderlyingMarket]


@dataclass(frozen=True)
class Resolved:
    """Per-instrument market inputs the pricer needs."""

    names: tuple[str, ...]   # distinct underlyings, in first-seen order
    u_idx: np.ndarray        # index into names per instrument
    spot: np.ndarray
    fwd: np.ndarray
    tenor: np.ndarray        # years to expiry (0 for perps)
    vol: np.ndarray          # implied vol (0 for futures/perps)
    rate: np.ndarray


def resolve_market(instruments: Instruments, market: Market, option_vols=None,
                   where: str = "instruments") -> Resolved:
    """Look up spot, forward, tenor, vol and rate for every instrument; errors name the row."""
    names = tuple(dict.fromkeys(instruments.underlying))
    n = len(instruments)
    u_idx = np.array([names.index(u) for u in instruments.underlying], dtype=np.intp)
    spot, fwd, tenor, vol, rate = (np.zeros(n) for _ in range(5))
    vols_in = np.full(n, np.nan) if option_vols is None else np.asarray(option_vols, dtype=float)
    for i in range(n):
        u = instruments.underlying[i]
        m = market.underlyings.get(u)
        if m is None:
            raise UserError(f"market.{u}: missing, needed by {where}[{i}]")
        kind = int(instruments.kind[i])
        spot[i], rate[i] = m.spot, m.rate
        if kind == PERPETUAL:
            fwd[i] = m.spot
            continue
        exp = float(instruments.expiry[i])
        t = (exp - market.valuation_time) / SECONDS_PER_YEAR
        if t <= 0:
            raise UserError(f"{where}[{i}].expiry: must be after valuation_time "
                            f"{iso(market.valuation_time)}, got {iso(exp)} (expired)")
        tenor[i] = t
        fwd[i] = m.forwards.get(exp, m.spot * math.exp(m.rate * t))
        if kind in (CALL, PUT):
            vol[i] = _option_vol(vols_in[i], m, exp, float(instruments.strike[i]), u, f"{where}[{i}]")
    return Resolved(names, u_idx, spot, fwd, tenor, vol, rate)


def _option_vol(explicit: float, m: UnderlyingMarket, expiry: float, strike: float, u: str,
                where: str) -> float:
    if math.isfinite(explicit):
        v = explicit
    elif expiry in m.smiles:
        strikes, vols = m.smiles[expiry]
        v = float(np.interp(strike, strikes, vols))
    elif m.vol is not None:
        v = m.vol
    else:
        raise UserError(f"{where}.vol: missing, and market.{u} has neither `vol` nor a smile "
                        f"for expiry {iso(expiry)}")
    if not v > 0:
        raise UserError(f"{where}.vol: must be > 0, got {v!r}")
    return v

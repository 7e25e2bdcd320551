"""Float <-> WAD (1e18 fixed point) conversion with an explicit rounding direction.

On the transaction path everything is an exact Python int. Conversions go through the
shortest decimal repr of the float (`repr(0.1) == '0.1'` -> exactly 10**17), then round in
the direction the caller names: margins round UP (never under-collateralise), values that
favour the account (collateral, position value) round DOWN, prices to NEAREST.

WAD values above ~9.2 overflow int64, so WAD arrays are lists of Python ints; the
conversion itself is a per-element Decimal operation at the edge (a few hundred values
per batch), the risk maths before it stays in numpy floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from enum import Enum

WAD = 10**18


class Rounding(Enum):
    UP = ROUND_CEILING  # toward +infinity (margins)
    DOWN = ROUND_FLOOR  # toward -infinity (values credited to an account)
    NEAREST = ROUND_HALF_EVEN  # prices


def to_wad(value: float | int | str | Decimal, rounding: Rounding, *, field: str = "value") -> int:
    """`value` units -> WAD int, rounded in `rounding` direction. Refuses NaN/inf and bools."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field}: expected a finite number, got {value!r}")
    if not isinstance(rounding, Rounding):
        raise ValueError(f"rounding: expected a Rounding member, got {rounding!r}")
    try:
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except Exception as exc:  # decimal.InvalidOperation and friends
        raise ValueError(f"{field}: expected a number, got {value!r}") from exc
    if not dec.is_finite():
        raise ValueError(f"{field}: expected a finite number, got {value!r}")
    with localcontext() as ctx:
        ctx.prec = 100  # exact for any uint256-sized WAD
        return int((dec * WAD).to_integral_value(rounding=rounding.value))


def to_wad_list(values: Iterable[float], rounding: Rounding, *, field: str = "values") -> list[int]:
    """Element-wise `to_wad` (numpy arrays accepted); error messages name the index."""
    return [to_wad(float(v), rounding, field=f"{field}[{i}]") for i, v in enumerate(values)]


def margin_to_wad(value: float | int | str | Decimal, *, field: str = "margin") -> int:
    """Margins round up: the on-chain requirement is never below the computed one."""
    return to_wad(value, Rounding.UP, field=field)


def from_wad(value: int) -> float:
    """WAD int -> float units (for reports and estimates only)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"value: expected a WAD integer, got {value!r}")
    return value / WAD


def to_token_units(value_wad: int, decimals: int, rounding: Rounding) -> int:
    """WAD amount -> token base units (e.g. 6-decimal USDC), rounded as named."""
    if not 0 <= decimals <= 18:
        raise ValueError(f"decimals: expected 0..18, got {decimals}")
    scale = 10 ** (18 - decimals)
    q, r = divmod(value_wad, scale)  # floor division, also for negatives
    if r and rounding is Rounding.UP:
        return q + 1
    if r and rounding is Rounding.NEAREST and 2 * r >= scale:
        return q + 1 if (2 * r > scale or q % 2) else q
    return q

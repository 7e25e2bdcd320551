"""The devnet's standard instrument chain, laid around the spot prices at its start.

Per underlying (BTC and ETH): the perpetual, one dated future, and calls and puts at 90%,
100% and 110% of spot for two expiries (Fridays 08:00 UTC, one and four weeks out).
"""

from __future__ import annotations

import math

from offchain.keeper.prices import DAY

UNDERLYINGS = ("BTC", "ETH")
STRIKE_FRACTIONS = (0.9, 1.0, 1.1)
FRIDAY = 4  # Monday = 0


def next_friday_0800(t: int, min_days: int) -> int:
    """First Friday 08:00 UTC at least `min_days` after `t`."""
    day = (t // DAY) + min_days
    while (day + 3) % 7 != FRIDAY:  # 1970-01-01 was a Thursday: weekday = (day + 3) % 7
        day += 1
    return day * DAY + 8 * 3600


def strike_step(spot: float) -> float:
    """A round strike grid finer than the 10% between strikes: the power of ten under 2.5% of
    spot (8,000 -> 100; 95,000 -> 1,000; 200 -> 1), so the three strikes never coincide."""
    return 10 ** math.floor(math.log10(spot * 0.025))


def standard_specs(spots: dict[str, float], t0: int) -> list[dict]:
    short_exp = next_friday_0800(t0, 7)
    long_exp = next_friday_0800(t0, 28)
    specs: list[dict] = []
    for u in UNDERLYINGS:
        specs.append({"underlying": u, "kind": "perpetual"})
        specs.append({"underlying": u, "kind": "future", "expiry": long_exp})
    for u in UNDERLYINGS:
        step = strike_step(spots[u])
        for expiry in (short_exp, long_exp):
            for frac in STRIKE_FRACTIONS:
                strike = round(spots[u] * frac / step) * step
                for kind in ("call", "put"):
                    specs.append({"underlying": u, "kind": kind, "strike": strike, "expiry": expiry})
    return specs

"""The devnet's standard instrument chain."""

from __future__ import annotations

import pytest

from offchain.devnet.standard_chain import next_friday_0800, standard_specs

T0 = 1_800_000_000


@pytest.mark.parametrize("spot", [0.9, 8.0, 199.0, 3_100.0, 8_062.0, 99_999.0, 100_500.0, 1_234_567.0])
def test_standard_specs__any_spot__three_distinct_round_strikes_per_expiry(spot):
    specs = standard_specs({"BTC": spot, "ETH": spot / 20}, T0)
    keys = [(s["underlying"], s["kind"], s.get("strike"), s.get("expiry")) for s in specs]
    assert len(keys) == len(set(keys)) == 28
    btc = sorted({s["strike"] for s in specs if s["underlying"] == "BTC" and "strike" in s})
    assert len(btc) == 3 and btc[0] < spot < btc[2]


def test_next_friday_0800__any_day__a_friday_at_08_utc_at_least_n_days_later():
    from datetime import UTC, datetime
    for start in range(T0, T0 + 7 * 86_400, 20_000):
        f = next_friday_0800(start, 7)
        d = datetime.fromtimestamp(f, UTC)
        assert d.weekday() == 4 and d.hour == 8 and f >= start + 6 * 86_400

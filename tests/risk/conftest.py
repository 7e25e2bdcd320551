"""Role-named fixtures for the pure risk tests: a BTC+ETH chain of futures, perps and options,
and engines over it (float64 exact and float32 fast)."""

import numpy as np
import pytest

from offchain.risk import Instruments, Market, RiskEngine, UnderlyingMarket, load_params

T0 = 1718582400.0  # 2024-06-17T00:00:00Z
DAY = 86400.0


def chain_specs(expiry_days=(7, 30, 90), strikes_per_side=3) -> tuple[list[dict], dict]:
    spots = {"BTC": 65666.19, "ETH": 3510.0}
    specs = []
    for u, spot in spots.items():
        specs.append({"underlying": u, "kind": "perpetual"})
        for d in expiry_days:
            exp = T0 + d * DAY
            specs.append({"underlying": u, "kind": "future", "expiry": exp})
            for j in range(-strikes_per_side, strikes_per_side + 1):
                k = round(spot * (1 + 0.05 * j), -1)
                specs.append({"underlying": u, "kind": "call", "strike": k, "expiry": exp})
                specs.append({"underlying": u, "kind": "put", "strike": k, "expiry": exp})
    market = Market(T0, {"BTC": UnderlyingMarket(spot=spots["BTC"], rate=0.05, vol=0.55),
                         "ETH": UnderlyingMarket(spot=spots["ETH"], rate=0.05, vol=0.65)})
    return specs, market


@pytest.fixture(scope="session")
def default_params():
    return load_params("default-v2")


@pytest.fixture(scope="session")
def chain():
    specs, market = chain_specs()
    return Instruments.from_specs(specs), market


@pytest.fixture(scope="session")
def engine(default_params, chain):
    return RiskEngine(default_params, *chain, dtype=np.float64)


@pytest.fixture(scope="session")
def fast_engine(default_params, chain):
    return RiskEngine(default_params, *chain, dtype=np.float32)


@pytest.fixture(scope="session")
def find(chain):
    """find(underlying, kind, strike=None, days=None) -> instrument index."""
    instruments, _ = chain

    def _find(u, kind, strike=None, days=None):
        from offchain.risk import KIND_CODES
        for i in range(len(instruments)):
            if instruments.underlying[i] != u or instruments.kind[i] != KIND_CODES[kind]:
                continue
            if days is not None and instruments.expiry[i] != T0 + days * DAY:
                continue
            if strike is not None and abs(instruments.strike[i] - strike) > 1e-9:
                continue
            return i
        raise LookupError((u, kind, strike, days))

    return _find

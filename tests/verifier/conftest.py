"""ScenarioVerifier on titanoboa, one deployment per bundled parameter set, and random books
with the float64 engine's breakdown of the same WAD inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from support.boa_contracts import deploy

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.verifier import params_hash_bytes, verifier_config
from offchain.risk import RiskEngine, load_params
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.pricing import CALL, FUTURE, PERPETUAL, PUT

WAD = 10**18
PARAM_SETS = ("default-v1", "default-v2", "span16-v1")
SPOTS = {"BTC": 65_000.0, "ETH": 3_500.0, "SOL": 150.0}   # SOL uses the `default` row
TENORS = (7 / 365, 30 / 365, 90 / 365)


ZERO = "0x" + "00" * 20


def deploy_verifier(params, oracle: str = ZERO):
    """A verifier for `params`; `oracle` only matters to `check_market`."""
    generator, rows = verifier_config(params)
    return deploy("ScenarioVerifier", oracle, params_hash_bytes(params), generator, rows)


@pytest.fixture(scope="session")
def verifiers():
    return {name: (load_params(name), deploy_verifier(load_params(name))) for name in PARAM_SETS}


def wad(x: float) -> int:
    return int(round(x * WAD))


@dataclass
class Book:
    """A book of legs with WAD inputs, and the same inputs as floats for the engine."""

    units: tuple[str, ...]
    legs: list[tuple]
    inputs: InstrumentInputs
    sizes: np.ndarray

    def engine(self, params) -> RiskEngine:
        return RiskEngine.from_inputs(params, self.inputs, self.units, dtype=np.float64)

    def unit_symbols(self) -> list[bytes]:
        return [symbol_to_bytes32(u) for u in self.units]

    def gross_notional(self) -> float:
        """sum |size * contract_size| * forward, in units: the scale of the tolerance."""
        return float(np.sum(np.abs(self.sizes) * self.inputs.contract_size * self.inputs.fwd))


def random_book(rng: np.random.Generator, n_legs: int, kinds=(FUTURE, PERPETUAL, CALL, PUT),
                units=("BTC", "ETH", "SOL")) -> Book:
    units = tuple(rng.choice(units, size=rng.integers(1, len(units) + 1), replace=False))
    rows = []
    for _ in range(n_legs):
        u = int(rng.integers(len(units)))
        kind = int(rng.choice(kinds))
        spot = SPOTS[units[u]] * float(rng.uniform(0.9, 1.1))
        rate = float(rng.choice([0.0, 0.03]))
        tenor = 0.0 if kind == PERPETUAL else float(rng.choice(TENORS))
        fwd = spot if kind == PERPETUAL else spot * float(np.exp(rate * tenor))
        # strikes on a grid so that calls and puts of one strike and expiry net
        strike = SPOTS[units[u]] * float(rng.choice([0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.6]))
        vol = float(rng.uniform(0.3, 1.5)) if kind in (CALL, PUT) else 0.0
        cs = float(rng.choice([1.0, 0.1]))
        size = float(np.round(rng.uniform(-10, 10), 3)) or 1.0
        rows.append((size, kind, u, wad(fwd), wad(spot), wad(strike), wad(tenor), wad(vol),
                     wad(rate), wad(cs)))
    return book_from_rows(units, rows)


def book_from_rows(units: tuple[str, ...], rows: list[tuple]) -> Book:
    """rows: (size, kind, unit, fwd, spot, strike, tenor, vol, rate, contract size), the
    size a float in contracts and the rest as the contract takes them (WAD)."""
    col = lambda i: np.array([r[i] for r in rows], dtype=np.float64) / WAD  # noqa: E731
    kinds_arr = np.array([r[1] for r in rows], dtype=np.int8)
    inputs = InstrumentInputs(kind=kinds_arr, u_idx=np.array([r[2] for r in rows], dtype=np.intp),
                              spot=col(4), fwd=col(3), strike=col(5), tenor=col(6), vol=col(7),
                              rate=col(8), contract_size=col(9))
    legs = [(wad(r[0]), *r[1:]) for r in rows]
    return Book(units, legs, inputs, np.array([r[0] for r in rows]))

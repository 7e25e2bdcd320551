"""The pricer's accuracy metric and its random input domain, shared by the tests and
benchmarks/bench_pricer.py.

Metric: err = |v_chain - v_python| / max(v_python, FLOOR_REL * F), where v_chain is the
contract's premium in wei, v_python the float64 engine's (offchain/risk/pricing.py) on the
same WAD inputs, and F the forward. Above one billionth of the forward it is the plain
relative error; below, the error is measured against 1e-9 F, i.e. an absolute tolerance of
1e-18 F: one wei per unit of forward, the forward's own WAD resolution (a premium is an
integer number of wei, so no implementation can do better than 0.5 wei). Target: 1e-9.

Domain (issue targets): moneyness F/K in [0.2, 5], vol in [0.05, 5], expiry in [1 hour,
2 years], all log-uniform; F log-uniform in [1, 1e6] units; rate uniform in [-0.1, 0.2];
calls and puts evenly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offchain.risk.pricing import black76_price

WAD = 10**18
FLOOR_REL = 1e-9
TARGET = 1e-9
HOUR_YEARS = 1.0 / (365.0 * 24.0)


@dataclass(frozen=True)
class Case:
    fwd: int
    strike: int
    tenor: int
    vol: int
    rate: int
    is_call: bool

    def args(self) -> tuple:
        return (self.fwd, self.strike, self.tenor, self.vol, self.rate, self.is_call)


def make_case(moneyness: float, vol: float, tenor_years: float, fwd: float, rate: float,
              is_call: bool) -> Case:
    fwd_wad = int(fwd * WAD)
    return Case(fwd_wad, int(fwd_wad / moneyness), int(tenor_years * WAD), int(vol * WAD),
                int(rate * WAD), bool(is_call))


def random_cases(n: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)

    def log_uniform(lo, hi):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))

    m, vol = log_uniform(0.2, 5.0), log_uniform(0.05, 5.0)
    tenor, fwd = log_uniform(HOUR_YEARS, 2.0), log_uniform(1.0, 1e6)
    rate, call = rng.uniform(-0.1, 0.2, n), rng.random(n) < 0.5
    return [make_case(*row) for row in zip(m, vol, tenor, fwd, rate, call, strict=True)]


def python_prices(cases: list[Case]) -> np.ndarray:
    """The engine's premiums (wei, float64) on exactly the WAD inputs the contract sees."""
    col = lambda name: np.array([getattr(c, name) for c in cases], dtype=np.float64) / WAD  # noqa: E731
    return black76_price(col("fwd"), col("strike"), col("tenor"), col("vol"), col("rate"),
                         np.array([c.is_call for c in cases])) * WAD


def errors(chain: list[int], cases: list[Case]) -> np.ndarray:
    """err per case (see the module docstring)."""
    py = python_prices(cases)
    fwd = np.array([c.fwd for c in cases], dtype=np.float64)
    diff = np.abs(np.array([float(v) for v in chain]) - py)
    return diff / np.maximum(py, FLOOR_REL * fwd)

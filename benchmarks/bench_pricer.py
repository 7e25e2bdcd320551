"""Accuracy and gas of the on-chain Black-76 pricer (contracts/modules/pricer.vy), on
titanoboa's EVM; prints a table and exits by itself (non-zero if a target is missed).

Run: python benchmarks/bench_pricer.py          (~2 minutes)
Targets: max error <= 1e-9 over 10,000 random inputs (metric and domain: tests/pricer/
accuracy.py, docs/verification.md); one Black-76 evaluation <= 10k gas.
Gas is the whole external call of the harness (ABI decoding and dispatch included, the
21,000 transaction base and calldata excluded): an upper bound of the internal function.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The metric and the input domain are the tests' (a `tests` package elsewhere on the path
# would shadow the repository's, so the folder itself goes on the path).
sys.path.insert(0, str(ROOT / "tests" / "pricer"))

import boa  # noqa: E402
from accuracy import FLOOR_REL, TARGET, python_prices, random_cases  # noqa: E402

N_CASES = 10_000
N_GAS = 1_000
GAS_TARGET = 10_000


def main() -> int:
    source = (ROOT / "tests" / "pricer" / "PricerHarness.vy").read_text()
    pricer = boa.loads(source, filename=str(ROOT / "contracts" / "PricerHarness.vy"))
    cases = random_cases(N_CASES, seed=2026)
    t0 = time.perf_counter()
    chain, gas = [], []
    for i, c in enumerate(cases):
        chain.append(pricer.black76(*c.args()))
        if i < N_GAS:
            gas.append(pricer._computation.get_gas_used())
    elapsed = time.perf_counter() - t0
    py = python_prices(cases)
    fwd = np.array([c.fwd for c in cases], dtype=np.float64)
    diff = np.abs(np.array([float(v) for v in chain]) - py)
    err = diff / np.maximum(py, FLOOR_REL * fwd)
    above = py >= FLOOR_REL * fwd
    worst = cases[int(err.argmax())]
    gas = np.array(gas)
    ok_err, ok_gas = err.max() <= TARGET, gas.max() <= GAS_TARGET
    print(f"pricer accuracy: {N_CASES:,} random inputs (seed 2026), {elapsed:.0f} s on boa")
    print(f"  max err  |chain - python| / max(python, 1e-9 F)   {err.max():.3g}   "
          f"target {TARGET:g}  {'ok' if ok_err else 'OVER'}")
    print(f"  max relative error where price >= 1e-9 F ({above.sum():,} inputs)  "
          f"{(diff[above] / py[above]).max():.3g}")
    print(f"  max absolute error below 1e-9 F ({(~above).sum():,} inputs)  "
          f"{diff[~above].max():.3g} wei")
    print(f"  worst input: {worst}")
    print(f"pricer gas per Black-76 evaluation ({N_GAS:,} of the inputs, external call)")
    print(f"  median {int(np.median(gas)):,}  max {gas.max():,}   target {GAS_TARGET:,}  "
          f"{'ok' if ok_gas else 'OVER'}")
    return 0 if ok_err and ok_gas else 1


if __name__ == "__main__":
    sys.exit(main())

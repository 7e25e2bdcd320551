"""Accuracy and gas of the on-chain Black-76 pricer (contracts/modules/pricer.vy) and of
ScenarioVerifier's re-pricing of a 16-option book in one scenario (legs as calldata, and
proven against an epoch market root), on titanoboa's EVM; prints a table and exits by itself
(non-zero if the accuracy target is missed; gas rows print ok/OVER like bench_gas.py).

Run: python benchmarks/bench_pricer.py          (~3 minutes on a shared 2-core machine)
Targets: max error <= 1e-9 over 10,000 random inputs (metric and domain: tests/pricer/
accuracy.py, docs/verification.md); one Black-76 evaluation <= 10k gas; a 16-option book
re-priced in one scenario <= 600k gas as a transaction.
Pricer gas is the whole external call of the harness (ABI decoding and dispatch included, the
21,000 transaction base and calldata excluded): an upper bound of the internal function.
The verifier rows add the 21,000 base and the calldata (EIP-2028 prices) to the execution.
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
from accuracy import FLOOR_REL, TARGET, WAD, python_prices, random_cases  # noqa: E402

N_CASES = 10_000
N_GAS = 1_000
GAS_TARGET = 10_000
BOOK_GAS_TARGET = 600_000


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
    ok_book = bench_book()
    ok_market = bench_market_book()
    for name, ok in (("black76 gas", ok_gas), ("check gas", ok_book), ("check_market gas", ok_market)):
        if not ok:
            print(f"note: {name} over its target")
    return 0 if ok_err else 1


def sixteen_option_book():
    """BTC calls and puts at four strikes and two expiries, long and short (a typical
    market-maker book): the engine's inputs and the sizes."""
    from offchain.risk.arrays import InstrumentInputs
    from offchain.risk.pricing import CALL, PUT

    spot, rate = 65_000.0, 0.03
    rows = [(t, k, c) for t in (30 / 365, 90 / 365) for k in (52_000, 60_000, 70_000, 80_000)
            for c in (CALL, PUT)]
    tenor = np.array([r[0] for r in rows])
    strike = np.array([r[1] for r in rows], dtype=np.float64)
    inputs = InstrumentInputs(
        kind=np.array([r[2] for r in rows], dtype=np.int8), u_idx=np.zeros(16, dtype=np.intp),
        spot=np.full(16, spot), fwd=spot * np.exp(rate * tenor), strike=strike, tenor=tenor,
        vol=0.55 + 0.1 * np.abs(strike / spot - 1), rate=np.full(16, rate),
        contract_size=np.ones(16))
    sizes = np.array([(-1.0) ** i * (1 + i % 5) for i in range(16)])
    return inputs, sizes


def bench_book() -> bool:
    from eth_abi import encode

    from offchain.chain.verifier import (
        LEG_ABI,
        check_arguments,
        params_hash_bytes,
        verifier_config,
    )
    from offchain.risk import RiskEngine, load_params

    params = load_params()
    generator, rows = verifier_config(params)
    verifier = boa.load(str(ROOT / "contracts" / "ScenarioVerifier.vy"), "0x" + "00" * 20,
                        params_hash_bytes(params), generator, rows)
    inputs, sizes = sixteen_option_book()
    engine = RiskEngine.from_inputs(params, inputs, ("BTC",), dtype=np.float64)
    b = engine.breakdown(sizes[None, :], exact=True)
    legs, units, scenarios, joint = check_arguments(engine, sizes)
    out = verifier.check(legs, units, scenarios, joint)
    execution = verifier._computation.get_gas_used()
    data = bytes(4) + encode([f"{LEG_ABI}[]", "bytes32[]", "uint256[]", "uint256"],
                             [legs, units, scenarios, joint])
    calldata = sum(4 if byte == 0 else 16 for byte in data)
    total = 21_000 + calldata + execution
    ok = total <= BOOK_GAS_TARGET
    print(f"ScenarioVerifier.check: 16 BTC options, one scenario ({params.label}, scenario "
          f"{scenarios[0]}, the binding one)")
    print(f"  maintenance margin  chain {out.maintenance_wad / WAD:,.6f}  engine {b.mm[0]:,.6f}")
    print(f"  gas  execution {execution:,} + calldata {calldata:,} + base 21,000 = {total:,}   "
          f"target {BOOK_GAS_TARGET:,}  {'ok' if ok else 'OVER'}")
    return ok



def bench_market_book(n_market: int = 256) -> bool:
    """The same book through `check_market`: every leg's inputs proven against a signed epoch
    market root of `n_market` instruments by one multiproof."""
    from dataclasses import replace

    from eth_account import Account
    from eth_utils import keccak

    from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
    from offchain.chain.leaves import AccountLeaf, MarketLeaf, positions_hash
    from offchain.chain.roots import EpochTrees
    from offchain.chain.verifier import check_arguments, params_hash_bytes, verifier_config
    from offchain.chain.witness import encode_check_market
    from offchain.risk import RiskEngine, load_params

    params = load_params()
    signers = sorted((Account.from_key(keccak(text=f"bench signer {i}")) for i in range(2)),
                     key=lambda a: int(a.address, 16))
    registry = boa.load(str(ROOT / "contracts" / "InstrumentRegistry.vy"))
    oracle = boa.load(str(ROOT / "contracts" / "RiskOracle.vy"), registry.address,
                      [a.address for a in signers], 2, params_hash_bytes(params), 2_000)
    generator, rows = verifier_config(params)
    verifier = boa.load(str(ROOT / "contracts" / "ScenarioVerifier.vy"), oracle.address,
                        params_hash_bytes(params), generator, rows)
    engine_address = "0x" + "e1" * 20
    inputs, sizes = sixteen_option_book()
    engine = RiskEngine.from_inputs(params, inputs, ("BTC",), dtype=np.float64)
    legs, units, scenarios, joint = check_arguments(engine, sizes)
    signed_at = boa.env.evm.patch.timestamp
    leaves = [MarketLeaf(instrument_id=i + 1, kind=leg[1], underlying=symbol_to_bytes32("BTC"),
                         strike_wad=leg[5], expiry=signed_at + leg[6] * 365 * 86_400 // WAD,
                         contract_size_wad=leg[9], spot_wad=leg[4], forward_wad=leg[3],
                         vol_wad=leg[7], rate_wad=leg[8],
                         # marks and per-unit rates as the keeper fills them (calldata weight)
                         mark_wad=verifier.black76(leg[3], leg[5], leg[6], leg[7], leg[8], leg[1] == 2),
                         im_long_wad=3_107 * WAD + i, im_short_wad=9_871 * WAD + i,
                         mm_long_wad=2_921 * WAD + i, mm_short_wad=9_279 * WAD + i)
              for i, leg in enumerate(legs)]
    others = [replace(leaves[i % 16], instrument_id=17 + i) for i in range(n_market - 16)]
    for i in range(n_market):   # one slot per listed instrument: the registry lists n_market
        registry.list_instrument(symbol_to_bytes32(f"I{i}"), 1, 0, 0)
    account = AccountLeaf(
        account="0x" + "a1" * 20, state_nonce=1, positions_hash=positions_hash([1], [WAD]),
        pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=0,
        maintenance_margin_wad=0, worst_loss_wad=0, worst_scenarios=0, basis_addon_wad=0,
        short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)
    trees = EpochTrees.build(engine_address, 1, [account], leaves + others, n_market)
    msg = trees.root_message(timestamp=signed_at, deadline=signed_at + 300,
                             params_hash=params_hash_bytes(params))
    domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
    oracle.post_root(msg.as_args(), sign_multi(msg, domain, signers))
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves])
    # check_market reads the multiproof's hashes from its call data (witness.py): sent encoded
    data = encode_check_market(engine_address, [leg[0] for leg in legs], [leaf.as_args() for leaf in leaves],
                               list(mp.proof), mp.order, units, scenarios, joint)
    computation = boa.env.raw_call(verifier.address, data=data)
    out = verifier.marshal_to_python(computation, verifier.check_market.func_t.return_type)
    execution = computation.get_gas_used()
    calldata = sum(4 if byte == 0 else 16 for byte in data)
    total = 21_000 + calldata + execution
    ok = total <= BOOK_GAS_TARGET
    print(f"ScenarioVerifier.check_market: the same book, all legs' inputs proven against a "
          f"market root of {n_market} instruments by one multiproof")
    print(f"  maintenance margin  chain {out.maintenance_wad / WAD:,.6f} (expiries in whole "
          f"seconds from the root time)")
    print(f"  gas  execution {execution:,} + calldata {calldata:,} + base 21,000 = {total:,}   "
          f"target {BOOK_GAS_TARGET:,}  {'ok' if ok else 'OVER'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())

"""Which challenge proves a false account leaf: `FraudProofs.challenge`'s verdict mirrored with
the float64 risk engine, before any gas is spent.

    verdict = predict(params, leaf, book_wad, market_leaves, signed_at, scenarios, joint)
    verdict.code        # the FraudProven code the contract would find (0: none)

The contract re-prices the leaf's book in the named scenarios (one per risk unit of its live
positions, units by bytes32 symbol, and a joint one) with the ScenarioVerifier of the root's
parameter set, then compares with the leaf (`_verdict`: codes 1-5). The verifier agrees with
the float engine to ~1e-16 of the notional while the contract's tolerance is 1e-9 of it, so
the prediction decides every lie that is not within a hair of the tolerance; the caller still
estimates gas (the chain's own answer) before sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offchain.chain.leaves import AccountLeaf, MarketLeaf, unpack_scenarios
from offchain.chain.wad import Rounding, to_wad
from offchain.chain.witness import leaves_engine
from offchain.risk.params import Params
from offchain.risk.pricing import PERPETUAL

WAD = 10**18
# FraudProofs tolerance: gross notional / TOL_DIV + TOL_PER_LEG per live leg (WAD)
TOL_DIV = 10**9
TOL_PER_LEG = 10**9
MARGIN_BELOW_SCENARIO, LOSS_ABOVE_LEAF, BINDING_MISMATCH, ADDON_MISMATCH, SCENARIO_OUT_OF_RANGE = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Verdict:
    """The predicted outcome of one challenge: the code (0: no fraud shown), the scenarios
    named (empty: the leaf's own), and the re-priced figures (WAD, floats) it rests on."""

    code: int
    scenarios: tuple[int, ...]
    joint: int
    maintenance: float = 0.0
    weighted_loss: float = 0.0
    scenario_loss: float = 0.0
    tolerance: int = 0

    @property
    def own(self) -> bool:
        return not self.scenarios


def live_leaves(leaves: Sequence[MarketLeaf], signed_at: int) -> list[MarketLeaf]:
    """The legs the contract re-prices: perpetuals, and instruments expiring after the root."""
    return [m for m in leaves if m.kind == PERPETUAL or m.expiry > signed_at]


def tolerance_wad(leaves: Sequence[MarketLeaf], sizes_wad: Sequence[int], signed_at: int) -> int:
    """FraudProofs' tolerance for this book: 1e-9 of the gross notional (|size| x contract
    size x forward, a perpetual at its spot) + 1e-9 per live leg, in the contract's integers."""
    gross, legs = 0, 0
    for m, q in zip(leaves, sizes_wad, strict=True):
        if m.kind != PERPETUAL and m.expiry <= signed_at:
            continue
        fwd = m.spot_wad if m.kind == PERPETUAL else m.forward_wad
        gross += abs(int(q)) * m.contract_size_wad // WAD * fwd // WAD
        legs += 1
    return gross // TOL_DIV + TOL_PER_LEG * legs


def units_of(leaves: Sequence[MarketLeaf], signed_at: int) -> int:
    return len({m.underlying for m in live_leaves(leaves, signed_at)})


def predict(params: Params, leaf: AccountLeaf, book_wad: dict[int, int], leaves: Sequence[MarketLeaf],
            signed_at: int, scenarios: Sequence[int] = (), joint: int = 0) -> Verdict:
    """The contract's verdict on `leaf` challenged with `scenarios` and `joint` (empty: the
    leaf's own). `leaves` are the market leaves of the book's ids (ascending; an id without
    one is expired at the root, its slot shown empty), `book_wad` the book the leaf commits to."""
    by_id = {m.instrument_id: m for m in leaves}
    # an id without a market leaf is expired at the root (its slot shown empty): not re-priced
    ids = sorted(i for i, q in book_wad.items() if q and i in by_id)
    sizes = [int(book_wad[i]) for i in ids]
    book_leaves = [by_id[i] for i in ids]
    tol = tolerance_wad(book_leaves, sizes, signed_at)
    live = [(m, q) for m, q in zip(book_leaves, sizes, strict=True) if m.kind == PERPETUAL or m.expiry > signed_at]
    if not live:
        return Verdict(0, tuple(scenarios), joint, tolerance=tol)
    engine, names = leaves_engine(params, [m for m, _ in live], signed_at)
    n = engine.n_scenarios
    own, own_joint = unpack_scenarios(leaf.worst_scenarios, len(names))
    if any(s >= n for s in own) or own_joint >= n:
        return Verdict(SCENARIO_OUT_OF_RANGE, tuple(scenarios), joint, tolerance=tol)
    named, j = (list(scenarios), int(joint)) if scenarios else (own, own_joint)
    if len(named) != len(names) or any(not 0 <= s < n for s in [*named, j]):
        return Verdict(0, tuple(scenarios), joint, tolerance=tol)   # the verifier refuses it
    out = _check(engine, np.array([q / WAD for _, q in live]), named, j)
    is_own = named == own and j == own_joint
    code = _verdict(out, leaf, to_wad(params.mm_factor, Rounding.NEAREST, field="mm_factor"),
                    params.short_option_netted, tol, is_own)
    return Verdict(code, tuple(int(s) for s in scenarios), int(joint), out["maintenance"],
                   out["weighted_loss"], out["scenario_loss"], tol)


def _check(engine, q: np.ndarray, named: Sequence[int], joint: int) -> dict[str, float]:
    """ScenarioVerifier.check in floats (WAD): the book `q` (contracts, one per engine
    instrument) re-priced in scenario `named[u]` for unit u and `joint` for the
    all-underlyings term (risk.margin.worst_loss with the argmax replaced by the names)."""
    p = sp.csr_matrix(q[None, :])
    b = engine.breakdown(p, exact=True)
    loss = -b.pnl[0] * engine.scenarios.weight                            # (U, S)
    d = engine.params.decorrelation
    raw_u = np.maximum(loss[np.arange(loss.shape[0]), list(named)], 0.0)
    joint_loss = max(float(loss[:, joint].sum()), 0.0)

    def combine(per_u, joint_u):
        return float(per_u.sum()) if d >= 1.0 else d * float(per_u.sum()) + (1.0 - d) * joint_u

    scenario = combine(raw_u, joint_loss)
    basis, liquidity = float(b.basis[0]), float(b.liquidity[0])
    if engine.netted:
        floor = engine.short_option_floor(p)[0]
        weighted = combine(np.maximum(raw_u, floor), max(joint_loss, float(floor.sum())))
        short_option = weighted - scenario
        mm = weighted + basis + liquidity
    else:
        weighted, short_option = scenario, float(b.short_option[0])
        mm = scenario + basis + liquidity + short_option
    return {k: v * 1e18 for k, v in (("maintenance", mm), ("weighted_loss", weighted), ("scenario_loss", scenario),
                                      ("basis", basis), ("short_option", short_option), ("liquidity", liquidity))}


def _verdict(out: dict[str, float], leaf: AccountLeaf, mm_factor_wad: int, netted: bool, tol: int, own: bool) -> int:
    """FraudProofs._verdict, on the model's figures."""
    im_as_mm = leaf.initial_margin_wad * mm_factor_wad // WAD
    if out["maintenance"] > min(leaf.maintenance_margin_wad, im_as_mm) + tol:
        return MARGIN_BELOW_SCENARIO
    floor_addon = leaf.short_option_addon_wad if netted else 0
    if out["weighted_loss"] > leaf.worst_loss_wad + floor_addon + tol:
        return LOSS_ABOVE_LEAF
    wide = tol + leaf.rounding_guard_wad

    def differs(a: float, b: int) -> bool:
        return abs(a - b) > wide

    if own and (differs(out["scenario_loss"], leaf.worst_loss_wad)
                or (netted and differs(out["short_option"], leaf.short_option_addon_wad))):
        return BINDING_MISMATCH
    if differs(out["basis"], leaf.basis_addon_wad) or differs(out["liquidity"], leaf.liquidity_addon_wad):
        return ADDON_MISMATCH
    if not netted and differs(out["short_option"], leaf.short_option_addon_wad):
        return ADDON_MISMATCH
    return 0


def candidates(params: Params, leaf: AccountLeaf, honest: AccountLeaf | None, book_wad: dict[int, int],
               leaves: Sequence[MarketLeaf], signed_at: int) -> list[Verdict]:
    """The challenges worth trying for a false `leaf`, most promising first: the leaf's own
    scenarios (shows a wrong named scenario, a wrong add-on, an index out of range, and any
    understatement its own scenarios reveal) and the binding scenarios of the honest leaf
    (they maximise the margin and the loss, so they show any understated MM, IM or worst
    loss). A predicted code sorts first; ties keep that order."""
    out = [predict(params, leaf, book_wad, leaves, signed_at)]
    if honest is not None:
        by_id = {m.instrument_id: m for m in leaves}
        n_units = units_of([by_id[i] for i in book_wad if book_wad[i] and i in by_id], signed_at)
        scen, joint = unpack_scenarios(honest.worst_scenarios, n_units)
        if n_units and (scen, joint) != unpack_scenarios(leaf.worst_scenarios, n_units):
            out.append(predict(params, leaf, book_wad, leaves, signed_at, scen, joint))
    return sorted(out, key=lambda v: v.code == 0)

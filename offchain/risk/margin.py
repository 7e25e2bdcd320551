"""Account margins from account risk arrays: worst weighted loss per risk unit (underlying),
an optional cross-underlying offset, and the add-ons. Pure array functions, vectorised over
accounts; the engine and the backtest both call them."""

from __future__ import annotations

import numpy as np


def worst_loss(pnl: np.ndarray, weight: np.ndarray, decorrelation: float = 1.0,
               floor: np.ndarray | None = None):
    """pnl (n_acc, U, S) account P&L per underlying and scenario, weight (U, S), floor
    (n_acc, U) or None: a minimum per risk unit (the netted short-option minimum).

    Returns (worst (n_acc,), per_underlying (n_acc, U), binding (n_acc, U), scenario_only
    (n_acc,): `worst` without the floor, joint (n_acc,) or None: the all-underlyings term). The loss of a risk unit is
    max(0, max_s weight * -pnl, floor). With decorrelation d < 1 the total is
    d * sum_u unit_loss + (1 - d) * max(max_s sum_u weighted loss, sum_u floor): a convex
    combination of maxima of subadditive, positively homogeneous functions (the floor is one
    too), so it is both."""
    loss = pnl * (-weight)
    binding = loss.argmax(axis=2)
    raw_u = np.maximum(np.take_along_axis(loss, binding[..., None], axis=2)[..., 0], 0.0)
    joint = np.maximum(loss.sum(axis=1).max(axis=1), 0.0) if decorrelation < 1.0 else None

    def combine(per_u, joint_u):
        total = per_u.sum(axis=1)
        return total if joint_u is None else \
            decorrelation * total + (1.0 - decorrelation) * joint_u

    scenario_only = combine(raw_u, joint)
    if floor is None:
        return scenario_only, raw_u, binding, scenario_only, joint
    per_u = np.maximum(raw_u, floor)
    total = combine(per_u, None if joint is None else np.maximum(joint, floor.sum(axis=1)))
    return total, per_u, binding, scenario_only, joint


def liquidity_shock(delta_notional: np.ndarray, threshold, rate) -> np.ndarray:
    """rate * (|net delta notional| - threshold)+ per underlying (n_acc, U); threshold and rate
    are scalars or per underlying (U,). Not subadditive nor homogeneous (the threshold), but
    rate-Lipschitz in the delta notional, which is what bounds it between account leaves."""
    return rate * np.maximum(np.abs(delta_notional) - threshold, 0.0)

"""Account margins from account risk arrays: worst weighted loss per risk unit (underlying),
an optional cross-underlying offset, and the add-ons. Pure array functions, vectorised over
accounts; the engine and the backtest both call them."""

from __future__ import annotations

import numpy as np


def worst_loss(pnl: np.ndarray, weight: np.ndarray, decorrelation: float = 1.0):
    """pnl (n_acc, U, S) account P&L per underlying and scenario, weight (U, S).

    Returns (worst (n_acc,), per_underlying (n_acc, U), binding (n_acc, U)). The loss of a risk
    unit is max(0, max_s weight * -pnl). With decorrelation d < 1 the total is
    d * sum_u unit_loss + (1 - d) * max_s sum_u weighted loss, a convex combination of two
    subadditive, positively homogeneous functions, so it is both too."""
    loss = pnl * (-weight)
    binding = loss.argmax(axis=2)
    per_u = np.maximum(np.take_along_axis(loss, binding[..., None], axis=2)[..., 0], 0.0)
    total = per_u.sum(axis=1)
    if decorrelation < 1.0:
        joint = np.maximum(loss.sum(axis=1).max(axis=1), 0.0)
        total = decorrelation * total + (1.0 - decorrelation) * joint
    return total, per_u, binding


def liquidity_shock(delta_notional: np.ndarray, threshold: float, rate: float) -> np.ndarray:
    """rate * (|net delta notional| - threshold)+ per underlying (n_acc, U). Not subadditive
    nor homogeneous (the threshold), but rate-Lipschitz in the delta notional, which is what
    bounds it between attestations."""
    return rate * np.maximum(np.abs(delta_notional) - threshold, 0.0)

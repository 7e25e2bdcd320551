"""Scenario sets as data: price moves, vol shocks and weights per underlying, built from a
parameter set. Every underlying gets the same scenario count and order (scenario s means the
same kind of move everywhere), only the sizes of the moves differ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offchain.risk.params import Params

VOL_DIRS = {"up": 1, "flat": 0, "down": -1}
_DIR_NAMES = {1: "vol up", 0: "vol flat", -1: "vol down"}
DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class ScenarioSet:
    """`move[u, s]` relative price move, `vol_dir[s]` in {-1, 0, 1}, `weight[u, s]` the factor the
    loss counts with, `vol_up/vol_down[u]` the shock sizes (relative in matrix mode, absolute
    vol points in span16 mode)."""

    mode: str
    underlyings: tuple[str, ...]
    move: np.ndarray
    vol_dir: np.ndarray
    weight: np.ndarray
    vol_up: np.ndarray
    vol_down: np.ndarray
    # matrix mode: tenor scaling and floors; span16: min_vol only.
    reference_days: float = 30.0
    min_days: float = 1.0
    power_short: float = 0.30
    power_long: float = 0.13
    vol_up_floor: np.ndarray | float = 0.0      # per underlying (matrix mode)
    vol_down_min_factor: float = 0.05
    min_vol: float = 0.0
    kinds: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return self.move.shape[1]

    def tenor_scale(self, tenor_years: np.ndarray) -> np.ndarray:
        """(reference / max(T, min))^p with p = power_short under the reference tenor."""
        days = np.maximum(np.asarray(tenor_years) * DAYS_PER_YEAR, self.min_days)
        power = np.where(days < self.reference_days, self.power_short, self.power_long)
        return (self.reference_days / days) ** power

    def shocked_vols(self, vol: np.ndarray, tenor_years: np.ndarray, u_idx: np.ndarray) -> np.ndarray:
        """(n_instr, n_scen) implied vol of each instrument in each scenario."""
        vol = np.asarray(vol, dtype=np.float64)[:, None]
        d = self.vol_dir[None, :]
        if self.mode == "matrix":
            scale = self.tenor_scale(tenor_years)[:, None]
            floor = np.broadcast_to(np.asarray(self.vol_up_floor, dtype=np.float64),
                                    (len(self.underlyings),))[u_idx][:, None]
            up = np.maximum(vol * (1.0 + self.vol_up[u_idx][:, None] * scale), floor)
            down = vol * np.maximum(1.0 - self.vol_down[u_idx][:, None] * scale,
                                    self.vol_down_min_factor)
        else:
            up = vol + self.vol_up[u_idx][:, None]
            down = np.maximum(vol - self.vol_down[u_idx][:, None], self.min_vol)
        return np.where(d > 0, up, np.where(d < 0, down, vol))

    def describe(self, u: int, s: int) -> dict:
        return {
            "index": int(s),
            "kind": self.kinds[s],
            "price_move": float(self.move[u, s]),
            "vol": _DIR_NAMES[int(self.vol_dir[s])],
            "weight": float(self.weight[u, s]),
            "label": f"{self.kinds[s]}: price {self.move[u, s]:+.1%}, "
                     f"{_DIR_NAMES[int(self.vol_dir[s])]}, weight {self.weight[u, s]:.3g}",
        }


def _matrix(params: Params, names: tuple[str, ...]) -> ScenarioSet:
    m = params.raw["matrix"]
    coeffs = [params.underlying(n) for n in names]
    rng = np.array([c["price_range"] for c in coeffs], dtype=np.float64)
    steps = np.linspace(-1.0, 1.0, int(m["price_steps"]))
    # core grid: each price step with vol up, flat, down
    core_frac = np.repeat(steps, 3)
    core_dir = np.tile([1, 0, -1], len(steps))
    # tail moves per underlying (same count everywhere); each counts tail_weight * R/|move| of
    # its loss (never more than 1): with tail_weight 1 a linear book never binds on a tail, a
    # short-gamma book does when its tail loss grows faster than the move
    tail = np.array([params.coeff(n, "tail_moves", "matrix") for n in names],
                    dtype=np.float64).reshape(len(names), -1)
    tail_weight = np.array([float(params.coeff(n, "tail_weight", "matrix"))
                            if "tail_weight" in m or "tail_weight" in params.underlying(n)
                            else 1.0 for n in names])
    tail_dir = np.full(tail.shape[1], VOL_DIRS[m["tail_vol"]])
    move = np.concatenate([rng[:, None] * core_frac[None, :], tail], axis=1)
    weight = np.concatenate([np.ones((len(names), len(core_frac))),
                             np.minimum(tail_weight[:, None] * rng[:, None] / np.abs(tail), 1.0)],
                            axis=1)
    vs = m["vol_scaling"]
    return ScenarioSet(
        mode="matrix", underlyings=names, move=move,
        vol_dir=np.concatenate([core_dir, tail_dir]).astype(np.int8), weight=weight,
        vol_up=np.array([c["vol_up"] for c in coeffs], dtype=np.float64),
        vol_down=np.array([c["vol_down"] for c in coeffs], dtype=np.float64),
        reference_days=float(vs["reference_days"]), min_days=float(vs["min_days"]),
        power_short=float(vs["power_short"]), power_long=float(vs["power_long"]),
        vol_up_floor=np.array([float(params.coeff(n, "vol_up_floor", "matrix")) for n in names]),
        vol_down_min_factor=float(m["vol_down_min_factor"]),
        kinds=("range",) * len(core_frac) + ("tail",) * tail.shape[1],
    )


# The 14 standard SPAN scenarios (fraction of the price scan range, vol direction), then the
# two extreme moves.
_SPAN_CORE = [(0, 1), (0, -1), (1 / 3, 1), (1 / 3, -1), (-1 / 3, 1), (-1 / 3, -1),
              (2 / 3, 1), (2 / 3, -1), (-2 / 3, 1), (-2 / 3, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)]


def _span16(params: Params, names: tuple[str, ...]) -> ScenarioSet:
    sp = params.raw["span16"]
    coeffs = [params.underlying(n) for n in names]
    psr = np.array([c["price_scan_range"] for c in coeffs], dtype=np.float64)
    vsr = np.array([c["vol_scan_range"] for c in coeffs], dtype=np.float64)
    k = float(sp["extreme_multiple"])
    frac = np.array([f for f, _ in _SPAN_CORE] + [k, -k])
    vol_dir = np.array([d for _, d in _SPAN_CORE] + [0, 0], dtype=np.int8)
    weight = np.ones((len(names), 16))
    weight[:, 14:] = float(sp["extreme_weight"])
    return ScenarioSet(
        mode="span16", underlyings=names, move=psr[:, None] * frac[None, :], vol_dir=vol_dir,
        weight=weight, vol_up=vsr, vol_down=vsr, min_vol=float(sp["min_vol"]),
        kinds=("scan",) * 14 + ("extreme",) * 2,
    )


def build_scenarios(params: Params, underlyings: tuple[str, ...] | list[str]) -> ScenarioSet:
    names = tuple(underlyings)
    return _matrix(params, names) if params.mode == "matrix" else _span16(params, names)

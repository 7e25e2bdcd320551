"""RiskEngine: one epoch's instrument risk arrays and the vectorised account margins over them.

    engine = RiskEngine(params, instruments, market)
    im, mm, binding = engine.margins(positions_csr)      # (n_acc,), (n_acc,), (n_acc, U)
    engine.what_if(book, trade)                          # one account, exact
    offchain.risk.explain.explain(engine, book)          # binding scenario, shares, greeks

Account risk arrays are one sparse (accounts x instruments) @ dense (instruments x blocks)
product: each instrument's row sits in the block of its underlying (S scenario columns, then
its basis and delta-notional columns), so the per-underlying risk units fall out of a reshape.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from offchain.errors import UserError
from offchain.risk.arrays import (
    InstrumentInputs,
    addon_vectors,
    risk_arrays,
    strike_groups,
    unit_greeks,
)
from offchain.risk.instruments import SECONDS_PER_YEAR, Instruments, Market, resolve_market
from offchain.risk.margin import liquidity_shock, worst_loss
from offchain.risk.params import Params
from offchain.risk.pricing import PERPETUAL
from offchain.risk.scenarios import build_scenarios

# Rows per thread chunk: sparse @ dense releases the GIL, so chunks run on both cores.
_CHUNK_ROWS = 25_000
_F32_EPS = float(np.finfo(np.float32).eps)


class MarginResult(NamedTuple):
    im: np.ndarray            # (n_acc,) initial margin, USD
    mm: np.ndarray            # (n_acc,) maintenance margin, USD
    binding_idx: np.ndarray   # (n_acc, U) binding scenario per underlying (engine.underlyings)


class Breakdown(NamedTuple):
    im: np.ndarray
    mm: np.ndarray
    binding_idx: np.ndarray
    worst_loss: np.ndarray          # (n_acc,) scenario part (subadditive, homogeneous)
    unit_loss: np.ndarray           # (n_acc, U) worst loss per underlying
    basis: np.ndarray               # (n_acc,) roll/basis shock (subadditive, homogeneous)
    short_option: np.ndarray        # (n_acc,) short-option minimum (subadditive, homogeneous)
    liquidity: np.ndarray           # (n_acc,) delta-liquidity shock (neither; Lipschitz)
    float_guard: np.ndarray         # (n_acc,) float32 rounding bound added to mm (0 in float64)
    pnl: np.ndarray                 # (n_acc, U, S) account risk arrays


class Rates(NamedTuple):
    """Per contract, USD: margin(book + q) <= margin(book) + |q| * rate (long for q > 0)."""

    im_long: np.ndarray
    im_short: np.ndarray
    mm_long: np.ndarray
    mm_short: np.ndarray


class RiskEngine:
    def __init__(self, params: Params, instruments: Instruments, market: Market,
                 option_vols=None, dtype=np.float32, where: str = "instruments"):
        self.params = params
        self.instruments = instruments
        self.market = market
        self.dtype = np.dtype(dtype)
        r = resolve_market(instruments, market, option_vols, where)
        self._setup(InstrumentInputs(instruments.kind, r.u_idx, r.spot, r.fwd,
                                     instruments.strike, r.tenor, r.vol, r.rate,
                                     instruments.contract_size), r.names)

    @classmethod
    def from_inputs(cls, params: Params, inputs: InstrumentInputs, underlyings: tuple[str, ...],
                    dtype=np.float64) -> RiskEngine:
        """An engine over already-resolved pricing inputs (e.g. one row per day in the
        backtest); valuation_time is 0 and expiries are the tenors in seconds."""
        self = cls.__new__(cls)
        self.params, self.dtype = params, np.dtype(dtype)
        self.instruments = Instruments(
            underlying=tuple(underlyings[i] for i in inputs.u_idx), kind=inputs.kind,
            strike=inputs.strike, expiry=np.where(inputs.kind == PERPETUAL, np.nan, inputs.tenor * SECONDS_PER_YEAR),
            contract_size=inputs.contract_size)
        self.market = Market(0.0, {})
        self._setup(inputs, tuple(underlyings))
        return self

    def _setup(self, inputs: InstrumentInputs, names: tuple[str, ...]) -> None:
        params = self.params
        self.underlyings: tuple[str, ...] = names
        self.inputs = inputs
        self.scenarios = build_scenarios(params, names)
        self.greeks = unit_greeks(self.inputs)
        self.marks: np.ndarray = self.greeks["mark"]
        self.instrument_arrays: np.ndarray = risk_arrays(self.inputs, self.scenarios)
        vec = addon_vectors(self.inputs, self.greeks, params, names)
        self.basis_vec, self.delta_notional, self.short_option_vec = (
            vec["basis"], vec["delta_notional"], vec["short_option"])
        self.liquidity_rate, self.liquidity_threshold = (vec["liquidity_rate"],
                                                         vec["liquidity_threshold"])
        # netted short-option floor: options grouped by strike and expiry, each group's
        # minimum per net short contract, and its underlying as a (groups x U) indicator
        self.netted = params.short_option_netted
        if self.netted:
            g, g_u = strike_groups(self.inputs, np.asarray(self.instruments.strike, float),
                                   np.asarray(self.instruments.expiry, float), len(names))
            rows, cols = g.nonzero()
            self._groups = g.tocsc()
            self.n_groups = g.shape[1]
            self._opt_group = np.full(len(self.instruments), -1, dtype=np.int64)
            self._opt_group[rows] = cols
            self._group_rate = np.zeros(self.n_groups)      # minimum per net short contract
            self._group_rate[cols] = self.short_option_vec[rows] / self.inputs.contract_size[rows]
            self._group_u = g_u
            self._group_to_u = sp.csr_matrix((self._group_rate, (np.arange(self.n_groups), g_u)),
                                             shape=(self.n_groups, len(names)))
        self._block64 = self._block_matrix()
        self._block = self._block64.astype(self.dtype)
        # per-contract magnitudes that bound float32 rounding: scenario P&L, basis, delta notional
        self._rates: Rates | None = None
        # per-contract magnitudes (float32 rounding bound: scenario P&L, basis, liquidity
        # input), then the short-option minimum in its underlying's column (|q| half of the
        # floor's upper bound)
        so_u = np.zeros((len(self.instruments), len(names)))
        so_u[np.arange(len(self.instruments)), self.inputs.u_idx] = self.short_option_vec
        self._abs_exposure = np.column_stack([np.abs(self.instrument_arrays).max(axis=1),
                                              np.abs(self.basis_vec),
                                              np.abs(self.delta_notional)
                                              * self.liquidity_rate[self.inputs.u_idx], so_u])

    # ---- layout -------------------------------------------------------------------------
    @property
    def n_scenarios(self) -> int:
        return self.scenarios.n

    def _block_matrix(self) -> np.ndarray:
        n, s, u = len(self.instruments), self.n_scenarios, len(self.underlyings)
        width = s + 3
        block = np.zeros((n, u * width))
        rows = np.arange(n)
        start = self.inputs.u_idx * width
        cols = start[:, None] + np.arange(s)[None, :]
        block[rows[:, None], cols] = self.instrument_arrays
        block[rows, start + s] = self.basis_vec
        block[rows, start + s + 1] = self.delta_notional
        block[rows, start + s + 2] = self.short_option_vec     # linear half of the bound
        return block

    def _as_csr(self, positions) -> sp.csr_matrix:
        p = positions if sp.issparse(positions) else sp.csr_matrix(np.atleast_2d(positions))
        p = p.tocsr()
        if p.shape[1] != len(self.instruments):
            raise UserError(f"positions: must have {len(self.instruments)} columns (one per "
                            f"instrument), got {p.shape[1]}")
        if not np.all(np.isfinite(p.data)):
            raise UserError("positions: sizes must be finite numbers")
        return p

    # ---- margins ------------------------------------------------------------------------
    def _product(self, p: sp.csr_matrix, block: np.ndarray) -> np.ndarray:
        p = p.astype(block.dtype, copy=False)
        if p.shape[0] <= _CHUNK_ROWS:
            return np.asarray(p @ block)
        bounds = list(range(0, p.shape[0], _CHUNK_ROWS)) + [p.shape[0]]
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = pool.map(lambda ab: np.asarray(p[ab[0]:ab[1]] @ block),
                             zip(bounds[:-1], bounds[1:], strict=True))
            return np.vstack(list(parts))

    def short_option_floor(self, p: sp.csr_matrix) -> np.ndarray | None:
        """(n_acc, U) netted short-option minimum per risk unit (float64), or None when the
        set charges it per short contract instead: net contracts per strike group."""
        if not self.netted:
            return None
        net = p.astype(np.float64) @ self._groups
        net.data = np.maximum(-net.data, 0.0)
        return np.asarray((net @ self._group_to_u).todense())

    def _scenario_loss(self, p: sp.csr_matrix, pnl: np.ndarray, weight: np.ndarray,
                       linear_short: np.ndarray, abs_short: np.ndarray):
        """worst_loss over the accounts' risk arrays, with the netted short-option floor
        evaluated only where its upper bound, the unnetted sum max(-q, 0) * rate * F =
        (sum |q| rate F - sum q rate F) / 2 per underlying, exceeds a risk unit's scenario
        loss (elsewhere it cannot bind): exact, and free on books it does not touch."""
        d = self.params.decorrelation
        total, per_u, binding, scenario, joint = worst_loss(pnl, weight, d)
        if not self.netted or p.nnz == 0:
            return total, per_u, binding, scenario
        # float32 slack on the linear half: 1e-4 relative of |q| * rate * F covers it
        bound = 0.5 * (abs_short - linear_short) + 1e-4 * abs_short
        may_bind = (bound > per_u).any(axis=1)
        if joint is not None:   # the floor also enters the all-underlyings term
            may_bind |= bound.sum(axis=1) > joint
        rows = np.flatnonzero(may_bind)
        if len(rows):
            floor = self.short_option_floor(p[rows])
            t, pu, _, _, _ = worst_loss(pnl[rows], weight, d, floor)
            total = total.astype(np.float64)
            per_u = per_u.astype(np.float64)
            total[rows], per_u[rows] = t, pu
        return total, per_u, binding, scenario

    def per_contract_short_option(self, p: sp.csr_matrix) -> np.ndarray:
        """(n_acc,) the short-option add-on of sets that charge it per short contract."""
        if self.netted:
            return np.zeros(p.shape[0])
        shorts = p.copy()
        shorts.data = np.maximum(-shorts.data, 0.0)
        return np.asarray(shorts @ self.short_option_vec).ravel()

    def breakdown(self, positions, exact: bool = False) -> Breakdown:
        """All margin components for every account (rows of `positions`, sizes in contracts).
        `exact=True` computes in float64 (no rounding guard)."""
        p = self._as_csr(positions)
        block = self._block64 if exact or self.dtype == np.float64 else self._block
        n_acc, u, s = p.shape[0], len(self.underlyings), self.n_scenarios
        out = self._product(p, block).reshape(n_acc, u, s + 3)
        pnl = out[:, :, :s]
        weight = self.scenarios.weight.astype(block.dtype)
        expo = abs(p).astype(np.float64) @ self._abs_exposure if \
            (self.netted or block.dtype == np.float32) else None
        worst, unit_loss, binding, scenario = self._scenario_loss(
            p, pnl, weight, out[:, :, s + 2], None if expo is None else expo[:, 3:])
        scenario = scenario.astype(np.float64)
        basis = np.abs(out[:, :, s]).sum(axis=1)
        liquidity = liquidity_shock(out[:, :, s + 1], self.liquidity_threshold,
                                    self.liquidity_rate).sum(axis=1)
        # the short-option component: per contract, or what the netted floor adds
        short_option = self.per_contract_short_option(p) if not self.netted else \
            np.maximum(worst.astype(np.float64) - scenario, 0.0)
        mm = scenario + basis + liquidity + short_option
        guard = np.zeros(n_acc)
        if block.dtype == np.float32:
            # A float32 dot product of k terms errs by at most k*u*sum|q*a| (u = eps/2), plus
            # one rounding for the size cast and one for the weight: add that bound so a
            # float32 margin is never below the exact one.
            k = np.diff(p.indptr).max(initial=0) + 2
            guard = k * (_F32_EPS / 2) * expo[:, :3].sum(axis=1)
            mm = mm + guard
        return Breakdown(mm / self.params.mm_factor, mm, binding, scenario,
                         unit_loss, basis, short_option, liquidity, guard, pnl)

    def binding_scenarios(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Exact (float64) binding scenarios per account, as column indices of the scenario
        table (`build_scenarios`; ScenarioVerifier.scenario(symbol, s) is column s of the same
        table): (n_acc, U) the column that binds each risk unit (engine.underlyings order),
        and (n_acc,) the column of the decorrelated all-underlyings term, the argmax over s of
        the units' summed weighted losses (every unit takes its own column s: the table has
        the same columns for every underlying, tail moves included). Where the netted
        short-option floor binds a unit, every column gives the same margin for it."""
        b = self.breakdown(positions, exact=True)
        loss = b.pnl * (-self.scenarios.weight)
        return b.binding_idx, loss.sum(axis=1).argmax(axis=1)

    def margins(self, positions) -> MarginResult:
        b = self.breakdown(positions)
        return MarginResult(b.im, b.mm, b.binding_idx)

    def position_values(self, positions) -> np.ndarray:
        """sum(size * mark) per account, USD (float64)."""
        return np.asarray(self._as_csr(positions) @ self.marks).ravel()

    def margin_rates(self) -> Rates:
        """Standalone margin of +1 and -1 contract of each instrument, plus the liquidity
        shock's Lipschitz bound liquidity_rate * |delta notional|, so that for any book and
        trade q: M(book + q) <= M(book) + |q| * rate (the contracts rely on it)."""
        n = len(self.instruments)
        eye = sp.identity(n, format="csr")
        b = self.breakdown(sp.vstack([eye, -eye], format="csr"), exact=True)
        subadditive = b.worst_loss + b.basis + b.short_option
        lip = self.liquidity_rate[self.inputs.u_idx] * np.abs(self.delta_notional)
        mm_long, mm_short = subadditive[:n] + lip, subadditive[n:] + lip
        f = self.params.mm_factor
        self._rates = Rates(mm_long / f, mm_short / f, mm_long, mm_short)
        return self._rates

    def cached_margin_rates(self) -> Rates:
        """margin_rates(), computed once per engine (i.e. per epoch)."""
        return self._rates if self._rates is not None else self.margin_rates()

    # ---- single books -------------------------------------------------------------------
    def book_vector(self, book) -> np.ndarray:
        q = np.asarray(book, dtype=np.float64).ravel()
        if q.shape != (len(self.instruments),):
            raise UserError(f"book: must hold one size per instrument ({len(self.instruments)}), "
                            f"got {q.shape[0]}")
        return q

    def single(self, q: np.ndarray) -> dict:
        """Exact (float64) margin of one dense book without going through the batch path:
        touches only the instruments the book holds (the what-if fast path)."""
        nz = np.flatnonzero(q)
        u, s = len(self.underlyings), self.n_scenarios
        out = (q[nz] @ self._block64[nz]).reshape(1, u, s + 3)
        floor = None
        if self.netted:
            g = self._opt_group[nz]
            opt = g >= 0
            net = np.zeros(self.n_groups)
            np.add.at(net, g[opt], q[nz][opt] * self.inputs.contract_size[nz][opt])
            floor = np.zeros((1, u))
            np.add.at(floor[0], self._group_u, np.maximum(-net, 0.0) * self._group_rate)
        worst, unit_loss, binding, scenario, _ = worst_loss(out[:, :, :s], self.scenarios.weight,
                                                         self.params.decorrelation, floor)
        basis = float(np.abs(out[0, :, s]).sum())
        liquidity = float(liquidity_shock(out[0, :, s + 1], self.liquidity_threshold,
                                          self.liquidity_rate).sum())
        short_option = float(max(worst[0] - scenario[0], 0.0)) if self.netted else \
            float(np.maximum(-q[nz], 0.0) @ self.short_option_vec[nz])
        mm = float(scenario[0]) + basis + liquidity + short_option
        return {
            "initial_margin": mm / self.params.mm_factor, "maintenance_margin": mm,
            "worst_loss": float(scenario[0]), "basis_shock": basis,
            "short_option_minimum": short_option, "liquidity_shock": liquidity,
            "unit_loss": unit_loss[0], "binding": binding[0], "pnl": out[0, :, :s],
        }

    def what_if(self, book, trade) -> dict:
        """Margin before and after adding `trade` (both dense size vectors), and the bound the
        contracts apply until the next account leaf, in one call."""
        q, t = self.book_vector(book), self.book_vector(trade)
        before, after = self.single(q), self.single(q + t)
        rates = self.cached_margin_rates()
        bound = before["maintenance_margin"] + float(
            np.where(t > 0, rates.mm_long, rates.mm_short) @ np.abs(t))
        return {
            "initial_margin_before": before["initial_margin"],
            "maintenance_margin_before": before["maintenance_margin"],
            "initial_margin_after": after["initial_margin"],
            "maintenance_margin_after": after["maintenance_margin"],
            "initial_margin_change": after["initial_margin"] - before["initial_margin"],
            "maintenance_margin_bound": bound,   # what the contracts assume until the next leaf
            "binding_after": [int(b) for b in after["binding"]],
        }

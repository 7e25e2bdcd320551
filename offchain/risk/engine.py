"""RiskEngine: one epoch's instrument risk arrays and the vectorised account margins over them.

    engine = RiskEngine(params, instruments, market)
    im, mm, binding = engine.margins(positions_csr)      # (n_acc,), (n_acc,), (n_acc, U)

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
from offchain.risk.arrays import InstrumentInputs, addon_vectors, risk_arrays, unit_greeks
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
        vec = addon_vectors(self.inputs, self.greeks, params.addons)
        self.basis_vec, self.delta_notional, self.short_option_vec = (
            vec["basis"], vec["delta_notional"], vec["short_option"])
        self._block64 = self._block_matrix()
        self._block = self._block64.astype(self.dtype)
        # per-contract magnitudes that bound float32 rounding: scenario P&L, basis, delta notional
        self._rates: Rates | None = None
        self._abs_exposure = np.stack([np.abs(self.instrument_arrays).max(axis=1),
                                       np.abs(self.basis_vec), np.abs(self.delta_notional)], axis=1)

    # ---- layout -------------------------------------------------------------------------
    @property
    def n_scenarios(self) -> int:
        return self.scenarios.n

    def _block_matrix(self) -> np.ndarray:
        n, s, u = len(self.instruments), self.n_scenarios, len(self.underlyings)
        width = s + 2
        block = np.zeros((n, u * width))
        rows = np.arange(n)
        start = self.inputs.u_idx * width
        cols = start[:, None] + np.arange(s)[None, :]
        block[rows[:, None], cols] = self.instrument_arrays
        block[rows, start + s] = self.basis_vec
        block[rows, start + s + 1] = self.delta_notional
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

    def breakdown(self, positions, exact: bool = False) -> Breakdown:
        """All margin components for every account (rows of `positions`, sizes in contracts).
        `exact=True` computes in float64 (no rounding guard)."""
        p = self._as_csr(positions)
        block = self._block64 if exact or self.dtype == np.float64 else self._block
        n_acc, u, s = p.shape[0], len(self.underlyings), self.n_scenarios
        out = self._product(p, block).reshape(n_acc, u, s + 2)
        pnl = out[:, :, :s]
        weight = self.scenarios.weight.astype(block.dtype)
        worst, unit_loss, binding = worst_loss(pnl, weight, self.params.decorrelation)
        a = self.params.addons
        basis = np.abs(out[:, :, s]).sum(axis=1)
        liquidity = liquidity_shock(out[:, :, s + 1], float(a["liquidity_notional_threshold"]),
                                    float(a["liquidity_rate"])).sum(axis=1)
        shorts = p.copy()
        shorts.data = np.maximum(-shorts.data, 0.0)
        short_option = shorts @ self.short_option_vec
        mm = worst.astype(np.float64) + basis + liquidity + short_option
        guard = np.zeros(n_acc)
        if block.dtype == np.float32:
            # A float32 dot product of k terms errs by at most k*u*sum|q*a| (u = eps/2), plus
            # one rounding for the size cast and one for the weight: add that bound so a
            # float32 margin is never below the exact one.
            k = np.diff(p.indptr).max(initial=0) + 2
            expo = abs(p).astype(np.float64) @ self._abs_exposure
            guard = k * (_F32_EPS / 2) * (expo[:, 0] + expo[:, 1]
                                          + float(a["liquidity_rate"]) * expo[:, 2])
            mm = mm + guard
        return Breakdown(mm / self.params.mm_factor, mm, binding, worst.astype(np.float64),
                         unit_loss, basis, short_option, liquidity, guard, pnl)

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
        lip = float(self.params.addons["liquidity_rate"]) * np.abs(self.delta_notional)
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

    def what_if(self, book, trade) -> dict:
        """Margin before and after adding `trade` (both dense size vectors), in one call."""
        from offchain.risk.explain import what_if
        return what_if(self, self.book_vector(book), self.book_vector(trade))

    def explain(self, book, trade=None) -> dict:
        """Binding scenario, position shares, greeks, isolated/cross margin (+ what-if)."""
        from offchain.risk.explain import explain
        q = self.book_vector(book)
        return explain(self, q, None if trade is None else self.book_vector(trade))

"""Exact margins for what goes on chain: attested IM/MM and the per-contract rates, in WAD
integers, from sizes in WAD integers.

The contracts rely on MM(book + q) <= MM(book) + |q| * rate(side) between attestations. Floats
cannot promise that exactly (a float32 or float64 sum of the same terms in another batch or
another order rounds differently), so everything the keeper signs is computed here once more in
integer arithmetic: the epoch's per-contract vectors are quantised once to integers (risk arrays
and the liquidity input to 2^-40 USD, basis and short-option vectors to 2^-80 USD, weights,
contract sizes and the decorrelation to 2^-40), sizes are the chain's own WAD integers,
and every sum, max and |.| is exact. The integer function is then exactly subadditive and
positively homogeneous (maxima and absolute values of exact linear forms), the liquidity shock
exactly rate-Lipschitz, and the final rounding up to WAD (ceil) keeps both: the rates published
are ceil(margin of one contract) and the bound holds with no tolerance, whatever the batch.
Margins differ from the float engine's by about 1e-12 of the per-contract values."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from offchain.risk.engine import RiskEngine

WAD = 10**18
S_BITS, W_BITS, D_BITS = 40, 40, 40
_K = S_BITS + W_BITS + D_BITS          # total binary scale of a margin (times WAD)


def _ints(a: np.ndarray, bits: int) -> np.ndarray:
    """Round to the nearest multiple of 2^-bits, as Python ints (object array)."""
    a = np.asarray(a, dtype=np.float64)
    return np.array([int(v) for v in np.rint(np.ldexp(a, bits)).ravel()],
                    dtype=object).reshape(a.shape)


def _ceil_shift(x: int, bits: int) -> int:
    return -((-x) >> bits)


class ExactMargins:
    """Integer margins over one engine (one epoch): `margins_wad(books)` and `rates_wad()`."""

    def __init__(self, engine: RiskEngine):
        self.engine = engine
        u, s = len(engine.underlyings), engine.n_scenarios
        self.u, self.s = u, s
        n = len(engine.instruments)
        self.u_idx = np.asarray(engine.inputs.u_idx)
        self.pnl = _ints(engine.instrument_arrays, S_BITS)                  # (n, S)
        self.weight = _ints(engine.scenarios.weight, W_BITS)                # (U, S)
        self.basis = _ints(engine.basis_vec, S_BITS + W_BITS)               # (n,)
        self.dnot = _ints(engine.delta_notional, S_BITS)                    # (n,)
        self.liq_rate = _ints(engine.liquidity_rate, W_BITS + D_BITS)       # (U,)
        self.liq_thr = [int(Fraction(float(t)) * WAD * 2**S_BITS)          # (U,) exact
                        for t in engine.liquidity_threshold]
        d = Fraction(engine.params.decorrelation)
        self.d = int(d * 2**D_BITS) if d.denominator <= 2**D_BITS else round(d * 2**D_BITS)
        self.f = Fraction(str(engine.params.mm_factor))                    # IM = MM / f
        self.netted = engine.netted
        if self.netted:
            g = engine._groups.tocsr()
            self.group_of = {}
            self.group_cs = {}
            rows, cols = g.nonzero()
            for r, c in zip(rows, cols, strict=True):
                self.group_of[int(r)] = int(c)
                self.group_cs[int(r)] = int(np.rint(np.ldexp(g[r, c], W_BITS)))
            gu = engine._group_to_u.tocsr()
            self.group_rate = _ints(np.asarray(gu.sum(axis=1)).ravel(), S_BITS)  # rate * F
            self.group_u = np.asarray(gu.argmax(axis=1)).ravel() if gu.shape[0] else \
                np.zeros(0, dtype=np.intp)
        else:
            self.short = _ints(engine.short_option_vec, S_BITS + W_BITS)
        # per instrument: scenario P&L (2^-40), basis (2^-80), delta notional (2^-40)
        self.table = np.concatenate([self.pnl, self.basis[:, None], self.dnot[:, None]], axis=1)
        self._rates: tuple[list[int], ...] | None = None
        assert n == len(self.basis)

    # ---- one book -----------------------------------------------------------------------
    def _mm_scaled(self, book: dict[int, int]) -> tuple[int, int]:
        """(MM, liquidity-free MM) of one book {instrument index: size in WAD}, in units of
        2^-_K WAD."""
        items = [(i, q) for i, q in book.items() if q]
        unit = [0] * self.u
        joint_s = None
        floor = [0] * self.u
        addons = 0
        liquidity = 0
        for u in range(self.u):
            legs = [(i, q) for i, q in items if self.u_idx[i] == u]
            if not legs:
                continue
            rows = [i for i, _ in legs]
            q = np.array([v for _, v in legs], dtype=object)
            vec = q @ self.table[rows]              # exact: object dot of Python ints
            loss = -self.weight[u] * vec[:self.s]
            unit[u] = max(0, max(loss))
            joint_s = loss if joint_s is None else joint_s + loss
            addons += abs(vec[self.s])
            liquidity += self.liq_rate[u] * max(abs(vec[self.s + 1]) - self.liq_thr[u], 0)
            if self.netted:
                net: dict[int, int] = {}
                for i, v in legs:
                    g = self.group_of.get(i)
                    if g is not None:
                        net[g] = net.get(g, 0) + v * self.group_cs[i]
                floor[u] = sum(max(-v, 0) * self.group_rate[g] for g, v in net.items())
            else:
                addons += sum(max(-v, 0) * self.short[i] for i, v in legs)
        if joint_s is None:
            joint_s = [0]
        one = 2**D_BITS
        per_u = [max(unit[u], floor[u]) for u in range(self.u)]
        total = one * sum(per_u)
        if self.d < one:
            joint = max(0, max(joint_s), sum(floor))
            total = self.d * sum(per_u) + (one - self.d) * joint
        sub = total + one * addons
        return sub + liquidity, sub

    def margins_wad(self, books: list[dict[int, int]]) -> tuple[list[int], list[int]]:
        """(IM, MM) in WAD, rounded up, for books {instrument index: size in WAD}."""
        im, mm = [], []
        for book in books:
            m, _ = self._mm_scaled(book)
            mm.append(_ceil_shift(m, _K))
            scaled = m * self.f.denominator
            im.append(-((-scaled) // (self.f.numerator * 2**_K)))
        return im, mm

    def rates_wad(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(im_long, im_short, mm_long, mm_short) per contract in WAD, rounded up: the exact
        margin of +1 and -1 contract (subadditive part) plus the liquidity shock's Lipschitz
        term liquidity_rate * |delta notional|, so that for any book and trade q (WAD)
        margin(book + q) <= margin(book) + ceil(|q| * rate / WAD), exactly."""
        if self._rates is not None:
            return self._rates
        out = ([], [], [], [])
        for i in range(len(self.basis)):
            lip = self.liq_rate[self.u_idx[i]] * abs(self.dnot[i]) * WAD
            for side, (k_im, k_mm) in ((1, (0, 2)), (-1, (1, 3))):
                _, sub = self._mm_scaled({i: side * WAD})
                m = sub + lip
                out[k_mm].append(_ceil_shift(m, _K))
                scaled = m * self.f.denominator
                out[k_im].append(-((-scaled) // (self.f.numerator * 2**_K)))
        self._rates = out
        return out

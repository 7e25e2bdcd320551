"""An epoch's account leaves from public inputs only: the market leaves (each instrument's
model inputs as the root publishes them), the root's timestamp, the params file named by the
root's `params_hash`, and every account's book and `pending_total` word at the state block.

    market = MarketInputs.from_leaves(params, market_leaves, timestamp)
    leaves = epoch_account_leaves(market, addresses, state_nonces, books_wad, pending_totals)

Whoever calls this with the same inputs gets the same leaves, integer for integer: the keeper
that signs a root and anyone who rebuilds it (offchain/chain/rebuild.py). That is why the risk
engine is built from the leaves' WAD figures and not from the keeper's own floats: the market
leaf is the only record of the inputs a third party has, so it must be the input.

Margins are offchain.risk.exact.ExactMargins (integer IM/MM of the chain's WAD sizes) over an
engine priced with the leaves' spot, forward, vol and rate; values are exact integers,
floor(sum(size_wad * mark_wad) / WAD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from offchain.chain.eip712 import bytes32_to_symbol
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.wad import Rounding, to_wad
from offchain.errors import UserError
from offchain.keeper.roots import account_leaves
from offchain.risk import Params, RiskEngine
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.exact import ExactMargins
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import CALL, PERPETUAL, PUT

WAD = 10**18


@dataclass
class MarketInputs:
    """The risk engine of one epoch and what the leaves need besides margins."""

    timestamp: int
    engine: RiskEngine | None        # over the live instruments (None if none is live)
    exact: ExactMargins | None
    column: dict[int, int]           # instrument id -> engine column (live instruments only)
    marks_wad: dict[int, int]        # instrument id -> mark of one contract (every leaf)

    @classmethod
    def from_leaves(cls, params: Params, leaves: Sequence[MarketLeaf], timestamp: int) -> MarketInputs:
        """An engine over the leaves whose instrument is live at `timestamp` (perpetuals and
        anything expiring after it), in instrument-id order; risk units are the underlyings
        in order of first appearance, which is the order `worst_scenarios` packs them in."""
        leaves = sorted(leaves, key=lambda m: m.instrument_id)
        ids = [m.instrument_id for m in leaves]
        if len(set(ids)) != len(ids):
            raise UserError(f"market leaves: an instrument has two leaves (ids {ids})")
        marks = {m.instrument_id: m.mark_wad for m in leaves}
        live = [m for m in leaves if m.kind == PERPETUAL or m.expiry > timestamp]
        if not live:
            return cls(timestamp, None, None, {}, marks)
        names = tuple(dict.fromkeys(bytes32_to_symbol(m.underlying) for m in live))

        def col(f):
            return np.asarray([float(f(m)) for m in live], dtype=np.float64)

        kind = np.asarray([m.kind for m in live], dtype=np.int8)
        is_opt = (kind == CALL) | (kind == PUT)
        spot = col(lambda m: m.spot_wad / WAD)
        tenor = np.where(kind == PERPETUAL, 0.0,
                         col(lambda m: (m.expiry - timestamp) / SECONDS_PER_YEAR))
        inputs = InstrumentInputs(
            kind=kind,
            u_idx=np.asarray([names.index(bytes32_to_symbol(m.underlying)) for m in live], dtype=np.intp),
            spot=spot,
            # a perpetual is marked at spot whatever its leaf's forward says (as on chain)
            fwd=np.where(kind == PERPETUAL, spot, col(lambda m: m.forward_wad / WAD)),
            strike=np.where(is_opt, col(lambda m: m.strike_wad / WAD), math.nan),
            tenor=tenor,
            vol=np.where(is_opt, col(lambda m: m.vol_wad / WAD), 0.0),
            rate=col(lambda m: m.rate_wad / WAD),
            contract_size=col(lambda m: m.contract_size_wad / WAD))
        bad = [m.instrument_id for m, s, f in zip(live, spot, inputs.fwd, strict=True) if not (s > 0 and f > 0)]
        if bad:
            raise UserError(f"market leaves: instruments {bad} have a zero spot or forward; "
                            "a live instrument needs both to be priced")
        engine = RiskEngine.from_inputs(params, inputs, names)
        return cls(timestamp, engine, ExactMargins(engine),
                   {m.instrument_id: k for k, m in enumerate(live)}, marks)

    def margins_wad(self, books_wad: Sequence[dict[int, int]]) -> tuple[list[int], list[int]]:
        """(IM, MM) in WAD of books {instrument id: size WAD}; positions in instruments that
        are not live (expired) carry no risk, as in the keeper."""
        if self.exact is None:
            return [0] * len(books_wad), [0] * len(books_wad)
        books = [{self.column[i]: q for i, q in b.items() if i in self.column} for b in books_wad]
        return self.exact.margins_wad(books)

    def values_wad(self, books_wad: Sequence[dict[int, int]]) -> list[int]:
        """floor(sum(size_wad * mark_wad) / WAD) per book over its positions that have a
        market leaf, in exact integers (one flat pass over every position, summed per book)."""
        priced = [[(q, self.marks_wad[i]) for i, q in b.items() if i in self.marks_wad] for b in books_wad]
        counts = np.fromiter((len(b) for b in priced), dtype=np.int64, count=len(priced))
        n = int(counts.sum())
        sizes = np.fromiter((q for b in priced for q, _m in b), dtype=object, count=n)
        marks = np.fromiter((m for b in priced for _q, m in b), dtype=object, count=n)
        totals = np.zeros(len(priced), dtype=object)
        held = counts > 0
        if held.any():
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[held]
            totals[held] = np.add.reduceat(sizes * marks, starts)
        return [int(t) // WAD for t in totals]

    def leaf_outputs(self) -> dict[int, dict[str, int]]:
        """What each live instrument's leaf must say its mark and per-unit rates are, given
        its inputs: {instrument id: {mark_wad, im_long_wad, im_short_wad, mm_long_wad,
        mm_short_wad}} (mark rounded to the nearest WAD, rates from ExactMargins)."""
        if self.exact is None:
            return {}
        rates = self.exact.rates_wad()
        return {i: {"mark_wad": to_wad(float(self.engine.marks[c]), Rounding.NEAREST, field="mark"),
                    "im_long_wad": rates[0][c], "im_short_wad": rates[1][c],
                    "mm_long_wad": rates[2][c], "mm_short_wad": rates[3][c]}
                for i, c in self.column.items()}


def epoch_account_leaves(market: MarketInputs, addresses: Sequence[str], state_nonces: Sequence[int],
                         books_wad: Sequence[dict[int, int]], pending_totals: Sequence[int]) -> list[AccountLeaf]:
    """One leaf per account; `books_wad[k]` maps instrument id -> size in WAD (the engine's
    `account(a).positions`), `pending_totals[k]` is `pending_total(a)`, both read at the
    state block."""
    im, mm = market.margins_wad(books_wad)
    return account_leaves(list(addresses), state_nonces, list(books_wad), im, mm,
                          market.values_wad(books_wad), pending_totals)

"""An epoch's account leaves from public inputs only: the market leaves (each instrument's
model inputs as the root publishes them), the root's timestamp, the params file named by the
root's `params_hash`, and every account's book and `pending_total` word at the state block.

    market = MarketInputs.from_leaves(params, market_leaves, timestamp)
    leaves = epoch_account_leaves(market, addresses, state_nonces, books_wad, pending_totals)

The keeper makes its market leaves from its prices (`market_input_leaves`: inputs rounded to
WAD), then fills their outputs from this same engine (`finish_market_leaves`).

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
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sha3 import keccak_256

from offchain.chain.eip712 import bytes32_to_symbol, symbol_to_bytes32
from offchain.chain.leaves import JOINT_SLOT, SCENARIO_BITS, AccountLeaf, MarketLeaf
from offchain.chain.wad import Rounding, to_wad
from offchain.errors import UserError
from offchain.keeper.roots import account_leaves
from offchain.risk import Params, RiskEngine
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.exact import ExactMargins, margins_wad_csr
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
    # live futures and perpetuals -> their mark from the leaf's integers (forward, or spot for
    # a perpetual, times the contract size, nearest WAD): exact, where a float loses digits
    linear_marks_wad: dict[int, int] = field(default_factory=dict)

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
        linear = {m.instrument_id: ((m.spot_wad if m.kind == PERPETUAL else m.forward_wad) * m.contract_size_wad
                                    + WAD // 2) // WAD
                  for m in live if m.kind not in (CALL, PUT)}
        return cls(timestamp, engine, ExactMargins(engine),
                   {m.instrument_id: k for k, m in enumerate(live)}, marks, linear)

    def margins_wad(self, books_wad: Sequence[dict[int, int]]) -> tuple[list[int], list[int]]:
        """(IM, MM) in WAD of books {instrument id: size WAD}; positions in instruments that
        are not live (expired) carry no risk, as in the keeper. Every book at once
        (`margins_wad_csr`, equal to ExactMargins.margins_wad book by book)."""
        if self.exact is None:
            return [0] * len(books_wad), [0] * len(books_wad)
        column = self.column
        indptr, cols, sizes = [0], [], []
        for b in books_wad:
            for i, q in b.items():
                c = column.get(i)
                if c is not None and q:
                    cols.append(c)
                    sizes.append(q)
            indptr.append(len(cols))
        im, mm = margins_wad_csr(self.exact, indptr, cols, sizes)
        return [int(v) for v in im], [int(v) for v in mm]

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

    def leaf_details(self, books_wad: Sequence[dict[int, int]]) -> dict[str, list[int]]:
        """The leaf's breakdown of MM, as FraudProofs re-prices it: the scenario part
        (`worst_loss_wad`), the binding scenario of each of the book's risk units and the joint
        one (`worst_scenarios`, leaves.pack_scenarios layout: units by bytes32 symbol), and the
        add-ons, from the float64 engine (WAD, rounded up; rounding guard 0). MM and IM stay
        ExactMargins' integers; the two agree to ~1e-12 of the per-contract values. ~0.1 s per
        10,000 accounts."""
        n = len(books_wad)
        zeros = [0] * n
        names = ("worst_loss_wad", "worst_scenarios", "basis_addon_wad", "short_option_addon_wad",
                 "liquidity_addon_wad", "rounding_guard_wad")
        if self.engine is None or n == 0:
            return {k: list(zeros) for k in names}
        rows = [k for k, b in enumerate(books_wad) for i in b if i in self.column]
        cols = [self.column[i] for b in books_wad for i in b if i in self.column]
        vals = [q / WAD for b in books_wad for i, q in b.items() if i in self.column]
        p = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(self.column)))
        eng = self.engine
        b = eng.breakdown(p, exact=True)
        n_u = len(eng.underlyings)
        unit_of = sp.csr_matrix((np.ones(len(self.column)), (np.arange(len(self.column)), eng.inputs.u_idx)),
                                shape=(len(self.column), n_u))
        held = np.asarray((abs(p) @ unit_of).todense()) > 0                 # (n, U)
        order = sorted(range(n_u), key=lambda u: symbol_to_bytes32(eng.underlyings[u]))
        slot = np.cumsum(held[:, order], axis=1) - 1                        # (n, U) in symbol order
        lo = np.zeros(n, dtype=np.uint64)                                   # slots 0-3
        hi = np.zeros(n, dtype=np.uint64)                                   # slots 4-7
        for j, u in enumerate(order):
            k = slot[:, j].astype(np.uint64)
            v = np.where(held[:, u], b.binding_idx[:, u], 0).astype(np.uint64)
            lo |= np.where(held[:, u] & (k < 4), v << (np.uint64(SCENARIO_BITS) * (k % np.uint64(4))), np.uint64(0))
            hi |= np.where(held[:, u] & (k >= 4), v << (np.uint64(SCENARIO_BITS) * (k % np.uint64(4))), np.uint64(0))
        joint = np.zeros(n, dtype=np.int64)
        if eng.params.decorrelation < 1.0:
            joint = (-b.pnl * eng.scenarios.weight[None, :, :]).sum(axis=1).argmax(axis=1)
        packed = (lo.astype(object) + (hi.astype(object) << 64)
                  + (joint.astype(object) << (SCENARIO_BITS * JOINT_SLOT)))

        def up(a):
            # WAD, rounded up at float resolution (1e-16 relative: far inside the tolerance
            # FraudProofs allows); vectorised, the keeper builds 10,000 leaves per epoch
            return [int(x) for x in np.ceil(np.maximum(np.asarray(a, dtype=np.float64), 0.0) * 1e18)]

        return {"worst_loss_wad": up(b.worst_loss), "worst_scenarios": [int(x) for x in packed],
                "basis_addon_wad": up(b.basis), "short_option_addon_wad": up(b.short_option),
                "liquidity_addon_wad": up(b.liquidity), "rounding_guard_wad": list(zeros)}

    def leaf_outputs(self) -> dict[int, dict[str, int]]:
        """What each live instrument's leaf must say its mark and per-unit rates are, given
        its inputs: {instrument id: {mark_wad, im_long_wad, im_short_wad, mm_long_wad,
        mm_short_wad}} (mark rounded to the nearest WAD: a future's or perpetual's from its
        integers, an option's from the model; rates from ExactMargins)."""
        if self.exact is None:
            return {}
        rates = self.exact.rates_wad()
        linear = self.linear_marks_wad
        return {i: {"mark_wad": linear[i] if i in linear else to_wad(float(self.engine.marks[c]), Rounding.NEAREST,
                                                                      field="mark"),
                    "im_long_wad": rates[0][c], "im_short_wad": rates[1][c],
                    "mm_long_wad": rates[2][c], "mm_short_wad": rates[3][c]}
                for i, c in self.column.items()}


def epoch_account_leaves(market: MarketInputs, addresses: Sequence[str], state_nonces: Sequence[int],
                         books_wad: Sequence[dict[int, int]], pending_totals: Sequence[int],
                         positions_hashes: Sequence[bytes] | None = None) -> list[AccountLeaf]:
    """One leaf per account; `books_wad[k]` maps instrument id -> size in WAD (the engine's
    `account(a).positions`), `pending_totals[k]` is `pending_total(a)`, both read at the
    state block; `positions_hashes[k]` its positions hash when already known (the keeper
    caches them: books rarely change between epochs)."""
    im, mm = market.margins_wad(books_wad)
    return account_leaves(list(addresses), state_nonces, list(books_wad), im, mm,
                          market.values_wad(books_wad), pending_totals, market.leaf_details(books_wad),
                          positions_hashes=positions_hashes)


# ---- the keeper's side: market leaves from its prices ------------------------------------

def market_input_leaves(table, underlyings: Sequence[str], live: np.ndarray, inputs: InstrumentInputs,
                        contract_size_wad: int = WAD, linear_marks_wad: dict[int, int] | None = None) -> list[MarketLeaf]:
    """Market leaves (inputs only; mark and rates 0) of the `live` instruments of `table`
    (offchain.chain.contracts.InstrumentTable; `underlyings` names its underlying indices),
    `inputs` the keeper's resolved pricing inputs of those rows in table order
    (RiskEngine.inputs); strikes are the registry's exact integers when the table has them.
    `linear_marks_wad` {id: WAD}: futures and perpetuals priced at these exact marks (a
    perpetual's spot, a future's forward), so their leaves carry them to the wei (a keeper
    that reads the oracle's marks instead of posting its own)."""
    out = []
    linear = linear_marks_wad or {}
    for k, j in enumerate(np.flatnonzero(live)):
        kind = int(table.kind[j])
        iid = int(table.ids[j])
        strike = 0
        if kind in (CALL, PUT):
            strike = table.strike_wad[j] if table.strike_wad else to_wad(float(table.strike[j]), Rounding.NEAREST)
        spot_wad = to_wad(float(inputs.spot[k]), Rounding.NEAREST, field="spot")
        forward_wad = to_wad(float(inputs.fwd[k]), Rounding.NEAREST, field="forward")
        if kind not in (CALL, PUT) and linear.get(iid, 0) > 0 and contract_size_wad == WAD:
            forward_wad = linear[iid]
            if kind == PERPETUAL:
                spot_wad = forward_wad
        out.append(MarketLeaf(
            instrument_id=iid, kind=kind,
            underlying=symbol_to_bytes32(underlyings[int(table.underlying_index[j])]),
            strike_wad=int(strike), expiry=0 if kind == PERPETUAL else int(table.expiry[j]),
            contract_size_wad=contract_size_wad,
            spot_wad=spot_wad, forward_wad=forward_wad,
            vol_wad=to_wad(float(inputs.vol[k]), Rounding.NEAREST, field="vol"),
            rate_wad=to_wad(float(inputs.rate[k]), Rounding.NEAREST, field="rate"),
            mark_wad=0, im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    return out


def finish_market_leaves(params: Params, input_leaves: Sequence[MarketLeaf],
                         timestamp: int) -> tuple[list[MarketLeaf], MarketInputs]:
    """The leaves (ascending id) with their outputs: the epoch engine's mark (nearest WAD)
    and exact per-unit rates, and that engine: what the keeper signs is what a rebuild gets."""
    market = MarketInputs.from_leaves(params, input_leaves, timestamp)
    outputs = market.leaf_outputs()
    leaves = [MarketLeaf(**{**m.as_dict(), "underlying": m.underlying, **outputs.get(m.instrument_id, {})})
              for m in sorted(input_leaves, key=lambda m: m.instrument_id)]
    market.marks_wad = {m.instrument_id: m.mark_wad for m in leaves}
    return leaves, market


def market_leaves_of(logged) -> list[MarketLeaf]:
    """The market leaves of an `EpochDataPublished` log's `market_leaves`: packed leaves
    (dicts as web3 decodes them, or tuples of the seven words), decoded and checked."""
    return [MarketLeaf.from_words([leaf[k] for k in MarketLeaf.PACKED_NAMES] if hasattr(leaf, "keys") else list(leaf))
            for leaf in logged]


def _u(x: int) -> bytes:
    return int(x).to_bytes(32, "big")


def positions_hash_fast(book: dict[int, int]) -> bytes:
    """leaves.positions_hash of {instrument id: size WAD} (non-zero sizes), encoded by hand
    (eth_abi costs ~50 us a book; equal, tested)."""
    items = sorted((i, s) for i, s in book.items() if s)
    n = len(items)
    body = [_u(64), _u(96 + 32 * n), _u(n)]
    body += [_u(i) for i, _ in items]
    body.append(_u(n))
    body += [int(s).to_bytes(32, "big", signed=True) for _, s in items]
    return keccak_256(b"".join(body)).digest()

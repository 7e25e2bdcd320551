"""An epoch's leaves from public data: the one definition the keeper builds its leaves with
and anyone rebuilds them with (docs/oracle.md, "Data availability").

    leaves = market_input_leaves(table, underlyings, live, engine.inputs)  # keeper: its prices
    market, epoch = finish_market_leaves(params, leaves, timestamp)       # marks and rates
    accounts = account_leaves_at(epoch, market, addresses, nonces, books, pending_totals)

The risk engine of an epoch is built from the market leaves alone (`epoch_engine`): floats are
`x_wad / 10**18`, tenors `(expiry - timestamp) / SECONDS_PER_YEAR`, units in order of first
appearance by ascending instrument id. The keeper prices with that engine too, so what it signs
and what a third party rebuilds from the logged leaves are the same integers by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sha3 import keccak_256

from offchain.chain.eip712 import bytes32_to_symbol, symbol_to_bytes32
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.wad import Rounding, to_wad
from offchain.risk import Params, RiskEngine
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.exact import ExactMargins, margins_wad_csr
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import CALL, PERPETUAL, PUT

WAD = 10**18
M96 = 2**96 - 1


@dataclass
class EpochEngine:
    """The risk engine of one epoch (from its market leaves) and its exact margins."""

    leaves: list[MarketLeaf]      # ascending instrument id
    units: tuple[str, ...]
    engine: RiskEngine
    exact: ExactMargins
    column: dict[int, int]        # instrument id -> engine row

    def marks_wad(self) -> list[int]:
        return [to_wad(float(m), Rounding.NEAREST, field="mark") for m in self.engine.marks]


def epoch_engine(params: Params, market_leaves: Sequence[MarketLeaf], timestamp: int,
                 dtype=np.float64) -> EpochEngine:
    """The engine on the leaves' inputs only (see the module docstring). `dtype` changes only
    the float screening (`engine.margins`), never the exact margins."""
    leaves = sorted(market_leaves, key=lambda m: m.instrument_id)
    units: list[str] = []
    for m in leaves:
        name = bytes32_to_symbol(m.underlying)
        if name not in units:
            units.append(name)
    kind = np.asarray([m.kind for m in leaves], dtype=np.int64)
    is_opt = (kind == CALL) | (kind == PUT)

    def col(name):
        return np.asarray([getattr(m, name) / WAD for m in leaves], dtype=np.float64)

    tenor = np.asarray([0.0 if m.kind == PERPETUAL else (m.expiry - timestamp) / SECONDS_PER_YEAR
                        for m in leaves], dtype=np.float64)
    inputs = InstrumentInputs(
        kind=kind, u_idx=np.asarray([units.index(bytes32_to_symbol(m.underlying)) for m in leaves], dtype=np.int64),
        spot=col("spot_wad"), fwd=col("forward_wad"), strike=np.where(is_opt, col("strike_wad"), math.nan),
        tenor=tenor, vol=col("vol_wad"), rate=col("rate_wad"), contract_size=col("contract_size_wad"))
    engine = RiskEngine.from_inputs(params, inputs, tuple(units), dtype=dtype)
    return EpochEngine(leaves, tuple(units), engine, ExactMargins(engine),
                       {m.instrument_id: k for k, m in enumerate(leaves)})


def market_leaves_of(logged) -> list[MarketLeaf]:
    """The market leaves of an `EpochDataPublished` log's `market_leaves` (dicts as web3
    decodes them, or tuples in field order)."""
    out = []
    for leaf in logged:
        d = dict(leaf) if hasattr(leaf, "keys") else dict(zip([n for n, _ in MarketLeaf.FIELDS], leaf, strict=True))
        out.append(MarketLeaf.from_dict({k: bytes(v) if isinstance(v, bytes | bytearray) else v for k, v in d.items()}))
    return out


def market_input_leaves(table, underlyings: Sequence[str], live: np.ndarray, inputs: InstrumentInputs,
                        contract_size_wad: int = WAD) -> list[MarketLeaf]:
    """Market leaves (inputs only; mark and rates 0) of the `live` instruments of `table`
    (offchain.chain.contracts.InstrumentTable; `underlyings` names its underlying indices),
    `inputs` the keeper's resolved pricing inputs of those rows in table order
    (RiskEngine.inputs)."""
    out = []
    rows = np.flatnonzero(live)
    for k, j in enumerate(rows):
        kind = int(table.kind[j])
        opt = kind in (CALL, PUT)
        strike = 0
        if opt:
            strike = table.strike_wad[j] if table.strike_wad else to_wad(float(table.strike[j]), Rounding.NEAREST)
        u = int(table.underlying_index[j])
        out.append(MarketLeaf(
            instrument_id=int(table.ids[j]), kind=kind, underlying=symbol_to_bytes32(underlyings[u]),
            strike_wad=int(strike), expiry=0 if kind == PERPETUAL else int(table.expiry[j]),
            contract_size_wad=contract_size_wad,
            spot_wad=to_wad(float(inputs.spot[k]), Rounding.NEAREST, field="spot"),
            forward_wad=to_wad(float(inputs.fwd[k]), Rounding.NEAREST, field="forward"),
            vol_wad=to_wad(float(inputs.vol[k]), Rounding.NEAREST, field="vol"),
            rate_wad=to_wad(float(inputs.rate[k]), Rounding.NEAREST, field="rate"),
            mark_wad=0, im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    return out


def finish_market_leaves(params: Params, input_leaves: Sequence[MarketLeaf], timestamp: int,
                         dtype=np.float64) -> tuple[list[MarketLeaf], EpochEngine]:
    """The leaves with their outputs: the epoch engine's mark (nearest WAD) and exact rates."""
    ep = epoch_engine(params, input_leaves, timestamp, dtype)
    im_l, im_s, mm_l, mm_s = ep.exact.rates_wad()
    marks = ep.marks_wad()
    leaves = [MarketLeaf(**{**m.as_dict(), "underlying": m.underlying, "mark_wad": marks[k],
                            "im_long_wad": im_l[k], "im_short_wad": im_s[k], "mm_long_wad": mm_l[k],
                            "mm_short_wad": mm_s[k]})
              for k, m in enumerate(ep.leaves)]
    ep.leaves = leaves
    return leaves, ep


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


def _leaf(**fields) -> AccountLeaf:
    # exact integers computed here, in range by construction: skip the per-field checks
    # (140k of them per 10,000 accounts) that guard values coming from outside
    leaf = object.__new__(AccountLeaf)
    leaf.__dict__.update(fields)
    return leaf


def account_leaves_at(ep: EpochEngine, addresses: Sequence[str], state_nonces: Sequence[int],
                      books: Sequence[dict[int, int]], pending_totals: Sequence[int],
                      positions_hashes: Sequence[bytes] | None = None) -> list[AccountLeaf]:
    """Every account's leaf at the state block: `books[k]` = {instrument id: size WAD} (the
    whole book as the engine holds it), `pending_totals[k]` = `pending_total(account)`,
    `positions_hashes[k]` its positions hash if already known (books rarely change between
    epochs). Margins and value cover the positions that have a market leaf; the positions hash
    covers the whole book. One vectorised exact-margin call for all accounts."""
    n = len(addresses)
    column = ep.column
    indptr = [0]
    cols: list[int] = []
    sizes: list[int] = []
    for book in books:
        for i, q in book.items():
            c = column.get(i)
            if c is not None and q:
                cols.append(c)
                sizes.append(q)
        indptr.append(len(cols))
    im, mm = margins_wad_csr(ep.exact, indptr, cols, sizes)
    marks = np.asarray([m.mark_wad for m in ep.leaves] or [0], dtype=object)
    row = np.repeat(np.arange(n), np.diff(indptr))
    value = np.zeros(n, dtype=object)
    if cols:
        prod = np.asarray(sizes, dtype=object) * marks[np.asarray(cols)]
        heads = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        value[row[heads]] = np.add.reduceat(prod, heads)
    value = value // WAD
    if positions_hashes is None:
        positions_hashes = [positions_hash_fast(b) for b in books]
    return [_leaf(account=addresses[k], state_nonce=int(state_nonces[k]),
                  positions_hash=positions_hashes[k],
                  pending_base_im_wad=int(pending_totals[k]) & M96,
                  pending_base_mm_wad=(int(pending_totals[k]) >> 96) & M96,
                  position_value_wad=int(value[k]), initial_margin_wad=int(im[k]),
                  maintenance_margin_wad=int(mm[k]), worst_loss_wad=int(mm[k]), worst_scenarios=0,
                  basis_addon_wad=0, short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)
            for k in range(n)]

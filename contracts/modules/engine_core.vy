# pragma version 0.4.3
"""
@title engine_core
@custom:contract-name engine_core
@notice Storage layout, constants and shared internal logic of MarginEngine. It is
        initialised FIRST by both MarginEngine.vy and MarginEngineExtension.vy so that both
        contracts see the same storage slots: the engine delegatecalls the extension for
        liquidate, settle and flag (the whole engine does not fit EIP-170's 24,576 bytes).
@dev Never declare storage before `initializes: core` in either contract.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed
from ..interfaces import IRiskOracle
from ..interfaces import IInstrumentRegistry
from ..interfaces import IMarginEngine


#### CONSTANTS ####

WAD: constant(uint256) = 10**18
WAD_I: constant(int256) = 10**18
BPS: constant(uint256) = 10_000
# Hard bound on positions per account: every loop over a book is bounded by it, and it is
# the oracle's MAX_IDS, so one batched marks() call prices a whole book.
MAX_POSITIONS: constant(uint256) = 32
MAX_PAGE: constant(uint256) = 100
# Largest liquidation witness: ScenarioVerifier.check_market's call data, its selector and the
# ABI bound of its arguments (eight head words; 32 sizes; 32 packed 7-word market leaves; a
# 512-hash multiproof; 8 units and scenarios: 4 + 256 + 1,056 + 7,200 + 16,416 + 2 * 288),
# and of the Check it returns. Exact, not generous: the witness is copied into the engine's
# and the extension's frames at this bound, and every word above it pays memory expansion.
MAX_WITNESS: constant(uint256) = 25_508
MAX_CHECK: constant(uint256) = 896
KIND_FUTURE: constant(uint8) = 0
KIND_PERPETUAL: constant(uint8) = 1
KIND_CALL: constant(uint8) = 2
KIND_PUT: constant(uint8) = 3
ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(address account,uint256 instrument_id,bool is_buy,uint256 size_wad,uint256 limit_price_wad,uint256 order_nonce,uint256 deadline)"
)
# order_filled value that marks a cancelled order
CANCELLED: constant(uint256) = max_value(uint256)
MASK_8: constant(uint256) = 2**8 - 1
MASK_16: constant(uint256) = 2**16 - 1
MASK_32: constant(uint256) = 2**32 - 1
# _trading bit set once the oracle has voided one of this engine's roots (fraud proof)
VOID_SEEN: constant(uint256) = 1 << 120
# _trading bit mirroring `paused` (pause/unpause set both): a fill reads _trading anyway,
# so its pause check costs no cold read of the pausable slot
PAUSED_BIT: constant(uint256) = 1 << 121
# RiskOracle's epoch_record_hash of a voided root
VOID_RECORD: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001
MASK_64: constant(uint256) = 2**64 - 1
MASK_96: constant(uint256) = 2**96 - 1
MASK_112: constant(uint256) = 2**112 - 1
MASK_128: constant(uint256) = 2**128 - 1
# Signed values are packed with an offset (value + 2**127) so they fit in 128 unsigned bits.
OFFSET_128: constant(int256) = 2**127
# RiskOracle's packed market word: mark and funding index biased by 2**95 (96-bit fields)
BIAS_96: constant(int256) = 2**95
MASK_15: constant(uint256) = 2**15 - 1
MASK_40: constant(uint256) = 2**40 - 1
LISTED_BIT: constant(uint256) = 2**112
# header bit: the margins' last leaf was a raise-only one below the leaf floor, capped at the
# isolated bound of that moment; until a leaf binds, new risk keeps at most today's bound
FLOOR_RAISED: constant(uint256) = 2**111
MASK_7: constant(uint256) = 2**7 - 1
OFFSET_SET: constant(uint256) = 2**255
INSURANCE_SET: constant(uint256) = 2**255
MASK_63: constant(uint256) = 2**63 - 1
MASK_192: constant(uint256) = 2**192 - 1
# underlyings a book may span: what FraudProofs and the ScenarioVerifier re-price (their
# MAX_UNITS); a book of at most this many positions never spans more
MAX_UNITS: constant(uint256) = 8
# state nonces an account remembers for leaves computed at them (`_nonce_ring`)
NONCE_RING: constant(uint256) = 8
INT128_MIN: constant(int256) = -(2**127)
INT128_MAX: constant(int256) = 2**127 - 1


#### IMMUTABLES ####

# settlement token (collateral)
TOKEN: public(immutable(IERC20))
# signed marks, rates, epoch roots (account leaves), settlement prices, funding indices
ORACLE: public(immutable(IRiskOracle))
# instrument definitions
REGISTRY: public(immutable(IInstrumentRegistry))
# token units -> WAD: 10**(18 - decimals)
SCALE: public(immutable(uint256))


#### STORAGE ####

# packed account header, one slot because every trade reads and writes all of it:
# state_nonce (bits 0-63) | liquidatable_since (64-103) | position count (104-110, at most
# MAX_POSITIONS) | FLOOR_RAISED (bit 111) | listed in account_at (bit 112) | minutes from
# liquidatable_since to when the account was last seen liquidatable (113-127) | cash WAD as
# int128 two's complement (128-255)
_header: HashMap[address, uint256]
# packed effective margins (last applied leaf + pending adjustments): IM (0-111) |
# MM (112-223) | margin basis timestamp (224-255); basis = the applied leaf's root timestamp,
# or the first pending trade while no leaf applies. One slot, so a margin check reads one word.
_margins: HashMap[address, uint256]
# packed position: size + 2**127 (bits 0-127) | last funding index + 2**127 (128-255); 0 = none
_position: HashMap[address, HashMap[uint256, uint256]]
# instrument ids of an account's open positions, 8 uint32 ids per word (4 words = 32 ids)
_id_words: HashMap[address, HashMap[uint256, uint256]]
# filled size per order hash; CANCELLED once cancelled
order_filled: public(HashMap[bytes32, uint256])
# every account that ever held a position (for keepers' pagination)
account_count: public(uint256)
account_at: public(HashMap[uint256, address])
# insurance fund, WAD, in bits 0-254 (`insurance_wad()`); bit 255 (INSURANCE_SET) is set at
# deployment, so the slot is never zero and the first liquidation's insurance share pays a
# 2.9k write, not a first 20k one. A balance reaching 2**255 reverts on the checked add.
_insurance: uint256
# deficits written off after the insurance fund (recorded, never silent), WAD
socialised_loss_wad: public(uint256)
# net cash credited to accounts by settlement payoffs and funding, WAD
external_pnl_wad: public(int256)
# kind (bits 8-15) and strike (16-255) of an instrument, bit 0 set once cached. Listed terms
# never change in InstrumentRegistry, so the first settlement of an instrument caches them
# and later settlements skip the registry call (~12k gas).
_terms: HashMap[uint256, uint256]
# packed TradingParams: max_positions (0-7) | taker_fee_bps (8-23) | max_price_age (24-55) |
# max_margin_basis_age (56-87) | max_liquidation_price_age (88-119) | VOID_SEEN (bit 120: the
# oracle voided a root of this engine, `note_void`) | PAUSED_BIT (121: `paused`, mirrored) |
# and the taker fees collected, WAD (128-255): every fill reads the parameters and adds a
# fee, one slot for both.
_trading: uint256
# packed LiquidationParams: base (0-15) | slope per hour (16-31) | max (32-47) |
# insurance share (48-63) | buffer (64-79) | dust_mm_wad (80-191)
_liquidation: uint256
# Cumulative pending margin counters (`pending_total`): an IM and an MM counter that grow by
# the standalone rate of every trade, modulo 2**96, and the oldest state nonce an account leaf
# may be computed for, raised when a book shrinks without a trade's pending bound (risk-reducing
# fill, liquidation, emptied book). A leaf for nonce k carries the counters at k, so it applies
# at any later nonce with the growth since added (a trade never voids it). The engine accepts
# only the true counters and book of nonce k: see `_nonce_ring`.
# Stored as their offset from the effective margins: a pending add grows margins and counters
# by the same amount, so counter = margin + offset (mod 2**96) and a trade writes `_margins`
# only. Any other change of `_margins` (leaf, scaling, emptied book) goes through
# `_set_margins`, which moves the offset so that the counters stay where they were.
# Packed: IM offset (bits 0-95) | MM offset (96-191) | leaf floor nonce (192-254) | OFFSET_SET
# (bit 255), set when the account is first listed: the slot is then never zero again, so a
# reset pays a 2.9k write rather than a first 20k one (the first trade pays that once).
_pending_offset: HashMap[address, uint256]
# What an account was at each of the last NONCE_RING state nonces a trade moved it to, at slot
# nonce % NONCE_RING: nonce (bits 192-255) | the low 192 bits of `_nonce_digest` (its pending
# counters and positions hash at that nonce). A leaf at an older nonce applies only if its
# nonce is recorded and its `pending_base_*` and `positions_hash` hash to the record: neither
# the counters nor the book at an older nonce is reachable by a fraud proof, so the engine
# accepts only the true ones (a leaf naming the empty book, or the current counters as its
# base, would add no growth for the trades since and zero any book's margins). Counters and
# book do not change within a nonce (every position change and every pending add bumps it),
# so the record written when a trade reaches nonce k holds for all of k. Settlement and
# liquidation bump nonces without recording (they are rare, and a leaf at such a nonce still
# applies while it is the current one): a leaf at those nonces stops applying at the next
# position change, as does one NONCE_RING or more trades old. The keeper signs the book at its
# snapshot, so its leaf applies after up to 7 trades since; each slot costs a fill side a
# 2.9k rewrite whatever the ring's size, a larger ring only more first writes per account.
_nonce_ring: HashMap[address, HashMap[uint256, uint256]]


@deploy
def __init__(token: IERC20, oracle: IRiskOracle, registry: IInstrumentRegistry):
    """
    @param token Settlement ERC20 with 6, 8 or 18 decimals.
    @param oracle RiskOracle.
    @param registry InstrumentRegistry.
    """
    decimals: uint256 = convert(staticcall IERC20Detailed(token.address).decimals(), uint256)
    assert decimals == 6 or decimals == 8 or decimals == 18, "engine: unsupported decimals"
    TOKEN = token
    ORACLE = oracle
    REGISTRY = registry
    SCALE = 10 ** (18 - decimals)
    self._insurance = INSURANCE_SET


#### INTERNAL: MARGIN ####


@internal
@view
def _market_words(ids: DynArray[uint256, MAX_POSITIONS]) -> (DynArray[uint256, MAX_POSITIONS], uint256):
    """
    @dev The book's packed market words and their oldest update (RiskOracle `market_words`):
         RiskOracle `marks` undecoded, one array through the ABI (`_equity`, `_book_equity` and
         the liquidation slice decode them: `_word_mark`, `_word_findex`).
    """
    return staticcall ORACLE.market_words(ids)


@internal
@pure
def _word_mark(word: uint256) -> int256:
    """@dev The mark of a packed market word (bits 160-255, biased by 2**95)."""
    return unsafe_sub(convert(word >> 160, int256), BIAS_96)


@internal
@pure
def _word_findex(word: uint256) -> int256:
    """@dev The funding index of a packed market word (bits 64-159, biased by 2**95)."""
    return unsafe_sub(convert((word >> 64) & MASK_96, int256), BIAS_96)


@internal
@view
def _health(account: address) -> IMarginEngine.Health:
    h: IMarginEngine.Health = empty(IMarginEngine.Health)
    header: uint256 = self._header[account]
    n: uint256 = self._count(header)
    cash: int256 = self._cash(header)
    if n == 0:
        h.equity_wad = cash
        h.marks_updated_at = block.timestamp
        return h
    ids: DynArray[uint256, MAX_POSITIONS] = self._load_ids(account, n)
    raws: DynArray[uint256, MAX_POSITIONS] = []
    for iid: uint256 in ids:
        raws.append(self._position[account][iid])
    words: DynArray[uint256, MAX_POSITIONS] = []
    words, h.marks_updated_at = self._market_words(ids)
    margins: uint256 = self._margins[account]
    book_hash: bytes32 = empty(bytes32)
    h.equity_wad, h.position_value_wad, book_hash = self._book_equity(cash, ids, raws, words, False)
    h.im_wad = margins & MASK_112
    h.mm_wad = (margins >> 112) & MASK_112
    h.liquidatable = h.equity_wad < convert(h.mm_wad, int256)
    return h


@internal
@view
def _equity(
    account: address,
    cash: int256,
    ids: DynArray[uint256, MAX_POSITIONS],
    words: DynArray[uint256, MAX_POSITIONS],
) -> int256:
    """
    @dev cash + sum(size * mark) (rounded down) - unapplied funding (rounded up). The hot
         loop of every margin check, so the position is decoded inline with unchecked
         arithmetic: sizes are stored within int128 (`_set_position`), marks and funding
         indices come from the oracle's 96-bit fields, so no product reaches 2**225.
    """
    equity: int256 = cash
    for i: uint256 in range(len(ids), bound=MAX_POSITIONS):
        raw: uint256 = self._position[account][ids[i]]
        if raw == 0:  # closed earlier in this transaction
            continue
        size: int256 = unsafe_sub(convert(raw & MASK_128, int256), OFFSET_128)
        word: uint256 = words[i]  # RiskOracle's packed market word (`_market_words`)
        # _floor_wad inlined (an internal call per position costs more than the division)
        v: int256 = unsafe_mul(size, unsafe_sub(convert(word >> 160, int256), BIAS_96))
        q: int256 = unsafe_div(v, WAD_I)
        if unsafe_mul(q, WAD_I) > v:
            q = unsafe_sub(q, 1)
        equity += q
        owed: int256 = unsafe_sub(unsafe_sub(convert(raw >> 128, int256), OFFSET_128), unsafe_sub(convert((word >> 64) & MASK_96, int256), BIAS_96))
        if owed != 0:  # only perpetuals carry funding
            equity += self._floor_wad(unsafe_mul(size, owed))
    return equity


@internal
@pure
def _floor_wad(p: int256) -> int256:
    """@dev floor(p / WAD) for any int256 p (Vyper's // truncates towards zero)."""
    q: int256 = unsafe_div(p, WAD_I)  # truncated: above p / WAD only when p < 0 has a remainder
    if unsafe_mul(q, WAD_I) > p:
        q = unsafe_sub(q, 1)
    return q


@internal
def _funding_owed(account: address, iid: uint256, size: int256, last: int256, now_index: int256) -> int256:
    """
    @dev Funding a position owes since its last index (longs pay a rising index), rounded
         up; counted in external_pnl_wad (no counterparty pays it in the same transaction).
    """
    if size == 0 or now_index == last:
        return 0
    credit: int256 = self._mul_floor(size, last - now_index)
    self.external_pnl_wad += credit
    log IMarginEngine.FundingApplied(account=account, instrument_id=iid, amount_wad=credit, funding_index_wad=now_index)
    return -credit


@internal
@view
def _new_risk_im(account: address, header: uint256, ids: DynArray[uint256, MAX_POSITIONS], margins: uint256, cfg: uint256) -> uint256:
    """
    @dev The IM that new risk (a withdrawal, a trade that is not risk-reducing) must keep:
         the effective IM while its basis (an applied leaf's root, or the first pending
         trade) is within max_margin_basis_age; otherwise the escape hatch, the book's
         isolated bound at the oracle's current per-unit rates (never below the portfolio
         figure by subadditivity), so a book never needs a keeper to withdraw what it frees.
         The same bound applies when the basis is the timestamp of a root a fraud proof
         voided (RiskOracle `epoch_record_hash` = VOID_RECORD): margins applied from a false root
         never back new risk. While a below-floor raise set them (FLOOR_RAISED in the
         account's `header`, which every caller holds), the effective IM counts only up to
         that bound: the raise was capped at the rates of its moment, which anyone picks.
    """
    basis: uint256 = margins >> 224
    eff: uint256 = max_value(uint256)
    if basis != 0 and block.timestamp <= basis + ((cfg >> 56) & MASK_32):
        # a basis from a root a fraud proof voided is no basis: its margins were never true.
        # The oracle is asked only once it has voided a root of this engine (VOID_SEEN), so
        # an engine that never saw a fraud pays nothing for the check.
        if cfg & VOID_SEEN == 0 or staticcall ORACLE.epoch_record_hash(self, basis) != VOID_RECORD:
            eff = margins & MASK_112
            if header & FLOOR_RAISED == 0:
                return eff
    sizes: DynArray[int256, MAX_POSITIONS] = []
    for iid: uint256 in ids:
        raw: uint256 = self._position[account][iid]
        # sizes are stored within int128 (_set_position); 0 = closed earlier in this transaction
        sizes.append(unsafe_sub(convert(raw & MASK_128, int256), OFFSET_128) if raw != 0 else 0)
    im: uint256 = 0
    mm: uint256 = 0
    im, mm = staticcall ORACLE.isolated_margins(ids, sizes)
    return min(im, eff)


@internal
@view
def _void_basis_wins(merged: uint256, own: uint256, inherited: uint256, cfg: uint256) -> uint256:
    """
    @dev `merged` (margins of two accounts added by a liquidation slice, basis the older of
         `own` and `inherited`) with the basis of a root a fraud proof voided, if either was
         one: the older basis alone would pass margins applied from a false root as valid
         (a 1-wei slice of any book with an older basis would launder the void). Asks the
         oracle only once it has voided a root of this engine.
    """
    if cfg & VOID_SEEN == 0:
        return merged
    for b: uint256 in [own, inherited]:
        if b != 0 and staticcall ORACLE.epoch_record_hash(self, b) == VOID_RECORD:
            return (merged & (2**224 - 1)) | (b << 224)
    return merged


@internal
@pure
def _add_margins(margins: uint256, add_im: uint256, add_mm: uint256, since: uint256) -> uint256:
    """
    @dev Adds a pending adjustment computed at time `since` to the effective margins (and so,
         through the stored offset, to the cumulative pending counters: the caller writes the
         result to `_margins` as it is). The basis is the older of the two: margins
         inherited from another account (a liquidation slice) keep that account's basis, so
         a day-old IM never looks fresh.
    """
    im: uint256 = (margins & MASK_112) + add_im
    mm: uint256 = ((margins >> 112) & MASK_112) + add_mm
    basis: uint256 = margins >> 224
    if basis == 0 or since < basis:
        basis = since
    return self._pack_margins(im, mm, basis)


@internal
def _set_margins(account: address, new: uint256, floor_nonce: uint256):
    """
    @dev Stores effective margins that are not the stored ones plus a pending add (a leaf, a
         scaling, an emptied book): the offset moves by old - new, so the
         cumulative pending counters do not. `floor_nonce` > 0 raises the leaf floor to that
         nonce: the book shrank without a pending bound (its margins were scaled down), so an
         older leaf plus the counters' growth would overstate them (and could re-liquidate a
         book a liquidation just restored).
    """
    old: uint256 = self._margins[account]
    self._margins[account] = new
    if floor_nonce == 0 and (old ^ new) & (2**224 - 1) == 0:
        return  # same IM and MM: the offset stands
    offset: uint256 = self._pending_offset[account]
    total: uint256 = self._pending_total(old, offset)
    if floor_nonce == 0:
        floor_nonce = total >> 192
    # offsets modulo 2**96, like the counters; floor_nonce < 2**63 (state nonces grow by one
    # per transaction), so bit 255 stays OFFSET_SET's
    self._pending_offset[account] = (
        (unsafe_sub(total & MASK_96, new & MASK_96) & MASK_96)
        | ((unsafe_sub((total >> 96) & MASK_96, (new >> 112) & MASK_96) & MASK_96) << 96)
        | (floor_nonce << 192)
        | OFFSET_SET
    )


@internal
@pure
def _pending_total(margins: uint256, offset: uint256) -> uint256:
    """
    @dev The packed cumulative pending counters: IM (bits 0-95) | MM (96-191) | leaf floor
         nonce (192-255), from the effective margins and their stored offset.
    """
    return (
        (unsafe_add(margins & MASK_96, offset & MASK_96) & MASK_96)
        | ((unsafe_add((margins >> 112) & MASK_96, (offset >> 96) & MASK_96) & MASK_96) << 96)
        | (((offset >> 192) & MASK_63) << 192)
    )


@internal
def _record_nonce(account: address, header: uint256, margins: uint256, positions_hash: bytes32):
    """
    @dev Records the state nonce a trade just moved the account to (`header`, written or about
         to be, with `margins` its effective margins and `positions_hash` its book's, as
         `_positions_hash` would read it once stored): its counters and positions hash, for a
         leaf computed at it (`_nonce_ring`).
    """
    nonce: uint256 = header & MASK_64
    offset: uint256 = self._pending_offset[account]
    # `_pending_total`'s counters and `_nonce_digest`, inlined (two internal calls fewer a fill side)
    digest: uint256 = convert(keccak256(abi_encode(
        unsafe_add(margins & MASK_96, offset & MASK_96) & MASK_96,
        unsafe_add((margins >> 112) & MASK_96, (offset >> 96) & MASK_96) & MASK_96,
        positions_hash,
    )), uint256)
    self._nonce_ring[account][nonce % NONCE_RING] = (nonce << 192) | (digest & MASK_192)


@internal
@pure
def _nonce_digest(base_im: uint256, base_mm: uint256, positions_hash: bytes32) -> uint256:
    """@dev What `_nonce_ring` keeps of a nonce: its pending counters and book, hashed."""
    return convert(keccak256(abi_encode(base_im, base_mm, positions_hash)), uint256)


@internal
@view
def _positions_hash(account: address, n: uint256) -> bytes32:
    """
    @dev keccak256(abi_encode(ids ascending, sizes)) of the book: what a leaf's
         positions_hash commits to (offchain/chain/leaves.py `positions_hash`).
    """
    ids: DynArray[uint256, MAX_POSITIONS] = self._load_ids(account, n)
    # insertion sort: books are short (<= 32) and mostly already in order
    for i: uint256 in range(n, bound=MAX_POSITIONS):
        x: uint256 = ids[i]
        j: uint256 = i
        for _: uint256 in range(i, bound=MAX_POSITIONS):
            if j == 0 or ids[j - 1] <= x:
                break
            ids[j] = ids[j - 1]
            j -= 1
        ids[j] = x
    sizes: DynArray[int256, MAX_POSITIONS] = []
    for iid: uint256 in ids:
        size: int256 = 0
        last: int256 = 0
        size, last = self._get_position(account, iid)
        sizes.append(size)
    return keccak256(abi_encode(ids, sizes))


@internal
@pure
def _book_equity(
    cash: int256,
    ids: DynArray[uint256, MAX_POSITIONS],
    raws: DynArray[uint256, MAX_POSITIONS],
    words: DynArray[uint256, MAX_POSITIONS],
    with_hash: bool,
) -> (int256, int256, bytes32):
    """
    @dev `_equity`, the position value (sum of size * mark, each rounded down) and (`with_hash`)
         `_positions_hash` of a book held in memory (`raws[i]` the position word of `ids[i]`, 0
         once closed in this transaction: not in the book) in one pass, without re-reading
         storage. Same rounding as `_equity`, same hash as `_positions_hash`.
    """
    equity: int256 = cash
    value: int256 = 0
    # the book's pairs, sorted by id as they come, are rewritten in place over the pairs read
    # (in this frame's copies): ids[:m] and, as two's-complement words (abi_encode writes an
    # int256 so), the sizes in raws[:m]
    m: uint256 = 0
    last: uint256 = 0  # the largest id of ids[:m]
    n: uint256 = len(raws)
    for i: uint256 in range(n, bound=MAX_POSITIONS):
        raw: uint256 = raws[i]
        if raw == 0:
            continue
        size: int256 = unsafe_sub(convert(raw & MASK_128, int256), OFFSET_128)
        word: uint256 = words[i]
        v: int256 = unsafe_mul(size, unsafe_sub(convert(word >> 160, int256), BIAS_96))
        q: int256 = unsafe_div(v, WAD_I)
        if unsafe_mul(q, WAD_I) > v:
            q = unsafe_sub(q, 1)
        value += q
        owed: int256 = unsafe_sub(unsafe_sub(convert(raw >> 128, int256), OFFSET_128), unsafe_sub(convert((word >> 64) & MASK_96, int256), BIAS_96))
        if owed != 0:
            equity += self._floor_wad(unsafe_mul(size, owed))
        if not with_hash:
            continue
        x: uint256 = ids[i]
        j: uint256 = m
        if x < last:
            # out of order: the larger ids move up one
            for _: uint256 in range(m, bound=MAX_POSITIONS):
                prev: uint256 = ids[unsafe_sub(j, 1)]
                if prev <= x:
                    break
                ids[j] = prev
                raws[j] = raws[unsafe_sub(j, 1)]
                j = unsafe_sub(j, 1)
        else:
            last = x
        ids[j] = x
        raws[j] = unsafe_sub(raw & MASK_128, convert(OFFSET_128, uint256))
        m = unsafe_add(m, 1)
    # value and equity: sums of int128 sizes times 96-bit marks, 32 terms at most
    equity = unsafe_add(equity, value)
    book_hash: bytes32 = empty(bytes32)
    if with_hash:
        for _: uint256 in range(unsafe_sub(n, m), bound=MAX_POSITIONS):
            ids.pop()
            raws.pop()
        book_hash = keccak256(abi_encode(ids, raws))
    return equity, value, book_hash


@internal
@pure
def _scale_margins(word: uint256, num: uint256, den: uint256) -> uint256:
    """@dev Scales both margins of a packed word by num/den, rounded up; keeps the timestamp."""
    im: uint256 = word & MASK_112
    mm: uint256 = (word >> 112) & MASK_112
    # num <= den and both margins < 2**112: no overflow, results stay < 2**112
    im = unsafe_div(unsafe_add(unsafe_mul(im, num), unsafe_sub(den, 1)), den)
    mm = unsafe_div(unsafe_add(unsafe_mul(mm, num), unsafe_sub(den, 1)), den)
    return im | (mm << 112) | ((word >> 224) << 224)


@internal
@pure
def _pack_margins(im: uint256, mm: uint256, ts: uint256) -> uint256:
    assert im <= MASK_112 and mm <= MASK_112, "engine: margin too large"
    assert ts <= MASK_32, "engine: timestamp too large"
    return im | (mm << 112) | (ts << 224)


@internal
@pure
def _ceil_mul(a: uint256, b_wad: uint256) -> uint256:
    return (a * b_wad + WAD - 1) // WAD


@internal
@pure
def _mul_floor(a: int256, b: int256) -> int256:
    """@dev floor(a * b / WAD), checked product."""
    return self._floor_wad(a * b)


#### INTERNAL: LIQUIDATION ####


@internal
@view
def _discount_bps(lcfg: uint256, since: uint256) -> uint256:
    elapsed: uint256 = block.timestamp - since
    grown: uint256 = (lcfg & MASK_16) + ((lcfg >> 16) & MASK_16) * elapsed // 3600
    return min(grown, (lcfg >> 32) & MASK_16)


@internal
@pure
def _discount(disc_bps: uint256, f: uint256, mm: uint256, equity: int256) -> uint256:
    """
    @dev The liquidator's discount: `disc_bps` of the slice's MM, rounded down (in the
         liquidated account's favour), and never more than the account's equity, so
         liquidating a solvent account never costs the insurance fund anything and a
         bankrupt one earns no discount (self-liquidation is never profitable). A partial
         slice is taken only while equity > discount x MM, so the cap binds on whole books.
    """
    discount: uint256 = disc_bps * f // BPS * mm // WAD
    if equity <= 0:
        return 0
    return min(discount, convert(equity, uint256))


@internal
@pure
def _slice_fraction(lcfg: uint256, equity: int256, mm: uint256, disc_bps: uint256, requested: uint256) -> uint256:
    """
    @dev The fraction a liquidation takes: the request (<= WAD), capped by `_fraction_cap`.
         While equity <= discount * MM a partial slice lowers the margin ratio (equity
         falls by d*f*MM, MM only by f*MM), so nothing less than the whole book is taken.
    """
    if equity <= convert(mm * disc_bps // BPS, int256):
        return WAD
    return min(requested, self._fraction_cap(lcfg, equity, mm, disc_bps))


@internal
@pure
def _fraction_cap(lcfg: uint256, equity: int256, mm: uint256, disc_bps: uint256) -> uint256:
    """
    @dev Smallest f with equity - d*f*MM >= (1 - f) * MM * (1 + buffer), i.e.
         f = (T - E) / (T - d*MM) with T = MM * (1 + buffer); 1 if the rest would be dust.
    """
    target: int256 = convert(mm * (BPS + ((lcfg >> 64) & MASK_16)) // BPS, int256)
    denom: int256 = target - convert(mm * disc_bps // BPS, int256)
    if denom <= 0 or equity <= target - denom:
        return WAD
    f: uint256 = convert(((target - equity) * WAD_I + denom - 1) // denom, uint256)
    if f >= WAD:
        return WAD
    dust: uint256 = (lcfg >> 80) & MASK_112
    if (WAD - f) * mm // WAD < dust:
        return WAD
    return f


@internal
def _absorb_deficit(account: address, cash: int256) -> int256:
    """@dev An empty account's negative cash: insurance fund first, then socialised loss."""
    deficit: uint256 = convert(-cash, uint256)
    insurance: uint256 = self._insurance
    covered: uint256 = min(deficit, insurance & ~INSURANCE_SET)
    if covered > 0:
        # covered <= the balance in bits 0-254: bit 255 stays set
        self._insurance = unsafe_sub(insurance, covered)
        log IMarginEngine.InsuranceUsed(account=account, amount_wad=covered)
    rest: uint256 = deficit - covered
    if rest > 0:
        total: uint256 = self.socialised_loss_wad + rest
        self.socialised_loss_wad = total
        log IMarginEngine.LossSocialised(account=account, amount_wad=rest, total_wad=total)
    return 0


#### INTERNAL: PARAMETERS ####


@internal
def _set_trading(p: IMarginEngine.TradingParams):
    """@dev Checks and stores TradingParams (engine constructor; the owner via the extension)."""
    assert p.max_positions > 0 and p.max_positions <= MAX_POSITIONS, "engine: max_positions out of range"
    assert p.taker_fee_bps <= 100, "engine: taker_fee_bps above 100"
    assert p.max_price_age > 0 and p.max_price_age <= MASK_32, "engine: max_price_age out of range"
    assert p.max_margin_basis_age > 0 and p.max_margin_basis_age <= MASK_32, "engine: max_margin_basis_age out of range"
    assert p.max_liquidation_price_age >= p.max_price_age and p.max_liquidation_price_age <= MASK_32, "engine: max_liquidation_price_age out of range"
    # keeps VOID_SEEN, PAUSED_BIT and the fees collected (bits 120-255)
    self._trading = ((self._trading >> 120) << 120) | (
        p.max_positions
        | (p.taker_fee_bps << 8)
        | (p.max_price_age << 24)
        | (p.max_margin_basis_age << 56)
        | (p.max_liquidation_price_age << 88)
    )
    log IMarginEngine.TradingParamsSet(params=p)


@internal
def _set_liquidation(p: IMarginEngine.LiquidationParams):
    """@dev Checks and stores LiquidationParams (engine constructor; the owner via the extension)."""
    assert p.discount_base_bps <= p.discount_max_bps, "engine: discount_base_bps above max"
    assert p.discount_max_bps < BPS, "engine: discount_max_bps out of range"
    assert p.discount_slope_bps_per_hour <= MASK_16, "engine: discount_slope out of range"
    assert p.insurance_share_bps <= BPS, "engine: insurance_share_bps out of range"
    assert p.buffer_bps <= BPS, "engine: buffer_bps out of range"
    assert p.dust_mm_wad <= MASK_112, "engine: dust_mm_wad out of range"
    self._liquidation = (
        p.discount_base_bps
        | (p.discount_slope_bps_per_hour << 16)
        | (p.discount_max_bps << 32)
        | (p.insurance_share_bps << 48)
        | (p.buffer_bps << 64)
        | (p.dust_mm_wad << 80)
    )
    log IMarginEngine.LiquidationParamsSet(params=p)


#### INTERNAL: STORAGE ENCODING ####


@internal
@view
def _get_position(account: address, iid: uint256) -> (int256, int256):
    raw: uint256 = self._position[account][iid]
    if raw == 0:
        return 0, 0
    return convert(raw & MASK_128, int256) - OFFSET_128, convert(raw >> 128, int256) - OFFSET_128


@internal
def _set_position(account: address, iid: uint256, size: int256, findex: int256):
    if size == 0:
        self._position[account][iid] = 0
        return
    assert size > -OFFSET_128 and size < OFFSET_128, "engine: size out of range"
    assert findex > -OFFSET_128 and findex < OFFSET_128, "engine: funding index out of range"
    self._position[account][iid] = convert(size + OFFSET_128, uint256) | (
        convert(findex + OFFSET_128, uint256) << 128
    )


@internal
@view
def _load_ids(account: address, n: uint256) -> DynArray[uint256, MAX_POSITIONS]:
    ids: DynArray[uint256, MAX_POSITIONS] = []
    word: uint256 = 0
    for i: uint256 in range(n, bound=MAX_POSITIONS):
        # i < 32: unchecked shifts and masks
        if i & 7 == 0:
            word = self._id_words[account][i >> 3]
        else:
            word = word >> 32
        ids.append(word & MASK_32)
    return ids


@internal
def _store_ids(account: address, ids: DynArray[uint256, MAX_POSITIONS], old_n: uint256):
    """@dev Writes the packed id words; clears words no longer used (gas refund)."""
    word: uint256 = 0
    n: uint256 = len(ids)
    for i: uint256 in range(n, bound=MAX_POSITIONS):
        iid: uint256 = ids[i]
        assert iid <= MASK_32, "engine: instrument id too large"
        word |= iid << (32 * (i % 8))
        if i % 8 == 7 or i == n - 1:
            self._id_words[account][i // 8] = word
            word = 0
    for w: uint256 in range((n + 7) // 8, 4, bound=4):
        if w * 8 >= old_n:
            break
        self._id_words[account][w] = 0


@internal
@pure
def _count(header: uint256) -> uint256:
    return (header >> 104) & MASK_7


@internal
@pure
def _since(header: uint256) -> uint256:
    return (header >> 64) & MASK_40


@internal
@pure
def _cash(header: uint256) -> int256:
    """@dev Decodes the int128 two's complement cash in the header's top 128 bits."""
    v: uint256 = header >> 128
    if v > convert(INT128_MAX, uint256):
        # v < 2**128: the subtraction cannot overflow int256
        return unsafe_sub(convert(v, int256), 2**128)
    return convert(v, int256)


@internal
@pure
def _with_cash(header: uint256, cash: int256) -> uint256:
    assert cash >= INT128_MIN and cash <= INT128_MAX, "engine: cash out of range"
    return (header & MASK_128) | ((convert(convert(cash, bytes32), uint256) & MASK_128) << 128)


@internal
@pure
def _with_since(header: uint256, since: uint256) -> uint256:
    """@dev Sets liquidatable_since and clears the last-seen offset."""
    return (header & ~((MASK_40 << 64) | (MASK_15 << 113))) | (since << 64)


@internal
@view
def _episode_since(header: uint256, window: uint256) -> uint256:
    """
    @dev Start of the current liquidatable episode (the discount clock). A flag not
         re-confirmed (flag() or a liquidation) within `window` seconds may hide a recovery
         in between, so a new episode starts now and the discount restarts at its base.
    """
    since: uint256 = self._since(header)
    if since == 0:
        return block.timestamp
    seen: uint256 = since + ((header >> 113) & MASK_15) * 60
    if block.timestamp > seen + window:
        return block.timestamp
    return since


@internal
@view
def _with_seen(header: uint256, since: uint256) -> uint256:
    """@dev Records the episode start and now as last seen liquidatable (minutes, capped)."""
    delta: uint256 = min((block.timestamp - since) // 60, MASK_15)
    return self._with_since(header, since) | (delta << 113)


@internal
@pure
def _with_count(header: uint256, n: uint256) -> uint256:
    """@dev Sets the position count; `header + 1` before the call bumps the state nonce."""
    return (header & ~(MASK_7 << 104)) | (n << 104)


@internal
def _list(account: address, header: uint256) -> uint256:
    """@dev Adds the account to the keeper's list the first time it holds a position."""
    if header & LISTED_BIT != 0:
        return header
    i: uint256 = self.account_count
    self.account_at[i] = account
    self.account_count = i + 1
    # the first trade writes the pending-offset slot once (see _pending_offset)
    self._pending_offset[account] |= OFFSET_SET
    return header | LISTED_BIT


@internal
@pure
def _without(ids: DynArray[uint256, MAX_POSITIONS], iid: uint256) -> DynArray[uint256, MAX_POSITIONS]:
    out: DynArray[uint256, MAX_POSITIONS] = []
    for x: uint256 in ids:
        if x != iid:
            out.append(x)
    return out


@internal
def _push(to: address, amount: uint256):
    """@dev Token transfer out; accepts tokens that return nothing."""
    assert extcall TOKEN.transfer(to, amount, default_return_value=True), "engine: transfer failed"

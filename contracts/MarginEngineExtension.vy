# pragma version 0.4.3
"""
@title MarginEngineExtension
@custom:contract-name MarginEngineExtension
@notice The margin side of MarginEngine: applying account leaves, withdrawal under margin,
        liquidation (with the model's witness) and settlement of expired instruments. Runs
        ONLY through the engine's delegatecall, in the engine's storage (`initializes: core`
        first, as in MarginEngine.vy). The owner's functions are in MarginEngineGovernance.
@dev No reentrancy pragma here: the engine's lock (transient storage) is already held when it
     delegatecalls, and a second lock on the same slot would always trip. Direct calls
     revert (they would only touch this contract's own, empty storage anyway).
"""

from .interfaces import IRiskOracle
from .interfaces import IInstrumentRegistry
from .interfaces import IMarginEngine
from ethereum.ercs import IERC20
from snekmate.utils import pausable
from .modules import engine_core as core

# Same order as MarginEngine.vy: core's slots, then `paused`. Never add storage here.
initializes: core
initializes: pausable

# this contract's own address: `self` differs from it inside a delegatecall
_SELF: immutable(address)

# a market leaf's mark is biased by 2**127, an oracle market word's by 2**95 (market_leaf.vy)
MARK_REBIAS: constant(uint256) = 2**127 - 2**95
# a witness leaf's mark is not the oracle's (asserted after the verifier and the time rule,
# whose reasons say more when both apply)
UNMARKED: constant(String[42]) = "engine: witness marks are not the oracle's"

# ScenarioVerifier.check_market(engine, sizes, leaves, proof, order, units, scenarios, joint):
# a liquidation's witness is its call data (this selector, then the argument tuple)
CHECK_MARKET_ID: constant(bytes4) = method_id(
    "check_market(address,int256[],(uint256,bytes32,uint256,uint256,uint256,uint256,uint256)[],uint256,uint256,bytes32[],uint256[],uint256)",
    output_type=bytes4,
)


@deploy
def __init__(token: IERC20, oracle: IRiskOracle, registry: IInstrumentRegistry):
    """
    @notice Deploy with the same token, oracle and registry as the engine.
    """
    core.__init__(token, oracle, registry)
    pausable.__init__()
    _SELF = self


@internal
@view
def _delegated():
    """@dev Direct calls revert (they would only touch this contract's own, empty storage).
         One shared check: each inline copy of the revert costs ~110 bytes of this contract's
         EIP-170 budget; `liquidate` keeps its own (one internal call less on its path)."""
    assert self != _SELF, "engine: delegatecall only"


#### COLLATERAL ####

@external
def withdraw(amount: uint256):
    """
    @notice Withdraws settlement tokens. Without positions: always allowed, up to all cash.
            With positions: not paused, fresh marks, and equity >= IM after (the effective
            IM within max_margin_basis_age of its basis, else the isolated bound).
    @param amount Token units to send to msg.sender.
    """
    self._delegated()
    self._withdraw(amount)


@external
def withdraw_with_leaf(amount: uint256, leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, 32]):
    """
    @notice Applies an account leaf (usually the caller's own, from the current epoch root),
            then withdraws as `withdraw`.
    """
    self._delegated()
    self._apply_leaf(leaf, proof)
    self._withdraw(amount)


@external
def apply_leaf(leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, 32]):
    """
    @notice Applies `leaf.account`'s leaf of the engine's current epoch root (anyone may).
    """
    self._delegated()
    self._apply_leaf(leaf, proof)


@external
def fill_with_leaf(
    order: IMarginEngine.Order,
    signature: Bytes[65],
    fill_size_wad: uint256,
    leaf: IRiskOracle.AccountLeaf,
    proof: DynArray[bytes32, 32],
):
    """
    @notice The leaf half of MarginEngine.fill_with_leaf (same calldata): applies the leaf;
            the engine then fills.
    """
    self._delegated()
    self._apply_leaf(leaf, proof)


@internal
def _withdraw(amount: uint256):
    assert amount > 0, "engine: zero amount"
    debit: uint256 = amount * core.SCALE
    header: uint256 = core._header[msg.sender]
    cash: int256 = core._cash(header) - convert(debit, int256)
    n: uint256 = core._count(header)
    if n == 0:
        assert cash >= 0, "engine: insufficient cash"
    else:
        pausable._require_not_paused()
        cfg: uint256 = core._trading
        ids: DynArray[uint256, core.MAX_POSITIONS] = core._load_ids(msg.sender, n)
        words: DynArray[uint256, core.MAX_POSITIONS] = []
        marks_at: uint256 = 0
        words, marks_at = core._market_words(ids)
        assert block.timestamp <= marks_at + ((cfg >> 24) & core.MASK_32), "engine: stale marks"
        equity: int256 = core._equity(msg.sender, cash, ids, words)
        im: uint256 = core._new_risk_im(msg.sender, header, ids, core._margins[msg.sender], cfg)
        assert equity >= convert(im, int256), "engine: below initial margin"
    core._header[msg.sender] = core._with_cash(header, cash)
    core._push(msg.sender, amount)
    log IMarginEngine.Withdrawal(account=msg.sender, amount=amount, debit_wad=debit)


#### ACCOUNT LEAVES ####


@internal
def _apply_leaf(leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, 32]):
    """
    @dev Sets the account's effective margins (`_margins`) to the leaf's IM and MM plus the pending
         bounds of every trade since the leaf's nonce (the growth of the cumulative
         counters), with the root's timestamp as the margin basis.
         Binding: the oracle checks the proof against this engine's current root (the leaf
         hash covers engine and epoch) and IM >= MM; here the nonce must not be in the future
         nor before the last proportional shrink of the book, a root never replaces a newer
         basis, at the current nonce the leaf's positions hash must equal the book's, and at
         an older one its positions hash and pending base must be what the engine recorded
         at that nonce (`_nonce_ring`). An older leaf that fails that binding (below the
         floor, out of the ring, another book) only raises: IM and MM become the larger of
         the stored and the leaf's, with the basis kept; it is refused if it raises neither,
         the book is empty, or it is below the floor and the oracle has no verifier. Below the
         floor (the book shrank since) the leaf's figures count only up to the isolated bound
         of the book held.
    """
    root_ts: uint256 = staticcall core.ORACLE.verify_account_leaf(leaf, proof)
    account: address = leaf.account
    header: uint256 = core._header[account]
    nonce: uint256 = header & core.MASK_64
    margins: uint256 = core._margins[account]
    assert root_ts > margins >> 224, "engine: leaf not newer than margin basis"
    add_im: uint256 = 0
    add_mm: uint256 = 0
    if leaf.state_nonce == nonce:
        # the book it was computed for is the book now (no trade since: nothing pending)
        assert leaf.positions_hash == core._positions_hash(account, core._count(header)), "engine: leaf for another book"
    else:
        assert leaf.state_nonce < nonce, "engine: leaf for a future state nonce"
        total: uint256 = core._pending_total(margins, core._pending_offset[account])
        # the counters and book the engine recorded at that nonce (`_nonce_ring`): the only
        # binding of an older leaf to the account, as no proof reaches either
        record: uint256 = core._nonce_ring[account][leaf.state_nonce % core.NONCE_RING]
        why: String[54] = ""
        if leaf.state_nonce < total >> 192:
            why = "engine: leaf older than the book's last reduction"
        elif record >> 192 != leaf.state_nonce:
            why = "engine: leaf's nonce not recorded"
        elif record & core.MASK_192 != core._nonce_digest(leaf.pending_base_im_wad, leaf.pending_base_mm_wad, leaf.positions_hash) & core.MASK_192:
            # a base of 2**96 or more never matches: the recorded counters are below it
            why = "engine: leaf's book or pending base is not its nonce's"
        if len(why) > 0:
            # Below the leaf floor (the book shrank since), out of the ring (8 trades since) or
            # not the recorded book: the leaf cannot be bound to the book, so it only raises.
            # The account moves its floor and ring itself, and would otherwise refuse a higher
            # leaf of the current root by a 1-wei trade after the keeper's snapshot. IM and MM
            # become the larger of the stored and the leaf's; the basis stays (nothing looks
            # fresher than it is) and so do the counters (the offset takes up the difference).
            # A leaf that raises neither, or meets an emptied book (nothing left to margin),
            # is refused with the reason it cannot bind. Below the floor the book has shrunk
            # since the leaf (a slice, a one-position reduction, a closed book): the larger
            # book's MM would overstate the rest, and only the model's witness keeps that
            # from liquidating it (anyone may apply the leaf after every slice). Without a
            # verifier such a leaf changes nothing, and with one the raise stops at the
            # isolated bound of the book held (never below its portfolio margin): the larger
            # book's IM would otherwise hold the reduced book's withdrawals and new risk (and,
            # through a slice, its liquidator's) until a leaf binds again. Out of the ring the
            # book only grew or hedged since (no shrink: the floor), so the leaf's margins
            # stay below what binding would give (the leaf's plus the counters' growth).
            n: uint256 = core._count(header)
            ok: bool = n != 0
            cap_im: uint256 = max_value(uint256)
            cap_mm: uint256 = max_value(uint256)
            if leaf.state_nonce < total >> 192:
                ok = ok and staticcall core.ORACLE.verifier() != empty(address)
                if ok:
                    # an open position's word is nonzero and its size within int128
                    # (`_set_position`). The loop repeats `core._new_risk_im`'s: an internal
                    # function for it enlarges that one's memory frame, which costs every fill
                    # ~160 gas and a 16-position liquidation ~530 (measured)
                    ids: DynArray[uint256, core.MAX_POSITIONS] = core._load_ids(account, n)
                    sizes: DynArray[int256, core.MAX_POSITIONS] = []
                    for iid: uint256 in ids:
                        sizes.append(unsafe_sub(convert(core._position[account][iid] & core.MASK_128, int256), core.OFFSET_128))
                    cap_im, cap_mm = staticcall core.ORACLE.isolated_margins(ids, sizes)
                    # the cap is this moment's bound, and anyone picks the moment (V21):
                    # until a leaf binds, new risk keeps at most the bound of its own moment
                    core._header[account] = header | core.FLOOR_RAISED
            im: uint256 = max(margins & core.MASK_112, min(leaf.initial_margin_wad, cap_im))
            mm: uint256 = max((margins >> 112) & core.MASK_112, min(leaf.maintenance_margin_wad, cap_mm))
            new: uint256 = core._pack_margins(im, mm, margins >> 224)
            assert ok and new != margins, why
            core._set_margins(account, new, 0)
            log IMarginEngine.LeafApplied(
                account=account, state_nonce=leaf.state_nonce, initial_margin_wad=im, maintenance_margin_wad=mm, root_timestamp=root_ts
            )
            return
        # growth of the counters since the leaf's nonce, modulo 2**96 like the counters themselves
        add_im = unsafe_sub(total & core.MASK_96, leaf.pending_base_im_wad) & core.MASK_96
        add_mm = unsafe_sub((total >> 96) & core.MASK_96, leaf.pending_base_mm_wad) & core.MASK_96
    if header & core.FLOOR_RAISED != 0:
        # a bound leaf's margins are the model's: no floor-route raise is left in them
        core._header[account] = header ^ core.FLOOR_RAISED
    # leaf margins are checked < 2**112 by _pack_margins; + a 96-bit growth cannot overflow 256 bits
    # the counters stay: the offset takes up the difference
    core._set_margins(
        account, core._pack_margins(leaf.initial_margin_wad + add_im, leaf.maintenance_margin_wad + add_mm, root_ts), 0
    )
    log IMarginEngine.LeafApplied(
        account=account,
        state_nonce=leaf.state_nonce,
        initial_margin_wad=leaf.initial_margin_wad + add_im,
        maintenance_margin_wad=leaf.maintenance_margin_wad + add_mm,
        root_timestamp=root_ts,
    )


#### LIQUIDATION ####


@external
def liquidate(
    account: address,
    fraction_wad: uint256,
    max_payment_wad: int256,
    expected_state_nonce: uint256,
    witness: Bytes[core.MAX_WITNESS],
):
    """
    @notice Takes the same fraction of every position of an account whose equity is below MM,
            paying the slice's value minus a discount (in bps of the slice's MM) that grows
            with time since the account became liquidatable. The fraction is capped to what
            restores equity >= MM * (1 + buffer), unless the rest would be dust.
    @param account The account to liquidate.
    @param fraction_wad Requested fraction (WAD, <= 1e18); capped, and raised to the whole
           book while equity <= discount * MM (a partial slice would lower the margin ratio).
           0: nothing is taken; the discount clock starts or is confirmed (`flag` with a witness),
           or, with a witness showing no shortfall, a running clock is cleared if equity also
           covers the book's isolated bound at the witness leaves' MM rates (anyone may).
    @param max_payment_wad Most the liquidator accepts to pay (price limit; may be negative).
    @param expected_state_nonce The account's state nonce the liquidator priced.
    @param witness The ScenarioVerifier.check_market call data for the stored book (engine,
           sizes and market leaves in storage order, multiproof, named scenarios): the
           verifier's margin in them must exceed the equity too, and caps the MM the slice
           and the discount are computed on.
    """
    assert self != _SELF, "engine: delegatecall only"
    assert fraction_wad <= core.WAD, "engine: fraction out of range"
    header: uint256 = core._header[account]
    assert header & core.MASK_64 == expected_state_nonce, "engine: state nonce changed"
    n: uint256 = core._count(header)
    assert n > 0, "engine: no positions"
    cfg: uint256 = core._trading
    ids: DynArray[uint256, core.MAX_POSITIONS] = core._load_ids(account, n)
    words: DynArray[uint256, core.MAX_POSITIONS] = []
    marks_at: uint256 = 0
    words, marks_at = core._market_words(ids)
    assert block.timestamp <= marks_at + ((cfg >> 88) & core.MASK_32), "engine: stale marks"

    margins: uint256 = core._margins[account]
    im: uint256 = margins & core.MASK_112
    mm: uint256 = (margins >> 112) & core.MASK_112
    basis: uint256 = margins >> 224
    if basis == 0:
        basis = block.timestamp
    cash: int256 = core._cash(header)
    equity: int256 = core._equity(account, cash, ids, words)
    assert equity < convert(mm, int256), "engine: account is healthy"
    # The model's say (see docs/contracts.md, "Liquidation"): `witness` is the call data of
    # the oracle's ScenarioVerifier.check_market (its selector, then engine, sizes, leaves,
    # multiproof, units, scenarios, joint scenario), sent on unchanged (the selector comes
    # with it, so no copy is built; any other selector is refused); the verifier proves every leaf
    # against this engine's current epoch market root and re-prices the book in the named
    # scenarios. Here it must name this engine and the stored book, read through the head
    # offsets the verifier's decoder follows: position i (storage order) with its stored size
    # and a leaf of its instrument (a packed MarketLeaf is 7 static words, the id in bits
    # 0-63 of the first). Named scenarios never give more than the model's MM: a signed MM
    # above it cannot liquidate a book the model calls healthy, nor enlarge the slice or the
    # discount (both use the smaller margin).
    mm_cap: uint256 = mm
    # each position's word, read once for the witness check and the slice below (a second
    # storage read costs its key hashing and a warm load per position; nothing writes the
    # account's positions before the slice)
    raws: DynArray[uint256, core.MAX_POSITIONS] = []
    for iid: uint256 in ids:
        raws.append(core._position[account][iid])
    # Before the oracle's owner registers the first verifier (irrevocable: RiskOracle.set_verifier)
    # the applied MM alone decides, as it did before the witness rule.
    verifier: address = staticcall core.ORACLE.verifier()
    # the witness's root time; without a verifier no root prices the book (all marks pass)
    root_ts: uint256 = core.MASK_64
    # every witness leaf's mark is the oracle's (True without a verifier: no witness is read)
    marked: bool = True
    if verifier != empty(address):
        # one refusal for another function's call data or another book (a revert site costs
        # bytes); the words are read only once the selector is check_market's
        ok: bool = len(witness) >= 100 and convert(slice(witness, 0, 4), bytes4) == CHECK_MARKET_ID
        # head offsets count from the arguments, after the selector
        sizes_at: uint256 = 0
        leaves_at: uint256 = 0
        if ok:
            sizes_at = 4 + extract32(witness, 36, output_type=uint256)
            leaves_at = 4 + extract32(witness, 68, output_type=uint256)
            ok = extract32(witness, 4, output_type=address) == self and extract32(witness, sizes_at, output_type=uint256) == n and extract32(witness, leaves_at, output_type=uint256) == n
        # Each leaf's mark must be the oracle's mark of its instrument: the witness then prices
        # the very marks the equity is counted at. A root signed at other prices (ahead of its
        # own marks, or at a target the oracle's per-update bound has clamped) proves nothing
        # about this equity (SECURITY.md V25). Compared biased: the leaf's 128-bit field (bits
        # 128-255 of its 5th word) is the word's 96-bit one (bits 160-255) re-biased.
        # Offsets unchecked: read only while `ok`, so both heads passed extract32's bound
        # (< MAX_WITNESS) and i < MAX_POSITIONS; extract32 still bounds every read.
        for i: uint256 in range(n, bound=core.MAX_POSITIONS):
            # an open position's word is nonzero and its size within int128 (`_set_position`)
            size: int256 = unsafe_sub(convert(raws[i] & core.MASK_128, int256), core.OFFSET_128)
            at: uint256 = unsafe_add(leaves_at, unsafe_add(32, unsafe_mul(224, i)))
            ok = ok and extract32(witness, unsafe_add(sizes_at, unsafe_add(32, unsafe_mul(32, i))), output_type=int256) == size and extract32(witness, at, output_type=uint256) & core.MASK_64 == ids[i]
            marked = marked and ok and extract32(witness, unsafe_add(at, 128), output_type=uint256) >> 128 == unsafe_add(words[i] >> 160, MARK_REBIAS)
        assert ok, "engine: witness for another book"
        # one verifier per parameter file: after a params change it refuses every witness
        # until the owner registers the new file's (fails closed)
        out: Bytes[core.MAX_CHECK] = raw_call(verifier, witness, max_outsize=core.MAX_CHECK, is_static_call=True)
        root_ts = staticcall core.ORACLE.root_timestamp(self)
        assert block.timestamp <= root_ts + ((cfg >> 88) & core.MASK_32), "engine: stale market root"
        # The witness prices the root's inputs, the equity the oracle's marks: one snapshot only
        # if the root is at least as new as every mark of the book. A root older than a move
        # would price a fallen long at its old spot (an MM above the model's now) and
        # liquidate or flag a book the model calls healthy. Prices are bound above (a root
        # ahead of its marks carries other marks); this rule still refuses a root older than
        # marks re-signed at the same prices. A slice checks it in its loop (the word is read
        # there anyway); a flag or a clearing here.
        if fraction_wad == 0:
            for word: uint256 in words:
                # a market word's bits 0-63: when its mark was signed
                assert word & core.MASK_64 <= root_ts, "engine: marks newer than the market root"
            assert marked, UNMARKED
        # Check comes back as one dynamic tuple: its offset word, then 8 words before maintenance_wad
        model_mm: uint256 = extract32(out, 288, output_type=uint256)
        if equity >= convert(model_mm, int256):
            # No shortfall in the named scenarios. A liquidation stops here; a flag (fraction
            # 0) of a running clock clears it if the book is healthy in EVERY scenario, which
            # the named ones alone cannot show (the caller names the mildest): equity must
            # cover the isolated bound at the leaves' per-unit MM rates, proven with them
            # against the current market root. The exact model's margin never exceeds that
            # bound (subadditive, homogeneous) and no witness at this root exceeds the model,
            # so a cleared book cannot be liquidated before the marks or the root move; the
            # clock then restarts at the base discount, as on an honest MM.
            assert fraction_wad == 0 and core._since(header) != 0, "engine: witness scenarios show no shortfall"
            bound: uint256 = 0
            for i: uint256 in range(n, bound=core.MAX_POSITIONS):
                # a packed leaf's mm word is its 7th: mm_long in bits 0-127, mm_short in 128-255
                # (modules/market_leaf.vy); sizes are the stored ones
                size: int256 = extract32(witness, sizes_at + 32 + 32 * i, output_type=int256)
                mm_word: uint256 = extract32(witness, leaves_at + 224 + 224 * i, output_type=uint256)
                rate: uint256 = mm_word >> 128
                if size > 0:
                    rate = mm_word & core.MASK_128
                bound += (convert(abs(size), uint256) * rate + core.WAD - 1) // core.WAD
            assert equity >= convert(bound, int256), "engine: equity below the isolated bound"
            core._header[account] = core._with_since(header, 0)
            log IMarginEngine.Unflagged(account=account)
            return
        mm_cap = min(mm, model_mm)

    since: uint256 = core._episode_since(header, (cfg >> 88) & core.MASK_32)
    if since != core._since(header) or fraction_wad == 0:
        log IMarginEngine.Flagged(account=account, since=since)
    header = core._with_seen(header, since)
    # anyone, the owner too, may clear a clock as above; nobody flags or liquidates its own book
    if fraction_wad == 0:
        # the witness-checked flag (MarginEngine.flag forwards here): the clock only
        assert account != msg.sender, "engine: self-flag"
        core._header[account] = header
        return
    assert account != msg.sender, "engine: self-liquidation"
    lcfg: uint256 = core._liquidation
    disc_bps: uint256 = core._discount_bps(lcfg, since)
    f: uint256 = core._slice_fraction(lcfg, equity, mm_cap, disc_bps, fraction_wad)

    # Move the slice: apply each position's funding first (sizes change), then split it.
    slice_value: int256 = 0
    lheader: uint256 = core._header[msg.sender]
    ln: uint256 = core._count(lheader)
    lids: DynArray[uint256, core.MAX_POSITIONS] = core._load_ids(msg.sender, ln)
    lcash: int256 = core._cash(lheader)
    kept: DynArray[uint256, core.MAX_POSITIONS] = []
    # what both books are worth after the slice at these marks, as `_equity` counts them
    # (funding of every moved position is applied below, so it owes none): the account's
    # kept positions, and the liquidator's positions in the account's instruments
    kept_value: int256 = 0
    lvalue: int256 = 0
    # the liquidator's positions found among the account's instruments: all of its book
    # when this reaches `ln`, then its marks are these and no second oracle read is needed
    lseen: uint256 = 0
    # whether the slice opened or closed a position of the liquidator (its id words change)
    lids_changed: bool = False
    # whether any position moved: a slice whose parts all round to zero is paid nothing (V7)
    moved: bool = False
    # The loop decodes and re-encodes the packed positions inline (a helper call per field
    # costs more than the arithmetic). Bounds of its unchecked operations: stored sizes are
    # within int128 (`_set_position` checks every write), marks and funding indices come
    # from the oracle's signed 96-bit fields (|x| <= 2**95), and so does every stored last
    # index (written only from them); f <= WAD < 2**60. So a size times f, a mark or an
    # index difference stays below 2**224, and a part (size * f / WAD truncated, same sign,
    # |part| <= |size|) leaves a rest within int128.
    # a mark signed after the witness's root wraps its difference past 2**64 (signed times
    # are below 2**64; a market word's bits 0-63): checked after the loop, branchless in it
    late: uint256 = 0
    for i: uint256 in range(n, bound=core.MAX_POSITIONS):
        iid: uint256 = ids[i]
        word: uint256 = words[i]
        late |= unsafe_sub(root_ts, word & core.MASK_64)
        # `_word_mark` and `_word_findex` inlined (two internal calls a position)
        mark: int256 = unsafe_sub(convert(word >> 160, int256), core.BIAS_96)
        now_index: int256 = unsafe_sub(convert((word >> 64) & core.MASK_96, int256), core.BIAS_96)
        raw: uint256 = raws[i]
        size: int256 = unsafe_sub(convert(raw & core.MASK_128, int256), core.OFFSET_128)
        last: int256 = unsafe_sub(convert(raw >> 128, int256), core.OFFSET_128)
        if now_index != last:  # only perpetuals carry funding (size != 0: an open position)
            cash -= core._funding_owed(account, iid, size, last, now_index)
        part: int256 = size
        if f < core.WAD:
            # truncates towards zero: the liquidated account keeps the rounding remainder
            part = unsafe_div(unsafe_mul(size, convert(f, int256)), core.WAD_I)
        # `_floor_wad` inlined at the loop's three hot sites (an internal call each a position)
        v: int256 = unsafe_mul(part, mark)
        q: int256 = unsafe_div(v, core.WAD_I)
        if unsafe_mul(q, core.WAD_I) > v:
            q = unsafe_sub(q, 1)
        slice_value += q
        rest: int256 = unsafe_sub(size, part)
        if rest != 0:
            # rest and the funding index are within int128 (above): their offsets fit 128 bits
            core._position[account][iid] = convert(unsafe_add(rest, core.OFFSET_128), uint256) | (
                convert(unsafe_add(now_index, core.OFFSET_128), uint256) << 128
            )
            kept.append(iid)
            v = unsafe_mul(rest, mark)
            q = unsafe_div(v, core.WAD_I)
            if unsafe_mul(q, core.WAD_I) > v:
                q = unsafe_sub(q, 1)
            kept_value += q
        else:
            core._position[account][iid] = 0
        lraw: uint256 = core._position[msg.sender][iid]
        lsize: int256 = 0
        llast: int256 = 0
        if lraw != 0:
            lsize = unsafe_sub(convert(lraw & core.MASK_128, int256), core.OFFSET_128)
            llast = unsafe_sub(convert(lraw >> 128, int256), core.OFFSET_128)
            lseen += 1
        if part == 0:
            # untouched: its value and unapplied funding as they stand
            if lsize != 0:
                lvalue += core._floor_wad(unsafe_mul(lsize, mark)) + core._floor_wad(unsafe_mul(lsize, unsafe_sub(llast, now_index)))
        else:
            moved = True
            if lsize == 0:
                # the hard bound, not max_positions: lowering that parameter below existing
                # books must not make them impossible to liquidate
                assert len(lids) < core.MAX_POSITIONS, "engine: too many positions"
                lids.append(iid)
                lids_changed = True
            elif now_index != llast:
                lcash -= core._funding_owed(msg.sender, iid, lsize, llast, now_index)
            # checked: two int128 sizes can sum past int128 (`_set_position` reverts then)
            new_lsize: int256 = lsize + part
            core._set_position(msg.sender, iid, new_lsize, now_index)
            if new_lsize == 0:
                lids = core._without(lids, iid)
                lids_changed = True
            else:
                v = unsafe_mul(new_lsize, mark)
                q = unsafe_div(v, core.WAD_I)
                if unsafe_mul(q, core.WAD_I) > v:
                    q = unsafe_sub(q, 1)
                lvalue += q

    assert late <= core.MASK_64, "engine: marks newer than the market root"
    assert marked, UNMARKED
    # a slice that moves nothing (f below 1e18 / |size| on every position) earns no discount:
    # the liquidator is paid only for what it takes, the insurance fund takes no share (V7)
    discount: uint256 = 0
    if moved:
        discount = core._discount(disc_bps, f, mm_cap, equity)
    to_insurance: uint256 = discount * ((lcfg >> 48) & core.MASK_16) // core.BPS
    received: int256 = slice_value - convert(discount, int256)
    payment: int256 = received + convert(to_insurance, int256)
    assert payment <= max_payment_wad, "engine: payment above limit"
    cash += received
    lcash -= payment
    core._insurance += to_insurance

    # Liquidated account: margins scale exactly by (1 - f) (homogeneity), rounded up.
    new_n: uint256 = len(kept)
    keep: uint256 = core.WAD - f
    if new_n == 0:
        margins = 0
        header = core._with_since(header, 0)
    else:
        margins = core._scale_margins(margins, keep, core.WAD)
    header = core._with_count(header + 1, new_n)
    core._set_margins(account, margins, header & core.MASK_64)
    if new_n != n:
        # else every position stays and `kept` is `ids` in the same order: the words stand
        core._store_ids(account, kept, n)
    if new_n == 0 and cash < 0:
        cash = core._absorb_deficit(account, cash)

    # Liquidator: pending margins grow by f * the account's effective IM/MM (rounded up).
    # The slice's margins keep the account's basis: a day-old IM never looks fresh, and a
    # basis voided by a fraud proof (either side's) stays the merged one's.
    lmargins: uint256 = 0
    if ln > 0:
        # else an empty book: it owes no margin, whatever a leaf of it said
        lmargins = core._margins[msg.sender]
    if header & core.FLOOR_RAISED != 0:
        # a below-floor raise is in the account's IM (capped at its moment's rates): the
        # slice passes on at most f x the book's isolated bound at the current rates, as the
        # account's own new risk reads it. Not the mark: the liquidator's own margins are
        # its leaf's, and the mark would cap them too.
        sizes: DynArray[int256, core.MAX_POSITIONS] = []
        for raw: uint256 in raws:
            sizes.append(unsafe_sub(convert(raw & core.MASK_128, int256), core.OFFSET_128))
        bound_im: uint256 = 0
        bound_mm: uint256 = 0
        bound_im, bound_mm = staticcall core.ORACLE.isolated_margins(ids, sizes)
        im = min(im, bound_im)
    lmargins = core._void_basis_wins(
        core._add_margins(lmargins, core._ceil_mul(im, f), core._ceil_mul(mm, f), basis), lmargins >> 224, basis, cfg
    )
    if len(lids) == 0:
        # flattened by the slice: the empty book owes nothing
        lmargins = 0
    # The leaf floor rises to the slice's nonce: a leaf of the book before the slice (even
    # the current root's) would stamp the root's basis on the inherited margins.
    core._set_margins(msg.sender, lmargins, (lheader & core.MASK_64) + 1)
    lheader = core._with_cash(core._list(msg.sender, core._with_count(lheader + 1, len(lids))), lcash)
    core._header[msg.sender] = lheader
    if lids_changed:
        core._store_ids(msg.sender, lids, ln)
    # An empty book's IM is 0: a liquidator flattened by the slice must not keep negative
    # cash (that deficit would sit outside the waterfall).
    lok: bool = lcash >= 0
    if len(lids) > 0:
        lequity: int256 = lcash + lvalue
        if lseen != ln:
            # the liquidator holds instruments the account does not: their marks too
            lwords: DynArray[uint256, core.MAX_POSITIONS] = []
            lmarks_at: uint256 = 0
            lwords, lmarks_at = core._market_words(lids)
            assert block.timestamp <= lmarks_at + ((cfg >> 88) & core.MASK_32), "engine: stale marks"
            lequity = core._equity(msg.sender, lcash, lids, lwords)
            if lids_changed:
                # a book not within the account's (which, as every book, spans at most
                # MAX_UNITS underlyings) opened or closed a position: the registry refuses a
                # book on more underlyings than a fraud proof re-prices (V9)
                raw_call(core.REGISTRY.address, abi_encode(lids, method_id=method_id("check_book(uint256[])")), is_static_call=True)
        lim: uint256 = core._new_risk_im(msg.sender, lheader, lids, lmargins, cfg)
        lok = lequity >= convert(lim, int256)
    assert lok, "engine: liquidator below initial margin"

    # Clear the discount clock once the account is healthy again.
    if new_n > 0:
        new_equity: int256 = cash + kept_value
        new_mm: uint256 = (margins >> 112) & core.MASK_112
        if new_equity >= convert(new_mm, int256):
            header = core._with_since(header, 0)
            log IMarginEngine.Unflagged(account=account)
    core._header[account] = core._with_cash(header, cash)
    log IMarginEngine.Liquidation(
        account=account,
        liquidator=msg.sender,
        fraction_wad=f,
        slice_value_wad=slice_value,
        discount_wad=discount,
        insurance_wad=to_insurance,
        payment_wad=payment,
        state_nonce=header & core.MASK_64,
    )


#### SETTLEMENT ####


@external
def settle(account: address, instrument_id: uint256):
    """
    @notice Settles an account's position in an expired instrument at the oracle's signed
            settlement price (anyone; never paused, never waits for marks).
    @dev cash += size * payoff (future: price; call/put: intrinsic). If other positions stay,
         pending margins grow by the standalone rate of removing the leg (subadditivity:
         losing a hedge can raise risk).
    @param account The account.
    @param instrument_id The expired instrument.
    """
    self._delegated()
    price: uint256 = staticcall core.ORACLE.settlement_price(instrument_id)
    assert price > 0, "engine: no settlement price"
    size: int256 = 0
    last: int256 = 0
    size, last = core._get_position(account, instrument_id)
    assert size != 0, "engine: no position"
    terms: uint256 = core._terms[instrument_id]
    if terms == 0:
        inst: IInstrumentRegistry.Instrument = staticcall core.REGISTRY.instrument(instrument_id)
        # strikes are WAD prices, far below 2**240
        terms = 1 | (convert(inst.kind, uint256) << 8) | (inst.strike_wad << 16)
        core._terms[instrument_id] = terms
    kind: uint256 = (terms >> 8) & core.MASK_8
    strike: uint256 = terms >> 16
    payoff: uint256 = price
    if kind == convert(core.KIND_CALL, uint256):
        payoff = 0
        if price > strike:
            payoff = price - strike
    elif kind == convert(core.KIND_PUT, uint256):
        payoff = 0
        if strike > price:
            payoff = strike - price
    # else a future (the oracle never sets a settlement price for a perpetual): the price
    # rounds down: a long receives floor, a short pays ceil
    credit: int256 = core._mul_floor(size, convert(payoff, int256))
    core.external_pnl_wad += credit
    core._set_position(account, instrument_id, 0, 0)

    header: uint256 = core._header[account]
    cash: int256 = core._cash(header) + credit
    n: uint256 = core._count(header)
    ids: DynArray[uint256, core.MAX_POSITIONS] = core._without(core._load_ids(account, n), instrument_id)
    new_n: uint256 = len(ids)
    core._store_ids(account, ids, n)
    if new_n == 0:
        core._set_margins(account, 0, (header & core.MASK_64) + 1)
        header = core._with_since(header, 0)
        if cash < 0:
            cash = core._absorb_deficit(account, cash)
    else:
        # Removing a long leg is a short trade of the same size, and vice versa, so the
        # standalone rate of that trade bounds the rest's margin (subadditivity), but only
        # IM grows: new risk and withdrawals wait for a leaf of the rest. MM does
        # not: the leg's payoff is final, and an expired hedge stops hedging at expiry,
        # whether or not anyone settles it, so the order in which anyone settles a book's
        # legs never makes it liquidatable through its margin.
        add_im: uint256 = 0
        add_mm: uint256 = 0
        add_im, add_mm = staticcall core.ORACLE.side_rates(instrument_id, size < 0)
        core._margins[account] = core._add_margins(
            core._margins[account], core._ceil_mul(convert(abs(size), uint256), add_im), 0, block.timestamp
        )
    core._header[account] = core._with_cash(core._with_count(header + 1, new_n), cash)
    log IMarginEngine.Settlement(
        account=account,
        instrument_id=instrument_id,
        size_wad=size,
        settlement_price_wad=price,
        payoff_wad=credit,
    )

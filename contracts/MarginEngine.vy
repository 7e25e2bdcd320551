# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize gas
"""
@title MarginEngine
@custom:contract-name MarginEngine
@notice Portfolio-margin engine: holds one settlement ERC20 as collateral, books signed
        positions per account, fills EIP-712 maker orders, applies account leaves of the
        M-of-N signed epoch roots that RiskOracle holds, liquidates accounts below maintenance margin, settles expired
        instruments and applies perpetual funding lazily.
@dev Units: sizes and prices WAD; cash int256 WAD of settlement currency; token amounts are
     converted by SCALE = 10**(18 - decimals). Equity is computed here from the oracle's
     signed marks: equity = cash + sum(size * mark) - unapplied funding. IM and MM come from
     the last applied account leaf plus pending adjustments (per-unit standalone rates of every trade
     since, an upper bound by subadditivity). See docs/contracts.md.
     Funds invariant (exact, checked by the tests after every test):
         token.balanceOf(engine) * SCALE + external_pnl_wad + socialised_loss_wad
             == sum(cash_wad) + insurance_wad + fees_wad
     where external_pnl_wad is the net cash credited by settlement payoffs and funding (cash
     that no counterparty paid in the same transaction) and socialised_loss_wad the deficits
     written off after the insurance fund ran dry.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import pausable
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator
from .interfaces import IRiskOracle
from .interfaces import IInstrumentRegistry
from .interfaces import IMarginEngine
from .modules import engine_core as core

# core first: its storage layout is shared with the delegatecalled extension
initializes: core
# pausable second: the extension initialises (core, pausable) too, so `paused` shares its slot
initializes: pausable
initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: eip712_domain_separator

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
    eip712_domain_separator.eip712Domain,
    core.TOKEN,
    core.ORACLE,
    core.REGISTRY,
    core.SCALE,
    core.order_filled,
    core.account_count,
    core.account_at,
    core.socialised_loss_wad,
    core.external_pnl_wad,
)


# ABI copies of the events only the delegates log (from this address, via delegatecall):
# Vyper puts an imported event into the ABI only where it is logged. Same fields as
# IMarginEngine.vyi and snekmate's pausable; tests/engine/test_governance.py checks the ABIs agree.
event Withdrawal:
    account: indexed(address)
    amount: uint256
    debit_wad: uint256

event LeafApplied:
    account: indexed(address)
    state_nonce: uint256
    initial_margin_wad: uint256
    maintenance_margin_wad: uint256
    root_timestamp: uint256

event Liquidation:
    account: indexed(address)
    liquidator: indexed(address)
    fraction_wad: uint256
    slice_value_wad: int256
    discount_wad: uint256
    insurance_wad: uint256
    payment_wad: int256
    state_nonce: uint256  # the account's nonce after the liquidation

event Settlement:
    account: indexed(address)
    instrument_id: indexed(uint256)
    size_wad: int256
    settlement_price_wad: uint256
    payoff_wad: int256  # cash credited


event FeesWithdrawn:
    to: indexed(address)
    amount: uint256
    debit_wad: uint256

event SocialisedLossRepaid:
    amount_wad: uint256  # from collected fees
    total_wad: uint256  # socialised loss left

event Paused:
    account: address

event Unpaused:
    account: address


# Code that runs in this contract's storage via delegatecall, one contract per concern:
# margin (leaves, withdrawal under margin, liquidation, settlement) and the owner's functions
EXTENSION: public(immutable(address))
GOVERNANCE: public(immutable(address))


@deploy
def __init__(
    token: IERC20,
    oracle: IRiskOracle,
    registry: IInstrumentRegistry,
    extension: address,
    governance: address,
    trading: IMarginEngine.TradingParams,
    liquidation: IMarginEngine.LiquidationParams,
):
    """
    @notice Deploys the engine for one settlement token. The deployer becomes the owner.
    @param token Settlement ERC20 with 6, 8 or 18 decimals.
    @param oracle RiskOracle.
    @param registry InstrumentRegistry.
    @param extension MarginEngineExtension deployed with the same token, oracle, registry.
    @param governance MarginEngineGovernance deployed with the same token, oracle, registry.
    @param trading Initial trading parameters.
    @param liquidation Initial liquidation parameters.
    """
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    eip712_domain_separator.__init__("netmargin MarginEngine", "1")
    core.__init__(token, oracle, registry)
    EXTENSION = extension
    GOVERNANCE = governance
    core._set_trading(trading)
    core._set_liquidation(liquidation)


#### COLLATERAL ####


@external
def deposit(amount: uint256):
    """
    @notice Deposits settlement tokens as cash. Never paused, never waits for the oracle.
    @dev Credits what actually arrived (fee-on-transfer tokens); accepts tokens that return
         nothing from transferFrom.
    @param amount Token units to pull from msg.sender (needs an allowance).
    """
    received: uint256 = self._pull(amount)
    credit: uint256 = received * core.SCALE
    header: uint256 = core._header[msg.sender]
    core._header[msg.sender] = core._with_cash(header, core._cash(header) + convert(credit, int256))
    log IMarginEngine.Deposit(account=msg.sender, amount=received, credit_wad=credit)


@external
def withdraw(amount: uint256):
    """
    @notice Withdraws settlement tokens. Without positions: always allowed, up to all cash.
            With positions: not paused, fresh marks and margin basis, and equity >= IM after.
    @dev Runs in MarginEngineExtension (delegatecall).
    @param amount Token units to send to msg.sender.
    """
    raw_call(EXTENSION, msg.data, is_delegate_call=True)


@external
def withdraw_with_leaf(amount: uint256, leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, 32]):
    """
    @notice Applies an account leaf of the current epoch root (`apply_leaf`), then withdraws.
    @param amount Token units to send to msg.sender.
    @param leaf The leaf (usually the caller's own).
    @param proof Its Merkle proof.
    """
    raw_call(EXTENSION, msg.data, is_delegate_call=True)


@external
def fund_insurance(amount: uint256):
    """
    @notice Adds settlement tokens to the insurance fund (anyone).
    @param amount Token units to pull from msg.sender.
    """
    received: uint256 = self._pull(amount)
    credit: uint256 = received * core.SCALE
    core._insurance += credit
    log IMarginEngine.InsuranceFunded(sender=msg.sender, amount=received, credit_wad=credit)


@external
def withdraw_fees(amount: uint256, to: address):
    """
    @notice Owner withdraws collected taker fees. Fees are junior to depositors: they first
            repay any socialised loss, and only what is left can be withdrawn.
    @dev Runs in MarginEngineGovernance (delegatecall).
    @param amount Token units (0 only repays).
    @param to Recipient.
    """
    raw_call(GOVERNANCE, msg.data, is_delegate_call=True)


#### TRADING ####


@external
def fill_with_leaf(
    order: IMarginEngine.Order,
    signature: Bytes[65],
    fill_size_wad: uint256,
    leaf: IRiskOracle.AccountLeaf,
    proof: DynArray[bytes32, 32],
):
    """
    @notice Applies an account leaf of the current epoch root (`apply_leaf`; usually the
            taker's own), then fills as `fill`.
    """
    # the extension's fill_with_leaf (same calldata) applies the leaf only
    raw_call(EXTENSION, msg.data, is_delegate_call=True)
    self._fill(order, signature, fill_size_wad)


@external
def fill(order: IMarginEngine.Order, signature: Bytes[65], fill_size_wad: uint256):
    """
    @notice Fills `fill_size_wad` of a maker's signed order at its limit price; msg.sender is
            the taker. Cash moves at the fill price; the taker pays the taker fee. The price
            must be within the instrument's larger per-unit IM rate of its mark. Each side
            must end with equity >= IM at fresh marks, unpaused, unless its trade is
            risk-reducing (shrinks a one-position book towards zero) at or better than the
            mark for it: that never waits for the oracle and works while paused.
    @param order The maker's order.
    @param signature The maker's EIP-712 signature (65 bytes r, s, v; or 64-byte EIP-2098).
    @param fill_size_wad Size to fill, <= the order's remaining size.
    """
    self._fill(order, signature, fill_size_wad)


@internal
def _fill(order: IMarginEngine.Order, signature: Bytes[65], fill_size_wad: uint256):
    maker: address = order.account
    assert maker != msg.sender, "engine: self-trade"
    assert fill_size_wad > 0, "engine: zero fill size"
    assert order.deadline >= block.timestamp, "engine: order expired"
    digest: bytes32 = self._order_digest(order)
    filled: uint256 = core.order_filled[digest]
    assert filled != core.CANCELLED, "engine: order cancelled"
    assert fill_size_wad <= order.size_wad - filled, "engine: fill exceeds remaining size"
    signer: address = ecdsa._recover_sig(digest, signature)
    assert signer == maker and signer != empty(address), "engine: invalid signature"
    core.order_filled[digest] = filled + fill_size_wad

    iid: uint256 = order.instrument_id
    inst: IInstrumentRegistry.TradingTerms = staticcall core.REGISTRY.trading_terms(iid)
    # a delisted instrument still lets holders reduce (checked on the new-risk path only)
    assert inst.expiry == 0 or inst.expiry > block.timestamp, "engine: instrument expired"

    # One notional, computed once and moved as the same integer on both sides.
    notional: uint256 = fill_size_wad * order.limit_price_wad // core.WAD
    cfg: uint256 = core._trading
    # fee rounds up, against the taker
    fee: uint256 = (notional * ((cfg >> 8) & core.MASK_16) + core.BPS - 1) // core.BPS
    q: int256 = convert(fill_size_wad, int256)
    pay: int256 = convert(notional, int256)
    maker_delta: int256 = q
    if not order.is_buy:
        maker_delta = -q
        pay = -pay
    # pay > 0: the maker buys and pays
    rates: IRiskOracle.Rates = empty(IRiskOracle.Rates)
    rates_at: uint256 = 0  # not checked: marks_at (same signed batch) bounds it in _trade_side
    rates, rates_at = staticcall core.ORACLE.rates(iid)
    price: uint256 = order.limit_price_wad
    self._trade_side(maker, iid, maker_delta, -pay, price, rates, cfg, True, inst.active)
    self._trade_side(msg.sender, iid, -maker_delta, pay - convert(fee, int256), price, rates, cfg, False, inst.active)
    assert (cfg >> 128) + fee <= core.MASK_128, "engine: fees above 2**128 - 1"
    core._trading = cfg + (fee << 128)
    log IMarginEngine.OrderFilled(
        order_hash=digest,
        maker=maker,
        taker=msg.sender,
        instrument_id=iid,
        maker_is_buy=order.is_buy,
        size_wad=fill_size_wad,
        price_wad=order.limit_price_wad,
        notional_wad=notional,
        fee_wad=fee,
    )


@external
def cancel_order(order: IMarginEngine.Order):
    """
    @notice The maker cancels an order; its unfilled part can no longer be filled.
    @param order The order as signed.
    """
    assert msg.sender == order.account, "engine: caller is not the maker"
    digest: bytes32 = self._order_digest(order)
    assert core.order_filled[digest] != core.CANCELLED, "engine: order cancelled"
    core.order_filled[digest] = core.CANCELLED
    log IMarginEngine.OrderCancelled(order_hash=digest, maker=msg.sender)


#### ACCOUNT LEAVES ####


@external
def apply_leaf(leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, 32]):
    """
    @notice Applies an account's leaf of the engine's current epoch root (anyone may: the
            user before new risk, a liquidator, a keeper). The effective margins become the
            leaf's IM and MM plus the pending bounds of the trades since its nonce; the
            root's timestamp becomes the margin basis.
    @dev Runs in the extension. Reverts unless the oracle verifies the proof against this
         engine's current root, the leaf's nonce is neither in the future nor older than the
         book's last proportional shrink, the root is newer than the basis, and (at the
         current nonce) the positions hash equals the book's.
    @param leaf The account leaf.
    @param proof Its Merkle proof (sibling hashes, leaf to root).
    """
    raw_call(EXTENSION, msg.data, is_delegate_call=True)


#### LIQUIDATION AND SETTLEMENT (delegatecalled to EXTENSION) ####


@external
def flag(account: address, witness: Bytes[core.MAX_WITNESS]):
    """
    @notice Records when an account became liquidatable (starts the discount clock, or
            confirms a running one), or clears the record once it is healthy again. Anyone
            may call. A clock not confirmed within max_liquidation_price_age restarts.
    @dev "Liquidatable" is equity < the applied MM (`health`). Once the oracle has a
         verifier, starting or confirming the clock also needs the model's witness, as a
         liquidation does: the call goes on as `liquidate(account, 0, ...)`, which checks
         the witness and only records the clock. Otherwise a rogue root's MM could start a
         healthy book's clock and hand its liquidator the grown discount at the first real
         dip. Clearing needs no witness (a healthy applied MM only delays the auction);
         below the applied MM, the forwarded call clears a running clock when the witness
         shows no shortfall and the equity covers the book's isolated bound at the witness
         leaves' rates (the model calls it healthy in every scenario: MarginEngineExtension).
    @param account The account.
    @param witness As for `liquidate` (ignored before a verifier is registered and when
           the account is healthy).
    """
    header: uint256 = core._header[account]
    h: IMarginEngine.Health = core._health(account)
    if h.liquidatable:
        window: uint256 = (core._trading >> 88) & core.MASK_32
        assert block.timestamp <= h.marks_updated_at + window, "engine: stale marks"
        if staticcall core.ORACLE.verifier() != empty(address):
            raw_call(EXTENSION, concat(method_id("liquidate(address,uint256,int256,uint256,bytes)"),
                                       abi_encode(account, empty(uint256), empty(int256), header & core.MASK_64, witness)),
                     is_delegate_call=True)
            return
        # starts the clock, or confirms it is still running (keepers re-flag within the
        # liquidation price age during a long episode)
        since: uint256 = core._episode_since(header, window)
        core._header[account] = core._with_seen(header, since)
        log IMarginEngine.Flagged(account=account, since=since)
    else:
        assert core._since(header) != 0, "engine: account is healthy"
        core._header[account] = core._with_since(header, 0)
        log IMarginEngine.Unflagged(account=account)


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
            restores equity >= MM * (1 + buffer), unless the rest would be dust. MM here is
            the smaller of the applied MM and the model's: the oracle's ScenarioVerifier
            re-prices the stored book in the witness's scenarios, and the equity must be
            below that too (no signed margin alone liquidates a book the model calls healthy).
    @param account The account to liquidate.
    @param fraction_wad Requested fraction (WAD, <= 1e18); capped, and raised to the whole
           book while equity <= discount * MM (a partial slice would lower the margin ratio).
           0: nothing is taken; the discount clock starts or is confirmed (`flag` with a witness),
           or a running one is cleared (a witness without shortfall, equity >= isolated bound).
    @param max_payment_wad Most the liquidator accepts to pay (price limit; may be negative).
    @param expected_state_nonce The account's state nonce the liquidator priced.
    @param witness ScenarioVerifier.check_market's call data (selector and abi-encoded
           arguments) for the book:
           this engine, its sizes and market leaves in storage order (`account(a)`), one
           multiproof against the current epoch market root, the scenarios that show its
           loss (offchain/chain/witness.py; the keeper names the binding ones).
    @dev Returns nothing (the fraction taken is in the Liquidation event): a return buffer
         would lie above the witness argument's bound, and memory is paid up to the highest
         byte touched (~2k gas a liquidation).
    """
    raw_call(EXTENSION, msg.data, is_delegate_call=True)


@external
def settle(account: address, instrument_id: uint256):
    """
    @notice Settles an account's position in an expired instrument at the oracle's signed
            settlement price (anyone; never paused, never waits for marks).
    @param account The account.
    @param instrument_id The expired instrument.
    """
    raw_call(EXTENSION, msg.data, is_delegate_call=True)


#### GOVERNANCE ####


@external
def pause():
    """
    @notice Owner stops new risk (deposits, reductions, settlement, liquidation stay open).
    @dev Runs in MarginEngineGovernance (delegatecall).
    """
    raw_call(GOVERNANCE, msg.data, is_delegate_call=True)


@external
def unpause():
    """
    @notice Owner lifts the pause.
    @dev Runs in MarginEngineGovernance (delegatecall).
    """
    raw_call(GOVERNANCE, msg.data, is_delegate_call=True)


@external
def note_void():
    """
    @notice The oracle tells the engine it voided one of its roots (a proven fraud proof):
            from then on new risk asks the oracle whether the margin basis is void.
    @dev Here, not in the extension: one bit, and a fraud proof pays no delegatecall for it.
    """
    assert msg.sender == core.ORACLE.address, "engine: only the oracle notes a void"
    core._trading |= core.VOID_SEEN


@external
def set_trading_params(params: IMarginEngine.TradingParams):
    """
    @notice Owner sets trading parameters.
    @param params See IMarginEngine.TradingParams.
    """
    raw_call(GOVERNANCE, msg.data, is_delegate_call=True)


@external
def set_liquidation_params(params: IMarginEngine.LiquidationParams):
    """
    @notice Owner sets liquidation parameters.
    @param params See IMarginEngine.LiquidationParams.
    """
    raw_call(GOVERNANCE, msg.data, is_delegate_call=True)


#### VIEWS ####


@view
@external
def trading_params() -> IMarginEngine.TradingParams:
    """@return The trading parameters."""
    cfg: uint256 = core._trading
    return IMarginEngine.TradingParams(
        max_positions=cfg & core.MASK_8,
        taker_fee_bps=(cfg >> 8) & core.MASK_16,
        max_price_age=(cfg >> 24) & core.MASK_32,
        max_margin_basis_age=(cfg >> 56) & core.MASK_32,
        max_liquidation_price_age=(cfg >> 88) & core.MASK_32,
    )


@view
@external
def liquidation_params() -> IMarginEngine.LiquidationParams:
    """@return The liquidation parameters."""
    lcfg: uint256 = core._liquidation
    return IMarginEngine.LiquidationParams(
        discount_base_bps=lcfg & core.MASK_16,
        discount_slope_bps_per_hour=(lcfg >> 16) & core.MASK_16,
        discount_max_bps=(lcfg >> 32) & core.MASK_16,
        insurance_share_bps=(lcfg >> 48) & core.MASK_16,
        buffer_bps=(lcfg >> 64) & core.MASK_16,
        dust_mm_wad=(lcfg >> 80) & core.MASK_112,
    )


@view
@external
def insurance_wad() -> uint256:
    """@return The insurance fund (WAD)."""
    return core._insurance & ~core.INSURANCE_SET


@view
@external
def fees_wad() -> uint256:
    """@return Taker fees collected and not yet withdrawn (WAD)."""
    return core._trading >> 128


@view
@external
def cash_wad(account: address) -> int256:
    """@return The account's signed cash (WAD)."""
    return core._cash(core._header[account])


@view
@external
def state_nonce(account: address) -> uint256:
    """@return The account's state nonce (bumped on every position change)."""
    return core._header[account] & core.MASK_64


@view
@external
def pending_total(account: address) -> uint256:
    """
    @return Packed cumulative pending margin: IM counter (bits 0-95) | MM counter (96-191)
            | oldest nonce a leaf may be computed for (192-255). A leaf carries the counters
            at its nonce (docs/contracts.md, "Account leaves").
    """
    return core._pending_total(core._margins[account], core._pending_offset[account])


@view
@external
def position(account: address, instrument_id: uint256) -> int256:
    """@return The account's size in the instrument (core.WAD, signed)."""
    size: int256 = 0
    last: int256 = 0
    size, last = core._get_position(account, instrument_id)
    return size


@view
@external
def order_hash(order: IMarginEngine.Order) -> bytes32:
    """@return The EIP-712 digest the maker signs (also the key of order_filled)."""
    return self._order_digest(order)


@view
@external
def account(account: address) -> IMarginEngine.AccountView:
    """@return The account's full state."""
    header: uint256 = core._header[account]
    n: uint256 = core._count(header)
    ids: DynArray[uint256, core.MAX_POSITIONS] = core._load_ids(account, n)
    positions: DynArray[IMarginEngine.PositionView, core.MAX_POSITIONS] = []
    for iid: uint256 in ids:
        size: int256 = 0
        last: int256 = 0
        size, last = core._get_position(account, iid)
        positions.append(
            IMarginEngine.PositionView(instrument_id=iid, size_wad=size, last_funding_index_wad=last)
        )
    margins: uint256 = core._margins[account]
    return IMarginEngine.AccountView(
        cash_wad=core._cash(header),
        state_nonce=header & core.MASK_64,
        positions=positions,
        initial_margin_wad=margins & core.MASK_112,
        maintenance_margin_wad=(margins >> 112) & core.MASK_112,
        margin_basis_timestamp=margins >> 224,
        liquidatable_since=core._since(header),
    )


@view
@external
def health(account: address) -> IMarginEngine.Health:
    """@return Equity, effective IM and MM, whether liquidatable, and the marks' age basis."""
    return core._health(account)


@view
@external
def liquidation_preview(account: address, fraction_wad: uint256) -> IMarginEngine.LiquidationPreview:
    """
    @notice What `liquidate(account, fraction_wad, ...)` would do now. The slice value here
            is f * book value; liquidate() rounds each position's slice towards zero, so
            its figures can differ by a few wei per position.
    @return The preview; fraction 0 if the account is not liquidatable.
    """
    preview: IMarginEngine.LiquidationPreview = empty(IMarginEngine.LiquidationPreview)
    h: IMarginEngine.Health = core._health(account)
    if not h.liquidatable or fraction_wad == 0:
        return preview
    lcfg: uint256 = core._liquidation
    since: uint256 = core._episode_since(core._header[account], (core._trading >> 88) & core.MASK_32)
    disc_bps: uint256 = core._discount_bps(lcfg, since)
    f: uint256 = core._slice_fraction(lcfg, h.equity_wad, h.mm_wad, disc_bps, min(fraction_wad, core.WAD))
    slice_value: int256 = core._mul_floor(h.position_value_wad, convert(f, int256))
    discount: uint256 = core._discount(disc_bps, f, h.mm_wad, h.equity_wad)
    to_insurance: uint256 = discount * ((lcfg >> 48) & core.MASK_16) // core.BPS
    preview.fraction_wad = f
    preview.slice_value_wad = slice_value
    preview.discount_wad = discount
    preview.insurance_wad = to_insurance
    preview.payment_wad = slice_value - convert(discount, int256) + convert(to_insurance, int256)
    preview.discount_bps = disc_bps
    return preview


#### INTERNAL: TRADING ####


@internal
def _trade_side(
    account: address,
    iid: uint256,
    delta: int256,
    cash_delta: int256,
    price: uint256,
    rates: IRiskOracle.Rates,
    cfg: uint256,
    is_maker: bool,
    active: bool,
):
    """
    @dev Books one side of a fill: position, cash, margins, nonce, then the margin check.
         Two rules hold on every path: the price is within the instrument's larger per-unit
         IM rate of its mark, and a side that trades worse than the mark (value leaves its
         account) needs what a withdrawal needs: no pause, fresh marks and margin basis, and
         equity >= IM afterwards. Only a side trading at or better than the mark may reduce
         without fresh data, and then only if its shortfall does not deepen (a book in
         deficit: on marks within max_liquidation_price_age).
    """
    header: uint256 = core._header[account]
    n: uint256 = core._count(header)
    # The book's ids (`_load_ids` inlined) and position words, read once (the margin check
    # prices every one) and kept in memory for the equity and the nonce ring's positions hash;
    # k: this instrument's index.
    ids: DynArray[uint256, core.MAX_POSITIONS] = []
    raws: DynArray[uint256, core.MAX_POSITIONS] = []
    k: uint256 = n
    word: uint256 = 0
    for i: uint256 in range(n, bound=core.MAX_POSITIONS):
        # i < 32: unchecked shifts and masks
        if i & 7 == 0:
            word = core._id_words[account][i >> 3]
        else:
            word = word >> 32
        x: uint256 = word & core.MASK_32
        if x == iid:
            k = i
        ids.append(x)
        raws.append(core._position[account][x])
    size: int256 = 0
    last: int256 = 0
    if k < n:
        size, last = core._get_position(account, iid)
    new_size: int256 = size + delta
    # Risk-reducing: the whole book is this one position and it moves towards zero.
    reducing: bool = n == 1 and size != 0 and (
        new_size == 0 or (abs(new_size) < abs(size) and (new_size > 0) == (size > 0))
    )
    # `ids` becomes the book to price: the current one plus a position being opened.
    margins: uint256 = 0
    if k == n:
        ids.append(iid)
        raws.append(0)
        assert n < cfg & core.MASK_8, "engine: too many positions"
        if n >= core.MAX_UNITS:
            # past MAX_UNITS positions, the registry refuses a book on more underlyings than
            # a fraud proof re-prices (its leaf would be out of every proof's reach: V9)
            raw_call(core.REGISTRY.address, abi_encode(ids, method_id=method_id("check_book(uint256[])")), is_static_call=True)
    if n == 0:
        # an empty book owes no margin, whatever a leaf of it said: it never needs one to
        # trade (its basis starts with this trade)
        core._set_margins(account, 0, 0)
    else:
        margins = core._margins[account]

    # One batched oracle read prices the whole book.
    words: DynArray[uint256, core.MAX_POSITIONS] = []
    marks_at: uint256 = 0
    words, marks_at = core._market_words(ids)
    mark: int256 = core._word_mark(words[k])
    p: int256 = convert(price, int256)
    if is_maker:
        # both sides trade at one price and one mark: checked once
        assert abs(p - mark) <= convert(max(rates.im_long_wad, rates.im_short_wad), int256), "engine: price too far from mark"
    # buying above the mark or selling below it moves value out of this account
    pays_away: bool = (delta > 0 and p > mark) or (delta < 0 and p < mark)

    cash_before: int256 = core._cash(header)
    fk: int256 = core._word_findex(words[k])
    equity_before: int256 = 0
    if reducing:
        # the book is this one position: `_equity`'s two terms
        equity_before = cash_before + core._mul_floor(size, mark) + core._mul_floor(size, last - fk)
        # a book in deficit passes its loss to the insurance fund as it reduces: only at
        # marks a liquidation would accept (else, on marks of any age, its owner could
        # crystallise an old deficit after the price has recovered)
        if equity_before < 0:
            assert block.timestamp <= marks_at + ((cfg >> 88) & core.MASK_32), "engine: stale marks"
    if not reducing:
        assert active, "engine: instrument not active"
    if pays_away or not reducing:
        # What new risk and any value leaving an account need: no pause and marks no older
        # than max_price_age (`marks_at` is the oldest update in the book, which includes the
        # traded instrument, so it also bounds the age of its rates, posted in the same signed
        # batch). `paused` is mirrored in the trading word (`core.PAUSED_BIT`): only a paused
        # engine reads its slot, to revert as pausable does.
        if cfg & core.PAUSED_BIT != 0:
            pausable._require_not_paused()
        assert block.timestamp <= marks_at + ((cfg >> 24) & core.MASK_32), "engine: stale marks"

    # Apply this position's funding before its size changes.
    cash: int256 = cash_before + cash_delta
    if fk != last:  # else nothing is owed (`_funding_owed`)
        cash -= core._funding_owed(account, iid, size, last, fk)
    core._set_position(account, iid, new_size, fk)
    # the word just written (0 once closed; its fields range-checked there)
    if new_size == 0:
        raws[k] = 0
    else:
        raws[k] = convert(convert(unsafe_add(new_size, core.OFFSET_128), bytes32), uint256) | (convert(convert(unsafe_add(fk, core.OFFSET_128), bytes32), uint256) << 128)
    new_n: uint256 = n
    if k == n:
        new_n = n + 1
        core._store_ids(account, ids, n)
    elif new_size == 0:
        new_n = n - 1
        core._store_ids(account, core._without(ids, iid), n)
    header = core._with_count(header + 1, new_n)

    mm_before: uint256 = (margins >> 112) & core.MASK_112
    if reducing:
        if new_n == 0:
            # an empty book needs no margin: reset margins and the basis exactly
            margins = 0
            header = core._with_since(header, 0)
        else:
            # homogeneity: margins scale by |new| / |old|, rounded up
            num: uint256 = convert(abs(new_size), uint256)
            den: uint256 = convert(abs(size), uint256)
            margins = core._scale_margins(margins, num, den)
        core._set_margins(account, margins, header & core.MASK_64)
    else:
        # New risk: the trade's standalone rates are added (pending, until a leaf)
        q: uint256 = convert(abs(delta), uint256)
        add_im: uint256 = rates.im_short_wad
        add_mm: uint256 = rates.mm_short_wad
        if delta > 0:
            add_im = rates.im_long_wad
            add_mm = rates.mm_long_wad
        margins = core._add_margins(margins, core._ceil_mul(q, add_im), core._ceil_mul(q, add_mm), block.timestamp)
        core._margins[account] = margins
    # one pass over the book in memory (ids matches marks and raws; a closed position's word
    # is 0): the equity after, and the positions hash the nonce ring records
    equity: int256 = 0
    value: int256 = 0  # unused
    book_hash: bytes32 = empty(bytes32)
    equity, value, book_hash = core._book_equity(cash, ids, raws, words, True)
    core._record_nonce(account, header, margins, book_hash)

    if reducing:
        im_after: int256 = convert(margins & core.MASK_112, int256)
        if pays_away:
            # value leaves: the IM that new risk must keep (the escape hatch past the basis age)
            im_after = convert(core._new_risk_im(account, header, ids, margins, cfg), int256)
        mm_after: uint256 = (margins >> 112) & core.MASK_112
        if equity < im_after:
            # value leaves: below the IM new risk must keep
            self._require_im(not pays_away, is_maker)
            # At or better than the mark (a stale one, or while paused): the shortfall
            # (MM - equity) may not grow, and equity may not go below min(equity before, 0)
            # (the taker fee is the only value that leaves).
            ok: bool = equity - convert(mm_after, int256) >= equity_before - convert(mm_before, int256) and equity >= min(equity_before, 0)
            if is_maker:
                assert ok, "engine: maker reduction deepens shortfall"
            else:
                assert ok, "engine: taker reduction deepens shortfall"
        if new_n == 0 and cash < 0:
            # a bankrupt book closed at the mark: the deficit goes through the waterfall
            cash = core._absorb_deficit(account, cash)
        core._header[account] = core._with_cash(header, cash)
        return

    # New risk: equity >= IM after (listing, pause, marks and basis checked above).
    # equity >= IM is asserted below, so the account is healthy: clear the discount clock
    core._header[account] = core._with_cash(core._list(account, core._with_since(header, 0)), cash)
    im: uint256 = core._new_risk_im(account, header, ids, margins, cfg)
    self._require_im(equity >= convert(im, int256), is_maker)


@internal
@pure
def _require_im(ok: bool, is_maker: bool):
    """@dev Reverts naming the side unless `ok` (equity >= the IM that applies): one site each."""
    if is_maker:
        assert ok, "engine: maker below initial margin"
    assert ok, "engine: taker below initial margin"


@internal
@view
def _order_digest(order: IMarginEngine.Order) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(
                core.ORDER_TYPEHASH,
                order.account,
                order.instrument_id,
                order.is_buy,
                order.size_wad,
                order.limit_price_wad,
                order.order_nonce,
                order.deadline,
            )
        )
    )


#### INTERNAL: core.TOKEN AND PARAMETERS ####


@internal
def _pull(amount: uint256) -> uint256:
    """@dev transferFrom msg.sender; returns what actually arrived."""
    assert amount > 0, "engine: zero amount"
    before: uint256 = staticcall core.TOKEN.balanceOf(self)
    assert extcall core.TOKEN.transferFrom(msg.sender, self, amount, default_return_value=True), "engine: transfer failed"
    received: uint256 = staticcall core.TOKEN.balanceOf(self) - before
    assert received > 0, "engine: nothing received"
    return received

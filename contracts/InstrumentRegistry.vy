# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title InstrumentRegistry
@custom:contract-name InstrumentRegistry
@license MIT
@notice Owner-managed list of the derivatives netmargin trades: futures, perpetuals,
        European calls and puts on an underlying (e.g. "BTC"). Ids are sequential from 1
        and never reused. Instruments can be delisted by the owner and retired by anyone
        once expired; they are never deleted, so old ids keep resolving.
@dev Implements `IInstrumentRegistry` (the agreement with MarginEngine and RiskOracle).
     Ownership is two-step (snekmate `ownable_2step`).
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from interfaces import IInstrumentRegistry

implements: IInstrumentRegistry

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


#### CONSTANTS ####

KIND_FUTURE: public(constant(uint8)) = 0
KIND_PERPETUAL: public(constant(uint8)) = 1
KIND_CALL: public(constant(uint8)) = 2
KIND_PUT: public(constant(uint8)) = 3

# Upper bound of one `instruments(...)` page (bounds the loop).
MAX_PAGE: constant(uint256) = 64
# Positions of a book (MarginEngine's MAX_POSITIONS) and the underlyings it may span: what a
# fraud proof re-prices (FraudProofs' and the ScenarioVerifier's MAX_UNITS), `check_book`.
MAX_BOOK: constant(uint256) = 32
MAX_BOOK_UNITS: public(constant(uint256)) = 8
# Packed terms word: expiry (bits 0-63) | kind (64-71) | active (bit 72) | listed (bit 73).
MASK_64: constant(uint256) = 2**64 - 1
ACTIVE_BIT: constant(uint256) = 2**72
LISTED_BIT: constant(uint256) = 2**73


#### STORAGE ####

# Number of instruments ever listed; also the latest id.
instrument_count: public(uint256)
# id -> instrument, split so that a trade reads one slot (`trading_terms`): the packed
# terms word (see LISTED_BIT; non-zero exactly for ids 1..instrument_count), and the
# underlying and strike, which only `instrument` reads.
_terms: HashMap[uint256, uint256]
_underlying: HashMap[uint256, bytes32]
_strike: HashMap[uint256, uint256]
# keccak(underlying, kind, strike, expiry) -> id, to refuse listing the same contract twice.
instrument_id_of: public(HashMap[bytes32, uint256])


#### EVENTS ####

event InstrumentListed:
    instrument_id: indexed(uint256)
    underlying: indexed(bytes32)
    kind: uint8
    strike_wad: uint256
    expiry: uint256

event InstrumentDelisted:
    instrument_id: indexed(uint256)

event InstrumentRetired:
    instrument_id: indexed(uint256)
    caller: indexed(address)


#### CONSTRUCTOR ####

@deploy
def __init__():
    """
    @notice The deployer becomes the owner.
    """
    ownable.__init__()
    ownable_2step.__init__()


#### EXTERNAL: OWNER ####

@external
def list_instrument(underlying: bytes32, kind: uint8, strike_wad: uint256, expiry: uint256) -> uint256:
    """
    @notice List a new instrument and return its id.
    @dev Futures need an expiry in the future and no strike; perpetuals need neither;
         calls and puts need a strike > 0 and an expiry in the future.
    @param underlying Underlying symbol, right-padded bytes32 (e.g. b"BTC").
    @param kind 0 future, 1 perpetual, 2 call, 3 put.
    @param strike_wad Option strike in WAD; 0 for futures and perpetuals.
    @param expiry Unix seconds; 0 for perpetuals.
    @return uint256 The new instrument id.
    """
    ownable._check_owner()
    assert underlying != empty(bytes32), "registry: empty underlying"
    assert kind <= KIND_PUT, "registry: unknown kind"
    if kind == KIND_PERPETUAL:
        assert strike_wad == 0, "registry: perpetual takes no strike"
        assert expiry == 0, "registry: perpetual takes no expiry"
    else:
        assert expiry > block.timestamp, "registry: expiry not in the future"
        assert expiry <= MASK_64, "registry: expiry above 2**64 - 1"
        if kind == KIND_FUTURE:
            assert strike_wad == 0, "registry: future takes no strike"
        else:
            assert strike_wad > 0, "registry: option needs a strike"
            # the packed market leaf holds a strike in 128 bits (modules/market_leaf.vy)
            assert strike_wad < 2**128, "registry: strike above 2**128 - 1"

    key: bytes32 = keccak256(abi_encode(underlying, kind, strike_wad, expiry))
    assert self.instrument_id_of[key] == 0, "registry: instrument already listed"

    instrument_id: uint256 = self.instrument_count + 1
    self.instrument_count = instrument_id
    self.instrument_id_of[key] = instrument_id
    self._terms[instrument_id] = expiry | (convert(kind, uint256) << 64) | ACTIVE_BIT | LISTED_BIT
    self._underlying[instrument_id] = underlying
    if strike_wad != 0:
        self._strike[instrument_id] = strike_wad
    log InstrumentListed(
        instrument_id=instrument_id, underlying=underlying, kind=kind, strike_wad=strike_wad, expiry=expiry
    )
    return instrument_id


@external
def delist(instrument_id: uint256):
    """
    @notice Stop trading an instrument (it stays readable and settleable).
    @param instrument_id The instrument to delist.
    """
    ownable._check_owner()
    terms: uint256 = self._known_terms(instrument_id)
    assert terms & ACTIVE_BIT != 0, "registry: instrument not active"
    self._terms[instrument_id] = terms & ~ACTIVE_BIT
    log InstrumentDelisted(instrument_id=instrument_id)


#### EXTERNAL: PERMISSIONLESS ####

@external
def retire_expired(instrument_id: uint256):
    """
    @notice Mark an expired future or option inactive; anyone may call it.
    @param instrument_id The expired instrument.
    """
    terms: uint256 = self._known_terms(instrument_id)
    assert terms & ACTIVE_BIT != 0, "registry: instrument not active"
    assert self._kind(terms) != KIND_PERPETUAL, "registry: perpetual never expires"
    assert block.timestamp >= terms & MASK_64, "registry: not expired yet"
    self._terms[instrument_id] = terms & ~ACTIVE_BIT
    log InstrumentRetired(instrument_id=instrument_id, caller=msg.sender)


#### VIEWS ####

@view
@external
@reentrant
def instrument(instrument_id: uint256) -> IInstrumentRegistry.Instrument:
    """
    @notice One instrument; reverts "registry: unknown instrument" for ids never listed.
    """
    return self._instrument(instrument_id, self._known_terms(instrument_id))


@view
@external
@reentrant
def trading_terms(instrument_id: uint256) -> IInstrumentRegistry.TradingTerms:
    """
    @notice What a trade checks (one storage read); reverts "registry: unknown instrument"
            for ids never listed.
    """
    terms: uint256 = self._known_terms(instrument_id)
    return IInstrumentRegistry.TradingTerms(expiry=terms & MASK_64, active=terms & ACTIVE_BIT != 0)


@view
@external
@reentrant
def instruments(first_id: uint256, count: uint256) -> DynArray[IInstrumentRegistry.Instrument, MAX_PAGE]:
    """
    @notice A page of instruments `first_id, first_id + 1, ...` (at most MAX_PAGE),
            cut at the last listed id; for keepers rebuilding their instrument table.
    """
    assert first_id >= 1, "registry: ids start at 1"
    assert count <= MAX_PAGE, "registry: page too large"
    out: DynArray[IInstrumentRegistry.Instrument, MAX_PAGE] = []
    last: uint256 = self.instrument_count
    for i: uint256 in range(count, bound=MAX_PAGE):
        # first_id + i cannot overflow in practice, but keep the checked add (cheap).
        instrument_id: uint256 = first_id + i
        if instrument_id > last:
            break
        out.append(self._instrument(instrument_id, self._terms[instrument_id]))
    return out


@view
@external
@reentrant
def check_book(instrument_ids: DynArray[uint256, MAX_BOOK]) -> bool:
    """
    @notice Reverts "registry: book on more than 8 underlyings" when `instrument_ids` (a book)
            are on more underlyings than a fraud proof re-prices (FraudProofs' and the
            ScenarioVerifier's MAX_UNITS): MarginEngine asks when a trade or a liquidation
            slice gives a book of more than 8 positions a new one. Ids never listed count as
            one underlying (zero).
    """
    seen: DynArray[bytes32, MAX_BOOK_UNITS] = []
    for instrument_id: uint256 in instrument_ids:
        u: bytes32 = self._underlying[instrument_id]
        if u not in seen:
            assert len(seen) < MAX_BOOK_UNITS, "registry: book on more than 8 underlyings"
            seen.append(u)
    return True


#### INTERNAL ####

@view
@internal
def _known_terms(instrument_id: uint256) -> uint256:
    terms: uint256 = self._terms[instrument_id]
    assert terms & LISTED_BIT != 0, "registry: unknown instrument"
    return terms


@pure
@internal
def _kind(terms: uint256) -> uint8:
    return convert((terms >> 64) & 255, uint8)


@view
@internal
def _instrument(instrument_id: uint256, terms: uint256) -> IInstrumentRegistry.Instrument:
    return IInstrumentRegistry.Instrument(
        underlying=self._underlying[instrument_id],
        kind=self._kind(terms),
        strike_wad=self._strike[instrument_id],
        expiry=terms & MASK_64,
        active=terms & ACTIVE_BIT != 0,
    )

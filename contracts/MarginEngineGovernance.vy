# pragma version 0.4.3
"""
@title MarginEngineGovernance
@custom:contract-name MarginEngineGovernance
@notice The owner's side of MarginEngine: pause, trading and liquidation parameters and
        the withdrawal of collected taker fees. Runs ONLY through the engine's delegatecall, in
        the engine's storage (`initializes: core` first, as in MarginEngine.vy).
@dev One contract per concern around the engine's storage: MarginEngine (collateral,
     trading, views), MarginEngineExtension (margin leaves, withdrawal under margin,
     liquidation, settlement) and this one (owner functions). No reentrancy pragma: the
     engine's lock is held when it delegatecalls. Direct calls revert (they would only
     touch this contract's own, empty storage).
"""

from .interfaces import IRiskOracle
from .interfaces import IInstrumentRegistry
from .interfaces import IMarginEngine
from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.utils import pausable
from .modules import engine_core as core

# Same order as MarginEngine.vy: core's slots, then `paused`, then `owner`. Never add storage here.
initializes: core
initializes: pausable
initializes: ownable

# this contract's own address: `self` differs from it inside a delegatecall
_SELF: immutable(address)


@deploy
def __init__(token: IERC20, oracle: IRiskOracle, registry: IInstrumentRegistry):
    """
    @notice Deploy with the same token, oracle and registry as the engine.
    """
    core.__init__(token, oracle, registry)
    pausable.__init__()
    ownable.__init__()
    _SELF = self


@internal
def _owner_through_engine():
    assert self != _SELF, "engine: delegatecall only"
    ownable._check_owner()


@external
def pause():
    """@notice Owner stops new risk (deposits, reductions, settlement, liquidation stay open)."""
    self._owner_through_engine()
    pausable._pause()
    core._trading |= core.PAUSED_BIT


@external
def unpause():
    """@notice Owner lifts the pause."""
    self._owner_through_engine()
    pausable._unpause()
    core._trading &= ~core.PAUSED_BIT


@external
def withdraw_fees(amount: uint256, to: address):
    """
    @notice Owner withdraws collected taker fees. Fees are junior to depositors: they first
            repay any socialised loss (recorded deficits nobody's cash covers), and only
            what is left can be withdrawn.
    @param amount Token units (0 only repays).
    @param to Recipient.
    """
    self._owner_through_engine()
    assert to != empty(address), "engine: zero address"
    cfg: uint256 = core._trading
    fees: uint256 = cfg >> 128
    loss: uint256 = core.socialised_loss_wad
    repaid: uint256 = min(loss, fees)
    if repaid > 0:
        fees -= repaid
        core.socialised_loss_wad = loss - repaid
        log IMarginEngine.SocialisedLossRepaid(amount_wad=repaid, total_wad=loss - repaid)
    debit: uint256 = amount * core.SCALE
    assert debit <= fees, "engine: amount exceeds fees"
    core._trading = (cfg & core.MASK_128) | ((fees - debit) << 128)
    if amount > 0:  # some tokens revert on a zero transfer
        core._push(to, amount)
        log IMarginEngine.FeesWithdrawn(to=to, amount=amount, debit_wad=debit)


@external
def set_trading_params(params: IMarginEngine.TradingParams):
    """
    @notice Owner sets trading parameters.
    @param params See IMarginEngine.TradingParams.
    """
    self._owner_through_engine()
    core._set_trading(params)


@external
def set_liquidation_params(params: IMarginEngine.LiquidationParams):
    """
    @notice Owner sets liquidation parameters.
    @param params See IMarginEngine.LiquidationParams.
    """
    self._owner_through_engine()
    core._set_liquidation(params)

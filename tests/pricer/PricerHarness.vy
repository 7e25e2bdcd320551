# pragma version 0.4.3
"""
@title PricerHarness
@notice Test-only: exposes the pricer module's internal functions as views.
"""

from modules import pricer


@external
@pure
def black76(fwd: uint256, strike: uint256, tenor: uint256, vol: uint256, rate: int256,
            is_call: bool) -> uint256:
    return pricer._black76(fwd, strike, tenor, vol, rate, is_call)


@external
@pure
def black76_delta(fwd: uint256, strike: uint256, tenor: uint256, vol: uint256, rate: int256,
                  is_call: bool) -> (uint256, int256):
    """
    @notice Premium and forward delta composed as ScenarioVerifier prices a book's base.
    """
    x: int256 = pricer._log_moneyness(fwd, strike)
    pricer._check_tenor_rate(tenor, rate)
    e: pricer.Eval = pricer._evaluate(fwd, strike, x, pricer._sqrt_tenor(tenor), vol)
    factor: uint256 = pricer._discount_factor(tenor, rate)
    return pricer._value(e, is_call, factor), pricer._delta(e, is_call, factor)


@external
@pure
def unit_value(kind: uint8, fwd: uint256, spot: uint256, strike: uint256, tenor: uint256,
               vol: uint256, rate: int256) -> uint256:
    return pricer._unit_value(kind, fwd, spot, strike, tenor, vol, rate)

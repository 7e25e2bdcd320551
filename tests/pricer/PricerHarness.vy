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
    return pricer._black76_delta(fwd, strike, tenor, vol, rate, is_call)


@external
@pure
def unit_value(kind: uint8, fwd: uint256, spot: uint256, strike: uint256, tenor: uint256,
               vol: uint256, rate: int256) -> uint256:
    return pricer._unit_value(kind, fwd, spot, strike, tenor, vol, rate)

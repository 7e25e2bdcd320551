# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title NoReturnToken
@custom:contract-name NoReturnToken
@license MIT
@notice Test token whose `transfer` / `transferFrom` return nothing (like USDT); callers
        must use `default_return_value=True` or equivalent.
"""

import mock_token_base as base

initializes: base

exports: (
    base.name, base.symbol, base.decimals, base.totalSupply, base.balanceOf, base.allowance,
    base.approve, base.mint,
)


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    base.__init__(name_, symbol_, decimals_)


@external
def transfer(to: address, amount: uint256):
    base._move(msg.sender, to, amount)


@external
def transferFrom(owner: address, to: address, amount: uint256):
    base._spend_allowance(owner, msg.sender, amount)
    base._move(owner, to, amount)

# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title FeeOnTransferToken
@custom:contract-name FeeOnTransferToken
@license MIT
@notice Test token that burns `fee_bps` of every transfer, so the receiver gets less
        than `amount` (catches contracts that credit `amount` instead of the balance delta).
"""

import mock_token_base as base

initializes: base

exports: (
    base.name, base.symbol, base.decimals, base.totalSupply, base.balanceOf, base.allowance,
    base.approve, base.mint,
)

BPS: constant(uint256) = 10_000

# Share of each transfer burned, in bps.
fee_bps: public(immutable(uint256))


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8, fee_bps_: uint256):
    assert fee_bps_ <= BPS, "token: fee above 100%"
    base.__init__(name_, symbol_, decimals_)
    fee_bps = fee_bps_


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer_with_fee(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    base._spend_allowance(owner, msg.sender, amount)
    self._transfer_with_fee(owner, to, amount)
    return True


@internal
def _transfer_with_fee(sender: address, receiver: address, amount: uint256):
    fee: uint256 = amount * fee_bps // BPS
    base._burn(sender, fee)
    # fee <= amount since fee_bps <= BPS.
    base._move(sender, receiver, unsafe_sub(amount, fee))

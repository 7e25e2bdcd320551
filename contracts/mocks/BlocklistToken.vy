# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title BlocklistToken
@custom:contract-name BlocklistToken
@license MIT
@notice Test token whose owner can block addresses (like USDC): transfers from or to a
        blocked address revert.
"""

import mock_token_base as base

initializes: base

exports: (
    base.name, base.symbol, base.decimals, base.totalSupply, base.balanceOf, base.allowance,
    base.approve, base.mint,
)

# May block and unblock addresses.
owner: public(address)
# Blocked addresses.
is_blocked: public(HashMap[address, bool])

event BlockedSet:
    account: indexed(address)
    blocked: bool


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    base.__init__(name_, symbol_, decimals_)
    self.owner = msg.sender


@external
def set_blocked(account: address, blocked: bool):
    assert msg.sender == self.owner, "token: caller is not the owner"
    self.is_blocked[account] = blocked
    log BlockedSet(account=account, blocked=blocked)


@external
def transfer(to: address, amount: uint256) -> bool:
    self._check_not_blocked(msg.sender, to)
    base._move(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    self._check_not_blocked(owner, to)
    base._spend_allowance(owner, msg.sender, amount)
    base._move(owner, to, amount)
    return True


@view
@internal
def _check_not_blocked(sender: address, receiver: address):
    assert not self.is_blocked[sender], "token: sender blocked"
    assert not self.is_blocked[receiver], "token: receiver blocked"

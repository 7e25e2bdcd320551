# pragma version 0.4.3
"""
@title mock_token_base
@custom:contract-name mock_token_base
@license MIT
@notice Shared ERC-20 state and plumbing for the misbehaving test tokens in this folder
        (each one writes its own `transfer` / `transferFrom`). Test-only: `mint` is public.
"""

from ethereum.ercs import IERC20

#### STORAGE ####

name: public(String[25])
symbol: public(String[5])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log IERC20.Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(to: address, amount: uint256):
    """
    @notice Anyone may mint (test token).
    """
    assert to != empty(address), "token: mint to zero address"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log IERC20.Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _move(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "token: transfer to zero address"
    assert self.balanceOf[sender] >= amount, "token: insufficient balance"
    # Bounded by the balance check above.
    self.balanceOf[sender] = unsafe_sub(self.balanceOf[sender], amount)
    self.balanceOf[receiver] += amount
    log IERC20.Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _burn(holder: address, amount: uint256):
    assert self.balanceOf[holder] >= amount, "token: insufficient balance"
    self.balanceOf[holder] = unsafe_sub(self.balanceOf[holder], amount)
    self.totalSupply = unsafe_sub(self.totalSupply, amount)
    log IERC20.Transfer(sender=holder, receiver=empty(address), value=amount)


@internal
def _spend_allowance(holder: address, spender: address, amount: uint256):
    current: uint256 = self.allowance[holder][spender]
    if current != max_value(uint256):
        assert current >= amount, "token: insufficient allowance"
        self.allowance[holder][spender] = unsafe_sub(current, amount)

# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title MockERC20
@custom:contract-name MockERC20
@license MIT
@notice Test settlement token: snekmate's ERC-20 (with EIP-2612 permit) plus a public,
        unrestricted `mint`. Never deploy outside tests.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.burn,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
)


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    """
    @param name_ Token name.
    @param symbol_ Token symbol.
    @param decimals_ Decimals (pass 6 for a USDC-like token, the suite default; Vyper constructors take no default arguments).
    """
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")


@external
def mint(to: address, amount: uint256):
    """
    @notice Mint `amount` to `to`; anyone may call it (test token).
    """
    erc20._mint(to, amount)

# pragma version 0.4.3
"""
@title ReentrantToken
@custom:contract-name ReentrantToken
@license MIT
@notice Test token that, once armed, calls `target` with `payload` in the middle of a
        transfer (after debiting the sender, before crediting the receiver), to probe
        reentrancy guards. The inner call's revert data is re-raised unchanged.
@dev Deliberately without `# pragma nonreentrancy on`: it must be re-enterable itself.
"""

import mock_token_base as base

initializes: base

exports: (
    base.name, base.symbol, base.decimals, base.totalSupply, base.balanceOf, base.allowance,
    base.approve, base.mint,
)

MAX_PAYLOAD: constant(uint256) = 1024
MAX_RETURN: constant(uint256) = 1024

# Contract called during the next transfer (cleared after one use).
target: public(address)
# Calldata for that call.
payload: public(Bytes[MAX_PAYLOAD])

event Armed:
    target: indexed(address)
    payload: Bytes[MAX_PAYLOAD]

event Reentered:
    target: indexed(address)


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    base.__init__(name_, symbol_, decimals_)


@external
def arm(target_: address, payload_: Bytes[MAX_PAYLOAD]):
    """
    @notice Call `target_` with `payload_` during the next transfer (anyone may arm it).
    """
    self.target = target_
    self.payload = payload_
    log Armed(target=target_, payload=payload_)


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer_and_reenter(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    base._spend_allowance(owner, msg.sender, amount)
    self._transfer_and_reenter(owner, to, amount)
    return True


@internal
def _transfer_and_reenter(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "token: transfer to zero address"
    assert base.balanceOf[sender] >= amount, "token: insufficient balance"
    base.balanceOf[sender] = unsafe_sub(base.balanceOf[sender], amount)
    target_: address = self.target
    if target_ != empty(address):
        self.target = empty(address)  # one shot, so the inner call cannot loop
        success: bool = False
        response: Bytes[MAX_RETURN] = b""
        success, response = raw_call(target_, self.payload, max_outsize=MAX_RETURN, revert_on_failure=False)
        if not success:
            # Bubble the inner revert data up unchanged, so tests match the guard's reason.
            raw_revert(response)
        log Reentered(target=target_)
    base.balanceOf[receiver] += amount
    log base.IERC20.Transfer(sender=sender, receiver=receiver, value=amount)

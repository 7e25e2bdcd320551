"""Test tokens in contracts/mocks: each one's intended (mis)behaviour and its reverts."""

import ape
import pytest

UNIT = 10**6


@pytest.fixture(scope="module")
def fee_token(project, admin):
    return project.FeeOnTransferToken.deploy("Fee USD", "fUSD", 6, 100, sender=admin)  # 1%


@pytest.fixture(scope="module")
def no_return_token(project, admin):
    return project.NoReturnToken.deploy("NoRet USD", "nUSD", 6, sender=admin)


@pytest.fixture(scope="module")
def blocklist_token(project, admin):
    return project.BlocklistToken.deploy("Block USD", "bUSD", 6, sender=admin)


@pytest.fixture(scope="module")
def reentrant_token(project, admin):
    return project.ReentrantToken.deploy("Re USD", "rUSD", 6, sender=admin)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(token, oracle, fee_token, no_return_token, blocklist_token, reentrant_token):
    """Deploy every module-scoped token before the first test's snapshot (ape isolation)."""


# ------------------------------------------------------------------ MockERC20


def test_mock_erc20__metadata__six_decimals(token):
    assert (token.name(), token.symbol(), token.decimals(), token.totalSupply()) == ("Mock USD", "mUSD", 6, 0)


def test_mint__anyone__credits_and_emits(token, attacker, trader):
    tx = token.mint(trader, 5 * UNIT, sender=attacker)
    assert token.balanceOf(trader) == 5 * UNIT and token.totalSupply() == 5 * UNIT
    [log] = tx.decode_logs(token.Transfer)
    assert (log.sender, log.receiver, log.value) == (ape.utils.ZERO_ADDRESS, trader.address, 5 * UNIT)


def test_transfer_from__with_allowance__moves_and_spends(token, trader, maker, keeper):
    token.mint(trader, 5 * UNIT, sender=trader)
    token.approve(keeper, 3 * UNIT, sender=trader)
    token.transferFrom(trader, maker, 2 * UNIT, sender=keeper)
    assert (token.balanceOf(trader), token.balanceOf(maker), token.allowance(trader, keeper)) == (
        3 * UNIT, 2 * UNIT, UNIT)


def test_transfer__above_balance__reverts(token, trader, maker):
    with ape.reverts("erc20: transfer amount exceeds balance"):
        token.transfer(maker, 1, sender=trader)


def test_transfer_from__above_allowance__reverts(token, trader, maker, keeper):
    token.mint(trader, 5 * UNIT, sender=trader)
    with ape.reverts("erc20: insufficient allowance"):
        token.transferFrom(trader, maker, 1, sender=keeper)


# ------------------------------------------------------------------ FeeOnTransferToken


def test_fee_token__transfer__receiver_gets_less_and_fee_burned(fee_token, trader, maker):
    fee_token.mint(trader, 100 * UNIT, sender=trader)
    fee_token.transfer(maker, 50 * UNIT, sender=trader)
    assert fee_token.balanceOf(maker) == 49_500_000
    assert fee_token.balanceOf(trader) == 50 * UNIT
    assert fee_token.totalSupply() == 99_500_000


def test_fee_token__transfer_from__fee_taken_allowance_spent_in_full(fee_token, trader, maker, keeper):
    fee_token.mint(trader, 100 * UNIT, sender=trader)
    fee_token.approve(keeper, 10 * UNIT, sender=trader)
    fee_token.transferFrom(trader, maker, 10 * UNIT, sender=keeper)
    assert fee_token.balanceOf(maker) == 9_900_000 and fee_token.allowance(trader, keeper) == 0


def test_fee_token__fee_above_100_percent__reverts_deploy(project, admin):
    with ape.reverts("token: fee above 100%"):
        project.FeeOnTransferToken.deploy("F", "F", 6, 10_001, sender=admin)


def test_fee_token__above_balance__reverts(fee_token, trader, maker):
    with ape.reverts("token: insufficient balance"):
        fee_token.transfer(maker, 1 * UNIT, sender=trader)


# ------------------------------------------------------------------ NoReturnToken


def test_no_return_token__transfer__moves_and_returns_no_data(no_return_token, trader, maker, chain):
    no_return_token.mint(trader, 10 * UNIT, sender=trader)
    tx = no_return_token.transfer(maker, 4 * UNIT, sender=trader)
    assert no_return_token.balanceOf(maker) == 4 * UNIT
    abi = next(a for a in no_return_token.contract_type.abi if getattr(a, "name", "") == "transfer")
    assert abi.outputs == []
    assert tx.return_value in (None, ())


def test_no_return_token__transfer_from_over_allowance__reverts(no_return_token, trader, maker, keeper):
    no_return_token.mint(trader, 10 * UNIT, sender=trader)
    with ape.reverts("token: insufficient allowance"):
        no_return_token.transferFrom(trader, maker, 1, sender=keeper)


def test_no_return_token__mint_to_zero__reverts(no_return_token, trader):
    with ape.reverts("token: mint to zero address"):
        no_return_token.mint(ape.utils.ZERO_ADDRESS, 1, sender=trader)


# ------------------------------------------------------------------ BlocklistToken


def test_blocklist_token__blocked_sender_or_receiver__reverts(blocklist_token, admin, trader, maker, keeper):
    blocklist_token.mint(trader, 10 * UNIT, sender=admin)
    tx = blocklist_token.set_blocked(maker, True, sender=admin)
    assert tx.decode_logs(blocklist_token.BlockedSet)[0].account == maker.address
    with ape.reverts("token: receiver blocked"):
        blocklist_token.transfer(maker, UNIT, sender=trader)
    blocklist_token.approve(keeper, UNIT, sender=trader)
    blocklist_token.set_blocked(trader, True, sender=admin)
    with ape.reverts("token: sender blocked"):
        blocklist_token.transferFrom(trader, keeper, UNIT, sender=keeper)


def test_blocklist_token__unblocked__transfers_again(blocklist_token, admin, trader, maker):
    blocklist_token.mint(trader, 10 * UNIT, sender=admin)
    blocklist_token.set_blocked(maker, True, sender=admin)
    blocklist_token.set_blocked(maker, False, sender=admin)
    blocklist_token.transfer(maker, UNIT, sender=trader)
    assert blocklist_token.balanceOf(maker) == UNIT


def test_blocklist_token__non_owner_blocks__reverts(blocklist_token, attacker, trader):
    with ape.reverts("token: caller is not the owner"):
        blocklist_token.set_blocked(trader, True, sender=attacker)


# ------------------------------------------------------------------ ReentrantToken


def test_reentrant_token__armed__calls_target_once_mid_transfer(reentrant_token, trader, maker):
    reentrant_token.mint(trader, 10 * UNIT, sender=trader)
    payload = reentrant_token.mint.encode_input(maker, 7)
    reentrant_token.arm(reentrant_token, payload, sender=trader)
    tx = reentrant_token.transfer(maker, UNIT, sender=trader)
    assert [log.target for log in tx.decode_logs(reentrant_token.Reentered)] == [reentrant_token.address]
    assert reentrant_token.balanceOf(maker) == UNIT + 7
    assert reentrant_token.target() == ape.utils.ZERO_ADDRESS  # one shot
    reentrant_token.transfer(maker, UNIT, sender=trader)
    assert reentrant_token.balanceOf(maker) == 2 * UNIT + 7


def test_reentrant_token__inner_call_reverts__bubbles_reason_and_keeps_balances(
    reentrant_token, oracle, trader, maker
):
    reentrant_token.mint(trader, 10 * UNIT, sender=trader)
    reentrant_token.arm(oracle, oracle.set_threshold.encode_input(1), sender=trader)
    with ape.reverts("ownable: caller is not the owner"):
        reentrant_token.transfer(maker, UNIT, sender=trader)
    assert reentrant_token.balanceOf(trader) == 10 * UNIT and reentrant_token.balanceOf(maker) == 0


def test_reentrant_token__above_balance__reverts(reentrant_token, trader, maker):
    with ape.reverts("token: insufficient balance"):
        reentrant_token.transfer(maker, 1, sender=trader)

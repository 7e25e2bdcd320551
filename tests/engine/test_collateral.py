"""deposit, withdraw, fund_insurance, withdraw_fees: happy paths and every revert path."""

import ape
import pytest
from ape import compilers
from conftest import WAD

from .conftest import LIQUIDATION, PERP, ROOT, TRADING, storage_layout

USDC = 10**6  # one unit of the 6-decimal test token

# A token whose transfers report failure by returning False (no revert): the engine must refuse it.
FALSE_TOKEN = """
# pragma version 0.4.3
balanceOf: public(HashMap[address, uint256])
decimals: public(uint8)

@deploy
def __init__():
    self.decimals = 6

@external
def mint(to: address, amount: uint256):
    self.balanceOf[to] += amount

@external
def transfer(to: address, amount: uint256) -> bool:
    return False

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    return False
"""


@pytest.fixture(scope="module")
def deploy_engine(project, admin, oracle, registry):
    """An engine (with its extension) on another settlement token."""

    def _deploy(token):
        ext = project.MarginEngineExtension.deploy(token, oracle, registry, sender=admin)
        gov = project.MarginEngineGovernance.deploy(token, oracle, registry, sender=admin)
        return project.MarginEngine.deploy(token, oracle, registry, ext, gov, TRADING, LIQUIDATION, sender=admin)

    return _deploy


def _funds_add_up(engine, token, accounts):
    assets = token.balanceOf(engine) * engine.SCALE() + engine.external_pnl_wad() + engine.socialised_loss_wad()
    cash = sum(engine.cash_wad(a) for a in accounts)
    assert assets == cash + engine.insurance_wad() + engine.fees_wad()


# ------------------------------------------------------------------ deposit


def test_deposit__six_decimals__credits_wad_and_logs(engine, token, trader):
    token.mint(trader, 1_500 * USDC, sender=trader)
    token.approve(engine, 1_500 * USDC, sender=trader)
    tx = engine.deposit(1_500 * USDC, sender=trader)
    assert engine.cash_wad(trader) == 1_500 * WAD
    assert token.balanceOf(engine) == 1_500 * USDC
    [log] = tx.decode_logs(engine.Deposit)
    assert (log.account, log.amount, log.credit_wad) == (trader.address, 1_500 * USDC, 1_500 * WAD)


def test_deposit__zero__reverts(engine, trader):
    with ape.reverts("engine: zero amount"):
        engine.deposit(0, sender=trader)


def test_deposit__no_allowance__reverts_and_leaves_state(engine, token, trader):
    token.mint(trader, 10 * USDC, sender=trader)
    with ape.reverts():
        engine.deposit(10 * USDC, sender=trader)
    assert engine.cash_wad(trader) == 0
    assert token.balanceOf(trader) == 10 * USDC


def test_deposit__while_paused__still_credits(engine, fund, admin, trader):
    engine.pause(sender=admin)
    fund(trader, 5 * USDC)
    assert engine.cash_wad(trader) == 5 * WAD


def test_deposit__fee_on_transfer_token__credits_what_arrived(project, admin, trader, deploy_engine):
    token = project.FeeOnTransferToken.deploy("Fee USD", "fUSD", 6, 100, sender=admin)  # 1% burnt
    engine = deploy_engine(token)
    token.mint(trader, 1_000 * USDC, sender=trader)
    token.approve(engine, 1_000 * USDC, sender=trader)
    tx = engine.deposit(1_000 * USDC, sender=trader)
    assert token.balanceOf(engine) == 990 * USDC
    assert engine.cash_wad(trader) == 990 * WAD
    assert tx.decode_logs(engine.Deposit)[0].amount == 990 * USDC
    _funds_add_up(engine, token, [trader])


def test_deposit__token_burns_everything__reverts_nothing_received(project, admin, trader, deploy_engine):
    token = project.FeeOnTransferToken.deploy("Fee USD", "fUSD", 6, 10_000, sender=admin)
    engine = deploy_engine(token)
    token.mint(trader, 1_000 * USDC, sender=trader)
    token.approve(engine, 1_000 * USDC, sender=trader)
    with ape.reverts("engine: nothing received"):
        engine.deposit(1_000 * USDC, sender=trader)


def test_deposit_withdraw__token_returning_nothing__works(project, admin, trader, deploy_engine):
    token = project.NoReturnToken.deploy("NoRet USD", "nUSD", 6, sender=admin)
    engine = deploy_engine(token)
    token.mint(trader, 100 * USDC, sender=trader)
    token.approve(engine, 100 * USDC, sender=trader)
    engine.deposit(100 * USDC, sender=trader)
    engine.withdraw(40 * USDC, sender=trader)
    assert engine.cash_wad(trader) == 60 * WAD
    assert token.balanceOf(trader) == 40 * USDC
    _funds_add_up(engine, token, [trader])


def test_deposit__token_returning_false__reverts_transfer_failed(admin, trader, deploy_engine):
    token = compilers.compile_source("vyper", FALSE_TOKEN, contractName="FalseToken").deploy(sender=admin)
    engine = deploy_engine(token)
    with ape.reverts("engine: transfer failed"):
        engine.deposit(1 * USDC, sender=trader)


@pytest.mark.parametrize("decimals", [8, 18])
def test_deposit__other_decimals__scales_to_wad(project, admin, trader, deploy_engine, decimals):
    token = project.MockERC20.deploy("Other", "OTH", decimals, sender=admin)
    engine = deploy_engine(token)
    assert engine.SCALE() == 10 ** (18 - decimals)
    token.mint(trader, 3 * 10**decimals + 7, sender=trader)
    token.approve(engine, 3 * 10**decimals + 7, sender=trader)
    engine.deposit(3 * 10**decimals + 7, sender=trader)
    assert engine.cash_wad(trader) == (3 * 10**decimals + 7) * 10 ** (18 - decimals)
    _funds_add_up(engine, token, [trader])


def test_constructor__twelve_decimals__reverts(project, admin, deploy_engine):
    token = project.MockERC20.deploy("Odd", "ODD", 12, sender=admin)
    with ape.reverts("engine: unsupported decimals"):
        deploy_engine(token)


def test_deposit__reentrant_token__reentry_reverts(project, admin, trader, deploy_engine):
    token = project.ReentrantToken.deploy("Re USD", "rUSD", 6, sender=admin)
    engine = deploy_engine(token)
    token.mint(trader, 100 * USDC, sender=trader)
    token.approve(engine, 100 * USDC, sender=trader)
    # during the transferFrom of the deposit, the token calls engine.deposit again
    token.arm(engine, engine.deposit.encode_input(1 * USDC), sender=trader)
    with ape.reverts():
        engine.deposit(10 * USDC, sender=trader)
    assert engine.cash_wad(trader) == 0


# ------------------------------------------------------------------ withdraw


def test_withdraw__no_positions__everything_even_when_paused(engine, token, fund, admin, trader):
    fund(trader, 250 * USDC)
    engine.pause(sender=admin)
    tx = engine.withdraw(250 * USDC, sender=trader)
    assert engine.cash_wad(trader) == 0
    assert token.balanceOf(trader) == 250 * USDC
    [log] = tx.decode_logs(engine.Withdrawal)
    assert (log.account, log.amount, log.debit_wad) == (trader.address, 250 * USDC, 250 * WAD)


def test_withdraw__more_than_cash__reverts(engine, fund, trader):
    fund(trader, 10 * USDC)
    with ape.reverts("engine: insufficient cash"):
        engine.withdraw(10 * USDC + 1, sender=trader)
    assert engine.cash_wad(trader) == 10 * WAD


def test_withdraw__zero__reverts(engine, trader):
    with ape.reverts("engine: zero amount"):
        engine.withdraw(0, sender=trader)


@pytest.fixture(scope="module")
def long_perp(engine, fund, set_market, trade, trader, maker):
    """trader long 1 perp at 60k (pending IM 6k), 10k deposited; maker short with 100k."""
    fund(trader, 10_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, 60_000 * WAD)
    return trader


def test_withdraw__with_positions__allowed_down_to_im(engine, long_perp, token):
    # equity 10_000 - fee 60 = 9_940; IM 6_000: 3_940 may leave
    engine.withdraw(3_940 * USDC, sender=long_perp)
    h = engine.health(long_perp)
    assert h.equity_wad == h.im_wad == 6_000 * WAD


def test_withdraw__below_im__reverts_and_leaves_state(engine, long_perp):
    before = engine.cash_wad(long_perp)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(3_940 * USDC + 1, sender=long_perp)
    assert engine.cash_wad(long_perp) == before


def test_withdraw__with_positions_when_paused__reverts(engine, long_perp, admin):
    engine.pause(sender=admin)
    with ape.reverts("pausable: contract is paused"):
        engine.withdraw(1 * USDC, sender=long_perp)


def test_withdraw__stale_marks__reverts(engine, long_perp, mine):
    mine(TRADING[2] + 1)
    with ape.reverts("engine: stale marks"):
        engine.withdraw(1 * USDC, sender=long_perp)


def test_withdraw__stale_margin_basis__escape_hatch_frees_above_isolated_bound(engine, long_perp, mine, set_market,
                                                                                   oracle):
    mine(TRADING[3] + 1)
    set_market()  # fresh marks, but the pending basis (first trade) is older than max_margin_basis_age
    isolated_im, _ = oracle.isolated_margins([PERP], [WAD])
    free = engine.health(long_perp).equity_wad - isolated_im
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free // 10**12 + 1, sender=long_perp)
    engine.withdraw(free // 10**12, sender=long_perp)


# ------------------------------------------------------------------ insurance and fees


def test_fund_insurance__credits_fund(engine, token, trader):
    token.mint(trader, 70 * USDC, sender=trader)
    token.approve(engine, 70 * USDC, sender=trader)
    tx = engine.fund_insurance(70 * USDC, sender=trader)
    assert engine.insurance_wad() == 70 * WAD
    assert tx.decode_logs(engine.InsuranceFunded)[0].credit_wad == 70 * WAD


def test_fund_insurance__zero__reverts(engine, trader):
    with ape.reverts("engine: zero amount"):
        engine.fund_insurance(0, sender=trader)


def test_withdraw_fees__owner__pays_out(engine, long_perp, token, admin, keeper):
    assert engine.fees_wad() == 60 * WAD  # 10 bps of 60k notional
    tx = engine.withdraw_fees(25 * USDC, keeper, sender=admin)
    assert engine.fees_wad() == 35 * WAD
    assert token.balanceOf(keeper) == 25 * USDC
    assert tx.decode_logs(engine.FeesWithdrawn)[0].debit_wad == 25 * WAD


def test_withdraw_fees__not_owner__reverts(engine, long_perp, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        engine.withdraw_fees(1, attacker, sender=attacker)


def test_withdraw_fees__above_fees__reverts(engine, long_perp, admin):
    with ape.reverts("engine: amount exceeds fees"):
        engine.withdraw_fees(60 * USDC + 1, admin, sender=admin)


def test_set_trading_params__after_fees__keeps_fees_collected(engine, long_perp, admin):
    # the fee accumulator shares the trading-params slot
    engine.set_trading_params((16, 5, 600, 3_600, 1_200), sender=admin)
    assert engine.fees_wad() == 60 * WAD
    assert tuple(engine.trading_params()) == (16, 5, 600, 3_600, 1_200)


def test_fill__fees_at_128_bit_limit__reverts_and_keeps_state(engine, long_perp, trade, maker, chain):
    # ~3.4e20 units of fees cannot be traded into existence in a test: write them in
    slot = storage_layout(ROOT / "contracts/MarginEngine.vy")["core._trading"]
    word = int.from_bytes(chain.provider.get_storage(engine.address, slot), "big")
    full = (word & (2**128 - 1)) | ((2**128 - 1) << 128)
    chain.provider.set_storage(engine.address, slot, full.to_bytes(32, "big"))
    before = (engine.position(long_perp, PERP), engine.cash_wad(long_perp), engine.cash_wad(maker))
    with ape.reverts("engine: fees above 2**128 - 1"):
        trade(maker, long_perp, PERP, WAD, 60_000 * WAD)
    assert (engine.position(long_perp, PERP), engine.cash_wad(long_perp), engine.cash_wad(maker)) == before
    assert engine.fees_wad() == 2**128 - 1
    chain.provider.set_storage(engine.address, slot, word.to_bytes(32, "big"))  # funds add up again


def test_withdraw_fees__zero_address__reverts(engine, long_perp, admin):
    with ape.reverts("engine: zero address"):
        engine.withdraw_fees(1, "0x0000000000000000000000000000000000000000", sender=admin)

"""Misbehaving settlement tokens (blocklist, fee-on-transfer, no return value, callbacks into
the engine), decimals 6 / 8 / 18, and amounts of 0 and 1. Each token gets its own engine
(module-scoped deployment on the shared oracle and registry); the funds invariant is checked
on every engine a test touches.
"""

import ape
import pytest
from conftest import WAD

from .conftest import BTC_MARK, CALL, LIQUIDATION, PERP, TRADING, assert_funds_add_up, deploy_engine

BIG = 2**200


def _usd(desk, amount: float) -> int:
    """Token units of `amount` dollars for the desk's token."""
    return int(amount * 10**18) // desk.scale


@pytest.fixture(scope="module")
def holders(accounts):
    return list(accounts)


def _engine_desk(project, admin, oracle, registry, make_desk, token_type, *token_args):
    token = getattr(project, token_type).deploy(*token_args, sender=admin)
    return make_desk(deploy_engine(project, admin, token, oracle, registry), token)


# ------------------------------------------------------------------ blocklist


@pytest.fixture(scope="module")
def blocklisted(project, admin, oracle, registry, make_desk, maker, trader, liquidator):
    """Blocklist-token engine: trader long 1 BTC on 7,000, marks then fall to 56,000."""
    d = _engine_desk(project, admin, oracle, registry, make_desk, "BlocklistToken", "Block USD", "bUSD", 6)
    d.fund(maker, _usd(d, 1_000_000))
    d.fund(liquidator, _usd(d, 100_000))
    d.fund(trader, _usd(d, 7_000))
    d.post_marks()
    d.trade(maker, trader, PERP, -WAD, BTC_MARK)
    d.post_marks(marks={PERP: 56_000 * WAD})
    return d


def test_liquidate__user_blocklisted_by_token__liquidation_works_withdrawal_refused(
    blocklisted, admin, trader, liquidator, maker, holders
):
    d, e = blocklisted, blocklisted.engine
    d.token.set_blocked(trader, True, sender=admin)
    assert e.health(trader).liquidatable
    d.liquidate(trader, WAD, BIG, e.state_nonce(trader), sender=liquidator)  # no token transfer
    assert not e.health(trader).liquidatable
    d.trade(maker, trader, PERP, e.position(trader, PERP), 56_000 * WAD)  # closes the rest
    assert e.cash_wad(trader) > 0

    before = d.snapshot(trader)
    with ape.reverts("token: receiver blocked"):
        e.withdraw(1, sender=trader)
    assert d.snapshot(trader) == before
    e.withdraw(_usd(d, 1_000), sender=maker)  # everyone else is unaffected
    assert_funds_add_up(e, d.token, holders)


def test_withdraw__engine_itself_blocklisted__token_moves_refused_internal_book_keeps_working(
    blocklisted, admin, trader, liquidator, maker, holders
):
    d, e = blocklisted, blocklisted.engine
    d.token.set_blocked(e, True, sender=admin)
    before = d.snapshot(maker)
    with ape.reverts("token: sender blocked"):
        e.withdraw(1, sender=maker)
    d.token.mint(maker, 1, sender=maker)
    d.token.approve(e, 1, sender=maker)
    with ape.reverts("token: receiver blocked"):
        e.deposit(1, sender=maker)
    assert d.snapshot(maker) == before
    d.liquidate(trader, WAD, BIG, e.state_nonce(trader), sender=liquidator)
    d.trade(maker, liquidator, PERP, WAD, 56_000 * WAD)  # the liquidator sells on
    assert_funds_add_up(e, d.token, holders)


# ------------------------------------------------------------------ fee on transfer


@pytest.fixture(scope="module")
def fee_desk(project, admin, oracle, registry, make_desk):
    """Engine on a token that burns 1% of every transfer."""
    return _engine_desk(project, admin, oracle, registry, make_desk, "FeeOnTransferToken", "Fee USD", "fUSD", 6, 100)


def test_deposit__fee_on_transfer_token__credits_what_arrived(fee_desk, trader, admin, holders):
    d, e = fee_desk, fee_desk.engine
    tx = d.fund(trader, 1_000 * 10**6)
    [dep] = tx.decode_logs(e.Deposit)
    assert dep.amount == 990 * 10**6 and dep.credit_wad == 990 * WAD
    assert e.cash_wad(trader) == 990 * WAD and d.token.balanceOf(e) == 990 * 10**6

    d.token.mint(admin, 500 * 10**6, sender=admin)
    d.token.approve(e, 500 * 10**6, sender=admin)
    e.fund_insurance(500 * 10**6, sender=admin)
    assert e.insurance_wad() == 495 * WAD
    assert_funds_add_up(e, d.token, holders)


def test_withdraw__fee_on_transfer_token__debits_what_left(fee_desk, trader, holders):
    d, e = fee_desk, fee_desk.engine
    d.fund(trader, 1_000 * 10**6)
    wallet = d.token.balanceOf(trader)
    with ape.reverts("engine: insufficient cash"):
        e.withdraw(990 * 10**6 + 1, sender=trader)
    e.withdraw(990 * 10**6, sender=trader)  # the engine sends 990; the token burns 1% on the way
    assert e.cash_wad(trader) == 0 and d.token.balanceOf(e) == 0
    assert d.token.balanceOf(trader) - wallet == 980_100_000
    assert_funds_add_up(e, d.token, holders)


def test_deposit__token_burns_whole_transfer__reverts_nothing_received(
    project, admin, oracle, registry, make_desk, trader
):
    d = _engine_desk(project, admin, oracle, registry, make_desk, "FeeOnTransferToken", "Burn USD", "xUSD", 6, 10_000)
    d.token.mint(trader, 100, sender=trader)
    d.token.approve(d.engine, 100, sender=trader)
    with ape.reverts("engine: nothing received"):
        d.engine.deposit(100, sender=trader)
    assert d.engine.cash_wad(trader) == 0 and d.token.balanceOf(trader) == 100


# ------------------------------------------------------------------ no return value


@pytest.fixture(scope="module")
def no_return_desk(project, admin, oracle, registry, make_desk):
    return _engine_desk(project, admin, oracle, registry, make_desk, "NoReturnToken", "Tether-like", "nUSD", 6)


def test_deposit_withdraw__no_return_value_token__round_trip_exact(no_return_desk, trader, holders):
    d, e = no_return_desk, no_return_desk.engine
    d.fund(trader, 1_000 * 10**6)
    assert e.cash_wad(trader) == 1_000 * WAD
    e.withdraw(1_000 * 10**6, sender=trader)
    assert e.cash_wad(trader) == 0 and d.token.balanceOf(trader) == 1_000 * 10**6
    assert_funds_add_up(e, d.token, holders)


def test_deposit__no_return_value_token_without_allowance__reverts(no_return_desk, trader):
    d, e = no_return_desk, no_return_desk.engine
    d.token.mint(trader, 1_000, sender=trader)
    before = d.snapshot(trader)
    with ape.reverts("token: insufficient allowance"):
        e.deposit(1_000, sender=trader)
    assert d.snapshot(trader) == before


# ------------------------------------------------------------------ callbacks into the engine


@pytest.fixture(scope="module")
def reentrant(project, admin, oracle, registry, make_desk, maker, trader, liquidator):
    """Engine on a token that calls back into the engine mid-transfer; the trader holds a
    liquidatable 1 BTC long, the liquidator has cash."""
    d = _engine_desk(project, admin, oracle, registry, make_desk, "ReentrantToken", "Hook USD", "hUSD", 6)
    d.fund(maker, 1_000_000 * 10**6)
    d.fund(liquidator, 100_000 * 10**6)
    d.fund(trader, 7_000 * 10**6)
    d.post_marks()
    d.trade(maker, trader, PERP, -WAD, BTC_MARK)
    d.post_marks(marks={PERP: 56_000 * WAD})
    return d


def _payloads(e, trader, liquidator):
    return {
        "withdraw": e.withdraw.encode_input(1),
        "deposit": e.deposit.encode_input(1),
        "liquidate": e.liquidate.encode_input(trader, WAD, BIG, e.state_nonce(trader), b""),
        "flag": e.flag.encode_input(trader, b""),
        "health (read-only)": e.health.encode_input(trader),
    }


@pytest.mark.parametrize("inner", ["withdraw", "deposit", "liquidate", "flag", "health (read-only)"])
@pytest.mark.parametrize("outer", ["deposit", "withdraw"])
def test_token_callback__reenters_engine__whole_call_reverts_on_lock(
    reentrant, trader, liquidator, outer, inner
):
    d, e = reentrant, reentrant.engine
    e.health(trader)  # the same read works outside a transfer
    d.token.mint(liquidator, 10**6, sender=liquidator)
    d.token.approve(e, 10**6, sender=liquidator)
    d.token.arm(e, _payloads(e, trader, liquidator)[inner], sender=liquidator)
    before = d.snapshot(trader, liquidator)
    with pytest.raises(ape.exceptions.ContractLogicError) as err:
        getattr(e, outer)(10**6, sender=liquidator)
    # the lock is a bare assert: no reason string (an unlocked inner call would give one)
    assert err.value.revert_message in (None, "", "Transaction failed.")
    assert d.snapshot(trader, liquidator) == before
    assert d.token.target() == e.address  # still armed: the transfer never completed


@pytest.mark.parametrize("call", ["withdraw", "liquidate", "settle"])
def test_extension__called_directly__reverts_delegatecall_only(engine, extension, trader, liquidator, call):
    args = {"withdraw": (1,), "liquidate": (trader, WAD, BIG, 0, b""), "settle": (trader, PERP)}[call]
    with ape.reverts("engine: delegatecall only"):
        getattr(extension, call)(*args, sender=liquidator)


@pytest.mark.parametrize("call", ["withdraw_fees", "set_trading_params", "set_liquidation_params"])
def test_governance__called_directly_even_by_the_owner__reverts_delegatecall_only(governance, admin, call):
    args = {"withdraw_fees": (0, admin), "set_trading_params": (TRADING,),
            "set_liquidation_params": (LIQUIDATION,)}[call]
    with ape.reverts("engine: delegatecall only"):
        getattr(governance, call)(*args, sender=admin)


# ------------------------------------------------------------------ decimals


@pytest.mark.parametrize("decimals", [6, 8, 18])
def test_engine__settlement_token_decimals__same_wad_book_and_exact_unit_round_trip(
    project, admin, oracle, registry, make_desk, maker, trader, holders, decimals
):
    d = _engine_desk(project, admin, oracle, registry, make_desk, "MockERC20", "Dec USD", "dUSD", decimals)
    e = d.engine
    assert e.SCALE() == 10 ** (18 - decimals)
    d.fund(maker, 100_000 * 10**decimals)
    d.fund(trader, 10_000 * 10**decimals)
    d.post_marks()
    d.trade(maker, trader, PERP, -WAD // 10, BTC_MARK)
    # the book is in WAD whatever the token: 10,000 - 6,000 paid - 6 taker fee
    cash = 10_000 * WAD - 6_000 * WAD - 6 * WAD
    assert e.cash_wad(trader) == cash
    e.withdraw(1, sender=trader)  # one token unit
    assert e.cash_wad(trader) == cash - 10 ** (18 - decimals)
    assert d.token.balanceOf(trader) == 1
    assert_funds_add_up(e, d.token, holders)


@pytest.mark.parametrize("decimals", [0, 2, 9, 24])
def test_engine__unsupported_token_decimals__deploy_reverts(project, admin, oracle, registry, decimals):
    token = project.MockERC20.deploy("Odd USD", "oUSD", decimals, sender=admin)
    with ape.reverts("engine: unsupported decimals"):
        deploy_engine(project, admin, token, oracle, registry)


# ------------------------------------------------------------------ amounts 0 and 1


@pytest.fixture(scope="module")
def unit_desk(desk, maker, taker, trader):
    desk.fund(maker, 1_000_000 * 10**6)
    desk.fund(taker, 1_000_000 * 10**6)
    desk.post_marks()
    return desk


@pytest.mark.parametrize("call", ["deposit", "withdraw", "fund_insurance"])
def test_collateral__zero_amount__reverts(unit_desk, trader, call):
    before = unit_desk.snapshot(trader)
    with ape.reverts("engine: zero amount"):
        getattr(unit_desk.engine, call)(0, sender=trader)
    assert unit_desk.snapshot(trader) == before


def test_fill__zero_size__reverts(unit_desk, maker, taker):
    order, sig = unit_desk.order(maker, PERP, -WAD, BTC_MARK)
    with ape.reverts("engine: zero fill size"):
        unit_desk.engine.fill(order.as_args(), sig, 0, sender=taker)


def test_liquidate__fraction_out_of_range__reverts(unit_desk, trader, taker):
    with ape.reverts("engine: fraction out of range"):
        unit_desk.engine.liquidate(trader, WAD + 1, BIG, 0, b"", sender=taker)


def test_deposit_withdraw__one_unit__exact(unit_desk, trader):
    e = unit_desk.engine
    unit_desk.fund(trader, 1)
    assert e.cash_wad(trader) == e.SCALE()
    e.withdraw(1, sender=trader)
    assert e.cash_wad(trader) == 0
    with ape.reverts("engine: insufficient cash"):
        e.withdraw(1, sender=trader)


def test_fill__one_wei_size__fee_and_margin_round_against_the_trader(unit_desk, maker, taker):
    e = unit_desk.engine
    maker_cash, taker_cash = e.cash_wad(maker), e.cash_wad(taker)
    unit_desk.trade(maker, taker, PERP, -1, BTC_MARK)  # taker buys 1e-18 BTC
    assert e.position(taker, PERP) == 1 and e.position(maker, PERP) == -1
    assert e.cash_wad(taker) == taker_cash - 60_000 - 60  # notional 60,000 wei, fee ceil(60) wei
    assert e.cash_wad(maker) == maker_cash + 60_000
    assert e.account(taker).initial_margin_wad == 6_000  # ceil(1 * 6,000e18 / 1e18)


def test_fill__one_wei_at_one_wei_price__nothing_moves_but_margin_still_charged(unit_desk, maker, taker):
    e = unit_desk.engine
    maker_cash, taker_cash = e.cash_wad(maker), e.cash_wad(taker)
    # a call (mark 2,500, short IM rate 9,000) may trade at 1 wei: notional floor(1e-36) = 0
    unit_desk.trade(maker, taker, CALL, -1, 1)
    assert (e.cash_wad(maker), e.cash_wad(taker)) == (maker_cash, taker_cash)
    assert e.account(taker).initial_margin_wad >= 1 and e.account(maker).initial_margin_wad >= 1

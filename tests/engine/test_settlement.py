"""settle: futures and options at the signed settlement price, margins after a leg expires,
negative cash through the waterfall, every revert path."""

import ape
import pytest
from conftest import WAD

from .conftest import CALL, FUTURE, PERP, PUT

USDC = 10**6


@pytest.fixture(scope="module")
def expiring_books(fund, set_market, trade, trader, maker):
    """trader: long 1 future at 60.5k, long 1 call (strike 60k) at 2.5k, short 1 put at 2.4k;
    maker the other side of each."""
    fund(trader, 50_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(trader, maker, FUTURE, WAD, 60_500 * WAD)
    trade(trader, maker, CALL, WAD, 2_500 * WAD)
    trade(trader, maker, PUT, -WAD, 2_400 * WAD)
    return trader


def test_settle__future__pays_size_times_price_and_keeps_margin_bound(engine, expiring_books, maker, keeper,
                                                                      expire_instruments, post_settlement):
    trader = expiring_books
    expire_instruments()
    post_settlement(FUTURE, 62_000 * WAD)
    cash, nonce, pending = engine.cash_wad(trader), engine.state_nonce(trader), engine.account(trader).initial_margin_wad
    tx = engine.settle(trader, FUTURE, sender=keeper)
    assert engine.cash_wad(trader) == cash + 62_000 * WAD
    assert engine.position(trader, FUTURE) == 0
    assert engine.state_nonce(trader) == nonce + 1
    # removing a long leg is a short trade: its standalone short rate joins the pending bound
    assert engine.account(trader).initial_margin_wad == pending + 6_000 * WAD
    [log] = tx.decode_logs(engine.Settlement)
    assert (log.account, log.instrument_id, log.size_wad) == (trader.address, FUTURE, WAD)
    assert (log.settlement_price_wad, log.payoff_wad) == (62_000 * WAD, 62_000 * WAD)
    engine.settle(maker, FUTURE, sender=keeper)
    assert engine.external_pnl_wad() == 0  # both sides settled: payoffs net out


@pytest.mark.parametrize("price, call_payoff, put_payoff", [(63_000, 3_000, 0), (58_000, 0, 2_000)])
def test_settle__options__pay_intrinsic_value(engine, expiring_books, maker, keeper, expire_instruments,
                                              post_settlement, price, call_payoff, put_payoff):
    trader = expiring_books
    expire_instruments()
    post_settlement(CALL, price * WAD)
    post_settlement(PUT, price * WAD)
    cash = engine.cash_wad(trader)
    engine.settle(trader, CALL, sender=keeper)
    engine.settle(trader, PUT, sender=keeper)
    assert engine.cash_wad(trader) == cash + (call_payoff - put_payoff) * WAD  # long call, short put
    maker_cash = engine.cash_wad(maker)
    engine.settle(maker, CALL, sender=keeper)
    assert engine.cash_wad(maker) == maker_cash - call_payoff * WAD


def test_settle__last_position__resets_margins(engine, expiring_books, keeper, expire_instruments,
                                               post_settlement, admin):
    trader = expiring_books
    expire_instruments()
    for iid, price in ((FUTURE, 60_000), (CALL, 60_000), (PUT, 60_000)):
        post_settlement(iid, price * WAD)
    engine.pause(sender=admin)  # settlement stays open while paused
    for iid in (FUTURE, CALL, PUT):
        engine.settle(trader, iid, sender=keeper)
    view = engine.account(trader)
    assert view.positions == [] and (view.initial_margin_wad, view.maintenance_margin_wad) == (0, 0)
    engine.withdraw(engine.cash_wad(trader) // 10**12, sender=trader)  # everything may leave
    assert engine.cash_wad(trader) == 0


def test_settle__short_future_deep_loss__deficit_through_waterfall(engine, fund, set_market, trade, attacker,
                                                                   maker, keeper, expire_instruments,
                                                                   post_settlement):
    fund(attacker, 7_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(attacker, maker, FUTURE, -WAD, 60_500 * WAD)
    expire_instruments()
    post_settlement(FUTURE, 70_000 * WAD)  # 7k + 60.5k - 70k = -2.5k, no insurance fund
    tx = engine.settle(attacker, FUTURE, sender=keeper)
    assert engine.cash_wad(attacker) == 0
    assert tx.decode_logs(engine.LossSocialised)[0].amount_wad == 2_500 * WAD
    assert engine.socialised_loss_wad() == 2_500 * WAD


def test_settle__no_settlement_price__reverts(engine, expiring_books, keeper):
    with ape.reverts("engine: no settlement price"):
        engine.settle(expiring_books, FUTURE, sender=keeper)


def test_settle__no_position__reverts(engine, expiring_books, attacker, keeper, expire_instruments,
                                      post_settlement):
    expire_instruments()
    post_settlement(FUTURE, 62_000 * WAD)
    with ape.reverts("engine: no position"):
        engine.settle(attacker, FUTURE, sender=keeper)


def test_settle__perpetual__reverts_no_settlement_price(engine, expiring_books, keeper):
    with ape.reverts("engine: no settlement price"):
        engine.settle(expiring_books, PERP, sender=keeper)

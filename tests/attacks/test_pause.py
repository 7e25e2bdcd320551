"""Pause blocks new risk and value leaving accounts only: opening or growing positions, fills
worse than the mark and withdrawing against positions stop; deposits, flat withdrawals,
risk-reducing trades at the mark, epoch roots and leaves, liquidation and settlement keep working, so a
pause can never trap funds or shield a bad account.
"""

import ape
import pytest
from conftest import WAD

from .conftest import BTC_MARK, FUTURE, PERP

USD = 10**6
PAUSED = "pausable: contract is paused"


@pytest.fixture(scope="module")
def paused(desk, admin, maker, taker, trader, accomplice, liquidator, attacker):
    """Trader long 1 BTC perp against the accomplice (both one-position books), taker long
    1 BTC future against the maker, attacker holds only cash; then the owner pauses."""
    for who, usd in ((maker, 1_000_000), (taker, 100_000), (trader, 7_000), (accomplice, 100_000),
                     (liquidator, 100_000), (attacker, 1_000)):
        desk.fund(who, usd * USD)
    desk.post_marks()
    desk.trade(accomplice, trader, PERP, -WAD, BTC_MARK)
    desk.trade(maker, taker, FUTURE, -WAD, 60_500 * WAD)
    desk.engine.pause(sender=admin)
    return desk


def test_pause__by_non_owner__reverts(desk, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        desk.engine.pause(sender=attacker)
    assert not desk.engine.paused()


@pytest.mark.parametrize("who", ["trader", "attacker"])
def test_fill__new_risk_while_paused__reverts(paused, maker, who, request):
    taker = request.getfixturevalue(who)  # grows a book / opens a first position
    order, sig = paused.order(maker, PERP, -WAD // 10, BTC_MARK)
    before = paused.snapshot(maker, taker)
    with ape.reverts(PAUSED):
        paused.engine.fill(order.as_args(), sig, WAD // 10, sender=taker)
    assert paused.snapshot(maker, taker) == before


def test_withdraw__against_positions_while_paused__reverts(paused, taker):
    before = paused.snapshot(taker)
    with ape.reverts(PAUSED):
        paused.engine.withdraw(1, sender=taker)
    assert paused.snapshot(taker) == before


def test_deposit__while_paused__credited(paused, trader):
    cash = paused.engine.cash_wad(trader)
    paused.fund(trader, 1_000 * USD)
    assert paused.engine.cash_wad(trader) == cash + 1_000 * WAD


def test_withdraw__flat_account_while_paused__paid_out(paused, attacker):
    paused.engine.withdraw(1_000 * USD, sender=attacker)
    assert paused.token.balanceOf(attacker) == 1_000 * USD


def test_fill__risk_reducing_both_sides_while_paused__works(paused, trader, accomplice):
    paused.trade(accomplice, trader, PERP, WAD // 2, BTC_MARK)  # both halve their one position
    assert paused.engine.position(trader, PERP) == WAD // 2
    assert paused.engine.position(accomplice, PERP) == -WAD // 2


def test_post_root_and_apply_leaf__while_paused__work(paused, taker):
    paused.give_margin(taker, 5_000 * WAD, 2_500 * WAD)
    h = paused.engine.health(taker)
    assert (h.im_wad, h.mm_wad) == (5_000 * WAD, 2_500 * WAD)
    assert paused.engine.account(taker).margin_basis_timestamp == paused.oracle.root_timestamp(paused.engine)


def test_liquidate__while_paused__works(paused, trader, liquidator, liquidate):
    e = paused.engine
    paused.post_marks(marks={PERP: 56_000 * WAD})
    assert e.health(trader).liquidatable
    liquidate(trader, WAD, 2**200, e.state_nonce(trader), sender=liquidator)
    assert not e.health(trader).liquidatable


def test_settle__while_paused__works(paused, taker, expire_instruments, post_settlement):
    expire_instruments()
    post_settlement(FUTURE, 62_000 * WAD)
    cash = paused.engine.cash_wad(taker)
    paused.engine.settle(taker, FUTURE, sender=taker)
    assert paused.engine.cash_wad(taker) == cash + 62_000 * WAD
    assert paused.engine.account(taker).positions == []


def test_unpause__new_risk__accepted_again(paused, admin, maker, trader):
    paused.engine.unpause(sender=admin)
    paused.trade(maker, trader, PERP, -WAD // 10, BTC_MARK)
    assert paused.engine.position(trader, PERP) == WAD + WAD // 10

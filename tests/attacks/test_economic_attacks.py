"""Economic attacks on the engine: self-liquidation through a second account, wash trades at
off-market prices, a 20x pump, repeated partial liquidations, a 50% crash with a single
liquidator. Each test states the outcome it expects; the autouse funds check (tests/engine)
also runs after every test here.
"""

import ape
import pytest
from conftest import BTC, MAX_INDEX_MOVE_BPS, WAD

from .conftest import BTC_MARK, LIQUIDATION, PERP

USD = 10**6  # settlement token units (6 decimals)
MM_RATE = 3_000 * WAD  # per BTC (fixture rates)
BIG = 2**200  # a price limit that never binds
HOUR = 3_600


@pytest.fixture(scope="module")
def market(desk, maker, taker, trader, attacker, accomplice, liquidator, admin, extension):
    """A deep maker and taker, a 5,000 insurance fund, fresh marks."""
    return desk.stock(maker, taker, admin, 5_000_000 * USD, 1_000_000 * USD, 5_000 * USD)


def _go_long(market, who, maker, deposit_usd, size_wad):
    """`who` deposits and buys `size_wad` BTC perp from the maker at the mark (as taker)."""
    market.fund(who, deposit_usd * USD)
    market.trade(maker, who, PERP, -size_wad, BTC_MARK)


def _liquidate(market, account, by, fraction=WAD):
    e = market.engine
    return market.liquidate(account, fraction, BIG, e.state_nonce(account), sender=by)


# ------------------------------------------------------------------ self-liquidation


def test_liquidate__own_account__reverts_self_liquidation(market, maker, attacker):
    _go_long(market, attacker, maker, 7_000, WAD)
    market.post_marks(marks={PERP: 56_000 * WAD})
    assert market.engine.health(attacker).liquidatable
    with ape.reverts("engine: self-liquidation"):
        _liquidate(market, attacker, attacker)


def test_liquidate__through_second_account__unprofitable(market, maker, attacker, accomplice):
    """The attacker lets its own account fall below MM, waits for the largest discount and
    liquidates it from a second account: the pair loses exactly the insurance share."""
    e = market.engine
    _go_long(market, attacker, maker, 7_000, WAD)
    market.fund(accomplice, 50_000 * USD)
    market.post_marks(marks={PERP: 56_000 * WAD})
    market.flag(attacker, sender=accomplice)  # starts the discount clock
    for _ in range(9):  # 1,000 bps + 500 bps/hour reaches the 5,000 bps cap after 8 hours
        market.mine(HOUR)  # re-flagged within max_liquidation_price_age, the episode runs on
        market.post_marks(marks={PERP: 56_000 * WAD})
        market.flag(attacker, sender=accomplice)
    pair_before = market.equity(attacker) + market.equity(accomplice)
    insurance_before = e.insurance_wad()
    preview = e.liquidation_preview(attacker, WAD)
    assert preview.discount_bps == LIQUIDATION[2]  # the largest discount on offer

    _liquidate(market, attacker, accomplice)

    to_insurance = e.insurance_wad() - insurance_before
    assert to_insurance > 0
    assert market.equity(attacker) + market.equity(accomplice) == pair_before - to_insurance


# ------------------------------------------------------------------ wash trades


def test_fill__wash_trades_off_market_then_close__pair_withdraws_deposits_minus_fees(
    market, attacker, accomplice, token
):
    """Two accounts of one attacker trade 1 BTC at 66,000 (mark 60,000; the price band's
    edge) and close at 54,000: value only moves between them; together they withdraw their
    deposits minus the fees."""
    e = market.engine
    market.fund(attacker, 100_000 * USD)
    market.fund(accomplice, 100_000 * USD)
    fees_before = e.fees_wad()
    market.trade(accomplice, attacker, PERP, -WAD, 66_000 * WAD)  # attacker buys high
    market.trade(accomplice, attacker, PERP, WAD, 54_000 * WAD)  # and sells low
    fees = (e.fees_wad() - fees_before) // e.SCALE()
    assert fees == (66 + 54) * USD
    wallets_before = token.balanceOf(attacker) + token.balanceOf(accomplice)

    for who in (attacker, accomplice):
        cash = e.cash_wad(who) // e.SCALE()
        with ape.reverts("engine: insufficient cash"):
            e.withdraw(cash + 1, sender=who)
        e.withdraw(cash, sender=who)
    withdrawn = token.balanceOf(attacker) + token.balanceOf(accomplice) - wallets_before
    assert withdrawn == 200_000 * USD - fees


def test_fill__wash_trade_pushing_loser_below_im__reverts(market, attacker, accomplice):
    market.fund(attacker, 10_000 * USD)
    market.fund(accomplice, 10_000 * USD)
    before = market.snapshot(attacker, accomplice)
    order, sig = market.order(accomplice, PERP, -WAD, 66_000 * WAD)  # attacker would buy 6k over mark
    with ape.reverts("engine: taker below initial margin"):
        market.engine.fill(order.as_args(), sig, WAD, sender=attacker)
    assert market.snapshot(attacker, accomplice) == before


def test_fill__liquidatable_account_sells_half_to_friend_below_mark__reverts(
    market, maker, attacker, accomplice
):
    """An account below MM cannot shed value to a friend through a cheap partial sale: at
    1 wei the price band refuses it, at the band's edge the account is below IM."""
    _go_long(market, attacker, maker, 14_000, 2 * WAD)
    market.fund(accomplice, 10_000 * USD)
    market.post_marks(marks={PERP: 56_000 * WAD})
    assert market.engine.health(attacker).liquidatable
    before = market.snapshot(attacker, accomplice)
    order, sig = market.order(accomplice, PERP, WAD, 1)  # the friend buys 1 BTC at 1 wei
    with ape.reverts("engine: price too far from mark"):
        market.engine.fill(order.as_args(), sig, WAD, sender=attacker)
    order, sig = market.order(accomplice, PERP, WAD, 50_000 * WAD)  # 6,000 below the mark
    with ape.reverts("engine: taker below initial margin"):
        market.engine.fill(order.as_args(), sig, WAD, sender=attacker)
    assert market.snapshot(attacker, accomplice) == before


def test_fill__book_closed_to_friend_at_one_wei__reverts(
    market, maker, attacker, accomplice
):
    """Regression of finding 1 (fixed in b423905): an account sells its whole one-position
    book to the attacker's second account at 1 wei. Before the fix the close skipped the
    shortfall check and the insurance fund paid the 53,960 deficit. Fill prices are now
    bounded against the mark on every path."""
    e = market.engine
    _go_long(market, attacker, maker, 6_100, WAD)
    market.fund(accomplice, 10_000 * USD)
    before = market.snapshot(attacker, accomplice)
    order, sig = market.order(accomplice, PERP, WAD, 1)  # the friend bids 1 wei for 1 BTC
    with ape.reverts("engine: price too far from mark"):
        e.fill(order.as_args(), sig, WAD, sender=attacker)
    assert market.snapshot(attacker, accomplice) == before
    assert e.socialised_loss_wad() == 0


# ------------------------------------------------------------------ 20x pump


def test_post_index_prices__20x_pump_on_thin_underlying__reverts_and_needs_many_updates(
    market, oracle, post_index
):
    """A thin underlying pumped 20x: the index may move only 20% per signed update, and every
    update needs a strictly newer timestamp, so the pump cannot land in one update."""
    thin = b"THIN".ljust(32, b"\0")
    post_index({thin: WAD, BTC: BTC_MARK})
    market.mine(1)
    with ape.reverts("oracle: index move above limit"):
        post_index({thin: 20 * WAD})
    price, updates = WAD, 0
    while price < 20 * WAD:
        market.mine(1)
        price = min(20 * WAD, price * (10_000 + MAX_INDEX_MOVE_BPS) // 10_000)
        post_index({thin: price})
        updates += 1
    assert updates == 17  # 1.2**17 > 20 > 1.2**16
    with ape.reverts("oracle: index price not newer than stored"):
        post_index({thin: price}, timestamp=oracle.index_price(thin)[1])


# ------------------------------------------------------------------ partial liquidations


def test_liquidate__repeated_small_fractions__converge_to_healthy_without_dust(
    market, maker, trader, liquidator
):
    """10% slices, one after the other, until the account is healthy: few steps, MM scales
    by exactly (1 - f) rounded up each time, no slice leaves a dust remainder."""
    e = market.engine
    _go_long(market, trader, maker, 7_000, WAD)
    market.fund(liquidator, 100_000 * USD)
    market.post_marks(marks={PERP: 54_000 * WAD})  # equity 940, MM 3,000
    dust = LIQUIDATION[5]
    steps = 0
    while e.health(trader).liquidatable:
        mm_before = e.health(trader).mm_wad
        _liquidate(market, trader, liquidator, WAD // 10)
        steps += 1
        mm_after = e.health(trader).mm_wad
        assert mm_after == -(-mm_before * 9 // 10)  # ceil(mm * 0.9)
        assert mm_after == 0 or mm_after >= dust
        assert steps <= 20
    assert steps == 14  # shortfall shrinks by (1 - 10% discount) * 10% * MM per step
    assert e.health(trader).equity_wad >= e.health(trader).mm_wad > 0
    with ape.reverts("engine: account is healthy"):
        _liquidate(market, trader, liquidator, WAD // 10)


def test_liquidate__full_request__one_capped_slice_restores_buffer(market, maker, trader, liquidator):
    e = market.engine
    _go_long(market, trader, maker, 7_000, WAD)
    market.fund(liquidator, 100_000 * USD)
    market.post_marks(marks={PERP: 56_000 * WAD})
    _liquidate(market, trader, liquidator)
    h = e.health(trader)
    assert 0 < e.position(trader, PERP) < WAD  # partial: capped below the whole book
    buffer_bps = LIQUIDATION[4]
    # equity >= MM * (1 + buffer) up to the rounding of slices and margins (a few wei)
    assert h.equity_wad * 10_000 >= h.mm_wad * (10_000 + buffer_bps) - 10**6
    with ape.reverts("engine: account is healthy"):
        _liquidate(market, trader, liquidator)


def test_liquidate__remainder_would_be_dust__whole_book_taken(market, maker, trader, liquidator):
    """0.04 BTC (MM 120): the capped slice would leave MM ~86 < dust (100), so it takes all."""
    e = market.engine
    _go_long(market, trader, maker, 300, 4 * WAD // 100)
    market.fund(liquidator, 100_000 * USD)
    market.post_marks(marks={PERP: 55_000 * WAD})
    assert e.health(trader).liquidatable
    _liquidate(market, trader, liquidator)
    view = e.account(trader)
    assert view.positions == [] and view.maintenance_margin_wad == 0
    assert e.position(liquidator, PERP) == 4 * WAD // 100


def test_liquidate__one_wei_fraction__moves_one_wei_and_charges_nothing_extra(
    market, maker, trader, liquidator
):
    """Amount 1 for liquidation: f = 1e-18 moves floor(size * f) = 1 wei of the position,
    MM scales by (1 - f) rounded up (it cannot grow), and the discount rounds to 0.
    (It still bumps the state nonce: the nonce-griefing residual risk in SECURITY.md.)"""
    e = market.engine
    _go_long(market, trader, maker, 7_000, WAD)
    market.fund(liquidator, 100_000 * USD)
    market.post_marks(marks={PERP: 56_000 * WAD})
    mm, cash, nonce = e.health(trader).mm_wad, e.cash_wad(trader), e.state_nonce(trader)
    tx = _liquidate(market, trader, liquidator, 1)
    [liq] = tx.decode_logs(e.Liquidation)
    assert (liq.fraction_wad, liq.discount_wad, liq.slice_value_wad) == (1, 0, 56_000)
    assert e.position(trader, PERP) == WAD - 1 and e.position(liquidator, PERP) == 1
    assert e.health(trader).mm_wad == mm - mm // WAD  # ceil(mm * (1 - 1e-18))
    assert e.cash_wad(trader) == cash + 56_000
    assert e.state_nonce(trader) == nonce + 1


# ------------------------------------------------------------------ 50% crash


def test_liquidate__50pct_crash_single_liquidator__every_loss_accounted(
    market, maker, trader, attacker, accomplice, liquidator, extension
):
    """Three 1-BTC longs (deposits 7k, 15k, 25k), BTC marks fall 60,000 -> 30,000 in one
    update, one liquidator clears them all. Each bankrupt account ends flat at zero cash and
    its deficit is paid by the insurance fund first, then recorded as socialised loss."""
    e = market.engine
    longs = {trader: 7_000, attacker: 15_000, accomplice: 25_000}
    for who, deposit in longs.items():
        _go_long(market, who, maker, deposit, WAD)
    market.fund(liquidator, 300_000 * USD)
    market.post_marks(marks={PERP: 30_000 * WAD})
    assert all(e.health(a).liquidatable for a in longs)
    liquidator_before = market.equity(liquidator)

    absorbed = to_insurance = 0
    for who in longs:
        equity = market.equity(who)
        tx = _liquidate(market, who, liquidator)
        [liq] = tx.decode_logs(extension.Liquidation)
        assert liq.fraction_wad == WAD  # bankrupt: no buffer can be restored, the whole book goes
        assert liq.discount_wad == 0  # no equity to pay a discount with
        deficit = -equity
        used = sum(log.amount_wad for log in tx.decode_logs(e.InsuranceUsed))
        socialised = sum(log.amount_wad for log in tx.decode_logs(e.LossSocialised))
        assert used + socialised == deficit
        absorbed += deficit
        to_insurance += liq.insurance_wad
        assert e.account(who).positions == [] and e.cash_wad(who) == 0

    assert not any(e.health(a).liquidatable for a in longs)
    # 5,000 of insurance covers part of ~44,000 of deficits
    assert e.insurance_wad() == 0 and to_insurance == 0
    assert e.socialised_loss_wad() == absorbed - 5_000 * WAD > 0
    assert e.position(liquidator, PERP) == 3 * WAD
    # bankrupt books earn no discount (the insurance fund never pays a liquidator)
    assert abs(market.equity(liquidator) - liquidator_before) <= 3

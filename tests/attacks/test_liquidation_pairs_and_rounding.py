"""Liquidation sequences of one owner's two accounts and of a liquidator whose own book nets
the victim's, and 1-wei rounding of a slice. Each test replays the sequence on the real
engine with its witness and asserts the rule; the funds identity is checked after each
(autouse). Rules:
- a liquidator is held to its own initial margin after the slice, its margins only grow by
  the slice's (a slice that shrinks its book does not lower them), so taking a discounted
  slice is no way out of its own margin check;
- liquidating one's own book from a second account that holds the opposite side (the slice
  nets it flat) costs the pair at least the insurance share, the insurance fund pays nothing
  and the flattened account leaves with cash >= 0;
- a liquidator is paid only for a slice it takes (V7: a slice that rounds to nothing on every
  position still pays a discount).
"""

import ape
import pytest
from conftest import WAD

from .conftest import BTC_MARK, LIQUIDATION, PERP

USD = 10**6
BIG = 2**200
BASE_BPS, _SLOPE, _MAX, SHARE_BPS, _BUFFER, DUST_MM = LIQUIDATION


@pytest.fixture(scope="module")
def market(desk, maker, taker, admin):
    """A deep maker and taker, a 20,000 insurance fund, fresh marks."""
    return desk.stock(maker, taker, admin, 5_000_000 * USD, 1_000_000 * USD, 20_000 * USD)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(market, trader, attacker, accomplice, liquidator):
    """Every session account before the module's snapshot (ape isolation)."""


def test_liquidate__liquidator_below_its_initial_margin_nets_its_short_with_the_slice__refused(
        market, maker, trader, attacker):
    """The attacker is short 1 BTC and below its signed IM (it cannot withdraw); the trader is
    long 1 BTC and liquidatable. The attacker's slice is long, so it nets the attacker's short
    and earns the discount: as a trade it would reduce risk. Its margins still grow by the
    slice's IM (never shrink with the netting), so the attacker stays below IM and the
    liquidation is refused: a discounted slice is no way out of its own margin check."""
    e = market.engine
    market.fund(attacker, 7_000 * USD)
    market.fund(trader, 7_000 * USD)
    market.trade(maker, attacker, PERP, WAD, BTC_MARK)       # attacker short 1
    market.trade(maker, trader, PERP, -WAD, BTC_MARK)        # trader long 1
    market.give_margin(attacker, 12_000 * WAD, 5_000 * WAD)  # the attacker's signed IM
    market.post_marks(marks={PERP: 55_900 * WAD})
    assert e.health(trader).liquidatable
    h = e.health(attacker)
    assert h.mm_wad < h.equity_wad < h.im_wad                # not liquidatable, below IM
    with ape.reverts("engine: below initial margin"):
        e.withdraw(1, sender=attacker)
    before = market.snapshot(attacker, trader)
    with ape.reverts("engine: liquidator below initial margin"):
        market.liquidate(trader, WAD, BIG, e.state_nonce(trader), sender=attacker)
    assert market.snapshot(attacker, trader) == before
    # a small slice neither: the attacker's IM grows by f x the trader's IM, its equity by
    # much less (the discount on f x MM)
    with ape.reverts("engine: liquidator below initial margin"):
        market.liquidate(trader, WAD // 100, BIG, e.state_nonce(trader), sender=attacker)


def test_liquidate__own_book_from_second_account_holding_the_opposite_side__nets_flat_pair_loses_insurance_share(
        market, maker, attacker, accomplice):
    """The owner is long 1 BTC on one account (solvent, equity below d x MM: the whole book is
    taken) and short 1 BTC on another. The second account liquidates the first: the slice
    nets it flat, so it leaves with its margins reset and may withdraw everything. The pair
    loses exactly the insurance share of the discount; the insurance fund pays nothing and
    no loss is socialised."""
    e = market.engine
    market.fund(attacker, 6_100 * USD)
    market.fund(accomplice, 7_000 * USD)
    market.trade(maker, attacker, PERP, -WAD, BTC_MARK)      # attacker long 1
    market.trade(maker, accomplice, PERP, WAD, BTC_MARK)     # accomplice short 1
    market.post_marks(marks={PERP: 54_060 * WAD})
    equity = market.equity(attacker)
    assert 0 < equity < e.health(attacker).mm_wad * BASE_BPS // 10_000
    pair = equity + market.equity(accomplice)
    insurance = e.insurance_wad()

    tx = market.liquidate(attacker, WAD, BIG, e.state_nonce(attacker), sender=accomplice)

    [log] = tx.decode_logs(e.Liquidation)
    assert log.fraction_wad == WAD and log.discount_wad == equity           # capped at the equity
    assert log.insurance_wad == equity * SHARE_BPS // 10_000
    assert e.account(attacker).positions == [] and e.account(accomplice).positions == []
    assert e.cash_wad(attacker) == 0 and e.cash_wad(accomplice) >= 0
    assert e.insurance_wad() == insurance + log.insurance_wad and e.socialised_loss_wad() == 0
    assert market.equity(attacker) + market.equity(accomplice) == pair - log.insurance_wad
    acc = e.account(accomplice)
    assert (acc.initial_margin_wad, acc.maintenance_margin_wad) == (0, 0)  # flat: owes nothing
    e.withdraw(e.cash_wad(accomplice) // e.SCALE(), sender=accomplice)
    assert e.cash_wad(accomplice) < e.SCALE()


def _tiny_liquidatable_book(market, maker, trader):
    """The trader long 0.05 BTC on 400: at 54,000 its equity (~97) is below MM (150) and above
    d x MM (15), so a partial slice is allowed; MM is above the dust bound, so it is not
    raised to the whole book."""
    e = market.engine
    market.fund(trader, 400 * USD)
    market.trade(maker, trader, PERP, -WAD // 20, BTC_MARK)
    market.post_marks(marks={PERP: 54_000 * WAD})
    h = e.health(trader)
    assert h.mm_wad * BASE_BPS // 10_000 < h.equity_wad < h.mm_wad and h.mm_wad >= DUST_MM
    return h


def test_liquidate__fraction_moving_one_wei__pays_only_dust_and_the_insurance_fund_nothing(
        market, maker, trader, liquidator):
    """The smallest slice that moves a position: f = 20 / 1e18 of 0.05 BTC moves 1 wei of it
    (worth 54,000 wei); the discount is 10% of f x MM = 300 wei. Rounding is dust on both
    sides, the victim pays no more than its equity allows, the insurance fund only gains."""
    e = market.engine
    mm = _tiny_liquidatable_book(market, maker, trader).mm_wad
    market.fund(liquidator, 10_000 * USD)
    insurance = e.insurance_wad()
    tx = market.liquidate(trader, 20, BIG, e.state_nonce(trader), sender=liquidator)
    [log] = tx.decode_logs(e.Liquidation)
    assert (log.fraction_wad, log.slice_value_wad) == (20, 54_000)
    assert e.position(trader, PERP) == WAD // 20 - 1 and e.position(liquidator, PERP) == 1
    # the base discount on f x min(signed MM, model MM): at most 2 x 150e18 / 1e18 wei
    assert 0 < log.discount_wad <= BASE_BPS * 20 // 10_000 * mm // WAD == 300
    assert e.insurance_wad() == insurance + log.insurance_wad


def test_liquidate__slice_rounding_to_nothing_on_every_position__pays_no_discount(
        market, maker, trader, liquidator):
    """V7 (informational, fixed). The engine takes part = size x f / 1e18 of each position, rounded
    towards zero, but computes the discount on f x MM. With f below 1e18 / |size| on every
    position (here f = 19 on 0.05 BTC: 0.95 wei, truncated to 0) nothing moves, yet the
    liquidator is paid disc_bps x f // 10,000 x MM / 1e18 (150 wei here, up to ~1.4k at the
    maximum discount) out of the victim's cash, the insurance fund takes its share, and the
    victim's state nonce bumps and its leaf floor rises: anyone repeats it every block. The
    amounts are dust (far below the gas), but the rule "a liquidator is paid only for a slice
    it takes" is broken and the nonce griefing of SECURITY.md gets paid.
    Fixed in MarginEngineExtension.liquidate: a slice whose parts all round to zero earns no
    discount (so the insurance fund takes no share); both cash balances stay. (Refusing it
    with a message did not fit the extension's size: a revert reason costs ~105 bytes.)"""
    e = market.engine
    _tiny_liquidatable_book(market, maker, trader)
    market.fund(liquidator, 10_000 * USD)
    cash, liq_cash, nonce = e.cash_wad(trader), e.cash_wad(liquidator), e.state_nonce(trader)
    moved = False
    try:
        tx = market.liquidate(trader, 19, BIG, nonce, sender=liquidator)
        moved = e.position(trader, PERP) != WAD // 20
        [log] = tx.decode_logs(e.Liquidation)
        paid = log.discount_wad
    except ape.exceptions.ContractLogicError:
        paid = 0                                  # refused: the fix's other form
    assert not moved
    assert paid == 0 and e.cash_wad(trader) == cash and e.cash_wad(liquidator) == liq_cash

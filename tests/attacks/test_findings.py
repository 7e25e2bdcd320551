"""Findings of the attack review, each pinned as the attack that used to succeed.

Every finding here is fixed; each test replays the original attack and asserts the safe
outcome. The finding, its impact and the fix are in the test's docstring and in
SECURITY.md ("Findings").
"""

import ape
import pytest
from conftest import WAD

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.leaves import positions_hash

from .conftest import BTC_MARK, LIQUIDATION, PERP, deploy_engine, succeeds

USD = 10**6  # settlement token units (6 decimals)


@pytest.fixture(scope="module")
def market(desk, maker, taker, attacker, accomplice, liquidator, admin, registry, project):
    """Deep-pocketed market maker and taker, a 20,000 insurance fund, fresh marks."""
    return desk.stock(maker, taker, admin, 1_000_000 * USD, 1_000_000 * USD, 20_000 * USD)


def test_fill__liquidatable_book_closed_to_friend_below_mark__deficit_not_pushed_to_insurance(
    market, maker, attacker, accomplice
):
    """FINDING 1b (high; fixed in 4b11613). Finding 1: a one-position
    book closed at ANY price (e.g. 1 wei, to the attacker's second account) took the
    `new_n == 0` branch before the shortfall check and handed the whole deficit to the
    insurance fund; b423905 now applies the rule "a reduction may not deepen the shortfall
    (MM - equity)" to closes too (regression test in test_economic_attacks.py). But that
    rule still lets a liquidatable, SOLVENT account sell to a friend up to MM per unit below
    the mark: MM drops to 0 as fast as equity falls, so the shortfall does not grow, while
    the cash ends negative and the deficit goes to the insurance fund:
      1. attacker deposits 6,100, buys 1 BTC at 60,000 (MM 3,000/BTC);
      2. mark 56,500: equity 2,540 > 0 but < MM (liquidatable, not bankrupt);
      3. accomplice bids 53,600 for 1 BTC; the attacker fills (closes its book):
         accomplice gains 2,900, the insurance fund pays the attacker's ~414 deficit.
    A third-party liquidation would have cost the insurance fund nothing here.
    Safe outcome: closing a book that has positive equity at the marks never makes the
    insurance fund or the other depositors pay."""
    e = market.engine
    market.fund(attacker, 6_100 * USD)
    market.fund(accomplice, 10_000 * USD)
    market.trade(maker, attacker, PERP, -WAD, BTC_MARK)
    market.post_marks(marks={PERP: 56_500 * WAD})
    assert 0 < market.equity(attacker) < e.health(attacker).mm_wad
    insurance = e.insurance_wad()

    order, sig = market.order(accomplice, PERP, WAD, 53_600 * WAD)
    succeeds(e.fill, order.as_args(), sig, WAD, sender=attacker)

    assert e.insurance_wad() == insurance
    assert e.socialised_loss_wad() == 0


def test_withdraw__after_20x_mark_pump_on_thin_underlying__gain_bounded(
    market, maker, attacker, admin, registry
):
    """FINDING 2 (high; fixed: RiskOracle bounds each mark move too). RiskOracle bounds index prices per update (max_index_move_bps,
    20% here), but the engine never reads index prices: equity comes from the marks in
    `post_market_data`, which have no move bound. One signed batch that follows a 20x pump
    of a thin underlying (an honest keeper in replay/source mode derives marks from the raw
    spot; only its index posts are clamped) lets a long withdraw 19x its notional at once,
    leaving the shorts bankrupt (Mango-style):
      1. list THIN perp; attacker deposits 6,000, buys 10,000 THIN at 1.00 (IM 50%);
      2. signers post THIN mark 20.00 (index for THIN would be refused: +1,900% > 20%);
      3. attacker withdraws 150,000.
    Safe outcome: the 20x batch is refused; one update moves a mark by at most
    max(20% of it, its maintenance rate 0.25), so withdrawing 8,000 still reverts."""
    e = market.engine
    thin = registry.list_instrument(symbol_to_bytes32("THIN"), 1, 0, 0, sender=admin).return_value
    ids = (1, 2, 3, 4, thin)
    rates = {thin: (WAD // 2, WAD // 2, WAD // 4, WAD // 4)}
    market.post_marks(marks={thin: WAD}, rates=rates, ids=ids)
    market.fund(attacker, 6_000 * USD)
    market.trade(maker, attacker, thin, -10_000 * WAD, WAD)

    with ape.reverts("oracle: mark move above limit"):
        market.post_marks(marks={thin: 20 * WAD}, rates=rates, ids=ids, step=False)
    market.post_marks(marks={thin: 5 * WAD // 4}, rates=rates, ids=ids, step=False)  # the most one update moves
    assert not succeeds(e.withdraw, 8_000 * USD, sender=attacker)


def test_apply_leaf__leaf_of_engine_sharing_the_oracle__reverts(
    market, project, admin, token, oracle, registry, attacker, maker
):
    """FINDING 3 (high when two engines share one RiskOracle, e.g. one engine per settlement
    token). A margin signed for (account, state_nonce) but not the engine, under the
    ORACLE's EIP-712 domain, applies on any engine sharing the oracle. State nonces are small
    counters, so an attacker lines up the same nonce and book on both engines and replays the
    low margin of a tiny book on engine B onto a big book on engine A:
      1. on A: deposit 100,000, buy 10 BTC (pending IM 60,000);  nonce 1
      2. on B: a 0.001 BTC book (nonce 1); B's root gives it IM 6 / MM 3
      3. apply B's leaf (with a positions hash forged for A's book) on A.
    Safe outcome: a leaf verifies only against the root of the engine that calls the
    oracle (the leaf hash covers that engine and its epoch), so engine A refuses it."""
    e = market.engine
    other = deploy_engine(project, admin, token, oracle, registry)
    market.fund(attacker, 100_000 * USD)
    market.trade(maker, attacker, PERP, -10 * WAD, BTC_MARK)
    assert e.state_nonce(attacker) == 1

    token.mint(attacker, 1_000 * USD, sender=attacker)
    token.approve(other, 1_000 * USD, sender=attacker)
    other.deposit(1_000 * USD, sender=attacker)
    token.mint(maker, 1_000 * USD, sender=maker)
    token.approve(other, 1_000 * USD, sender=maker)
    other.deposit(1_000 * USD, sender=maker)
    b = type(market)(other, token, oracle, market.chain, market.domain,
                     type(market.engine_domain)(market.engine_domain.chain_id, other.address),
                     market.signers, market.keys, market.poster, registry=registry)
    b.trade(maker, attacker, PERP, -WAD // 1_000, BTC_MARK)
    assert other.state_nonce(attacker) == 1
    b.give_margin(attacker, 6 * WAD, 3 * WAD)  # legitimate on B
    b.mine(1)
    # the signers would even sign A's book hash into B's tree: still B's, never A's
    forged = b.root([b.leaf(attacker, 6 * WAD, 3 * WAD, positions_hash=positions_hash([PERP], [10 * WAD]))])
    oracle.post_root(*forged.post_args(), sender=market.poster)

    with ape.reverts("oracle: no root for engine"):
        e.apply_leaf(*forged.apply_args(attacker), sender=market.poster)
    market.give_margin(maker, 1 * WAD, 1 * WAD)  # A has a root of its own now
    with ape.reverts("oracle: invalid proof"):
        e.apply_leaf(*forged.apply_args(attacker), sender=market.poster)
    assert e.health(attacker).im_wad >= 60_000 * WAD


def test_liquidate__fresh_dip_after_recovery__discount_starts_at_base(market, maker, trader, liquidator):
    """FINDING 4 (medium; fixed: a flag not confirmed within max_liquidation_price_age
    starts a new episode). The Dutch-auction clock `liquidatable_since` is only cleared by a
    trade that adds risk, a liquidation that restores health, or someone calling flag() on
    a healthy account. A liquidator flags every account at any brief dip; the account
    recovers and nobody unflags it; on the next dip, hours later, the liquidator takes the
    MAXIMUM discount at once (5,000 bps of MM instead of the 1,000 bps base):
      1. trader long 1 BTC on 7,000; mark 56,000 -> liquidator calls flag(trader);
      2. mark back to 60,000 (healthy; `liquidatable_since` stays set);
      3. 9 hours later the mark dips to 56,000: liquidation_preview shows 5,000 bps.
    Safe outcome: a new episode of liquidatability starts the discount at its base."""
    e = market.engine
    market.fund(trader, 7_000 * USD)
    market.fund(liquidator, 100_000 * USD)
    market.trade(maker, trader, PERP, -WAD, BTC_MARK)
    market.post_marks(marks={PERP: 56_000 * WAD})
    market.flag(trader, sender=liquidator)
    market.post_marks(marks={PERP: 60_000 * WAD})
    assert not e.health(trader).liquidatable
    market.mine(9 * 3_600)
    market.post_marks(marks={PERP: 56_000 * WAD})

    assert e.liquidation_preview(trader, WAD).discount_bps == LIQUIDATION[0]


def test_liquidate__underwater_liquidator_flattened_by_slice__deficit_not_hidden(
    market, maker, trader, liquidator
):
    """FINDING 5 (medium; fixed in 4b11613). `liquidate` checks the liquidator's equity >= IM only if the
    liquidator still holds positions afterwards. An UNDERWATER liquidator whose book is the
    mirror of the slice (short where the victim is long) liquidates the victim: its book
    nets to zero, the check is skipped, and it walks away flat with negative cash. That
    deficit never goes through the waterfall (not in insurance use, not in
    socialised_loss_wad: a silent loss), and the liquidator escapes its own liquidation:
      1. trader buys 1 BTC at 70,000 (mark 70,000) on 7,000;
         liquidator sells 1 BTC at 50,000 (mark 50,000) on 7,000;
      2. mark 60,000: both are bankrupt (equity about -3,000 each);
      3. the liquidator liquidates the trader (whole book): flat, cash about -2,800.
    Safe outcome: no account ends flat with negative cash outside the waterfall (the
    liquidation reverts, or the deficit is absorbed and recorded)."""
    e = market.engine
    market.fund(trader, 7_000 * USD)
    market.fund(liquidator, 7_000 * USD)
    market.post_marks(marks={PERP: 70_000 * WAD})
    market.trade(maker, trader, PERP, -WAD, 70_000 * WAD)
    market.post_marks(marks={PERP: 50_000 * WAD})
    market.trade(maker, liquidator, PERP, WAD, 50_000 * WAD)
    market.post_marks(marks={PERP: 60_000 * WAD})
    assert market.equity(trader) < 0 and market.equity(liquidator) < 0

    succeeds(market.liquidate, trader, WAD, 2**200, e.state_nonce(trader), sender=liquidator)

    for who in (trader, liquidator):
        assert e.account(who).positions or e.cash_wad(who) >= 0


def test_fill__close_position_in_delisted_perpetual__allowed(market, maker, trader, admin, registry):
    """FINDING 6 (medium, owner action; fixed in 4b11613). `fill` requires `inst.active` for every trade, so
    after the registry owner delists an instrument nobody can even REDUCE a position in it.
    Futures and options still settle at expiry, but a perpetual never does: its holders keep
    the exposure (and its margin) forever, or until they are liquidated.
      1. trader long 1 BTC perp; 2. owner delists the perp;
      3. the trader's risk-reducing sale of the whole position reverts "instrument not active".
    Safe outcome (as with pause and stale prices): delisting blocks new risk only."""
    e = market.engine
    market.fund(trader, 10_000 * USD)
    market.trade(maker, trader, PERP, -WAD, BTC_MARK)
    registry.delist(PERP, sender=admin)

    succeeds(market.trade, maker, trader, PERP, WAD, BTC_MARK)  # the maker buys it back

    assert e.position(trader, PERP) == 0

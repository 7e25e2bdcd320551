"""flag, liquidate, liquidation_preview: the capped slice, the Dutch
auction on the discount, the insurance share, the loss waterfall, every revert path."""

import ape
import pytest
from conftest import WAD

from .conftest import CALL, FUTURE, LIQUIDATION, PERP, TRADING

USDC = 10**6
BPS = 10_000
HOUR = 3_600


def ceil_div(a, b):
    return -(-a // b)


@pytest.fixture(scope="module")
def victim(fund, set_market, trade, trader, maker, liquidator, keeper, token, engine):
    """trader: 7k deposited, long 1 perp at 60k (IM 6k, MM 3k pending); liquidator: 50k,
    no positions; insurance fund: 1k."""
    fund(trader, 7_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 50_000 * USDC)
    token.mint(keeper, 1_000 * USDC, sender=keeper)
    token.approve(engine, 1_000 * USDC, sender=keeper)
    engine.fund_insurance(1_000 * USDC, sender=keeper)
    set_market()
    trade(trader, maker, PERP, WAD, 60_000 * WAD)
    return trader


def crash(set_market, mark):
    set_market(marks={PERP: mark * WAD})


def expected_cap(equity, mm, disc_bps, buffer_bps=LIQUIDATION[4]):
    target = mm * (BPS + buffer_bps) // BPS
    denom = target - mm * disc_bps // BPS
    return ceil_div((target - equity) * WAD, denom)


def test_liquidate__below_mm__takes_capped_slice_and_restores_buffer(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 55_500)  # equity 2.5k < MM 3k
    h = engine.health(victim)
    assert h.liquidatable and h.equity_wad == 2_500 * WAD
    preview = engine.liquidation_preview(victim, WAD)
    f = expected_cap(2_500 * WAD, 3_000 * WAD, 1_000)
    assert preview.fraction_wad == f and preview.discount_bps == 1_000
    cash_v, cash_l, ins = engine.cash_wad(victim), engine.cash_wad(liquidator), engine.insurance_wad()

    tx = liquidate(victim, WAD, 10**30, 1, sender=liquidator)

    [log] = tx.decode_logs(engine.Liquidation)
    slice_value = f * 55_500 * WAD // WAD
    discount = 1_000 * f // BPS * 3_000 * WAD // WAD
    to_ins = discount * LIQUIDATION[3] // BPS
    assert (log.fraction_wad, log.slice_value_wad, log.discount_wad, log.insurance_wad) == (
        f, slice_value, discount, to_ins)
    assert log.payment_wad == slice_value - discount + to_ins == preview.payment_wad
    assert engine.position(victim, PERP) == WAD - f
    assert engine.position(liquidator, PERP) == f
    assert engine.cash_wad(victim) == cash_v + slice_value - discount
    assert engine.cash_wad(liquidator) == cash_l - log.payment_wad
    assert engine.insurance_wad() == ins + to_ins
    # margins scale by (1 - f), rounded up; the liquidator's pending grows by f * IM/MM
    view = engine.account(victim)
    assert view.initial_margin_wad == ceil_div(6_000 * WAD * (WAD - f), WAD)
    assert view.maintenance_margin_wad == ceil_div(3_000 * WAD * (WAD - f), WAD)
    assert engine.account(liquidator).initial_margin_wad == ceil_div(6_000 * WAD * f, WAD)
    after = engine.health(victim)
    assert after.equity_wad >= after.mm_wad * (BPS + LIQUIDATION[4]) // BPS
    assert not after.liquidatable
    assert view.liquidatable_since == 0 and tx.decode_logs(engine.Unflagged)
    assert engine.state_nonce(victim) == 2 and engine.state_nonce(liquidator) == 1


def test_liquidate__smaller_fraction__uses_it(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 55_500)
    tx = liquidate(victim, WAD // 10, 10**30, 1, sender=liquidator)
    assert tx.decode_logs(engine.Liquidation)[0].fraction_wad == WAD // 10
    assert engine.position(victim, PERP) == WAD - WAD // 10
    assert engine.account(victim).liquidatable_since > 0  # still below MM: the clock keeps running


def test_liquidate__discount_grows_while_flag_confirmed__capped_at_max(engine, victim, liquidator, set_market,
                                                                      mine, keeper, liquidate, flag, chain):
    crash(set_market, 55_500)
    flag(victim, sender=keeper)
    for _ in range(2):  # keepers re-confirm the flag within max_liquidation_price_age
        mine(HOUR)
        set_market(marks={PERP: 55_500 * WAD})
        flag(victim, sender=keeper)
    # two hours and the seconds the witnesses' roots took: 1,000 + 2 x 500 bps (+1 per 7.2 s)
    since, now = engine.account(victim).liquidatable_since, chain.blocks.head.timestamp
    assert 2 * HOUR <= now - since < 2 * HOUR + 60
    assert engine.liquidation_preview(victim, WAD).discount_bps in {1_000 + 500 * (t - since) // HOUR
                                                                      for t in (now, now + 1)}
    for _ in range(5):
        mine(7_000)
        set_market(marks={PERP: 55_500 * WAD})
        flag(victim, sender=keeper)
    preview = engine.liquidation_preview(victim, WAD)
    assert preview.discount_bps == LIQUIDATION[2]  # max 50% of MM
    tx = liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    f = tx.decode_logs(engine.Liquidation)[0].fraction_wad
    assert f == preview.fraction_wad == expected_cap(2_500 * WAD, 3_000 * WAD, LIQUIDATION[2])


def test_liquidate__flag_not_confirmed__new_episode_starts_at_base(engine, victim, liquidator, set_market, mine,
                                                                   keeper, liquidate, flag):
    crash(set_market, 55_500)
    flag(victim, sender=keeper)
    set_market(marks={PERP: 60_000 * WAD})  # recovers; nobody unflags
    mine(9 * HOUR)
    crash(set_market, 55_500)  # a new dip hours later
    assert engine.liquidation_preview(victim, WAD).discount_bps == LIQUIDATION[0]
    tx = liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    assert tx.decode_logs(engine.Flagged)[0].since == tx.timestamp


def test_liquidate__remaining_book_would_be_dust__takes_everything(engine, victim, liquidator, set_market, admin, liquidate):
    engine.set_liquidation_params(LIQUIDATION[:5] + (2_500 * WAD,), sender=admin)
    crash(set_market, 55_500)
    tx = liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    assert tx.decode_logs(engine.Liquidation)[0].fraction_wad == WAD
    view = engine.account(victim)
    assert view.positions == [] and view.initial_margin_wad == 0 and view.margin_basis_timestamp == 0
    assert engine.cash_wad(victim) > 0  # solvent: the rest of its equity stays its own


def test_liquidate__insolvent__insurance_then_recorded_socialised_loss(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 50_000)  # equity 7k - 10k = -3k
    tx = liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    log = tx.decode_logs(engine.Liquidation)[0]
    assert log.fraction_wad == WAD
    # victim: -53k + 50k = -3k (a bankrupt book has no equity to pay a discount with): 1k
    # from the insurance fund first, the rest socialised and recorded
    assert log.discount_wad == 0 and log.insurance_wad == 0
    assert engine.cash_wad(victim) == 0
    assert tx.decode_logs(engine.InsuranceUsed)[0].amount_wad == 1_000 * WAD
    [loss] = tx.decode_logs(engine.LossSocialised)
    assert loss.amount_wad == 2_000 * WAD == loss.total_wad
    assert engine.socialised_loss_wad() == 2_000 * WAD
    assert engine.insurance_wad() == 0


def test_liquidate__multi_leg_book__same_fraction_of_every_leg(engine, fund, set_market, trade, give_margin,
                                                               accounts, maker, liquidator, liquidate):
    hedger = accounts[8]
    fund(hedger, 40_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 100_000 * USDC)
    set_market()
    trade(hedger, maker, PERP, 2 * WAD, 60_000 * WAD)
    trade(hedger, maker, CALL, -2 * WAD, 2_500 * WAD)  # per-leg bound: 12k + 18k
    give_margin(hedger, 12_000 * WAD, 9_000 * WAD)  # the covered book needs far less
    engine.withdraw(27_000 * USDC, sender=hedger)  # equity 13k
    set_market(marks={PERP: 56_000 * WAD, CALL: 1_000 * WAD})  # -8k on the perps, +3k on the calls
    h = engine.health(hedger)
    assert h.liquidatable and h.equity_wad == 8_000 * WAD
    assert engine.liquidation_preview(hedger, WAD).fraction_wad == expected_cap(8_000 * WAD, 9_000 * WAD, 1_000)
    tx = liquidate(hedger, WAD // 5, 10**30, engine.state_nonce(hedger), sender=liquidator)
    assert tx.decode_logs(engine.Liquidation)[0].fraction_wad == WAD // 5  # below the cap (~0.211)
    assert engine.position(hedger, PERP) == 2 * WAD - 2 * WAD // 5
    assert engine.position(hedger, CALL) == -2 * WAD + 2 * WAD // 5
    assert engine.position(liquidator, PERP) == 2 * WAD // 5
    assert engine.position(liquidator, CALL) == -2 * WAD // 5
    # the liquidator's pending margin grows by f * the hedged book's (leaf) IM, not per leg
    assert engine.account(liquidator).initial_margin_wad == 12_000 * WAD // 5


def test_liquidate__self__reverts(engine, victim, set_market, liquidate):
    crash(set_market, 55_500)
    with ape.reverts("engine: self-liquidation"):
        liquidate(victim, WAD, 10**30, 1, sender=victim)


def test_liquidate__fraction_out_of_range__reverts(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 55_500)
    with ape.reverts("engine: fraction out of range"):
        liquidate(victim, WAD + 1, 10**30, 1, sender=liquidator)


def test_liquidate__fraction_zero__only_starts_the_clock(engine, victim, liquidator, set_market, liquidate):
    """Fraction 0 is the witness-checked flag (what `flag` forwards to): nothing moves."""
    crash(set_market, 55_500)
    before = engine.account(victim)
    tx = liquidate(victim, 0, 10**30, 1, sender=liquidator)
    assert not tx.decode_logs(engine.Liquidation)
    assert tx.decode_logs(engine.Flagged)[0].since == tx.timestamp == engine.account(victim).liquidatable_since
    after = engine.account(victim)
    assert (after.cash_wad, after.positions, after.state_nonce) == (before.cash_wad, before.positions, before.state_nonce)


def test_liquidate__state_nonce_moved__reverts(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 55_500)
    with ape.reverts("engine: state nonce changed"):
        liquidate(victim, WAD, 10**30, 0, sender=liquidator)


def test_liquidate__no_positions__reverts(engine, victim, liquidator, attacker, liquidate):
    with ape.reverts("engine: no positions"):
        liquidate(attacker, WAD, 10**30, 0, sender=liquidator)


def test_liquidate__marks_older_than_liquidation_age__reverts(engine, victim, liquidator, set_market, mine, liquidate):
    crash(set_market, 55_500)
    mine(TRADING[4] + 1)
    with ape.reverts("engine: stale marks"):
        liquidate(victim, WAD, 10**30, 1, sender=liquidator)


def test_liquidate__healthy__reverts(engine, victim, liquidator, liquidate):
    with ape.reverts("engine: account is healthy"):
        liquidate(victim, WAD, 10**30, 1, sender=liquidator)


def test_liquidate__payment_above_limit__reverts_and_leaves_state(engine, victim, liquidator, set_market, liquidate):
    crash(set_market, 55_500)
    payment = engine.liquidation_preview(victim, WAD).payment_wad
    with ape.reverts("engine: payment above limit"):
        liquidate(victim, WAD, payment - 1, 1, sender=liquidator)
    assert engine.position(victim, PERP) == WAD
    assert engine.account(victim).liquidatable_since == 0  # the reverted attempt recorded nothing


def test_liquidate__liquidator_without_margin__reverts(engine, victim, set_market, fund, accounts, liquidate):
    poor = accounts[9]
    fund(poor, 100 * USDC)  # the slice needs ~1.6k of IM
    crash(set_market, 55_500)
    with ape.reverts("engine: liquidator below initial margin"):
        liquidate(victim, WAD, 10**30, 1, sender=poor)


def test_liquidate__liquidator_at_position_cap__still_takes_slice_but_cannot_open_more(
        engine, victim, liquidator, set_market, trade, maker, admin, liquidate):
    # max_positions bounds what trades open; liquidation is bounded by the hard bound only,
    # so lowering the parameter never makes a book impossible to liquidate
    trade(liquidator, maker, FUTURE, WAD, 60_500 * WAD)
    engine.set_trading_params((1,) + TRADING[1:], sender=admin)
    crash(set_market, 55_500)
    liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    assert len(engine.account(liquidator).positions) == 2
    with ape.reverts("engine: too many positions"):
        trade(maker, liquidator, CALL, WAD, 2_500 * WAD)


def test_liquidate__liquidator_with_stale_margin_basis__checked_against_isolated_bound(
        engine, victim, liquidator, set_market, trade, maker, mine, admin, oracle, liquidate):
    trade(liquidator, maker, FUTURE, WAD, 60_500 * WAD)
    engine.set_trading_params(TRADING[:3] + (HOUR, TRADING[4]), sender=admin)
    mine(HOUR + 1)
    crash(set_market, 55_500)
    liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    view = engine.account(liquidator)
    ids = [p.instrument_id for p in view.positions]
    im, _ = oracle.isolated_margins(ids, [p.size_wad for p in view.positions])
    assert engine.health(liquidator).equity_wad >= im


def test_liquidate__while_paused__still_works(engine, victim, liquidator, set_market, admin, liquidate):
    engine.pause(sender=admin)
    crash(set_market, 55_500)
    liquidate(victim, WAD, 10**30, 1, sender=liquidator)
    assert engine.position(liquidator, PERP) > 0


def test_extension__called_directly__reverts(extension, victim, liquidator):
    with ape.reverts("engine: delegatecall only"):
        extension.liquidate(victim, WAD, 10**30, 1, b"", sender=liquidator)


# ------------------------------------------------------------------ flag


def test_flag__liquidatable__starts_clock_and_reflag_confirms_it(engine, victim, set_market, keeper, mine, flag):
    crash(set_market, 55_500)
    tx = flag(victim, sender=keeper)
    [log] = tx.decode_logs(engine.Flagged)
    assert engine.account(victim).liquidatable_since == log.since == tx.timestamp
    mine(600)
    set_market(marks={PERP: 55_500 * WAD})
    again = flag(victim, sender=keeper)
    assert again.decode_logs(engine.Flagged)[0].since == log.since  # same episode
    assert engine.account(victim).liquidatable_since == log.since


def test_flag__healthy_again__clears_clock(engine, victim, set_market, keeper, flag):
    crash(set_market, 55_500)
    flag(victim, sender=keeper)
    set_market(marks={PERP: 60_000 * WAD})
    tx = flag(victim, sender=keeper)
    assert tx.decode_logs(engine.Unflagged)
    assert engine.account(victim).liquidatable_since == 0


def test_flag__healthy_never_flagged__reverts(engine, victim, keeper, flag):
    with ape.reverts("engine: account is healthy"):
        flag(victim, sender=keeper)


def test_flag__stale_marks__reverts(engine, victim, set_market, keeper, mine, flag):
    crash(set_market, 55_500)
    mine(TRADING[4] + 1)
    with ape.reverts("engine: stale marks"):
        flag(victim, sender=keeper)


# ------------------------------------------------------------------ keeper views


def test_liquidation_preview__healthy__zero(engine, victim):
    assert engine.liquidation_preview(victim, WAD).fraction_wad == 0


def test_liquidate__liquidator_flattened_with_negative_cash__reverts(engine, fund, set_market, trade, trader,
                                                                     maker, accounts, liquidate):
    mirror = accounts[9]
    fund(trader, 7_000 * USDC)
    fund(mirror, 7_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market(marks={PERP: 70_000 * WAD})
    trade(maker, trader, PERP, -WAD, 70_000 * WAD)
    set_market(marks={PERP: 50_000 * WAD})
    trade(maker, mirror, PERP, WAD, 50_000 * WAD)  # mirror short 1
    set_market(marks={PERP: 60_000 * WAD})  # both underwater
    with ape.reverts("engine: liquidator below initial margin"):
        liquidate(trader, WAD, 10**30, engine.state_nonce(trader), sender=mirror)

"""fill and cancel_order: EIP-712 orders signed with eth-account, margin checks on both sides,
risk-reducing trades, pause, staleness, funding on touch; every revert path."""

import ape
import pytest
from conftest import WAD
from eth_account import Account

from offchain.chain.orders import Order, order_digest, sign_order

from .conftest import CALL, FUTURE, PERP, PUT, TRADING

USDC = 10**6
PRICE = 60_000 * WAD


@pytest.fixture(scope="module")
def books(fund, set_market, maker, taker):
    """maker and taker with 100k each; fresh market data."""
    fund(maker, 100_000 * USDC)
    fund(taker, 100_000 * USDC)
    set_market()


def test_fill__maker_buys__moves_positions_cash_fee_and_logs(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, True, 2 * WAD, PRICE)
    tx = engine.fill(order.as_args(), sig, 2 * WAD, sender=taker)
    assert engine.position(maker, PERP) == 2 * WAD
    assert engine.position(taker, PERP) == -2 * WAD
    assert engine.cash_wad(maker) == (100_000 - 120_000) * WAD
    assert engine.cash_wad(taker) == (100_000 + 120_000 - 120) * WAD  # 10 bps taker fee
    assert engine.fees_wad() == 120 * WAD
    assert engine.state_nonce(maker) == engine.state_nonce(taker) == 1
    view = engine.account(maker)
    assert (view.initial_margin_wad, view.maintenance_margin_wad) == (12_000 * WAD, 6_000 * WAD)
    assert view.margin_basis_timestamp == tx.timestamp
    [log] = tx.decode_logs(engine.OrderFilled)
    assert log.order_hash == order_digest(order, _domain(engine))
    assert (log.maker, log.taker, log.instrument_id, log.maker_is_buy) == (maker.address, taker.address, PERP, True)
    assert (log.size_wad, log.price_wad, log.notional_wad, log.fee_wad) == (2 * WAD, PRICE, 120_000 * WAD, 120 * WAD)
    assert engine.account_count() == 2


def _domain(engine):
    from offchain.chain.orders import EngineDomain

    return EngineDomain(chain_id=ape.chain.chain_id, verifying_contract=engine.address)


def test_order_hash__python_digest__matches_contract(engine, make_order, maker):
    order, _ = make_order(maker, CALL, False, 3 * WAD, 2_500 * WAD, order_nonce=77)
    assert engine.order_hash(order.as_args()) == order_digest(order, _domain(engine))


def test_fill__partial_fills__track_filled_and_refuse_overfill(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, False, 3 * WAD, PRICE)
    engine.fill(order.as_args(), sig, WAD, sender=taker)
    engine.fill(order.as_args(), sig, WAD, sender=taker)
    assert engine.order_filled(order_digest(order, _domain(engine))) == 2 * WAD
    with ape.reverts("engine: fill exceeds remaining size"):
        engine.fill(order.as_args(), sig, WAD + 1, sender=taker)
    engine.fill(order.as_args(), sig, WAD, sender=taker)
    assert engine.position(maker, PERP) == -3 * WAD


def test_fill__self_trade__reverts(engine, books, make_order, maker):
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("engine: self-trade"):
        engine.fill(order.as_args(), sig, WAD, sender=maker)


def test_fill__zero_size__reverts(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("engine: zero fill size"):
        engine.fill(order.as_args(), sig, 0, sender=taker)


def test_fill__past_deadline__reverts(engine, books, make_order, maker, taker, chain, mine):
    order, sig = make_order(maker, PERP, True, WAD, PRICE, deadline=chain.pending_timestamp + 10)
    mine(60)
    with ape.reverts("engine: order expired"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__signed_by_someone_else__reverts(engine, books, engine_domain, maker, taker, attacker, chain):
    order = Order(account=maker.address, instrument_id=PERP, is_buy=True, size_wad=WAD, limit_price_wad=PRICE,
                  order_nonce=1, deadline=chain.pending_timestamp + 600)
    forged = sign_order(order, engine_domain, _as_maker(Account.create(), maker.address))
    with ape.reverts("engine: invalid signature"):
        engine.fill(order.as_args(), forged, WAD, sender=taker)
    assert engine.position(maker, PERP) == 0


def _as_maker(local, address):
    """A LocalAccount that claims `address` (sign_order refuses a mismatched maker)."""

    class Impostor:
        key = local.key

        def __init__(self):
            self.address = address

        def sign_message(self, msg):
            return local.sign_message(msg)

    return Impostor()


def test_fill__tampered_price__reverts_invalid_signature(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, False, WAD, PRICE)
    tampered = list(order.as_args())
    tampered[4] = PRICE // 2
    with ape.reverts("engine: invalid signature"):
        engine.fill(tuple(tampered), sig, WAD, sender=taker)


def test_fill__malformed_signature__reverts(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts():
        engine.fill(order.as_args(), sig[:64] + bytes([30]), WAD, sender=taker)


def test_fill__delisted_instrument__reverts(engine, books, registry, admin, make_order, maker, taker):
    registry.delist(FUTURE, sender=admin)
    order, sig = make_order(maker, FUTURE, True, WAD, PRICE)
    with ape.reverts("engine: instrument not active"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__expired_instrument__reverts(engine, books, make_order, maker, taker, expire_instruments):
    expire_instruments()
    order, sig = make_order(maker, FUTURE, True, WAD, PRICE)
    with ape.reverts("engine: instrument expired"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__unknown_instrument__reverts(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, 99, True, WAD, PRICE)
    with ape.reverts("registry: unknown instrument"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__maker_below_im__reverts_and_leaves_state(engine, fund, set_market, make_order, trader, taker):
    fund(trader, 5_000 * USDC)  # IM of one perp is 6k
    fund(taker, 100_000 * USDC)
    set_market()
    taker_cash = engine.cash_wad(taker)
    order, sig = make_order(trader, PERP, True, WAD, PRICE)
    with ape.reverts("engine: maker below initial margin"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)
    assert engine.position(trader, PERP) == 0
    assert engine.state_nonce(trader) == 0
    assert engine.cash_wad(taker) == taker_cash


def test_fill__taker_below_im__reverts(engine, fund, set_market, make_order, maker, trader):
    fund(maker, 100_000 * USDC)
    fund(trader, 6_000 * USDC)  # IM 6k plus the 60 fee does not fit
    set_market()
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("engine: taker below initial margin"):
        engine.fill(order.as_args(), sig, WAD, sender=trader)


def test_fill__beyond_position_cap__reverts(engine, books, trade, admin, maker, taker):
    engine.set_trading_params((2,) + TRADING[1:], sender=admin)
    trade(maker, taker, PERP, WAD, PRICE)
    trade(maker, taker, FUTURE, -WAD, PRICE)
    with ape.reverts("engine: too many positions"):
        trade(maker, taker, CALL, WAD, 2_500 * WAD)


def test_fill__stale_marks__reverts(engine, books, make_order, maker, taker, mine):
    mine(TRADING[2] + 1)
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("engine: stale marks"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__stale_margin_basis__margined_by_isolated_bound(engine, books, trade, maker, taker, mine, set_market):
    trade(maker, taker, PERP, WAD, PRICE)
    mine(TRADING[3] + 1)
    set_market()
    # no leaf within max_margin_basis_age: the book's isolated bound margins the trade (a
    # hedge is charged both legs' standalone rates) and it still fits 100k of equity
    trade(maker, taker, FUTURE, -WAD, PRICE)
    assert engine.position(maker, FUTURE) == -WAD
    with ape.reverts("engine: maker below initial margin"):
        trade(maker, taker, FUTURE, -20 * WAD, PRICE)


def test_fill__paused_new_risk__reverts(engine, books, admin, make_order, maker, taker):
    engine.pause(sender=admin)
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("pausable: contract is paused"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_fill__paused_then_params_set_and_fees_withdrawn__refused_until_unpaused(engine, books, trade, admin,
                                                                                 make_order, maker, taker, keeper):
    """A fill reads the pause from its mirror bit in the trading word: the owner's writes to that
    word (new trading params, a fee withdrawal) keep the bit, and unpausing clears it."""
    trade(maker, taker, PERP, WAD, PRICE)  # collects a taker fee
    engine.pause(sender=admin)
    engine.set_trading_params(TRADING, sender=admin)
    engine.withdraw_fees(1, keeper, sender=admin)
    order, sig = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("pausable: contract is paused"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)
    engine.unpause(sender=admin)
    engine.set_trading_params(TRADING, sender=admin)
    engine.fill(order.as_args(), sig, WAD, sender=taker)
    assert engine.position(maker, PERP) == 2 * WAD


def test_fill__paused_both_reduce__allowed_without_fresh_marks(engine, books, trade, admin, maker, taker, mine):
    trade(maker, taker, PERP, 2 * WAD, PRICE)
    engine.pause(sender=admin)
    mine(TRADING[2] + 1)  # marks stale: reductions must not wait for the oracle
    trade(maker, taker, PERP, -WAD, PRICE)
    assert engine.position(maker, PERP) == WAD
    assert engine.position(taker, PERP) == -WAD
    # margins scale by |new|/|old| = 1/2 (homogeneity)
    assert engine.account(maker).initial_margin_wad == 6_000 * WAD


def test_fill__reduce_book_with_applied_leaf__scales_margins_rounding_up(engine, books, trade, give_margin, maker,
                                                                         taker):
    trade(maker, taker, PERP, 3 * WAD, PRICE)
    give_margin(maker, 10_000 * WAD + 1, 5_000 * WAD)
    trade(maker, taker, PERP, -WAD, PRICE)
    h = engine.health(maker)
    assert h.im_wad == -(-(10_000 * WAD + 1) * 2 // 3)  # ceil
    assert h.mm_wad == -(-(5_000 * WAD) * 2 // 3)


def test_fill__close_whole_book__resets_margins_and_voids_older_leaves(engine, books, trade, leaf_for, post_root,
                                                                      keeper, maker, taker):
    trade(maker, taker, PERP, WAD, PRICE)
    trees = post_root([leaf_for(maker, 6_000 * WAD, 3_000 * WAD)])
    leaf, proof = trees.account_proof(maker.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=keeper)
    trade(maker, taker, PERP, -WAD, PRICE)
    view = engine.account(maker)
    assert view.positions == [] and view.margin_basis_timestamp == 0
    assert engine.health(maker).im_wad == 0
    # the basis is reset, but the leaf of the closed book never applies again
    with ape.reverts("engine: leaf older than the book's last reduction"):
        engine.apply_leaf(leaf.as_args(), proof, sender=keeper)


def test_fill__flip_long_to_short__charges_rate_of_whole_trade(engine, books, trade, maker, taker):
    trade(maker, taker, PERP, WAD, PRICE)
    trade(maker, taker, PERP, -2 * WAD, PRICE)
    assert engine.position(maker, PERP) == -WAD
    # not a reduction: pending grows by 2 units at the short rate (subadditivity bound)
    assert engine.account(maker).initial_margin_wad == 3 * 6_000 * WAD


def test_fill__bad_price_reduction_of_unhealthy_book__reverts(engine, fund, set_market, trade, make_order,
                                                               trader, maker):
    fund(trader, 7_000 * USDC)
    fund(maker, 200_000 * USDC)
    set_market()
    trade(trader, maker, PERP, WAD, PRICE)  # trader long 1: equity 7k, IM 6k, MM 3k
    set_market(marks={PERP: 55_500 * WAD})  # equity 2.5k < MM 3k
    # dumping the position to a friend at 50k would leave -3k for the insurance fund: value
    # leaves the account below the mark, which it may do only down to IM
    order, sig = make_order(trader, PERP, False, WAD, 50_000 * WAD)
    with ape.reverts("engine: maker below initial margin"):
        engine.fill(order.as_args(), sig, WAD, sender=maker)
    # at the mark it is fine, and the closed book keeps its (positive) cash
    order, sig = make_order(trader, PERP, False, WAD, 55_500 * WAD, order_nonce=2)
    engine.fill(order.as_args(), sig, WAD, sender=maker)
    assert engine.cash_wad(trader) == 2_500 * WAD


def test_fill__taker_bad_price_reduction__reverts(engine, fund, set_market, trade, make_order, trader, maker):
    fund(trader, 7_000 * USDC)
    fund(maker, 200_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, PRICE)  # trader (taker) long 1
    set_market(marks={PERP: 55_500 * WAD})
    order, sig = make_order(maker, PERP, True, WAD, 50_000 * WAD)  # maker bids far below the mark
    with ape.reverts("engine: taker below initial margin"):
        engine.fill(order.as_args(), sig, WAD, sender=trader)


def test_fill__bankrupt_book_closed_at_mark__deficit_to_insurance(engine, fund, set_market, trade, token,
                                                                  trader, maker, keeper):
    fund(trader, 7_000 * USDC)
    fund(maker, 200_000 * USDC)
    token.mint(keeper, 1_000 * USDC, sender=keeper)
    token.approve(engine, 1_000 * USDC, sender=keeper)
    engine.fund_insurance(1_000 * USDC, sender=keeper)
    set_market()
    trade(trader, maker, PERP, WAD, PRICE)
    set_market(marks={PERP: 52_500 * WAD})  # equity -500
    tx = trade(trader, maker, PERP, -WAD, 52_500 * WAD)
    assert engine.cash_wad(trader) == 0
    assert engine.insurance_wad() == 500 * WAD
    assert tx.decode_logs(engine.InsuranceUsed)[0].amount_wad == 500 * WAD


def test_fill__perp_funding__applied_on_touch(engine, books, trade, set_market, maker, taker):
    trade(maker, taker, PERP, WAD, PRICE)
    set_market(funding={PERP: 150 * WAD})  # longs pay 150 per unit
    eq_before = engine.health(maker).equity_wad
    assert eq_before == (100_000 - 150) * WAD  # unapplied funding already counts in equity
    tx = trade(maker, taker, PERP, WAD, PRICE)
    logs = {log.account: log.amount_wad for log in tx.decode_logs(engine.FundingApplied)}
    assert logs == {maker.address: -150 * WAD, taker.address: 150 * WAD}
    assert engine.account(maker).positions[0].last_funding_index_wad == 150 * WAD
    assert engine.health(maker).equity_wad == eq_before
    assert engine.external_pnl_wad() == 0  # both sides touched: funding nets out


def test_fill__options_and_future__premium_and_margins(engine, books, trade, maker, taker):
    trade(maker, taker, CALL, -WAD, 2_500 * WAD)  # maker writes a call
    trade(maker, taker, PUT, WAD, 2_400 * WAD)
    assert engine.cash_wad(maker) == (100_000 + 2_500 - 2_400) * WAD
    assert engine.account(maker).initial_margin_wad == (9_000 + 2_400) * WAD
    assert engine.account(taker).initial_margin_wad == (2_500 + 9_000) * WAD


# ------------------------------------------------------------------ cancel_order


def test_cancel_order__maker__blocks_further_fills(engine, books, make_order, maker, taker):
    order, sig = make_order(maker, PERP, True, 2 * WAD, PRICE)
    engine.fill(order.as_args(), sig, WAD, sender=taker)
    tx = engine.cancel_order(order.as_args(), sender=maker)
    assert tx.decode_logs(engine.OrderCancelled)[0].maker == maker.address
    with ape.reverts("engine: order cancelled"):
        engine.fill(order.as_args(), sig, WAD, sender=taker)


def test_cancel_order__not_maker__reverts(engine, make_order, maker, attacker):
    order, _ = make_order(maker, PERP, True, WAD, PRICE)
    with ape.reverts("engine: caller is not the maker"):
        engine.cancel_order(order.as_args(), sender=attacker)


def test_cancel_order__twice__reverts(engine, make_order, maker):
    order, _ = make_order(maker, PERP, True, WAD, PRICE)
    engine.cancel_order(order.as_args(), sender=maker)
    with ape.reverts("engine: order cancelled"):
        engine.cancel_order(order.as_args(), sender=maker)


def test_fill__solvent_book_closed_below_mark_into_deficit__reverts(engine, fund, set_market, trade, make_order,
                                                                    trader, maker):
    fund(trader, 6_100 * USDC)
    fund(maker, 200_000 * USDC)
    set_market()
    trade(trader, maker, PERP, WAD, PRICE)
    set_market(marks={PERP: 56_500 * WAD})  # equity 2.6k > 0 but < MM 3k
    # a close at 53.6k keeps MM - equity unchanged (MM falls to 0) but ends at -300 cash:
    # value leaving an account below the mark may only take it down to IM
    order, sig = make_order(maker, PERP, True, WAD, 53_600 * WAD)
    with ape.reverts("engine: taker below initial margin"):
        engine.fill(order.as_args(), sig, WAD, sender=trader)
    assert engine.insurance_wad() == 0 and engine.position(trader, PERP) == WAD


def test_fill__delisted_instrument__holders_may_still_reduce(engine, books, trade, registry, admin, maker, taker):
    trade(maker, taker, PERP, WAD, PRICE)
    registry.delist(PERP, sender=admin)
    trade(maker, taker, PERP, -WAD, PRICE)  # both sides reduce
    assert engine.position(maker, PERP) == engine.position(taker, PERP) == 0

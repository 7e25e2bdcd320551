"""Attacks that SUCCEED against the current contracts (real bugs). Each test asserts the
SAFE outcome, so it fails until the bug is fixed; the finding, its impact and a minimal
reproduction are in the test's docstring and in SECURITY.md ("Open findings").
"""

import ape
import pytest
from conftest import WAD

from offchain.chain.eip712 import sign_multi, symbol_to_bytes32

from .conftest import BTC_MARK, PERP, deploy_engine, succeeds

USD = 10**6  # settlement token units (6 decimals)


@pytest.fixture(scope="module")
def market(desk, maker, taker, attacker, accomplice, liquidator, admin, registry, project):
    """Deep-pocketed market maker and taker, an insurance fund, fresh marks."""
    desk.fund(maker, 1_000_000 * USD)
    desk.fund(taker, 1_000_000 * USD)
    desk.token.mint(admin, 20_000 * USD, sender=admin)
    desk.token.approve(desk.engine, 20_000 * USD, sender=admin)
    desk.engine.fund_insurance(20_000 * USD, sender=admin)
    desk.post_marks()
    return desk


def test_fill__full_close_at_off_market_price__deficit_not_pushed_to_insurance(
    market, maker, attacker, accomplice
):
    """FINDING 1 (critical). Closing a one-position book takes the `new_n == 0` branch of
    `_trade_side`, which runs BEFORE the risk-reducing shortfall check and, when the cash
    ends negative, hands the deficit to the insurance fund / socialised loss. The close may
    be at ANY price, so two accounts of one attacker move the book's whole value across:
      1. attacker deposits 6,100, buys 1 BTC perp at the 60,000 mark (IM 6,000);
      2. accomplice signs an order to buy 1 BTC at 1 wei; the attacker fills it (a close);
         attacker cash = -53,960 -> insurance pays 20,000, 33,960 is socialised;
      3. accomplice now holds 1 BTC worth 60,000 for nothing and sells or withdraws it.
    Safe outcome: the insurance fund and the other depositors pay nothing, and the pair's
    equity never exceeds what it deposited."""
    e = market.engine
    market.fund(attacker, 6_100 * USD)
    market.fund(accomplice, 10_000 * USD)
    market.trade(maker, attacker, PERP, -WAD, BTC_MARK)
    insurance, deposits = e.insurance_wad(), (6_100 + 10_000) * USD * e.SCALE()

    order, sig = market.order(accomplice, PERP, WAD, 1)  # buy 1 BTC at 1 wei
    succeeds(e.fill, order.as_args(), sig, WAD, sender=attacker)

    assert e.socialised_loss_wad() == 0
    assert e.insurance_wad() == insurance
    assert market.equity(attacker) + market.equity(accomplice) <= deposits


def test_withdraw__after_20x_mark_pump_on_thin_underlying__gain_bounded(
    market, maker, attacker, admin, registry
):
    """FINDING 2 (high). RiskOracle bounds index prices per update (max_index_move_bps,
    20% here), but the engine never reads index prices: equity comes from the marks in
    `post_market_data`, which have no move bound. One signed batch that follows a 20x pump
    of a thin underlying (an honest keeper in replay/source mode derives marks from the raw
    spot; only its index posts are clamped) lets a long withdraw 19x its notional at once,
    leaving the shorts bankrupt (Mango-style):
      1. list THIN perp; attacker deposits 6,000, buys 10,000 THIN at 1.00 (IM 50%);
      2. signers post THIN mark 20.00 (index for THIN would be refused: +1,900% > 20%);
      3. attacker withdraws 150,000.
    Safe outcome: a single update moves what the attacker can withdraw by at most the
    oracle's per-update bound (20% of notional = 2,000): withdrawing 8,000 reverts."""
    e = market.engine
    thin = registry.list_instrument(symbol_to_bytes32("THIN"), 1, 0, 0, sender=admin).return_value
    ids = (1, 2, 3, 4, thin)
    rates = {thin: (WAD // 2, WAD // 2, WAD // 4, WAD // 4)}
    market.post_marks(marks={thin: WAD}, rates=rates, ids=ids)
    market.fund(attacker, 6_000 * USD)
    market.trade(maker, attacker, thin, -10_000 * WAD, WAD)

    market.post_marks(marks={thin: 20 * WAD}, rates=rates, ids=ids)  # signed: values are trusted
    assert not succeeds(e.withdraw, 8_000 * USD, sender=attacker)


def test_post_attestation__attestation_from_engine_sharing_the_oracle__reverts(
    market, project, admin, token, oracle, registry, attacker, maker
):
    """FINDING 3 (high when two engines share one RiskOracle, e.g. one engine per settlement
    token). An Attestation binds (account, state_nonce) but not the engine, and its EIP-712
    domain is the ORACLE's. State nonces are small counters, so an attacker lines up the
    same nonce on both engines and replays the low margin signed for a tiny book on engine B
    onto a big book on engine A, wiping A's pending margin:
      1. on A: deposit 100,000, buy 10 BTC (pending IM 60,000);  nonce 1
      2. on B: a 0.001 BTC book (nonce 1), keeper attests IM 6 / MM 3
      3. post B's attestation to A: IM drops from 60,000 to 6; withdraw 90,000.
    Safe outcome: engine A rejects an attestation that was signed for engine B's state."""
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
                     market.signers, market.keys, market.poster)
    b.trade(maker, attacker, PERP, -WAD // 1_000, BTC_MARK)
    assert other.state_nonce(attacker) == 1
    b.mine(1)
    att = b.attestation(attacker, 6 * WAD, 3 * WAD)
    sigs = sign_multi(att, market.domain, market.signers[:2])
    other.post_attestation(att.as_args(), sigs, sender=market.poster)  # legitimate on B

    with ape.reverts():
        e.post_attestation(att.as_args(), sigs, sender=market.poster)
    assert e.account(attacker).pending_im_wad >= 60_000 * WAD

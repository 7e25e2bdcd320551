"""Shrunk sequences from the engine state machine, pinned as plain regression tests.

Each test replays the minimal sequence hypothesis reported (or the minimal sequence of a
finding that has since been fixed) on the same titanoboa deployment as the machine, and
asserts the behaviour the machine now expects.
"""

from __future__ import annotations

from .harness import CALL, FUTURE, PERP, PUT, SCALE, WAD, market_rows

USD = 10**6  # token units of the 6-decimal settlement token


def test_fill__solvent_book_closed_to_friend_at_one_wei__reverts_without_bad_debt(fresh):
    """Finding 1 (fixed in b423905): closing a whole book skipped the shortfall check, so a
    10x long sold back to a friend for 1 wei wrote 50,000 of bad debt off. Fill prices are
    now also bounded against the mark (the instrument's IM rate) on every path."""
    s = fresh
    alice, bob, carol = s.addr["alice"], s.addr["bob"], s.addr["carol"]
    assert s.deposit(alice, 10_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.deposit(carol, 100_000 * USD).ok
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok

    res = s.fill(alice, bob, PERP, False, WAD, 1)

    assert not res.ok and res.reason == "engine: price too far from mark", res
    assert s.engine.socialised_loss_wad() == 0 and s.engine.insurance_wad() == 0
    assert s.engine.position(alice, PERP) == WAD


def test_fill__reduction_against_new_risk_while_paused__reverts_for_the_new_risk_side(fresh):
    """Shrunk from the machine's pause window: bob shrinks his only position while paused,
    but his counterparty opens new risk, so the fill as a whole is paused."""
    s = fresh
    alice, bob, carol = s.addr["alice"], s.addr["bob"], s.addr["carol"]
    for who in (alice, bob, carol):
        assert s.deposit(who, 100_000 * USD).ok
    assert s.fill(bob, alice, PERP, True, WAD, 60_000 * WAD).ok  # bob long 1
    assert s.call(s.engine, "pause", sender=s.admin).ok

    res = s.fill(bob, carol, PERP, False, WAD // 10, 60_000 * WAD)  # carol would open a long
    assert not res.ok and res.reason == "pausable: contract is paused", res

    res = s.fill(bob, alice, PERP, False, WAD // 10, 60_000 * WAD)  # alice shrinks her short
    assert res.ok, res.reason
    assert s.engine.position(bob, PERP) == WAD - WAD // 10


def test_apply_leaf__empty_book_with_margins__health_zero_and_cash_withdrawable(fresh):
    """Shrunk from the machine: a leaf may carry margins for an account with no positions;
    they are stored, but an empty book owes nothing and its cash stays free."""
    s = fresh
    bob = s.addr["bob"]
    assert s.deposit(bob, 5_000 * USD).ok
    s.advance(1)
    assert s.give_margin(bob, 6_000 * WAD, 4_000 * WAD).ok

    equity, im, mm, liquidatable = s.health(bob)
    assert (equity, im, mm, liquidatable) == (5_000 * WAD, 0, 0, False)
    res = s.call(s.engine, "withdraw", 5_000 * USD, sender=bob)
    assert res.ok, res.reason
    assert s.engine.cash_wad(bob) == 0


def test_withdraw__deposit_then_withdraw_more__reverts_and_exact_amount_returns(fresh):
    """Deposit-then-withdraw never returns more than deposited (the saver's round trip)."""
    s = fresh
    saver = s.addr["saver"]
    wallet = s.token.balanceOf(saver)
    assert s.deposit(saver, 1_234 * USD + 5).ok

    res = s.call(s.engine, "withdraw", 1_234 * USD + 6, sender=saver)
    assert not res.ok and res.reason == "engine: insufficient cash", res
    assert s.call(s.engine, "withdraw", 1_234 * USD + 5, sender=saver).ok
    assert s.token.balanceOf(saver) == wallet + 1_234 * USD + 5
    assert s.engine.cash_wad(saver) == 0


def test_liquidate__option_book_after_crash__discount_bounded_and_liquidator_above_im(fresh):
    """A short call liquidated after a rally: the liquidator gains exactly the discount
    less the insurance share, stays above IM, and the account's ratio improves."""
    s = fresh
    alice, bob, liz = s.addr["alice"], s.addr["bob"], s.addr["liz"]
    assert s.deposit(alice, 15_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.deposit(liz, 1_000_000 * USD).ok
    assert s.fill(alice, bob, CALL, False, WAD, 2_500 * WAD).ok  # alice short 1 call
    rows = {CALL: (14_000 * WAD, 0, 14_000 * WAD, 11_000 * WAD, 7_000 * WAD, 5_500 * WAD)}
    assert s.post_market(rows).ok  # BTC rallies: the call is worth 14,000, equity 3,500 < MM 4,500
    e0, _, mm0, liquidatable = s.health(alice)
    assert liquidatable
    l0 = s.health(liz)[0]

    witness = s.witness(alice, 74_000 * WAD)  # the model's market after the rally
    res = s.call(s.engine, "liquidate", alice, WAD, 2**255 - 1, s.engine.state_nonce(alice), witness.encode(),
                 sender=liz)

    assert res.ok, res.reason
    (ev,) = res.events("Liquidation")
    assert ev.discount_wad <= 5_000 * ev.fraction_wad // 10_000 * mm0 // WAD
    l_equity, l_im, _, _ = s.health(liz)
    assert l_equity >= l_im
    assert abs((l_equity - l0) - (ev.discount_wad - ev.insurance_wad)) <= 2
    e1, _, mm1, _ = s.health(alice)
    assert mm1 == 0 or e1 * mm0 >= e0 * mm1
    assert s.engine.cash_wad(alice) >= 0 and e1 >= 0
    assert s.token.balanceOf(s.engine.address) * SCALE + s.engine.external_pnl_wad() + s.engine.socialised_loss_wad() == (
        sum(s.engine.cash_wad(a) for a in s.addr.values()) + s.engine.insurance_wad() + s.engine.fees_wad()
    )


def test_apply_leaf__im_below_mm__rejected_so_withdrawal_cannot_leave_account_liquidatable(fresh):
    """IM >= MM (fixed: RiskOracle.verify_account_leaf). A signed margin with IM < MM, once
    stored, let a withdrawal that passed the IM check leave the account below MM."""
    s = fresh
    alice, bob = s.addr["alice"], s.addr["bob"]
    assert s.deposit(alice, 20_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok
    s.advance(1)

    res = s.give_margin(alice, 1_000 * WAD, 5_000 * WAD)  # IM 1,000 < MM 5,000

    assert not res.ok and res.reason == "oracle: initial margin below maintenance margin", res
    equity, im, mm, liquidatable = s.health(alice)
    assert s.call(s.engine, "withdraw", (equity - im) // SCALE, sender=alice).ok
    assert not s.health(alice)[3]


def test_liquidate__fraction_below_cap_when_equity_under_discount__whole_book_taken(fresh):
    """A liquidation improves the margin ratio (fixed: engine_core._slice_fraction). While
    equity <= discount x MM every partial slice lowers the ratio (equity falls by d*f*MM, MM
    by f*MM); a liquidator asking for half the book now takes all of it."""
    s = fresh
    alice, bob, liz = s.addr["alice"], s.addr["bob"], s.addr["liz"]
    assert s.deposit(alice, 10_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.deposit(liz, 500_000 * USD).ok
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok  # MM 3,000
    rows = {PERP: (50_200 * WAD, 0, 5_020 * WAD, 5_020 * WAD, 2_510 * WAD, 2_510 * WAD)}
    assert s.post_market(rows).ok  # equity 200 < 10% discount x MM 3,000 = 300
    e0, _, mm0, liquidatable = s.health(alice)
    assert liquidatable and 0 < e0 < mm0 // 10

    witness = s.witness(alice, 50_200 * WAD)
    res = s.call(s.engine, "liquidate", alice, WAD // 2, 2**255 - 1, s.engine.state_nonce(alice), witness.encode(),
                 sender=liz)

    assert res.ok, res.reason
    (ev,) = res.events("Liquidation")
    assert ev.fraction_wad == WAD and not s.positions(alice)
    # the discount (10% of MM, 300) is capped at the equity (200): the insurance fund pays
    # nothing for a solvent account
    assert ev.discount_wad == e0 and s.engine.cash_wad(alice) == 0
    assert s.engine.insurance_wad() == ev.insurance_wad and s.engine.socialised_loss_wad() == 0


def test_settle__short_call_of_expired_conversion_first__mm_unchanged_and_not_liquidatable(fresh):
    """Leg-wise settlement in the worst order (the machine's settle_book_legwise rule, which
    the quick profile rarely reaches at expiry): alice's conversion (long future, long put,
    short call) expires deep in the money; settling the short call alone used to add the
    call's long MM rate (half its 40,000 premium) to her MM and made her liquidatable."""
    s = fresh
    alice, bob, liz = s.addr["alice"], s.addr["bob"], s.addr["liz"]
    assert s.deposit(alice, 30_000 * USD).ok
    assert s.deposit(bob, 1_000_000 * USD).ok
    assert s.deposit(liz, 1_000_000 * USD).ok
    marks = dict(zip((FUTURE, CALL, PUT), s.oracle.marks([FUTURE, CALL, PUT])[0], strict=True))
    assert s.fill(bob, alice, FUTURE, False, WAD, marks[FUTURE]).ok  # alice buys the future
    assert s.fill(bob, alice, PUT, False, WAD, marks[PUT]).ok  # and the put
    assert s.fill(bob, alice, CALL, True, WAD, marks[CALL]).ok  # and sells the call
    s.advance(1)
    assert s.give_margin(alice, 2_000 * WAD, 1_000 * WAD).ok  # the hedged book's margin
    equity = s.health(alice)[0]
    assert s.call(s.engine, "withdraw", (equity - 5_000 * WAD) // SCALE, sender=alice).ok
    s.advance(s.expiry - s.now() + 60)
    assert s.post_market(market_rows(100_000 * WAD, 0, 0)).ok  # marks at the payoffs
    for iid, price in ((FUTURE, 100_000 * WAD), (CALL, 100_000 * WAD), (PUT, 100_000 * WAD)):
        assert s.post_settlement(iid, price).ok
    _, im0, mm0, liquidatable = s.health(alice)
    assert not liquidatable

    assert s.call(s.engine, "settle", alice, CALL, sender=liz).ok

    _, im1, mm1, liquidatable = s.health(alice)
    assert mm1 == mm0 and im1 >= im0 + 20_000 * WAD and not liquidatable
    # the MM rule refuses before any witness is read (none exists: every leg expired)
    res = s.call(s.engine, "liquidate", alice, WAD, 2**255 - 1, s.engine.state_nonce(alice), b"", sender=liz)
    assert not res.ok and res.reason == "engine: account is healthy", res
    for iid in (PUT, FUTURE):
        assert s.call(s.engine, "settle", alice, iid, sender=liz).ok
    assert not s.positions(alice) and s.engine.cash_wad(alice) > 0


def test_events__every_event_of_the_engines_abi__decoded_from_the_engines_logs(deployment):
    """Shrunk from the machine: the owner's fee withdrawal repays socialised loss and logs
    `SocialisedLossRepaid` inside the engine's delegatecall to MarginEngineGovernance, which
    the harness left undecoded (titanoboa decodes an engine log with the engine's own code,
    which logs none of the delegates' events). The machine then booked the loss but never
    its repayment and reported "socialised loss differs from its events" (0.0357 repaid).
    Every event in the engine's deployed ABI must decode from the engine's logs, through the
    engine's, the extension's or the governance's event table."""
    import json

    from eth_utils.abi import event_abi_to_log_topic

    from .harness import ROOT

    abi = json.loads((ROOT / ".build/__local__.json").read_text())["contractTypes"]["MarginEngine"]["abi"]
    s = deployment
    known = set(s.engine.event_abi_for) | set(s.extension.event_abi_for) | set(s.governance.event_abi_for)
    events = [e for e in abi if e["type"] == "event"]
    assert "SocialisedLossRepaid" in [e["name"] for e in events]
    assert [e["name"] for e in events if int.from_bytes(event_abi_to_log_topic(e), "big") not in known] == []

"""Contract bugs found by the engine state machine, pinned as the minimal sequences.

These tests FAIL until the contracts are fixed (they are not skipped or xfailed: the lead
routes the fixes). Each one names the invariant of issue 5 it breaks. Once a fix lands,
remove the matching entry from machine.KNOWN_BUGS so the state machine checks it strictly.
"""

from __future__ import annotations

from .harness import PERP, SCALE, WAD

USD = 10**6  # token units of the 6-decimal settlement token


def test_fill__insolvent_book_closed_at_off_market_price__creates_no_bad_debt(fresh):
    """Bad debt appears only when an account's cash is exhausted and equals its shortfall:
    a trade must not manufacture a shortfall. Closing a whole book skips the "reduction must
    not deepen a shortfall" check, so two colluding accounts move a solvent account's
    borrowed cash into the socialised loss (here 50,000) and the friend withdraws it."""
    s = fresh
    alice, bob, carol = s.addr["alice"], s.addr["bob"], s.addr["carol"]
    assert s.deposit(alice, 10_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.deposit(carol, 100_000 * USD).ok  # an honest user whose deposit gets drained
    # alice buys 1 BTC at the mark with 10x leverage: equity 10,000 >= IM 6,000
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok
    equity_before = s.health(alice)[0]
    assert equity_before > 0 and not s.health(alice)[3]
    # alice "sells" the BTC back to her friend bob for 1 wei: her book is empty, cash -50,000
    res = s.fill(alice, bob, PERP, False, WAD, 1)
    if res.ok:
        assert s.engine.socialised_loss_wad() == 0 and s.engine.insurance_wad() == 0, (
            f"a closing fill wrote off {s.engine.socialised_loss_wad() / WAD:,.0f} of bad debt "
            f"although the account was solvent (equity {equity_before / WAD:,.0f}) before it"
        )


def test_withdraw__attestation_with_im_below_mm__never_leaves_account_liquidatable(fresh):
    """IM >= MM, and only prices, attestations or time turn a healthy account unhealthy. The
    engine stores a signed attestation with IM < MM, after which a withdrawal that passes the
    IM check leaves the account below MM (liquidatable at once)."""
    s = fresh
    alice, bob = s.addr["alice"], s.addr["bob"]
    assert s.deposit(alice, 20_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok
    s.advance(1)
    res = s.post_attestation(alice, 1_000 * WAD, 5_000 * WAD)  # IM 1,000 < MM 5,000
    if not res.ok:
        return  # rejected at the door: fixed
    equity, im, mm, liquidatable = s.health(alice)
    assert not liquidatable
    res = s.call(s.engine, "withdraw", (equity - im) // SCALE, sender=alice)
    assert res.ok, res.reason
    equity, im, mm, liquidatable = s.health(alice)
    assert not liquidatable, f"withdrawal left equity {equity / WAD:,.0f} below MM {mm / WAD:,.0f}"


def test_liquidate__fraction_below_cap_when_equity_under_discount__improves_margin_ratio(fresh):
    """A liquidation succeeds only below MM and improves the account's margin ratio. When
    equity <= discount * MM the fraction cap is 1, but a liquidator may still ask for less:
    the slice's discount then lowers equity faster than MM and the ratio falls."""
    s = fresh
    alice, bob, liz = s.addr["alice"], s.addr["bob"], s.addr["liz"]
    assert s.deposit(alice, 10_000 * USD).ok
    assert s.deposit(bob, 100_000 * USD).ok
    assert s.deposit(liz, 500_000 * USD).ok
    assert s.fill(alice, bob, PERP, True, WAD, 60_000 * WAD).ok  # MM 3,000
    rows = {PERP: (50_200 * WAD, 0, 5_020 * WAD, 5_020 * WAD, 2_510 * WAD, 2_510 * WAD)}
    assert s.post_market(rows).ok  # equity 200 < 10% discount x MM 3,000 = 300
    e0, _, mm0, liquidatable = s.health(alice)
    assert liquidatable and e0 > 0
    nonce = s.engine.state_nonce(alice)
    res = s.call(s.engine, "liquidate", alice, WAD // 2, 2**255 - 1, nonce, sender=liz)
    assert res.ok, res.reason
    e1, _, mm1, _ = s.health(alice)
    assert e1 * mm0 >= e0 * mm1, (
        f"margin ratio fell from {e0 / mm0:.4f} to {e1 / mm1:.4f} (equity {e0 / WAD:,.0f} -> "
        f"{e1 / WAD:,.0f}, MM {mm0 / WAD:,.0f} -> {mm1 / WAD:,.0f})"
    )

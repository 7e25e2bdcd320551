"""Hypothesis state machine over the real MarginEngine, RiskOracle and InstrumentRegistry.

Random sequences of deposits, withdrawals, signed fills, reductions, epoch roots, price and
funding moves, time, flags, liquidations, expiry settlements, insurance top-ups, fee
withdrawals and pause windows. Each action checks its own post-conditions (margin after new
risk, liquidation bounds, bad debt); after every step `state_is_consistent` checks the
whole-system invariants of issue 5 from the contracts' own views and events.

Cost: py-evm runs ~30k opcodes/s, so a `health()` view of a multi-position book costs ~20 ms.
Hence one snapshot of every account's stored state per step (`self.views`), reused as the
next step's "before"; health() only for the accounts an action involves.

A revert is fine only for a reason the rule lists: a panic or an unexpected message fails
the run (boa rolls the reverted call back; the next invariant pass re-checks everything).
"""

from __future__ import annotations

from collections import Counter

import boa
import numpy as np
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from offchain.chain.witness import WitnessError, leaves_engine

from .harness import (
    BPS,
    DAY,
    EXPIRING,
    HOUR,
    INSTRUMENTS,
    LIQUIDATION,
    PERP,
    SCALE,
    TRADER_NAMES,
    TRADING,
    WAD,
    WITNESS_PARAMS,
    CallResult,
    market_rows,
    system,
)

FILL_REASONS = {
    "engine: price too far from mark",
    "engine: maker below initial margin",
    "engine: taker below initial margin",
    "engine: maker reduction deepens shortfall",
    "engine: taker reduction deepens shortfall",
    "engine: stale marks",
    "engine: stale rates",
    "engine: too many positions",
    "engine: instrument expired",
    "pausable: contract is paused",
}
WITHDRAW_REASONS = {
    "engine: insufficient cash",
    "engine: below initial margin",
    "engine: stale marks",
}
LIQUIDATE_REASONS = {
    "engine: account is healthy",
    "engine: witness scenarios show no shortfall",
    "engine: no positions",
    "engine: stale marks",
    "engine: liquidator below initial margin",
    "engine: too many positions",
}
USD = 10**6  # token units of the 6-decimal settlement token

# outcome counts across all examples of a run (action: ok / revert reason), for coverage notes
OUTCOMES: Counter = Counter()

traders = st.sampled_from(TRADER_NAMES)
pairs = st.sampled_from([(x, y) for x in TRADER_NAMES for y in TRADER_NAMES if x != y])
instruments = st.sampled_from(INSTRUMENTS)


class EngineMachine(RuleBasedStateMachine):
    """One example = one fresh copy of the deployment (boa anchor), rolled back at teardown."""

    def __init__(self) -> None:
        super().__init__()
        self.s = system()
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.engine = self.s.engine
        self.names = dict(self.s.addr)
        self.all_addrs = list(self.names.values())
        self.spot = 60_000 * WAD
        self.funding = 0
        self.token_in = self.s.token.balanceOf(self.engine.address)
        self.token_out = 0
        self.saver_in = self.saver_out = 0
        self.settled_size = dict.fromkeys(INSTRUMENTS, 0)
        self.external_pnl = 0
        self.socialised = 0
        # deficits the insurance fund or socialisation paid for accounts that were solvent
        # (checked by the invariant `waterfall_never_pays_for_the_solvent`)
        self.paid_for_solvent: list[str] = []
        # liquidations of books the model (float64, at the root's inputs) calls healthy
        # (checked by the invariant `model_healthy_never_liquidated`)
        self.liquidated_healthy: list[str] = []
        # per-step snapshot of every account's stored state, and who the step may touch
        self.views: dict | None = None
        self.involved: set[str] = set()

    def teardown(self) -> None:
        self._anchor.__exit__(None, None, None)

    # ------------------------------------------------------------------ helpers

    def a(self, name: str) -> str:
        return self.names[name]

    def view(self, addr: str):
        """The account's stored state as of the start of this step."""
        return self.views[addr] if self.views is not None else self.s.account(addr)

    def book(self, addr: str) -> dict[int, int]:
        return {int(p.instrument_id): int(p.size_wad) for p in self.view(addr).positions}

    def marks(self) -> dict[int, int]:
        return {i: r[0] for i, r in market_rows(self.spot, self.funding, self.s.expiry - self.s.now()).items()}

    def onchain_mark(self, iid: int) -> int:
        """The mark the engine prices with now (options decay between posts, so the model's
        mark at this second can differ from the last posted one)."""
        return int(self.s.oracle.marks([iid])[0][0])

    def new_risk_im(self, addr: str, effective_im: int) -> int:
        """The IM new risk must keep now (MarginEngine `_new_risk_im`): the effective IM while
        the margin basis is within max_margin_basis_age, else the escape hatch, the book's
        isolated bound at the oracle's rates (a stale basis with a large signed IM, which no
        liquidation removed because the model called the book healthy, is such a book). While
        a raise below the leaf floor set the margins (FLOOR_RAISED), the smaller of the two."""
        v = self.s.account(addr)
        basis = int(v.margin_basis_timestamp)
        fresh = basis != 0 and self.s.now() <= basis + TRADING[3]
        if fresh and not self.s.floor_raised(addr):
            return effective_im
        ids = [int(p.instrument_id) for p in v.positions]
        bound = int(self.s.oracle.isolated_margins(ids, [int(p.size_wad) for p in v.positions])[0])
        return min(bound, effective_im) if fresh else bound

    def expired(self) -> bool:
        return self.s.now() >= self.s.expiry

    def touch(self, *addrs: str) -> None:
        """Declare the accounts this step may change; every other account must stay as it was."""
        self.involved.update(addrs)

    def expect(self, res: CallResult, allowed: set[str], what: str) -> bool:
        label = f"{what.split()[0]}: {'ok' if res.ok else res.reason}"
        note(f"{what}: {'ok' if res.ok else res.reason}")
        event(label)
        OUTCOMES[label] += 1
        if not res.ok:
            assert res.reason in allowed, f"{what} reverted for an unexpected reason: {res.reason!r}"
        # book the engine's externally funded P&L and written-off losses from its events
        for e in res.events("FundingApplied"):
            self.external_pnl += e.amount_wad
        for e in res.events("Settlement"):
            self.external_pnl += e.payoff_wad
        for e in res.events("LossSocialised"):
            self.socialised += e.amount_wad
        for e in res.events("SocialisedLossRepaid"):
            self.socialised -= e.amount_wad
        return res.ok

    def check_waterfall(self, res: CallResult, equity_before: dict[str, int], what: str) -> None:
        """Insurance and socialised loss pay at most what an account lacked at the marks
        before the action (nothing for a solvent one); violations fail the invariant."""
        for addr, e0 in equity_before.items():
            paid = self.deficit_of(res, addr)
            if paid > max(0, -e0):
                self.paid_for_solvent.append(f"{what}: paid {paid} for {addr} with equity {e0}")

    @staticmethod
    def deficit_of(res: CallResult, addr: str) -> int:
        """Insurance used plus loss socialised for `addr` in this transaction."""
        return sum(e.amount_wad for e in res.events("InsuranceUsed") if e.account == addr) + sum(
            e.amount_wad for e in res.events("LossSocialised") if e.account == addr
        )

    @staticmethod
    def check_stays_healthy(before: tuple, after: tuple, what: str) -> None:
        """Only prices, applied leaves or time may turn a healthy account unhealthy."""
        if not before[3]:
            assert not after[3], f"{what} turned a healthy account unhealthy: {before} -> {after}"

    # ------------------------------------------------------------------ collateral

    @initialize(units=st.lists(st.integers(2_000, 300_000), min_size=len(TRADER_NAMES), max_size=len(TRADER_NAMES)))
    def open_accounts(self, units):
        """Every trader starts with some collateral (liz, the usual liquidator, with more)."""
        for name, u in zip(TRADER_NAMES, units, strict=True):
            amount = (u * 4 if name == "liz" else u) * USD
            assert self.s.deposit(self.a(name), amount).ok
            self.token_in += amount

    @rule(who=traders, units=st.integers(1_000, 200_000), odd=st.integers(0, 999_999))
    def deposit(self, who, units, odd):
        addr = self.a(who)
        amount = units * USD + odd
        self.touch(addr)
        before = self.s.health(addr)
        res = self.s.deposit(addr, amount)
        assert self.expect(res, set(), f"deposit {who} {amount}"), "a deposit must never fail"
        self.token_in += amount
        after = self.s.health(addr)
        assert after[0] == before[0] + amount * SCALE, "deposit did not credit what arrived"
        self.check_stays_healthy(before, after, "deposit")

    @rule(who=traders, frac_bps=st.integers(1, 12_000))
    def withdraw(self, who, frac_bps):
        addr = self.a(who)
        view = self.view(addr)
        amount = max(1, max(view.cash_wad, 0) // SCALE * frac_bps // BPS)
        self.touch(addr)
        before = self.s.health(addr)
        res = self.s.call(self.engine, "withdraw", amount, sender=addr)
        if not view.positions and amount * SCALE <= view.cash_wad:
            assert res.ok, f"withdrawal of free cash without positions failed: {res.reason}"
        if not self.expect(res, WITHDRAW_REASONS, f"withdraw {who} {amount}"):
            return
        self.token_out += amount
        after = self.s.health(addr)
        if view.positions:
            im = self.new_risk_im(addr, after[1])
            assert after[0] >= im, f"withdrawal left equity {after[0]} below IM {im}"
        else:
            assert self.engine.cash_wad(addr) >= 0, "withdrawal left negative cash"
        if not view.positions or im == after[1]:
            self.check_stays_healthy(before, after, "withdraw")
        # else the escape hatch: a stale basis backs no new risk, so the book keeps its isolated
        # IM instead, which may lie below a stale (e.g. signed-high) applied MM. The book may then
        # read liquidatable by that MM, yet no witness can liquidate it: the model's MM never
        # exceeds the isolated bound it keeps (model_healthy_never_liquidated pins that).

    @rule(units=st.integers(1, 50_000), extra=st.integers(1, 10**6))
    def saver_round_trip(self, units, extra):
        """Deposit-then-withdraw never returns more than deposited, and returns all of it."""
        addr = self.a("saver")
        amount = units * USD
        self.touch(addr)
        wallet = self.s.token.balanceOf(addr)
        assert self.s.deposit(addr, amount).ok
        self.token_in += amount
        self.saver_in += amount
        cash_units = self.engine.cash_wad(addr) // SCALE
        too_much = self.s.call(self.engine, "withdraw", cash_units + extra, sender=addr)
        assert not too_much.ok and too_much.reason == "engine: insufficient cash", too_much
        res = self.s.call(self.engine, "withdraw", amount, sender=addr)
        assert res.ok, res.reason
        self.token_out += amount
        self.saver_out += amount
        assert self.s.token.balanceOf(addr) == wallet + amount

    @rule(units=st.integers(1, 20_000), fee_bps=st.integers(0, 10_000))
    def insurance_and_fees(self, units, fee_bps):
        """Anyone tops up the insurance fund; the owner takes a share of collected fees."""
        fund = self.engine.insurance_wad()
        self.s.token.mint(self.s.keeper, units * USD)
        res = self.s.call(self.engine, "fund_insurance", units * USD, sender=self.s.keeper)
        assert res.ok, res.reason
        self.token_in += units * USD
        assert self.engine.insurance_wad() == fund + units * USD * SCALE
        # fees are junior to depositors: they repay any socialised loss before the owner
        # can withdraw what is left
        fees, loss = self.engine.fees_wad(), self.engine.socialised_loss_wad()
        free = fees - min(fees, loss)
        amount = free // SCALE * fee_bps // BPS
        res = self.s.call(self.engine, "withdraw_fees", amount, self.s.keeper, sender=self.s.admin)
        assert self.expect(res, set(), f"withdraw_fees {amount}")
        assert self.engine.socialised_loss_wad() == loss - min(fees, loss)
        assert self.engine.fees_wad() == free - amount * SCALE
        self.token_out += amount
        too_much = self.engine.fees_wad() // SCALE + 1
        res = self.s.call(self.engine, "withdraw_fees", too_much, self.s.keeper, sender=self.s.admin)
        assert not res.ok and res.reason == "engine: amount exceeds fees", res

    @rule(pair=pairs, units=st.integers(1, 1_000))
    def pause_window(self, pair, units):
        """While paused: deposits and risk-reducing fills still work, new risk does not."""
        who, other = (self.a(x) for x in pair)
        self.touch(who, other)
        assert self.s.call(self.engine, "pause", sender=self.s.admin).ok
        res = self.s.deposit(who, units * USD)
        assert res.ok, f"deposit while paused failed: {res.reason}"
        self.token_in += units * USD
        book, other_book = self.book(who), self.book(other)
        if len(book) == 1 and book.keys() == other_book.keys():
            ((iid, size),), ((_, other_size),) = book.items(), other_book.items()
            if (size > 0) != (other_size > 0):
                # both sides shrink their only position: neither waits for the pause
                q = max(1, min(abs(size), abs(other_size)) // 10)
                # at the engine's mark: no value moves, so neither side waits for the pause
                mark = self.s.oracle.marks([iid])[0][0]
                res = self.s.fill(who, other, iid, size < 0, q, mark, q)
                assert res.ok or res.reason != "pausable: contract is paused", "a reduction was paused"
                self.expect(res, FILL_REASONS, f"paused-reduce {pair[0]}")
        if len(self.s.positions(who)) > 0:
            res = self.s.call(self.engine, "withdraw", 1, sender=who)
            assert not res.ok and res.reason == "pausable: contract is paused", res
        res = self.s.fill(who, other, PERP, True, WAD, self.marks()[PERP], WAD)
        if not self.expect(res, FILL_REASONS, f"paused-trade {pair[0]}"):
            assert res.reason in {"pausable: contract is paused", "engine: too many positions",
                                  "engine: maker reduction deepens shortfall",
                                  "engine: taker reduction deepens shortfall"}, res.reason
        assert self.s.call(self.engine, "unpause", sender=self.s.admin).ok

    # ------------------------------------------------------------------ trading

    def _fill(self, maker: str, taker: str, iid: int, maker_is_buy: bool, size: int, price: int,
              fill: int, what: str) -> None:
        m, t = self.a(maker), self.a(taker)
        self.touch(m, t)
        books = {x: self.book(x) for x in (m, t)}
        before = {x: self.s.health(x) for x in (m, t)}
        fees_before = self.engine.fees_wad()
        res = self.s.fill(m, t, iid, maker_is_buy, size, price, fill)
        if not self.expect(res, FILL_REASONS, what):
            return
        after = {x: self.s.health(x) for x in (m, t)}
        self.check_waterfall(res, {x: before[x][0] for x in (m, t)}, what)
        mark = self.s.oracle.marks([iid])[0][0]  # what the engine priced the fill against
        (filled,) = res.events("OrderFilled")
        fee = self.engine.fees_wad() - fees_before
        assert fee == filled.fee_wad and filled.notional_wad == fill * price // WAD
        delta = {m: fill if maker_is_buy else -fill, t: -fill if maker_is_buy else fill}
        absorbed = 0
        for x in (m, t):
            old = books[x]
            size_before = old.get(iid, 0)
            size_after = self.s.engine.position(x, iid)
            assert size_after == size_before + delta[x], "position did not move by the fill"
            e0, im0, mm0, _ = before[x]
            e1, im1, mm1, _ = after[x]
            reducing = len(old) == 1 and size_before != 0 and abs(size_after) < abs(size_before) and (
                size_after == 0 or (size_after > 0) == (size_before > 0))
            deficit = self.deficit_of(res, x)
            absorbed += deficit
            if (delta[x] > 0 and price > mark) or (delta[x] < 0 and price < mark):
                # value left this account: only down to IM, at fresh marks, never paused
                im_new = self.new_risk_im(x, im1)
                assert e1 >= im_new, f"a fill worse than the mark left equity {e1} below IM {im_new}"
            if reducing:
                # a reduction needs no fresh oracle data but never deepens the shortfall
                assert e1 >= im1 or e1 - mm1 >= e0 - mm0, "risk-reducing fill deepened a shortfall"
                if size_after == 0:
                    # empty book: no margin, and bad debt only as the cash the account lacks
                    assert (im1, mm1) == (0, 0) and self.engine.cash_wad(x) >= 0
                    assert e1 >= 0 and (deficit == 0 or e1 == 0), "bad debt left cash behind"
                    assert deficit <= max(0, -e0), f"closing fill created bad debt {deficit} (equity {e0})"
                else:
                    assert deficit == 0, "bad debt written off while positions remain"
            else:
                assert deficit == 0, "bad debt on a risk-increasing fill"
                im_new = self.new_risk_im(x, im1)
                assert e1 >= im_new, f"risk-increasing fill left equity {e1} below IM {im_new}"
            if deficit == 0:
                self.check_stays_healthy(before[x], after[x], "fill")
        # equity moves between the two sides: only the fee leaves (and rounding of marks)
        moved = sum(after[x][0] - before[x][0] for x in (m, t)) + fee - absorbed
        assert abs(moved) <= 2, f"fill created or destroyed {moved} wei of equity"

    @rule(pair=pairs, iid=instruments, maker_is_buy=st.booleans(), centi=st.integers(1, 300),
          dev_bps=st.integers(-200, 200), partial_bps=st.integers(1, 10_000))
    def trade(self, pair, iid, maker_is_buy, centi, dev_bps, partial_bps):
        size = centi * WAD // 100
        fill = max(1, size * partial_bps // BPS)
        price = max(1, self.marks()[iid] * (BPS + dev_bps) // BPS)
        self._fill(*pair, iid, maker_is_buy, size, price, fill,
                   f"trade {pair[0]}->{pair[1]} #{iid} buy={maker_is_buy} {fill}@{price}")

    @rule(pair=pairs, maker_is_buy=st.booleans(), lots=st.integers(1, 40))
    def trade_perp(self, pair, maker_is_buy, lots):
        """Leveraged perpetual trades at the mark (the usual road to liquidation)."""
        size = lots * WAD // 4
        self._fill(*pair, PERP, maker_is_buy, size, self.marks()[PERP], size,
                   f"trade {pair[0]}->{pair[1]} perp buy={maker_is_buy} {size}")

    @rule(pair=pairs, frac_bps=st.integers(1, 10_000), as_maker=st.booleans(),
          dev_bps=st.integers(-300, 300))
    def reduce(self, pair, frac_bps, as_maker, dev_bps):
        """Shrink a one-position book towards zero (the risk-reducing path), near the mark."""
        who, other = pair
        book = self.book(self.a(who))
        if len(book) != 1:
            return
        ((iid, size),) = book.items()
        q = max(1, abs(size) * frac_bps // BPS)
        price = max(1, self.marks()[iid] * (BPS + dev_bps) // BPS)
        who_buys = size < 0
        if as_maker:
            self._fill(who, other, iid, who_buys, q, price, q, f"reduce {who} by {q} as maker at {price}")
        else:
            self._fill(other, who, iid, not who_buys, q, price, q, f"reduce {who} by {q} as taker at {price}")

    @rule(pair=pairs, dev_bps=st.sampled_from([-9_000, -2_500, -1_200, -500, 500, 1_200, 2_500, 9_000]),
          frac_bps=st.integers(1, 10_000), stale=st.booleans(), paused=st.booleans())
    def off_market_reduction(self, pair, dev_bps, frac_bps, stale, paused):
        """An accomplice shrinks `who`'s one-position book far from the mark, maybe on stale
        marks or while paused: value may leave `who` only at fresh marks, unpaused, and
        down to IM; the price stays within the instrument's IM rate of the mark."""
        who, other = pair
        wa, oa = self.a(who), self.a(other)
        book = self.book(wa)
        if len(book) != 1:
            return
        ((iid, size),) = book.items()
        q = max(1, abs(size) * frac_bps // BPS)
        mark = self.s.oracle.marks([iid])[0][0]
        price = max(1, mark * (BPS + dev_bps) // BPS)
        rates = self.s.oracle.rates(iid)[0]
        band = max(rates.im_long_wad, rates.im_short_wad)
        if stale:
            self.s.advance(HOUR + 1)
        if paused:
            assert self.s.call(self.engine, "pause", sender=self.s.admin).ok
        who_buys = size < 0
        pays_away = (price > mark) if who_buys else (price < mark)
        self.touch(wa, oa)
        before = {x: self.s.health(x) for x in (wa, oa)}
        res = self.s.fill(oa, wa, iid, not who_buys, q, price, q)
        self.expect(res, FILL_REASONS, f"off-market {who} {q}@{price} (mark {mark}) stale={stale} paused={paused}")
        if iid in EXPIRING and self.expired():
            # checked before the price: an expired leg is settled, not traded
            assert not res.ok and res.reason == "engine: instrument expired", res
        elif abs(price - mark) > band:
            assert not res.ok and res.reason == "engine: price too far from mark", res
        elif res.ok:
            self.check_waterfall(res, {x: before[x][0] for x in (wa, oa)}, "off-market")
            assert not (pays_away and (stale or paused)), "value left an account on stale marks or while paused"
            if pays_away:
                e1, im1, _, _ = self.s.health(wa)
                im1 = self.new_risk_im(wa, im1)
                assert e1 >= im1, f"an off-market reduction left equity {e1} below IM {im1}"
        if paused:
            assert self.s.call(self.engine, "unpause", sender=self.s.admin).ok
        if stale:
            self._post_market()

    # ------------------------------------------------------------------ oracle, time

    def _post_market(self) -> None:
        # a move beyond the oracle's per-update mark bound is posted in steps (harness)
        res = self.s.post_market(market_rows(self.spot, self.funding, self.s.expiry - self.s.now()))
        assert res.ok, res.reason

    @rule(ret_bps=st.integers(-2_500, 2_500), funding_step=st.integers(-300, 300))
    def move_price(self, ret_bps, funding_step):
        self.spot = max(1_000 * WAD, self.spot * (BPS + ret_bps) // BPS)
        self.funding += funding_step * WAD
        note(f"spot -> {self.spot / WAD:.2f}, funding index -> {self.funding / WAD:.0f}")
        self._post_market()

    @rule(seconds=st.sampled_from([60, 600, HOUR, 3 * HOUR, 12 * HOUR, DAY]), probe=traders)
    def wait(self, seconds, probe):
        """Time passes; stale marks block new risk until the keeper posts fresh ones."""
        addr = self.a(probe)
        before = self.s.health(addr)
        self.s.advance(seconds)
        # time alone never changes equity, margins or health
        assert self.s.health(addr) == before, "time changed an account's health"
        if seconds > HOUR and self.view(addr).positions:
            res = self.s.call(self.engine, "withdraw", 1, sender=addr)
            assert not res.ok and res.reason == "engine: stale marks", res
        self._post_market()

    @rule(who=traders, from_equity=st.booleans(), mm_pct=st.integers(10, 150), im_extra_pct=st.integers(0, 100))
    def margin_one(self, who, from_equity, mm_pct, im_extra_pct):
        """A root holding one account's leaf, applied at once: MM from standalone rates, or
        from equity (may flip health); IM anywhere at or above MM."""
        addr = self.a(who)
        self.touch(addr)
        if from_equity:
            # 10%..150% of equity: often above it, which makes the account liquidatable
            mm = max(0, self.s.health(addr)[0]) * mm_pct // 100
        else:
            rows = market_rows(self.spot, self.funding, self.s.expiry - self.s.now())
            mm = sum(abs(q) * (rows[i][4] if q > 0 else rows[i][5]) // WAD for i, q in self.book(addr).items())
            mm = mm * mm_pct // 100
        im = mm * (100 + im_extra_pct) // 100
        basis_before = self.s.margins(addr)[2]
        self.s.advance(1)
        res = self.s.give_margin(addr, im, mm)
        assert self.expect(res, set(), f"margin {who} im={im} mm={mm}")
        applied = self.s.margins(addr)
        assert applied == (im, mm, self.s.now()) and self.s.now() > basis_before
        # a leaf for another state nonce never binds (a future one, here); one for the
        # same nonce and another book neither
        self.s.advance(1)
        wrong = self.s.give_margin(addr, im // 2, mm // 2, state_nonce=self.s.engine.state_nonce(addr) + 1)
        assert not wrong.ok and wrong.reason == "engine: leaf for a future state nonce", wrong
        self.s.advance(1)
        other = self.s.give_margin(addr, im // 2, mm // 2, positions_hash=b"\x01" * 32)
        assert not other.ok and other.reason == "engine: leaf for another book", other
        assert self.s.margins(addr) == applied, "a refused leaf changed the margins"

    @rule(pair=pairs, from_equity=st.booleans(), mm_pct=st.integers(10, 150), trade_first=st.booleans())
    def root(self, pair, from_equity, mm_pct, trade_first):
        """An epoch root over a leaf for every trader, as the keeper builds it (MM from rates or
        equity); `who` may trade 1 wei first (its leaf still applies with that trade's bound);
        anyone applies `who`'s leaf; the same leaf never applies twice."""
        who, counter = pair
        addr = self.a(who)
        self.touch(addr)
        rows = market_rows(self.spot, self.funding, self.s.expiry - self.s.now())
        leaves = {}
        for name in TRADER_NAMES:
            a = self.a(name)
            if from_equity:
                mm = max(0, self.s.health(a)[0]) * mm_pct // 100
            else:
                mm = sum(abs(q) * (rows[i][4] if q > 0 else rows[i][5]) // WAD for i, q in self.book(a).items())
                mm = mm * mm_pct // 100
            leaves[a] = self.s.leaf(a, mm * 2, mm)
        self.s.advance(1)
        res, trees = self.s.post_root(list(leaves.values()))
        assert self.expect(res, set(), f"root over {sorted(leaves)}")
        before = self.s.engine.pending_total(addr)
        if trade_first and self.book(addr):
            iid, q = next(iter(self.book(addr).items()))
            self._fill(counter, who, iid, q > 0, 1, self.onchain_mark(iid), 1, f"1-wei fill {counter}->{who} #{iid}")
        after = self.s.engine.pending_total(addr)
        held = self.s.margins(addr)
        res = self.s.apply_leaf(trees, addr, sender=self.a("saver"))
        if after >> 192 > leaves[addr].state_nonce:
            # a risk-reducing 1-wei trade shrank the book: the older leaf cannot bind to it and
            # only raises (IM, MM the larger of the held and the leaf's, the leaf's counting up
            # to the book's isolated bound; basis and counters kept), or is refused when it
            # raises neither or the book is now empty
            cap = self.s.isolated_bound({int(p.instrument_id): int(p.size_wad) for p in self.s.account(addr).positions})
            raised = (max(held[0], min(leaves[addr].initial_margin_wad, cap[0])),
                      max(held[1], min(leaves[addr].maintenance_margin_wad, cap[1])))
            if raised == held[:2] or not self.book(addr):
                assert not res.ok and res.reason == "engine: leaf older than the book's last reduction", res
                return
            assert self.expect(res, set(), f"raise-only leaf {who}")
            assert self.s.margins(addr) == (*raised, held[2]), "an unbound leaf only raises and keeps the basis"
            assert self.s.engine.pending_total(addr) == after, "an unbound leaf moved the pending counters"
            return
        assert self.expect(res, set(), f"apply leaf {who}")
        grown_im = ((after & (2**96 - 1)) - (before & (2**96 - 1))) % 2**96
        assert self.s.margins(addr)[0] == leaves[addr].initial_margin_wad + grown_im, \
            "effective IM is the leaf's plus the pending since its nonce"
        again = self.s.apply_leaf(trees, addr, sender=self.a("saver"))
        assert not again.ok and again.reason == "engine: leaf not newer than margin basis", again

    # ------------------------------------------------------------------ liquidation

    def _flag(self, addr: str, liquidatable: bool) -> None:
        """flag() with the account's witness (binding scenarios): starts (or confirms) the
        discount clock of an account below the applied MM and the witness's margin, or clears
        a healthy one's. No clock starts or runs on at or above the witness's margin."""
        witnessed = self._witness(addr, None) if liquidatable else None
        # the witness's root is one second later: read the health the flag will see
        e0, _, _, liquidatable = self.s.health(addr)
        if liquidatable and witnessed is None:
            return  # no witness (a leg expired at the root, or the book turned liquidatable just now)
        since = self.view(addr).liquidatable_since
        res = self.s.call(self.engine, "flag", addr, witnessed[0].encode() if witnessed else b"",
                          sender=self.s.keeper)
        refused = {"engine: witness scenarios show no shortfall", "engine: equity below the isolated bound"}
        allowed = {"engine: account is healthy", "engine: stale marks"} | refused
        if self.expect(res, allowed, "flag"):
            assert liquidatable or since != 0, "flag cleared an account that was not flagged"
            if liquidatable and res.events("Flagged"):
                assert e0 < witnessed[1], f"flag ran the clock at equity {e0} >= witness margin {witnessed[1]}"
                # a running episode keeps its start; a new one starts now
                (ev,) = res.events("Flagged")
                assert ev.since in (since, self.s.now()) and self.s.account(addr).liquidatable_since == ev.since
            else:
                # cleared: healthy by the applied MM, or (below it) by the witness and the
                # isolated bound at the root's rates, so in every scenario of the model
                assert since != 0 and res.events("Unflagged") and self.s.account(addr).liquidatable_since == 0
                if liquidatable:
                    event("flag: clock cleared below the applied MM")
                    _, chain_mm, model_mm, tol = witnessed
                    assert e0 >= chain_mm and e0 >= model_mm - tol, \
                        f"flag cleared the clock at equity {e0} < model MM {model_mm} (witness {chain_mm})"
        elif res.reason in refused:
            assert e0 >= witnessed[1], f"flag refused at equity {e0} < witness margin {witnessed[1]}"
            assert self.s.account(addr).liquidatable_since == since

    def _witness(self, victim: str, named: int | None):
        """The victim's witness against a root posted now (binding scenarios, or scenario
        `named` for the unit and the joint term), the verifier's margin of it and the model's
        MM (float64 engine on the root's inputs, WAD); None when no witness exists (a leg
        expired at the root: settle first)."""
        try:
            w = self.s.witness(victim, self.spot, *(([named], named) if named is not None else ()))
        except WitnessError as err:
            note(f"no witness for {victim[:8]}: {err}")
            event("liquidate: no witness (expired leg)")
            return None
        risk, _ = leaves_engine(WITNESS_PARAMS, w.leaves, self.s.now())
        model = risk.breakdown(np.array([w.sizes_wad], dtype=float) / WAD, exact=True).mm[0]
        # the pricer's error bound (docs/verification.md): 1e-9 of the gross notional, 1 wei a leg
        tol = int(1e-9 * sum(abs(q) * leaf.forward_wad for q, leaf in zip(w.sizes_wad, w.leaves, strict=True)) / WAD)
        return w, self.s.witness_margin(w), int(model * WAD), tol + len(w.leaves)

    def _check_witness_rule(self, res: CallResult, e0: int, liq0: bool, witnessed, named, what: str) -> None:
        """The model's rule: a liquidation goes through only below the witness's margin (and
        that never exceeds the model's MM); with the binding scenarios named, a refusal means
        the model calls the book healthy."""
        _, chain_mm, model_mm, tol = witnessed
        assert chain_mm <= model_mm + tol, f"witness margin {chain_mm} above the model's {model_mm}"
        if res.ok:
            assert e0 < chain_mm, f"{what}: liquidated at equity {e0} >= witness margin {chain_mm}"
            if e0 >= model_mm + tol:
                self.liquidated_healthy.append(f"{what}: equity {e0} >= model MM {model_mm}")
        elif res.reason == "engine: witness scenarios show no shortfall":
            assert liq0 and e0 >= chain_mm, f"{what}: refused at equity {e0} < witness margin {chain_mm}"
            if named is None:
                assert e0 >= model_mm - tol, f"{what}: binding witness refused below the model's MM"

    @rule(liquidator=traders, pick=st.integers(0, 3), frac_bps=st.sampled_from([10_000, 5_000, 2_000, 500, 1]),
          flag_first=st.booleans(), wait_hours=st.sampled_from([0, 0, 1, 4]),
          named=st.sampled_from([None, None, None, 0, 9, 20, 30]))
    def liquidate(self, liquidator, pick, frac_bps, flag_first, wait_hours, named):
        """Flag (maybe), let the Dutch auction run (maybe), then liquidate a slice with a
        witness: the binding scenarios, or a named one (which may not show the loss)."""
        la = self.a(liquidator)
        others = [self.a(n) for n in TRADER_NAMES if n != liquidator]
        healths = {x: self.s.health(x) for x in others}
        # prefer an account below MM; otherwise try a healthy one (must revert)
        targets = [x for x in others if healths[x][3]] or others
        va = targets[pick % len(targets)]
        self.touch(la, va)
        if flag_first:
            self._flag(va, healths[va][3])
            if wait_hours:
                # the Dutch auction runs; the keeper keeps the marks fresh meanwhile
                self.s.advance(wait_hours * HOUR)
                self._post_market()
        view = self.s.account(va)
        before_l = self.s.health(la)
        # read after the auction's wait: funding accrued meanwhile moves the equity that
        # caps the discount
        e0, _, mm0, liq0 = self.s.health(va)
        fraction = frac_bps * WAD // BPS
        witnessed = self._witness(va, named) if view.positions else None
        if view.positions and witnessed is None:
            return
        what = f"liquidate {va[:8]} by {liquidator} f={fraction} named={named}"
        res = self.s.call(self.engine, "liquidate", va, fraction, 2**255 - 1, view.state_nonce,
                          witnessed[0].encode() if witnessed else b"", sender=la)
        if witnessed:
            self._check_witness_rule(res, e0, liq0, witnessed, named, what)
        if not self.expect(res, LIQUIDATE_REASONS, what):
            if liq0 and res.reason == "engine: account is healthy":
                raise AssertionError("a liquidatable account refused liquidation as healthy")
            return
        assert liq0, "liquidated an account that was not below MM"
        # the slice and the discount are computed on the smaller of the applied MM and the
        # witness's margin; the account's margins (applied) scale by 1 - f
        mm_cap = min(mm0, witnessed[1])
        (ev,) = res.events("Liquidation")
        f = ev.fraction_wad
        # the discount follows the Dutch auction from the start of the episode (a Flagged
        # event when this liquidation started a new one) and never exceeds its cap
        base, slope, cap, share = LIQUIDATION[:4]
        flagged = res.events("Flagged")
        since = flagged[0].since if flagged else view.liquidatable_since
        disc_bps = min(base + slope * (self.s.now() - since) // HOUR, cap)
        # at most the request, except that the whole book goes while equity <= discount x MM
        assert 0 < f <= fraction or (f == WAD and e0 <= disc_bps * mm_cap // BPS)
        # ... and never exceeds the account's equity (nothing for a bankrupt one)
        assert ev.discount_wad == min(disc_bps * f // BPS * mm_cap // WAD, max(e0, 0))
        assert ev.discount_wad <= cap * f * mm_cap // BPS // WAD
        assert ev.insurance_wad == ev.discount_wad * share // BPS
        assert ev.payment_wad == ev.slice_value_wad - ev.discount_wad + ev.insurance_wad
        # the liquidator ends at or above IM and gains the discount less the insurance share
        after_l = self.s.health(la)
        assert after_l[0] >= self.new_risk_im(la, after_l[1]), "liquidator left below IM"
        gain = after_l[0] - before_l[0]
        assert abs(gain - (ev.discount_wad - ev.insurance_wad)) <= 32, f"liquidator gained {gain}"
        # the two accounts may have one owner: together they never gain (self-liquidation)
        e1 = self.s.health(va)[0]
        self.check_waterfall(res, {va: e0}, f"liquidate {va[:8]}")
        assert gain + (e1 - e0) - self.deficit_of(res, va) <= 32, "liquidator and account gained together"
        e1, _, mm1, _ = self.s.health(va)
        deficit = self.deficit_of(res, va)
        if not self.s.positions(va):
            assert f == WAD and mm1 == 0
            # bad debt only once the account's cash is exhausted, and exactly the shortfall
            assert deficit == max(0, -e0), f"bad debt {deficit} != shortfall {-e0}"
            assert self.engine.cash_wad(va) == max(0, e0 - ev.discount_wad)
        else:
            assert deficit == 0, "bad debt written off while positions remain"
            assert mm1 <= mm0
            assert e1 * mm0 >= e0 * mm1, f"liquidation lowered the margin ratio: {e0}/{mm0} -> {e1}/{mm1}"

    @rule(pair=pairs, mult=st.integers(10, 40))
    def self_liquidation_through_second_account(self, pair, mult):
        """One owner's second account liquidates the first while its equity is a small part
        of MM (a leaf at `mult`/10 x the base discount's reach: 0 < equity <= d x MM), where
        an uncapped discount used to exceed the equity: the pair never gains and the
        insurance fund and socialised loss pay nothing."""
        victim, other = (self.a(x) for x in pair)
        if not self.view(victim).positions:
            return
        e0 = self.s.health(victim)[0]
        if e0 <= 0:
            return
        self.touch(victim, other)
        mm = e0 * mult * BPS // (10 * LIQUIDATION[0])
        self.s.advance(1)
        assert self.expect(self.s.give_margin(victim, mm, mm), set(), f"margin {pair[0]} mm={mm}")
        e0 = self.s.health(victim)[0]
        e_other = self.s.health(other)[0]
        fund, lost = self.engine.insurance_wad(), self.engine.socialised_loss_wad()
        witnessed = self._witness(victim, None)
        if witnessed is None:
            return
        res = self.s.call(self.engine, "liquidate", victim, WAD, 2**255 - 1, self.engine.state_nonce(victim),
                          witnessed[0].encode(), sender=other)
        self._check_witness_rule(res, e0, self.s.health(victim)[3], witnessed, None,
                                 f"self-liquidate {pair[0]} by {pair[1]}")
        if not self.expect(res, LIQUIDATE_REASONS, f"self-liquidate {pair[0]} by {pair[1]}"):
            return
        (ev,) = res.events("Liquidation")
        assert ev.discount_wad <= max(e0, 0), f"discount {ev.discount_wad} above equity {e0}"
        self.check_waterfall(res, {victim: e0}, "self-liquidation")
        gain = self.s.health(other)[0] - e_other + self.s.health(victim)[0] - e0
        assert gain <= 32, f"the pair gained {gain} by self-liquidation"
        if e0 >= 0:
            assert self.engine.insurance_wad() >= fund and self.engine.socialised_loss_wad() == lost

    # ------------------------------------------------------------------ settlement

    @precondition(lambda self: self.expired())
    @rule(pick=st.integers(0, 3), order=st.permutations(EXPIRING), dev_bps=st.integers(-500, 500))
    def settle_book_legwise(self, pick, order, dev_bps):
        """Anyone settles one book's expired legs one by one, in any order: settlement never
        changes MM, so only the legs' final payoffs (not the order) decide its health."""
        for iid in EXPIRING:
            if self.s.oracle.settlement_price(iid) == 0:
                price = max(1, self.marks()[iid] * (BPS + dev_bps) // BPS)
                res = self.s.post_settlement(iid, price)
                assert res.ok, res.reason
        holders = [a for a in self.all_addrs if any(self.book(a).get(i, 0) for i in EXPIRING)]
        if not holders:
            return
        addr = holders[pick % len(holders)]
        self.touch(addr)
        for iid in order:
            size = self.s.positions(addr).get(iid, 0)
            if size == 0:
                continue
            e0, im0, mm0, _ = self.s.health(addr)
            res = self.s.call(self.engine, "settle", addr, iid, sender=self.s.keeper)
            assert self.expect(res, set(), f"settle-legwise #{iid} size {size}"), "settlement must never fail"
            self.settled_size[iid] += size
            e1, im1, mm1, liq1 = self.s.health(addr)
            if self.s.positions(addr):
                assert mm1 == mm0 and im1 >= im0, f"settlement moved MM {mm0} -> {mm1}"
                assert not liq1 or e1 < mm0, "settlement made a book liquidatable by its margin"
                assert self.deficit_of(res, addr) == 0
            else:
                # the last leg: bad debt only as what the final payoffs left the account short
                assert e1 >= 0 and self.engine.cash_wad(addr) == e1

    @precondition(lambda self: self.expired())
    @rule(iid=st.sampled_from(EXPIRING), pick=st.integers(0, 3), dev_bps=st.integers(-500, 500))
    def settle(self, iid, pick, dev_bps):
        if self.s.oracle.settlement_price(iid) == 0:
            price = max(1, self.marks()[iid] * (BPS + dev_bps) // BPS)
            res = self.s.post_settlement(iid, price)
            assert res.ok, res.reason
        holders = [a for a in self.all_addrs if self.book(a).get(iid, 0)] or self.all_addrs
        addr = holders[pick % len(holders)]
        size = self.book(addr).get(iid, 0)
        self.touch(addr)
        res = self.s.call(self.engine, "settle", addr, iid, sender=self.s.keeper)
        if size == 0:
            assert not res.ok and res.reason == "engine: no position", res
            return
        assert self.expect(res, set(), f"settle #{iid} size {size}"), "settlement must never fail"
        self.settled_size[iid] += size
        if not self.s.positions(addr):
            equity = self.s.health(addr)[0]
            assert equity >= 0 and self.engine.cash_wad(addr) == equity

    # ------------------------------------------------------------------ invariants

    @invariant()
    def model_healthy_never_liquidated(self):
        """No liquidation went through while the equity was at or above the model's MM of the
        book at the current marks, whatever MM was signed for it or scenario was named."""
        assert not self.liquidated_healthy, self.liquidated_healthy

    @invariant()
    def waterfall_never_pays_for_the_solvent(self):
        """The insurance fund and socialised loss never paid for an account that was solvent
        at the marks before the action (fills, liquidations), so neither self-liquidation
        nor off-market fills between friends can draw on them."""
        assert not self.paid_for_solvent, self.paid_for_solvent

    @invariant()
    def state_is_consistent(self):
        e = self.engine
        views = {a: self.s.account(a) for a in self.all_addrs}
        # acting on one account never changes another's stored state, hence its health
        if self.views is not None:
            for addr in self.all_addrs:
                if addr not in self.involved:
                    assert views[addr] == self.views[addr], f"an action changed uninvolved account {addr}"
        self.views, self.involved = views, set()

        # token balance * SCALE + external P&L + socialised loss == cash + insurance + fees
        balance = self.s.token.balanceOf(e.address)
        assert balance == self.token_in - self.token_out, "token balance differs from the ledger"
        assert e.external_pnl_wad() == self.external_pnl, "external P&L differs from its events"
        assert e.socialised_loss_wad() == self.socialised, \
            f"socialised loss differs from its events: {e.socialised_loss_wad()} on chain, {self.socialised} booked"
        cash = sum(v.cash_wad for v in views.values())
        assets = balance * SCALE + self.external_pnl + self.socialised
        assert assets == cash + e.insurance_wad() + e.fees_wad(), "funds do not add up"

        # positions net to zero per instrument (settled legs counted where they left)
        for iid in INSTRUMENTS:
            net = self.settled_size[iid] + sum(
                p.size_wad for v in views.values() for p in v.positions if p.instrument_id == iid)
            assert net == 0, f"instrument {iid} nets to {net}"

        for addr, v in views.items():
            im, mm, _basis = self.s.margins(addr)
            assert im >= mm, f"IM {im} < MM {mm} for {addr}"
            if not v.positions:
                # an empty book owes nothing: cash is never negative and it is never flagged
                assert v.cash_wad >= 0, f"empty book of {addr} holds negative cash {v.cash_wad}"
                assert v.liquidatable_since == 0, f"empty book of {addr} is flagged since {v.liquidatable_since}"

        saver = views[self.a("saver")]
        assert self.saver_out <= self.saver_in and saver.cash_wad == (self.saver_in - self.saver_out) * SCALE

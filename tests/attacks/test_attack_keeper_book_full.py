"""V27: an outsider fills the keeper's liquidator book. The keeper keeps every slice it takes,
a slice gives the liquidator a part of each of the victim's positions, and the engine refuses
one that takes the liquidator's book past its position cap (32: "engine: too many
positions") or past 8 underlyings ("registry: book on more than 8 underlyings"). One thin
account of the attacker's holding 32 dust positions, liquidated once by the keeper (a partial
slice: every part of a dust position is nonzero), filled the keeper's only account, and from
then on every liquidation of a book on another instrument reverted: the attacker's leveraged
long went bankrupt unliquidated while its own hedge account held the gain.

Mitigated in the keeper: a slice goes to the first of its liquidator accounts (the gas key's,
then the spares of `liquidator_keys`) whose book has room for every position of the victim;
with none, the liquidation is not sent and /health raises an alarm. Open: each spare's book
can be filled the same way, one thin account liquidated per spare.

Real Anvil, real contracts and signatures (2 of 2), the real keeper's cycles.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from support.e2e import FixedSource, fill_at_marks, keeper_epoch, start_keeper

from offchain.chain.contracts import WAD, call_named
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.keeper.metrics import KeeperMetrics
from offchain.keeper.prices import DAY
from offchain.risk import load_params

T0 = 1_700_000_000
PERP = 1
FUTURES = list(range(2, 34))   # 32 futures, ids 2..33
DUST = 10**15                  # 0.001 BTC


@contextmanager
def _world(tmp_path, source, specs, spare: bool):
    """The chain, the system with `specs` listed, and the keeper: its gas key's account and,
    with `spare`, one spare liquidator account (each funded 1,000,000); the chain stops after."""
    dev = start_anvil(accounts=9, timestamp=T0)
    a = dev.accounts
    admin, dealer, gas, filler, victim, hedge, extra = a[0], a[1], a[2], a[3], a[4], a[7], a[8]
    signer_keys = [a[5], a[6]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [k.address for k in signer_keys], 2, params,
                        EngineSettings(max_price_age_s=DAY, max_liquidation_price_age_s=DAY))
    list_instruments(dep, admin, specs)
    for acct, amount in ((gas, 1_000_000), (extra, 1_000_000), (dealer, 5_000_000)):
        fund(dep, admin, acct, amount)
    metrics = KeeperMetrics()
    try:
        keeper = start_keeper(dev, dep, gas, signer_keys, params, source, tmp_path, metrics,
                              spares=[extra] if spare else [], price_max_age_s=DAY, root_max_age_s=DAY)
        yield dict(dev=dev, dep=dep, admin=admin, dealer=dealer, gas=gas, spare=extra, filler=filler, victim=victim,
                   hedge=hedge, keeper=keeper, metrics=metrics, cfg=keeper.cfg, source=source, nonce=[0])
    finally:
        dev.stop()


FUTURE_SPECS = [{"underlying": "BTC", "kind": "perpetual"}] + [
    {"underlying": "BTC", "kind": "future", "expiry": T0 + (60 + k) * DAY} for k in range(len(FUTURES))]


@pytest.fixture
def world(tmp_path):
    with _world(tmp_path, FixedSource(), FUTURE_SPECS, spare=True) as w:
        yield w


@pytest.fixture
def world_without_spare(tmp_path):
    with _world(tmp_path, FixedSource(), FUTURE_SPECS, spare=False) as w:
        yield w


def _next(w, seconds=1):
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + seconds)


def _rates(w):
    """The keeper's per-unit rates at the source's prices now: [IM long, IM short, MM long, MM
    short] per instrument."""
    keeper = w["keeper"]
    now = w["dev"].w3.eth.get_block("latest")["timestamp"]
    return keeper.compute(keeper.posted_marks, w["source"].prices, w["source"].vol(now), now,
                          keeper._live(now))["rates"]


def _trade(w, maker, taker, iid, size):
    """maker buys `size` (WAD, < 0 sells) of `iid` from taker at the keeper's posted mark."""
    w["nonce"][0] += 1
    fill_at_marks(w["dev"], w["dep"], w["keeper"], [(maker, taker, iid, size)], first_nonce=w["nonce"][0])


def _root(w):
    keeper_epoch(w["dep"], w["keeper"])


def _health(w, who):
    h = call_named(w["dep"].engine, "health", who.address)
    return int(h["equity_wad"]) / WAD, int(h["mm_wad"]) / WAD


def _positions(w, who):
    return call_named(w["dep"].engine, "account", who.address)["positions"]


def _victim_long(w, cushion):
    """The victim long 10 BTC perps (its own hedge account short them), funded `cushion` x IM."""
    rates = _rates(w)
    fund(w["dep"], w["admin"], w["victim"], int(10 * rates[0][PERP - 1] * cushion) + 1)
    fund(w["dep"], w["admin"], w["hedge"], 200_000)
    _trade(w, w["victim"], w["hedge"], PERP, 10 * WAD)


def _fall(w):
    """BTC -25%, then -3% a cycle for 10 keeper cycles: the keeper's liquidations of the victim."""
    w["source"].prices[0] *= 0.75
    attempts, caught, seen = [], [], []
    for _ in range(10):
        _next(w, 60)
        report = w["keeper"].cycle()
        for x in report.liquidated:
            if x["account"] == w["victim"].address:
                (caught if x["ok"] else attempts).append(report.block if x["ok"] else x["error"][:60])
        seen.append(_health(w, w["victim"]))
        w["source"].prices[0] *= 0.97
    return attempts, caught, seen


def _fill_the_keepers_book(w, before_the_dip=lambda w: None):
    """The attacker's `filler` account buys 1 BTC of future #2 on 1.05x its IM and 0.001 BTC of
    each of the 31 other futures (32 positions; the dealer takes the other sides); its `victim`
    account goes long 10 BTC perps on 2.5x IM, its `hedge` account short them. BTC -8%: only
    the thin filler is below MM; the keeper liquidates it (a partial slice) into its gas key's
    account, which then holds 32 positions, one per future (0.254 BTC of #2, 0.000254 BTC of
    each other). The filler's equity 6,264 -> 3,766: 2,400 of it the 8% move on its 1 BTC
    future, which the attacker's own counterparty account gains back, and the slice's
    discount 1.34."""
    keeper, dep = w["keeper"], w["dep"]
    rates = _rates(w)
    im_future = rates[0][FUTURES[0] - 1]
    dust_im = sum(rates[0][i - 1] * DUST / WAD for i in FUTURES[1:])
    fund(dep, w["admin"], w["filler"], int((im_future + dust_im) * 1.05) + 1)
    _trade(w, w["filler"], w["dealer"], FUTURES[0], WAD)
    for iid in FUTURES[1:]:
        _trade(w, w["filler"], w["dealer"], iid, DUST)
    _victim_long(w, 2.5)
    _root(w)
    assert len(_positions(w, w["filler"])) == 32
    before_the_dip(w)
    w["source"].prices = w["source"].prices * 0.92
    liquidated = []
    for _ in range(3):
        _next(w, 60)
        liquidated += [x["account"] for x in keeper.cycle().liquidated if x["ok"]]
    assert w["filler"].address in liquidated and w["victim"].address not in liquidated
    assert len(_positions(w, w["gas"])) == 32


def _the_spare_liquidates_the_fall(w):
    """The fall liquidates the victim from the spare account, no attempt refused; returns the
    victim's (equity, MM) per cycle."""
    attempts, caught, seen = _fall(w)
    equity, mm = seen[-1]
    print(f"V27: victim (equity, MM) per cycle={[(round(e), round(m)) for e, m in seen]} "
          f"refused={attempts} liquidated at={caught} source={w['source'].prices[0]:.0f}")
    assert caught and not attempts, f"{len(attempts)} refused attempt(s) {attempts[:2]}, victim {equity:.0f} vs MM {mm:.0f}"
    assert [p[0] for p in _positions(w, w["spare"])] == [PERP]
    return seen


def test_keeper__outsider_fills_the_keepers_book_with_32_dust_positions__the_spare_account_liquidates_the_long(world):
    """V27. Before the fix, with the gas key's account full, in the fall (source 22,500 ->
    15,265) the victim's (equity, MM) went (49,086, 53,372) ... (4,182, 25,618), (-685,
    24,849): 6 keeper attempts, all "engine: too many positions", 0 liquidations, the victim
    bankrupt while its hedge account held the other side's gain. Now the slice goes to the
    keeper's spare account, from the first cycle the victim is short, and no attempt reverts."""
    w = world
    _fill_the_keepers_book(w)
    seen = _the_spare_liquidates_the_fall(w)
    assert len(_positions(w, w["gas"])) == 32
    assert min(e for e, _m in seen) > 0
    assert int(w["metrics"].liquidations_blocked._value.get()) == 0


def test_keeper__outsider_fills_the_only_liquidator_account__liquidation_not_sent_and_health_alarm(world_without_spare):
    """V27's residual: a keeper without a spare (or with every spare filled the same way)
    cannot take the slice. It sends no transaction that would revert, names the reason, and
    /health turns red with it, so its operator adds a spare or closes the positions taken."""
    w = world_without_spare
    _fill_the_keepers_book(w)
    w["source"].prices[0] *= 0.75
    blocked = []
    for _ in range(6):
        _next(w, 60)
        blocked += [x for x in w["keeper"].cycle().liquidated if x["account"] == w["victim"].address]
        if blocked:
            break
        w["source"].prices[0] *= 0.97
    assert blocked and all(not x["ok"] and x["tx"] is None for x in blocked), blocked
    assert "no liquidator account has room for its book" in blocked[0]["error"]
    ok, status = w["metrics"].health(max_lag_blocks=5, max_cycle_age_s=float("inf"))
    assert not ok and "no liquidator account has room" in status["reason"]
    assert int(w["metrics"].liquidations_blocked._value.get()) == 1
    equity, mm = _health(w, w["victim"])
    assert equity < mm   # still short: the alarm is the operator's to answer


def test_keeper__owner_lowers_max_positions_below_a_book__the_keeper_still_liquidates_it(world):
    """Found by the attacker pass on V27's mitigation (Low): the keeper judged an account's
    room at the engine's `max_positions` parameter, but the engine bounds a liquidator's book
    by its hard bound (32), so that lowering the parameter below existing books never makes
    them impossible to liquidate. With the parameter at 8, the filler's 32-position book was
    "blocked" (no account had room, /health red) though the engine takes it from an empty
    account. Now the keeper judges room at the hard bound."""
    def lower_the_cap(w):
        engine = w["dep"].engine
        params = list(engine.functions.trading_params().call())
        params[0] = 8
        send(w["dev"].w3, w["admin"], engine.functions.set_trading_params(tuple(params)), "set_trading_params")

    w = world
    _fill_the_keepers_book(w, lower_the_cap)   # the gas key's empty account takes the 32-position slice
    assert int(w["metrics"].liquidations_blocked._value.get()) == 0


def test_keeper__control_without_the_filler__the_same_fall_liquidates_the_victim(world):
    """Control (holds): the same victim and the same dip and fall, nobody filled the keeper's
    book: the keeper liquidates the victim as soon as it is short."""
    w = world
    _victim_long(w, 2.5)
    _root(w)
    w["source"].prices = w["source"].prices * 0.92
    for _ in range(3):
        _next(w, 60)
        w["keeper"].cycle()
    attempts, caught, seen = _fall(w)
    print(f"control: victim (equity, MM) per cycle={[(round(e), round(m)) for e, m in seen]} "
          f"failed attempts={attempts} liquidated at blocks={caught}")
    assert caught and not attempts


@pytest.fixture
def nine(tmp_path):
    # BTC 30,000 and eight others at 1,000
    source = FixedSource([30_000.0] + [1_000.0] * 8, ["BTC", "U1", "U2", "U3", "U4", "U5", "U6", "U7", "U8"])
    # ids: 1 = BTC perp, 2..9 = U1..U8 perps
    with _world(tmp_path, source, [{"underlying": u, "kind": "perpetual"} for u in source.underlyings], spare=True) as w:
        yield w


def test_keeper__outsider_puts_the_keepers_book_on_8_underlyings__the_spare_liquidates_a_long_on_a_9th(nine):
    """The same with nine underlyings listed (one perp each) instead of 33 instruments: the
    filler holds 1 U1 perp on 1.05x IM and 0.001 of each of U2..U8 (8 underlyings); U1 falls
    8% and the keeper liquidates it (its book now spans 8 underlyings); the victim is long 10
    BTC perps on 2.5x IM (a 9th underlying) and BTC falls as above: every keeper liquidation
    of it reverted "registry: book on more than 8 underlyings". Measured before the fix: the
    keeper's gas account held 8 perps on U1..U8 after the filler's slice; the victim's (equity,
    MM) went (67,098, 53,372) ... (12,999, 27,010) over 10 cycles (source BTC 22,500 ->
    16,968), 4 keeper attempts, all refused, 0 liquidations. Now the spare takes it."""
    w = nine
    keeper = w["keeper"]
    rates = _rates(w)
    others = list(range(3, 10))
    fund(w["dep"], w["admin"], w["filler"],
         int((rates[0][1] + sum(rates[0][i - 1] * DUST / WAD for i in others)) * 1.05) + 1)
    _trade(w, w["filler"], w["dealer"], 2, WAD)
    for iid in others:
        _trade(w, w["filler"], w["dealer"], iid, DUST)
    fund(w["dep"], w["admin"], w["victim"], int(10 * rates[0][PERP - 1] * 2.5) + 1)
    fund(w["dep"], w["admin"], w["hedge"], 200_000)
    _trade(w, w["victim"], w["hedge"], PERP, 10 * WAD)
    _root(w)
    w["source"].prices[1] *= 0.92
    liquidated = []
    for _ in range(3):
        _next(w, 60)
        liquidated += [x["account"] for x in keeper.cycle().liquidated if x["ok"]]
    assert w["filler"].address in liquidated and len(_positions(w, w["gas"])) == 8
    _the_spare_liquidates_the_fall(w)

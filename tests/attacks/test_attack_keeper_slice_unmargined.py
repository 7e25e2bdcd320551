"""V28: a slice the liquidator account cannot margin, and a refused liquidation never retried.

The engine margins a slice like a trade: the liquidator must end with equity >= IM
("engine: liquidator below initial margin"). V27's first mitigation gave a slice to the first
account with room (positions, underlyings), never asking about margin, and a liquidation that
failed stayed "in flight" at the victim's nonce until an engine event named the victim, which
a refusal never emits. Measured before the fix (BTC 30,000 and ETH 2,000 perpetuals; the gas
key's account funded 1,000,000, its spare 11,000,000): the attacker's `whale` long 10,500 ETH
perps (21M notional) on 1.05x IM, its own `hedge` short; ETH -8% (whale equity 3,196,954, MM
3,916,752): two attempts from the gas key's account, both "liquidator below initial margin",
then none; the operator's 10,000,000 top-up of that account changed nothing; ETH -3% a cycle
to 1,399: the whale at -1,435,382, never liquidated, /health 200 throughout, the spare unused.

Fixed in the keeper: a slice goes to an account with room and the free margin the whole book's
IM needs (else the part of the book the account with the most free margin covers); a refused
liquidation is retried after 1, 2, 4 ... 32 blocks, and one refused for the liquidator's own
reason (margin, room) keeps /health red while the victim stays liquidatable.
"""

from __future__ import annotations

import pytest
from support.e2e import FixedSource

from attacks.test_attack_keeper_book_full import (
    _health,
    _next,
    _positions,
    _rates,
    _root,
    _trade,
    _world,
)
from offchain.chain.contracts import WAD, call_named
from offchain.devnet.deploy import TOKEN_DECIMALS, fund, send

BTC, ETH = 1, 2
SPECS = [{"underlying": "BTC", "kind": "perpetual"}, {"underlying": "ETH", "kind": "perpetual"}]
WHALE_ETH = 10_500


def two_source():
    """BTC 30,000 and ETH 2,000 at 60% vol; the tests move ETH."""
    return FixedSource([30_000.0, 2_000.0], ["BTC", "ETH"])


@pytest.fixture
def world(tmp_path):
    with _world(tmp_path, two_source(), SPECS, spare=True) as w:
        yield w


def _whale(w):
    """The whale long 10,500 ETH perps on 1.05x IM, its hedge short them, under a root."""
    whale, hedge = w["filler"], w["hedge"]
    fund(w["dep"], w["admin"], whale, int(WHALE_ETH * _rates(w)[0][ETH - 1] * 1.05) + 1)
    fund(w["dep"], w["admin"], hedge, 40_000_000)
    _trade(w, whale, hedge, ETH, WHALE_ETH * WAD)
    _root(w)
    return whale


def _cycles(w, whale, n, step):
    """n keeper cycles, ETH x `step` after each: the keeper's outcomes for the whale (block,
    sent, error), whether /health was ever red, and the whale's (ETH, equity, MM)."""
    out, red, seen = [], False, []
    for _ in range(n):
        _next(w, 60)
        report = w["keeper"].cycle()
        out += [(report.block, x["ok"], x["tx"] is not None, (x["error"] or "")[:60])
                for x in report.liquidated if x["account"] == whale.address]
        red |= not w["metrics"].health(max_lag_blocks=10**9, max_cycle_age_s=float("inf"))[0]
        seen.append((round(float(w["source"].prices[ETH - 1])), *map(round, _health(w, whale))))
        w["source"].prices[ETH - 1] *= step
    return out, red, seen


def test_keeper__whale_slice_the_gas_account_cannot_margin__the_funded_spare_liquidates_it(world):
    w = world
    fund(w["dep"], w["admin"], w["spare"], 10_000_000)   # the spare can margin the slice
    whale = _whale(w)
    w["source"].prices[ETH - 1] *= 0.92
    out, red, seen = _cycles(w, whale, 4, 0.97)
    print(f"V28: outcomes={out} health red={red} whale (ETH, equity, MM)={seen}")
    assert any(ok for _b, ok, _s, _e in out) and not any(not ok for _b, ok, _s, _e in out), out
    assert [p[0] for p in _positions(w, w["spare"])] == [ETH] and not _positions(w, w["gas"])
    assert not red


def test_keeper__whale_no_account_can_margin_the_whole_book__the_richest_takes_the_part_it_can(world):
    """Neither account can margin the whole slice (1,000,000 free each, the book's IM ~4.9M):
    the keeper asks for the part the account with the most free margin covers, and the engine
    takes it (a partial slice of a book not yet deep in deficit), cycle after cycle."""
    w = world
    whale = _whale(w)
    w["source"].prices[ETH - 1] *= 0.92
    out, red, seen = _cycles(w, whale, 4, 1.0)
    print(f"V28 partial: outcomes={out} health red={red} whale (ETH, equity, MM)={seen}")
    assert out and all(ok for _b, ok, _s, _e in out), out
    assert _positions(w, w["gas"]) and seen[-1][1] > seen[0][1] - 1   # parts taken, equity not sinking
    assert not red


def test_keeper__refused_for_its_own_margin__retried_with_backoff_and_health_red_until_taken(world):
    """The engine's refusal for the liquidator's own state (here the gas key's account left
    with 1 token after the keeper assigned it: its health read before, its withdrawal mined
    before the liquidation) is not left in flight: the victim is tried again after 1, 2, 4 ...
    blocks, /health is red while it stays liquidatable, and a later attempt takes it."""
    w = world
    keeper, dep = w["keeper"], w["dep"]
    fund(dep, w["admin"], w["spare"], 10_000_000)
    whale = _whale(w)
    own_send = keeper.executor.send_batch

    def drain_first(calls):
        # the operator moves the gas key's margin out just before the keeper's liquidation
        if any(label.startswith("liquidate:") for label, _c in calls) and not drain_first.done:
            drain_first.done = True
            free = call_named(dep.engine, "health", w["gas"].address)["equity_wad"] // WAD - 1
            send(w["dev"].w3, w["gas"], dep.engine.functions.withdraw(free * 10**TOKEN_DECIMALS), "withdraw")
        return own_send(calls)
    drain_first.done = False
    keeper.executor.send_batch = drain_first
    fund(dep, w["admin"], w["gas"], 9_000_000)          # the gas key's account can margin it...
    w["source"].prices[ETH - 1] *= 0.92
    out, red, _seen = _cycles(w, whale, 8, 1.0)
    print(f"V28 retry: outcomes={out} health red={red} refused={keeper.refused}")
    refused = [o for o in out if not o[1]]
    assert refused and "liquidator below initial margin" in refused[0][3]
    assert red                                          # ...until it could not
    assert any(o[1] for o in out[out.index(refused[0]):]), out   # retried, and taken
    assert int(w["metrics"].liquidations_blocked._value.get()) == 0

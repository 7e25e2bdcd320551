"""V30 (found by the attacker pass on V28's fix; fixed): the keeper's liquidator account past
`max_margin_basis_age` was margined by the engine at its book's isolated bound, every slice
given to it was refused, and the funded spare was never tried.

The engine margins a slice with `_new_risk_im`: the effective IM while the account's margin
basis is younger than `max_margin_basis_age` (2 days on the devnet), else the book's isolated
bound at the oracle's current rates. The keeper never applied its own accounts' leaves, and a
slice keeps the older basis, so an account holding an inherited book passed the age two days
after its first slice and stayed there; for a hedged inherited book the bound is many times
the portfolio IM, while the account's `health` (stored IM) looked rich.

Sequence (the V27 chain: 1 BTC perp and 32 BTC futures, BTC 30,000; the gas key's account
1,000,000, the spare 11,000,000):
1. the attacker's `filler` buys 600 BTC perps and sells 580 BTC of future #2, applies its own
   leaf (the keeper's public proof) and withdraws down to 1.05x its portfolio IM;
2. BTC -10%: the keeper takes a 32% slice into the gas key's account (discount 789.11): the
   account holds 192.18 perps / -185.77 futures, IM 41,974, isolated bound 2,163,574;
3. 2.5 days of keeper cycles;
4. the attacker's `victim` goes long 10 BTC perps on 2.5x IM (its `hedge` short them); BTC
   -25%, then -3% a cycle.
Measured before the fix: 8 attempts, all from the gas key's account (health ~905,000 "free"
against a need of ~33,000), all refused "engine: liquidator below initial margin"; the spare
never used; the victim bankrupt at (-6,622, MM 23,912).
Now: the keeper applies the liquidator account's own leaf of the current root in the batch
before its slice (its basis is fresh again), and an account the engine refuses for its own
state is passed over for that victim's retry.

Real Anvil, real contracts and signatures (2 of 2), the real keeper's cycles.
"""

from __future__ import annotations

import pytest
from support.e2e import FixedSource

from attacks.test_attack_keeper_book_full import (
    FUTURE_SPECS,
    FUTURES,
    PERP,
    _next,
    _positions,
    _root,
    _trade,
    _victim_long,
    _world,
)
from offchain.chain.contracts import WAD, call_named
from offchain.devnet.deploy import TOKEN_DECIMALS, fund, send
from offchain.keeper.roots import leaf_args

N = 600          # perps bought by the filler; it sells N - 20 of future #2


@pytest.fixture
def world(tmp_path):
    with _world(tmp_path, FixedSource(), FUTURE_SPECS, spare=True) as w:
        yield w


def _h(w, who):
    h = call_named(w["dep"].engine, "health", who.address)
    return round(int(h["equity_wad"]) / WAD), round(int(h["im_wad"]) / WAD), round(int(h["mm_wad"]) / WAD)


def _seed_a_hedged_book(w):
    """Steps 1-3: the gas key's account holds a hedged slice whose basis is 2.5 days old."""
    dep, k, w3 = w["dep"], w["keeper"], w["dev"].w3
    fund(dep, w["admin"], w["filler"], 8_000_000)
    fund(dep, w["admin"], w["dealer"], 50_000_000)
    _trade(w, w["filler"], w["dealer"], PERP, N * WAD)
    _trade(w, w["filler"], w["dealer"], FUTURES[0], -(N - 20) * WAD)
    _root(w)
    leaf, proof = leaf_args(k.proof(w["filler"].address))
    send(w3, w["filler"], dep.engine.functions.apply_leaf(leaf, proof), "apply_leaf")
    eq, im, _mm = _h(w, w["filler"])
    send(w3, w["filler"], dep.engine.functions.withdraw((eq - int(im * 1.05) - 1) * 10**TOKEN_DECIMALS), "withdraw")
    w["source"].prices[0] *= 0.9
    taken = []
    for _ in range(3):
        _next(w, 60)
        taken += [x for x in k.cycle().liquidated if x["ok"] and x["account"] == w["filler"].address]
    assert taken and [p[0] for p in _positions(w, w["gas"])] == [PERP, FUTURES[0]]
    for _ in range(5):
        _next(w, 12 * 3600)
        k.cycle()
    w["source"].prices[0] = 30_000.0
    for _ in range(3):
        _next(w, 60)
        k.cycle()
    book = _positions(w, w["gas"])
    iso = dep.oracle.functions.isolated_margins([p[0] for p in book], [p[1] for p in book]).call()
    return taken[0], iso[0] / WAD


def test_keeper__liquidator_account_past_its_margin_basis_age__its_own_leaf_applied_and_the_slice_taken(world):
    w = world
    fund(w["dep"], w["admin"], w["spare"], 10_000_000)
    slice_, isolated = _seed_a_hedged_book(w)
    gas_before = _h(w, w["gas"])
    print(f"seed: slice fraction {slice_['fraction_wad'] / WAD:.4f} discount {slice_['discount_wad'] / WAD:.2f}; "
          f"gas account (equity, IM, MM) {gas_before}, isolated bound {isolated:,.0f}")
    assert isolated > gas_before[0] > 10 * gas_before[1]     # looks rich, is not to the engine
    _victim_long(w, 2.5)
    _root(w)
    w["source"].prices[0] *= 0.75
    attempts, seen = [], []
    for _ in range(14):
        _next(w, 60)
        report = w["keeper"].cycle()
        attempts += [(x["ok"], (x["error"] or "")[:50]) for x in report.liquidated if x["account"] == w["victim"].address]
        seen.append((round(float(w["source"].prices[0])), *_h(w, w["victim"])[::2]))
        w["source"].prices[0] *= 0.97
    print(f"victim (BTC, equity, MM) per cycle={seen}")
    print(f"attempts={attempts}; gas {_h(w, w['gas'])}, spare {_h(w, w['spare'])}")
    assert attempts and all(ok for ok, _e in attempts), attempts
    assert min(e for _p, e, _m in seen) > 0
    assert PERP in [p[0] for p in _positions(w, w["gas"])] and not _positions(w, w["spare"])

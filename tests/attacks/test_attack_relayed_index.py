"""Relaying the keeper's signed INDEX posts (anyone may post signed data) ahead of it, alone and
with its market data, in a gap past the oracle's per-update bound. The keeper's own index post
is refused ("not newer") and it does not record it (`index_posted_at` moves only on its own
receipt), but it reads the oracle's index afresh every cycle, so nothing stalls: marks and
index reach the source, the short long is liquidated. Held (pins the behaviour)."""

from __future__ import annotations

from offchain.chain.contracts import WAD

from .test_attack_relayed_marks_hold_root import (  # noqa: F401
    PERP,
    _leveraged_long_with_its_leaf,
    _relay_first,
    world,
)


def _gap(w, labels):
    keeper, victim, dep, dev = w["keeper"], w["victim"], w["dep"], w["dev"]
    _leveraged_long_with_its_leaf(w)
    relayed = _relay_first(w, victim, labels, labelled=True)
    w["source"].prices = w["source"].prices * 0.50
    seen, liquidated = [], []
    for _ in range(5):
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        liquidated += [x["account"] for x in keeper.cycle().liquidated if x["ok"]]
        seen.append((dep.oracle.functions.marks([PERP]).call()[0][0] // WAD,
                     dep.oracle.functions.index_price(b"BTC".ljust(32, b"\0")).call()[0] // WAD))
    print(f"relays={relayed} chain (mark, index)={seen} liquidated={liquidated}")
    assert any(ok for name, ok in relayed if name == "post_index_prices")
    assert seen[-1][0] <= 15_000 * 1.01 and seen[-1][1] <= 15_000 * 1.01
    assert victim.address in liquidated


def test_keeper__outsider_relays_each_index_post_first_in_a_gap__marks_index_and_liquidation_proceed(world):  # noqa: F811 - the shared fixture
    _gap(world, {"post_index_prices"})


def test_keeper__outsider_relays_marks_and_index_first_in_a_gap__marks_index_and_liquidation_proceed(world):  # noqa: F811 - the shared fixture
    _gap(world, {"post_index_prices", "post_market_data"})

"""Pause and unpause around the keeper's liquidation of a short book (held, pins it): the
engine's owner pauses right before the keeper's cycle, BTC falls 10%; the keeper's marks,
root, leaf and witness liquidation all land while paused (liquidation never waits for the
pause: only new risk and value leaving accounts do); after the unpause the next fall is
liquidated as usual. Funds add up throughout (token balance == cash + insurance + fees)."""

from __future__ import annotations

from offchain.chain.contracts import call_named
from offchain.devnet.deploy import send

from .test_attack_relayed_marks_hold_root import _leveraged_long_with_its_leaf, world  # noqa: F401


def _funds_add_up(w):
    dep = w["dep"]
    e = dep.engine.functions
    scale = e.SCALE().call()
    balance = dep.token.functions.balanceOf(dep.engine.address).call() * scale
    cash = sum(int(call_named(dep.engine, "account", a)["cash_wad"])
               for a in (w["victim"].address, w["dealer"].address, w["gas"].address))
    return balance, cash + e.insurance_wad().call() + e.fees_wad().call()


def test_keeper__owner_pauses_right_before_the_cycle__short_long_liquidated_while_paused_and_after(world):  # noqa: F811 - the shared fixture
    w = world
    keeper, victim, dep, dev, admin = w["keeper"], w["victim"], w["dep"], w["dev"], w["admin"]
    _leveraged_long_with_its_leaf(w)
    send(dev.w3, admin, dep.engine.functions.pause(), "pause")
    w["source"].prices = w["source"].prices * 0.90
    dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
    paused = [x for x in keeper.cycle().liquidated if x["account"] == victim.address]
    send(dev.w3, admin, dep.engine.functions.unpause(), "unpause")
    w["source"].prices = w["source"].prices * 0.85
    after = []
    for _ in range(3):
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        after += [x for x in keeper.cycle().liquidated if x["account"] == victim.address]
    bal, owed = _funds_add_up(w)
    print(f"while paused={[(x['ok'], x['error'][:50]) for x in paused]} after={[(x['ok'], x['error'][:50]) for x in after]} "
          f"balance={bal} owed={owed}")
    assert paused and all(x["ok"] for x in paused)
    assert after and all(x["ok"] for x in after)
    assert bal == owed

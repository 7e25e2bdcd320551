"""SECURITY.md V26 (keeper side of V25): signed market data and roots are public the moment
the keeper broadcasts them, and anyone may post them. An outsider (here the victim itself)
that relays the keeper's own signed market data ahead of the keeper's transaction makes the
keeper's post revert ("not newer than stored"): the marks ARE on chain, exactly the keeper's.
The keeper used to read its failed receipt as "marks not posted", hold back the root and the
liquidations and keep its in-memory marks stale, so one relay per cycle stopped every witness
liquidation while the book sank below zero, froze the oracle's marks one step into a gap,
and (relaying the root instead) left the keeper serving proofs of an old epoch. Now a refused
post counts as posted when the chain holds exactly what was signed.

Real Anvil, real contracts and signatures (2 of 2), the real keeper's cycles; the front-run
is simulated by posting the keeper's own PreparedCall from the outsider's account just before
the keeper's executor broadcasts it (what a mempool watcher paying a higher tip achieves).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.e2e import FixedSource

from offchain.chain.contracts import WAD, call_named
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.prices import DAY
from offchain.keeper.roots import leaf_args
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.risk import load_params

T0 = 1_700_000_000
PERP = 1


@pytest.fixture
def world(tmp_path):
    dev = start_anvil(accounts=9, timestamp=T0)
    a = dev.accounts
    admin, dealer, gas, victim = a[0], a[1], a[2], a[4]
    signer_keys = [a[5], a[6]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [k.address for k in signer_keys], 2, params,
                        EngineSettings(max_price_age_s=DAY, max_liquidation_price_age_s=DAY))
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"}])
    for acct, amount in ((gas, 1_000_000), (dealer, 5_000_000)):
        fund(dep, admin, acct, amount)
    source = FixedSource()
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(tmp_path),
                       price_max_age_s=DAY, root_max_age_s=DAY)
    keeper = Keeper(cfg, dep, Signers(signer_keys), Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"),
                    params, source)
    keeper.startup()
    keeper.cycle()
    w = dict(dev=dev, dep=dep, admin=admin, dealer=dealer, gas=gas, victim=victim, keeper=keeper, cfg=cfg,
             source=source)
    try:
        yield w
    finally:
        dev.stop()


def _next_second(w):
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 1)


def _leveraged_long_with_its_leaf(w):
    """The victim long 10 BTC perps at 30,000 on 5% above their IM; a root gives its leaf."""
    keeper, dev, dep, victim = w["keeper"], w["dev"], w["dep"], w["victim"]
    now = dev.w3.eth.get_block("latest")["timestamp"]
    rates = keeper.compute(keeper.posted_marks, w["source"].prices, np.array([0.6]), now, keeper._live(T0))["rates"]
    fund(dep, w["admin"], victim, int(10 * rates[0][0] * 1.05) + 1)
    mark = int(round(keeper.posted_marks[PERP - 1] * WAD))
    order = Order(victim.address, PERP, True, 10 * WAD, mark, 1, now + DAY)
    sig = sign_order(order, engine_domain(dev.w3.eth.chain_id, dep.engine.address), victim)
    send(dev.w3, w["dealer"], dep.engine.functions.fill(order.as_tuple(), sig, 10 * WAD), "fill")
    for _ in range(4):
        _next_second(w)
        if keeper.cycle().epoch:
            return
    raise AssertionError("no root for the victim's book")


def _relay_first(w, relayer, label="post_market_data", labelled=False):
    """Every call labelled `label` (a label or a set of them) the keeper broadcasts (its signed
    market data, "post_index_prices" or "root") is posted first, unchanged, by `relayer`;
    returns the relays' outcomes (with `labelled`, as (label, outcome) pairs)."""
    keeper = w["keeper"]
    labels = {label} if isinstance(label, str) else set(label)
    rival = Executor(w["dev"].w3, relayer, w["cfg"].gas)
    own = keeper.executor.send_batch
    relayed = []

    def front_run(calls):
        for name, call in calls:
            if name in labels:
                (r,) = rival.send_batch([(name, call.with_gas(1_000_000))])
                relayed.append((name, r.ok) if labelled else r.ok)
        return own(calls)

    keeper.executor.send_batch = front_run
    return relayed


def _book(w):
    h = call_named(w["dep"].engine, "health", w["victim"].address)
    pos = call_named(w["dep"].engine, "account", w["victim"].address)["positions"]
    return int(h["equity_wad"]), int(h["mm_wad"]), pos


def test_keeper__outsider_relays_each_cycles_signed_marks_first__liquidation_of_a_short_long_still_sent(world):
    """Sequence: long 10 perps at 30,000 on 1.05x IM, leaf applied. BTC falls 10% (equity
    below MM by every measure). Each keeper cycle (60 s apart, BTC falling another 2% each)
    broadcasts its signed marks; the victim relays them first (anyone may post signed data),
    the keeper's copy reverts "not newer", the keeper holds back its root and liquidations.
    Measured before the fix (the keeper judged its posts by its own receipts) (source BTC 30,000 -> 21,843 over 8 cycles): 8 relays, 0
    roots, 0 liquidations; the chain's mark stops at 22,515 (the keeper steps from a stale
    30,000, see the gap test below); equity 59,618 (MM 53,372) -> -15,232 at that mark. When the relayer stops, the next
    cycle liquidates and the 15,232 deficit is absorbed (insurance fund, then socialised).
    Safe outcome: the keeper liquidates the short book (the marks it signed are on chain)."""
    w = world
    keeper, victim = w["keeper"], w["victim"]
    _leveraged_long_with_its_leaf(w)
    equity0, mm0, _ = _book(w)
    assert equity0 > mm0                                     # healthy before the fall
    relayed = _relay_first(w, victim)
    w["source"].prices = w["source"].prices * 0.90
    reports = []
    for _ in range(8):
        w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 60)
        reports.append(keeper.cycle())
        w["source"].prices = w["source"].prices * 0.97
    equity, mm, positions = _book(w)
    on_chain_mark = w["dep"].oracle.functions.marks([PERP]).call()[0][0]
    print(f"relays={relayed} roots={[r.epoch for r in reports]} "
          f"liquidated={[x['account'] for r in reports for x in r.liquidated if x['ok']]} "
          f"equity0={equity0 / WAD:.0f} mm0={mm0 / WAD:.0f} equity={equity / WAD:.0f} mm={mm / WAD:.0f} "
          f"mark={on_chain_mark / WAD:.0f} size={positions[0][1] / WAD if positions else 0}")
    assert all(relayed)                                      # the relayed marks are the chain's marks
    caught = any(x["ok"] and x["account"] == victim.address for r in reports for x in r.liquidated)
    # the relayer stops: the next cycle liquidates what is left, the insurance fund covers the rest
    keeper.executor.send_batch = Executor.send_batch.__get__(keeper.executor)
    e = w["dep"].engine.functions
    insurance0, social0 = e.insurance_wad().call(), e.socialised_loss_wad().call()
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 60)
    late = keeper.cycle()
    # the deficit absorbed: the insurance fund first, then socialised over every account
    lost = insurance0 - e.insurance_wad().call() + e.socialised_loss_wad().call() - social0
    print(f"late liquidation={[x['account'] for x in late.liquidated if x['ok']]} "
          f"insurance before={insurance0 / WAD:.0f} deficit absorbed={lost / WAD:.0f}")
    assert caught and lost <= 0, \
        f"never liquidated: equity {equity / WAD:.0f} vs MM {mm / WAD:.0f} after {len(reports)} cycles; " \
        f"a deficit of {lost / WAD:.0f} absorbed (insurance, then socialised) once the relayer stopped"
    assert any(x["ok"] and x["account"] == victim.address for r in reports for x in r.liquidated), \
        f"never liquidated: equity {equity / WAD:.0f} vs MM {mm / WAD:.0f} after {len(reports)} cycles"


def test_keeper__one_relay__the_same_cycle_posts_its_root_and_liquidates(world):
    """A relayed post costs the keeper nothing: its own copy is refused ("not newer"), the
    oracle holds the very marks it signed, so the cycle counts them as posted and sends its
    root and the liquidation in the next block. Before the fix it cost a cycle."""
    w = world
    keeper, victim = w["keeper"], w["victim"]
    _leveraged_long_with_its_leaf(w)
    relayed = _relay_first(w, victim)
    w["source"].prices = w["source"].prices * 0.90
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 60)
    first = keeper.cycle()
    assert relayed == [True] and first.posted_prices and first.epoch > 0
    assert victim.address in [x["account"] for x in first.liquidated if x["ok"]]


def test_keeper__outsider_relays_its_signed_root_first__keeper_serves_proofs_of_the_current_root(world):
    """Sequence: as above, but the outsider relays the keeper's signed ROOT ahead of it (the
    marks land; the root goes out in the next batch, public in the mempool). The keeper's own
    post_root is refused ("not newer"), so it never commits the epoch (`_commit_epoch` runs
    only on its own receipt): its trees and its /proof answers stay at the last epoch it
    posted itself and its book's leaves are never recorded, while the chain's epoch moves on
    (its witnesses still work: they are built from the cycle's own trees). Measured before the fix (the keeper judged its posts by its own receipts): 3 cycles, 3 relays, chain
    epoch 1 -> 4, keeper trees and /proof at epoch 1; the dealer's withdrawal with the
    keeper's proof reverts. Safe outcome: the keeper adopts its own root posted by anyone
    (it holds the trees) and serves proofs of the current root."""
    w = world
    keeper, dealer, dep, dev = w["keeper"], w["dealer"], w["dep"], w["dev"]
    _leveraged_long_with_its_leaf(w)
    relayed = _relay_first(w, dev.accounts[7], "root")
    w["source"].prices = w["source"].prices * 0.90
    for _ in range(3):
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        keeper.cycle()
        w["source"].prices = w["source"].prices * 0.99
    chain_epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0]
    doc = keeper.proof(dealer.address)
    served = doc["epoch"] if doc else None
    withdrew = True
    try:
        leaf, proof = leaf_args(doc)
        send(dev.w3, dealer, dep.engine.functions.withdraw_with_leaf(1_000 * 10**6, leaf, proof), "withdraw")
    except Exception as exc:  # noqa: BLE001 - the outcome is measured, asserted below
        withdrew = False
        print(f"withdraw with the keeper's proof: {str(exc)[:120]}")
    print(f"relays={relayed} chain epoch={chain_epoch} keeper trees={keeper.trees.epoch} served={served}")
    assert all(relayed)
    assert served == chain_epoch and withdrew, \
        f"keeper serves epoch {served} proofs while the chain is at epoch {chain_epoch}; withdrawal ok={withdrew}"


def test_keeper__outsider_relays_each_cycles_signed_marks_in_a_gap__chain_marks_still_reach_the_source(world):
    """Sequence: BTC gaps 30,000 -> 15,000 (-50%, beyond the oracle's per-update bound). The
    keeper steps its marks (`Keeper._stepped`) from what it believes it posted last; the
    outsider relays each cycle's signed marks first, so the keeper never records a post and
    steps again from 30,000 every cycle: each cycle re-signs the SAME first step with a fresh
    timestamp. Measured before the fix (the keeper judged its posts by its own receipts): 5 cycles, 5 relays, the chain's mark frozen at
    22,515 (one step) with fresh signed times while the source is at 15,000; no root, no
    liquidation. Safe outcome: the chain's marks reach the source within a few cycles (two
    steps reach it without the relayer: 22,515, 16,897, 15,000)."""
    w = world
    keeper, victim, dep, dev = w["keeper"], w["victim"], w["dep"], w["dev"]
    _leveraged_long_with_its_leaf(w)
    relayed = _relay_first(w, victim)
    w["source"].prices = w["source"].prices * 0.50
    seen = []
    for _ in range(5):
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        keeper.cycle()
        seen.append((dep.oracle.functions.marks([PERP]).call()[0][0] // WAD,
                     dep.oracle.functions.market_updated_at(PERP).call()))
    print(f"relays={relayed} chain (mark, signed at)={seen} source={w['source'].prices[0]:.0f}")
    assert all(relayed)
    assert seen[-1][0] <= 15_000 * 1.01, \
        f"chain mark frozen at {seen[-1][0]} (re-signed each cycle) while the source is at 15,000"


def test_keeper__gap_without_a_relayer__chain_marks_reach_the_source_and_the_long_is_liquidated(world):
    """Control for the above (held): the same 50% gap with no relayer; the keeper's steps
    reach the source's 15,000 and the short long is liquidated on the way."""
    w = world
    keeper, victim, dep, dev = w["keeper"], w["victim"], w["dep"], w["dev"]
    _leveraged_long_with_its_leaf(w)
    w["source"].prices = w["source"].prices * 0.50
    seen, liquidated = [], []
    for _ in range(5):
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        liquidated += [x["account"] for x in keeper.cycle().liquidated if x["ok"]]
        seen.append(dep.oracle.functions.marks([PERP]).call()[0][0] // WAD)
    print(f"chain marks={seen} liquidated={liquidated}")
    assert seen[-1] <= 15_000 * 1.01
    assert victim.address in liquidated

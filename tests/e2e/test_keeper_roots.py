"""The keeper on epoch roots, end to end on a real Anvil with real contracts and real
signatures (2 of 2): one root per epoch for every account with its public data, a withdrawal
with the proof fetched from the keeper's /proof endpoint, a crash answered by marks and then,
in the next block, a root and a liquidation at the fresh margin (a fall too small for a root by
margins gets one for its liquidation), an older leaf applied after a trade (with
the pending growth since), every leaf rebuilt from public data alone, and a keeper whose key
is not a signer refusing to start.

Tests run in file order on one chain (one story); the keeper's cycles are called directly so
each step knows which blocks it produced.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from support.e2e import FixedSource

from offchain.chain.contracts import WAD, call_named
from offchain.chain.epoch_leaves import market_leaves_of
from offchain.chain.fraud import EpochRecord
from offchain.chain.rebuild import find_root, read_publications, rebuild_epoch
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import (
    BondSettings,
    EngineSettings,
    deploy_system,
    fund,
    list_instruments,
    send,
)
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.metrics import KeeperMetrics, MetricsServer
from offchain.keeper.prices import DAY
from offchain.keeper.roots import leaf_args
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.risk import load_params

T0 = 1_700_000_000
PERP = 1


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roots")
    dev = start_anvil(accounts=9, timestamp=T0)
    a = dev.accounts
    admin, dealer, gas, trader, victim, stranger = a[0], a[1], a[2], a[3], a[4], a[7]
    signer_keys = [a[5], a[6]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [k.address for k in signer_keys], 2, params,
                        EngineSettings(max_price_age_s=DAY, max_liquidation_price_age_s=DAY))
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"}])
    for acct, amount in ((gas, 1_000_000), (dealer, 5_000_000), (trader, 100_000)):
        fund(dep, admin, acct, amount)
    source = FixedSource()
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(tmp),
                       price_max_age_s=DAY, root_max_age_s=DAY)
    signers = Signers(signer_keys)
    keeper = Keeper(cfg, dep, signers, Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"), params, source)
    keeper.startup()
    keeper.cycle()   # first marks and rates, no account yet: no root
    server = MetricsServer(KeeperMetrics(), 0, proofs=keeper.proof).start()
    w = dict(dev=dev, dep=dep, admin=admin, dealer=dealer, gas=gas, trader=trader, victim=victim,
             stranger=stranger, keeper=keeper, cfg=cfg, params=params, source=source, server=server, tmp=tmp,
             signer_keys=signer_keys)
    yield w
    server.stop()
    dev.stop()


def fill(w, taker, maker, size_wad: int, maker_buys: bool, nonce: int):
    """`maker` signs an order at the posted mark, `taker` fills it."""
    mark = int(round(w["keeper"].posted_marks[PERP - 1] * WAD))
    now = w["dev"].w3.eth.get_block("latest")["timestamp"]
    order = Order(maker.address, PERP, maker_buys, size_wad, mark, nonce, now + DAY)
    sig = sign_order(order, engine_domain(w["dev"].w3.eth.chain_id, w["dep"].engine.address), maker)
    send(w["dev"].w3, taker, w["dep"].engine.functions.fill(order.as_tuple(), sig, size_wad), "fill")


def cycle(w):
    # a root must be newer than the books' first trade: a block one second later
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 1)
    return w["keeper"].cycle()


def oracle_logs(w, name, from_block=0):
    return getattr(w["dep"].oracle.events, name)().get_logs(from_block=from_block)


def engine_logs(w, name, from_block=0):
    return getattr(w["dep"].engine.events, name)().get_logs(from_block=from_block)


def get_proof(w, account: str) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{w['server'].port}/proof/{account}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_keeper__new_books__one_root_for_every_account_with_its_public_data(world):
    w = world
    assert get_proof(w, w["trader"].address)[0] == 404   # no root yet
    fill(w, w["trader"], w["dealer"], 2 * WAD, maker_buys=False, nonce=1)   # trader long 2 BTC perps
    report = cycle(w)
    assert report.epoch == 1 and report.leaves == 2 and report.epoch_reason == "first root"
    (posted,) = oracle_logs(w, "RootPosted")
    (data,) = oracle_logs(w, "EpochDataPublished")
    assert posted["args"]["epoch"] == data["args"]["epoch"] == 1 and posted["args"]["account_count"] == 2
    assert data["args"]["state_block"] == report.state_block < posted["blockNumber"] <= data["blockNumber"]
    assert len(data["args"]["market_leaves"]) == 1
    # the epoch file names the state block; nothing changed: no second root next block
    w["keeper"].flush()
    doc = json.loads((w["tmp"] / "roots" / w["dep"].engine.address / "epoch-1.json").read_text())
    assert doc["state_block"] == report.state_block and len(doc["account_leaves"]) == 2
    assert cycle(w).epoch == 0


def test_deploy__bonds_and_fraud_proofs_wired__the_root_counts_the_bonded_signers(world):
    """deploy_system deploys SignerBond and FraudProofs, wires them both ways and to the oracle,
    bonds every signer: the first root's epoch record names both signers as the ones whose
    bonds answer for it."""
    w = world
    dep, bond, fraud = w["dep"], w["dep"].signer_bond, w["dep"].fraud_proofs
    assert bond.functions.slasher().call() == fraud.address
    assert bond.functions.insurance_fund().call() == dep.engine.address
    assert fraud.functions.ORACLE().call() == dep.oracle.address and fraud.functions.BOND().call() == bond.address
    params_hash = bytes.fromhex(w["params"].hash.removeprefix("0x"))
    assert fraud.functions.verifiers(params_hash).call()[0] == dep.verifier.address
    (wired,) = oracle_logs(w, "FraudContractsSet")
    assert (wired["args"]["signer_bond"], wired["args"]["fraud_proofs"]) == (bond.address, fraud.address)
    required = BondSettings().units()
    assert bond.functions.required_bond().call() == required
    for k in w["signer_keys"]:
        assert bond.functions.is_bonded(k.address).call() and bond.functions.stake(k.address).call() == required
    assert dep.token.functions.balanceOf(bond.address).call() == bond.functions.total_bonded().call() == 2 * required
    (posted,) = oracle_logs(w, "RootPosted")
    a = posted["args"]
    record = EpochRecord(a["epoch"], a["accounts_root"], a["market_root"], a["market_count"], params_hash,
                         a["signed_at"],
                         w["dev"].w3.eth.get_block(posted["blockNumber"])["timestamp"],
                         tuple(sorted((k.address for k in w["signer_keys"]), key=lambda x: int(x, 16))))
    assert dep.oracle.functions.epoch_record_hash(dep.engine.address, a["signed_at"]).call() == record.hash()


def test_epoch__rebuilt_from_public_data_only__same_leaves_and_root(world):
    """A third party (offchain/chain/rebuild.py): the oracle's logs, the engine's state at the
    published block, the params file; and the market leaves as the event logged them."""
    w = world
    root = find_root(w["dep"], 1)
    (publication,) = read_publications(w["dep"], root)
    rebuilt = rebuild_epoch(w["dep"], w["params"], root, publication)
    assert rebuilt.matches, (rebuilt.market_errors, rebuilt.accounts_root_ok)
    for leaf in rebuilt.trees.account_leaves:
        assert w["keeper"].trees.account_proof(leaf.account)[0] == leaf
    logged = oracle_logs(w, "EpochDataPublished")[-1]["args"]["market_leaves"]
    assert market_leaves_of(logged) == sorted(publication.market_leaves, key=lambda m: m.instrument_id)


def test_withdraw__proof_from_keeper_endpoint__leaf_applied_inline(world):
    w = world
    trader = w["trader"]
    code, doc = get_proof(w, trader.address)
    assert code == 200 and doc["epoch"] == 1 and doc["leaf"]["account"] == trader.address
    leaf, proof = leaf_args(doc)
    block = w["dev"].w3.eth.block_number
    cash = w["dep"].engine.functions.cash_wad(trader.address).call()
    send(w["dev"].w3, trader, w["dep"].engine.functions.withdraw_with_leaf(1_000 * 10**6, leaf, proof), "withdraw")
    assert w["dep"].engine.functions.cash_wad(trader.address).call() == cash - 1_000 * WAD
    (applied,) = engine_logs(w, "LeafApplied", block + 1)
    assert applied["args"]["account"] == trader.address
    assert applied["args"]["maintenance_margin_wad"] == doc["leaf"]["maintenance_margin_wad"]
    assert get_proof(w, "0x1234")[0] == 400


def test_trade_after_root__older_leaf_still_applies_with_pending_growth(world):
    w = world
    dealer, trader = w["dealer"], w["trader"]
    code, doc = get_proof(w, dealer.address)
    assert code == 200
    leaf, proof = leaf_args(doc)
    before = w["dep"].engine.functions.pending_total(dealer.address).call()
    assert doc["leaf"]["state_nonce"] == w["dep"].engine.functions.state_nonce(dealer.address).call()
    # the dealer sells 1 more after the root (adds risk: a reduction would void older leaves)
    fill(w, trader, dealer, WAD, maker_buys=False, nonce=3)
    after = w["dep"].engine.functions.pending_total(dealer.address).call()
    assert after != before
    block = w["dev"].w3.eth.block_number
    send(w["dev"].w3, trader, w["dep"].engine.functions.apply_leaf(leaf, proof), "apply_leaf")
    (applied,) = engine_logs(w, "LeafApplied", block + 1)
    m96 = 2**96 - 1
    growth_im = ((after & m96) - (before & m96)) & m96
    growth_mm = (((after >> 96) & m96) - ((before >> 96) & m96)) & m96
    assert growth_mm > 0
    assert applied["args"]["initial_margin_wad"] == doc["leaf"]["initial_margin_wad"] + growth_im
    assert applied["args"]["maintenance_margin_wad"] == doc["leaf"]["maintenance_margin_wad"] + growth_mm
    assert applied["args"]["state_nonce"] == doc["leaf"]["state_nonce"]


def test_crash__keeper_posts_marks_then_root_and_liquidation_at_the_fresh_margin_in_one_block(world):
    """A 10% fall: the keeper's marks are mined first, then, once they are, its root (signed at
    the marks' time), the victim's fresh leaf and the liquidation in the next block. The root
    is never public before its marks (SECURITY.md V25)."""
    w = world
    victim, keeper = w["victim"], w["keeper"]
    # a leveraged long: 10 perps on 5% above their IM at the posted rates
    rates = keeper.compute(keeper.posted_marks, w["source"].prices, np.array([0.6]),
                           w["dev"].w3.eth.get_block("latest")["timestamp"], keeper._live(T0))["rates"]
    fund(w["dep"], w["admin"], victim, int(10 * rates[0][0] * 1.05) + 1)
    fill(w, w["dealer"], victim, 10 * WAD, maker_buys=True, nonce=1)
    assert cycle(w).epoch > 0   # the victim's book gets its leaf
    w["source"].prices = w["source"].prices * 0.9
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 60)
    w["dev"].interval_mining(2)   # blocks as a fast chain makes them: the batch lands in one
    try:
        report = keeper.cycle()
    finally:
        w["dev"].interval_mining(0)
    assert report.epoch > 0 and "moved" in report.epoch_reason
    assert [x["account"] for x in report.liquidated if x["ok"]] == [victim.address]
    (liq,) = engine_logs(w, "Liquidation", report.block)
    root = oracle_logs(w, "RootPosted", report.block)[-1]
    applied = [e for e in engine_logs(w, "LeafApplied", report.block) if e["args"]["account"] == victim.address]
    market = w["dep"].oracle.events.MarketDataPosted().get_logs(from_block=report.block)
    # the marks first; the root, the victim's fresh leaf and its liquidation in the next block
    assert market[-1]["blockNumber"] < liq["blockNumber"] == root["blockNumber"] == applied[-1]["blockNumber"]
    assert liq["blockNumber"] == market[-1]["blockNumber"] + 1
    assert applied[-1]["args"]["root_timestamp"] == root["args"]["signed_at"]
    assert call_named(w["dep"].engine, "account", victim.address)["positions"][0][1] < 10 * WAD


def test_fall_within_leaf_move_frac__no_root_due_by_margins__keeper_posts_one_for_the_liquidation(world):
    """A fall that moves no leaf's MM by `leaf_move_frac` (here 50%, so a 15% fall stays
    inside it) leaves a long at its IM short of its MM: no root is due by margins, but the
    engine judges a witness only against a root at least as new as the book's marks, so the
    liquidatable account makes a root due: the marks land, then the root and the liquidation
    in the next block, the liquidation's witness being that root's."""
    w = world
    keeper, victim = w["keeper"], w["dev"].accounts[8]
    now = w["dev"].w3.eth.get_block("latest")["timestamp"]
    im_long = keeper.compute(keeper.posted_marks, w["source"].prices, np.array([0.6]), now,
                             keeper._live(T0))["rates"][0][0]
    fund(w["dep"], w["admin"], victim, int(10 * im_long * 1.01) + 1)
    fill(w, w["dealer"], victim, 10 * WAD, maker_buys=True, nonce=2)
    assert "changed" in cycle(w).epoch_reason   # the victim's book gets its leaf
    policy = keeper.policy
    keeper.policy = replace(policy, leaf_move_frac=0.5)
    w["source"].prices = w["source"].prices * 0.85
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 60)
    w["dev"].interval_mining(2)
    try:
        report = keeper.cycle()
    finally:
        w["dev"].interval_mining(0)
        keeper.policy = policy
    # the victim and what is left of the crash's victim
    assert report.epoch_reason == "2 liquidatable account(s): marks newer than the root"
    assert victim.address in [x["account"] for x in report.liquidated if x["ok"]]
    (liq,) = [e for e in engine_logs(w, "Liquidation", report.block) if e["args"]["account"] == victim.address]
    root = oracle_logs(w, "RootPosted", report.block)[-1]
    market = w["dep"].oracle.events.MarketDataPosted().get_logs(from_block=report.block)
    assert liq["blockNumber"] == root["blockNumber"] == market[-1]["blockNumber"] + 1


def test_marks_refused__root_held_back_then_sent_with_the_next_cycles_marks(world):
    """The keeper's root goes out only once the marks signed with it are on chain. Here another
    post of the signers' marks, at other prices, lands first in the cycle's second (the oracle
    then refuses the keeper's, "not newer", and holds marks the root was not signed with):
    the book changed, so a root is due, but it is held back (no root, no epoch). The next
    cycle posts its marks, then the root in the following block. (The same message relayed
    by anyone counts as posted: tests/attacks/test_attack_relayed_marks_hold_root.py.)"""
    w = world
    keeper, dev = w["keeper"], w["dev"]
    fill(w, w["dealer"], w["trader"], WAD // 10, maker_buys=False, nonce=3)   # a root is due
    w["source"].prices = w["source"].prices * 1.01                          # and marks
    epoch = keeper.epoch
    t = dev.w3.eth.get_block("latest")["timestamp"] + 1
    risk = keeper.compute(keeper.posted_marks, w["source"].prices * 1.001, np.array([0.6]), t, keeper._live(t))
    label, call, _ = keeper._market_data_call(risk["marks"], risk["rates_wad"], t)   # signed at t
    keeper.sending_marks = None
    dev.set_next_timestamp(t)   # mined at t: a fixed gas limit, as its estimate runs before t
    (rival,) = keeper.executor.send_batch([(label, call.with_gas(1_000_000))])
    assert rival.ok and dev.w3.eth.get_block("latest")["timestamp"] == t
    held = keeper.cycle()                      # its own marks, signed at t too, are refused
    assert not held.posted_prices and held.epoch == 0 and keeper.epoch == epoch
    assert oracle_logs(w, "RootPosted", held.block + 1) == []
    report = cycle(w)
    assert report.posted_prices and report.epoch == epoch + 1 and "changed" in report.epoch_reason
    root = oracle_logs(w, "RootPosted", report.block)[-1]
    market = w["dep"].oracle.events.MarketDataPosted().get_logs(from_block=report.block)
    assert root["blockNumber"] == market[-1]["blockNumber"] + 1


def test_gap_past_the_mark_bound__keeper_steps_spot_root_and_marks_together__liquidates_at_the_step(world):
    """A 40% crash, twice the oracle's per-update mark bound (20%). The engine counts a witness
    only where each leaf's mark is the oracle's (SECURITY.md V25), so the keeper does not post
    a clamped mark beside a root at the source's price: it prices marks, leaves, root and index
    at one spot its marks can reach in this update, and liquidates there in the same cycle.
    The posted mark is the root's leaf mark to the wei, within the bound, short of the source's.
    Without the step the keeper posted the clamped mark beside a root at the target and every
    liquidation waited for the marks to catch up."""
    w = world
    keeper, dev = w["keeper"], w["dev"]
    victim = dev.accounts[8]
    oracle = w["dep"].oracle.functions
    before = oracle.marks([PERP]).call()[0][0]
    source_before = float(w["source"].prices[0])
    w["source"].prices = w["source"].prices * 0.6
    dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
    dev.interval_mining(2)
    try:
        report = keeper.cycle()
    finally:
        dev.interval_mining(0)
    posted = oracle.marks([PERP]).call()[0][0]
    (leaf,) = [m for m in keeper.trees.market_leaves_by_id() if m.instrument_id == PERP]
    assert report.epoch > 0 and leaf.mark_wad == posted                 # one price, to the wei
    # the oracle took it (within max(20% of the mark, its MM rate)): a step, short of the target
    assert posted < before and posted > 0.6 * before * 1.01
    assert source_before * 0.6 < float(keeper.last_spot[0]) < source_before
    assert victim.address in [x["account"] for x in report.liquidated if x["ok"]]
    skipped = [x for x in report.liquidated if not x["ok"]]
    assert skipped == []


def test_keeper__key_not_an_oracle_signer__refuses_to_start(world):
    w = world
    rogue = Keeper(w["cfg"], w["dep"], Signers([w["stranger"]]),
                   Executor(w["dev"].w3, w["gas"], w["cfg"].gas), StateStore(":memory:"), w["params"], w["source"])
    with pytest.raises(UserError, match=f"{w['stranger'].address} is not an oracle signer"):
        rogue.startup()


def test_keeper__restart_on_same_data_dir__resumes_epoch_no_new_root(world):
    w = world
    w["keeper"].flush()
    again = Keeper(w["cfg"], w["dep"], Signers(w["signer_keys"]),
                   Executor(w["dev"].w3, w["gas"], w["cfg"].gas), StateStore(":memory:"), w["params"], w["source"])
    again.startup()
    assert again.epoch == w["keeper"].epoch and again.trees is not None
    assert again.proof(w["trader"].address)["epoch"] == again.epoch

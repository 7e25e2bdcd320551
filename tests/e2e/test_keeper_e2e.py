"""End to end on a real Anvil: deposit, trade, epoch root, withdrawal refused then allowed,
price shock, liquidation by the *running* keeper, expiry settlement, funds reconciled; plus
reorg rewind, restart resume and dry-run.

The chain runs on its own Anvil (not ape's session node) because the story needs the chain
clock at March 2020: the keeper replays the shipped data/ history and the test moves time forward.
Tests run in file order and share one chain (one story); each checks one step.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from offchain.chain.contracts import WAD, call_named
from offchain.devnet.anvil import start_anvil
from offchain.devnet.demo import reconcile
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.indexer import Indexer
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.roots import leaf_args
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params

T0 = parse_date("2020-03-10", "t0")
EXPIRY = T0 + 3 * DAY + 8 * 3600  # 2020-03-13 08:00, the day after the crash
PERP, PUT = 1, 2


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keeper")
    dev = start_anvil(accounts=8, timestamp=T0)
    a = dev.accounts
    admin, dealer, keeper_gas, trader, attacker = a[0], a[1], a[2], a[3], a[4]
    signer_keys = [a[5], a[6]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [k.address for k in signer_keys], 2, params, EngineSettings())
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"},
                                  {"underlying": "BTC", "kind": "put", "strike": 7000, "expiry": EXPIRY}])
    fund(dep, admin, keeper_gas, 5_000_000)
    fund(dep, admin, dealer, 5_000_000)
    source = ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(tmp),
                       poll_interval_s=0.05, price_max_age_s=3600)
    signers = Signers(signer_keys)
    store_path = tmp / "keeper.sqlite"
    keeper = Keeper(cfg, dep, signers, Executor(dev.w3, keeper_gas, cfg.gas), StateStore(store_path),
                    params, source)
    keeper.startup()
    keeper.cycle()  # first marks and rates, before anyone trades
    stop = threading.Event()
    thread = threading.Thread(target=keeper.run_forever, args=(stop,), daemon=True)
    thread.start()
    w = dict(dev=dev, dep=dep, admin=admin, dealer=dealer, keeper_gas=keeper_gas, trader=trader,
             attacker=attacker, keeper=keeper, cfg=cfg, signers=signers, params=params,
             source=source, store_path=store_path, stop=stop, thread=thread)
    yield w
    stop.set()
    thread.join(timeout=10)
    dev.stop()


def engine(w):
    return w["dep"].engine.functions


def events(w, name, **match):
    logs = getattr(w["dep"].engine.events, name)().get_logs(from_block=0)
    return [e for e in logs if all(e["args"][k] == v for k, v in match.items())]


def test_deposit__tokens_approved__cash_credited_and_logged(world):
    trader = world["trader"]
    fund(world["dep"], world["admin"], trader, 30_000)
    assert engine(world).cash_wad(trader.address).call() == 30_000 * WAD
    assert events(world, "Deposit", account=trader.address)[0]["args"]["amount"] == 30_000 * 10**6


def test_fill__trader_signs_short_puts_dealer_fills__both_books_updated(world):
    w, trader = world, world["trader"]
    marks = w["keeper"].posted_marks
    now = w["dev"].w3.eth.get_block("latest")["timestamp"]
    order = Order(trader.address, PUT, False, 10 * WAD, int(round(marks[PUT - 1] * WAD)), 1, now + DAY)
    sig = sign_order(order, engine_domain(w["dev"].w3.eth.chain_id, w["dep"].engine.address), trader)
    send(w["dev"].w3, w["dealer"], w["dep"].engine.functions.fill(order.as_tuple(), sig, order.size_wad), "fill")
    assert engine(w).position(trader.address, PUT).call() == -10 * WAD
    assert engine(w).position(w["dealer"].address, PUT).call() == 10 * WAD


def test_keeper__new_book__in_the_next_root_at_portfolio_margin(world):
    w, trader = world, world["trader"]
    nonce = engine(w).state_nonce(trader.address).call()

    def leaf():
        w["dev"].mine()   # the running keeper acts once per block
        doc = w["keeper"].proof(trader.address)
        return doc if doc and doc["leaf"]["state_nonce"] == nonce else None

    doc = wait_for(leaf, what="the trader's new book in an epoch root")
    standalone = call_named(w["dep"].engine, "account", trader.address)["maintenance_margin_wad"]
    args, proof = leaf_args(doc)
    send(w["dev"].w3, w["dealer"], engine(w).apply_leaf(args, proof), "apply_leaf")
    view = call_named(w["dep"].engine, "account", trader.address)
    # portfolio margin of a short put is below its standalone bound; applied, it is the engine's
    assert 0 < doc["leaf"]["maintenance_margin_wad"] <= standalone
    assert view["maintenance_margin_wad"] == doc["leaf"]["maintenance_margin_wad"]


def test_withdraw__below_initial_margin__refused_then_excess_allowed(world):
    w, trader = world, world["trader"]
    health = call_named(w["dep"].engine, "health", trader.address)
    equity, im = health["equity_wad"], health["im_wad"]
    with pytest.raises(UserError, match="engine: below initial margin"):
        send(w["dev"].w3, trader, engine(w).withdraw(equity // 10**12), "withdraw")
    excess_units = (equity - im) // 10**12 // 2
    assert excess_units > 0
    cash_before = engine(w).cash_wad(trader.address).call()
    send(w["dev"].w3, trader, engine(w).withdraw(excess_units), "withdraw")
    assert engine(w).cash_wad(trader.address).call() == cash_before - excess_units * 10**12


def test_attacker__liquidates_healthy_account__reverts_state_unchanged(world):
    w = world
    nonce = engine(w).state_nonce(w["trader"].address).call()
    fund(w["dep"], w["admin"], w["attacker"], 100_000)
    before = engine(w).account(w["trader"].address).call()
    with pytest.raises(UserError, match="engine: account is healthy"):
        send(w["dev"].w3, w["attacker"], engine(w).liquidate(w["trader"].address, WAD, 10**30, nonce, b""),
             "liquidate")
    assert engine(w).account(w["trader"].address).call() == before


def test_price_shock__crash_day__running_keeper_liquidates(world):
    w, trader = world, world["trader"]
    crash = parse_date("2020-03-12", "crash") + 16 * 3600  # the intraday low
    w["dev"].mine(crash)

    def liquidated():
        # the chain keeps producing blocks, as a live one does: the keeper acts once per block
        # and steps a crash beyond the oracle's per-update mark bound over several updates
        found = events(w, "Liquidation", account=trader.address)
        if not found:
            time.sleep(0.2)
            w["dev"].mine()
        return found

    found = wait_for(liquidated, timeout=60, what="the keeper's liquidation of the short-put book")
    ev = found[0]["args"]
    assert ev["liquidator"] == w["keeper_gas"].address
    assert 0 < ev["fraction_wad"] <= WAD and ev["discount_wad"] > 0
    assert engine(w).position(trader.address, PUT).call() > -10 * WAD


def test_expiry__after_expiry__keeper_posts_price_and_settles_every_holder(world):
    w = world
    w["dev"].mine(EXPIRY + 3600)
    wait_for(lambda: w["dep"].oracle.functions.settlement_price(PUT).call() > 0, timeout=60,
             what="the settlement price")
    holders = [w["trader"].address, w["dealer"].address, w["keeper_gas"].address]

    def all_settled():
        w["dev"].mine()  # a block per poll: the keeper acts once per block
        return all(engine(w).position(a, PUT).call() == 0 for a in holders)

    wait_for(all_settled, timeout=60, what="settlement of every put holder")
    assert events(w, "Settlement", instrument_id=PUT)


def test_funds__after_the_story__reconciled_to_token_balance(world):
    funds = reconcile(world["dep"])
    assert funds["reconciled"], funds
    # a gap straight to the crash low leaves the short-put book bankrupt: the loss beyond the
    # insurance fund is socialised, recorded by events, never silent
    logged = sum(e["args"]["amount_wad"] for e in events(world, "LossSocialised"))
    assert funds["socialised_loss"] == logged / WAD


def test_keeper_metrics__after_cycles__processed_tracks_head(world):
    m = world["keeper"].metrics
    # the running keeper catches up with head (a snapshot mid-cycle may lag by its own blocks)
    wait_for(lambda: m.processed_block._value.get() >= m.head_block._value.get() - 1,
             what="processed block to reach head")
    ok, status = m.health(max_lag_blocks=5, max_cycle_age_s=60)
    assert ok, status
    assert m.accounts._value.get() >= 3


def test_keeper_restart__same_store__resumes_at_last_block(world):
    w = world
    w["stop"].set()
    w["thread"].join(timeout=10)
    processed = StateStore(w["store_path"]).processed_block()
    again = Keeper(w["cfg"], w["dep"], w["signers"], Executor(w["dev"].w3, w["keeper_gas"], w["cfg"].gas),
                   StateStore(w["store_path"]), w["params"], w["source"])
    again.startup()
    assert again.indexer.cursor() == processed
    # the epoch and its leaves come back from the oracle and the keeper's epoch file
    assert again.epoch == w["dep"].oracle.functions.epoch_root(w["dep"].engine.address).call()[0] > 0
    i = again.book.index[w["dealer"].address]
    assert 0 <= again.book.leaf_nonce[i] <= engine(w).state_nonce(w["dealer"].address).call()


def test_keeper_dry_run__unhealthy_book__nothing_sent(world):
    w = world
    gas = w["keeper_gas"].address
    cfg = w["cfg"]
    dry = Keeper(cfg, w["dep"], w["signers"], Executor(w["dev"].w3, w["keeper_gas"], cfg.gas, dry_run=True),
                 StateStore(":memory:"), w["params"], w["source"])
    dry.startup()
    w["dev"].mine(EXPIRY + 2 * 3600)
    sent_before = w["dev"].w3.eth.get_transaction_count(gas)
    report = dry.cycle()
    assert w["dev"].w3.eth.get_transaction_count(gas) == sent_before
    assert report.accounts >= 3


def test_indexer_reorg__blocks_replaced__rewinds_and_reports_touched_accounts(world):
    w = world
    w3 = w["dev"].w3
    store = StateStore(":memory:")
    idx = Indexer(w["dep"], store)
    idx.sync(w3.eth.block_number)
    fork_point = w3.eth.block_number
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    fund(w["dep"], w["admin"], w["attacker"], 1)  # events on the branch that will vanish
    first = idx.sync(w3.eth.block_number)
    assert w["attacker"].address in first.touched
    w3.provider.make_request("evm_revert", [snap])
    for _ in range(5):  # a longer, different branch
        w["dev"].mine()
    second = idx.sync(w3.eth.block_number)
    assert second.rewound_to == fork_point
    assert w["attacker"].address in second.touched  # re-read after the reorg
    assert all(e.block <= fork_point for e in store.events() if e.name == "Deposit"
               and e.args["account"] == w["attacker"].address and e.args["amount"] == 10**6)
    assert np.isfinite(second.to_block)

"""An epoch root rebuilt by a second, independent process: `netmargin rebuild` and `netmargin
verify` run as subprocesses against a real Anvil chain where a real keeper priced the
instruments, three traders hold option, future and perpetual books, and roots are posted
through the oracle with real signatures. An honest root rebuilds exactly; a root signed over
one altered IM is reported as a mismatch naming the account and the field.

Tests run in file order on one chain (one story)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace

import numpy as np
import pytest

from offchain.chain.contracts import WAD
from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.leaves import MarketLeaf
from offchain.chain.rebuild import read_books
from offchain.chain.roots import EpochTrees
from offchain.chain.wad import Rounding, to_wad
from offchain.cli import main
from offchain.devnet.anvil import free_port, start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.metrics import KeeperMetrics, MetricsServer
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.roots import EpochStore, proof_for
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import CALL, PUT
from offchain.risk.smile import surface_vols
from offchain.watcher.config import WatchConfig
from offchain.watcher.watch import Watcher, WatchMetrics

T0 = parse_date("2021-05-12", "t0")
PERP, CALL_ID, ETH_FUT = 1, 2, 3


def market_leaves(keeper: Keeper, params, now: int) -> list[MarketLeaf]:
    """The epoch's market leaves from the keeper's last prices: the inputs it priced with
    (spot, smile vol, zero rate) as WAD, then the outputs those inputs give."""
    t = keeper.table
    spot = keeper.last_spot[t.underlying_index]
    tenor = np.where(t.expiry > 0, np.maximum(t.expiry - now, 0) / SECONDS_PER_YEAR, 0.0)
    vols = surface_vols(keeper.underlyings, t.underlying_index, t.kind, t.strike, tenor, spot, keeper.last_vol)
    inputs = []
    for k in range(len(t)):
        opt = int(t.kind[k]) in (CALL, PUT)
        inputs.append(MarketLeaf(
            instrument_id=int(t.ids[k]), kind=int(t.kind[k]),
            underlying=symbol_to_bytes32(keeper.underlyings[t.underlying_index[k]]),
            strike_wad=to_wad(float(t.strike[k]), Rounding.NEAREST) if opt else 0, expiry=int(t.expiry[k]),
            contract_size_wad=WAD, spot_wad=to_wad(float(spot[k]), Rounding.NEAREST),
            forward_wad=to_wad(float(spot[k]), Rounding.NEAREST),
            vol_wad=to_wad(float(vols[k]), Rounding.NEAREST) if opt else 0, rate_wad=0, mark_wad=0,
            im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    outputs = MarketInputs.from_leaves(params, inputs, now).leaf_outputs()
    return [replace(m, **outputs.get(m.instrument_id, {})) for m in inputs]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rebuild")
    dev = start_anvil(accounts=8, timestamp=T0)
    a = dev.accounts
    admin, keeper_gas, signer = a[0], a[1], a[4]
    traders = [a[2], a[3], a[5]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [signer.address], 1, params, EngineSettings())
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"},
                                  {"underlying": "BTC", "kind": "call", "strike": 60000,
                                   "expiry": T0 + 20 * DAY},
                                  {"underlying": "ETH", "kind": "future", "expiry": T0 + 30 * DAY}])
    source = ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})
    # this keeper prices only: the test signs its own roots (honest and false ones)
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, price_max_age_s=3600,
                       post_roots=False)
    signers = Signers([signer], workers=1)
    keeper = Keeper(cfg, dep, signers, Executor(dev.w3, keeper_gas, cfg.gas), StateStore(":memory:"),
                    params, source)
    keeper.startup()
    keeper.cycle()
    for t in traders:
        fund(dep, admin, t, 200_000)
    domain = engine_domain(dev.w3.eth.chain_id, dep.engine.address)
    now = dev.w3.eth.get_block("latest")["timestamp"]
    nonce = 0
    for maker, taker, iid, size in ((traders[0], traders[1], PERP, 2 * WAD), (traders[0], traders[1], CALL_ID, -3 * WAD),
                                    (traders[2], traders[0], ETH_FUT, 5 * WAD), (traders[2], traders[1], PERP, -WAD // 2)):
        nonce += 1
        mark = int(round(keeper.posted_marks[iid - 1] * WAD))
        order = Order(maker.address, iid, size > 0, abs(size), mark, nonce, now + DAY)
        send(dev.w3, taker, dep.engine.functions.fill(order.as_tuple(), sign_order(order, domain, maker), abs(size)),
             "fill")
    keeper.cycle()
    env = {**os.environ, "NETMARGIN_RPC": dev.url, "NETMARGIN_ENGINE": dep.engine.address}
    w = dict(dev=dev, dep=dep, keeper=keeper, params=params, signer=signer, gas=keeper_gas, traders=traders,
             store=EpochStore(tmp / "roots"), tmp=tmp, env=env)
    yield w
    signers.close()
    dev.stop()


def post_epoch(w, epoch: int, tamper=None, tamper_market=None, drop_instrument=None):
    """Price the state at the current head, build every leaf with the same function a
    rebuild uses, optionally alter them (`tamper(leaves) -> leaves`), sign and post the root,
    and write the keeper's epoch file (with its state block): what the keeper does."""
    dev, dep = w["dev"], w["dep"]
    # a block one second on: each root's timestamp must be later than the last one's
    dev.w3.provider.make_request("evm_mine", [dev.w3.eth.get_block("latest")["timestamp"] + 1])
    state_block = dev.w3.eth.block_number
    now = dev.w3.eth.get_block(state_block)["timestamp"]
    w["keeper"].cycle()
    mleaves = market_leaves(w["keeper"], w["params"], now)
    if tamper_market:   # a lie about an input, outputs recomputed from it (a consistent lie)
        lied = [tamper_market(m) for m in mleaves]
        outputs = MarketInputs.from_leaves(w["params"], lied, now).leaf_outputs()
        mleaves = [replace(m, **outputs.get(m.instrument_id, {})) for m in lied]
    mleaves = [m for m in mleaves if m.instrument_id != drop_instrument]
    books = read_books(dep, state_block)
    leaves = epoch_account_leaves(MarketInputs.from_leaves(w["params"], mleaves, now), books.addresses,
                                  books.state_nonces, books.books_wad, books.pending_totals)
    if tamper:
        leaves = tamper(leaves)
    trees = EpochTrees.build(dep.engine.address, epoch, leaves, mleaves)
    msg = trees.root_message(timestamp=now, deadline=now + 3600, params_hash=bytes.fromhex(w["params"].hash[2:]))
    sigs = sign_multi(msg, Domain(dev.w3.eth.chain_id, dep.oracle.address), [w["signer"]])
    send(dev.w3, w["gas"], dep.oracle.functions.post_root(msg.as_args(), sigs), "post_root")
    path = w["store"].write(trees, msg, sigs)
    doc = json.loads(path.read_text())
    doc["state_block"] = state_block
    path.write_text(json.dumps(doc))
    return trees, path


def netmargin(w, *args) -> subprocess.CompletedProcess:
    """The command in its own process: nothing of this test's Python state is shared."""
    return subprocess.run([sys.executable, "-m", "offchain.cli", *args], env=w["env"], capture_output=True,
                          text=True, timeout=120)


def chain_args(w) -> list[str]:
    return ["--rpc", w["dev"].url, "--engine", w["dep"].engine.address]


def test_verify__no_root_posted__plain_error(world, capsys):
    assert main(["verify", world["traders"][0].address, *chain_args(world)]) == 2
    assert "no root posted" in capsys.readouterr().err


def test_rebuild__honest_root__independent_process_prints_the_same_root(world):
    trees, path = post_epoch(world, 1)
    world["epoch1"] = (trees, path)
    p = netmargin(world, "rebuild", "--epoch", "1", "--epoch-file", str(path), "--json")
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"] == {"chain": "0x" + trees.accounts.root.hex(),
                                    "rebuilt": "0x" + trees.accounts.root.hex(), "match": True}
    assert out["market_root"]["match"] and out["account_count"]["rebuilt"] == 3
    assert out["market_errors"] == [] and out["matches"] is True


def test_verify__account__leaf_field_by_field_and_match(world):
    trees, path = world["epoch1"]
    maker = world["traders"][0].address
    p = netmargin(world, "verify", maker, "--epoch-file", str(path))
    assert p.returncode == 0, p.stderr + p.stdout
    leaf, _proof = trees.account_proof(maker)
    assert f"initial_margin_wad       {leaf.initial_margin_wad}" in p.stdout
    assert "accounts root  chain 0x" + trees.accounts.root.hex() in p.stdout
    assert "verifies against the chain's accounts root" in p.stdout and "result: MATCH" in p.stdout


def test_verify__keeper_http_proof__compared_and_in_root(world):
    store = world["store"]
    server = MetricsServer(KeeperMetrics(), 0, proofs=lambda a: proof_for(store, world["dep"].engine.address, a)).start()
    try:
        p = netmargin(world, "verify", world["traders"][1].address, "--epoch-file", str(world["epoch1"][1]),
                      "--keeper", f"http://127.0.0.1:{server.port}", "--json")
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["published"]["in_chain_root"] is True and out["published"]["differences"] == []
    assert out["leaf"] == out["published"]["leaf"]


def test_watch__honest_root__logged_as_match_health_200(world):
    cfg = WatchConfig(rpc_url=world["dev"].url, engine_address=world["dep"].engine.address, start_epoch=1,
                      epoch_dir=str(world["store"].directory))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, world["dep"], metrics)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.ok and finding.root.epoch == 1 and finding.accounts == 3
    assert metrics.health(5, 60)[0] is True
    assert watcher.poll() == []       # nothing new: nothing rebuilt twice


def test_verify__root_signed_over_one_altered_im__mismatch_names_account_and_field(world):
    victim = world["traders"][1].address

    def lower_im(leaves):
        return [replace(x, initial_margin_wad=x.initial_margin_wad - 100 * WAD) if x.account == victim else x
                for x in leaves]

    trees, path = post_epoch(world, 2, tamper=lower_im)
    p = netmargin(world, "verify", victim, "--epoch", "2", "--epoch-file", str(path))
    assert p.returncode == 1, p.stderr + p.stdout
    assert "accounts root" in p.stdout and "MISMATCH" in p.stdout
    [row] = [r for r in p.stdout.splitlines() if "DIFFERS" in r]
    assert row.split()[0] == "initial_margin_wad"
    assert "differs from the rebuilt one in initial_margin_wad and it is in the posted root" in p.stdout
    p = netmargin(world, "rebuild", "--epoch", "2", "--epoch-file", str(path), "--json")
    assert p.returncode == 1
    false = json.loads(p.stdout)["first_false_leaf"]
    assert false["account"] == victim and [f["field"] for f in false["fields"]] == ["initial_margin_wad"]
    bad = trees.account_proof(victim)[0].initial_margin_wad
    assert false["fields"][0] == {"field": "initial_margin_wad", "rebuilt": str(bad + 100 * WAD),
                                  "published": str(bad)}


def test_watch__process__false_root_latches_503_naming_account_field_and_figures(world):
    port = free_port()
    cfg = world["tmp"] / "watch.json"
    cfg.write_text(json.dumps({"rpc_url": world["dev"].url, "engine_address": world["dep"].engine.address,
                               "start_epoch": 1, "epoch_dir": str(world["store"].directory),
                               "metrics_port": port, "poll_interval_s": 0.2}))
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "watch", "--config", str(cfg)],
                            env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = world["traders"][1].address
    try:
        deadline = time.monotonic() + 60
        status, code = {}, 0
        while time.monotonic() < deadline and status.get("epoch_checked") != 2:
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    status, code = json.loads(r.read()), r.status
            except urllib.error.HTTPError as exc:
                status, code = json.loads(exc.read()), exc.code
            except urllib.error.URLError:
                continue
        assert code == 503 and status["epoch_checked"] == 2, status
        assert f"first false leaf: account {victim}: initial_margin_wad rebuilt" in status["reason"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "watch_false_root 1.0" in metrics and 'watch_roots_checked_total{outcome="match"} 1.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    [false] = [x for x in lines if x["msg"] == "root checked: FALSE"]
    assert false["account"] == victim and list(false["fields"]) == ["initial_margin_wad"]
    assert false["challenge"] == "not wired"


def test_rebuild__market_leaf_strike_not_the_registrys__named_even_though_roots_match(world):
    """A leaf's strike is a registry fact: a root whose call leaf claims another strike (and
    whose account leaves were honestly computed from that leaf) rebuilds to the same roots,
    and is still false."""
    path = post_epoch(world, 3, tamper_market=lambda m: replace(m, strike_wad=m.strike_wad * 2)
                      if m.instrument_id == CALL_ID else m)[1]
    p = netmargin(world, "rebuild", "--epoch", "3", "--epoch-file", str(path), "--json")
    assert p.returncode == 1, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"]["match"] and out["market_root"]["match"]
    assert out["market_errors"][0] == {"instrument_id": CALL_ID, "field": "strike_wad",
                                       "published": str(120_000 * WAD), "expected": str(60_000 * WAD)}


def test_rebuild__live_instrument_without_market_leaf__named(world):
    """Dropping an instrument's leaf would drop its positions from every margin: refused
    although the roots rebuild."""
    _trees, path = post_epoch(world, 4, drop_instrument=ETH_FUT)
    p = netmargin(world, "rebuild", "--epoch", "4", "--epoch-file", str(path), "--json")
    assert p.returncode == 1, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"]["match"]
    assert out["market_errors"] == [{"instrument_id": ETH_FUT, "field": "leaf", "published": "missing",
                                     "expected": "a leaf (live at the root's time)"}]


def test_verify__bad_requests__exit_2_naming_the_problem(world, capsys):
    path = str(world["epoch1"][1])
    cases = [
        (["--epoch", "9"], "no root posted for epoch 9"),
        (["--epoch", "1", "--params", "span16-v1"], "the root of epoch 1 was posted under params_hash"),
    ]
    for extra, message in cases:
        assert main(["verify", world["traders"][0].address, *chain_args(world), "--epoch-file", path, *extra]) == 2
        assert message in capsys.readouterr().err
    stranger = "0x" + "12" * 20
    assert main(["verify", stranger, *chain_args(world), "--epoch", "1", "--epoch-file", path]) == 2
    assert "has no leaf in epoch 1" in capsys.readouterr().err
    assert main(["verify", "0x1234", *chain_args(world), "--epoch", "1"]) == 2
    assert "ACCOUNT: must be a 0x-prefixed 20-byte address" in capsys.readouterr().err

"""An epoch root rebuilt by a second, independent process: `netmargin rebuild` and `netmargin
verify` run as subprocesses against a real Anvil chain where the real keeper priced the
instruments and posted a root with its public data (EpochDataPublished), three traders holding
option, future and perpetual books. The honest root rebuilds exactly; roots a dishonest
signer posts (one altered IM; a strike that is not the registry's; a live instrument left
without a market leaf) are reported as mismatches naming what is false.

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
from pathlib import Path

import pytest
from support.e2e import fill_at_marks, keeper_epoch, start_keeper

from offchain.chain.contracts import WAD, read_books
from offchain.chain.eip712 import Domain, sign_multi
from offchain.chain.epoch_leaves import epoch_account_leaves, finish_market_leaves
from offchain.chain.roots import EpochTrees
from offchain.cli import main
from offchain.devnet.anvil import free_port, start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.devnet.rogue import next_second
from offchain.keeper.metrics import KeeperMetrics, MetricsServer
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.roots import EpochStore, proof_for
from offchain.paths import DATA_DIR
from offchain.risk import load_params
from offchain.watcher.config import WatchConfig, load_watch_config
from offchain.watcher.watch import Watcher, WatchMetrics

T0 = parse_date("2021-05-12", "t0")
PERP, CALL_ID, ETH_FUT = 1, 2, 3


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
    keeper = start_keeper(dev, dep, keeper_gas, [signer], params, source, tmp / "keeper")
    for t in traders:
        fund(dep, admin, t, 200_000)
    fill_at_marks(dev, dep, keeper, [(traders[0], traders[1], PERP, 2 * WAD), (traders[0], traders[1], CALL_ID, -3 * WAD),
                                     (traders[2], traders[0], ETH_FUT, 5 * WAD), (traders[2], traders[1], PERP, -WAD // 2)])
    env = {**os.environ, "NETMARGIN_RPC": dev.url, "NETMARGIN_ENGINE": dep.engine.address}
    w = dict(dev=dev, dep=dep, keeper=keeper, params=params, signer=signer, gas=keeper_gas, traders=traders,
             roots=tmp / "keeper" / "roots", tmp=tmp, env=env)
    yield w
    dev.stop()


def dishonest_epoch(w, epoch: int, accounts=None, market=None, drop_instrument=None) -> Path:
    """A signer's root built like the keeper's (same functions, same state block) but altered:
    `accounts(leaves) -> leaves`, `market(leaf) -> leaf` (an input changed, outputs then
    recomputed from it: a consistent lie), or one instrument's leaf left out; posted with its
    epoch data, and written as the signer's epoch file (what its /proof would serve)."""
    dev, dep, params = w["dev"], w["dep"], w["params"]
    next_second(w["dep"])
    state_block = dev.w3.eth.block_number
    next_second(w["dep"])
    now = dev.w3.eth.get_block("latest")["timestamp"]
    honest = w["keeper"].trees.market_leaves
    inputs = [(market or (lambda m: m))(m) for m in honest if m.instrument_id != drop_instrument]
    mleaves, market_inputs = finish_market_leaves(params, inputs, now)
    addresses = w["keeper"].listed
    views, totals = read_books(dep, addresses, state_block)
    leaves = epoch_account_leaves(market_inputs, addresses, [v[1] for v in views],
                                  [{i: q for i, q, _f in v[2] if q} for v in views], totals)
    if accounts:
        leaves = accounts(leaves)
    trees = EpochTrees.build(dep.engine.address, epoch, leaves, mleaves, dep.registry.functions.instrument_count().call())
    root = trees.root_message(timestamp=now, deadline=now + 3600, params_hash=bytes.fromhex(params.hash[2:]))
    data = trees.data_message(state_block)
    domain = Domain(dev.w3.eth.chain_id, dep.oracle.address)
    send(dev.w3, w["gas"], dep.oracle.functions.post_root(root.as_args(), sign_multi(root, domain, [w["signer"]])),
         "post_root")
    send(dev.w3, w["gas"], dep.oracle.functions.publish_epoch_data(
        data.as_args(), [m.as_args() for m in trees.market_leaves_by_id()], sign_multi(data, domain, [w["signer"]])),
         "publish_epoch_data")
    return EpochStore(w["tmp"] / "signer").write(trees, root, [], state_block)


def netmargin(w, *args) -> subprocess.CompletedProcess:
    """The command in its own process: nothing of this test's Python state is shared."""
    return subprocess.run([sys.executable, "-m", "offchain.cli", *args], env=w["env"], capture_output=True,
                          text=True, timeout=120)


def chain_args(w) -> list[str]:
    return ["--rpc", w["dev"].url, "--engine", w["dep"].engine.address]


def test_verify__no_root_posted__plain_error(world, capsys):
    assert main(["verify", world["traders"][0].address, *chain_args(world)]) == 2
    assert "no root posted" in capsys.readouterr().err


def test_rebuild__keeper_root__independent_process_rebuilds_it_from_the_chain_alone(world):
    epoch = keeper_epoch(world["dep"], world["keeper"])
    trees = world["keeper"].trees
    world["epoch1"] = epoch
    # no epoch file: the state block and market leaves come from EpochDataPublished
    p = netmargin(world, "rebuild", "--epoch", str(epoch), "--json")
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"] == {"chain": "0x" + trees.accounts.root.hex(),
                                    "rebuilt": "0x" + trees.accounts.root.hex(), "match": True}
    assert out["market_root"]["match"] and out["account_count"] == {"chain": 3, "rebuilt": 3, "match": True}
    assert out["publication"].startswith("EpochDataPublished in block")
    assert out["market_errors"] == [] and out["matches"] is True


def test_verify__account__leaf_field_by_field_beside_the_keepers_file(world):
    epoch = world["epoch1"]
    maker = world["traders"][0].address
    path = world["roots"] / world["dep"].engine.address / f"epoch-{epoch}.json"
    p = netmargin(world, "verify", maker, "--epoch-file", str(path))
    assert p.returncode == 0, p.stderr + p.stdout
    trees = world["keeper"].trees
    leaf, _proof = trees.account_proof(maker)
    assert f"initial_margin_wad       {leaf.initial_margin_wad}" in p.stdout
    assert "accounts root  chain 0x" + trees.accounts.root.hex() in p.stdout
    assert "verifies against the chain's accounts root" in p.stdout and "result: MATCH" in p.stdout


def test_verify__keeper_http_proof__compared_and_in_root(world):
    server = MetricsServer(KeeperMetrics(), 0, proofs=world["keeper"].proof).start()
    try:
        p = netmargin(world, "verify", world["traders"][1].address, "--keeper", f"http://127.0.0.1:{server.port}",
                      "--json")
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["published"]["in_chain_root"] is True and out["published"]["differences"] == []
    assert out["leaf"] == out["published"]["leaf"] and out["epoch"] == world["epoch1"]


def test_verify__deployment_file__rpc_and_engine_from_it(world, capsys):
    doc = world["tmp"] / "deployment.json"
    doc.write_text(json.dumps({"rpc_url": world["dev"].url,
                               "contracts": {"engine": {"address": world["dep"].engine.address}}}))
    assert main(["verify", world["traders"][2].address, "--deployment", str(doc), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["account"] == world["traders"][2].address
    doc.write_text("{}")
    assert main(["verify", world["traders"][2].address, "--deployment", str(doc)]) == 2
    assert "is not a deployment.json with rpc_url and contracts.engine.address" in capsys.readouterr().err


def test_watch__honest_root__logged_as_match_health_200(world):
    cfg = WatchConfig(rpc_url=world["dev"].url, engine_address=world["dep"].engine.address,
                      start_epoch=world["epoch1"], epoch_dir=str(world["roots"]))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, world["dep"], metrics)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.ok and finding.root.epoch == world["epoch1"] and finding.accounts == 3
    assert metrics.health(5, 60)[0] is True
    assert watcher.poll() == []       # nothing new: nothing rebuilt twice
    assert main(["watch", "--config", str(watch_config(world, world["tmp"], world["epoch1"])), "--once"]) == 0


def test_verify__root_signed_over_one_altered_im__mismatch_names_account_and_field(world):
    victim = world["traders"][1].address
    epoch = world["epoch1"] + 1

    def lower_im(leaves):
        return [replace(x, initial_margin_wad=x.initial_margin_wad - 100 * WAD) if x.account == victim else x
                for x in leaves]

    path = dishonest_epoch(world, epoch, accounts=lower_im)
    world["false_epoch"] = (epoch, path)
    p = netmargin(world, "verify", victim, "--epoch", str(epoch), "--epoch-file", str(path))
    assert p.returncode == 1, p.stderr + p.stdout
    assert "accounts root" in p.stdout and "MISMATCH" in p.stdout
    [row] = [r for r in p.stdout.splitlines() if "DIFFERS" in r]
    assert row.split()[0] == "initial_margin_wad"
    assert "differs from the rebuilt one in initial_margin_wad and it is in the posted root" in p.stdout
    p = netmargin(world, "rebuild", "--epoch", str(epoch), "--epoch-file", str(path), "--json")
    assert p.returncode == 1
    false = json.loads(p.stdout)["first_false_leaf"]
    assert false["account"] == victim and [f["field"] for f in false["fields"]] == ["initial_margin_wad"]
    bad = int(false["fields"][0]["published"])
    assert int(false["fields"][0]["rebuilt"]) == bad + 100 * WAD


def test_watch__process__false_root_latches_503_naming_account_field_and_figures(world):
    epoch, path = world["false_epoch"]
    port = free_port()
    cfg = world["tmp"] / "watch.json"
    cfg.write_text(json.dumps({"rpc_url": world["dev"].url, "engine_address": world["dep"].engine.address,
                               "start_epoch": world["epoch1"], "epoch_dir": str(path.parent.parent),
                               "metrics_port": port, "poll_interval_s": 0.2}))
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "watch", "--config", str(cfg)],
                            env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = world["traders"][1].address
    try:
        deadline = time.monotonic() + 60
        status, code = {}, 0
        while time.monotonic() < deadline and status.get("epoch_checked") != epoch:
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    status, code = json.loads(r.read()), r.status
            except urllib.error.HTTPError as exc:
                status, code = json.loads(exc.read()), exc.code
            except urllib.error.URLError:
                continue
        assert code == 503 and status["epoch_checked"] == epoch, status
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
    assert false["challenge"] == "off"


def watch_config(w, tmp_path, start: int) -> Path:
    cfg = tmp_path / f"watch-{start}.toml"
    cfg.write_text(f'rpc_url = "{w["dev"].url}"\nengine_address = "{w["dep"].engine.address}"\n'
                   f'start_epoch = {start}\nmetrics_port = 0\n')
    return cfg


def test_watch__once_without_published_leaves__exit_1_naming_the_root(world, tmp_path):
    epoch, _path = world["false_epoch"]
    assert main(["watch", "--config", str(watch_config(world, tmp_path, epoch)), "--once"]) == 1
    watcher = Watcher(load_watch_config(watch_config(world, tmp_path, world["epoch1"])), world["dep"])
    watcher.start()
    found = watcher.poll()
    assert [(f.root.epoch, f.ok) for f in found] == [(world["epoch1"], True), (epoch, False)]
    assert found[1].reason == (f"epoch {epoch}: accounts root differs from the rebuild; no published leaf at "
                               "hand names the account")


def test_watch_and_rebuild__keeper_url__first_false_leaf_from_the_signers_proofs(world):
    """With only the signers' /proof endpoint (no files), the watcher asks account by account
    and names the leaf that differs and is in the posted root."""
    epoch, path = world["false_epoch"]
    store = EpochStore(path.parent.parent)
    server = MetricsServer(KeeperMetrics(), 0,
                           proofs=lambda a: proof_for(store, world["dep"].engine.address, a)).start()
    try:
        cfg = WatchConfig(rpc_url=world["dev"].url, engine_address=world["dep"].engine.address, start_epoch=epoch,
                          keeper_url=f"http://127.0.0.1:{server.port}")
        watcher = Watcher(cfg, world["dep"])
        watcher.start()
        [finding] = watcher.poll()[:1]
        p = netmargin(world, "rebuild", "--epoch", str(epoch), "--keeper", f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
    victim = world["traders"][1].address
    assert not finding.ok and finding.account == victim
    assert [n for n, _a, _b in finding.fields] == ["initial_margin_wad"]
    assert p.returncode == 1, p.stderr + p.stdout
    assert f"first false leaf (http://127.0.0.1:{server.port}): account {victim}: initial_margin_wad" in p.stdout
    [row] = [r for r in p.stdout.splitlines() if "DIFFERS" in r]
    assert row.split()[0] == "initial_margin_wad"


def test_rebuild__market_leaf_strike_not_the_registrys__named_even_though_roots_match(world):
    """A leaf's strike is a registry fact: a root whose call leaf claims another strike (and
    whose account leaves were honestly computed from that leaf) rebuilds to the same roots,
    and is still false."""
    epoch = world["false_epoch"][0] + 1
    dishonest_epoch(world, epoch, market=lambda m: replace(m, strike_wad=m.strike_wad * 2)
                    if m.instrument_id == CALL_ID else m)
    p = netmargin(world, "rebuild", "--epoch", str(epoch), "--json")
    assert p.returncode == 1, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"]["match"] and out["market_root"]["match"]
    assert out["market_errors"] == [{"instrument_id": CALL_ID, "field": "strike_wad",
                                     "published": str(120_000 * WAD), "expected": str(60_000 * WAD)}]


def test_rebuild__live_instrument_without_market_leaf__named(world):
    """Dropping an instrument's leaf would drop its positions from every margin: refused
    although the roots rebuild."""
    epoch = world["false_epoch"][0] + 2
    dishonest_epoch(world, epoch, drop_instrument=ETH_FUT)
    p = netmargin(world, "rebuild", "--epoch", str(epoch), "--json")
    assert p.returncode == 1, p.stderr + p.stdout
    out = json.loads(p.stdout)
    assert out["accounts_root"]["match"]
    assert out["market_errors"] == [{"instrument_id": ETH_FUT, "field": "leaf", "published": "missing",
                                     "expected": "a leaf (live at the root's time)"}]


def test_verify__bad_requests__exit_2_naming_the_problem(world, capsys):
    epoch = str(world["epoch1"])
    cases = [
        (["--epoch", "99"], "no root posted for epoch 99"),
        (["--epoch", epoch, "--params", "span16-v1"], f"the root of epoch {epoch} was posted under params_hash"),
    ]
    for extra, message in cases:
        assert main(["verify", world["traders"][0].address, *chain_args(world), *extra]) == 2
        assert message in capsys.readouterr().err
    stranger = "0x" + "12" * 20
    assert main(["verify", stranger, *chain_args(world), "--epoch", epoch]) == 2
    assert f"has no leaf in epoch {epoch}" in capsys.readouterr().err
    assert main(["verify", "0x1234", *chain_args(world), "--epoch", epoch]) == 2
    assert "ACCOUNT: must be a 0x-prefixed 20-byte address" in capsys.readouterr().err

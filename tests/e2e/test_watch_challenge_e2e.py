"""The watcher challenges a false root on chain: a real Anvil chain with the engine, oracle,
ScenarioVerifier, SignerBond and FraudProofs (the signer bonded in the real token), the real
keeper posting an honest root, then roots a bonded signer posts with one account's leaf
altered, built like the keeper's (same leaf code, same state block, its epoch file written).

- the honest root: checked, nothing sent (the challenger's nonce does not move);
- a leaf with a false state_nonce (which no fraud proof can show): reported "not provable
  on chain", no transaction;
- a leaf with MM and IM understated: the watcher process (`netmargin watch --config`, key
  from an encrypted keyfile) commits to it, reveals the challenge a block later, the epoch is
  voided, the signer slashed and the challenger paid in the token; a restarted watcher never
  challenges it again;
- roots whose signers withhold every leaf (no epoch file, no /proof): the false leaf the
  account applies (withdraw_with_leaf, or apply_leaf from another contract) is read back
  from the transaction and challenged; a node without a call tracer: reported, not harvested;
- a watcher killed between sending a challenge and its receipt: the restart resolves the
  "sending" ledger entry from the chain by its hash; one killed between its commit and the
  reveal: the restart finds the commitment on chain and reveals it with the stored salt;
- a root that leaves the live perpetual's market slot empty (every account leaf true to that
  market): the watcher process proves the slot with `challenge_market` (code 6), same
  commit-reveal and ledger, metrics and /health labelled "market".

Tests run in file order on one chain (one story)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.e2e import fill_at_marks, keeper_epoch, start_keeper
from web3 import HTTPProvider, Web3

from offchain.chain.build import compile_contracts, deploy
from offchain.chain.contracts import WAD
from offchain.devnet.anvil import free_port, start_anvil
from offchain.devnet.deploy import (
    BondSettings,
    EngineSettings,
    deploy_system,
    fund,
    list_instruments,
    send,
)
from offchain.devnet.rogue import post_rogue_root
from offchain.keeper.config import KeySpec
from offchain.keeper.executor import Encoder
from offchain.keeper.keys import write_keyfile
from offchain.keeper.metrics import KeeperMetrics, MetricsServer
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.roots import EpochStore, proof_for
from offchain.paths import DATA_DIR
from offchain.risk import load_params
from offchain.watcher.challenge import Challenger
from offchain.watcher.config import WatchConfig
from offchain.watcher.watch import Watcher, WatchMetrics

T0 = parse_date("2021-05-12", "t0")
PERP, CALL_ID = 1, 2
USD = 10**6                       # the devnet token's 6 decimals
BOND = 100_000 * USD
WINDOW, DELAY = 3_600, 7_200
VOID = (1).to_bytes(32, "big")
PASSWORD_ENV = "NETMARGIN_TEST_CHALLENGER_PASSPHRASE"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("challenge")
    dev = start_anvil(accounts=8, timestamp=T0)
    a = dev.accounts
    admin, keeper_gas, signer, challenger = a[0], a[1], a[4], a[6]
    traders = [a[2], a[3], a[5]]
    params = load_params()
    # the fraud-proof contracts wired as the devnet does: the signer bonded in the token, the
    # oracle counting only bonded signers, FraudProofs re-pricing with the oracle's verifier
    dep = deploy_system(dev.w3, admin, [signer.address], 1, params, EngineSettings(),
                        BondSettings(BOND / USD, WINDOW, DELAY), signer_keys=[signer])
    bond, fraud = dep.signer_bond, dep.fraud_proofs
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"},
                                  {"underlying": "BTC", "kind": "call", "strike": 60000, "expiry": T0 + 20 * DAY}])
    source = ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})
    keeper = start_keeper(dev, dep, keeper_gas, [signer], params, source, tmp / "keeper")
    for t in traders:
        fund(dep, admin, t, 200_000)
    fill_at_marks(dev, dep, keeper, [(traders[0], traders[1], PERP, 2 * WAD), (traders[0], traders[1], CALL_ID, -3 * WAD),
                                     (traders[2], traders[0], PERP, WAD // 2)])
    keyfile = write_keyfile(challenger, tmp / "challenger.json", "correct horse")
    env = {**os.environ, PASSWORD_ENV: "correct horse"}
    w = dict(dev=dev, dep=dep, keeper=keeper, params=params, signer=signer, gas=keeper_gas, traders=traders,
             bond=bond, fraud=fraud, challenger=challenger, keyfile=keyfile, env=env, tmp=tmp,
             victim=traders[1].address)
    yield w
    dev.stop()


def rogue_epoch(w, epoch: int, lie) -> tuple[Path, dict]:
    """A root the bonded signer signs over the keeper's leaves with the victim's leaf
    rewritten by `lie` (offchain/devnet/rogue.py) -> (epoch file, post_root receipt)."""
    path, receipt, _trees = post_rogue_root(w["dep"], w["gas"], [w["signer"]], w["params"],
                                            w["keeper"].trees.market_leaves, w["keeper"].listed, epoch,
                                            w["victim"], lie, w["tmp"] / "signer")
    return path, receipt


def watch_cfg(w, start: int, **extra) -> WatchConfig:
    return WatchConfig(rpc_url=w["dev"].url, engine_address=w["dep"].engine.address, start_epoch=start,
                       epoch_dir=str(w["tmp"] / "signer"), data_dir=str(w["tmp"] / "watch"),
                       challenger_key=KeySpec(f"keyfile:{w['keyfile']}", PASSWORD_ENV), **extra)


def in_process_watcher(w, start: int) -> tuple[Watcher, WatchMetrics]:
    cfg = watch_cfg(w, start)
    metrics = WatchMetrics()
    return Watcher(cfg, w["dep"], metrics, Challenger(cfg, w["dep"], w["challenger"], metrics)), metrics


def nonce_of(w) -> int:
    return w["dev"].w3.eth.get_transaction_count(w["challenger"].address)


def test_honest_keeper_root__checked__nothing_sent(world):
    epoch = keeper_epoch(world["dep"], world["keeper"])
    world["honest"] = epoch
    watcher, metrics = in_process_watcher(world, epoch)
    before = nonce_of(world)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.ok and finding.challenge is None and finding.accounts == 3
    assert nonce_of(world) == before
    assert metrics.health(5, 60) == (True, {**metrics.health(5, 60)[1]})
    assert metrics.health(5, 60)[1]["challenge_mode"] == f"challenging from {world['challenger'].address}"
    assert not (Path(world["tmp"]) / "watch" / "challenges.json").exists()


def test_false_state_nonce__not_provable_on_chain__no_transaction(world):
    epoch = world["honest"] + 1
    rogue_epoch(world, epoch, lambda x: replace(x, state_nonce=x.state_nonce + 5))
    watcher, metrics = in_process_watcher(world, epoch)
    before = nonce_of(world)
    watcher.start()
    [finding] = watcher.poll()
    assert not finding.ok and finding.account == world["victim"]
    assert [n for n, _a, _b in finding.fields] == ["state_nonce"]
    assert finding.challenge.status == "not_provable"
    assert "fraud: no fraud proven" in finding.challenge.detail
    assert nonce_of(world) == before
    assert metrics.challenges.labels(outcome="not_provable", kind="none")._value.get() == 1
    assert metrics.challenges.labels(outcome="submitted", kind="account")._value.get() == 0
    ok, status = metrics.health(5, 60)
    assert not ok and status["challenge"]["status"] == "not_provable"
    assert world["dep"].oracle.functions.epoch_record_hash(world["dep"].engine.address,
                                                           finding.root.signed_at).call() != VOID


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except urllib.error.URLError:
        return 0, {}


def until_proven(port: int, deadline: float) -> tuple[int, dict, str]:
    """Polls the watcher's /health until its last challenge is proven (or the deadline), then
    reads /metrics: (health code, health body, metrics text)."""
    code, status = health(port)
    while time.monotonic() < deadline and status.get("challenge", {}).get("status") != "proven":
        time.sleep(0.1)
        code, status = health(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return code, status, r.read().decode()


def test_understated_margin__watcher_process_challenges__epoch_voided__challenger_paid(world):
    dep, token = world["dep"], world["dep"].token
    epoch = world["honest"] + 2
    port = free_port()
    cfg_path = world["tmp"] / "watch.json"
    cfg_path.write_text(json.dumps({
        "rpc_url": world["dev"].url, "engine_address": dep.engine.address, "start_epoch": epoch,
        "epoch_dir": str(world["tmp"] / "signer"), "data_dir": str(world["tmp"] / "watch"),
        "metrics_port": port, "poll_interval_s": 0.2,
        "challenger_key": {"source": f"keyfile:{world['keyfile']}", "passphrase_env": PASSWORD_ENV}}))
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "watch", "--config", str(cfg_path)],
                            env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    balance = token.functions.balanceOf(world["challenger"].address).call()
    try:
        deadline = time.monotonic() + 180   # generous: a loaded 2-core machine; each wait ends at once
        while time.monotonic() < deadline and health(port)[0] != 200:   # up, and the honest past ignored
            time.sleep(0.2)
        path, receipt = rogue_epoch(world, epoch, lambda x: replace(
            x, initial_margin_wad=x.initial_margin_wad // 20, maintenance_margin_wad=x.maintenance_margin_wad // 20))
        posted = time.monotonic()
        signed_at = json.loads(path.read_text())["root"]["timestamp"]
        while time.monotonic() < deadline and \
                dep.oracle.functions.epoch_record_hash(dep.engine.address, signed_at).call() != VOID:
            time.sleep(0.05)
        latency = time.monotonic() - posted
        code, status, metrics = until_proven(port, deadline)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    [start] = [x for x in lines if x["msg"] == "watch started"]
    assert start["challenge"]["challenger"] == world["challenger"].address
    assert start["challenge"]["fraud_proofs"] == world["fraud"].address      # read from the oracle's log
    assert code == 503 and status["challenge"]["status"] == "proven", (status, err[-3000:])
    [proven] = [x for x in lines if x["msg"] == "challenge proven: epoch voided, bonds paid"]
    paid = BOND * 2_000 // 10_000                                 # the challenger's 20% of the bond
    assert (proven["epoch"], proven["account"], proven["code"], proven["paid"]) == (epoch, world["victim"], 1, paid)
    assert token.functions.balanceOf(world["challenger"].address).call() - balance == paid
    assert dep.oracle.functions.epoch_record_hash(dep.engine.address, signed_at).call() == VOID
    assert not world["bond"].functions.is_bonded(world["signer"].address).call()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics) for s in family.samples}
    assert samples[("watch_challenges_total", (("kind", "account"), ("outcome", "committed")))] == 1
    assert samples[("watch_challenges_total", (("kind", "account"), ("outcome", "succeeded")))] == 1
    assert samples[("watch_challenges_total", (("kind", "account"), ("outcome", "submitted")))] == 1
    assert samples[("watch_challenge_payout_total", ())] == paid
    assert samples[("watch_challenge_gas", ())] == proven["gas"]
    assert samples[("watch_challenge_commit_gas", ())] == proven["commit_gas"] > 0
    ledger = json.loads((world["tmp"] / "watch" / "challenges.json").read_text())
    [entry] = ledger.values()
    assert entry["status"] == "proven" and entry["tx"] == proven["tx"]
    # commit-reveal: the commitment a block (or more) before the reveal, its salt kept private
    assert entry["commit_tx"] == proven["commit_tx"] and entry["commit_block"] < entry["block"]
    assert status["challenge"]["commit_block"] == entry["commit_block"]
    salts = world["tmp"] / "watch" / "salts.json"
    assert salts.stat().st_mode & 0o777 == 0o600
    [stored] = json.loads(salts.read_text()).values()
    assert stored["commitment"] == entry["commitment"] and stored["salt"][2:] not in json.dumps(entry)
    print(f"\nchallenge gas {proven['gas']} + commit {proven['commit_gas']}, root posted -> challenge mined "
          f"{latency:.2f} s wall ({proven['blocks_after_post']} blocks), watcher rebuild+challenge "
          f"{proven['seconds']} s")
    world["rogue"] = (epoch, receipt)


def test_restarted_watcher__never_challenges_the_same_leaf_twice(world):
    epoch, _receipt = world["rogue"]
    watcher, metrics = in_process_watcher(world, epoch)
    before = nonce_of(world)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.challenge.status == "already_challenged" and finding.challenge.account == world["victim"]
    assert nonce_of(world) == before
    assert metrics.challenges.labels(outcome="submitted", kind="account")._value.get() == 0


def test_another_watcher__epoch_already_void__nothing_sent(world, tmp_path):
    """A second watcher (its own ledger) meeting the root the first one proved: the epoch is
    void, so it says so and sends nothing."""
    epoch, _receipt = world["rogue"]
    cfg = replace(watch_cfg(world, epoch), data_dir=str(tmp_path / "other"))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, world["dep"], metrics, Challenger(cfg, world["dep"], world["dev"].accounts[7], metrics))
    watcher.start()
    [finding] = watcher.poll()
    assert finding.challenge.status == "already_void"
    assert world["dev"].w3.eth.get_transaction_count(world["dev"].accounts[7].address) == 0


def test_no_key__reports_only_and_says_so(world, tmp_path):
    epoch, _receipt = world["rogue"]
    cfg = WatchConfig(rpc_url=world["dev"].url, engine_address=world["dep"].engine.address, start_epoch=epoch,
                      epoch_dir=str(world["tmp"] / "signer"))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, world["dep"], metrics)
    watcher.start()
    [finding] = watcher.poll()
    assert not finding.ok and finding.challenge is None
    assert metrics.health(5, 60)[1]["challenge_mode"] == "report only: no challenger_key"


def rebond(w) -> None:
    """The slashed signer's operator stakes the bond again: its signatures count again."""
    admin, token = w["dev"].accounts[0], w["dep"].token
    send(w["dev"].w3, admin, token.functions.mint(admin.address, BOND), "mint")
    send(w["dev"].w3, admin, token.functions.approve(w["bond"].address, BOND), "approve")
    send(w["dev"].w3, admin, w["bond"].functions.bond(w["signer"].address, BOND), "bond")


def test_rebonded_signer__understated_worst_loss_from_its_proof_endpoint__challenged_with_code_2(world):
    """The signer bonds again and posts a root whose victim leaf keeps its MM and IM but
    understates its worst loss; the watcher knows only the signer's `/proof/<account>`
    endpoint (no files). The leaf's own scenarios are the binding ones, so the model picks
    them and the contract proves LOSS_ABOVE_LEAF."""
    dep, token = world["dep"], world["dep"].token
    rebond(world)
    epoch = world["rogue"][0] + 1
    path, _receipt = rogue_epoch(world, epoch, lambda x: replace(x, worst_loss_wad=x.worst_loss_wad // 3))
    store = EpochStore(path.parent.parent)
    server = MetricsServer(KeeperMetrics(), 0, proofs=lambda a: proof_for(store, dep.engine.address, a)).start()
    balance = token.functions.balanceOf(world["challenger"].address).call()
    try:
        cfg = replace(watch_cfg(world, epoch), epoch_dir="", keeper_url=f"http://127.0.0.1:{server.port}")
        metrics = WatchMetrics()
        watcher = Watcher(cfg, dep, metrics, Challenger(cfg, dep, world["challenger"], metrics))
        watcher.start()
        [finding] = watcher.poll()
    finally:
        server.stop()
    assert [n for n, _a, _b in finding.fields] == ["worst_loss_wad"]
    outcome = finding.challenge
    assert outcome.status == "proven" and outcome.account == world["victim"], outcome
    assert outcome.entry["code"] == 2 and outcome.entry["predicted_code"] == 2
    assert token.functions.balanceOf(world["challenger"].address).call() - balance == BOND * 2_000 // 10_000
    world["code2_epoch"] = epoch


def test_false_root_found_after_the_window__reported_not_sent(world):
    """A watcher that comes back after the challenge window of a false root sends nothing:
    the window is read from FraudProofs and checked against the chain's clock first."""
    rebond(world)
    epoch = world["code2_epoch"] + 1
    rogue_epoch(world, epoch, lambda x: replace(x, maintenance_margin_wad=x.maintenance_margin_wad // 20))
    w3 = world["dev"].w3
    w3.provider.make_request("evm_mine", [w3.eth.get_block("latest")["timestamp"] + WINDOW + 1])
    watcher, metrics = in_process_watcher(world, epoch)
    before = nonce_of(world)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.challenge.status == "window_over", finding.challenge
    assert "the challenge window closed at" in finding.challenge.detail
    assert nonce_of(world) == before and metrics.challenges.labels(outcome="submitted", kind="account")._value.get() == 0


class RecordingProxy:
    """A JSON-RPC endpoint that forwards every request to the node and records the methods:
    stands in for a private transaction endpoint. `refuse`: methods answered as unknown;
    `refuse_pending`: estimates on the pending block refused (a node that has none)."""

    def __init__(self, upstream: str, refuse: tuple[str, ...] = (), refuse_pending: bool = False):
        methods = self.methods = []
        refused = self.refused = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                doc = json.loads(body)
                methods.extend(r["method"] for r in (doc if isinstance(doc, list) else [doc]))
                if isinstance(doc, dict) and doc["method"] in refuse:   # a node without that namespace
                    answer = json.dumps({"jsonrpc": "2.0", "id": doc["id"], "error": {
                        "code": -32601, "message": f"the method {doc['method']} does not exist/is not available"}
                    }).encode()
                elif refuse_pending and isinstance(doc, dict) and doc["method"] == "eth_estimateGas" and \
                        doc["params"][1:2] == ["pending"]:
                    refused.append(doc["method"])
                    answer = json.dumps({"jsonrpc": "2.0", "id": doc["id"], "error": {
                        "code": -32000, "message": "pending block is not available"}}).encode()
                else:
                    req = urllib.request.Request(upstream, body, {"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=30) as r:
                        answer = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_challenge_rpc_url__the_proof_leaves_through_the_private_endpoint_only(world):
    """With challenge_rpc_url the signed commit and challenge are sent there (a reveal seen in
    the public mempool cannot pay a copier, whose commitment would be too young, but it tells
    bots which leaf is false); reads, the dry run and the reveal's estimate stay on rpc_url."""
    dep = world["dep"]
    rebond(world)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    rogue_epoch(world, epoch, lambda x: replace(x, initial_margin_wad=x.initial_margin_wad // 20,
                                                maintenance_margin_wad=x.maintenance_margin_wad // 20))
    proxy = RecordingProxy(world["dev"].url)
    try:
        cfg = replace(watch_cfg(world, epoch), challenge_rpc_url=proxy.url)
        metrics = WatchMetrics()
        watcher = Watcher(cfg, dep, metrics, Challenger(cfg, dep, world["challenger"], metrics))
        watcher.start()
        [finding] = watcher.poll()
    finally:
        proxy.stop()
    assert finding.challenge.status == "proven", finding.challenge
    assert proxy.methods.count("eth_sendRawTransaction") == 2       # the commit, then the reveal
    assert "eth_estimateGas" in proxy.methods      # the executor's own estimate of the commit
    assert "eth_getLogs" not in proxy.methods      # the watcher's reads stay on rpc_url


def test_node_without_a_pending_block__reveal_waits_for_the_block_after_the_commit(world):
    """Against a node that cannot estimate on its pending block, the watcher cannot ask
    whether its reveal would land a block after the commit: it waits for the head to pass
    the commit's block and estimates on the latest block, then reveals (a block is mined
    every second here, as a chain would)."""
    dep, w3 = world["dep"], world["dev"].w3
    rebond(world)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    rogue_epoch(world, epoch, understate)
    proxy = RecordingProxy(world["dev"].url, refuse_pending=True)
    stop = threading.Event()

    def mine_every_second():
        while not stop.wait(1.0):
            w3.provider.make_request("evm_mine", [])

    miner = threading.Thread(target=mine_every_second, daemon=True)
    miner.start()
    try:
        node = replace(dep, w3=Web3(HTTPProvider(proxy.url)))
        cfg = replace(watch_cfg(world, epoch), data_dir=str(world["tmp"] / "no-pending"))
        metrics = WatchMetrics()
        watcher = Watcher(cfg, node, metrics, Challenger(cfg, node, world["challenger"], metrics))
        watcher.start()
        [finding] = watcher.poll()
    finally:
        stop.set()
        miner.join(timeout=5)
        proxy.stop()
    assert finding.challenge.status == "proven", finding.challenge
    entry = finding.challenge.entry
    assert proxy.refused == ["eth_estimateGas"] and entry["block"] > entry["commit_block"]


def withheld_rogue_epoch(w, lie) -> tuple[int, object]:
    """A rogue root whose signers publish no leaf: its epoch file goes to a folder no watcher
    reads (the signers keep it to apply their leaves) -> (epoch, trees)."""
    dep = w["dep"]
    rebond(w)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    path, _receipt, trees = post_rogue_root(dep, w["gas"], [w["signer"]], w["params"],
                                            w["keeper"].trees.market_leaves, w["keeper"].listed, epoch,
                                            w["victim"], lie, w["tmp"] / "withheld")
    assert not (w["tmp"] / "signer" / dep.engine.address / path.name).exists()
    return epoch, trees


def understate(x):
    return replace(x, initial_margin_wad=x.initial_margin_wad // 20, maintenance_margin_wad=x.maintenance_margin_wad // 20)


def harvest_watcher(w, epoch: int, dep=None, challenger=True) -> tuple[Watcher, WatchMetrics]:
    """A watcher that knows no published leaf: roots from the chain only."""
    cfg = replace(watch_cfg(w, epoch), epoch_dir="")
    metrics = WatchMetrics()
    dep = dep or w["dep"]
    return Watcher(cfg, dep, metrics, Challenger(cfg, dep, w["challenger"], metrics) if challenger else None), metrics


def test_withheld_leaves__false_leaf_applied_by_withdraw_with_leaf__harvested_from_calldata__challenged(world):
    """Rogue signers post a root understating the victim's IM and MM and publish no leaf; the
    root alone is false but not provable. The victim applies its leaf with withdraw_with_leaf
    and withdraws below its true IM; the next poll reads the leaf and proof from that
    transaction's input and proves it: epoch voided, challenger paid. Also: ledger entries a
    crash left "sending" -- one whose challenge was mined reverted, one whose hash never
    reached the chain -- are failed at start, and because the window is open and the epoch
    not void, they may be challenged again."""
    dep, token, w3 = world["dep"], world["dep"].token, world["dev"].w3
    victim, other = world["traders"][1], world["traders"][0]
    epoch, trees = withheld_rogue_epoch(world, understate)
    reverted = w3.eth.send_transaction({"from": world["challenger"].address, "to": world["fraud"].address,
                                        "data": "0xdeadbeef", "gas": 100_000}).to_0x_hex()
    assert w3.eth.get_transaction_receipt(reverted)["status"] == 0
    ledger_path = world["tmp"] / "watch" / "challenges.json"
    ledger = json.loads(ledger_path.read_text())
    for who, tx in ((victim.address, reverted), (other.address, "0x" + "ab" * 32)):
        ledger[f"{dep.engine.address}:{epoch}:{who}"] = {"status": "sending", "epoch": epoch, "account": who,
                                                         "txs": [tx], "sent_block": w3.eth.block_number - 30}
    ledger_path.write_text(json.dumps(ledger))
    watcher, metrics = harvest_watcher(world, epoch)
    before = nonce_of(world)
    watcher.start()
    entry = watcher.challenger.ledger.get(dep.engine.address, epoch, victim.address)
    assert (entry["status"], entry["error"], entry["tx"], entry["retry"]) == ("failed", "reverted", reverted, True)
    entry = watcher.challenger.ledger.get(dep.engine.address, epoch, other.address)
    assert entry["status"] == "failed" and entry["retry"] is True, entry
    assert entry["error"].startswith("no receipt for ['0x" + "ab" * 32 + "'] ") and "blocks after it was sent" \
        in entry["error"]
    [finding] = watcher.poll()
    assert not finding.ok and finding.challenge.status == "not_provable", finding.challenge
    assert "no published leaf at hand" in finding.challenge.detail
    assert nonce_of(world) == before and epoch in watcher.open
    assert watcher.poll() == []                     # nothing applied yet: nothing to harvest

    leaf, proof = trees.account_proof(victim.address)
    honest_im = watcher.open[epoch].result.leaf(victim.address).initial_margin_wad
    equity = dep.engine.functions.health(victim.address).call()[0]
    amount = (equity - (honest_im + leaf.initial_margin_wad) // 2) // 10**12     # WAD -> 6-decimal units
    balance = token.functions.balanceOf(victim.address).call()
    send(w3, victim, dep.engine.functions.withdraw_with_leaf(amount, leaf.as_args(), proof), "withdraw_with_leaf")
    assert token.functions.balanceOf(victim.address).call() - balance == amount
    assert dep.engine.functions.health(victim.address).call()[0] < honest_im   # below its true IM
    paid_before = token.functions.balanceOf(world["challenger"].address).call()
    t0 = time.perf_counter()
    [harvest] = watcher.poll()
    seconds = time.perf_counter() - t0
    [applied] = harvest.applied
    assert (applied.function, applied.via, applied.account) == ("withdraw_with_leaf", "", victim.address)
    assert applied.leaf == leaf and applied.proof == proof
    assert {n for n, _a, _b in harvest.fields} >= {"initial_margin_wad", "maintenance_margin_wad"}
    assert harvest.published.source.startswith("calldata of tx " + applied.tx_hash)
    outcome = harvest.challenge
    assert outcome.status == "proven" and outcome.account == victim.address, outcome
    assert outcome.entry["code"] == 1 and "retry" not in outcome.entry
    assert token.functions.balanceOf(world["challenger"].address).call() - paid_before == BOND * 2_000 // 10_000
    assert dep.oracle.functions.epoch_record_hash(dep.engine.address, harvest.root.signed_at).call() == VOID
    assert epoch not in watcher.open and watcher.poll() == []
    assert metrics.harvested.labels(verdict="false")._value.get() == 1
    assert metrics.challenges.labels(outcome="submitted", kind="account")._value.get() == 1
    # a restart (same ledger) meets the root: the leaf proven from calldata is not sent again
    # from any path, and the settled epoch is not harvested any more
    nonce = nonce_of(world)
    again, _metrics = harvest_watcher(world, epoch)
    again.start()
    [root_again] = again.poll()
    assert root_again.challenge.status == "already_challenged" and root_again.challenge.entry["status"] == "proven"
    assert epoch not in again.open and nonce_of(world) == nonce
    print(f"\nharvest + challenge of an applied withheld leaf: {seconds:.2f} s, gas {outcome.entry['gas']}")


def test_withheld_leaf_applied_through_a_contract__traced__or_reported_when_the_node_cannot_trace(world):
    """The false leaf is applied by another contract (a token whose transfer hook calls
    apply_leaf): against a node without debug_traceTransaction the watcher reports it as
    applied through a contract, not harvested, and keeps going; against Anvil's call tracer
    it reads the leaf from the inner call and proves it."""
    dep, w3 = world["dep"], world["dev"].w3
    victim, anyone = world["traders"][1], world["traders"][2]
    epoch, trees = withheld_rogue_epoch(world, understate)
    leaf, proof = trees.account_proof(victim.address)
    hook = deploy(w3, compile_contracts(["ReentrantToken"])["ReentrantToken"], anyone, "Hook", "HK", 6)
    send(w3, anyone, hook.functions.arm(dep.engine.address, bytes.fromhex(
        Encoder(dep.engine)("apply_leaf", leaf.as_args(), proof).data[2:])), "arm")
    send(w3, anyone, hook.functions.transfer(victim.address, 0), "transfer")
    assert dep.engine.functions.health(victim.address).call()[2] == leaf.initial_margin_wad

    proxy = RecordingProxy(world["dev"].url, refuse=("debug_traceTransaction",))
    try:
        blind = replace(dep, w3=Web3(HTTPProvider(proxy.url)))
        watcher, metrics = harvest_watcher(world, epoch, dep=blind, challenger=False)
        watcher.start()
        [finding] = watcher.poll()
    finally:
        proxy.stop()
    assert not finding.ok and "debug_traceTransaction" in proxy.methods
    [applied] = watcher.applied
    assert applied.leaf is None and applied.account == victim.address
    assert applied.note.startswith(f"applied through a contract ({hook.address}); not harvested"), applied.note
    assert metrics.harvested.labels(verdict="not_harvested")._value.get() == 1

    watcher, metrics = harvest_watcher(world, epoch)
    watcher.start()
    [root_finding, harvest] = watcher.poll()
    assert root_finding.challenge.status == "not_provable"
    [applied] = harvest.applied
    assert (applied.function, applied.via, applied.leaf) == ("apply_leaf", hook.address, leaf)
    assert harvest.challenge.status == "proven" and harvest.challenge.entry["code"] == 1, harvest.challenge


def killed_watcher(w, epoch: int, data_dir: Path, mine_commit: bool) -> dict:
    """Run the watcher process on a new false root with automine off; once its commit is
    signed (and, with `mine_commit`, mined by one block and the reveal signed too) SIGKILL it
    -> its ledger entry as the crash left it."""
    dep, w3 = w["dep"], w["dev"].w3
    cfg_path = w["tmp"] / f"crash-{epoch}.json"
    cfg_path.write_text(json.dumps({
        "rpc_url": w["dev"].url, "engine_address": dep.engine.address, "start_epoch": epoch,
        "epoch_dir": str(w["tmp"] / "signer"), "data_dir": str(data_dir), "metrics_port": 0,
        "poll_interval_s": 0.2,
        "challenger_key": {"source": f"keyfile:{w['keyfile']}", "passphrase_env": PASSWORD_ENV}}))
    w3.provider.make_request("evm_setAutomine", [False])
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "watch", "--config", str(cfg_path)],
                            env=w["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def entry_now() -> dict:
        try:
            return next(iter(json.loads((data_dir / "challenges.json").read_text()).values()), {})
        except (OSError, ValueError):
            return {}

    entry: dict = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not entry.get("commit_txs"):
            time.sleep(0.1)
            entry = entry_now()
        time.sleep(0.5)          # the signed transaction reaches the node right after its hash is written
        if mine_commit:
            w3.provider.make_request("evm_mine", [])
            while time.monotonic() < deadline and not entry.get("txs"):
                time.sleep(0.1)
                entry = entry_now()
            time.sleep(0.5)
    finally:
        proc.kill()
        _out, err = proc.communicate(timeout=30)
        w3.provider.make_request("evm_setAutomine", [True])
    assert entry.get("commit_txs"), err[-3000:]
    return entry


def test_watcher_killed_between_challenge_and_receipt__restart_resolves_the_ledger_by_tx_hash(world):
    """The watcher process commits, the commit is mined, it sends the reveal while the node
    holds it unmined, and is killed (SIGKILL) before the receipt: its ledger says "sending"
    with the signed hash. The block is mined; a restarted watcher finds the receipt by that
    hash, records the proof and payout, and sends nothing again."""
    dep, w3 = world["dep"], world["dev"].w3
    rebond(world)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    rogue_epoch(world, epoch, understate)
    data_dir = world["tmp"] / "crash"
    entry = killed_watcher(world, epoch, data_dir, mine_commit=True)
    assert entry.get("status") == "sending" and entry.get("txs") and entry["commit_block"], entry
    w3.provider.make_request("evm_mine", [])
    nonce = nonce_of(world)
    cfg = replace(watch_cfg(world, epoch), data_dir=str(data_dir))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, dep, metrics, Challenger(cfg, dep, world["challenger"], metrics))
    watcher.start()
    done = watcher.challenger.ledger.get(dep.engine.address, epoch, world["victim"])
    assert done["status"] == "proven" and done["code"] == 1 and done["tx"] in entry["txs"], done
    assert done["paid"] == BOND * 2_000 // 10_000 and "reconciled_at" in done
    assert metrics.challenges.labels(outcome="succeeded", kind="account")._value.get() == 1
    [finding] = watcher.poll()
    assert finding.challenge.status == "already_challenged" and finding.challenge.entry["status"] == "proven"
    assert nonce_of(world) == nonce


def test_watcher_killed_between_commit_and_reveal__restart_reveals_the_stored_commitment(world):
    """The watcher process signs its commit while the node holds it unmined and is killed:
    the ledger says "committing" with the commit's hash, the salt is in salts.json (0600).
    The commit is mined; a restarted watcher finds the commitment on chain and, before its
    first poll, reveals it with the stored salt (a block later): proven, paid, one
    transaction (the reveal) and nothing more when it meets the root."""
    dep, w3, token = world["dep"], world["dev"].w3, world["dep"].token
    rebond(world)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    rogue_epoch(world, epoch, understate)
    data_dir = world["tmp"] / "crash-commit"
    entry = killed_watcher(world, epoch, data_dir, mine_commit=False)
    assert entry.get("status") == "committing" and not entry.get("txs"), entry
    salts = data_dir / "salts.json"
    assert salts.stat().st_mode & 0o777 == 0o600
    w3.provider.make_request("evm_mine", [])      # (turning automine back on may have mined it already)
    commit_block = w3.eth.get_transaction_receipt(entry["commit_txs"][-1])["blockNumber"]
    nonce = nonce_of(world)
    balance = token.functions.balanceOf(world["challenger"].address).call()
    cfg = replace(watch_cfg(world, epoch), data_dir=str(data_dir))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, dep, metrics, Challenger(cfg, dep, world["challenger"], metrics))
    watcher.start()
    done = watcher.challenger.ledger.get(dep.engine.address, epoch, world["victim"])
    assert done["status"] == "proven" and done["code"] == 1, done
    assert done["commit_block"] == commit_block < done["block"] and done["commit_tx"] in entry["commit_txs"]
    assert done["paid"] == BOND * 2_000 // 10_000 == token.functions.balanceOf(world["challenger"].address).call() \
        - balance
    assert nonce_of(world) == nonce + 1                   # the reveal only: the commit was already signed
    assert metrics.challenges.labels(outcome="committed", kind="account")._value.get() == 1
    assert metrics.health(5, 60)[1]["challenge"]["status"] == "proven"
    h = bytes.fromhex(done["commitment"][2:])
    assert world["fraud"].functions.commitments(world["challenger"].address, h).call() == 0   # spent
    [finding] = watcher.poll()
    assert finding.challenge.status == "already_challenged" and nonce_of(world) == nonce + 1


def test_live_perpetual_left_out_of_the_market_root__watcher_process_proves_the_empty_slot(world):
    """The rebonded signer posts a root whose market tree leaves the live perpetual's slot
    empty: every account leaf is what the keeper's code makes of that market (the perp
    margined at zero), so no account leaf can be challenged, but the slot is provable. The
    watcher process dry-runs `challenge_market` for slot 1, commits to the id as an address,
    reveals: code 6, the epoch void, the challenger paid; metrics and /health say "market"."""
    dep, token = world["dep"], world["dep"].token
    rebond(world)
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    port, data_dir = free_port(), world["tmp"] / "watch-market"
    cfg_path = world["tmp"] / "watch-market.json"
    cfg_path.write_text(json.dumps({
        "rpc_url": world["dev"].url, "engine_address": dep.engine.address, "start_epoch": epoch,
        "epoch_dir": str(world["tmp"] / "signer"), "data_dir": str(data_dir), "metrics_port": port,
        "poll_interval_s": 0.2,
        "challenger_key": {"source": f"keyfile:{world['keyfile']}", "passphrase_env": PASSWORD_ENV}}))
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "watch", "--config", str(cfg_path)],
                            env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    balance = token.functions.balanceOf(world["challenger"].address).call()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and health(port)[0] != 200:
            time.sleep(0.2)
        market = [m for m in world["keeper"].trees.market_leaves if m.instrument_id != PERP]
        path, _receipt, trees = post_rogue_root(dep, world["gas"], [world["signer"]], world["params"], market,
                                                world["keeper"].listed, epoch, world["victim"], lambda x: x,
                                                world["tmp"] / "signer")
        assert trees.market_proof(PERP)[0] is None and trees.market_count >= PERP
        signed_at = json.loads(path.read_text())["root"]["timestamp"]
        code, status, metrics = until_proven(port, deadline)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert code == 503 and status["challenge"]["status"] == "proven", (status, err[-3000:])
    assert status["challenge"]["kind"] == "market" and status["challenge"]["instrument_id"] == PERP
    assert "market leaf of instrument 1: leaf is 'missing'" in status["reason"]
    paid = BOND * 2_000 // 10_000
    assert (status["challenge"]["code"], status["challenge"]["paid"]) == (6, paid)
    assert token.functions.balanceOf(world["challenger"].address).call() - balance == paid
    assert dep.oracle.functions.epoch_record_hash(dep.engine.address, signed_at).call() == VOID
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    [proven] = [x for x in lines if x["msg"] == "challenge proven: epoch voided, bonds paid"]
    assert (proven["epoch"], proven["kind"], proven["code"]) == (epoch, "market", 6)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics) for s in family.samples}
    for outcome in ("committed", "submitted", "succeeded"):
        assert samples[("watch_challenges_total", (("kind", "market"), ("outcome", outcome)))] == 1
    assert samples.get(("watch_challenges_total", (("kind", "account"), ("outcome", "submitted"))), 0) == 0
    [entry] = json.loads((data_dir / "challenges.json").read_text()).values()
    assert (entry["kind"], entry["function"], entry["instrument_id"], entry["status"]) == \
        ("market", "challenge_market", PERP, "proven")
    assert entry["account"] == Web3.to_checksum_address(PERP.to_bytes(20, "big"))   # what the commitment names
    # a restarted watcher on the same ledger meets the root: the slot is not committed to again
    cfg = replace(watch_cfg(world, epoch), data_dir=str(data_dir))
    metrics_ = WatchMetrics()
    watcher = Watcher(cfg, dep, metrics_, Challenger(cfg, dep, world["challenger"], metrics_))
    nonce = nonce_of(world)
    watcher.start()
    [finding] = watcher.poll()
    assert finding.challenge.status == "already_challenged" and finding.challenge.entry["kind"] == "market"
    assert nonce_of(world) == nonce
    print(f"\nmarket slot challenge: commit gas {entry['commit_gas']}, reveal gas {entry['gas']}, "
          f"{entry['blocks_after_post']} blocks / {entry['chain_seconds_after_post']} chain s after the post, "
          f"watcher {entry['seconds']} s")

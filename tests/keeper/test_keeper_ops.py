"""Operating the keeper on a real Anvil with a live price source: a local HTTP feed the test
moves. Startup refuses keys the oracle does not accept; index prices are posted on a move or
a heartbeat, not every block; every transaction is one log line; metrics show integer block
numbers; a busy metrics port is a one-line error."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from offchain.cli import main
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.keys import write_keyfile
from offchain.keeper.logs import setup_logging
from offchain.keeper.metrics import KeeperMetrics, MetricsServer, exposition
from offchain.keeper.prices import HttpJsonSource, parse_date
from offchain.keeper.signing import Signers
from offchain.keeper.store import StateStore
from offchain.risk import load_params

T0 = parse_date("2024-06-03", "t0")


class Feed:
    """A price feed on 127.0.0.1: GET /spot/<UNDERLYING> -> {"data": {"amount": "<price>"}}."""

    def __init__(self, prices: dict[str, float]):
        self.prices = dict(prices)
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                if name not in feed.prices:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"data": {"amount": str(feed.prices[name])}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/spot/{{underlying}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    dev = start_anvil(accounts=6, timestamp=T0)
    a = dev.accounts
    admin, gas, signer, stranger = a[0], a[1], a[2], a[3]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [signer.address], 1, params, EngineSettings())
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"}])
    fund(dep, admin, gas, 1_000, deposit=False)
    feed = Feed({"BTC": 70_000.0, "ETH": 3_800.0})
    source = HttpJsonSource(feed.url, "data.amount", ["BTC", "ETH"], {"BTC": 0.6, "ETH": 0.7},
                            poll_s=0.0)
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(tmp),
                       price_move_frac=0.002, price_max_age_s=3600)
    signers = Signers([signer])
    keeper = Keeper(cfg, dep, signers, Executor(dev.w3, gas, cfg.gas), StateStore(tmp / "k.sqlite"),
                    params, source)
    yield dict(dev=dev, dep=dep, admin=admin, gas=gas, signer=signer, stranger=stranger,
               feed=feed, keeper=keeper, cfg=cfg, params=params, tmp=tmp)
    feed.stop()
    dev.stop()


@pytest.fixture
def records():
    """Log records of the netmargin loggers (they do not propagate to pytest's caplog)."""
    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    keep = Keep()
    root = logging.getLogger("netmargin")
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.INFO)
    yield keep.records
    root.removeHandler(keep)
    root.setLevel(level)


def index_posts(w) -> list:
    return w["dep"].oracle.events.IndexPriceUpdated().get_logs(from_block=0)


def test_keeper_startup__signer_key_not_an_oracle_signer__refuses_with_reason(world):
    w = world
    signers = Signers([w["stranger"]])
    rogue = Keeper(w["cfg"], w["dep"], signers, Executor(w["dev"].w3, w["gas"], w["cfg"].gas),
                   StateStore(w["tmp"] / "rogue.sqlite"), w["params"], None)
    with pytest.raises(UserError, match=f"{w['stranger'].address} is not an oracle signer"):
        rogue.startup()


def test_keeper_once__signer_not_in_oracle__exits_non_zero_naming_the_key(world, tmp_path, monkeypatch, capsys):
    w = world
    monkeypatch.setenv("OPS_PW", "pw")
    stranger = write_keyfile(w["stranger"], tmp_path / "stranger.json", "pw")
    gas = write_keyfile(w["gas"], tmp_path / "gas.json", "pw")
    config = tmp_path / "keeper.json"
    config.write_text(json.dumps({
        "rpc_url": w["dev"].url, "engine_address": w["dep"].engine.address,
        "data_dir": str(tmp_path), "log_format": "text",
        "signers": [{"source": f"keyfile:{stranger}", "passphrase_env": "OPS_PW"}],
        "gas_key": {"source": f"keyfile:{gas}", "passphrase_env": "OPS_PW"},
        "prices": {"kind": "http", "url": w["feed"].url, "json_path": "data.amount"}}))
    assert main(["keeper", "--config", str(config), "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("netmargin keeper: error: config.signers: ")
    assert "is not an oracle signer" in err[-1] and "Traceback" not in "\n".join(err)


def test_keeper_cycle__live_feed__posts_index_once_then_only_on_move_or_heartbeat(world, records):
    w, dev, keeper = world, world["dev"], world["keeper"]
    keeper.startup()
    keeper.cycle()
    assert len(index_posts(w)) == 2  # BTC and ETH, first post
    t = dev.w3.eth.get_block("latest")["timestamp"]  # the chain clock runs on (slow machines)
    for k in range(1, 4):  # unchanged feed: blocks pass, nothing re-posted
        dev.mine(t + 60 * k)
        keeper.cycle()
    assert len(index_posts(w)) == 2
    w["feed"].prices["BTC"] = 70_700.0  # +1% > price_move_frac
    dev.mine(t + 300)
    keeper.cycle()
    posts = index_posts(w)
    assert len(posts) == 4 and posts[-2]["args"]["price_wad"] == 70_700 * 10**18
    line = [r for r in records if r.getMessage() == "index ok"][-1]
    assert line.reason == "BTC moved 1.00%" and line.tx.startswith("0x") and line.gas > 0
    dev.mine(t + 300 + w["cfg"].price_max_age_s)  # heartbeat
    keeper.cycle()
    assert len(index_posts(w)) == 6
    assert any(r.getMessage() == "index ok" and r.reason.startswith("heartbeat") for r in records)


def test_keeper_cycle__market_data_post__one_log_line_with_tx_and_gas(world, records):
    w, keeper = world, world["keeper"]
    w["feed"].prices["BTC"] = 72_000.0
    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 600)
    keeper.cycle()
    lines = [r for r in records if r.getMessage() == "market_data ok"]
    assert len(lines) == 1 and lines[0].tx.startswith("0x") and lines[0].gas > 20_000
    assert lines[0].instruments == 1 and lines[0].action == "market_data"


def test_keeper_market_data__rates_moved_marks_unchanged__due_and_posted(world):
    """Rates count as prices: a re-priced model moves the per-unit rates (and the next root's
    leaves) without moving a mark; market data is then due at once and goes out with the new
    rates, so rates never lag a re-priced root (the engine caps a raise-only leaf at the
    book's isolated bound at the posted rates). Unchanged marks and rates post nothing."""
    w, keeper, dev = world, world["keeper"], world["dev"]
    oracle = w["dep"].oracle.functions
    dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 600)
    keeper.cycle()                                    # marks and rates as the model has them now
    marks, posted_at = keeper.posted_marks.copy(), keeper.posted_at
    (im_l, im_s, mm_l, mm_s), _ = oracle.rates(1).call()
    same = [[im_l], [im_s], [mm_l], [mm_s]]
    assert keeper._market_data_call(marks, same, posted_at + 1) is None
    tripled = [[3 * v] for v in (im_l, im_s, mm_l, mm_s)]
    label, call, on_result = keeper._market_data_call(marks, tripled, posted_at + 1)
    [res] = keeper.executor.send_batch([(label, call)])
    assert res.ok and on_result(res)
    rates, updated_at = oracle.rates(1).call()
    assert tuple(rates) == (3 * im_l, 3 * im_s, 3 * mm_l, 3 * mm_s) and updated_at == posted_at + 1
    assert keeper._market_data_call(marks, tripled, posted_at + 2) is None


def test_http_json_source__feed_down__raises_so_the_guard_holds(world):
    dead = HttpJsonSource("http://127.0.0.1:1/spot/{underlying}", "data.amount", ["BTC"],
                          {"BTC": 0.6}, timeout_s=0.5)
    with pytest.raises(ConnectionError, match="price feed http://127.0.0.1:1/spot/BTC"):
        dead.spot(T0)
    wrong_path = HttpJsonSource(world["feed"].url, "data.price", ["BTC"], {"BTC": 0.6})
    with pytest.raises(ValueError, match="no 'data.price' in the reply"):
        wrong_path.spot(T0)


def test_http_json_source__past_time__first_reading_after_it():
    clock = [1_000.0]
    feed = Feed({"BTC": 100.0})
    try:
        src = HttpJsonSource(feed.url, "data.amount", ["BTC"], {"BTC": 0.6}, poll_s=10,
                             clock=lambda: clock[0])
        assert src.spot(1_000)[0] == 100.0
        feed.prices["BTC"] = 120.0
        assert src.spot(1_005)[0] == 100.0  # within poll_s: no new read
        clock[0] = 1_020.0
        assert src.spot(1_020)[0] == 120.0
        assert src.spot(1_010)[0] == 120.0  # a settlement at 1_010: the first reading after
    finally:
        feed.stop()


def test_metrics_exposition__block_numbers__written_as_integers():
    m = KeeperMetrics()
    m.head_block.set(12_345_678)
    m.processed_block.set(12_345_677)
    text = exposition(m.registry).decode()
    assert "keeper_head_block 12345678\n" in text and "keeper_processed_block 12345677\n" in text
    assert m.health(5, float("inf"))[1]["head_block"] == 12_345_678


def test_metrics_server__port_in_use__one_line_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"config.metrics_port: 127.0.0.1:{port} is already in use"):
            MetricsServer(KeeperMetrics(), port)


def test_setup_logging__text_format__extras_on_one_line(capsys):
    import sys
    setup_logging("text", "INFO", stream=sys.stderr)
    logging.getLogger("netmargin.keeper").info("liquidation ok", extra={"account": "0xA", "gas": 1})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "liquidation ok" in err and "gas=1" in err


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_keeper_cli__signal_to_process_group__stops_cleanly_without_tracebacks(world, tmp_path, sig):
    """Ctrl-C in a terminal signals the whole process group, not only the keeper process."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from offchain.paths import REPO_ROOT

    w = world
    signer = write_keyfile(w["signer"], tmp_path / "signer.json", "pw")
    gas = write_keyfile(w["dev"].accounts[4], tmp_path / "gas.json", "pw")
    config = tmp_path / "keeper.json"
    config.write_text(json.dumps({
        "rpc_url": w["dev"].url, "engine_address": w["dep"].engine.address,
        "data_dir": str(tmp_path / "state"), "log_format": "text", "poll_interval_s": 0.2,
        "signers": [{"source": f"keyfile:{signer}", "passphrase_env": "OPS_PW"}],
        "gas_key": {"source": f"keyfile:{gas}", "passphrase_env": "OPS_PW"},
        "prices": {"kind": "http", "url": w["feed"].url, "json_path": "data.amount"}}))
    env = {**os.environ, "OPS_PW": "pw", "PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "keeper", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
        deadline = time.monotonic() + 90
        while "cycle" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        os.killpg(proc.pid, getattr(signal, sig))
        assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert "keeper stopped" in text and "Traceback" not in text and "KeyboardInterrupt" not in text


def test_keeper_once__price_feed_down__exits_1_with_the_alarm_reason(world, tmp_path, monkeypatch, capsys):
    w = world
    monkeypatch.setenv("OPS_PW", "pw")
    signer = write_keyfile(w["signer"], tmp_path / "signer.json", "pw")
    gas = write_keyfile(w["dev"].accounts[5], tmp_path / "gas.json", "pw")
    config = tmp_path / "keeper.json"
    config.write_text(json.dumps({
        "rpc_url": w["dev"].url, "engine_address": w["dep"].engine.address,
        "data_dir": str(tmp_path), "log_format": "text",
        "signers": [{"source": f"keyfile:{signer}", "passphrase_env": "OPS_PW"}],
        "gas_key": {"source": f"keyfile:{gas}", "passphrase_env": "OPS_PW"},
        "prices": {"kind": "http", "url": "http://127.0.0.1:1/spot/{underlying}",
                   "json_path": "data.amount", "timeout_s": 0.5}}))
    assert main(["keeper", "--config", str(config), "--once"]) == 1
    err = capsys.readouterr().err
    alarm = next(line for line in err.splitlines() if "health alarm" in line)
    assert "price feed http://127.0.0.1:1/spot/BTC" in alarm and "Traceback" not in err

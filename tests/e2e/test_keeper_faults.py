"""Keeper faults on a real Anvil: a bad price print, a silent price source, the RPC going
down and coming back, a competitor liquidating first, the keeper killed mid-cycle and
restarted, a stuck transaction. In each: nothing
is signed on untrusted prices, the health alarm says why, no liquidation is missed once the
fault clears and no epoch gets two roots.

Cycles are driven by the test (not the keeper's thread) so every fault lands between two
known cycles. Tests run in file order and share one chain.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

import pytest

from offchain.chain.contracts import WAD, call_named
from offchain.chain.witness import liquidation_witness
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.keeper.bot import Keeper
from offchain.keeper.config import GasConfig, KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.prices import ReplaySource, parse_date
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params

T0 = parse_date("2020-03-10", "t0")
PERP = 1


class FaultySource:
    """The replay source with injected faults: a factor on every spot (a bad print) or an
    outage (every read raises)."""

    def __init__(self, inner: ReplaySource):
        self.inner = inner
        self.underlyings = inner.underlyings
        self.spot_factor = 1.0
        self.down = False

    def spot(self, t):
        if self.down:
            raise ConnectionError("price feed unreachable")
        return self.inner.spot(t) * self.spot_factor

    def vol(self, t):
        return self.inner.vol(t)


class SwitchableProxy:
    """A TCP forwarder in front of Anvil that can drop and refuse connections: the RPC as
    the keeper sees it going down and coming back."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.up = True
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def set_up(self, up: bool):
        self.up = up
        if not up:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
            self.conns.clear()

    def close(self):
        self.server.close()


def make_keeper(w, store_path=None, url=None, gas_key=None):
    from web3 import HTTPProvider, Web3

    from offchain.chain.contracts import connect

    cfg = KeeperConfig(rpc_url=url or w["dev"].url, engine_address=w["dep"].engine.address,
                       data_dir=str(w["tmp"]), price_max_age_s=3600, price_max_jump_frac=0.5, price_confirm_cycles=3,
                       gas=GasConfig(max_retries=2, backoff_base_s=0.05, backoff_max_s=0.1))
    w3 = Web3(HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 5}))
    dep = connect(w3, cfg.engine_address)
    keeper = Keeper(cfg, dep, w["signers"], Executor(w3, gas_key or w["keeper_gas"], cfg.gas),
                    StateStore(store_path or ":memory:"), w["params"], w["source"])
    keeper.startup()
    return keeper


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    dev = start_anvil(accounts=8, timestamp=T0)
    a = dev.accounts
    admin, dealer, keeper_gas, trader, rival = a[0], a[1], a[2], a[3], a[4]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [a[5].address], 1, params, EngineSettings())
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"}])
    late = a[7]  # opens a book just before the keeper is killed
    for who, amount in ((keeper_gas, 5_000_000), (dealer, 5_000_000), (rival, 5_000_000), (trader, 3_500),
                        (late, 50_000)):
        fund(dep, admin, who, amount)
    signers = Signers([a[5]])
    w = dict(dev=dev, dep=dep, admin=admin, dealer=dealer, keeper_gas=keeper_gas, trader=trader,
             rival=rival, late=late, spare_gas=a[6], signers=signers, params=params, tmp=tmp,
             source=FaultySource(ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})))
    w["keeper"] = make_keeper(w, store_path=tmp / "keeper.sqlite")
    w["keeper"].cycle()  # first marks and rates
    # the trader goes ~2.3x long one BTC perp against the dealer, at the posted mark: solvent
    # but below MM at the 2020-03-12 low (equity ~430, MM ~800)
    now = dev.w3.eth.get_block("latest")["timestamp"]
    mark = int(round(w["keeper"].posted_marks[PERP - 1] * WAD))
    order = Order(trader.address, PERP, True, WAD, mark, 1, now + 86_400)
    sig = sign_order(order, engine_domain(dev.w3.eth.chain_id, dep.engine.address), trader)
    send(dev.w3, dealer, dep.engine.functions.fill(order.as_tuple(), sig, WAD), "fill")
    yield w
    dev.stop()


def step(w, seconds=600, keeper=None):
    """Chain time moves on one block; one keeper cycle."""
    now = w["dev"].w3.eth.get_block("latest")["timestamp"]
    w["dev"].mine(now + seconds)
    return (keeper or w["keeper"]).cycle()


def logs(w, contract, name, from_block):
    return getattr(getattr(w["dep"], contract).events, name)().get_logs(from_block=from_block)


def signed_since(w, block):
    """Every message the keeper's signers got on chain since `block`."""
    return (logs(w, "oracle", "MarketDataPosted", block) + logs(w, "oracle", "IndexPriceUpdated", block)
            + logs(w, "oracle", "RootPosted", block))


def test_keeper__normal_cycle__roots_the_new_book_and_is_healthy(world):
    w = world
    report = step(w)
    assert report.held == "" and report.epoch >= 1 and report.leaves >= 2
    ok, status = w["keeper"].metrics.health(max_lag_blocks=5, max_cycle_age_s=60)
    assert ok, status


def test_keeper__20x_bad_print__signs_nothing_and_raises_health_alarm(world):
    w = world
    w["source"].spot_factor = 20.0
    block = w["dev"].w3.eth.block_number + 1
    reports = [step(w) for _ in range(2)]
    assert all(r.held.startswith("price outlier: BTC +19") for r in reports), [r.held for r in reports]
    assert signed_since(w, block) == []
    ok, status = w["keeper"].metrics.health(max_lag_blocks=5, max_cycle_age_s=60)
    assert not ok and status["reason"].startswith("price outlier")
    assert w["keeper"].metrics.price_alarm._value.get() == 1


def test_keeper__bad_print_gone__signs_again_alarm_cleared(world):
    w = world
    w["source"].spot_factor = 1.0
    report = step(w, seconds=3_600)
    assert report.held == "" and report.posted_prices
    assert w["keeper"].metrics.health(max_lag_blocks=5, max_cycle_age_s=60)[0]


def test_keeper__silent_source__holds_then_resumes(world):
    w = world
    w["source"].down = True
    block = w["dev"].w3.eth.block_number + 1
    report = step(w)
    assert report.held.startswith("price source silent: ConnectionError") and signed_since(w, block) == []
    w["source"].down = False
    assert step(w, seconds=3_600).held == ""


def test_keeper__rpc_down_and_back__cycle_fails_loudly_then_catches_up(world):
    w = world
    proxy = SwitchableProxy(int(w["dev"].url.rsplit(":", 1)[1]))
    try:
        keeper = make_keeper(w, url=proxy.url, gas_key=w["spare_gas"])  # its own nonces
        proxy.set_up(False)
        with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises, run_forever counts it
            step(w, keeper=keeper)
        proxy.set_up(True)
        down_at = w["dev"].w3.eth.block_number
        report = step(w, keeper=keeper)
        assert report.block == down_at + 1 and report.held == ""  # the block mined while it was back
    finally:
        proxy.close()


def test_keeper__crash_with_competitor_first__no_error_loop_no_missed_liquidation(world):
    """2020-03-12 16:00, the crash low: the trader's long falls below MM. A rival liquidates
    a slice first (the keeper's liquidations are off while it steps the marks down, so the
    rival wins the race); the keeper then takes what is left to restore the account, and a
    liquidation the rival made pointless is skipped with its reason, never retried in a loop."""
    w, trader = world, world["trader"]
    keeper = w["keeper"]
    policy = keeper.policy
    keeper.policy = replace(policy, liquidate=False)
    w["dev"].mine(parse_date("2020-03-12", "crash") + 16 * 3_600)
    for _ in range(6):  # the keeper steps the marks down within the oracle's bound
        keeper.cycle()
        if call_named(w["dep"].engine, "health", trader.address)["liquidatable"]:
            break
        w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 1)
    assert call_named(w["dep"].engine, "health", trader.address)["liquidatable"]
    nonce = w["dep"].engine.functions.state_nonce(trader.address).call()
    # the rival builds its own witness: the book on chain, the keeper's published epoch
    book = [(p[0], p[1]) for p in call_named(w["dep"].engine, "account", trader.address)["positions"]]
    witness = liquidation_witness(keeper.params, w["dep"].engine.address, book, keeper.trees, keeper.root_ts)
    send(w["dev"].w3, w["rival"],
         w["dep"].engine.functions.liquidate(trader.address, WAD // 10, 10**30, nonce, witness.encode()),
         "rival liquidation")
    keeper.policy = policy

    w["dev"].mine(w["dev"].w3.eth.get_block("latest")["timestamp"] + 1)
    report = keeper.cycle()  # raises on any error it cannot absorb

    assert all(e["ok"] or e["error"] for e in report.liquidated)
    assert not call_named(w["dep"].engine, "health", trader.address)["liquidatable"]
    liquidators = [e["args"]["liquidator"] for e in logs(w, "engine", "Liquidation", 0)]
    assert liquidators[0] == w["rival"].address
    assert w["keeper_gas"].address in liquidators  # what the rival left, the keeper took


def test_keeper__killed_mid_cycle_then_restarted__one_root_for_the_epoch(world):
    """The keeper dies after signing a root, before sending it; a new process on the same
    store resumes at the last processed block, builds the epoch again and posts it once:
    one root, holding the new book at its state nonce."""
    w, late = world, world["late"]
    w3 = w["dev"].w3
    now = w3.eth.get_block("latest")["timestamp"]
    mark = int(round(w["keeper"].posted_marks[PERP - 1] * WAD))
    order = Order(late.address, PERP, True, WAD // 10, mark, 1, now + 86_400)
    sig = sign_order(order, engine_domain(w3.eth.chain_id, w["dep"].engine.address), late)
    send(w3, w["dealer"], w["dep"].engine.functions.fill(order.as_tuple(), sig, order.size_wad), "fill")
    nonce = w["dep"].engine.functions.state_nonce(late.address).call()
    block = w3.eth.block_number + 1
    old = w["keeper"]
    real_send_batch = old.executor.send_batch

    def killed_before_sending_the_root(calls):
        if any(label == "root" for label, _ in calls):
            raise KeyboardInterrupt("keeper killed mid-cycle")
        return real_send_batch(calls)

    old.executor.send_batch = killed_before_sending_the_root
    w["dev"].mine(now + 60)
    with pytest.raises(KeyboardInterrupt):
        old.cycle()
    assert logs(w, "oracle", "RootPosted", block) == []

    again = make_keeper(w, store_path=w["tmp"] / "keeper.sqlite")
    again.cycle()
    again.cycle()   # nothing changed since: no second root

    (root,) = logs(w, "oracle", "RootPosted", block)
    assert root["args"]["epoch"] == again.epoch
    assert again.proof(late.address)["leaf"]["state_nonce"] == nonce


def test_executor__stuck_transaction__replaced_at_same_nonce_with_higher_fee(world):
    """Automine off: the keeper's transaction sits in the mempool, is replaced at the same
    nonce with bumped fees, and exactly one transaction of that nonce is mined."""
    w = world
    w3 = w["dev"].w3
    gas = GasConfig(bump_after_s=0.3, bump_pct=15)
    executor = Executor(w3, w["spare_gas"], gas)
    nonce = w3.eth.get_transaction_count(w["spare_gas"].address)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        miner = threading.Timer(1.5, lambda: w3.provider.make_request("evm_mine", []))
        miner.start()
        res = executor.send("approve", w["dep"].token.functions.approve(w["dealer"].address, 1))
        miner.join()
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert res.ok, res.error
    mined = w3.eth.get_transaction(res.tx_hash)
    assert mined["nonce"] == nonce and mined["maxPriorityFeePerGas"] > 10**9  # bumped from 1 gwei
    assert w3.eth.get_transaction_count(w["spare_gas"].address) == nonce + 1


def test_keeper__anvil_restarted_from_its_state__resumes_and_signs_again(tmp_path):
    """The node is stopped (Anvil dumps its state) and restarted from that state on the same
    port: the keeper's cycle fails while it is down, then resumes at the block it had reached
    and posts signed prices again on the restored chain."""
    state = tmp_path / "anvil-state.json"
    dev = start_anvil(accounts=4, timestamp=T0, extra_args=("--state", str(state)))
    port = int(dev.url.rsplit(":", 1)[1])
    a = dev.accounts
    params = load_params()
    dep = deploy_system(dev.w3, a[0], [a[3].address], 1, params, EngineSettings())
    list_instruments(dep, a[0], [{"underlying": "BTC", "kind": "perpetual"}])
    signers = Signers([a[3]])
    w = dict(dev=dev, dep=dep, signers=signers, keeper_gas=a[1], params=params, tmp=tmp_path,
             source=FaultySource(ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})))
    try:
        keeper = make_keeper(w)
        assert keeper.cycle().posted_prices
        reached = keeper.indexer.cursor()
        last = dev.w3.eth.get_block("latest")
        dev.stop()
        with pytest.raises(Exception):  # noqa: B017 - the node is gone: the cycle fails loudly
            keeper.cycle()
        dev = w["dev"] = start_anvil(accounts=4, port=port, extra_args=("--state", str(state)))
        assert dev.w3.eth.get_block(last["number"])["hash"] == last["hash"]  # same chain
        # a restored Anvil checks evm_setNextBlockTimestamp against the wall clock: set its clock
        dev.w3.provider.make_request("anvil_setTime", [last["timestamp"] + 4_000])  # prices age out
        dev.mine()
        report = keeper.cycle()
        assert report.block > reached and keeper.indexer.cursor() >= reached
        assert report.held == "" and report.posted_prices
    finally:
        w["dev"].stop()

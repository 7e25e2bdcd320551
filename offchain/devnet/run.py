"""`netmargin devnet`: a local chain with everything on it, running until stopped.

    net = start_devnet(DevnetOptions(prices="replay", start="2020-03-05", speed=600))
    ... net.api_url, net.deployment ...
    net.stop()

It starts Anvil (persistent until stopped), deploys the system, lists the standard instrument
chain around spot, funds the test wallets from the token's faucet (mint), starts the keeper
against a price source (the shipped history replayed on an accelerated chain clock, or a live
fat-tailed random walk calibrated on it starting today), has a dealer quote every live
instrument on the order book, serves the API and the web app, and writes deployment.json.

Accounts (Anvil's well-known test mnemonic, devnet only): 0 owner, 1 dealer, 2 keeper gas and
liquidator, 3-4 oracle signers (2 of 2, each bonded in SignerBond from the token's faucet), 5..
test wallets.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from eth_account.signers.local import LocalAccount

from offchain.api.app import create_app
from offchain.api.context import ApiContext
from offchain.api.market import MarketCache
from offchain.api.orderbook import OrderBook
from offchain.chain.contracts import WAD, Deployment, abis
from offchain.chain.orders import (
    ENGINE_DOMAIN_NAME,
    ENGINE_DOMAIN_VERSION,
    EngineDomain,
    Order,
    sign_order,
)
from offchain.devnet.anvil import Devnet, start_anvil
from offchain.devnet.deploy import (
    TOKEN_DECIMALS,
    EngineSettings,
    deploy_system,
    fund,
    list_instruments,
    send,
)
from offchain.devnet.standard_chain import UNDERLYINGS, standard_specs
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig, PriceSourceConfig
from offchain.keeper.executor import Executor
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.random_walk import RandomWalkSource
from offchain.keeper.signing import Signers
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params

log = logging.getLogger("netmargin.devnet")

OWNER, DEALER, KEEPER, SIGNER_A, SIGNER_B, FIRST_WALLET = 0, 1, 2, 3, 4, 5
# the dealer quotes this far either side of the oracle's mark, this size, for this long
DEALER_SPREAD = 0.01
DEALER_SIZE = {"BTC": 5.0, "ETH": 50.0}
DEALER_QUOTE_LIFE_S = 6 * 3600
# wall seconds a keeper cycle may take between signing and its transactions landing: on the
# accelerated clock the chain moves `speed` seconds per wall second, so a validity of the
# keeper's usual 600 chain seconds lapses within one tick at the replay's 600x, and a cycle
# that straddles a tick (a loaded machine) had every post refused as "deadline passed"
KEEPER_LAG_WALL_S = 20


@dataclass(frozen=True)
class DevnetOptions:
    prices: str = "replay"          # "replay" (history on an accelerated clock) or "live"
    start: str = "2020-03-05"       # replay: first day (the March 2020 crash follows)
    speed: float = 600.0            # chain seconds per wall-clock second
    block_interval_s: float = 1.0   # the clock mines a block this often (wall seconds)
    host: str = "127.0.0.1"
    rpc_port: int = 8545
    api_port: int = 8000
    out: Path = Path(".devnet")
    wallets: int = 4
    faucet: float = 1_000_000.0     # settlement tokens minted to each test wallet
    seed: int = 7
    clock: bool = True              # False: the caller moves the chain clock (tests)
    serve: bool = True              # False: no HTTP server (tests use the app directly)
    dealer: bool = True             # the dealer quotes every live instrument
    keeper_poll_s: float = 0.2

    def signature_validity_s(self) -> int:
        """How long (chain seconds) the devnet keeper's signed messages stay valid: its usual
        validity, or KEEPER_LAG_WALL_S of wall time on the accelerated clock if longer."""
        return max(KeeperConfig.signature_validity_s, int(self.speed * KEEPER_LAG_WALL_S))

    def check(self) -> None:
        if self.prices not in ("replay", "live"):
            raise UserError(f"--prices: must be 'replay' or 'live', got {self.prices!r}")
        if not 1.0 <= self.speed <= 86_400:
            raise UserError(f"--speed: must be between 1 and 86400 chain seconds per second, got {self.speed}")
        if not 0.05 <= self.block_interval_s <= 60:
            raise UserError(f"--block-interval: must be between 0.05 and 60 s, got {self.block_interval_s}")
        if not 1 <= self.wallets <= 20:
            raise UserError(f"--wallets: must be between 1 and 20, got {self.wallets}")
        for name in ("rpc_port", "api_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise UserError(f"--{name.replace('_', '-')}: must be a TCP port, got {port}")


@dataclass
class RunningDevnet:
    options: DevnetOptions
    anvil: Devnet
    dep: Deployment
    keeper: Keeper
    source: object
    wallets: list[LocalAccount]
    dealer: LocalAccount
    deployment: dict
    ctx: ApiContext
    api_url: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    server: uvicorn.Server | None = None
    signers: Signers | None = None
    _dealer_nonce: int = 0
    _quoted_until: int = 0

    @property
    def rpc_url(self) -> str:
        return self.anvil.url

    def start_keeper(self) -> None:
        self._thread(self.keeper.run_forever, self.stop_event, name="keeper")

    def start_clock(self) -> None:
        self._thread(self._clock, name="clock")

    def _thread(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=f"devnet-{name}", daemon=True)
        t.start()
        self.threads.append(t)

    def _clock(self) -> None:
        """Mine a block every block_interval_s; replay: each one speed x interval later in chain
        time, held at the end of the history."""
        o = self.options
        step = max(1, int(round(o.speed * o.block_interval_s)))
        while not self.stop_event.wait(o.block_interval_s):
            try:
                if o.prices == "replay" or o.speed > 1:
                    last = int(self.anvil.w3.eth.get_block("latest")["timestamp"])
                    target = last + step
                    if o.prices == "replay" and target > self.source.last:
                        continue  # the history ends here; the chain waits
                    self.anvil.mine(target)
                else:
                    self.anvil.mine()
                if o.dealer:
                    self.quote()
            except Exception as exc:  # noqa: BLE001 - keep the clock going; log why
                if not self.stop_event.is_set():
                    log.warning("clock: %s", str(exc)[:200])

    def quote(self, force: bool = False) -> int:
        """The dealer posts a bid and an ask on every live instrument around the oracle's mark,
        valid DEALER_QUOTE_LIFE_S, renewed when half of that has passed. Returns orders posted."""
        snap = self.ctx.market.get()
        if not force and snap.now < self._quoted_until - DEALER_QUOTE_LIFE_S // 2:
            return 0
        domain = self.ctx.orders.domain
        self.ctx.orders.delist(self.dealer.address)
        posted = 0
        for i in range(len(snap.table)):
            mark = snap.marks[i]
            if not (snap.live[i] and snap.table.active[i] and mark == mark and mark > 0):
                continue
            size = DEALER_SIZE.get(snap.underlyings[int(snap.table.underlying_index[i])], 1.0)
            for is_buy, price in ((True, mark * (1 - DEALER_SPREAD)), (False, mark * (1 + DEALER_SPREAD))):
                self._dealer_nonce += 1
                order = Order(self.dealer.address, int(snap.table.ids[i]), is_buy, int(size * WAD),
                              int(price * WAD), self._dealer_nonce, snap.now + DEALER_QUOTE_LIFE_S)
                sig = sign_order(order, domain, self.dealer)
                self.ctx.orders.add(order_body(order), "0x" + sig.hex(), snap)
                posted += 1
        self._quoted_until = snap.now + DEALER_QUOTE_LIFE_S
        return posted

    def serve(self) -> None:
        o = self.options
        app = create_app(self.ctx)
        config = uvicorn.Config(app, host=o.host, port=o.api_port, log_level="warning", access_log=False,
                                lifespan="off")
        self.threads.append(self.ctx.market.follow(self.stop_event))
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the command owns Ctrl-C
        self._thread(self.server.run, name="api")
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.threads[-1].is_alive():
                raise UserError(f"--api-port: the API did not start on {o.host}:{o.api_port} "
                                "(port in use?)")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1] if o.api_port == 0 else o.api_port
        self.api_url = f"http://{o.host}:{port}"
        self.deployment["api_url"] = self.api_url

    def stop(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.should_exit = True
        for t in self.threads:
            t.join(timeout=10)
        self.keeper.store.close()
        self.anvil.stop()


def order_body(order: Order) -> dict:
    return {"account": order.account, "instrument_id": order.instrument_id, "is_buy": order.is_buy,
            "size_wad": str(order.size_wad), "limit_price_wad": str(order.limit_price_wad),
            "order_nonce": str(order.order_nonce), "deadline": order.deadline}


def make_source(options: DevnetOptions):
    vols = PriceSourceConfig().vols
    if options.prices == "replay":
        source = ReplaySource(DATA_DIR, list(UNDERLYINGS), vols)
        t0 = parse_date(options.start, "--start")
        source.check_range(t0, t0 + DAY)
        return source, t0
    t0 = int(time.time())
    return RandomWalkSource(DATA_DIR, list(UNDERLYINGS), vols, start=t0, seed=options.seed), t0


def start_devnet(options: DevnetOptions = DevnetOptions(), progress=print) -> RunningDevnet:
    options.check()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    source, t0 = make_source(options)
    progress(f"anvil: starting on port {options.rpc_port or '(free)'} ...")
    anvil = start_anvil(accounts=FIRST_WALLET + options.wallets,
                        timestamp=t0 if options.prices == "replay" else None,
                        port=options.rpc_port or None, log_path=out / "anvil.log",
                        extra_args=("--host", options.host))
    try:
        return _bring_up(options, out, source, t0, anvil, progress)
    except BaseException:
        anvil.stop()
        raise


def _bring_up(options, out, source, t0, anvil: Devnet, progress) -> RunningDevnet:
    a = anvil.accounts
    owner, dealer, keeper_gas = a[OWNER], a[DEALER], a[KEEPER]
    signer_keys = [a[SIGNER_A], a[SIGNER_B]]
    wallets = a[FIRST_WALLET:]
    params = load_params()
    progress("deploying contracts and the standard instrument chain ...")
    deploy_block = anvil.w3.eth.block_number + 1
    dep = deploy_system(anvil.w3, owner, [k.address for k in signer_keys], 2, params, EngineSettings(),
                        signer_keys=signer_keys)
    spot = source.spot(t0)
    specs = standard_specs(dict(zip(UNDERLYINGS, map(float, spot), strict=True)), t0)
    ids = list_instruments(dep, owner, specs)
    fund(dep, owner, keeper_gas, 20_000_000)
    fund(dep, owner, dealer, 50_000_000)
    units = 10**6 * 10**TOKEN_DECIMALS
    send(anvil.w3, owner, dep.token.functions.mint(owner.address, units), "mint")
    send(anvil.w3, owner, dep.token.functions.approve(dep.engine.address, units), "approve")
    send(anvil.w3, owner, dep.engine.functions.fund_insurance(100_000 * 10**TOKEN_DECIMALS), "fund_insurance")
    for w in wallets:
        fund(dep, owner, w, options.faucet, deposit=False)

    store_path = out / "keeper.sqlite"
    for stale in (store_path, Path(f"{store_path}-wal"), Path(f"{store_path}-shm")):
        stale.unlink(missing_ok=True)  # a new chain: the old store describes another one
    shutil.rmtree(out / "roots", ignore_errors=True)  # and the old epoch files another engine
    cfg = KeeperConfig(rpc_url=anvil.url, engine_address=dep.engine.address, data_dir=str(out),
                       start_block=deploy_block, poll_interval_s=options.keeper_poll_s,
                       signature_validity_s=options.signature_validity_s())
    signers = Signers(signer_keys)
    keeper = Keeper(cfg, dep, signers, Executor(anvil.w3, keeper_gas, cfg.gas), StateStore(store_path),
                    params, source)
    progress("keeper: first prices ...")
    keeper.startup()
    keeper.cycle()

    chain_id = anvil.w3.eth.chain_id
    deployment = deployment_document(dep, anvil, chain_id, specs, ids, wallets, options, t0, deploy_block)
    ctx = ApiContext(dep=dep, params=params,
                     market=MarketCache(dep, params, list(UNDERLYINGS), source.vol),
                     orders=OrderBook(dep, chain_id), store_path=store_path, deployment=deployment,
                     proofs=keeper.proof)
    net = RunningDevnet(options, anvil, dep, keeper, source, list(wallets), dealer, deployment, ctx,
                        signers=signers)
    if options.dealer:
        net.quote(force=True)
    if options.serve:
        net.serve()
    (out / "deployment.json").write_text(json.dumps(deployment, indent=1))
    return net


def deployment_document(dep: Deployment, anvil: Devnet, chain_id: int, specs: list[dict], ids: list[int],
                        wallets: list[LocalAccount], options: DevnetOptions, t0: int, block: int) -> dict:
    a = abis()
    # the signers' bond, the fraud proofs that slash it and the verifier they (and
    # liquidations) re-price with: where a watcher or a challenger finds them
    contracts = {name: {"address": getattr(dep, key).address, "abi": a[abi_name]}
                 for name, key, abi_name in (("engine", "engine", "MarginEngine"), ("oracle", "oracle", "RiskOracle"),
                                             ("registry", "registry", "InstrumentRegistry"),
                                             ("token", "token", "MockERC20"),
                                             ("signer_bond", "signer_bond", "SignerBond"),
                                             ("fraud_proofs", "fraud_proofs", "FraudProofs"),
                                             ("verifier", "verifier", "ScenarioVerifier"))
                 if getattr(dep, key) is not None}
    domain = EngineDomain(chain_id, dep.engine.address)
    return {
        "chain_id": chain_id,
        "rpc_url": anvil.url,
        "api_url": "",
        "deploy_block": block,
        "contracts": contracts,
        "token": {"symbol": "nUSD", "decimals": TOKEN_DECIMALS},
        "wad": str(WAD),
        "order_eip712": {
            "domain": {**domain.as_dict(), "name": ENGINE_DOMAIN_NAME, "version": ENGINE_DOMAIN_VERSION},
            "types": {"Order": [{"name": n, "type": t} for n, t in Order.FIELDS]},
            "primaryType": "Order",
        },
        "instruments": [{"instrument_id": i, **s} for i, s in zip(ids, specs, strict=True)],
        "price_source": {"kind": options.prices, "start": t0, "speed": options.speed},
        # Anvil's well-known test keys: public, for this local devnet only
        "test_wallets": [{"address": w.address, "private_key": "0x" + bytes(w.key).hex()} for w in wallets],
        "roles": {"owner": anvil.accounts[OWNER].address, "dealer": anvil.accounts[DEALER].address,
                  "keeper": anvil.accounts[KEEPER].address,
                  "signers": [anvil.accounts[i].address for i in (SIGNER_A, SIGNER_B)]},
    }

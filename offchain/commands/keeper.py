"""`netmargin keeper --config FILE`: run the keeper bot until interrupted.

Keys come from the config (`ape:<alias>` or `keyfile:<path>`, passphrases from environment
variables); there is deliberately no option to pass a key on the command line.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="keeper config (.toml or .json)")
    parser.add_argument("--dry-run", action="store_true", help="compute and log, send nothing")
    parser.add_argument("--once", action="store_true", help="run one cycle and exit")


def run(args) -> int:
    from dataclasses import replace

    from web3 import HTTPProvider, Web3

    from offchain.chain.contracts import connect
    from offchain.errors import UserError
    from offchain.keeper.bot import Keeper
    from offchain.keeper.config import load_config
    from offchain.keeper.executor import Executor
    from offchain.keeper.keys import load_key
    from offchain.keeper.logs import setup_logging
    from offchain.keeper.metrics import KeeperMetrics, MetricsServer
    from offchain.keeper.prices import ReplaySource
    from offchain.keeper.signing import Signers
    from offchain.keeper.store import StateStore
    from offchain.risk import load_params

    cfg = load_config(args.config)
    if args.dry_run:
        cfg = replace(cfg, dry_run=True)
    setup_logging(cfg.log_format, cfg.log_level)
    if not cfg.engine_address:
        raise UserError("config.engine_address: missing; set it to the MarginEngine address")
    if not cfg.signers:
        raise UserError("config.signers: empty; list at least one oracle signing key")
    w3 = Web3(HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise UserError(f"config.rpc_url: no node answers at {cfg.rpc_url}; start one or fix the URL")
    dep = connect(w3, cfg.engine_address, cfg.oracle_address, cfg.registry_address, cfg.token_address)
    signers = Signers([load_key(s, f"signers[{i}]") for i, s in enumerate(cfg.signers)])
    gas = load_key(cfg.gas_key, "gas_key")
    source = None
    if cfg.prices.kind == "replay":
        source = ReplaySource(cfg.prices.data_dir, ["BTC", "ETH"], cfg.prices.vols)
    params = load_params()
    onchain = "0x" + dep.oracle.functions.params_hash().call().hex()
    if onchain != params.hash:
        raise UserError(f"risk params: the oracle expects {onchain}, this keeper computes with "
                        f"{params.hash} ({params.label}); deploy matching parameters")
    store = StateStore(Path(cfg.data_dir) / f"keeper-{w3.eth.chain_id}-{dep.engine.address}.sqlite")
    metrics = KeeperMetrics()
    executor = Executor(w3, gas, cfg.gas, cfg.dry_run,
                        on_error=lambda label, err: metrics.errors.labels(kind="tx").inc())
    keeper = Keeper(cfg, dep, signers, executor, store, params, source, metrics)
    server = MetricsServer(metrics, cfg.metrics_port).start() if cfg.metrics_port else None
    try:
        keeper.startup()
        if args.once:
            keeper.cycle()
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        keeper.run_forever(stop)
        return 0
    finally:
        signers.close()
        store.close()
        if server:
            server.stop()

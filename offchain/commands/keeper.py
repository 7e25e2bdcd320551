"""`netmargin keeper --config FILE`: run the keeper bot until interrupted (docs/keeper.md).

Keys come from the config (`ape:<alias>` or `keyfile:<path>`, passphrases from environment
variables); there is deliberately no option to pass a key on the command line. Ctrl-C or
SIGTERM finishes the current cycle and exits 0; under `--once` the exit code is 1 when the
keeper's health alarm is raised at the end of the cycle (the reason is logged).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

DESCRIPTION = """\
Run the keeper: each new block it reads the engine's events, prices every instrument from
its price source (historical replay, a live HTTP feed, or the marks other signers post),
recomputes every account's margin, and posts marks, rates, index and settlement prices,
epoch roots, liquidations and settlements. One log line per transaction; Prometheus
metrics and /health on metrics_port; Ctrl-C or SIGTERM finishes the cycle and exits.
State lives in data_dir (default .keeper/). Operating guide: docs/keeper.md."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True,
                        help="keeper settings, .toml or .json (start from examples/keeper.toml)")
    parser.add_argument("--dry-run", action="store_true",
                        help="compute and log every action, send no transaction")
    parser.add_argument("--once", action="store_true",
                        help="run one cycle and exit: 0 if healthy, 1 with the alarm's reason")


def run(args) -> int:
    import logging
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
    from offchain.keeper.prices import make_source
    from offchain.keeper.signing import Signers
    from offchain.keeper.store import StateStore
    from offchain.risk import load_params

    # Ctrl-C before the loop (while loading keys or reading the chain) exits quietly too
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cfg = load_config(args.config)
    if args.dry_run:
        cfg = replace(cfg, dry_run=True)
    setup_logging(cfg.log_format, cfg.log_level)
    log = logging.getLogger("netmargin.keeper")
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
    source = make_source(cfg.prices)
    params = load_params()
    onchain = "0x" + dep.oracle.functions.params_hash().call().hex()
    if onchain != params.hash:
        raise UserError(f"risk params: the oracle expects {onchain}, this keeper computes with "
                        f"{params.hash} ({params.label}); deploy matching parameters")
    store = StateStore(Path(cfg.data_dir) / f"keeper-{w3.eth.chain_id}-{dep.engine.address}.sqlite")
    metrics = KeeperMetrics()
    executor = Executor(w3, gas, cfg.gas, cfg.dry_run,
                        on_error=lambda label, err: metrics.errors.labels(kind="tx").inc())
    spares = [Executor(w3, load_key(s, f"liquidator_keys[{i}]"), cfg.gas, cfg.dry_run,
                       on_error=lambda label, err: metrics.errors.labels(kind="tx").inc())
              for i, s in enumerate(cfg.liquidator_keys)]
    seen = [gas.address, *(e.account.address for e in spares)]
    for i, e in enumerate(spares):
        if seen.index(e.account.address) != i + 1:
            raise UserError(f"config.liquidator_keys[{i}]: {e.account.address} is already the gas key or "
                            f"another spare (each account needs its own key: one nonce sequence each)")
    keeper = Keeper(cfg, dep, signers, executor, store, params, source, metrics, liquidators=spares)
    server = None
    try:
        if cfg.metrics_port:
            server = MetricsServer(metrics, cfg.metrics_port, proofs=keeper.proof).start()
        keeper.startup()
        if args.once:
            keeper.cycle()
            ok, status = metrics.health(max_lag_blocks=5, max_cycle_age_s=float("inf"))
            if not ok:
                log.error("health alarm", extra=status)
                return 1
            return 0
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        keeper.run_forever(stop)
        log.info("keeper stopped", extra={"processed_block": keeper.indexer.cursor()})
        return 0
    except KeyboardInterrupt:
        log.info("keeper interrupted before its loop started")
        return 130
    finally:
        keeper.flush()   # the last epoch file on disk before exiting
        store.close()
        if server:
            server.stop()

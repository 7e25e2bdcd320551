"""`netmargin watch --config FILE`: rebuild every newly posted epoch root and alarm on the
first false leaf (docs/oracle.md, "Rebuilding a root")."""

from __future__ import annotations

import signal
import threading

DESCRIPTION = """\
Watch an engine's epoch roots: each root posted is rebuilt from the chain alone (as
`netmargin rebuild` does) and logged as a match or as FALSE, naming the first false leaf
(account, field, rebuilt and published figures) when a keeper's epoch files (epoch_dir) or
its /proof/<account> (keeper_url) are configured. Prometheus metrics and /health on
metrics_port, like the keeper: /health answers 503 once a false root is found (latched) or
when polling stalls. With challenger_key set, the first false leaf the chain accepts a fraud
proof for is challenged (FraudProofs commit, then `challenge` a block later: the epoch is
voided and the signers' bonds pay the challenger); without it the watcher only reports. Start from examples/watch.toml; every
field can be overridden by NETMARGIN_WATCH_<FIELD>."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="watcher settings, .toml or .json (examples/watch.toml)")
    parser.add_argument("--once", action="store_true",
                        help="check the roots posted so far (from start_epoch) and exit: 0 if all match, 1 if not")


def run(args) -> int:
    import logging

    from web3 import HTTPProvider, Web3

    from offchain.chain.contracts import connect
    from offchain.errors import UserError
    from offchain.keeper.logs import setup_logging
    from offchain.keeper.metrics import MetricsServer
    from offchain.watcher.config import load_watch_config
    from offchain.watcher.watch import Watcher, WatchMetrics

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cfg = load_watch_config(args.config)
    setup_logging(cfg.log_format, cfg.log_level)
    log = logging.getLogger("netmargin.watch")
    w3 = Web3(HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 60}))
    if not w3.is_connected():
        raise UserError(f"config.rpc_url: no node answers at {cfg.rpc_url}; start one or fix the URL")
    metrics = WatchMetrics()
    dep = connect(w3, cfg.engine_address)
    challenger = None
    if cfg.challenger_key.source:
        from offchain.keeper.keys import load_key
        from offchain.watcher.challenge import Challenger
        challenger = Challenger(cfg, dep, load_key(cfg.challenger_key, "config.challenger_key"), metrics)
    watcher = Watcher(cfg, dep, metrics, challenger)
    server = None
    try:
        if cfg.metrics_port:
            server = MetricsServer(metrics, cfg.metrics_port, max_cycle_age_s=cfg.max_check_age_s).start()
        watcher.start()
        if args.once:
            found = watcher.poll()
            return 0 if all(f.ok for f in found) else 1
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        watcher.run_forever(stop)
        log.info("watch stopped", extra={"epoch_checked": watcher.next_epoch - 1})
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if server:
            server.stop()

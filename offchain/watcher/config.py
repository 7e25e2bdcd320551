"""Watcher configuration: a dataclass read from TOML or JSON, then overridden by environment
variables `NETMARGIN_WATCH_<FIELD>` (the keeper's loader, another prefix; `__` for nested
fields, e.g. `NETMARGIN_WATCH_CHALLENGER_KEY__SOURCE`). With `challenger_key` set the watcher
sends a fraud proof against the first false leaf it can prove on chain; without one it only
reports. The key is named like the keeper's (`ape:<alias>` or `keyfile:<path>`, passphrase
from an environment variable), never given as a value."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from offchain.errors import UserError
from offchain.keeper.config import (
    LOG_LEVELS,
    GasConfig,
    KeySpec,
    _apply_env,
    _build,
    _get_dotted,
    _read_file,
    _redact,
    check_address,
    gas_checks,
)

ENV_PREFIX = "NETMARGIN_WATCH_"


@dataclass(frozen=True)
class WatchConfig:
    rpc_url: str = "http://127.0.0.1:8545"
    engine_address: str = ""
    # risk parameter file (bundled name or path); "" = the bundled set whose hash each root carries
    params: str = ""
    # a keeper's metrics port or the HTTP API (base URL): on a mismatch, its /proof/<account>
    # answers name the first false leaf; "" = roots only
    keeper_url: str = ""
    # a keeper's roots/ folder (epoch files): same use as keeper_url, and the state block and
    # market leaves of an epoch the chain has no EpochDataPublished log for
    epoch_dir: str = ""
    # first epoch to check (0 = from the latest root posted when the watcher starts)
    start_epoch: int = 0
    poll_interval_s: float = 2.0
    # /health answers 503 when no check finished for this long (a stuck or lost node)
    max_check_age_s: float = 600.0
    metrics_port: int = 9103
    log_format: str = "json"
    log_level: str = "INFO"
    # the key that sends challenges and receives the bond payout; unset: report only
    challenger_key: KeySpec = field(default_factory=KeySpec)
    # "" = the FraudProofs contract the oracle last named (its FraudContractsSet log)
    fraud_proofs_address: str = ""
    # a challenge whose gas estimate exceeds this is not sent (reported instead)
    challenge_gas_limit: int = 3_000_000
    # where the signed challenge is sent and its receipt awaited: "" = rpc_url; a private
    # transaction endpoint keeps the proof out of the public mempool, where a copier could
    # land it first and take the payout (FraudProofs pays msg.sender)
    challenge_rpc_url: str = ""
    # a challenge or commitment a crash left unresolved, with no receipt this many blocks
    # after it was sent, is failed at the next start (and tried again if its window is open)
    challenge_reconcile_blocks: int = 20
    # commit to a false leaf only while at least this many seconds of its challenge window are
    # left: the reveal comes in a later block and must land inside the window, else the
    # commitment is gas thrown away
    challenge_min_window_left_s: int = 60
    # a node that cannot estimate on its pending block: wait up to this long for the block
    # after the commit's before estimating the reveal on the latest block
    challenge_reveal_wait_s: float = 120.0
    # fees, retries and bumps of the challenge transaction (the keeper's [gas] table)
    gas: GasConfig = field(default_factory=GasConfig)
    # challenges.json (every (epoch, account) challenged and its outcome) lives here, so a
    # restarted watcher never challenges the same leaf twice
    data_dir: str = ".watch"


def load_watch_config(path: str | Path | None, env: typing.Mapping[str, str] | None = None) -> WatchConfig:
    raw: dict = _read_file(Path(path)) if path is not None else {}
    if not isinstance(raw, dict):
        raise UserError(f"config file {path}: must hold a table of settings, got {type(raw).__name__}")
    _apply_env(raw, os.environ if env is None else env, ENV_PREFIX)
    cfg = _build(WatchConfig, raw, "config")
    checks = [
        ("rpc_url", cfg.rpc_url.startswith(("http://", "https://")), "an http(s) URL"),
        ("engine_address", cfg.engine_address.startswith("0x") and len(cfg.engine_address) == 42,
         "a 0x-prefixed 20-byte address"),
        ("keeper_url", not cfg.keeper_url or cfg.keeper_url.startswith(("http://", "https://")),
         "an http(s) URL or empty"),
        ("start_epoch", cfg.start_epoch >= 0, ">= 0"),
        ("poll_interval_s", cfg.poll_interval_s > 0, "> 0"),
        ("max_check_age_s", cfg.max_check_age_s > 0, "> 0"),
        ("metrics_port", 0 <= cfg.metrics_port < 65536, "a TCP port or 0"),
        ("log_format", cfg.log_format in ("json", "text"), "'json' or 'text'"),
        ("challenge_rpc_url", not cfg.challenge_rpc_url or cfg.challenge_rpc_url.startswith(("http://", "https://")),
         "an http(s) URL or empty"),
        ("fraud_proofs_address", not cfg.fraud_proofs_address or (cfg.fraud_proofs_address.startswith("0x")
                                                                 and len(cfg.fraud_proofs_address) == 42),
         "a 0x-prefixed 20-byte address or empty"),
        ("challenge_gas_limit", cfg.challenge_gas_limit >= 100_000, ">= 100000 (a challenge costs up to ~600,000)"),
        ("challenge_reconcile_blocks", cfg.challenge_reconcile_blocks >= 1, ">= 1"),
        ("challenge_min_window_left_s", cfg.challenge_min_window_left_s >= 0, ">= 0"),
        ("challenge_reveal_wait_s", cfg.challenge_reveal_wait_s > 0, "> 0"),
        ("log_level", cfg.log_level.upper() in LOG_LEVELS, " or ".join(map(repr, LOG_LEVELS))),
        *gas_checks(cfg.gas),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise UserError(f"config.{name}: must be {expected}, got {_get_dotted(cfg, name)!r}")
    check_address("config.engine_address", cfg.engine_address)
    check_address("config.fraud_proofs_address", cfg.fraud_proofs_address)
    if Path(cfg.data_dir).exists() and not Path(cfg.data_dir).is_dir():
        raise UserError(f"config.data_dir: {cfg.data_dir!r} is a file, not a directory")
    source = cfg.challenger_key.source
    if source and not source.startswith(("ape:", "keyfile:")):
        raise UserError(f"config.challenger_key.source: must be 'ape:<alias>' or 'keyfile:<path>' (plain keys "
                        f"are not accepted), got {_redact(source)!r}")
    if source and not cfg.challenger_key.passphrase_env:
        raise UserError("config.challenger_key.passphrase_env: must name the environment variable holding the "
                        "keyfile passphrase (the watcher runs unattended, it never prompts)")
    if cfg.params:
        from offchain.risk import load_params
        try:
            load_params(cfg.params)
        except UserError as exc:
            # found at start, not at the first root's rebuild
            raise UserError(f"config.params: {str(exc).removeprefix('--params: ')}") from None
    if cfg.epoch_dir and not Path(cfg.epoch_dir).is_dir():
        raise UserError(f"config.epoch_dir: {cfg.epoch_dir!r} is not a directory")
    return cfg

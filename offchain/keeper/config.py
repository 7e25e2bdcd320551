"""Keeper configuration: a dataclass read from TOML or JSON, then overridden by environment.

Environment overrides use `NETMARGIN_KEEPER_<FIELD>` and `__` for nested sections, e.g.
`NETMARGIN_KEEPER_RPC_URL`, `NETMARGIN_KEEPER_GAS__BUMP_PCT=25`. Keys are never values in
the config: a key is named by `ape:<alias>` (an ape account keyfile) or `keyfile:<path>`
(an encrypted JSON keyfile), and its passphrase comes from an environment variable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eth_utils import is_hex_address

from offchain.errors import UserError
from offchain.paths import DATA_DIR

ENV_PREFIX = "NETMARGIN_KEEPER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Settings renamed when per-account margin attestations gave way to epoch roots (old name ->
# new name, what it sets). An old name is refused with its new one: silently ignoring it
# would run the keeper on a default the operator did not choose.
RENAMED = {
    "attest_move_frac": ("leaf_move_frac", "the fraction of its leaf's IM/MM an account's "
                         "margin may move before a new epoch root is due"),
    "attest_move_abs": ("leaf_move_abs", "the absolute IM/MM move from an account's leaf "
                        "(settlement units) below which no new epoch root is due"),
    "attest_max_age_s": ("root_max_age_s", "the epoch root's age that makes a heartbeat root due"),
    "attest_validity_s": ("signature_validity_s", "how long a signed root, market data or "
                          "price may be posted after signing"),
}


@dataclass(frozen=True)
class KeySpec:
    # "ape:<alias>" or "keyfile:<path>"; a raw private key is refused on purpose
    source: str = ""
    # name of the environment variable that holds the keyfile passphrase
    passphrase_env: str = ""


@dataclass(frozen=True)
class GasConfig:
    # attempts per transaction on RPC errors before giving up
    max_retries: int = 5
    # first backoff delay, doubled each retry, capped at backoff_max_s
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    # a transaction not mined after this long is replaced with a bumped fee
    bump_after_s: float = 12.0
    # replacement fee increase; nodes require >= 10%
    bump_pct: int = 15
    # never pay more than this per gas (gwei), bumps included
    max_fee_gwei: float = 500.0
    # gas limit used when estimation fails on a transaction we still want to try
    fallback_gas_limit: int = 3_000_000


@dataclass(frozen=True)
class PriceSourceConfig:
    # "replay": the shipped data/ daily history with an intraday path; "http": a live JSON
    # feed (url, json_path); "oracle": sign no prices, read the marks other signers post.
    # More kinds: offchain.keeper.prices.register_source
    kind: str = "replay"
    # underlyings priced, in this order
    underlyings: list[str] = field(default_factory=lambda: ["BTC", "ETH"])
    data_dir: str = str(DATA_DIR)
    # http: URL with {underlying}, dotted path to the price in the JSON reply, read interval
    url: str = ""
    json_path: str = ""
    poll_s: float = 5.0
    timeout_s: float = 5.0
    start: str = "2020-03-05"
    end: str = "2020-03-20"
    # wall-clock seconds of replay per historical day (0 = follow block timestamps)
    seconds_per_day: float = 0.0
    # annualised implied vol per underlying, used to price options with Black-76
    vols: dict[str, float] = field(default_factory=lambda: {"BTC": 0.8, "ETH": 0.95})


@dataclass(frozen=True)
class KeeperConfig:
    rpc_url: str = "http://127.0.0.1:8545"
    engine_address: str = ""
    oracle_address: str = ""
    registry_address: str = ""
    token_address: str = ""
    # the SignerBond whose forfeited stakes this keeper pushes to the engine's insurance fund
    # (deployment.json `signer_bond`); empty: the one the oracle named (FraudContractsSet),
    # none on a deployment without bonds
    signer_bond_address: str = ""
    # push the bond's forfeited balance (slashed stakes, less the challenger's share) once it
    # reaches this many settlement tokens: below it, a push's gas outweighs what it moves
    forfeited_push_min: float = 100.0
    # sqlite state store lives here; restart resumes from it
    data_dir: str = ".keeper"
    # first block to index when the store is empty (the engine's deployment block)
    start_block: int = 0
    # blocks kept below head before events count as final, and the depth of the state block
    # every epoch's account leaves are built on (head - confirmations): 0 on a devnet; on
    # mainnet the reorg depth the operator trusts (e.g. 2 for 24 s, or 64 for finality)
    confirmations: int = 0
    # blocks re-checked for a changed hash on every cycle (reorg window)
    reorg_depth: int = 64
    poll_interval_s: float = 1.0
    # a new epoch root (every account re-margined) is due when any account's MM or IM moved
    # by more than this fraction of its leaf's...
    leaf_move_frac: float = 0.05
    # ...and by more than this absolute amount (settlement units), or when a book changed
    leaf_move_abs: float = 1.0
    # ...or when the root is older than this (a heartbeat before the engine's
    # max_margin_basis_age, past which new risk is margined by the isolated bound)
    root_max_age_s: int = 3600
    # a signed root, its epoch data, market data or a price may be posted up to this long
    # after signing (the deadline of every message the keeper signs)
    signature_validity_s: int = 600
    # liquidate accounts with equity < MM; the engine caps the fraction itself
    liquidate: bool = True
    # the liquidator pays at most this fraction of the slice's mark value (price limit)
    liquidation_max_payment_frac: float = 1.0
    settle: bool = True
    # post marks, margin rates, index and settlement prices (this keeper is a price signer)
    post_prices: bool = True
    # sign and post the epoch roots (every account's margin) and their public data; off for
    # a keeper that only posts prices or liquidates while another one posts the roots
    post_roots: bool = True
    # re-post marks when any moved by more than this fraction, or when older than this
    price_move_frac: float = 0.002
    price_max_age_s: int = 300
    # sign nothing while the source is silent or jumped more than this fraction since the
    # last accepted price, until the jump persisted for price_confirm_cycles cycles
    price_max_jump_frac: float = 0.5
    price_confirm_cycles: int = 3
    # compute and log every action but send nothing
    dry_run: bool = False
    # 0 disables the Prometheus/health server
    metrics_port: int = 0
    log_format: str = "json"
    log_level: str = "INFO"
    # this keeper's oracle signing keys (one or more of the M-of-N), kept apart from the gas key
    signers: list[KeySpec] = field(default_factory=list)
    gas_key: KeySpec = field(default_factory=KeySpec)
    # spare accounts (each funded in the engine and with gas) that liquidate a book the gas
    # key's account has no room or margin for: a liquidator keeps every slice it takes, and
    # the engine caps a book's positions and underlyings and margins a slice like a trade
    liquidator_keys: list[KeySpec] = field(default_factory=list)
    gas: GasConfig = field(default_factory=GasConfig)
    prices: PriceSourceConfig = field(default_factory=PriceSourceConfig)


def load_config(path: str | Path | None, env: typing.Mapping[str, str] | None = None) -> KeeperConfig:
    """Read `path` (.toml or .json; None = defaults), apply environment overrides, validate."""
    raw: dict = {}
    if path is not None:
        raw = _read_file(Path(path))
    env = os.environ if env is None else env
    if not isinstance(raw, dict):
        raise UserError(f"config file {path}: must hold a table of settings, got {type(raw).__name__}")
    _apply_env(raw, env)
    _refuse_renamed(raw)
    config = _build(KeeperConfig, raw, "config")
    validate(config)
    return config


def validate(config: KeeperConfig) -> None:
    from offchain.keeper.prices import SOURCES
    price_kinds = sorted([*SOURCES, "oracle"])
    checks = [
        ("rpc_url", config.rpc_url.startswith(("http://", "https://", "ws://", "wss://")),
         "an http(s) or ws(s) URL"),
        ("poll_interval_s", config.poll_interval_s > 0, "> 0"),
        ("leaf_move_frac", 0 < config.leaf_move_frac < 1, "between 0 and 1"),
        ("leaf_move_abs", config.leaf_move_abs >= 0, ">= 0"),
        ("root_max_age_s", config.root_max_age_s > 0, "> 0"),
        # a signed message stays postable this long: keep it short (SECURITY.md, leaf validity)
        ("signature_validity_s", 0 < config.signature_validity_s <= 86_400, "in 1..86400 seconds"),
        ("liquidation_max_payment_frac", 0 < config.liquidation_max_payment_frac <= 1,
         "in (0, 1]"),
        ("confirmations", config.confirmations >= 0, ">= 0"),
        ("reorg_depth", config.reorg_depth >= 1, ">= 1"),
        ("metrics_port", 0 <= config.metrics_port < 65536, "a TCP port or 0"),
        ("log_format", config.log_format in ("json", "text"), "'json' or 'text'"),
        ("prices.kind", config.prices.kind in price_kinds, " or ".join(map(repr, price_kinds))),
        ("prices.underlyings", bool(config.prices.underlyings), "a non-empty list of names"),
        ("prices.poll_s", config.prices.poll_s > 0, "> 0"),
        ("prices.timeout_s", config.prices.timeout_s > 0, "> 0"),
        ("price_move_frac", 0 <= config.price_move_frac < 1, "in [0, 1)"),
        ("price_max_age_s", config.price_max_age_s > 0, "> 0"),
        ("price_max_jump_frac", config.price_max_jump_frac > 0, "> 0"),
        ("price_confirm_cycles", config.price_confirm_cycles >= 1, ">= 1"),
        ("start_block", config.start_block >= 0, ">= 0"),
        ("forfeited_push_min", config.forfeited_push_min >= 0,
         ">= 0 settlement tokens (0 pushes any forfeited amount)"),
        ("log_level", config.log_level.upper() in LOG_LEVELS, " or ".join(map(repr, LOG_LEVELS))),
        ("prices.seconds_per_day", config.prices.seconds_per_day >= 0, ">= 0 (0 follows block timestamps)"),
        *gas_checks(config.gas),
    ]
    for name, ok, expected in checks:
        if not ok:
            value = _get_dotted(config, name)
            raise UserError(f"config.{name}: must be {expected}, got {value!r}")
    for i, name in enumerate(config.prices.underlyings):
        if not name.strip():
            raise UserError(f"config.prices.underlyings[{i}]: must be an underlying's name, got {name!r}")
    for name, vol in config.prices.vols.items():
        if not vol > 0:
            raise UserError(f"config.prices.vols.{name}: must be an annualised vol > 0, got {vol!r}")
    for name in ("start", "end"):
        value = getattr(config.prices, name)
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            raise UserError(f"config.prices.{name}: must be a date YYYY-MM-DD, got {value!r}") from None
    if config.prices.start > config.prices.end:
        raise UserError(f"config.prices.end: must not be before prices.start ({config.prices.start}), "
                        f"got {config.prices.end!r}")
    for name in ("engine_address", "oracle_address", "registry_address", "token_address", "signer_bond_address"):
        check_address(f"config.{name}", getattr(config, name))
    specs = [(f"signers[{i}]", s) for i, s in enumerate(config.signers)] + [("gas_key", config.gas_key)]
    specs += [(f"liquidator_keys[{i}]", s) for i, s in enumerate(config.liquidator_keys)]
    for name, spec in specs:
        if spec.source and not spec.source.startswith(("ape:", "keyfile:")):
            raise UserError(
                f"config.{name}.source: must be 'ape:<alias>' or 'keyfile:<path>' "
                f"(plain keys are not accepted), got {_redact(spec.source)!r}"
            )


def gas_checks(gas: GasConfig) -> list[tuple[str, bool, str]]:
    """The [gas] table's bounds (the keeper's and the watcher's loaders share it)."""
    return [
        ("gas.bump_pct", gas.bump_pct >= 10, ">= 10 (nodes reject smaller bumps)"),
        ("gas.max_retries", gas.max_retries >= 1, ">= 1"),
        ("gas.backoff_base_s", gas.backoff_base_s > 0, "> 0"),
        ("gas.backoff_max_s", gas.backoff_max_s >= gas.backoff_base_s, f">= gas.backoff_base_s ({gas.backoff_base_s})"),
        ("gas.bump_after_s", gas.bump_after_s > 0, "> 0"),
        ("gas.max_fee_gwei", gas.max_fee_gwei > 0, "> 0"),
        ("gas.fallback_gas_limit", gas.fallback_gas_limit >= 21_000, ">= 21000 (the cost of a bare transfer)"),
    ]


def check_address(where: str, value: str) -> None:
    """An optional address setting: empty, or 0x and 40 hex digits."""
    if value and not (value.startswith("0x") and is_hex_address(value)):
        raise UserError(f"{where}: must be a 0x-prefixed 20-byte hex address, got {value!r}")


def _refuse_renamed(raw: dict) -> None:
    for old in sorted(set(raw) & set(RENAMED)):
        new, meaning = RENAMED[old]
        raise UserError(f"config.{old}: renamed to {new} ({meaning}); rename the key in the config "
                        f"file, or set {ENV_PREFIX}{new.upper()} instead of {ENV_PREFIX}{old.upper()}")


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"config file: {path} does not exist; pass --config with a .toml or .json file")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"config file {path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    raise UserError(f"config file: must end in .toml or .json, got {path.name!r}")


def _apply_env(raw: dict, env: typing.Mapping[str, str], prefix: str = ENV_PREFIX) -> None:
    for key, value in env.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].lower().split("__")
        node = raw
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: i + 1])
                raise UserError(f"config.{section}: must be a table of settings (the environment sets {key}), "
                                f"got {node!r}")
        node[parts[-1]] = value


def _build(cls, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a table of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: unknown setting; known: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**values)


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is list:
        value = _json_text(value, where, "a list")
        if not isinstance(value, list):
            raise UserError(f"{where}: must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        value = _json_text(value, where, "a table")
        if not isinstance(value, dict):
            raise UserError(f"{where}: must be a table of name = number, got {value!r}")
        return {str(k): _coerce(float, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    try:
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("1", "0", "true", "false", "yes", "no"):
                return value.lower() in ("1", "true", "yes")
            if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
                return bool(value)
            raise ValueError(value)
        if hint is int:
            # no bools, no fractions silently truncated (1.9 is not a block number)
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise UserError(f"{where}: must be a finite number, got {value!r}")
            return number
        return hint(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UserError(f"{where}: must be {hint.__name__}, got {value!r}") from exc


def _json_text(value, where: str, what: str):
    """An environment variable carries a list or table as JSON text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: must be {what} written as JSON (e.g. '[\"BTC\", \"ETH\"]'), got {value!r}: "
                        f"{exc.msg}") from None


def _get_dotted(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _redact(text: str) -> str:
    return text[:6] + "..." if len(text) > 12 else text

"""Bad operator input to the keeper's and the watcher's configuration and to the deploy
script: every wrong value fails at load with a UserError naming the key and the value, never
with a raw Python exception at load or a silent truncation that runs the keeper on a value
the operator did not write. Each case is `test_<loader>__<bad input>__<expected>`; the
hypothesis tests throw any JSON value (and any environment text) at every setting."""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from offchain.devnet.deploy import BondSettings
from offchain.errors import UserError
from offchain.keeper.config import ENV_PREFIX, KeeperConfig, load_config
from offchain.watcher.config import ENV_PREFIX as WATCH_PREFIX
from offchain.watcher.config import WatchConfig, load_watch_config
from scripts.deploy import parse_bonds, parse_signers, parse_threshold

ENGINE = '"0x' + "ab" * 20 + '"'


def _load(tmp_path, text: str, suffix: str = ".toml", env: dict | None = None, loader=load_config):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    return loader(path, env=env or {})


@pytest.mark.parametrize(("text", "env", "named"), [
    # environment lists and tables are JSON text: anything else named, not a JSONDecodeError
    ("", {"NETMARGIN_KEEPER_PRICES__UNDERLYINGS": "BTC,ETH"}, "config.prices.underlyings"),
    ("", {"NETMARGIN_KEEPER_PRICES__VOLS": "BTC=0.8"}, "config.prices.vols"),
    ("", {"NETMARGIN_KEEPER_SIGNERS": "ape:signer1"}, "config.signers"),
    # a table of vols holding a word or a list
    ('[prices]\nvols = {BTC = "high"}', None, "config.prices.vols.BTC"),
    ("[prices]\nvols = [1, 2]", None, "config.prices.vols"),
    ("[prices]\nvols = {BTC = -0.8}", None, "config.prices.vols.BTC"),
    ("[prices]\nvols = {BTC = nan}", None, "config.prices.vols.BTC"),
    # a fraction where a whole number belongs is not truncated, a bool is not a number
    ("start_block = 1.9", None, "config.start_block"),
    ("metrics_port = 9100.7", None, "config.metrics_port"),
    ("price_confirm_cycles = 2.5", None, "config.price_confirm_cycles"),
    ("start_block = true", None, "config.start_block"),
    ("dry_run = 2", None, "config.dry_run"),
    ("start_block = -5", None, "config.start_block"),
    # infinities and NaN are no setting's value
    ("poll_interval_s = inf", None, "config.poll_interval_s"),
    ("signature_validity_s = 1e30", None, "config.signature_validity_s"),
    # the [gas] table: retries, bumps and caps that would spin, never bump or never cap
    ("[gas]\nbackoff_base_s = -1.0", None, "config.gas.backoff_base_s"),
    ("[gas]\nbackoff_max_s = 0.1", None, "config.gas.backoff_max_s"),
    ("[gas]\nbump_after_s = -3.0", None, "config.gas.bump_after_s"),
    ("[gas]\nmax_fee_gwei = nan", None, "config.gas.max_fee_gwei"),
    ("[gas]\nmax_fee_gwei = inf", None, "config.gas.max_fee_gwei"),
    ("[gas]\nfallback_gas_limit = -3", None, "config.gas.fallback_gas_limit"),
    # prices
    ("[prices]\nseconds_per_day = -1.0", None, "config.prices.seconds_per_day"),
    ('[prices]\nstart = "yesterday"', None, "config.prices.start"),
    ('[prices]\nstart = "2020-03-20"\nend = "2020-03-05"', None, "config.prices.end"),
    ('[prices]\nunderlyings = [""]', None, "config.prices.underlyings[0]"),
    # addresses: every one, hex digits only
    ('engine_address = "0x' + "zz" * 20 + '"', None, "config.engine_address"),
    ('token_address = "bob"', None, "config.token_address"),
    ('registry_address = "0x1234"', None, "config.registry_address"),
    ('log_level = "LOUD"', None, "config.log_level"),
    # an environment key under a section the file set to a scalar
    ("gas = 5", {"NETMARGIN_KEEPER_GAS__BUMP_PCT": "20"}, "config.gas"),
])
def test_load_config__bad_value__user_error_names_key_and_value(tmp_path, text, env, named):
    with pytest.raises(UserError) as err:
        _load(tmp_path, text + "\n", env=env)
    assert str(err.value).startswith(named + ":") or f"{named}:" in str(err.value), str(err.value)


def test_load_config__json_top_level_list_or_binary_file__user_error_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="must hold a table of settings"):
        _load(tmp_path, "[{}]", suffix=".json")
    path = tmp_path / "k.toml"
    path.write_bytes(b"\xff\xfe rpc_url = 1")
    with pytest.raises(UserError, match="not UTF-8"):
        load_config(path, env={})


def test_load_config__good_values_still_read__integral_float_and_env_json_list(tmp_path):
    cfg = _load(tmp_path, "start_block = 12.0\ndry_run = 1\n",
                env={"NETMARGIN_KEEPER_PRICES__UNDERLYINGS": '["BTC"]', "NETMARGIN_KEEPER_LOG_LEVEL": "debug"})
    assert cfg.start_block == 12 and cfg.dry_run is True and cfg.prices.underlyings == ["BTC"]
    assert cfg.log_level == "debug"


@pytest.mark.parametrize(("text", "named"), [
    ('engine_address = "0x' + "zz" * 20 + '"', "config.engine_address"),
    (f"engine_address = {ENGINE}\nmax_check_age_s = inf", "config.max_check_age_s"),
    (f'engine_address = {ENGINE}\nparams = "nope-v9"', "config.params"),
    (f'engine_address = {ENGINE}\nlog_level = "LOUD"', "config.log_level"),
    (f"engine_address = {ENGINE}\n[gas]\nbackoff_base_s = -1.0", "config.gas.backoff_base_s"),
    (f'engine_address = {ENGINE}\nfraud_proofs_address = "0x' + "gg" * 20 + '"', "config.fraud_proofs_address"),
    (f'engine_address = {ENGINE}\ndata_dir = "/etc/hostname"', "config.data_dir"),
])
def test_load_watch_config__bad_value__user_error_names_key_and_value(tmp_path, text, named):
    with pytest.raises(UserError) as err:
        _load(tmp_path, text + "\n", loader=load_watch_config)
    assert str(err.value).startswith(named + ":"), str(err.value)


@pytest.mark.parametrize(("bond", "window", "delay", "named"), [
    ("inf", "3600", "7200", "bond.required_bond"),
    ("nan", "3600", "7200", "bond.required_bond"),
    ("1e40", "3600", "7200", "bond.required_bond"),
    ("-1", "3600", "7200", "bond.required_bond"),
    ("10", "1e3", "7200", "challenge-window"),
    ("10", "3600", str(2**64), "bond.withdrawal_delay_s"),
])
def test_deploy_parse_bonds__bad_value__user_error_names_option(bond, window, delay, named):
    with pytest.raises(UserError) as err:
        parse_bonds(bond, window, delay)
    assert str(err.value).startswith(named + ":"), str(err.value)


def test_deploy_bond__rounds_to_zero_token_units__refused_before_any_deployment():
    """1e-7 tokens of a 6-decimal token is 0 units: SignerBond's constructor would revert
    on chain after the registry, oracle, verifier and engine were already deployed."""
    with pytest.raises(UserError, match=r"^bond.required_bond: 1e-07 tokens is less than one unit"):
        parse_bonds("0.0000001", "3600", "7200").stake_units(6)
    assert BondSettings(2_500.5).stake_units(6) == 2_500_500_000


@pytest.mark.parametrize(("call", "named"), [
    (lambda: parse_signers("0xabc,0x" + "11" * 20, ""), "signers[0]"),
    (lambda: parse_signers("0x" + "11" * 20 + ",0x" + "11" * 20, ""), "signers"),
    (lambda: parse_threshold("two", 3), "threshold"),
    (lambda: parse_threshold("4", 3), "threshold"),
    (lambda: parse_threshold("0", 3), "threshold"),
])
def test_deploy_parse__bad_signers_or_threshold__user_error_names_option(call, named):
    with pytest.raises(UserError) as err:
        call()
    assert str(err.value).startswith(named + ":"), str(err.value)


# ---------------------------------------------------------------------------------------
# any value at any key: a config or a UserError naming that key, nothing else
# ---------------------------------------------------------------------------------------


def _keys(cls, prefix: str = "") -> list[tuple[str, ...]]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += [(f.name, *k) for k in _keys(hints[f.name])]
        else:
            out.append((f.name,))
    return out


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=4), SCALARS, max_size=3))


def _nested(key: tuple[str, ...], value) -> dict:
    for part in reversed(key):
        value = {part: value}
    return value


def _assert_loads_or_names(load, key: tuple[str, ...], shown: str) -> None:
    try:
        load()
    except UserError as exc:
        # the error names the key the bad value sits at (or one inside it, or a check
        # that reads it together with another key)
        assert str(exc).startswith("config"), str(exc)
        named = str(exc).split(":")[0]
        assert named.startswith("config." + ".".join(key)) or ".".join(key) in str(exc) or "config file" in named \
            or key[0] in ("gas", "prices"), f"{shown}: {exc}"


@settings(max_examples=examples(80, 2_000), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(_keys(KeeperConfig)), value=VALUES)
def test_load_config__any_json_value_at_any_key__config_or_user_error(tmp_path, key, value):
    path = tmp_path / "k.json"
    path.write_text(json.dumps(_nested(key, value)))
    _assert_loads_or_names(lambda: load_config(path, env={}), key, f"{key}={value!r}")


@settings(max_examples=examples(50, 1_000), deadline=None)
@given(key=st.sampled_from(_keys(KeeperConfig)), text=st.text(max_size=16))
def test_load_config__any_environment_text_at_any_key__config_or_user_error(key, text):
    env = {ENV_PREFIX + "__".join(k.upper() for k in key): text}
    _assert_loads_or_names(lambda: load_config(None, env=env), key, f"{key}={text!r}")


@settings(max_examples=examples(50, 1_000), deadline=None)
@given(key=st.sampled_from(_keys(WatchConfig)), text=st.text(max_size=16))
def test_load_watch_config__any_environment_text_at_any_key__config_or_user_error(key, text):
    env = {WATCH_PREFIX + "__".join(k.upper() for k in key): text,
           WATCH_PREFIX + "ENGINE_ADDRESS": "0x" + "ab" * 20}
    if key == ("engine_address",):
        env[WATCH_PREFIX + "ENGINE_ADDRESS"] = text
    _assert_loads_or_names(lambda: load_watch_config(None, env=env), key, f"{key}={text!r}")


def test_loaded_config__numbers__all_finite():
    """What the loaders return never holds NaN or an infinity (no comparison with one is
    ever true, so a check like `age > max_age` would never fire)."""
    cfg = load_config(None, env={"NETMARGIN_KEEPER_POLL_INTERVAL_S": "2.5"})
    floats = [getattr(cfg, f.name) for f in dataclasses.fields(cfg) if isinstance(getattr(cfg, f.name), float)]
    assert floats and all(math.isfinite(x) for x in floats)
    with pytest.raises(UserError, match=r"^config.poll_interval_s: must be a finite number, got 'nan'"):
        load_config(None, env={"NETMARGIN_KEEPER_POLL_INTERVAL_S": "nan"})

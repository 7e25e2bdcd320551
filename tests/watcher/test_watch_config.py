"""The watcher's challenger settings: a key only by reference (never a value), the fraud-proof
contract's address, gas limits; every bad value refused naming the field, the value and what
was expected. The challenge ledger survives a restart."""

from __future__ import annotations

import pytest

from offchain.errors import UserError
from offchain.watcher.challenge import Ledger
from offchain.watcher.config import load_watch_config

ENGINE = "0x" + "ab" * 20


def write(tmp_path, body: str):
    path = tmp_path / "watch.toml"
    path.write_text(f'engine_address = "{ENGINE}"\n' + body)
    return path


def test_defaults__no_key__report_only(tmp_path):
    cfg = load_watch_config(write(tmp_path, ""), env={})
    assert cfg.challenger_key.source == "" and cfg.fraud_proofs_address == ""
    assert cfg.challenge_gas_limit == 3_000_000 and cfg.data_dir == ".watch"


def test_key_by_reference_and_env_overrides(tmp_path):
    path = write(tmp_path, '[challenger_key]\nsource = "ape:watcher"\npassphrase_env = "WATCH_PW"\n'
                           '[gas]\nmax_fee_gwei = 80\n')
    cfg = load_watch_config(path, env={"NETMARGIN_WATCH_CHALLENGER_KEY__SOURCE": "keyfile:/k.json",
                                       "NETMARGIN_WATCH_CHALLENGE_GAS_LIMIT": "1500000"})
    assert cfg.challenger_key.source == "keyfile:/k.json" and cfg.challenger_key.passphrase_env == "WATCH_PW"
    assert cfg.challenge_gas_limit == 1_500_000 and cfg.gas.max_fee_gwei == 80


@pytest.mark.parametrize("body,message", [
    ('[challenger_key]\nsource = "0x' + "11" * 32 + '"\npassphrase_env = "P"\n',
     "config.challenger_key.source: must be 'ape:<alias>' or 'keyfile:<path>' (plain keys are not accepted), "
     "got '0x1111...'"),
    ('[challenger_key]\nsource = "ape:watcher"\n',
     "config.challenger_key.passphrase_env: must name the environment variable"),
    ('fraud_proofs_address = "0x1234"\n',
     "config.fraud_proofs_address: must be a 0x-prefixed 20-byte address or empty, got '0x1234'"),
    ("challenge_gas_limit = 5000\n", "config.challenge_gas_limit: must be >= 100000"),
    ("challenge_reconcile_blocks = 0\n", "config.challenge_reconcile_blocks: must be >= 1, got 0"),
    ("challenge_min_window_left_s = -1\n", "config.challenge_min_window_left_s: must be >= 0, got -1"),
    ("challenge_reveal_wait_s = 0\n", "config.challenge_reveal_wait_s: must be > 0, got 0"),
    ('challenge_rpc_url = "relay.example"\n',
     "config.challenge_rpc_url: must be an http(s) URL or empty, got 'relay.example'"),
    ("[gas]\nbump_pct = 5\n", "config.gas.bump_pct: must be >= 10"),
    ('[challenger_key]\nkey = "x"\n', "config.challenger_key.key: unknown setting"),
])
def test_bad_values__refused_naming_field_and_value(tmp_path, body, message):
    with pytest.raises(UserError) as exc:
        load_watch_config(write(tmp_path, body), env={})
    assert message in str(exc.value)


def test_ledger__survives_restart__damaged_file_refused(tmp_path):
    path = tmp_path / "d" / "challenges.json"
    Ledger(path).put(ENGINE, 7, "0x" + "cd" * 20, {"status": "sending"})
    again = Ledger(path)
    assert again.get(ENGINE.upper().replace("0X", "0x"), 7, "0x" + "CD" * 20) == {"status": "sending"}
    assert again.get(ENGINE, 8, "0x" + "cd" * 20) is None
    path.write_text("{not json")
    with pytest.raises(UserError, match="config.data_dir: .* is not a challenges file"):
        Ledger(path)


def test_example_config__loads__reports_only_until_a_key_is_named():
    from offchain.paths import REPO_ROOT
    cfg = load_watch_config(REPO_ROOT / "examples" / "watch.toml", env={})
    assert cfg.challenger_key.source == "" and cfg.challenger_key.passphrase_env
    assert cfg.challenge_gas_limit >= 1_000_000

"""Keeper config: file + environment, errors that name the field."""

import json
from pathlib import Path

import pytest

from offchain.errors import UserError
from offchain.keeper.config import load_config


def test_load_config__toml_and_env_override__env_wins(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('rpc_url = "http://node:8545"\nleaf_move_frac = 0.1\n'
                    '[[signers]]\nsource = "ape:signer1"\npassphrase_env = "P1"\n[gas]\nbump_pct = 20\n')
    cfg = load_config(path, env={"NETMARGIN_KEEPER_GAS__BUMP_PCT": "30",
                                 "NETMARGIN_KEEPER_DRY_RUN": "true"})
    assert cfg.rpc_url == "http://node:8545" and cfg.leaf_move_frac == 0.1
    assert cfg.gas.bump_pct == 30 and cfg.dry_run is True
    assert cfg.signers[0].source == "ape:signer1"


def test_load_config__json__read(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"metrics_port": 9100, "prices": {"vols": {"BTC": 0.6}}}))
    cfg = load_config(path, env={})
    assert cfg.metrics_port == 9100 and cfg.prices.vols == {"BTC": 0.6}


@pytest.mark.parametrize("text, field", [
    ("leaf_move_frac = 2.0", "config.leaf_move_frac"),
    ("rpc_url = \"node:8545\"", "config.rpc_url"),
    ("bogus = 1", "config.bogus"),
    ("[gas]\nbump_pct = 5", "config.gas.bump_pct"),
    ("poll_interval_s = \"soon\"", "config.poll_interval_s"),
])
def test_load_config__bad_value__error_names_field(tmp_path, text, field):
    path = tmp_path / "k.toml"
    path.write_text(text + "\n")
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load_config(path, env={})


@pytest.mark.parametrize("text, message", [
    ("forfeited_push_min = -1.0", "config.forfeited_push_min: must be >= 0 settlement tokens (0 pushes any "
                                  "forfeited amount), got -1.0"),
    ("forfeited_push_min = \"lots\"", "config.forfeited_push_min: must be float, got 'lots'"),
    ("forfeited_push_min = nan", "config.forfeited_push_min: must be a finite number, got nan"),
    ("signer_bond_address = \"0x1234\"", "config.signer_bond_address: must be a 0x-prefixed 20-byte hex "
                                         "address, got '0x1234'"),
])
def test_load_config__bad_forfeit_push_setting__error_names_key_and_value(tmp_path, text, message):
    path = tmp_path / "k.toml"
    path.write_text(text + "\n")
    with pytest.raises(UserError) as exc:
        load_config(path, env={})
    assert str(exc.value) == message


def test_load_config__forfeit_push__default_and_env_override(tmp_path):
    assert load_config(None, env={}).forfeited_push_min == 100.0
    cfg = load_config(None, env={"NETMARGIN_KEEPER_FORFEITED_PUSH_MIN": "0",
                                 "NETMARGIN_KEEPER_SIGNER_BOND_ADDRESS": "0x" + "ab" * 20})
    assert cfg.forfeited_push_min == 0.0 and cfg.signer_bond_address == "0x" + "ab" * 20


def test_load_config__plain_private_key__refused(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('[gas_key]\nsource = "0x' + "ab" * 32 + '"\n')
    with pytest.raises(UserError, match="plain keys are not accepted") as exc:
        load_config(path, env={})
    assert "ab" * 8 not in str(exc.value)  # the key itself is never echoed


def test_load_config__spare_liquidator_key__plain_key_refused_by_its_index(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('liquidator_keys = [{ source = "ape:spare" }, { source = "0x' + "cd" * 32 + '" }]\n')
    with pytest.raises(UserError, match=r"config\.liquidator_keys\[1\]\.source: must be 'ape:<alias>'") as exc:
        load_config(path, env={})
    assert "cd" * 8 not in str(exc.value)


def test_load_config__missing_file__says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_load_config__shipped_example__parses_with_separate_signing_and_gas_keys():
    cfg = load_config(Path(__file__).parents[2] / "examples" / "keeper.toml", env={})
    assert cfg.signers[0].source.startswith("ape:") and cfg.gas_key.source.startswith("ape:")
    assert cfg.signers[0].source != cfg.gas_key.source and cfg.metrics_port == 9102


@pytest.mark.parametrize("old, new", [
    ("attest_move_frac", "leaf_move_frac"),
    ("attest_move_abs", "leaf_move_abs"),
    ("attest_max_age_s", "root_max_age_s"),
    ("attest_validity_s", "signature_validity_s"),
])
def test_load_config__renamed_key_in_file__error_names_old_and_new_key(tmp_path, old, new):
    path = tmp_path / "k.toml"
    path.write_text(f"{old} = 1\n")
    with pytest.raises(UserError) as exc:
        load_config(path, env={})
    msg = str(exc.value)
    assert msg.startswith(f"config.{old}: renamed to {new} (")
    assert "rename the key in the config file" in msg and f"NETMARGIN_KEEPER_{new.upper()}" in msg


def test_load_config__renamed_key_in_environment__refused_not_ignored(tmp_path):
    with pytest.raises(UserError, match=r"config\.attest_max_age_s: renamed to root_max_age_s .*"
                                        r"NETMARGIN_KEEPER_ROOT_MAX_AGE_S instead of "
                                        r"NETMARGIN_KEEPER_ATTEST_MAX_AGE_S"):
        load_config(None, env={"NETMARGIN_KEEPER_ATTEST_MAX_AGE_S": "7200"})


def test_load_config__new_key_names__read():
    cfg = load_config(None, env={"NETMARGIN_KEEPER_LEAF_MOVE_FRAC": "0.1", "NETMARGIN_KEEPER_LEAF_MOVE_ABS": "2",
                                 "NETMARGIN_KEEPER_ROOT_MAX_AGE_S": "7200",
                                 "NETMARGIN_KEEPER_SIGNATURE_VALIDITY_S": "300"})
    assert (cfg.leaf_move_frac, cfg.leaf_move_abs, cfg.root_max_age_s, cfg.signature_validity_s) == (0.1, 2.0, 7200, 300)

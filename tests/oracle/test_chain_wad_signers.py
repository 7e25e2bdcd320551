"""offchain/chain/wad.py rounding and offchain/chain/signers.py key loading."""

import json
from decimal import Decimal

import numpy as np
import pytest
from eth_account import Account

from offchain.chain.signers import ape_keyfile_path, load_ape_alias, load_keyfile, load_signer
from offchain.chain.wad import (
    WAD,
    Rounding,
    from_wad,
    margin_to_wad,
    to_token_units,
    to_wad,
    to_wad_list,
)
from offchain.errors import UserError

# ------------------------------------------------------------------ wad


def test_to_wad__short_decimal_float__exact():
    assert to_wad(0.1, Rounding.DOWN) == 10**17
    assert to_wad(0.1, Rounding.UP) == 10**17
    assert to_wad(60_000.5, Rounding.NEAREST) == 60_000 * WAD + WAD // 2


def test_to_wad__sub_wei_remainder__rounds_in_named_direction():
    x = "1.0000000000000000001"  # 1 WAD + 0.1 wei
    assert to_wad(x, Rounding.UP) == WAD + 1
    assert to_wad(x, Rounding.DOWN) == WAD
    assert to_wad(x, Rounding.NEAREST) == WAD
    assert to_wad("-" + x, Rounding.UP) == -WAD  # toward +infinity
    assert to_wad("-" + x, Rounding.DOWN) == -WAD - 1


def test_margin_to_wad__rounds_up():
    assert margin_to_wad(Decimal("2.0000000000000000000001")) == 2 * WAD + 1
    assert margin_to_wad(1e-19) == 1


def test_to_wad__large_value__exact_integer():
    assert to_wad(10**40, Rounding.DOWN) == 10**58


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "abc", None])
def test_to_wad__not_a_finite_number__raises_naming_field(bad):
    with pytest.raises(ValueError, match="price: expected a"):
        to_wad(bad, Rounding.DOWN, field="price")


def test_to_wad__bad_rounding__raises():
    with pytest.raises(ValueError, match="rounding"):
        to_wad(1.0, "up")


def test_to_wad_list__numpy_array__ints_and_indexed_errors():
    assert to_wad_list(np.array([0.5, 1.25]), Rounding.UP) == [WAD // 2, 5 * WAD // 4]
    with pytest.raises(ValueError, match=r"marks\[1\]"):
        to_wad_list(np.array([1.0, np.nan]), Rounding.UP, field="marks")


def test_from_wad__int__float_and_refuses_float():
    assert from_wad(3 * WAD // 2) == 1.5
    with pytest.raises(ValueError):
        from_wad(1.5)


@pytest.mark.parametrize(
    "value, rounding, expected",
    [
        (WAD + 1, Rounding.UP, 1_000_001),
        (WAD + 1, Rounding.DOWN, 1_000_000),
        (-WAD - 1, Rounding.DOWN, -1_000_001),
        (-WAD - 1, Rounding.UP, -1_000_000),
        (WAD + 5 * 10**11, Rounding.NEAREST, 1_000_000),  # tie to even
        (WAD + 15 * 10**11, Rounding.NEAREST, 1_000_002),  # tie to even
        (WAD + 6 * 10**11, Rounding.NEAREST, 1_000_001),
    ],
)
def test_to_token_units__six_decimals__rounded_as_named(value, rounding, expected):
    assert to_token_units(value, 6, rounding) == expected


def test_to_token_units__bad_decimals__raises():
    with pytest.raises(ValueError, match="decimals"):
        to_token_units(1, 19, Rounding.UP)


# ------------------------------------------------------------------ signers

KEY = b"\x11" * 32


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "signer.json"
    # Low scrypt cost keeps the test fast; format is the standard keystore v3.
    path.write_text(json.dumps(Account.encrypt(KEY, "pw", kdf="pbkdf2", iterations=2)))
    return path


def test_load_keyfile__password_from_env__account(keyfile, monkeypatch):
    monkeypatch.setenv("SIGNER_PW", "pw")
    assert load_keyfile(keyfile, "SIGNER_PW").address == Account.from_key(KEY).address


def test_load_keyfile__wrong_password__user_error(keyfile, monkeypatch):
    monkeypatch.setenv("SIGNER_PW", "nope")
    with pytest.raises(UserError, match="keyfile password"):
        load_keyfile(keyfile, "SIGNER_PW")


def test_load_keyfile__no_password_no_terminal__user_error(keyfile, monkeypatch):
    monkeypatch.delenv("SIGNER_PW", raising=False)
    with pytest.raises(UserError, match="SIGNER_PW: expected the keystore password"):
        load_keyfile(keyfile, "SIGNER_PW", prompt=False)


def test_load_keyfile__missing_file__user_error(tmp_path):
    with pytest.raises(UserError, match="keyfile: no such file"):
        load_keyfile(tmp_path / "absent.json")


def test_load_keyfile__plain_json_not_keystore__user_error(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"private_key": "0x" + KEY.hex()}))
    with pytest.raises(UserError, match="expected an encrypted keystore"):
        load_keyfile(path)


def test_load_keyfile__address_field_mismatch__user_error(tmp_path, monkeypatch):
    keystore = Account.encrypt(KEY, "pw", kdf="pbkdf2", iterations=2)
    keystore["address"] = "22" * 20
    path = tmp_path / "k.json"
    path.write_text(json.dumps(keystore))
    monkeypatch.setenv("SIGNER_PW", "pw")
    with pytest.raises(UserError, match="does not match"):
        load_keyfile(path, "SIGNER_PW")


def test_load_ape_alias__alias_in_ape_data_folder__account(tmp_path, keyfile, monkeypatch):
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    monkeypatch.setenv("SIGNER_PW", "pw")
    target = ape_keyfile_path("risk1")
    target.parent.mkdir(parents=True)
    target.write_text(keyfile.read_text())
    assert load_ape_alias("risk1", "SIGNER_PW").address == Account.from_key(KEY).address
    assert load_signer("risk1", "SIGNER_PW").address == Account.from_key(KEY).address
    assert load_signer(str(keyfile), "SIGNER_PW").address == Account.from_key(KEY).address


def test_load_ape_alias__unknown_alias__user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    with pytest.raises(UserError, match="no ape account 'ghost'"):
        load_ape_alias("ghost")


@pytest.mark.parametrize("alias", ["", "../etc", ".hidden"])
def test_ape_keyfile_path__bad_alias__user_error(alias):
    with pytest.raises(UserError, match="alias"):
        ape_keyfile_path(alias)

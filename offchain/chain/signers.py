"""Load a risk signer's key as an eth-account LocalAccount, from an encrypted keystore.

Two sources, both an encrypted Ethereum keystore JSON (scrypt/pbkdf2) plus a password:
- an ape account alias (`ape accounts generate <alias>` / `ape accounts import <alias>`),
  whose keyfile is `$APE_DATA_FOLDER/accounts/<alias>.json` (default `~/.ape`);
- any keystore file path.
The password comes from an environment variable (for services) or an interactive prompt.
A plain private key is never accepted as an argument, so it never lands in shell history
or `ps` output.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from offchain.errors import UserError

DEFAULT_PASSWORD_ENV = "NETMARGIN_SIGNER_PASSWORD"


def ape_keyfile_path(alias: str) -> Path:
    """Where ape keeps the keystore of account `alias` (without importing ape)."""
    if not alias or "/" in alias or alias.startswith("."):
        raise UserError(f"alias: expected an ape account alias, got {alias!r}")
    data_folder = Path(os.environ.get("APE_DATA_FOLDER") or Path.home() / ".ape")
    return data_folder / "accounts" / f"{alias}.json"


def load_keyfile(path: str | Path, password_env: str = DEFAULT_PASSWORD_ENV, *, prompt: bool = True) -> LocalAccount:
    """Decrypt a keystore JSON file. Password: `$password_env` if set, else a prompt when
    `prompt` and stdin is a terminal, else a UserError."""
    path = Path(path)
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"keyfile: no such file, got {str(path)!r}") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"keyfile: expected an Ethereum keystore JSON file, got {str(path)!r} ({exc})") from exc
    if not isinstance(keystore, dict) or "crypto" not in keystore and "Crypto" not in keystore:
        raise UserError(f"keyfile: expected an encrypted keystore (with a 'crypto' section), got {str(path)!r}")
    password = _password(password_env, prompt=prompt, what=str(path))
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        raise UserError(f"keyfile password: does not decrypt {str(path)!r} ({exc})") from exc
    account = Account.from_key(key)
    expected = keystore.get("address")
    if expected and account.address.lower().removeprefix("0x") != str(expected).lower().removeprefix("0x"):
        raise UserError(
            f"keyfile: address field {expected} does not match the decrypted key's {account.address}"
        )
    return account


def load_ape_alias(alias: str, password_env: str = DEFAULT_PASSWORD_ENV, *, prompt: bool = True) -> LocalAccount:
    """Decrypt the keystore of ape account `alias` (see `ape_keyfile_path`)."""
    path = ape_keyfile_path(alias)
    if not path.exists():
        raise UserError(f"alias: no ape account {alias!r} (looked for {path})")
    return load_keyfile(path, password_env, prompt=prompt)


def load_signer(source: str, password_env: str = DEFAULT_PASSWORD_ENV, *, prompt: bool = True) -> LocalAccount:
    """`source` is a keystore path (contains '/' or ends with .json) or an ape alias."""
    if "/" in source or source.endswith(".json"):
        return load_keyfile(source, password_env, prompt=prompt)
    return load_ape_alias(source, password_env, prompt=prompt)


def _password(env: str, *, prompt: bool, what: str) -> str:
    value = os.environ.get(env)
    if value is not None:
        return value
    if prompt and sys.stdin.isatty():
        return getpass.getpass(f"Password for {what}: ")
    raise UserError(f"{env}: expected the keystore password in this environment variable (no terminal to prompt)")

"""Key loading: an ape account alias or an encrypted JSON keyfile, never a plain key.

ape stores its accounts as standard encrypted keyfiles in `$APE_DATA_FOLDER/accounts/<alias>.json`
(default `~/.ape`), so both sources decrypt the same way with eth-account and no prompt is
needed when the passphrase is in the environment.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from offchain.errors import UserError
from offchain.keeper.config import KeySpec


def ape_data_folder() -> Path:
    return Path(os.environ.get("APE_DATA_FOLDER", Path.home() / ".ape"))


def keyfile_path(spec: KeySpec) -> Path:
    kind, _, ref = spec.source.partition(":")
    if kind == "ape":
        return ape_data_folder() / "accounts" / f"{ref}.json"
    if kind == "keyfile":
        return Path(ref).expanduser()
    raise UserError(
        f"key source: must be 'ape:<alias>' or 'keyfile:<path>', got {spec.source[:6]!r}...; "
        "import a key with `ape accounts import <alias>`"
    )


def load_key(spec: KeySpec, role: str, prompt: bool = False) -> LocalAccount:
    """Decrypt the key named by `spec`; the passphrase comes from `spec.passphrase_env` or a prompt."""
    if not spec.source:
        raise UserError(f"{role}.source: no key configured; set it to 'ape:<alias>' or 'keyfile:<path>'")
    path = keyfile_path(spec)
    if not path.is_file():
        raise UserError(
            f"{role}.source: keyfile {path} not found; create it with `ape accounts import "
            f"<alias>` or point keyfile: at an encrypted JSON keyfile"
        )
    passphrase = os.environ.get(spec.passphrase_env) if spec.passphrase_env else None
    if passphrase is None:
        if not prompt:
            raise UserError(
                f"{role}.passphrase_env: environment variable {spec.passphrase_env or '(unset)'!r} "
                "is not set; export the keyfile passphrase there"
            )
        passphrase = getpass.getpass(f"passphrase for {path.name}: ")
    try:
        key = Account.decrypt(json.loads(path.read_text()), passphrase)
    except ValueError as exc:
        raise UserError(f"{role}: cannot decrypt {path}: wrong passphrase or damaged keyfile") from exc
    return Account.from_key(key)


def write_keyfile(account: LocalAccount, path: Path, passphrase: str) -> Path:
    """Encrypt `account` to `path` (used by the demo to give its keeper real keyfiles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(Account.encrypt(account.key, passphrase, kdf="pbkdf2", iterations=2)))
    return path

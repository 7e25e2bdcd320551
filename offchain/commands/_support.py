"""Shared plumbing of the commands that talk to a chain; not a command itself.

Chain: `--rpc` / `NETMARGIN_RPC` and `--engine` / `NETMARGIN_ENGINE`. Wallet: `--account
<ape alias>` (ape's encrypted keyfile; passphrase from NETMARGIN_PASSPHRASE or a prompt),
asked for only by commands that sign. Everything else goes through offchain.chain.client.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime


def add_chain_arguments(parser, wallet: bool = True) -> None:
    """--rpc, --engine and (for commands that sign) a required --account."""
    group = parser.add_argument_group("chain")
    group.add_argument("--rpc", default=os.environ.get("NETMARGIN_RPC", "http://127.0.0.1:8545"),
                       help="node URL (default: $NETMARGIN_RPC or http://127.0.0.1:8545)")
    group.add_argument("--engine", default=os.environ.get("NETMARGIN_ENGINE", ""),
                       help="MarginEngine address (default: $NETMARGIN_ENGINE)")
    if wallet:
        group.add_argument("--account", required=True, metavar="ALIAS",
                           help="your ape account (import a key with `ape accounts import ALIAS`); "
                                "passphrase from $NETMARGIN_PASSPHRASE or a prompt")


def add_who_arguments(parser) -> None:
    """Read-only commands: whose account, by address or by ape alias (no passphrase asked)."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--address", help="any account address (0x...)")
    who.add_argument("--account", metavar="ALIAS",
                     help="an ape account alias; only its address is read (no passphrase)")


def wallet(alias: str):
    from offchain.keeper.config import KeySpec
    from offchain.keeper.keys import load_key
    return load_key(KeySpec(f"ape:{alias.removeprefix('ape:')}", "NETMARGIN_PASSPHRASE"),
                    "--account", prompt=True)


def alias_address(alias: str) -> str:
    """The address of an ape account, read from its keyfile without decrypting it."""
    import json

    from web3 import Web3

    from offchain.errors import UserError
    from offchain.keeper.config import KeySpec
    from offchain.keeper.keys import keyfile_path
    path = keyfile_path(KeySpec(f"ape:{alias.removeprefix('ape:')}", ""))
    try:
        return Web3.to_checksum_address("0x" + json.loads(path.read_text())["address"].removeprefix("0x"))
    except OSError as exc:
        raise UserError(f"--account: no ape account {alias!r} ({path}: {exc.strerror}); "
                        "list them with `ape accounts list`") from exc
    except (ValueError, KeyError) as exc:
        raise UserError(f"--account: {path} is not a keyfile with an address") from exc


def client(args, sign: bool = False):
    """A Client on --rpc/--engine; with the --account key when the command signs."""
    from offchain.chain.client import Client
    c = Client.connect(args.rpc, args.engine)
    if sign:
        c.account_key = wallet(args.account)
    return c


def who(args) -> str:
    """The address a read-only command is about (--address, or --account's address)."""
    if not args.address:
        return alias_address(args.account)
    from web3 import Web3

    from offchain.errors import UserError
    if not Web3.is_address(args.address):
        raise UserError(f"--address: must be a 0x-prefixed 20-byte address, got {args.address!r}")
    return Web3.to_checksum_address(args.address)


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def add_epoch_arguments(parser) -> None:
    """The chain options of the commands that rebuild an epoch root (rebuild, verify, watch):
    --rpc/--engine or a devnet-style --deployment file, --params, --epoch-file."""
    add_chain_arguments(parser, wallet=False)
    group = parser.add_argument_group("epoch data")
    group.add_argument("--deployment", metavar="FILE",
                       help="deployment.json (as `netmargin devnet` writes it): its rpc_url and engine "
                            "address replace --rpc and --engine")
    group.add_argument("--params", metavar="NAME_OR_FILE",
                       help="risk parameter file of the root's params_hash (default: the bundled set "
                            "whose hash the oracle held when the root was posted)")
    group.add_argument("--epoch-file", metavar="FILE",
                       help="a keeper's epoch-<n>.json: compared leaf by leaf, and the source of the "
                            "state block and market leaves when the chain has no EpochDataPublished log")


def deployment(args):
    """The Deployment of --deployment, else of --rpc/--engine (read-only)."""
    import json
    from pathlib import Path

    from web3 import HTTPProvider, Web3

    from offchain.chain.contracts import connect
    from offchain.errors import UserError
    rpc, engine = args.rpc, args.engine
    if getattr(args, "deployment", None):
        try:
            doc = json.loads(Path(args.deployment).read_text())
            rpc, engine = doc["rpc_url"], doc["contracts"]["engine"]["address"]
        except OSError as exc:
            raise UserError(f"--deployment: cannot read {args.deployment!r}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"--deployment: {args.deployment!r} is not a deployment.json with rpc_url and "
                            f"contracts.engine.address ({exc})") from exc
    if not engine:
        raise UserError("engine: missing; pass --engine (or NETMARGIN_ENGINE) or --deployment")
    w3 = Web3(HTTPProvider(rpc, request_kwargs={"timeout": 60}))
    if not w3.is_connected():
        raise UserError(f"rpc: no node answers at {rpc}; start one or pass the right URL (--rpc, "
                        "NETMARGIN_RPC or --deployment)")
    return connect(w3, engine)


def hexs(b: bytes) -> str:
    return "0x" + bytes(b).hex()

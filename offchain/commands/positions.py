"""`netmargin positions [--address A | --account ALIAS]`: an account's book read from chain."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser, wallet=False)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--address", help="any account address")
    who.add_argument("--account", help="ape account alias")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def resolve_address(args) -> str:
    from web3 import Web3

    from offchain.commands._support import wallet
    from offchain.errors import UserError
    if args.address:
        if not Web3.is_address(args.address):
            raise UserError(f"--address: must be a 0x-prefixed 20-byte address, got {args.address!r}")
        return Web3.to_checksum_address(args.address)
    return wallet(args).address


def run(args) -> int:
    from offchain.commands._support import account_book, deployment, describe

    dep = deployment(args)
    book = account_book(dep, resolve_address(args))
    if args.json:
        print(json.dumps(book, indent=2))
        return 0
    print(f"account {book['address']}  (state nonce {book['state_nonce']})")
    print(f"{'instrument':32s} {'size':>12s} {'mark':>12s} {'value':>14s}")
    for p in book["positions"]:
        print(f"{describe(p):32s} {p['size']:12,.4f} {p['mark']:12,.2f} {p['value']:14,.2f}")
    print(f"cash {book['cash']:,.2f}   equity {book['equity']:,.2f}")
    print(f"initial margin {book['im']:,.2f}   maintenance margin {book['mm']:,.2f}"
          f"   (attested {book['attested_mm']:,.2f} + pending {book['pending_mm']:,.2f})")
    state = "LIQUIDATABLE" if book["liquidatable"] else "healthy"
    print(f"health: {state} (equity / MM = "
          f"{book['equity'] / book['mm'] if book['mm'] else float('inf'):.2f})")
    return 0

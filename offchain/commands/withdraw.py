"""`netmargin withdraw --amount N|max --account ALIAS`: withdraw collateral."""

from __future__ import annotations

DESCRIPTION = """\
Withdraw collateral to your wallet. With open positions the engine keeps equity at or
above initial margin: `--amount max` takes exactly what is free (see `netmargin positions`
for "available to withdraw"); without positions all cash can go."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    parser.add_argument("--amount", required=True, help="tokens to withdraw, or 'max'")
    add_chain_arguments(parser)


def run(args) -> int:
    from offchain.commands._support import client

    c = client(args, sign=True)
    receipt, tokens = c.withdraw(args.amount)
    print(f"withdrew {tokens:,.{c.decimals}f} (block {receipt['blockNumber']})")
    return 0

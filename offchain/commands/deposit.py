"""`netmargin deposit --amount N --account ALIAS`: approve (if needed) and deposit collateral."""

from __future__ import annotations

DESCRIPTION = """\
Deposit settlement tokens into your account as collateral (approving the engine first
if needed). Deposits are never blocked, even while prices are stale or trading is paused."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    parser.add_argument("--amount", required=True, help="tokens to deposit, e.g. 2500.50")
    add_chain_arguments(parser)


def run(args) -> int:
    from offchain.commands._support import client

    c = client(args, sign=True)
    receipt = c.deposit(args.amount)
    cash = c.dep.engine.functions.cash_wad(c.account_key.address).call() / 10**18
    print(f"deposited {float(args.amount):,.2f} (block {receipt['blockNumber']}); cash now {cash:,.2f}")
    return 0

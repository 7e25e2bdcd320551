"""`netmargin withdraw --amount N --account ALIAS`: withdraw collateral (refused below IM)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser)
    parser.add_argument("--amount", required=True, help="tokens to withdraw, or 'max'")


def run(args) -> int:
    from offchain.commands._support import account_book, deployment, send_tx, token_units, wallet
    from offchain.errors import UserError

    dep = deployment(args)
    me = wallet(args)
    book = account_book(dep, me.address)
    if args.amount == "max":
        # without positions all cash; with positions what keeps equity >= IM
        free = book["cash"] if not book["positions"] else book["equity"] - book["im"]
        if free <= 0:
            raise UserError(f"--amount max: nothing is free (equity {book['equity']:,.2f}, "
                            f"initial margin {book['im']:,.2f}); add collateral or reduce positions")
        decimals = dep.token.functions.decimals().call()
        units = int(free * 10**decimals)
    else:
        units, decimals = token_units(dep, args.amount, "--amount")
    receipt = send_tx(dep, me, dep.engine.functions.withdraw(units), "withdraw")
    print(f"withdrew {units / 10**decimals:,.{decimals}f} in block {receipt['blockNumber']}")
    return 0

"""`netmargin deposit --amount N --account ALIAS`: approve (if needed) and deposit collateral."""

from __future__ import annotations


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser)
    parser.add_argument("--amount", required=True, help="tokens to deposit, e.g. 2500.50")


def run(args) -> int:
    from offchain.commands._support import deployment, send_tx, token_units, wallet

    dep = deployment(args)
    units, decimals = token_units(dep, args.amount, "--amount")
    me = wallet(args)
    held = dep.token.functions.balanceOf(me.address).call()
    if held < units:
        from offchain.errors import UserError
        raise UserError(f"--amount: {me.address} holds {held / 10**decimals:,.{decimals}f} tokens, "
                        f"asked to deposit {args.amount}")
    if dep.token.functions.allowance(me.address, dep.engine.address).call() < units:
        send_tx(dep, me, dep.token.functions.approve(dep.engine.address, units), "approve")
    receipt = send_tx(dep, me, dep.engine.functions.deposit(units), "deposit")
    cash = dep.engine.functions.cash_wad(me.address).call() / 10**18
    print(f"deposited {args.amount} in block {receipt['blockNumber']}; cash now {cash:,.2f}")
    return 0

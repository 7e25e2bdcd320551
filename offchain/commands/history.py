"""`netmargin history (--address A | --account ALIAS)`: what happened to an account."""

from __future__ import annotations

import json

DESCRIPTION = """\
An account's history read from the engine's events, oldest first: deposits, withdrawals,
fills (as maker or taker), cancelled orders, liquidations (of it, or by it), expiry
settlements and funding. Read-only: no passphrase is asked."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments, add_who_arguments
    add_chain_arguments(parser, wallet=False)
    add_who_arguments(parser)
    parser.add_argument("--from-block", type=int, default=0, help="start at this block (default 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def line(e: dict) -> str:
    k = e["kind"]
    if k in ("deposit", "withdrawal"):
        return f"{k} {e['amount']:,.2f}"
    if k == "fill":
        fee = f", fee {e['fee']:,.2f}" if e["fee"] else ""
        return (f"{'bought' if e['side'] == 'buy' else 'sold'} {e['size']:g} {e['instrument']} at "
                f"{e['price']:,.2f} as {e['role']}{fee}")
    if k == "cancel":
        return f"cancelled order {e['order_hash'][:18]}..."
    if k == "liquidation":
        if e["role"] == "liquidated":
            return (f"liquidated: {e['fraction']:.1%} of the book (value {e['slice_value']:,.2f}) "
                    f"taken by {e['counterparty']}, discount {e['discount']:,.2f}")
        return (f"liquidated {e['counterparty']}: took {e['fraction']:.1%} of its book, paid "
                f"{e['payment']:,.2f} (discount {e['discount']:,.2f})")
    if k == "settlement":
        return (f"settled {e['size']:g} {e['instrument']} at {e['price']:,.2f}: "
                f"{e['payoff']:+,.2f} credited")
    if k == "funding":
        return f"funding on {e['instrument']}: {e['amount']:+,.2f}"
    return k


def run(args) -> int:
    from offchain.commands._support import client, day, who

    c = client(args)
    address = who(args)
    events = c.history(address, args.from_block)
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    if not events:
        print(f"no history for {address}")
        return 0
    print(f"history of {address}")
    for e in events:
        print(f"  {day(e['time'])}  block {e['block']:>6}  {line(e)}")
    return 0

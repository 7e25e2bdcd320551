"""`netmargin fill --order FILE [--size N] [--yes] --account ALIAS`: take a maker's order."""

from __future__ import annotations

import sys

DESCRIPTION = """\
Take (fill) a maker's signed order at its price. The order is checked before anything is
sent: a cancelled, fully filled or expired order is refused in plain words, and a price
more than 20% away from the instrument's mark needs --yes. `--order -` reads the order
from standard input (e.g. `netmargin order ... | netmargin fill --order - ...`)."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    parser.add_argument("--order", required=True, metavar="FILE",
                        help="the order's JSON file (written by `netmargin order`), or - for stdin")
    parser.add_argument("--size", type=float, default=None,
                        help="contracts to take (default: all that is left)")
    parser.add_argument("--yes", action="store_true",
                        help="fill even if the price is far from the mark")
    add_chain_arguments(parser)


def read_order(path: str):
    from offchain.chain.client import SignedOrder
    from offchain.errors import UserError
    if path == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise UserError("--order -: nothing on standard input; pipe an order's JSON in")
        return SignedOrder.from_json(text, "--order (stdin)")
    return SignedOrder.load(path)


def run(args) -> int:
    from offchain.commands._support import client
    from offchain.errors import UserError

    signed = read_order(args.order)
    c = client(args, sign=True)
    size_wad, warning = c.check_fill(signed, args.size)
    if warning and not args.yes:
        raise UserError(f"price check: {warning}. Pass --yes if you mean it")
    receipt = c.fill(signed, size_wad / 10**18, accept_far_price=True)
    o = signed.order
    name = c.instrument(o.instrument_id).name
    side = "sold" if o.is_buy else "bought"
    print(f"{side} {size_wad / 10**18:g} {name} at {o.limit_price_wad / 10**18:,.2f} "
          f"(block {receipt['blockNumber']})")
    return 0

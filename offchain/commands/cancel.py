"""`netmargin cancel --order FILE --account ALIAS`: cancel one of your signed orders."""

from __future__ import annotations

DESCRIPTION = """\
Cancel the unfilled part of an order you signed with `netmargin order`. Parts already
filled stay filled. `--order -` reads the order from standard input."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    parser.add_argument("--order", required=True, metavar="FILE",
                        help="the order's JSON file (written by `netmargin order`), or - for stdin")
    add_chain_arguments(parser)


def run(args) -> int:
    from offchain.commands._support import client
    from offchain.commands.fill import read_order

    signed = read_order(args.order)
    c = client(args, sign=True)
    status = c.order_status(signed)
    receipt = c.cancel(signed)
    print(f"cancelled: {status.remaining:g} of {status.size:g} were still open "
          f"(block {receipt['blockNumber']})")
    return 0

"""`netmargin instruments`: every listed instrument with its id, name and the oracle's mark."""

from __future__ import annotations

import json

DESCRIPTION = """\
List every instrument the engine trades: its id, its name (BTC-PERP, BTC-20240628 for a
future, BTC-20240628-70000-C for a call, ...-P for a put), expiry and the oracle's current
mark. Names and ids are interchangeable wherever a command takes an instrument."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser, wallet=False)
    parser.add_argument("--underlying", help="only this underlying, e.g. BTC")
    parser.add_argument("--all", action="store_true", help="include expired and delisted ones")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    import math

    from offchain.commands._support import client, day

    c = client(args)
    now = c.now()
    rows = [i for i in c.instruments()
            if (args.all or (i.active and not i.expired(now)))
            and (not args.underlying or i.underlying.upper() == args.underlying.upper())]
    if args.json:
        print(json.dumps([i.as_dict() for i in rows], indent=2))
        return 0
    if not rows:
        print("no instruments" + (" (try --all)" if not args.all else ""))
        return 0
    print(f"{'id':>4}  {'name':26s} {'kind':9s} {'expiry (UTC)':16s} {'mark':>14s}")
    for i in rows:
        mark = "not posted" if math.isnan(i.mark) else f"{i.mark:,.2f}"
        state = "" if i.active and not i.expired(now) else ("  expired" if i.expired(now) else "  delisted")
        print(f"{i.id:>4}  {i.name:26s} {i.kind_name:9s} {day(i.expiry) if i.expiry else '-':16s} "
              f"{mark:>14s}{state}")
    return 0

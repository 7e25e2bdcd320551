"""`netmargin positions (--address A | --account ALIAS)`: an account's book read from chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime

DESCRIPTION = """\
An account's positions at the oracle's marks, its cash, equity, initial and maintenance
margin, how much it may withdraw now, and whether it can be liquidated. Read-only: no
passphrase is asked (--account only looks up the alias's address)."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments, add_who_arguments
    add_chain_arguments(parser, wallet=False)
    add_who_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from offchain.commands._support import client, who

    c = client(args)
    s = c.account(who(args))
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
        return 0
    print(f"account {s.address}")
    if s.positions:
        print(f"  {'instrument':26s} {'size':>12s} {'mark':>12s} {'value':>14s}")
        for p in s.positions:
            print(f"  {p.instrument.name:26s} {p.size:12,.4f} {p.instrument.mark:12,.2f} {p.value:14,.2f}")
    else:
        print("  no positions")
    print(f"cash                  {s.cash:14,.2f}")
    print(f"equity                {s.equity:14,.2f}")
    print(f"initial margin        {s.initial_margin:14,.2f}")
    print(f"maintenance margin    {s.maintenance_margin:14,.2f}")
    if s.margin_basis_timestamp:
        basis = datetime.fromtimestamp(s.margin_basis_timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"margins as of         {basis}   (the applied leaf's root, plus every trade since)")
    note = f"   ({s.withdraw_blocked})" if s.withdraw_blocked else ""
    print(f"available to withdraw {s.available_to_withdraw:14,.2f}{note}")
    if s.positions:
        ratio = s.equity / s.maintenance_margin if s.maintenance_margin else float("inf")
        state = ("LIQUIDATABLE: equity is below maintenance margin" if s.liquidatable
                 else "healthy")
        print(f"health: {state} (equity / maintenance margin = {ratio:.2f})")
    return 0

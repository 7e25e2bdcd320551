"""The `netmargin` command: a thin dispatcher over offchain/commands/<name>.py.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`, and is imported
only when invoked so `netmargin margin` never pays for importing ape.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from offchain.errors import UserError

# name -> (module, one-line help). Modules live in offchain/commands/.
COMMANDS: dict[str, tuple[str, str]] = {
    "margin": ("margin", "margin report for a book JSON file"),
    "backtest": ("backtest", "backtest the margin model on the shipped BTC/ETH daily history"),
    "demo": ("demo", "devnet demo: deploy, five books, keeper through a historical crash"),
    "keeper": ("keeper", "run the keeper bot (--config FILE)"),
    "deposit": ("deposit", "deposit collateral into the engine"),
    "withdraw": ("withdraw", "withdraw collateral (refused below initial margin)"),
    "order": ("order", "sign a maker order and write it as JSON"),
    "fill": ("fill", "fill a maker's signed order as taker"),
    "positions": ("positions", "show an account's positions, equity and margins"),
    "report": ("report", "margin report of an on-chain account, with a P&L chart"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netmargin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (_module, help_text) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(f"offchain.commands.{_module}")
            module.add_arguments(cmd_parser)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"offchain.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"netmargin {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

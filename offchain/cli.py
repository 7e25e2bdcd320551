"""The `netmargin` command: a thin dispatcher over offchain/commands/<name>.py.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`, and is imported
only when invoked so `netmargin margin` never pays for importing ape.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from offchain.errors import UserError

DESCRIPTION = "netmargin: portfolio margin for on-chain crypto derivatives."
EPILOG = """\
Commands that talk to a chain read the node URL from --rpc (or NETMARGIN_RPC) and the
MarginEngine address from --engine (or NETMARGIN_ENGINE). Commands that sign use an ape
account (--account ALIAS; passphrase from NETMARGIN_PASSPHRASE or a prompt); read-only
commands never ask for one. Instruments are accepted by id or by name (see `instruments`).
Run `netmargin COMMAND --help` for a command's options."""

# name -> (module, one-line help). Modules live in offchain/commands/.
COMMANDS: dict[str, tuple[str, str]] = {
    "margin": ("margin", "margin of a book in a JSON file: portfolio vs isolated vs cross, no chain needed"),
    "backtest": ("backtest", "how often the margin model covered next-day losses on BTC/ETH history"),
    "demo": ("demo", "a local chain, six traders and the keeper through a historical crash and a calm week"),
    "keeper": ("keeper", "run the keeper bot (prices, epoch roots, liquidations, settlement)"),
    "devnet": ("devnet", "local chain, system, keeper, API and web app, until Ctrl-C"),
    "instruments": ("instruments", "list tradable instruments with their names and marks"),
    "deposit": ("deposit", "deposit collateral into your account"),
    "withdraw": ("withdraw", "withdraw collateral (the engine refuses to go below initial margin)"),
    "order": ("order", "sign a maker order and write it as a JSON file"),
    "fill": ("fill", "take (fill) a maker's signed order"),
    "cancel": ("cancel", "cancel one of your signed orders"),
    "positions": ("positions", "an account's positions, equity, margins and what it may withdraw"),
    "history": ("history", "an account's fills, liquidations, settlements, deposits and withdrawals"),
    "report": ("report", "an account's margin report: scenarios, binding loss, chart"),
    "rebuild": ("rebuild", "rebuild an epoch root from the chain and the params file, compare with the posted one"),
    "verify": ("verify", "rebuild the epoch and check one account's leaf (and the keeper's) field by field"),
    "watch": ("watch", "rebuild every newly posted epoch root; metrics, /health, alarm on a false leaf"),
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("netmargin")
    except PackageNotFoundError:  # run from a checkout without `pip install -e .`
        import tomllib

        from offchain.paths import REPO_ROOT
        return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netmargin", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"netmargin {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text[0].upper()
                                    + help_text[1:] + ".")
        if name == chosen:
            module = importlib.import_module(f"offchain.commands.{module_name}")
            cmd_parser.description = getattr(module, "DESCRIPTION", cmd_parser.description)
            cmd_parser.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(cmd_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen = chosen if chosen in COMMANDS else None
    try:
        args = build_parser(chosen).parse_args(argv)
        module = importlib.import_module(f"offchain.commands.{COMMANDS[args.command][0]}")
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except UserError as exc:
        print(f"netmargin {chosen or ''}: error: {exc}".replace("  ", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (`| head`) left: say nothing, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`netmargin demo`: start Anvil, deploy, open six typical books, run the keeper through a
historical crash and a calm week, print and write the report (reports/demo-<crash>.md + PNG charts)."""

from __future__ import annotations

from pathlib import Path

from offchain.paths import DATA_DIR

DESCRIPTION = """\
The main job, on a local Anvil chain: deploy the contracts, open six typical books
(described in words), run the keeper while replaying a historical crash from the shipped
daily history, then the same books through a calm week for contrast. Prints each trader's
capital under isolated, cross and portfolio margin, every liquidation and why, each trader's
outcome, and the funds identity; writes reports/demo-<crash>.md with charts. About a minute."""


def add_arguments(parser) -> None:
    parser.add_argument("--crash", default="2020-03",
                        help="replay window: 2020-03 (default), 2021-05, 2022-06 or 2022-11")
    parser.add_argument("--start", help="custom window start YYYY-MM-DD (with --end)")
    parser.add_argument("--end", help="custom window end YYYY-MM-DD (with --start)")
    parser.add_argument("--step-hours", type=float, default=2.0,
                        help="chain time between keeper cycles (default 2)")
    parser.add_argument("--data-dir", default=str(DATA_DIR),
                        help="folder with BTC-USD.csv and ETH-USD.csv (default: the data/ folder shipped with the project)")
    parser.add_argument("--out", default="reports", help="report folder (default reports/)")
    parser.add_argument("--log", choices=("quiet", "text", "json"), default="quiet",
                        help="keeper logs on stderr (default quiet)")
    parser.add_argument("--no-calm", action="store_true",
                        help="skip the calm week replayed after the crash for contrast")


def run(args) -> int:
    from offchain.devnet.demo import run_demo
    from offchain.devnet.demo_report import print_summary, write_report
    from offchain.keeper.logs import setup_logging

    setup_logging("text" if args.log == "quiet" else args.log,
                  "WARNING" if args.log == "quiet" else "INFO")
    result = run_demo(args.crash, args.data_dir, args.step_hours, args.start, args.end,
                      progress=lambda line: print(line, flush=True), calm=not args.no_calm)
    print_summary(result)
    path = write_report(result, Path(args.out))
    print(f"\nreport: {path}")
    windows = [result] + ([result.calm] if result.calm else [])
    return 0 if all(w.funds.get("reconciled") for w in windows) else 1

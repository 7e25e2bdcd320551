"""`netmargin backtest [--params FILE] [--data DIR] [--json] [--chart PNG]`: how often the
maintenance (and initial) margin of the reference books covered the realised loss over 1 and
2 days on the historical closes, the worst miss and its date, and a calibration chart.
Data dir: --data, else $NETMARGIN_DATA, else the data/ folder shipped with the project."""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np

from offchain.errors import UserError
from offchain.paths import DATA_DIR, REPO_ROOT
from offchain.risk import load_params
from offchain.risk.backtest import run_backtest, tail_frequency

DEFAULT_DATA = DATA_DIR
DEFAULT_CHART = REPO_ROOT / "reports" / "backtest-calibration.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None,
                        help="parameter set: bundled name (default-v2, default-v1, span16-v1) "
                             "or JSON path")
    parser.add_argument("--data", default=None,
                        help="directory of <ASSET>-USD.csv files (default: $NETMARGIN_DATA or "
                             "the data/ folder shipped with the project)")
    parser.add_argument("--rate", type=float, default=0.05, help="rate for futures (default 0.05)")
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    parser.add_argument("--chart", default=str(DEFAULT_CHART),
                        help=f"calibration chart PNG to write (default {DEFAULT_CHART.relative_to(REPO_ROOT)}; "
                             "'' for none)")


def read_closes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Date and Close columns of a Yahoo-style CSV, skipping rows without a price."""
    dates, closes = [], []
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "Date" not in reader.fieldnames \
                    or "Close" not in reader.fieldnames:
                raise UserError(f"{path}: header must include Date and Close, got "
                                f"{reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                if row["Close"] in ("", "null"):
                    continue
                try:
                    close = float(row["Close"])
                    date = np.datetime64(row["Date"], "D")
                except ValueError as exc:
                    raise UserError(f"{path}:{line}: bad Date/Close {row['Date']!r}, "
                                    f"{row['Close']!r}") from exc
                if close <= 0:
                    raise UserError(f"{path}:{line}.Close: must be > 0, got {close}")
                dates.append(date)
                closes.append(close)
    except OSError as exc:
        raise UserError(f"--data: cannot read {path}: {exc.strerror}") from exc
    order = np.argsort(np.array(dates))
    return np.array(dates)[order], np.array(closes)[order]


def load_series(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = sorted(data_dir.glob("*-USD.csv")) if data_dir.is_dir() else []
    if not files:
        raise UserError(f"--data: no <ASSET>-USD.csv files in {str(data_dir)!r}")
    return {f.name.split("-")[0]: read_closes(f) for f in files}


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    data_dir = Path(args.data or os.environ.get("NETMARGIN_DATA") or DEFAULT_DATA)
    series = load_series(data_dir)
    for name, (dates, _) in series.items():
        if len(dates) < 40:
            raise UserError(f"--data: {name} has {len(dates)} days, need at least 40")
    rows = run_backtest(params, series, rate=args.rate)
    chart = None
    if args.chart:
        from offchain.commands.backtest_chart import calibration_chart
        chart = calibration_chart(params, series, Path(args.chart), rate=args.rate)
    if args.json:
        print(json.dumps({"params": params.label, "params_hash": params.hash, "chart": chart,
                          "rows": rows}, indent=2))
        return 0
    print(f"MM backtest over 1 and 2 days, params {params.label} ({params.hash[:18]}...), "
          f"data {data_dir}")
    print(f"{'book':<46} {'assets':<8} {'h':>2} {'days':>5} {'MM cov':>7} {'IM cov':>7} "
          f"{'mean MM':>8} {'worst loss/MM':>13}  worst day")
    for r in rows:
        print(f"{r['book']:<46} {r['assets']:<8} {r['horizon_days']:>2} {r['days']:>5} "
              f"{r['coverage']:>7.2%} {r['im_coverage']:>7.2%} {r['mean_mm_pct_notional']:>8.1%} "
              f"{r['worst_loss_over_mm']:>13.2f}  {r['worst_day']} "
              f"({-r['worst_day_loss_pct']:+.1%} of notional)")
    print("\nshare of days with |1-day move| above:")
    for name, (_, close) in series.items():
        freq = tail_frequency(close, (0.10, 0.16, 0.18, 0.25, 0.33))
        print(f"  {name}: " + ", ".join(f">{t:.0%}: {f:.2%}" for t, f in freq.items()))
    if chart:
        print(f"\ncalibration chart: {chart}")
    return 0

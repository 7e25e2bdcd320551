"""Backtest maths on synthetic paths with known answers, and the CLI on real and synthetic data."""

import json

import numpy as np
import pytest

from offchain.cli import main
from offchain.paths import DATA_DIR
from offchain.risk import load_params
from offchain.risk.backtest import REFERENCE_BOOKS, backtest_book, realised_vol


def _path(n=120, crash_day=80, crash=-0.30, seed=1):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.02, n - 1)
    r[crash_day - 1] = crash
    close = 30000 * np.concatenate([[1.0], np.cumprod(1 + r)])
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + n)
    return dates, close


def test_realised_vol__window__matches_numpy_std():
    _, close = _path()
    rv = realised_vol(close, 30)
    r = np.diff(np.log(close))
    assert np.isnan(rv[:30]).all()
    assert np.isclose(rv[45], np.std(r[15:45], ddof=1) * np.sqrt(365))


def test_backtest_book__long_perp_through_30pct_crash__exactly_one_breach():
    dates, close = _path()
    legs = REFERENCE_BOOKS["naked long perp"][1]
    params = load_params()
    row = backtest_book(params, ("BTC",), dates, close[:, None], legs)
    assert row["breaches"] == 1 and row["worst_day"] == str(dates[80])
    c = params.underlying("BTC")
    roll = c["basis_rate_per_sqrt_year"] * np.sqrt(c["basis_min_days"] / 365)
    assert row["worst_loss_over_mm"] == pytest.approx(0.30 / (c["price_range"] + roll), rel=1e-9)


def test_backtest_book__short_perp_through_crash__never_breached():
    dates, close = _path()
    row = backtest_book(load_params(), ("BTC",), dates, close[:, None],
                        REFERENCE_BOOKS["naked short perp"][1])
    assert row["breaches"] == 0 and row["coverage"] == 1.0


def _write_csv(path, dates, close):
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    lines += [f"{d},{c},{c},{c},{c},{c},1" for d, c in zip(dates, close, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_backtest_cli__env_data_dir__prints_json_rows(tmp_path, monkeypatch, capsys):
    dates, close = _path()
    _write_csv(tmp_path / "BTC-USD.csv", dates, close)
    _write_csv(tmp_path / "ETH-USD.csv", dates, close * 0.05)
    monkeypatch.setenv("NETMARGIN_DATA", str(tmp_path))
    chart = tmp_path / "out" / "calibration.png"
    assert main(["backtest", "--json", "--chart", str(chart)]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert out["chart"] == str(chart) and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {r["horizon_days"] for r in rows} == {1, 2}
    assert {r["book"] for r in rows} == set(REFERENCE_BOOKS)
    spread = next(r for r in rows if r["assets"] == "BTC/ETH")
    assert spread["breaches"] == 0   # identical paths: the spread never moves


def test_backtest_cli__empty_data_dir__exits_2_naming_option(tmp_path, capsys):
    assert main(["backtest", "--data", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err


def test_backtest_cli__shared_data__covers_most_days_and_flags_march_2020(capsys):
    assert main(["backtest", "--data", str(DATA_DIR), "--chart", ""]) == 0
    out = capsys.readouterr().out
    assert "naked long perp" in out and "2020-03-12" in out and "BTC/ETH" in out

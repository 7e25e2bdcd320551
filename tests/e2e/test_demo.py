"""The demo's story on a short crash window (2020-03-11 .. 2020-03-14, a cycle every 6 h):
books described in words, a cross-margin column that differs from isolated, the withdrawal
check refused then allowed, liquidations and outcomes by name, charts written."""

from __future__ import annotations

import re

import pytest

from offchain.devnet.demo import TRADERS, run_demo
from offchain.devnet.demo_report import print_summary, write_report


@pytest.fixture(scope="module")
def demo():
    lines: list[str] = []
    result = run_demo(start="2020-03-11", end="2020-03-14", step_hours=6, calm=False,
                      progress=lines.append)
    return result, lines


def test_run_demo__short_crash__every_book_described_and_outcome_by_name(demo):
    r, _ = demo
    assert set(r.descriptions) == set(TRADERS) == set(r.outcomes)
    assert all(len(text) > 60 for text in r.descriptions.values())
    assert r.liquidations and all(not x["account"].startswith("0x") for x in r.liquidations)
    hit = {x["account"] for x in r.liquidations}
    assert all(r.outcomes[n]["liquidations"] > 0 and r.outcomes[n]["discounts"] > 0 for n in hit)
    assert all(re.fullmatch(r"[+-][\d.,e+-]+ [A-Z]+-[A-Z0-9-]+", h) for h in r.keeper_holds)
    assert r.funds["reconciled"]


def test_run_demo__margin_roots__every_root_with_its_public_data_liquidations_on_fresh_leaves(demo):
    r, _ = demo
    assert len(r.roots) >= 2 and all(x["state_block"] is not None for x in r.roots)
    assert [x["epoch"] for x in r.roots] == list(range(1, len(r.roots) + 1))
    assert r.roots[-1]["accounts"] >= len(TRADERS) + 1     # the traders and the dealer
    assert r.keeper_stats.get("root:ok", 0) == len(r.roots)
    assert r.keeper_stats.get("apply_leaf:ok", 0) > 0       # before liquidating


def test_run_demo__basis_trade__cross_margin_nets_the_linear_legs(demo):
    c = demo[0].capital["basis_trade"]
    # the legs net to ~0 under both, so allow a cent: float64 sums differ by ~1e-13 USD from
    # one CPU's vectorised exp/log to another's
    assert c["cross"] < 0.2 * c["isolated"] and c["portfolio"] <= c["cross"] * 1.01 + 0.01
    assert demo[0].capital["market_maker"]["portfolio"] < demo[0].capital["market_maker"]["cross"]


def test_run_demo__withdrawal_check__refused_then_allowed(demo):
    w = demo[0].withdrawal_check
    assert "below initial margin" in w["refused_with"] and float(w["allowed"].replace(",", "")) > 0


def test_run_demo__progress__a_line_per_replayed_day(demo):
    days = [line for line in demo[1] if "liquidations so far" in line]
    assert len(days) == 3 and "2020-03-13 00:00" in days[1]


def test_print_summary_and_write_report__names_not_addresses__charts_written(demo, tmp_path):
    r, _ = demo
    out: list[str] = []
    print_summary(r, out.append)
    text = "\n".join(out)
    assert "0x" not in text and "refused by the engine" in text and "was allowed" in text
    assert "Why accounts get liquidated" in text and "Each trader's outcome" in text
    path = write_report(r, tmp_path)
    assert (tmp_path / "demo-2020-03-11_2020-03-14-prices.png").stat().st_size > 10_000
    report = path.read_text()
    assert "## Each trader's outcome" in report and "## Margin roots" in report
    assert f"posted {len(r.roots)} margin roots" in report

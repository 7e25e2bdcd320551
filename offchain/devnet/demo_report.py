"""Print the demo's result and write it as markdown with PNG charts (reports/ is gitignored)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from offchain.devnet.demo import DemoResult  # noqa: E402


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def capital_table(r: DemoResult) -> list[str]:
    rows = ["| trader | isolated | cross | portfolio | portfolio / isolated | collateral kept |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, c in r.capital.items():
        ratio = c["portfolio"] / c["isolated"] if c["isolated"] else float("nan")
        rows.append(f"| {name} | {c['isolated']:,.0f} | {c['cross']:,.0f} | {c['portfolio']:,.0f} "
                    f"| {ratio:.0%} | {c['collateral']:,.0f} |")
    return rows


def liquidation_table(r: DemoResult) -> list[str]:
    if not r.liquidations:
        return ["No liquidations."]
    rows = ["| when (UTC) | account | slice | slice value | discount | to insurance | liquidator pays | liquidator |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for x in r.liquidations:
        rows.append(f"| {x['time']} | {x['account']} | {x['fraction']:.1%} | {x['slice_value']:,.2f} "
                    f"| {x['discount']:,.2f} | {x['insurance']:,.2f} | {x['payment']:,.2f} | {x['liquidator']} |")
    return rows


def funds_lines(r: DemoResult) -> list[str]:
    f = r.funds
    return [
        f"- token balance held by the engine: {f['token_balance']:,.6f}",
        f"- sum of account cash ({f['accounts']} accounts): {f['sum_cash']:,.6f}",
        f"- insurance fund: {f['insurance_fund']:,.6f}",
        f"- taker fees: {f['fees']:,.6f}",
        f"- socialised loss: {f['socialised_loss']:,.6f}",
        f"- net settlement/funding credits (external P&L): {f['external_pnl']:,.6f}",
        f"- balance + external P&L + socialised - (cash + insurance + fees) = "
        f"{f['difference_wad']} wei -> **{'reconciled' if f['reconciled'] else 'NOT RECONCILED'}**",
    ]


def print_summary(r: DemoResult, out=print) -> None:
    out(f"\nnetmargin demo: {r.crash} ({_day(r.start)} .. {_day(r.end)}), {r.seconds:.0f} s\n")
    out("Capital each trader needs at the open (USD, initial margin):")
    for line in capital_table(r):
        out("  " + line)
    out(f"\nLiquidations ({len(r.liquidations)}):")
    for line in liquidation_table(r):
        out("  " + line)
    out(f"\nExpiry settlements: {len(r.settlements)}")
    w = r.withdrawal_check
    if w:
        after = (f"{w['allowed']} above 1.25 x IM allowed after attestation" if "allowed" in w
                 else "its equity was already below 1.25 x IM, so nothing more was withdrawn")
        out(f"Withdrawal check ({w['trader']}): {w['attempt']} refused ({w['refused_with']}); {after}")
    out("\nFunds:")
    for line in funds_lines(r):
        out("  " + line)


def write_report(r: DemoResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = r.crash.replace("..", "_")
    charts = {
        "capital": _chart_capital(r, out_dir / f"demo-{tag}-capital.png"),
        "prices": _chart_prices(r, out_dir / f"demo-{tag}-prices.png"),
        "health": _chart_health(r, out_dir / f"demo-{tag}-health.png"),
    }
    lines = [f"# netmargin demo: {r.crash}", "",
             f"Replay of {_day(r.start)} .. {_day(r.end)} from the shipped daily history on a local Anvil chain, "
             f"the keeper running every step; {r.seconds:.0f} s end to end.", "",
             "Contracts: " + ", ".join(f"{k} `{v}`" for k, v in r.addresses.items()), "",
             "## Capital needed at the open", "",
             "Initial margin of each book under isolated (every leg alone), cross (legs netted "
             "per instrument, collateral pooled) and portfolio margin (worst scenario loss of the "
             "whole book); each trader then kept "
             "1.25 x its portfolio margin as collateral.", "",
             *capital_table(r), "", f"![capital]({charts['capital'].name})", "",
             "## Liquidations", "", *liquidation_table(r), "",
             f"![prices]({charts['prices'].name})", "", f"![health]({charts['health'].name})", "",
             "## Expiry settlements", "",
             "| account | instrument | size | settlement price | payoff credited |",
             "| --- | ---: | ---: | ---: | ---: |",
             *[f"| {s['account']} | {s['instrument_id']} | {s['size']:+g} | {s['price']:,.2f} | {s['payoff']:,.2f} |"
               for s in r.settlements], "",
             "## Funds", "", *funds_lines(r), "",
             "## Keeper actions", "",
             *[f"- {k}: {int(v)}" for k, v in sorted(r.keeper_stats.items())], ""]
    w = r.withdrawal_check
    if w:
        lines += ["## Withdrawal check", "",
                  f"{w['trader']} tried to withdraw {w['attempt']} (all its equity): refused with "
                  f"`{w['refused_with']}`; "
                  + (f"withdrawing {w['allowed']} down to 1.25 x IM was allowed." if "allowed" in w
                     else "its equity was already below 1.25 x IM, so nothing more was withdrawn."),
                  ""]
    path = out_dir / f"demo-{tag}.md"
    path.write_text("\n".join(lines))
    return path


def _chart_capital(r: DemoResult, path: Path) -> Path:
    names = list(r.capital)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (key, label) in enumerate((("isolated", "isolated"), ("cross", "cross"),
                                      ("portfolio", "portfolio"))):
        ax.bar(x + (k - 1) * 0.27, [r.capital[n][key] for n in names], 0.27, label=label)
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel("initial margin, USD")
    ax.set_title("Capital needed at the open")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _chart_prices(r: DemoResult, path: Path) -> Path:
    t = r.timeline
    days = (t["time"] - r.start) / 86_400
    fig, ax = plt.subplots(figsize=(8, 4))
    for j, name in enumerate(("BTC", "ETH")):
        ax.plot(days, t["spot"][:, j] / t["spot"][0, j], label=name)
    for x in r.liquidations:
        ts = datetime.strptime(x["time"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()
        ax.axvline((ts - r.start) / 86_400, color="red", alpha=0.25, lw=1)
    ax.set_xlabel(f"days since {_day(r.start)}")
    ax.set_ylabel("price / first price")
    ax.set_title("Replayed prices (red: liquidations)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _chart_health(r: DemoResult, path: Path) -> Path:
    t = r.timeline
    days = (t["time"] - r.start) / 86_400
    fig, ax = plt.subplots(figsize=(8, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t["mm"] > 0, t["equity"] / t["mm"], np.nan)
    for j, name in enumerate(t["names"]):
        ax.plot(days, ratio[:, j], label=name)
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.set_ylim(0, min(10, np.nanmax(ratio) * 1.1) if np.isfinite(ratio).any() else 10)
    ax.set_xlabel(f"days since {_day(r.start)}")
    ax.set_ylabel("equity / maintenance margin")
    ax.set_title("Account health (below 1: liquidatable)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

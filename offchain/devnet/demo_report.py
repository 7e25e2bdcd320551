"""Print the demo's result and write it as markdown with PNG charts (reports/ is gitignored).

The story, in order: who the traders are and what their books hold (in words), the capital
each needs under isolated, cross and portfolio margin, the withdrawal check (refused, then
allowed), why and when accounts were liquidated, each trader's outcome by name, the calm
week for contrast, and the funds identity.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from offchain.devnet.demo import COLLATERAL_MULTIPLE, DemoResult  # noqa: E402

USD = FuncFormatter(lambda v, _: f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}")
WHY_LIQUIDATED = (
    f"Every trader kept {COLLATERAL_MULTIPLE:g} x its initial margin (IM) as collateral and never "
    "added any. Maintenance margin (MM) is a fraction of IM, so a loss that eats the "
    f"{COLLATERAL_MULTIPLE - 1:.0%} buffer and the gap between IM and MM leaves equity below MM: "
    "the account is then liquidatable, and the keeper takes the same fraction of every position "
    "(hedges stay intact), just enough to restore a buffer above MM, at a small discount that "
    "partly funds the insurance fund.")
CROSS_MEANS = ("isolated: every position margined alone; cross: collateral pooled and the futures "
               "and perpetuals of one underlying netted, options still alone; portfolio: the worst "
               "scenario loss of the whole book.")


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _when(ts: int | float) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def book_lines(r: DemoResult) -> list[str]:
    return [f"- **{name}** {text}" for name, text in r.descriptions.items()]


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
    rows = ["| when (UTC) | account | slice of its book | slice value | discount | to insurance | liquidator pays | liquidator |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for x in r.liquidations:
        rows.append(f"| {x['time']} | {x['account']} | {x['fraction']:.1%} | {x['slice_value']:,.2f} "
                    f"| {x['discount']:,.2f} | {x['insurance']:,.2f} | {x['payment']:,.2f} | {x['liquidator']} |")
    return rows


def outcome_lines(r: DemoResult) -> list[str]:
    rows = ["| trader | equity kept at the open | final equity | P&L | liquidations | book taken | discounts paid | holds now |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, o in r.outcomes.items():
        taken = f"{o['taken']:.0%} by {', '.join(o['liquidators'])}" if o["liquidations"] else "-"
        holds = ", ".join(o["holds"]) or "nothing (settled or flat)"
        rows.append(f"| {name} | {o['start_equity']:,.0f} | {o['final_equity']:,.0f} | {o['pnl']:+,.0f} "
                    f"| {o['liquidations']} | {taken} | {o['discounts']:,.2f} | {holds} |")
    return rows


def keeper_line(r: DemoResult) -> str:
    if not r.keeper_holds:
        return "The keeper, which took every liquidated slice, holds nothing at the end."
    return ("The keeper took every liquidated slice and now holds: " + ", ".join(r.keeper_holds)
            + " (it paid the slices' mark value less the discount; expired legs were settled).")


def root_lines(r: DemoResult) -> list[str]:
    """The keeper's epoch roots: one signed message re-margins every account."""
    if not r.roots:
        return ["The keeper posted no margin root."]
    published = sum(1 for x in r.roots if x["state_block"] is not None)
    out = [f"The keeper posted {len(r.roots)} margin roots: each one signed message re-margins every "
           f"account ({r.roots[-1]['accounts']} leaves in the last), whatever their number, and "
           f"{published} of them carry their public data (state block and market inputs) so anyone "
           "can rebuild every leaf. Accounts apply their own leaf when they withdraw; the keeper "
           "applies a victim's newest leaf just before liquidating it.", "",
           "| epoch | signed at | block | accounts | leaves built on block |",
           "| ---: | --- | ---: | ---: | ---: |"]
    shown = r.roots if len(r.roots) <= 12 else r.roots[:6] + r.roots[-6:]
    for x in shown:
        out.append(f"| {x['epoch']} | {x['time']} | {x['block']} | {x['accounts']} | {x['state_block']} |")
    return out


def withdrawal_line(r: DemoResult) -> str:
    w = r.withdrawal_check
    if not w:
        return ""
    after = (f"then withdrawing {w['allowed']} (down to {COLLATERAL_MULTIPLE:g} x IM) was allowed"
             if "allowed" in w else
             f"its equity was already below {COLLATERAL_MULTIPLE:g} x IM, so nothing more was withdrawn")
    reason = w["refused_with"].removeprefix("execution reverted: ")
    return (f"Withdrawal check ({w['trader']}): withdrawing all its equity ({w['attempt']}) was "
            f"refused by the engine (`{reason}`); {after}.")


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


def calm_lines(r: DemoResult) -> list[str]:
    c = r.calm
    if c is None:
        return []
    worst = min(c.outcomes.items(), key=lambda kv: kv[1]["pnl"])
    return [f"The same six books through a calm week ({_day(c.start)} .. {_day(c.end)}): "
            f"{len(c.liquidations)} liquidation(s); the worst P&L was {worst[0]}'s "
            f"{worst[1]['pnl']:+,.0f}. Funds {'reconciled' if c.funds.get('reconciled') else 'NOT RECONCILED'}."]


def print_summary(r: DemoResult, out=print) -> None:
    out(f"\nnetmargin demo: {r.crash} ({_day(r.start)} .. {_day(r.end)}), {r.seconds:.0f} s\n")
    out("The traders:")
    for line in book_lines(r):
        out("  " + line.replace("**", ""))
    out(f"\nCapital each trader needs at the open (USD, initial margin; {CROSS_MEANS})")
    for line in capital_table(r):
        out("  " + line)
    out("\n" + withdrawal_line(r))
    out(f"\nWhy accounts get liquidated: {WHY_LIQUIDATED}")
    out(f"\nLiquidations ({len(r.liquidations)}):")
    for line in liquidation_table(r):
        out("  " + line)
    out(f"\nExpiry settlements: {len(r.settlements)}")
    out("\nEach trader's outcome:")
    for line in outcome_lines(r):
        out("  " + line)
    out(keeper_line(r))
    for line in calm_lines(r):
        out("\nCalm window for contrast: " + line)
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
    if r.calm is not None:
        charts["calm"] = _chart_health(r.calm, out_dir / f"demo-{tag}-calm-health.png")
    lines = [f"# netmargin demo: {r.crash}", "",
             f"Replay of {_day(r.start)} .. {_day(r.end)} from the shipped daily history on a local "
             f"Anvil chain, the keeper running every step; {r.seconds:.0f} s end to end "
             "(calm window included).", "",
             "Contracts: " + ", ".join(f"{k} `{v}`" for k, v in r.addresses.items()), "",
             "## The traders", "", *book_lines(r), "",
             "## Capital needed at the open", "",
             f"Initial margin of each book by method ({CROSS_MEANS}) Each trader then kept "
             f"{COLLATERAL_MULTIPLE:g} x its portfolio margin as collateral.", "",
             *capital_table(r), "", f"![capital]({charts['capital'].name})", "",
             "## Withdrawal check", "", withdrawal_line(r), "",
             "## Liquidations", "", WHY_LIQUIDATED, "", *liquidation_table(r), "",
             f"![prices]({charts['prices'].name})", "", f"![health]({charts['health'].name})", "",
             "## Each trader's outcome", "",
             "P&L is final equity minus the equity kept at the open (after the withdrawal); "
             "discounts are what liquidations cost the trader.", "",
             *outcome_lines(r), "", keeper_line(r), "",
             "## Expiry settlements", "",
             "| account | instrument | size | settlement price | payoff credited |",
             "| --- | ---: | ---: | ---: | ---: |",
             *[f"| {s['account']} | {s['instrument_id']} | {s['size']:+g} | {s['price']:,.2f} | {s['payoff']:,.2f} |"
               for s in r.settlements], ""]
    if r.calm is not None:
        lines += ["## A calm week for contrast", "", *calm_lines(r), "",
                  *outcome_lines(r.calm), "", f"![calm]({charts['calm'].name})", ""]
    lines += ["## Margin roots", "", *root_lines(r), "",
              "## Funds", "", *funds_lines(r), "",
              "## Keeper actions", "",
              *[f"- {k}: {int(v)}" for k, v in sorted(r.keeper_stats.items())], ""]
    path = out_dir / f"demo-{tag}.md"
    path.write_text("\n".join(lines))
    return path


def _chart_capital(r: DemoResult, path: Path) -> Path:
    names = list(r.capital)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for k, key in enumerate(("isolated", "cross", "portfolio")):
        ax.bar(x + (k - 1) * 0.27, [r.capital[n][key] for n in names], 0.27, label=key)
    ax.set_xticks(x, names, rotation=15)
    ax.yaxis.set_major_formatter(USD)
    ax.set_ylabel("initial margin")
    ax.set_title("Capital needed at the open, by margin method")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _liquidation_clusters(r: DemoResult, gap_h: float = 12) -> list[tuple[datetime, datetime, list[str]]]:
    """Liquidations grouped into episodes (no gap above `gap_h` hours): (first, last, names)."""
    out: list[tuple[datetime, datetime, list[str]]] = []
    for x in sorted(r.liquidations, key=lambda x: x["time"]):
        t = datetime.strptime(x["time"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        if out and (t - out[-1][1]).total_seconds() <= gap_h * 3600:
            out[-1] = (out[-1][0], t, out[-1][2] + [x["account"]])
        else:
            out.append((t, t, [x["account"]]))
    return out


def _liquidation_marks(ax, r: DemoResult) -> None:
    """A shaded band per liquidation episode, labelled with how many and whom."""
    for k, (first, last, who) in enumerate(_liquidation_clusters(r)):
        ax.axvspan(first, last + _pad(first, last), color="red",
                   alpha=0.15, lw=0)
        names = sorted(set(who))
        text = f"{len(who)} liquidation{'s' if len(who) > 1 else ''}: " + ", ".join(names)
        ax.annotate(text, (mdates.date2num(first), 0.98 - 0.07 * (k % 3)), xycoords=("data", "axes fraction"),
                    fontsize=7, va="top", ha="left", color="darkred",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.7})


def _pad(first: datetime, last: datetime):
    from datetime import timedelta
    return timedelta(hours=1) if last == first else timedelta(0)


def _chart_prices(r: DemoResult, path: Path) -> Path:
    t = r.timeline
    when = [_when(x) for x in t["time"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(when, t["spot"][:, 0], color="tab:orange", label="BTC")
    ax.yaxis.set_major_formatter(USD)
    ax.set_ylabel("BTC, USD", color="tab:orange")
    ax2 = ax.twinx()
    ax2.plot(when, t["spot"][:, 1], color="tab:blue", label="ETH")
    ax2.yaxis.set_major_formatter(USD)
    ax2.set_ylabel("ETH, USD", color="tab:blue")
    _liquidation_marks(ax, r)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    ax.set_title(f"Replayed prices {_day(r.start)} .. {_day(r.end)} (red bands: liquidations)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _chart_health(r: DemoResult, path: Path) -> Path:
    t = r.timeline
    when = [_when(x) for x in t["time"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t["mm"] > 0, t["equity"] / t["mm"], np.nan)
    for j, name in enumerate(t["names"]):
        ax.plot(when, ratio[:, j], label=name)
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.set_ylim(0, min(8, np.nanmax(ratio) * 1.1) if np.isfinite(ratio).any() else 8)
    _liquidation_marks(ax, r)
    # an x on a trader's own line where it was liquidated
    index = {name: j for j, name in enumerate(t["names"])}
    for x in r.liquidations:
        j = index.get(x["account"])
        ts = datetime.strptime(x["time"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()
        k = int(np.searchsorted(t["time"], ts))
        if j is not None and k < len(when) and np.isfinite(ratio[k, j]):
            ax.scatter([when[k]], [min(ratio[k, j], 7.9)], marker="x", color=f"C{j}", zorder=3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    ax.set_ylabel("equity / maintenance margin")
    ax.set_title(f"Account health {_day(r.start)} .. {_day(r.end)} (below 1: liquidatable; x: liquidated)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""`netmargin report (--address A | --account ALIAS) [--png FILE]`: margin report from chain."""

from __future__ import annotations

import json

DESCRIPTION = """\
Why an account needs the margin it needs: initial margin under isolated, cross and
portfolio margin, the scenario that binds (in words), each position's share of that loss,
the book's P&L in every scenario, and optionally a chart of weighted P&L by price move
against the maintenance margin. Read-only: no passphrase is asked."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments, add_who_arguments
    add_chain_arguments(parser, wallet=False)
    add_who_arguments(parser)
    parser.add_argument("--png", default=None, metavar="FILE",
                        help="also draw the P&L-by-scenario chart into this PNG file")
    parser.add_argument("--vol", action="append", default=[], metavar="UNDERLYING=VOL",
                        help="implied vol of an underlying, e.g. --vol BTC=0.8 (default 0.8); repeatable")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def parse_vols(items: list[str]) -> dict[str, float]:
    from offchain.errors import UserError
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise UserError(f"--vol: must look like BTC=0.8, got {item!r}") from exc
        if not 0 < out[name.strip()] < 10:
            raise UserError(f"--vol: must be between 0 and 10, got {item!r}")
    return out


def scenario_words(b: dict, loss: float) -> str:
    """'BTC falls 30% while implied vol rises (a range scenario, full weight): the book loses 1,234'."""
    move = b["price_move"]
    verb = "falls" if move < 0 else "rises" if move > 0 else "stays put"
    size = f" {abs(move):.0%}" if move else ""
    vol = {"vol up": "implied vol rises", "vol down": "implied vol falls",
           "vol flat": "implied vol is unchanged"}.get(b["vol"], b["vol"])
    weight = ("full weight" if b["weight"] >= 0.999
              else f"its loss counted at {b['weight']:.0%} because a move this large is rarer")
    return (f"{b['underlying']} {verb}{size} while {vol} ({b['kind']} scenario #{b['index']}, "
            f"{weight}): the book would lose {loss:,.2f}")


def weighted_pnl(ex: dict) -> list[float]:
    """The book's P&L per scenario with each underlying's loss weighted as the margin counts
    it (tail moves count at less than full weight)."""
    per_u = ex["underlyings"]
    return [sum(per_u[u]["risk_array"][k] * s["weight"][u] for u in per_u)
            for k, s in enumerate(ex["scenarios"])]


def check_png_path(path: str) -> None:
    from pathlib import Path

    from offchain.errors import UserError
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise UserError(f"--png: the chart is a PNG; give a file name ending in .png, got {path!r}")
    if not p.parent.is_dir():
        raise UserError(f"--png: folder {str(p.parent)!r} does not exist; create it first "
                        f"(mkdir -p {p.parent}) or pick another path")


def run(args) -> int:
    from offchain.commands._support import client, who

    vols = parse_vols(args.vol)
    if args.png:
        check_png_path(args.png)
    c = client(args)
    ex = c.report(who(args), vols)
    if args.json:
        print(json.dumps(ex, indent=2, default=float))
        return 0
    acct = ex["account"]
    b = ex["binding_scenario"]
    unit_loss = ex["underlyings"][b["underlying"]]["worst_loss"]
    iso, cross, pm = ex["isolated_margin"], ex["cross_margin"], ex["portfolio_margin"]
    print(f"margin report for {acct['address']}  (params {ex['params']}, valued {ex['valuation_time']})")
    print("  index prices: " + ", ".join(f"{u} {p:,.2f}" for u, p in ex["spot"].items()))
    print("  initial margin by method:")
    print(f"    isolated  {iso:14,.2f}   every position margined alone")
    print(f"    cross     {cross:14,.2f}   futures and perps of one underlying net, options alone")
    print(f"    portfolio {pm:14,.2f}   worst loss of the whole book"
          + (f"; saves {1 - pm / iso:.0%} vs isolated" if iso > 0 else ""))
    print(f"  maintenance margin (model) {ex['maintenance_margin']:,.2f}; on chain now: initial "
          f"{acct['initial_margin']:,.2f}, maintenance {acct['maintenance_margin']:,.2f}, "
          f"equity {acct['equity']:,.2f}")
    print(f"  binding scenario: {scenario_words(b, unit_loss)}")
    print("  each position's share of that loss:")
    for p, name in zip(ex["positions"], ex["instrument_names"], strict=True):
        print(f"    {name:26s} size {p['size']:10,.4f}  value {p['value']:12,.2f}  "
              f"loss {p['loss_in_binding_scenario']:12,.2f}  share {p['share_of_binding_loss']:6.1%}")
    print("  P&L of the book by scenario (weighted as the margin counts it):")
    u0 = b["underlying"]
    for s, pnl, wpnl in zip(ex["scenarios"], ex["risk_array"], weighted_pnl(ex), strict=True):
        moves = " ".join(f"{u} {m:+.0%}" for u, m in s["price_move"].items())
        w = s["weight"][u0]
        weighted = f"{wpnl:14,.2f}" + (f"  (x{w:.2f} of {pnl:,.2f})" if w < 0.999 else "")
        mark = "  <- binding" if s["index"] == b["index"] else ""
        print(f"    #{s['index']:2d} {s['kind']:6s} {moves:22s} {s['vol']:9s} {weighted}{mark}")
    if args.png:
        write_chart(ex, args.png, acct["address"])
        print(f"  chart: {args.png}")
    return 0


def write_chart(ex: dict, path: str, address: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    b = ex["binding_scenario"]
    u0 = b["underlying"]
    pnl_w = weighted_pnl(ex)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    styles = {"vol up": ("tab:red", "^"), "vol flat": ("tab:gray", "o"), "vol down": ("tab:blue", "v")}
    for vol, (color, marker) in styles.items():
        pts = [(s["price_move"][u0], pnl) for s, pnl in zip(ex["scenarios"], pnl_w, strict=True)
               if s["vol"] == vol and s["kind"] not in ("tail", "extreme")]
        if pts:
            pts.sort()
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker=marker, color=color, lw=1, label=vol)
    tails = [(s["price_move"][u0], pnl, s["weight"][u0])
             for s, pnl in zip(ex["scenarios"], pnl_w, strict=True) if s["kind"] in ("tail", "extreme")]
    for x, y, w in tails:
        ax.scatter([x], [y], color="black", marker="x", zorder=3)
        ax.annotate(f"tail x{w:.2f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    mm = ex["maintenance_margin"]
    ax.axhline(-mm, color="black", ls="--", lw=1, label=f"- maintenance margin ({mm:,.0f})")
    ax.axhline(0, color="gray", lw=0.5)
    bx = b["price_move"]
    by = pnl_w[b["index"]]
    ax.annotate("binding", (bx, by), textcoords="offset points", xytext=(-10, -16), fontsize=8,
                color="tab:red")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}"))
    ax.set_xlabel(f"{u0} price move")
    ax.set_ylabel("weighted P&L of the book, USD")
    ax.set_title(f"P&L by scenario: {address[:10]}...  (margin = worst weighted loss + add-ons)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

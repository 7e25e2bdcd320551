"""`netmargin report (--address A | --account ALIAS) [--png FILE]`: margin report from chain.

Risk array per scenario, the binding scenario, each position's share of the binding loss,
isolated vs cross vs portfolio margin, and a PNG chart of P&L by scenario.
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    from offchain.commands.positions import add_arguments as positions_arguments
    positions_arguments(parser)
    parser.add_argument("--png", default=None, help="write the P&L-by-scenario chart here")
    parser.add_argument("--vol", action="append", default=[],
                        help="implied vol per underlying, e.g. --vol BTC=0.8 (default 0.8)")


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


def run(args) -> int:
    import numpy as np

    from offchain.commands._support import account_book, deployment, describe, risk_engine_for
    from offchain.commands.positions import resolve_address
    from offchain.errors import UserError

    dep = deployment(args)
    book = account_book(dep, resolve_address(args))
    now = dep.w3.eth.get_block("latest")["timestamp"]
    live = [p for p in book["positions"] if p["kind"] == 1 or p["expiry"] > now]
    if not live:
        raise UserError(f"account {book['address']}: no open (unexpired) positions to report on")
    engine = risk_engine_for(dep, live, parse_vols(args.vol), now)
    q = np.asarray([p["size"] for p in live])
    ex = engine.explain(q)
    if args.json:
        print(json.dumps(ex, indent=2, default=float))
        return 0
    print(f"margin report for {book['address']}  ({ex['params']}, at {ex['valuation_time']})")
    print(f"  isolated {ex['isolated_margin']:,.2f}   cross {ex['cross_margin']:,.2f}   "
          f"portfolio {ex['portfolio_margin']:,.2f}   (initial margin)")
    print(f"  maintenance {ex['maintenance_margin']:,.2f}; on chain now: IM {book['im']:,.2f}, "
          f"MM {book['mm']:,.2f}, equity {book['equity']:,.2f}")
    print(f"  binding scenario: {ex['binding_scenario']}")
    print("  positions (share of the binding loss):")
    for p, row in zip(ex["positions"], live, strict=True):
        print(f"    {describe(row):30s} size {p['size']:10,.4f}  value {p['value']:12,.2f}  "
              f"loss {p['loss_in_binding_scenario']:12,.2f}  share {p['share_of_binding_loss']:6.1%}")
    print("  risk array (P&L of the book per scenario):")
    for s, pnl in zip(ex["scenarios"], ex["risk_array"], strict=True):
        moves = " ".join(f"{u} {m:+.1%}" for u, m in s["price_move"].items())
        print(f"    #{s['index']:2d} {s['kind']:8s} {moves:24s} vol {s['vol']!s:6s} {pnl:14,.2f}")
    if args.png:
        write_chart(ex, args.png, book["address"])
        print(f"  chart: {args.png}")
    return 0


def write_chart(ex: dict, path: str, address: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pnl = np.asarray(ex["risk_array"])
    fig, ax = plt.subplots(figsize=(9, 4))
    colors = ["tab:red" if v < 0 else "tab:green" for v in pnl]
    ax.bar(np.arange(len(pnl)), pnl, color=colors)
    ax.axhline(-ex["maintenance_margin"], color="black", ls="--", lw=1, label="- maintenance margin")
    ax.set_xlabel("scenario")
    ax.set_ylabel("P&L, USD")
    ax.set_title(f"P&L by scenario: {address[:10]}...")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

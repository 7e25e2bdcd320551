"""`netmargin margin BOOK.json [--params FILE] [--json] [--trade TRADE.json]`: portfolio margin
of a book, with isolated and cross margin for comparison, the binding scenario and each
position's share; `--trade` adds a what-if for a list of extra positions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from offchain.errors import UserError
from offchain.risk import load_book, load_params, parse_book
from offchain.risk.explain import explain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("book", help="book JSON file (format in docs/risk.md)")
    parser.add_argument("--params", default=None,
                        help="parameter set: bundled name (default-v2, default-v1, span16-v1) or JSON path")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--trade", default=None,
                        help="JSON file with a list of positions to add (what-if)")


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{what}: cannot read {path!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{what}: {path!r} is not UTF-8 text (byte {exc.start}: "
                        f"{exc.object[exc.start:exc.start + 1]!r}), expected a JSON file") from exc


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    text = _read(args.book, "book")
    trade = None
    if args.trade is not None:
        book = load_book(text)  # validates the book alone first, so errors keep its indices
        try:
            extra = json.loads(_read(args.trade, "--trade"))
        except json.JSONDecodeError as exc:
            raise UserError(f"--trade: malformed JSON at line {exc.lineno}: {exc.msg}") from exc
        if not isinstance(extra, list) or not extra:
            raise UserError(f"--trade: must be a non-empty list of positions, got {extra!r}")
        obj = json.loads(text)
        n_book = len(obj["positions"])
        obj["positions"] = obj["positions"] + extra
        book = parse_book(obj)
        trade = np.where(np.arange(len(book.sizes)) >= n_book, book.sizes, 0.0)
        sizes = np.where(np.arange(len(book.sizes)) < n_book, book.sizes, 0.0)
    else:
        book = load_book(text)
        sizes = book.sizes
    result = explain(book.engine(params), sizes, trade)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def render(r: dict) -> str:
    lines = [f"netmargin portfolio margin  params {r['params']} ({r['params_hash'][:18]}...)  "
             f"valued {r['valuation_time']}", ""]
    lines.append(f"{'#':>3} {'underlying':<10} {'kind':<9} {'strike':>10} {'expiry':<20} "
                 f"{'size':>10} {'mark':>12} {'value':>14} {'binding loss':>14} {'share':>7}")
    for p in r["positions"]:
        strike = "" if p["strike"] is None else f"{p['strike']:,.0f}"
        lines.append(f"{p['index']:>3} {p['underlying']:<10} {p['kind']:<9} {strike:>10} "
                     f"{p['expiry'] or '':<20} {p['size']:>10.4g} {p['mark']:>12,.2f} "
                     f"{p['value']:>14,.2f} {p['loss_in_binding_scenario']:>14,.2f} "
                     f"{p['share_of_binding_loss']:>7.1%}")
    c = r["components"]
    lines += ["", f"position value          {r['position_value']:>14,.2f}",
              f"worst scenario loss     {c['worst_loss']:>14,.2f}",
              f"+ roll/basis shock      {c['basis_shock']:>14,.2f}",
              f"+ short-option minimum  {c['short_option_minimum']:>14,.2f}",
              f"+ liquidity shock       {c['liquidity_shock']:>14,.2f}",
              f"= maintenance margin    {r['maintenance_margin']:>14,.2f}",
              f"  initial margin        {r['initial_margin']:>14,.2f}", ""]
    for name, u in r["underlyings"].items():
        g = u["greeks"]
        lines.append(f"{name}: binding {u['binding_scenario']['label']} (#"
                     f"{u['binding_scenario']['index']}), loss {u['worst_loss']:,.2f}; delta "
                     f"{g['delta']:.4g}, gamma {g['gamma']:.3g}, vega {g['vega']:,.2f} per vol point, "
                     f"theta {g['theta']:,.2f} per day")
    lines += render_grid(r)
    iso_, cross, pm = r["isolated_margin"], r["cross_margin"], r["portfolio_margin"]
    lines += ["", "initial margin by method:",
              f"  isolated   {iso_:>14,.2f}",
              f"  cross      {cross:>14,.2f}",
              f"  portfolio  {pm:>14,.2f}   saves {1 - pm / iso_ if iso_ else 0:.1%} vs isolated, "
              f"{1 - pm / cross if cross else 0:.1%} vs cross"]
    if "what_if" in r:
        w = r["what_if"]
        lines += ["", f"what-if: IM {w['initial_margin_before']:,.2f} -> "
                      f"{w['initial_margin_after']:,.2f} ({w['initial_margin_change']:+,.2f}); "
                      f"MM -> {w['maintenance_margin_after']:,.2f} (on-chain bound "
                      f"{w['maintenance_margin_bound']:,.2f})"]
    return "\n".join(lines)


def render_grid(r: dict) -> list[str]:
    """The binding underlying's book P&L as a price x vol table (and its tail moves)."""
    name = r["binding_scenario"]["underlying"]
    g = r["underlyings"][name]["grid"]
    b = r["binding_scenario"]
    lines = ["", f"price x vol grid ({name}, book P&L per scenario; * = binding):",
             f"  {'price move':>10} " + " ".join(f"{c:>14}" for c in g["columns"])]
    for row in g["rows"]:
        cells = []
        for c in g["columns"]:
            v = row[c]
            mark = "*" if (b["kind"] != "tail" and abs(row["price_move"] - b["price_move"]) < 1e-12
                           and c == b["vol"]) else " "
            cells.append(f"{'' if v is None else f'{v:,.2f}':>13}{mark}")
        lines.append(f"  {row['price_move']:>+10.1%} " + " ".join(cells))
    for t in g["tails"]:
        mark = "*" if b["kind"] == "tail" and abs(t["price_move"] - b["price_move"]) < 1e-12 else ""
        lines.append(f"  tail {t['price_move']:>+6.0%}  P&L {t['pnl']:,.2f} counted x{t['weight']:.3f}"
                     f"{mark}")
    return lines

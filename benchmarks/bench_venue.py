"""Venue comparison: initial margin of the five reference hedged books under netmargin's
parameter sets against a Deribit-style portfolio margin (benchmarks/params/deribit-style.json),
at 1 and 25 lots; the naked perps' MM coverage of historical 1- and 2-day moves (both
directions); and the frontier between the IM/MM buffer and the hedged books' IM ratio.

Run: python benchmarks/bench_venue.py [--params default-v2] [--frontier]   (prints its tables)
Targets: every hedged book's IM <= the Deribit-style IM at 1 and 25 lots; a naked BTC or ETH
perp's MM covers >= 99.5% of 1-day and >= 99.0% of 2-day close-to-close moves, each direction."""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np

from offchain.commands.backtest import load_series
from offchain.paths import DATA_DIR
from offchain.risk import (
    Instruments,
    Market,
    RiskEngine,
    UnderlyingMarket,
    load_params,
    params_from_dict,
)
from offchain.risk.explain import explain

T0 = 1718582400.0  # 2024-06-17T00:00:00Z
DAY = 86400.0
SPOT = {"BTC": 65666.19, "ETH": 3510.0}
VOL = 0.5
REFERENCE = Path(__file__).with_name("params") / "deribit-style.json"
TARGETS = {1: 0.995, 2: 0.990}


def _opt(kind, strike, days, size):
    return {"underlying": "BTC", "kind": kind, "strike": strike, "days": days, "size": size}


# the five hedged books (BTC 65,666, vol 50%, rate 0, 30- and 90-day expiries)
BOOKS = {
    "covered call (+1 perp, -1 30d 72k call)":
        [{"underlying": "BTC", "kind": "perpetual", "size": 1.0}, _opt("call", 72000, 30, -1.0)],
    "short strangle (-1 58k put, -1 72k call)":
        [_opt("put", 58000, 30, -1.0), _opt("call", 72000, 30, -1.0)],
    "option calendar (-1 30d, +1 90d 66k call)":
        [_opt("call", 66000, 30, -1.0), _opt("call", 66000, 90, 1.0)],
    "delta-hedged short straddle (30d 66k)":
        [_opt("call", 66000, 30, -1.0), _opt("put", 66000, 30, -1.0),
         {"underlying": "BTC", "kind": "perpetual", "size": "hedge"}],
    "BTC/ETH spread (equal notional perps)":
        [{"underlying": "BTC", "kind": "perpetual", "size": 1.0},
         {"underlying": "ETH", "kind": "perpetual", "size": -SPOT["BTC"] / SPOT["ETH"]}],
}


def book_margin(params, legs, lots: float) -> dict:
    specs = [{k: v for k, v in leg.items() if k not in ("size", "days")}
             | ({"expiry": T0 + leg["days"] * DAY} if "days" in leg else {}) for leg in legs]
    market = Market(T0, {u: UnderlyingMarket(spot=s, rate=0.0, vol=VOL) for u, s in SPOT.items()})
    engine = RiskEngine(params, Instruments.from_specs(specs), market, dtype=np.float64)
    q = np.array([0.0 if leg["size"] == "hedge" else leg["size"] for leg in legs])
    hedge = [i for i, leg in enumerate(legs) if leg["size"] == "hedge"]
    if hedge:
        q[hedge[0]] = -(q @ engine.greeks["delta"])
    return explain(engine, q * lots)


def im_table(sets: dict, lots_list=(1, 25)) -> list[dict]:
    ref = load_params(REFERENCE)
    rows = []
    for name, legs in BOOKS.items():
        for lots in lots_list:
            r = {"book": name, "lots": lots,
                 "reference": book_margin(ref, legs, lots)["initial_margin"]}
            for label, params in sets.items():
                m = book_margin(params, legs, lots)
                r[label] = m["initial_margin"]
                r[f"{label} binding"] = m["binding_scenario"]["label"]
            rows.append(r)
    return rows


def perp_mm_fraction(params, underlying: str) -> float:
    legs = [{"underlying": underlying, "kind": "perpetual", "size": 1.0}]
    return book_margin(params, legs, 1)["maintenance_margin"] / SPOT[underlying]


def perp_coverage(params, series) -> dict:
    """{(underlying, horizon): (long coverage, short coverage)} of a 1-lot naked perp's MM."""
    out = {}
    for u, (_dates, close) in series.items():
        if u not in SPOT:
            continue
        m = perp_mm_fraction(params, u)
        for h in TARGETS:
            r = close[h:] / close[:-h] - 1.0
            out[(u, h)] = (float(np.mean(-r <= m)), float(np.mean(r <= m)))
    return out


def required_move(series) -> dict:
    """Smallest MM (fraction of notional) meeting the coverage targets, per underlying."""
    need = {}
    for u, (_d, close) in series.items():
        worst = 0.0
        for h, q in TARGETS.items():
            r = close[h:] / close[:-h] - 1.0
            for x in (r, -r):
                xs = np.sort(x)
                worst = max(worst, float(xs[math.ceil(q * len(xs)) - 1]))
        need[u] = worst
    return need


def frontier(base, series, factors=(0.80, 0.85, 0.90, 0.92, 0.94, 0.96, 1.00)) -> list[dict]:
    """For each mm_factor: the price ranges that just meet the coverage targets (after the
    perp's roll shock), and the largest IM ratio to the Deribit-style venue over the books."""
    need = required_move(series)
    ref = load_params(REFERENCE)
    refs = {n: book_margin(ref, legs, 1)["initial_margin"] for n, legs in BOOKS.items()}
    out = []
    for f in factors:
        raw = copy.deepcopy(base.raw)
        raw["mm_factor"] = f
        for u in ("BTC", "ETH"):
            c = raw["underlyings"][u]
            roll = c["basis_rate_per_sqrt_year"] * math.sqrt(c["basis_min_days"] / 365.0)
            c["price_range"] = math.ceil((need[u] - roll) * 400) / 400   # 0.25% grid
        p = params_from_dict(raw)
        ratios = {n: book_margin(p, legs, 1)["initial_margin"] / refs[n]
                  for n, legs in BOOKS.items()}
        worst = max(ratios, key=ratios.get)
        out.append({"mm_factor": f, "btc_range": raw["underlyings"]["BTC"]["price_range"],
                    "eth_range": raw["underlyings"]["ETH"]["price_range"],
                    "max_ratio": ratios[worst], "worst_book": worst})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="default-v2")
    ap.add_argument("--before", default="default-v1")
    ap.add_argument("--data", default=str(DATA_DIR))
    ap.add_argument("--frontier", action="store_true", help="also print the mm_factor frontier")
    args = ap.parse_args()
    before, after = load_params(args.before), load_params(args.params)
    sets = {before.label: before, after.label: after}
    print(f"IM of the reference hedged books vs a Deribit-style PM ({REFERENCE.name}); "
          f"BTC {SPOT['BTC']:,}, ETH {SPOT['ETH']:,}, vol {VOL:.0%}, rate 0")
    print(f"{'book':<44} {'lots':>4} {'Deribit-style':>13} " + " ".join(
        f"{label:>11} {'ratio':>6}" for label in sets) + "  binding (" + after.label + ")")
    ok = True
    for r in im_table(sets):
        cells = " ".join(f"{r[label]:>11,.0f} {r[label] / r['reference']:>6.2f}" for label in sets)
        ok &= r[after.label] <= r["reference"] * (1 + 1e-12)
        print(f"{r['book']:<44} {r['lots']:>4} {r['reference']:>13,.0f} {cells}  "
              f"{r[after.label + ' binding']}")
    print(f"every hedged book at or below the venue under {after.label}: {'yes' if ok else 'NO'}")

    series = load_series(Path(args.data))
    print("\nnaked perp MM coverage of close-to-close moves (long: falls, short: rises); "
          "targets 1 day >= 99.5%, 2 days >= 99.0%")
    print(f"{'params':<12} {'perp':<5} {'MM % notional':>13} {'1d long':>8} {'1d short':>8} "
          f"{'2d long':>8} {'2d short':>8}")
    for label, params in sets.items():
        cov = perp_coverage(params, series)
        for u in ("BTC", "ETH"):
            print(f"{label:<12} {u:<5} {perp_mm_fraction(params, u):>13.2%} "
                  f"{cov[(u, 1)][0]:>8.2%} {cov[(u, 1)][1]:>8.2%} "
                  f"{cov[(u, 2)][0]:>8.2%} {cov[(u, 2)][1]:>8.2%}")
    need = required_move(series)
    print("smallest MM meeting both targets: " + ", ".join(f"{u} {v:.2%}" for u, v in need.items()))
    if args.frontier:
        print(f"\nfrontier over mm_factor (IM = MM / mm_factor), ranges set to just meet the "
              f"coverage targets, other fields of {after.label}:")
        print(f"{'mm_factor':>9} {'IM/MM':>6} {'BTC R':>6} {'ETH R':>6} {'max IM ratio':>12}  worst book")
        for row in frontier(after, series):
            print(f"{row['mm_factor']:>9.2f} {1 / row['mm_factor']:>6.3f} {row['btc_range']:>6.2%} "
                  f"{row['eth_range']:>6.2%} {row['max_ratio']:>12.3f}  {row['worst_book']}")


if __name__ == "__main__":
    main()

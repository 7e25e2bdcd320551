"""Writes tests/golden/risk_cases.json: instruments with marks and per-contract margin rates,
and a few books with their portfolio IM/MM next to the sum of their legs' rates, so the
contract and keeper tests check on-chain behaviour against the engine.

Run: python tests/golden/generate_risk_cases.py   (from the repo root; rewrites the JSON)
Floats are the engine's float64 values; `*_wad` are WAD (1e18) integer strings, margins and
rates rounded UP, marks and sizes rounded to nearest."""

from __future__ import annotations

import json
import math
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np

from offchain.risk import Instruments, Market, RiskEngine, UnderlyingMarket, load_params
from offchain.risk.explain import explain
from offchain.risk.instruments import iso, parse_time
from offchain.risk.pricing import KIND_NAMES

OUT = Path(__file__).with_name("risk_cases.json")
WAD = Decimal(10) ** 18

VALUATION = "2024-06-17T00:00:00Z"
EXPIRY = "2024-06-28T08:00:00Z"
SPOT, VOL, RATE = 65666.19, 0.5, 0.0
INSTRUMENTS = [
    {"name": "BTC-PERP", "underlying": "BTC", "kind": "perpetual"},
    {"name": "BTC-28JUN24", "underlying": "BTC", "kind": "future", "expiry": EXPIRY},
    {"name": "BTC-28JUN24-70000-C", "underlying": "BTC", "kind": "call", "strike": 70000,
     "expiry": EXPIRY},
    {"name": "BTC-28JUN24-60000-P", "underlying": "BTC", "kind": "put", "strike": 60000,
     "expiry": EXPIRY},
]
BOOKS = {
    "covered_call": {"BTC-PERP": 1.0, "BTC-28JUN24-70000-C": -1.0},
    "naked_short_call": {"BTC-28JUN24-70000-C": -1.0},
    "naked_long_perp": {"BTC-PERP": 2.5},
    "perp_vs_future": {"BTC-PERP": 1.0, "BTC-28JUN24": -1.0},
    "short_strangle": {"BTC-28JUN24-70000-C": -1.0, "BTC-28JUN24-60000-P": -1.0},
    "protective_put": {"BTC-PERP": 1.0, "BTC-28JUN24-60000-P": 1.0},
}


def wad(x: float, rounding=ROUND_CEILING) -> str:
    if not math.isfinite(x):
        raise ValueError(f"cannot convert {x} to WAD")
    return str(int((Decimal(repr(float(x))) * WAD).to_integral_value(rounding=rounding)))


def build() -> dict:
    params = load_params()
    instruments = Instruments.from_specs([{k: v for k, v in s.items() if k != "name"}
                                          for s in INSTRUMENTS])
    market = Market(parse_time(VALUATION, "valuation_time"),
                    {"BTC": UnderlyingMarket(spot=SPOT, rate=RATE, vol=VOL)})
    engine = RiskEngine(params, instruments, market, dtype=np.float64)
    rates = engine.margin_rates()
    index = {s["name"]: i for i, s in enumerate(INSTRUMENTS)}
    inst_out = []
    for i, s in enumerate(INSTRUMENTS):
        row = {"name": s["name"], "underlying": s["underlying"],
               "kind": KIND_NAMES[int(instruments.kind[i])], "kind_code": int(instruments.kind[i]),
               "strike": s.get("strike"), "strike_wad": None if "strike" not in s
               else wad(s["strike"], ROUND_HALF_EVEN),
               "expiry": s.get("expiry"), "expiry_unix": None if "expiry" not in s
               else int(instruments.expiry[i]),
               "mark": float(engine.marks[i]), "mark_wad": wad(engine.marks[i], ROUND_HALF_EVEN)}
        for field in Rates_FIELDS:
            v = float(getattr(rates, field)[i])
            row[field] = v
            row[f"{field}_wad"] = wad(v)
        inst_out.append(row)
    books_out = {}
    for name, legs in BOOKS.items():
        q = np.zeros(len(INSTRUMENTS))
        for leg, size in legs.items():
            q[index[leg]] = size
        m = explain(engine, q)
        sum_im = float(np.where(q > 0, rates.im_long, rates.im_short) @ np.abs(q))
        sum_mm = float(np.where(q > 0, rates.mm_long, rates.mm_short) @ np.abs(q))
        books_out[name] = {
            "positions": [{"instrument": leg, "index": index[leg], "size": size,
                           "size_wad": wad(size, ROUND_HALF_EVEN)} for leg, size in legs.items()],
            "position_value": m["position_value"],
            "position_value_wad": wad(m["position_value"], ROUND_HALF_EVEN),
            "initial_margin": m["initial_margin"], "initial_margin_wad": wad(m["initial_margin"]),
            "maintenance_margin": m["maintenance_margin"],
            "maintenance_margin_wad": wad(m["maintenance_margin"]),
            "sum_leg_im_rates": sum_im, "sum_leg_im_rates_wad": wad(sum_im),
            "sum_leg_mm_rates": sum_mm, "sum_leg_mm_rates_wad": wad(sum_mm),
            "isolated_margin": m["isolated_margin"], "cross_margin": m["cross_margin"],
            "binding_scenario": m["binding_scenario"]["index"],
        }
    return {
        "generator": "tests/golden/generate_risk_cases.py",
        "params": params.label, "params_hash": params.hash, "mm_factor": params.mm_factor,
        "valuation_time": VALUATION, "valuation_unix": int(market.valuation_time),
        "market": {"BTC": {"spot": SPOT, "spot_wad": wad(SPOT, ROUND_HALF_EVEN), "vol": VOL,
                           "rate": RATE}},
        "expiry_check": iso(instruments.expiry[1]),
        "notes": "rates are per contract (size 1 WAD); margin(book + q) <= margin(book) + |q|*rate. "
                 "Margins/rates in *_wad rounded up; marks, sizes and values rounded to nearest.",
        "instruments": inst_out,
        "books": books_out,
    }


Rates_FIELDS = ("im_long", "im_short", "mm_long", "mm_short")


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""Book format (forwards, smiles, per-option vols, example books) and the golden file the
contract tests read staying in sync with the engine."""

import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from offchain.risk import black76_price, load_book, load_params
from offchain.risk.explain import explain

ROOT = Path(__file__).resolve().parents[2]


def test_load_book__forwards_smile_and_option_vol__used_for_marks():
    book = load_book((ROOT / "examples" / "multi-underlying-smile.json").read_text())
    engine = book.engine(load_params())
    t = (book.instruments.expiry[0] - book.market.valuation_time) / (365 * 86400)
    smile_vol = np.interp(60000, [55000, 65000, 75000], [0.62, 0.52, 0.56])
    assert engine.marks[0] == pytest.approx(black76_price(66100.0, 60000, t, smile_vol, 0.05, False))
    assert engine.marks[1] == pytest.approx(black76_price(66100.0, 70000, t, 0.6, 0.05, True))
    assert engine.underlyings == ("BTC", "ETH")
    e = explain(engine, book.sizes)
    assert set(e["underlyings"]) == {"BTC", "ETH"}
    assert e["maintenance_margin"] == pytest.approx(sum(e["components"].values()))
    # the BTC/ETH offset: never more than the two risk units' losses (with floors) added
    assert e["components"]["worst_loss"] + e["components"]["short_option_minimum"] <= \
        sum(u["worst_loss"] for u in e["underlyings"].values()) + 1e-9


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.json")))
def test_load_book__example_books__price_and_margin(name):
    book = load_book((ROOT / "examples" / name).read_text())
    e = explain(book.engine(load_params()), book.sizes)
    assert e["initial_margin"] > e["maintenance_margin"] > 0
    assert e["portfolio_margin"] <= e["isolated_margin"] + 1e-9


def test_golden_risk_cases__file__matches_engine_output():
    path = ROOT / "tests" / "golden" / "generate_risk_cases.py"
    spec = importlib.util.spec_from_file_location("generate_risk_cases", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    on_disk = json.loads((ROOT / "tests" / "golden" / "risk_cases.json").read_text())
    assert json.loads(json.dumps(gen.build())) == on_disk, \
        "golden drifted: run python tests/golden/generate_risk_cases.py"
    for book in on_disk["books"].values():
        for key in ("maintenance_margin", "initial_margin", "sum_leg_mm_rates"):
            exact = Decimal(repr(book[key])) * 10**18
            assert exact <= int(book[f"{key}_wad"]) < exact + 1   # rounded up
        assert book["initial_margin"] <= book["sum_leg_im_rates"] + 1e-9

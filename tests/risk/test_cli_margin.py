"""`netmargin margin` through the real CLI entry point (offchain.cli.main): outputs and every
bad-input case (one-line error naming the field and the value, exit status 2)."""

import copy
import json

import pytest

from offchain.cli import main
from offchain.risk import build_scenarios, load_params

ISSUE_BOOK = {
    "valuation_time": "2024-06-17T00:00:00Z",
    "market": {"BTC": {"spot": 65666.19, "vol": 0.5, "rate": 0.0}},
    "positions": [
        {"underlying": "BTC", "kind": "call", "strike": 70000, "expiry": "2024-06-28T08:00:00Z",
         "size": -1.5},
        {"underlying": "BTC", "kind": "perpetual", "size": 0.3},
        {"underlying": "BTC", "kind": "future", "expiry": "2024-06-28T08:00:00Z", "size": -0.2},
    ],
}


@pytest.fixture
def write_book(tmp_path):
    def _write(obj, name="book.json"):
        path = tmp_path / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return str(path)
    return _write


def test_margin__issue_book_json__reports_required_fields(write_book, capsys):
    assert main(["margin", write_book(ISSUE_BOOK), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("initial_margin", "maintenance_margin", "risk_array", "scenarios",
                "binding_scenario", "isolated_margin", "cross_margin", "params_hash"):
        assert key in out
    n_scenarios = build_scenarios(load_params(), ["BTC"]).n
    assert len(out["risk_array"]) == len(out["scenarios"]) == n_scenarios
    assert out["initial_margin"] > out["maintenance_margin"] > 0
    assert out["params_hash"].startswith("0x") and len(out["params_hash"]) == 66


def test_margin__span16_params_table__prints_methods(write_book, capsys):
    assert main(["margin", write_book(ISSUE_BOOK), "--params", "span16-v1"]) == 0
    out = capsys.readouterr().out
    assert "span16-v1" in out and "isolated" in out and "portfolio" in out


def test_margin__trade_file__adds_what_if(write_book, capsys):
    trade = write_book([{"underlying": "BTC", "kind": "perpetual", "size": 1.2}], "trade.json")
    assert main(["margin", write_book(ISSUE_BOOK), "--json", "--trade", trade]) == 0
    out = json.loads(capsys.readouterr().out)
    w = out["what_if"]
    assert w["initial_margin_before"] == pytest.approx(out["initial_margin"])
    assert w["maintenance_margin_after"] <= w["maintenance_margin_bound"]


def _with(path, value):
    book = copy.deepcopy(ISSUE_BOOK)
    node = book
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return book


_DELETE = object()
BAD = [
    (_with(("positions", 1, "kind"), "swap"), "positions[1].kind", "'swap'"),
    (_with(("positions", 0, "strike"), -5), "positions[0].strike: must be > 0", "-5"),
    (_with(("positions", 0, "vol"), -0.5), "positions[0].vol: must be > 0", "-0.5"),
    (_with(("market", "BTC", "vol"), -0.5), "market.BTC.vol: must be > 0", "-0.5"),
    (_with(("positions", 0, "expiry"), "2024-06-01T08:00:00Z"), "positions[0].expiry",
     "2024-06-01T08:00:00Z"),
    (_with(("positions", 1, "underlying"), "ETH"), "market.ETH: missing", "positions[1]"),
    (_with(("market",), _DELETE), "market:", "None"),
    (_with(("positions", 2, "size"), "lots"), "positions[2].size", "'lots'"),
    (_with(("market", "BTC", "spot"), 0), "market.BTC.spot: must be > 0", "0"),
    (_with(("valuation_time",), "yesterday"), "valuation_time", "'yesterday'"),
    ('{"valuation_time": "2024-06-17T00:00:00Z", "positions": [', "book: malformed JSON",
     "line 1"),
    (_with(("market", "BTC", "volatility"), 0.9), "market.BTC.volatility: unknown key", "spot"),
    (_with(("positions", 0, "volatility"), 0.9), "positions[0].volatility: unknown key", "vol"),
    (_with(("market", "BTC", "vol"), 50), "market.BTC.vol: must be a fraction", "percentage"),
    (_with(("positions", 0, "vol"), 65), "positions[0].vol: must be a fraction", "65"),
    (_with(("positions", 1, "strike"), 70000), "positions[1].strike: a perpetual has no strike",
     "70000"),
    (_with(("positions", 1, "expiry"), "2024-06-28T08:00:00Z"),
     "positions[1].expiry: a perpetual has no expiry", "2024-06-28"),
    (_with(("positions", 2, "size"), 1e300), "positions[2].size: must be at most", "1e+300"),
    (_with(("market", "BTC", "spot"), 1e200), "market.BTC.spot: must be at most", "1e+200"),
    (_with(("valuation_time",), 1718582400000), "valuation_time: must be unix seconds",
     "milliseconds"),
    (_with(("market", "BTC", "rate"), 5), "market.BTC.rate", "5"),
    (_with(("strategy",), "x"), "book.strategy: unknown key", "positions"),
]


@pytest.mark.parametrize(("book", "field", "value"), BAD, ids=[b[1] for b in BAD])
def test_margin__bad_book__exits_2_with_one_line_naming_field_and_value(
        write_book, capsys, book, field, value):
    assert main(["margin", write_book(book)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert field in err and value in err


def test_margin__non_utf8_file__exits_2_naming_file(tmp_path, capsys):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"valuation_time": "2024-06-17T00:00:00Z", "x": "\u00e9"}'.encode("latin-1"))
    assert main(["margin", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not UTF-8" in err and "latin1.json" in err


def test_margin__book_table__prints_grid_of_binding_underlying(write_book, capsys):
    assert main(["margin", write_book(ISSUE_BOOK)]) == 0
    out = capsys.readouterr().out
    assert "price x vol grid (BTC" in out and "vol up" in out and "vol down" in out
    assert "per vol point" in out and "per day" in out


def test_margin__unknown_params__exits_2_naming_option(write_book, capsys):
    assert main(["margin", write_book(ISSUE_BOOK), "--params", "nope-v9"]) == 2
    assert "--params" in capsys.readouterr().err


def test_margin__missing_book_file__exits_2(tmp_path, capsys):
    assert main(["margin", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err

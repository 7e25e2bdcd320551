"""Malformed requests, hand-written per route: each gets a 4xx that names the field, never a
500 (the API's contract for anything a client or an attacker can send)."""

from __future__ import annotations

import pytest

GOOD = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
ORDER = {"account": GOOD, "instrument_id": 1, "is_buy": True, "size_wad": "1", "limit_price_wad": "1",
         "order_nonce": "1", "deadline": 1}
SIG = "0x" + "11" * 65

CASES = [
    # (method, path, json body, status, the field named)
    ("get", "/api/accounts/0x12", None, 422, "address"),
    ("get", "/api/accounts/not-an-address/report", None, 422, "address"),
    ("get", f"/api/accounts/{GOOD[:-1]}Z/history", None, 422, "address"),
    ("get", f"/api/accounts/{GOOD}/history?limit=0", None, 422, "limit"),
    ("get", f"/api/accounts/{GOOD}/history?limit=abc", None, 422, "limit"),
    ("get", "/api/proofs/0xzz", None, 422, "address"),
    ("post", f"/api/accounts/{GOOD}/what-if", {}, 422, "trades"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": []}, 422, "trades"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 1}]}, 422, "size"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 1, "size": 0}]}, 422, "size"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 1, "size": "1e999"}]}, 422, "size"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 0, "size": 1}]}, 422, "instrument_id"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 9999, "size": 1}]}, 422, "instrument_id"),
    ("post", f"/api/accounts/{GOOD}/what-if", {"trades": [{"instrument_id": 1, "size": 1, "x": 1}]}, 422, "x"),
    ("post", "/api/orders", {"order": ORDER}, 422, "signature"),
    ("post", "/api/orders", {"order": {**ORDER, "account": "0x1"}, "signature": SIG}, 422, "account"),
    ("post", "/api/orders", {"order": {**ORDER, "size_wad": "-1"}, "signature": SIG}, 422, "size_wad"),
    ("post", "/api/orders", {"order": {**ORDER, "size_wad": "9" * 80}, "signature": SIG}, 422, "size_wad"),
    ("post", "/api/orders", {"order": {**ORDER, "size_wad": str(2**256)}, "signature": SIG}, 422, "size_wad"),
    ("post", "/api/orders", {"order": {**ORDER, "is_buy": "maybe"}, "signature": SIG}, 422, "is_buy"),
    ("post", "/api/orders", {"order": {**ORDER, "deadline": -5}, "signature": SIG}, 422, "deadline"),
    ("post", "/api/orders", {"order": ORDER, "signature": "0x1234"}, 422, "signature"),
    ("post", "/api/orders", {"order": ORDER, "signature": SIG}, 422, "signature"),
    ("post", "/api/orders", [1, 2], 422, "body"),
    ("get", "/api/orders?instrument_id=-1", None, 422, "instrument_id"),
    ("get", "/api/orders?account=bob", None, 422, "account"),
    ("get", "/api/orders/0x1234", None, 422, "order_hash"),
    ("get", "/api/orders/0x" + "ab" * 32, None, 404, "order_hash"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES,
                         ids=[f"{c[0]} {c[1][:40]} {c[4]}" for c in CASES])
def test_route__malformed_input__4xx_naming_the_field(client, method, path, body, status, field):
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert any(field in [str(x) for x in d["loc"]] for d in detail), detail


def test_post_order__not_json__422_not_500(client):
    r = client.post("/api/orders", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_what_if__unknown_account__answers_margins_of_an_empty_book(client):
    r = client.post("/api/accounts/0x000000000000000000000000000000000000dEaD/what-if",
                    json={"trades": [{"instrument_id": 1, "size": 1}]})
    assert r.status_code == 200 and r.json()["initial_margin_before"] == 0

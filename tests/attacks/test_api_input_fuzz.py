"""The HTTP API under malformed and hostile input, fuzzed with hypothesis through FastAPI's
TestClient over the real devnet app (real Anvil, deployment, keeper state, order book): every
route answers a 2xx or a 4xx whose detail names a field, never a 5xx (503 only where the
server says which part is unavailable). Extreme but well-formed numbers (sizes near the
float limit) must not turn into a 500 at JSON encoding either."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from api.conftest import client, net  # noqa: F401 - the API suite's devnet and client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import examples

GOOD = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
FUZZ = settings(max_examples=examples(40, 600), deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**300, max_value=2**300),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
NUMBER = st.one_of(st.integers(min_value=-2**300, max_value=2**300), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([1e308, -1e308, 5e-324, 1.7976931348623157e308, 2**63, 2**64, 2**256 - 1, 2**256]))
SEGMENT = st.one_of(st.text(min_size=1, max_size=50), st.sampled_from(
    [GOOD, GOOD.lower(), GOOD.upper().replace("0X", "0x"), "0x" + "00" * 20, "0X" + GOOD[2:], GOOD + "00", " " + GOOD,
     "..", "%00", "0x" + "ab" * 32]))


def assert_answer(r, shown: str) -> None:
    """2xx, or a 4xx naming a field, or 503 naming the unavailable part; never a 500."""
    assert r.status_code < 500 or r.status_code == 503, f"{shown} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        detail = r.json()["detail"]
        if isinstance(detail, list):
            assert all(d["loc"] and d["msg"] for d in detail), f"{shown} -> {r.text[:300]}"
    if r.status_code < 300:
        json.loads(r.text)  # a body the client can read (no NaN or Infinity tokens)


@FUZZ
@given(segment=SEGMENT, suffix=st.sampled_from(["", "/report", "/history", "/what-if"]))
def test_account_routes__any_path_segment__never_5xx(client, segment, suffix):  # noqa: F811
    path = f"/api/accounts/{quote(segment, safe='')}{suffix}"
    r = client.request("POST" if suffix == "/what-if" else "GET", path,
                       json={"trades": [{"instrument_id": 1, "size": 1}]} if suffix == "/what-if" else None)
    assert_answer(r, path)


@FUZZ
@given(body=JSON)
def test_what_if__any_json_body__never_5xx(client, body):  # noqa: F811
    r = client.post(f"/api/accounts/{GOOD}/what-if", json=body)
    assert_answer(r, repr(body))


@FUZZ
@given(trades=st.lists(st.fixed_dictionaries({"instrument_id": NUMBER, "size": NUMBER}), min_size=1, max_size=33))
def test_what_if__extreme_instrument_ids_and_sizes__never_5xx(client, trades):  # noqa: F811
    r = client.post(f"/api/accounts/{GOOD}/what-if", json={"trades": trades})
    assert_answer(r, repr(trades))


@pytest.mark.parametrize("sizes", [[1e308], [1e308, 1e308], [-1e308, -1e308], [1e308, -1e308], [1e200]],
                         ids=["max", "twice-max", "twice-min", "max-then-min", "1e200"])
def test_what_if__sizes_near_the_float_limit__answered_or_422_naming_size(client, sizes):  # noqa: F811
    """Two legs of 1e308 in one instrument add to infinity; one leg times its mark or the
    fee overflows: the answer was 200 with null margins (the encoder's infinity). Refused
    now, naming the size."""
    r = client.post(f"/api/accounts/{GOOD}/what-if",
                    json={"trades": [{"instrument_id": 1, "size": s} for s in sizes]})
    assert r.status_code == 422, r.text
    assert any("size" in [str(x) for x in d["loc"]] for d in r.json()["detail"]), r.text


@FUZZ
@given(sizes=st.lists(st.floats(min_value=-1e12, max_value=1e12).filter(bool), min_size=1, max_size=32))
def test_what_if__any_allowed_size__every_margin_a_finite_number(client, sizes):  # noqa: F811
    """Sizes the model accepts give an answer whose every figure is a number (never null,
    which is how an overflowed infinity left the response encoder)."""
    r = client.post(f"/api/accounts/{GOOD}/what-if",
                    json={"trades": [{"instrument_id": 1 + k % 2, "size": s} for k, s in enumerate(sizes)]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert all(isinstance(v, int | float) for k, v in doc.items() if k not in ("address", "accepted", "reason")), doc


@FUZZ
@given(limit=st.one_of(st.text(max_size=10), st.integers(min_value=-2**70, max_value=2**70).map(str)))
def test_history__any_limit__never_5xx(client, limit):  # noqa: F811
    r = client.get(f"/api/accounts/{GOOD}/history", params={"limit": limit})
    assert_answer(r, limit)


@FUZZ
@given(instrument_id=st.one_of(st.text(max_size=10), NUMBER.map(str)), account=st.one_of(st.text(max_size=45), SEGMENT))
def test_list_orders__any_query__never_5xx(client, instrument_id, account):  # noqa: F811
    r = client.get("/api/orders", params={"instrument_id": instrument_id, "account": account})
    assert_answer(r, f"{instrument_id!r} {account!r}")


@FUZZ
@given(segment=SEGMENT)
def test_get_order_and_proof__any_path_segment__never_5xx(client, segment):  # noqa: F811
    for path in (f"/api/orders/{quote(segment, safe='')}", f"/api/proofs/{quote(segment, safe='')}"):
        assert_answer(client.get(path), path)


ORDER_FIELDS = {
    "account": st.one_of(st.just(GOOD), SEGMENT),
    "instrument_id": st.one_of(st.just(1), NUMBER),
    "is_buy": st.one_of(st.booleans(), JSON),
    "size_wad": st.one_of(st.just("1000000000000000000"), NUMBER.map(str), st.text(max_size=80)),
    "limit_price_wad": st.one_of(st.just("60000000000000000000000"), NUMBER.map(str), st.text(max_size=80)),
    "order_nonce": st.one_of(st.just("1"), NUMBER.map(str), st.sampled_from([str(2**256), "9" * 78])),
    "deadline": st.one_of(st.just(4_000_000_000), NUMBER),
}
SIGNATURES = st.one_of(st.text(max_size=140), st.binary(min_size=64, max_size=66).map(lambda b: "0x" + b.hex()),
                       st.sampled_from(["0x" + "00" * 65, "0x" + "ff" * 65, "0x" + "11" * 64, "0x" + "00" * 64]))


@FUZZ
@given(order=st.fixed_dictionaries(ORDER_FIELDS), signature=SIGNATURES)
def test_post_order__mutated_fields_and_signatures__never_5xx(client, order, signature):  # noqa: F811
    r = client.post("/api/orders", json={"order": order, "signature": signature})
    assert_answer(r, f"{order!r} {signature!r}")
    assert r.status_code != 201, "a random signature listed an order"


@FUZZ
@given(body=JSON)
def test_post_order__any_json_body__never_5xx(client, body):  # noqa: F811
    assert_answer(client.post("/api/orders", json=body), repr(body))


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b'{"order": 1e999}', b"null",
                                 b'{"order": {"account": "' + b"0" * 100_000 + b'"}}'])
def test_post_bodies__not_json_huge_or_deeply_nested__4xx(client, raw):  # noqa: F811
    for path in ("/api/orders", f"/api/accounts/{GOOD}/what-if"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, f"{path} {raw[:40]!r} -> {r.status_code} {r.text[:200]}"


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/api/orders"), ("PUT", f"/api/accounts/{GOOD}"),
                                              ("POST", "/api/health"), ("PATCH", "/api/instruments")])
def test_routes__wrong_method__405(client, method, path):  # noqa: F811
    assert client.request(method, path).status_code == 405


# ---------------------------------------------------------------------------------------
# the keeper's and the watcher's own port: /metrics, /health, /proof/<account>
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keeper_port(tmp_path_factory):
    """The keeper's MetricsServer over a real epoch file (20 accounts), and the watcher's
    health on another: both on real sockets."""
    from offchain.keeper.metrics import KeeperMetrics, MetricsServer
    from offchain.keeper.roots import EpochStore, account_leaves, proof_for
    from offchain.watcher.watch import WatchMetrics

    engine = "0x" + "ab" * 20
    n = 20
    leaves = account_leaves(addresses=[f"0x{(0x5000 + i):040x}" for i in range(n)], state_nonces=list(range(n)),
                            books_wad=[{1: 10**18}] * n, im_wad=[2 * 10**18] * n, mm_wad=[10**18] * n,
                            value_wad=[0] * n, pending_totals=[0] * n)
    from offchain.chain.roots import EpochTrees
    trees = EpochTrees.build(engine, 1, leaves)
    store = EpochStore(tmp_path_factory.mktemp("roots"))
    store.write(trees, trees.root_message(timestamp=1_700_000_000, deadline=1_700_000_060,
                                          params_hash=b"\x01" * 32), [])
    keeper = MetricsServer(KeeperMetrics(), 0, proofs=lambda a: proof_for(store, engine, a)).start()
    watch = MetricsServer(WatchMetrics(), 0).start()
    yield keeper.port, watch.port
    keeper.stop()
    watch.stop()


def _raw(port: int, method: str, path: str) -> tuple[int, bytes]:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


PATHS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=60).map(lambda t: "/" + t),
    st.sampled_from(["/proof/", "/proof/0x", "/proof/" + "ab" * 20, "/proof/0X" + "ab" * 20, "/proof/%30x" + "00" * 20,
                     "/proof/0x" + "00" * 20 + "?x=1", "/proof/../../etc/passwd", "/health?" + "a" * 3000,
                     "/metrics/../health", "/proof/0x" + "5000".zfill(40)]))


@FUZZ
@given(path=PATHS)
def test_keeper_port__any_path__2xx_or_4xx_never_5xx(keeper_port, path):
    """/health may say 503 (the keeper is behind: that is its job); anything else is a 2xx
    or a 4xx, and /proof errors name the account."""
    status, body = _raw(keeper_port[0], "GET", path)
    assert status < 500 or path.startswith("/health"), f"{path} -> {status} {body[:200]!r}"
    if path.startswith("/proof/") and status in (400, 404):
        assert "account" in json.loads(body)["error"], body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_keeper_and_watcher_ports__write_methods__405_not_501(keeper_port, method):
    """http.server answers an unknown method with 501 (a 5xx: an orchestrator reads the
    keeper as broken); these endpoints are read-only, so it is the client's error."""
    for port in keeper_port:
        for path in ("/health", "/metrics", "/proof/0x" + "ab" * 20):
            status, _ = _raw(port, method, path)
            assert status == 405, f"{method} {path} -> {status}"


def test_keeper_port__head__same_status_as_get_without_body(keeper_port):
    for path, status in (("/metrics", 200), ("/proof/0x" + "00" * 20, 404), ("/nope", 404)):
        assert _raw(keeper_port[0], "HEAD", path) == (status, b"")

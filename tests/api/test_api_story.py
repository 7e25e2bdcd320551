"""The API over a real devnet, as a wallet user's story: instruments, deposit, fill a dealer
quote from the order book, account and margin report, what-if, withdrawal refused then
allowed, the crash, the liquidation in history. Tests run in file order on one chain."""

from __future__ import annotations

import time

import numpy as np
import pytest

from offchain.chain.contracts import WAD
from offchain.chain.leaves import AccountLeaf
from offchain.chain.merkle import verify
from offchain.devnet.deploy import send
from offchain.devnet.run import DEALER_SIZE
from offchain.errors import UserError
from offchain.keeper.prices import parse_date

BTC_PERP = 1
TOKEN = 10**6


@pytest.fixture(scope="module")
def user(net):
    return net.wallets[0]


def engine(net):
    return net.dep.engine.functions


def test_instruments__devnet__standard_chain_with_marks_greeks_and_rates(client):
    r = client.get("/api/instruments")
    assert r.status_code == 200
    body = r.json()
    inst = body["instruments"]
    kinds = [(i["underlying"], i["kind"]) for i in inst]
    assert kinds.count(("BTC", "perpetual")) == 1 and kinds.count(("ETH", "perpetual")) == 1
    assert kinds.count(("BTC", "future")) == 1 and kinds.count(("ETH", "future")) == 1
    assert kinds.count(("BTC", "call")) == 6 and kinds.count(("ETH", "put")) == 6
    assert len({i["expiry"] for i in inst if i["kind"] == "call"}) == 2
    btc = next(u for u in body["underlyings"] if u["name"] == "BTC")
    perp = inst[BTC_PERP - 1]
    assert perp["mark"] == pytest.approx(btc["index_price"], rel=1e-6)
    assert perp["greeks"]["delta"] == 1.0
    assert 0 < perp["rates"]["im_long"] < perp["mark"]
    atm_call = next(i for i in inst if i["kind"] == "call" and i["underlying"] == "BTC"
                    and abs(i["strike"] / btc["index_price"] - 1) < 0.05)
    assert 0.3 < atm_call["greeks"]["delta"] < 0.7 and atm_call["greeks"]["vega"] > 0


def test_account__funded_wallet_before_deposit__balance_in_wallet_no_margin(client, user):
    r = client.get(f"/api/accounts/{user.address}")
    assert r.status_code == 200
    a = r.json()
    assert a["wallet_balance"] == 1_000_000 and a["cash"] == 0 and a["positions"] == []
    assert a["initial_margin"] == 0 and a["available_to_withdraw"] == 0


def test_orders__devnet_dealer__quotes_both_sides_of_every_live_instrument(client):
    book = client.get("/api/orders", params={"instrument_id": BTC_PERP}).json()["orders"]
    sides = {o["order"]["is_buy"] for o in book}
    assert sides == {True, False}
    bid = next(o for o in book if o["order"]["is_buy"])
    ask = next(o for o in book if not o["order"]["is_buy"])
    assert bid["price"] < ask["price"] and ask["remaining"] == DEALER_SIZE["BTC"]


def test_fill__user_takes_dealer_ask__position_and_margin_in_account(client, net, user, settle):
    send(net.anvil.w3, user, net.dep.token.functions.approve(net.dep.engine.address, 100_000 * TOKEN), "approve")
    send(net.anvil.w3, user, engine(net).deposit(20_000 * TOKEN), "deposit")
    ask = next(o for o in client.get("/api/orders", params={"instrument_id": BTC_PERP}).json()["orders"]
               if not o["order"]["is_buy"])
    o = ask["order"]
    order = (o["account"], o["instrument_id"], o["is_buy"], int(o["size_wad"]), int(o["limit_price_wad"]),
             int(o["order_nonce"]), o["deadline"])
    send(net.anvil.w3, user, engine(net).fill(order, bytes.fromhex(ask["signature"][2:]), 4 * WAD), "fill")
    for _ in range(10):  # the keeper indexes the fill and roots the new book (a cycle or two)
        settle()
        if client.get(f"/api/proofs/{user.address}").status_code == 200:
            break
    # the user applies its leaf (portfolio margin) with the proof the API serves
    doc = client.get(f"/api/proofs/{user.address}").json()
    leaf = AccountLeaf.from_dict(doc["leaf"])
    send(net.anvil.w3, user, engine(net).apply_leaf(leaf.as_args(), [bytes.fromhex(p[2:]) for p in doc["proof"]]),
         "apply_leaf")
    a = client.get(f"/api/accounts/{user.address}").json()
    assert [(p["instrument_id"], p["size"]) for p in a["positions"]] == [(BTC_PERP, 4.0)]
    assert a["initial_margin"] > 0 and a["maintenance_margin"] > 0
    assert a["model_initial_margin"] == pytest.approx(a["initial_margin"], rel=0.05)
    assert 0 < a["available_to_withdraw"] < a["equity"]
    liq = a["liquidation_prices"][0]
    assert liq["underlying"] == "BTC" and liq["below"] < liq["spot"] and liq["above"] is None
    # the partially filled quote stays listed with what is left
    left = client.get(f"/api/orders/{ask['hash']}").json()
    assert left["remaining"] == DEALER_SIZE["BTC"] - 4


def test_report__long_perp__grid_binding_cell_shares_and_margin_comparison(client, user):
    r = client.get(f"/api/accounts/{user.address}/report")
    assert r.status_code == 200
    rep = r.json()
    btc = next(g for g in rep["grids"] if g["underlying"] == "BTC")
    assert btc["vols"] == ["vol up", "vol flat", "vol down"] and len(btc["price_moves"]) >= 5
    cell, tails = btc["binding"], [t for t in btc["tails"] if t["binding"]]
    assert (cell is not None) + len(tails) == 1  # exactly one binding scenario, grid or tail
    if cell is not None:
        assert btc["pnl"][cell["vol"]][cell["price"]] == min(v for row in btc["pnl"] for v in row)
        assert btc["price_moves"][cell["price"]] < 0  # a long book loses most when price falls
    else:
        assert tails[0]["price_move"] < 0
        # a weighted tail binds: its weighted loss is at least the grid's worst loss
        assert tails[0]["pnl"] * tails[0]["weight"] <= min(v for row in btc["pnl"] for v in row) + 1e-6
    assert rep["components"]["worst_loss"] > 0
    assert sum(p["share_of_binding_loss"] for p in rep["positions"]) == pytest.approx(1.0)
    assert rep["portfolio_margin"] <= rep["cross_margin"] + 1e-6 <= rep["isolated_margin"] + 2e-6
    curve = np.asarray(rep["pnl_curve"]["BTC"])
    assert np.all(np.diff(curve[:, 1]) > 0)  # long perp: value rises with price


def test_what_if__small_and_huge_orders__accepted_then_refused_with_reason(client, user):
    small = client.post(f"/api/accounts/{user.address}/what-if",
                        json={"trades": [{"instrument_id": BTC_PERP, "size": -1}]}).json()
    assert small["accepted"] and small["initial_margin_after"] < small["initial_margin_before"]
    huge = client.post(f"/api/accounts/{user.address}/what-if",
                       json={"trades": [{"instrument_id": BTC_PERP, "size": 500}]}).json()
    assert not huge["accepted"] and "below initial margin" in huge["reason"]
    assert huge["engine_initial_margin_after"] > huge["equity"]


def test_withdraw__above_available__refused_then_available_allowed(client, net, user):
    a = client.get(f"/api/accounts/{user.address}").json()
    with pytest.raises(UserError, match="below initial margin"):
        send(net.anvil.w3, user, engine(net).withdraw(int((a["available_to_withdraw"] + 500) * TOKEN)), "withdraw")
    send(net.anvil.w3, user, engine(net).withdraw(int(a["available_to_withdraw"] * TOKEN) - 1), "withdraw")
    after = client.get(f"/api/accounts/{user.address}").json()
    assert after["available_to_withdraw"] < 1.0
    assert after["near_liquidation"] is False or after["equity"] < 1.2 * after["maintenance_margin"]


def test_history__after_deposit_fill_withdrawal__listed_newest_first(client, user, settle):
    settle()  # history is the keeper's indexed store: one cycle after the withdrawal
    events = client.get(f"/api/accounts/{user.address}/history").json()["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["withdrawal", "fill", "deposit"]
    fill = events[1]["details"]
    assert fill["side"] == "taker" and fill["direction"] == "buy" and fill["size"] == 4.0
    assert all(e["timestamp"] for e in events)


def test_crash__march_12_low__keeper_liquidates_and_history_shows_it(client, net, user, settle):
    crash = parse_date("2020-03-12", "crash") + 16 * 3600
    net.anvil.mine(crash)
    deadline = time.monotonic() + 90
    found = []
    while not found and time.monotonic() < deadline:
        settle(600)  # the oracle bounds each mark move: the crash arrives over a few updates
        found = [e for e in client.get(f"/api/accounts/{user.address}/history").json()["events"]
                 if e["kind"] == "liquidation"]
    assert found, "no liquidation of the long perp after the crash"
    liq = found[0]["details"]
    assert liq["role"] == "liquidated" and liq["liquidator"] == net.deployment["roles"]["keeper"]
    # the discount is capped at the account's equity: a book the gap crash left bankrupt earns none
    assert 0 < liq["fraction"] <= 1 and liq["discount"] >= 0


def test_what_if__marks_older_than_the_engine_accepts__refused_as_stale(client, net, user):
    now = int(net.anvil.w3.eth.get_block("latest")["timestamp"])
    net.anvil.mine(now + 7 * 3600)  # no keeper cycle: marks age past max_price_age_s (6 h)
    w = client.post(f"/api/accounts/{user.address}/what-if",
                    json={"trades": [{"instrument_id": BTC_PERP, "size": 0.1}]}).json()
    assert not w["accepted"] and w["reason"].startswith("stale marks")


def test_proof__book_in_the_keepers_root__leaf_and_proof_verify_on_chain(client, net, user):
    doc = client.get(f"/api/proofs/{user.address}").json()
    assert doc["leaf"]["account"] == user.address
    epoch, _ts, _n, accounts_root, _m = net.dep.oracle.functions.epoch_root(net.dep.engine.address).call()
    assert doc["epoch"] == epoch and doc["accounts_root"] == "0x" + bytes(accounts_root).hex()
    leaf = AccountLeaf.from_dict(doc["leaf"])
    proof = [bytes.fromhex(p[2:]) for p in doc["proof"]]
    assert verify(proof, bytes(accounts_root), leaf.leaf_hash(net.dep.engine.address, epoch))


def test_proof__address_without_a_book__404_says_so(client):
    r = client.get(f"/api/proofs/0x{'42' * 20}")
    assert r.status_code == 404 and "no root posted yet" in r.json()["detail"][0]["msg"]


def test_docs__openapi__every_route_documented(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/instruments", "/api/accounts/{address}", "/api/accounts/{address}/report",
              "/api/accounts/{address}/what-if", "/api/accounts/{address}/history", "/api/orders",
              "/api/proofs/{address}"):
        assert p in paths

"""The order book's validation, attacker's view: every refused order names the field, and a
listed order drops off once filled or cancelled on chain."""

from __future__ import annotations

import itertools

import pytest

from offchain.chain.contracts import WAD
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.devnet.deploy import fund, send
from offchain.devnet.run import order_body

BTC_PERP = 1
NONCES = itertools.count(10_000)  # each order of this module is a new one


@pytest.fixture(scope="module")
def order_maker(net):
    return net.wallets[1]


@pytest.fixture(scope="module")
def order_taker(net):
    return net.wallets[2]


@pytest.fixture()
def make(net, order_maker):
    """Factory: a signed order body by `order_maker` (or by `signer`), valid by default."""
    def build(signer=None, **changes):
        snap = net.ctx.market.get()
        fields = dict(account=order_maker.address, instrument_id=BTC_PERP, is_buy=True, size_wad=WAD,
                      limit_price_wad=int(snap.marks[0] * 0.9 * WAD), order_nonce=next(NONCES),
                      deadline=snap.now + 3600)
        fields.update(changes)
        order = Order(**fields)
        key = signer or order_maker
        if key.address != order.account:  # sign the digest with another key (forgery)
            sig = sign_order(Order(**{**fields, "account": key.address}), net.ctx.orders.domain, key)
        else:
            sig = sign_order(order, net.ctx.orders.domain, key)
        return order, {"order": order_body(order), "signature": "0x" + sig.hex()}
    return build


def loc(r):
    return r.json()["detail"][0]["loc"]


def test_post_order__valid_signature__listed_with_remaining_size(client, make):
    order, body = make()
    r = client.post("/api/orders", json=body)
    assert r.status_code == 201, r.text
    listed = r.json()
    assert listed["remaining"] == 1.0 and listed["order"]["account"] == order.account
    hashes = [o["hash"] for o in client.get("/api/orders", params={"account": order.account}).json()["orders"]]
    assert listed["hash"] in hashes


def test_post_order__same_order_twice__409(client, make):
    _, body = make()
    assert client.post("/api/orders", json=body).status_code == 201
    r = client.post("/api/orders", json=body)
    assert r.status_code == 409 and loc(r) == ["body", "order"]


def test_post_order__signed_by_another_key__422_names_signature(client, make, order_taker):
    _, body = make(signer=order_taker)
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "signature"]
    assert "not by order.account" in r.json()["detail"][0]["msg"]


def test_post_order__size_changed_after_signing__422_signature(client, make):
    _, body = make()
    body["order"]["size_wad"] = str(100 * WAD)  # a tampered order no longer matches its signature
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "signature"]


def test_post_order__high_s_malleated_signature__422(client, make):
    _, body = make()
    sig = bytes.fromhex(body["signature"][2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = n - int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + s.to_bytes(32, "big") + bytes([55 - sig[64]])
    body["signature"] = "0x" + flipped.hex()
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "signature"]


def test_post_order__signed_for_another_deployment__422_signature(client, make, net, order_maker):
    # a signature over another engine's domain (or chain) must not list here: no cross-deployment replay
    order, body = make()
    other = EngineDomain(net.ctx.orders.domain.chain_id, "0x" + "12" * 20)
    body["signature"] = "0x" + sign_order(order, other, order_maker).hex()
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "signature"]


def test_post_order__deadline_passed__422_names_deadline(client, make, net):
    _, body = make(deadline=net.ctx.market.get().now - 1)
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "order", "deadline"]


def test_post_order__unknown_instrument__422_names_instrument(client, make):
    _, body = make(instrument_id=999)
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "order", "instrument_id"]


def test_post_order__zero_size__422_names_size(client, make):
    _, body = make()
    body["order"]["size_wad"] = "0"
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r)[-1] == "size_wad"


def test_post_order__cancelled_on_chain__refused_and_dropped(client, make, net, order_maker):
    order, body = make()
    assert client.post("/api/orders", json=body).status_code == 201
    send(net.anvil.w3, order_maker, net.dep.engine.functions.cancel_order(order.as_args()), "cancel")
    net.anvil.mine()
    listed = [o["order"]["order_nonce"] for o in client.get("/api/orders", params={"account": order_maker.address}).json()["orders"]]
    assert str(order.order_nonce) not in listed
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and "cancelled" in r.json()["detail"][0]["msg"]


def test_post_order__filled_on_chain__drops_off_the_book(client, make, net, order_maker, order_taker):
    for who in (order_maker, order_taker):
        fund(net.dep, net.anvil.accounts[0], who, 50_000)
    order, body = make()
    h = client.post("/api/orders", json=body).json()["hash"]
    sig = bytes.fromhex(body["signature"][2:])
    send(net.anvil.w3, order_taker, net.dep.engine.functions.fill(order.as_args(), sig, order.size_wad), "fill")
    assert client.get(f"/api/orders/{h}").status_code == 404
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and "already filled" in r.json()["detail"][0]["msg"]

"""The order book's validation, attacker's view: every refused order names the field, a
listed order drops off once filled or cancelled on chain, and only collateral on chain backs
listed orders (keys holding nothing cannot fill the book)."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account

from offchain.api.orderbook import ORDER_SLOT_BACKING, opening_im
from offchain.chain.contracts import WAD
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.devnet.deploy import TOKEN_DECIMALS, fund, send
from offchain.devnet.run import order_body

from .conftest import new_key

BTC_PERP = 1
NONCES = itertools.count(10_000)  # each order of this module is a new one


@pytest.fixture(scope="module")
def order_maker(net):
    """A maker with 50,000 deposited: the book lists only orders its free margin backs."""
    maker = net.wallets[1]
    fund(net.dep, net.anvil.accounts[0], maker, 50_000)
    return maker


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
    here = net.ctx.orders.domain
    for other in (EngineDomain(here.chain_id, "0x" + "12" * 20), EngineDomain(1, here.verifying_contract)):
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


def test_order_book__filled_by_throwaway_keys_that_hold_nothing__a_funded_maker_still_lists(client, make, net):
    """Keys cost nothing: without backing, 50 keys holding nothing filled the book's 10,000
    slots (200 each) with orders no taker can fill, and every funded maker (the dealer's
    re-quotes too) was answered 429. An order is listed only while the maker's free margin on
    chain backs the IM its orders would open: a key holding nothing lists nothing, and the
    book is unchanged by its attempts."""
    book_before = {o["hash"] for o in client.get("/api/orders").json()["orders"]}
    for _ in range(3):
        key = Account.create()
        _, body = make(signer=key, account=key.address)
        r = client.post("/api/orders", json=body)
        assert r.status_code == 422 and loc(r) == ["body", "order", "account"], r.text
        msg = r.json()["detail"][0]["msg"]
        assert key.address in msg and "free margin on chain (0.00" in msg and "deposit" in msg
    assert {o["hash"] for o in client.get("/api/orders").json()["orders"]} == book_before
    _, body = make()
    assert client.post("/api/orders", json=body).status_code == 201


def test_order_book__maker_withdraws_what_backed_its_orders__newest_dropped_at_the_next_block(client, make, net):
    maker = new_key(net, 5_000)
    snap = net.ctx.market.get()
    size = int(0.4 * 5_000 / snap.rates[0][snap.row(BTC_PERP)] * WAD)   # each order: 40% of the deposit as IM
    hashes = []
    for _ in range(2):
        _, body = make(signer=maker, account=maker.address, size_wad=size)
        r = client.post("/api/orders", json=body)
        assert r.status_code == 201, r.text
        hashes.append(r.json()["hash"])
    _, third = make(signer=maker, account=maker.address, size_wad=size)
    r = client.post("/api/orders", json=third)
    assert r.status_code == 422 and "the 2 it lists" in r.json()["detail"][0]["msg"]
    send(net.anvil.w3, maker, net.dep.engine.functions.withdraw(2_500 * 10**TOKEN_DECIMALS), "withdraw")
    net.anvil.mine()
    listed = [o["hash"] for o in client.get("/api/orders", params={"account": maker.address}).json()["orders"]]
    assert listed == hashes[:1]   # 2,500 backs the older order alone


def test_order_book__1_wei_orders_of_keys_holding_dust__refused_each_order_reserves_a_slot(client, make, net):
    """A 1-wei order opens next to no IM: backed by its IM alone, a key holding 1e-6 of the
    token backed its whole quota of 200 such orders, and 50 keys filled the book again. Each
    listed order also reserves ORDER_SLOT_BACKING of free margin, so filling the book's 10,000
    slots takes 100,000 of collateral on chain."""
    dust = new_key(net, 0.000001)
    _, body = make(signer=dust, account=dust.address, size_wad=1)
    r = client.post("/api/orders", json=body)
    assert r.status_code == 422 and loc(r) == ["body", "order", "account"], r.text
    assert f"plus {ORDER_SLOT_BACKING:,.0f} per order" in r.json()["detail"][0]["msg"]
    small = new_key(net, 1.5 * ORDER_SLOT_BACKING)
    _, first = make(signer=small, account=small.address, size_wad=1)
    assert client.post("/api/orders", json=first).status_code == 201
    _, second = make(signer=small, account=small.address, size_wad=1)
    r = client.post("/api/orders", json=second)
    assert r.status_code == 422 and "the 1 it lists" in r.json()["detail"][0]["msg"]


def test_opening_im__orders_that_close_a_position__need_no_backing_beyond_it():
    """Per instrument and side: a buy closes a short, a sell a long; only what would open is
    margined, at that side's IM rate; orders of both sides count as if all filled."""
    snap = type("Snap", (), {"rates": [[100.0, 10.0], [200.0, 20.0]],
                             "row": staticmethod(lambda i: int(i) - 1)})()

    def entry(iid, is_buy, size, filled=0):
        return {"order": Order(account="0x" + "11" * 20, instrument_id=iid, is_buy=is_buy, size_wad=size * WAD,
                               limit_price_wad=WAD, order_nonce=1, deadline=1), "filled": filled * WAD}

    long_2 = {1: 2 * WAD}
    assert opening_im([entry(1, False, 2)], long_2, snap) == 0                  # sells the long
    assert opening_im([entry(1, False, 3)], long_2, snap) == 200.0              # 1 opens short
    assert opening_im([entry(1, False, 3, filled=1)], long_2, snap) == 0        # what remains closes
    assert opening_im([entry(1, True, 1), entry(1, False, 2)], long_2, snap) == 100.0   # the buy opens
    assert opening_im([entry(1, True, 1)], {1: -3 * WAD}, snap) == 0           # a buy closes a short
    assert opening_im([entry(2, True, 1), entry(2, False, 1)], {}, snap) == 30.0

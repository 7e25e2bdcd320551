"""The API order book's backing rule (V14, V15) against one stake moved from key to key
(SECURITY.md V17). A listed order must be backed by its maker's free margin on chain when it
is listed; the book re-reads every maker's backing once per block, but only when the book is
read (GET /api/orders, GET /api/orders/{hash}), and POST used not to. So a stake that backs one
key's orders, withdrawn (a flat account withdraws at any time) and deposited by the next key
before anyone read the book, backed the next key's orders too, and the orders of the keys left
holding nothing counted towards the book's 10,000 slots until the next read. Fixed: POST prunes
first, as a read does. Real devnet (Anvil, deployment, keeper, dealer) through the app's test
client."""

from __future__ import annotations

import itertools

from api.conftest import client, net, new_key  # noqa: F401 - the API suite's devnet and client

from offchain.api import orderbook
from offchain.api.orderbook import ORDER_SLOT_BACKING
from offchain.chain.orders import Order, sign_order
from offchain.devnet.deploy import TOKEN_DECIMALS, send
from offchain.devnet.run import order_body

BTC_PERP = 1
NONCES = itertools.count(70_000)


def _body(net, key, size_wad: int = 1) -> dict:  # noqa: F811
    snap = net.ctx.market.get()
    order = Order(account=key.address, instrument_id=BTC_PERP, is_buy=True, size_wad=size_wad,
                  limit_price_wad=int(snap.marks[0] * 0.9 * 10**18), order_nonce=next(NONCES),
                  deadline=snap.now + 3600)
    return {"order": order_body(order), "signature": "0x" + sign_order(order, net.ctx.orders.domain, key).hex()}


def test_order_book__one_stake_rotated_through_keys_between_reads__a_funded_maker_still_lists(
        client, net, monkeypatch):  # noqa: F811
    """V17 (low, availability, API; fixed). One stake of 25 units backs two 1-wei orders (10 units
    each plus their IM). Key 1 deposits it and lists two; it withdraws the stake (its book is
    flat: always allowed) and key 2 deposits it and lists two more; nobody reads the book in
    between. The book's slots (here its size + 4, MAX_ORDERS scaled down) are now full of four
    orders, two of them backed by nothing on chain, and a maker holding 50,000 is answered 429
    "the book is full" until someone reads the book. At the real size: 2,000 units rotated
    through 50 keys (one deposit and one withdrawal each) fill the 10,000 slots that V15's
    reserve prices at 100,000. Safe outcome: POST drops unbacked orders first (the once-per-block
    prune), so the funded maker lists."""
    listed = len(client.get("/api/orders").json()["orders"])   # a read: the book pruned now
    monkeypatch.setattr(orderbook, "MAX_ORDERS", listed + 4)
    stake = 2.5 * ORDER_SLOT_BACKING
    for _ in range(2):
        key = new_key(net, stake)
        for _ in range(2):
            r = client.post("/api/orders", json=_body(net, key))
            assert r.status_code == 201, r.text
        send(net.anvil.w3, key, net.dep.engine.functions.withdraw(int(stake * 10**TOKEN_DECIMALS)), "withdraw")
        net.anvil.mine()
        assert net.dep.engine.functions.health(key.address).call()[0] == 0   # holds nothing now
    funded = new_key(net, 50_000)
    r = client.post("/api/orders", json=_body(net, funded, size_wad=10**16))
    assert r.status_code == 201, r.text


def test_order_book__one_stake_rotated_through_keys__the_next_read_drops_the_unbacked_orders(
        client, net, monkeypatch):  # noqa: F811
    """Held, the bound on V17: once anyone reads the book at a later block, the orders of the
    keys that withdrew their stake are dropped (only the key holding it keeps its orders) and
    the funded maker lists."""
    listed = len(client.get("/api/orders").json()["orders"])
    monkeypatch.setattr(orderbook, "MAX_ORDERS", listed + 4)
    stake = 2.5 * ORDER_SLOT_BACKING
    keys = []
    for _ in range(2):
        key = new_key(net, stake)
        keys.append(key)
        for _ in range(2):
            assert client.post("/api/orders", json=_body(net, key)).status_code == 201
        send(net.anvil.w3, key, net.dep.engine.functions.withdraw(int(stake * 10**TOKEN_DECIMALS)), "withdraw")
        net.anvil.mine()
    for key in keys:
        assert client.get("/api/orders", params={"account": key.address}).json()["orders"] == []
    funded = new_key(net, 50_000)
    r = client.post("/api/orders", json=_body(net, funded, size_wad=10**16))
    assert r.status_code == 201, r.text

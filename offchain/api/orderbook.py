"""An order book of signed EIP-712 maker orders, validated before listing and dropped once
filled, cancelled or expired (checked against the engine's `order_filled` once per block).

A maker's listed orders must be backed: the initial margin of what they would open (at the
oracle's per-unit IM rate of each side, net of what they would only close of the maker's
position) plus ORDER_SLOT_BACKING per order must not exceed the maker's free margin on chain
(equity minus IM). Keys cost nothing to make, so without it keys holding nothing (or dust
behind 1-wei orders) could fill the book with orders no taker can fill and shut every funded
maker out. Backing is checked when an order is listed and again once per block, before the
block's first read or listing: a maker whose free margin shrank loses its newest orders until
the rest are backed.

The book holds no keys and moves no funds: takers fill a listed order themselves with
`engine.fill(order, signature, size)`; the engine re-checks everything.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from eth_account import Account
from eth_utils import to_checksum_address

from offchain.api.errors import ApiError
from offchain.api.market import Snapshot
from offchain.chain.contracts import WAD, Deployment, batch_call
from offchain.chain.orders import EngineDomain, Order, order_digest

CANCELLED = 2**256 - 1
SECP256K1_HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2
MAX_ORDERS = 10_000
MAX_ORDERS_PER_MAKER = 200
# free margin (units of the settlement token) each listed order reserves on top of the IM it
# would open: without it a 1-wei order needs next to nothing, and dust backs a key's whole quota
ORDER_SLOT_BACKING = 10.0


def signature_bytes(text: str) -> bytes:
    """65-byte r || s || v; a 64-byte EIP-2098 compact signature is expanded."""
    raw = bytes.fromhex(text[2:])
    if len(raw) == 64:
        r, vs = raw[:32], int.from_bytes(raw[32:], "big")
        raw = r + (vs & ((1 << 255) - 1)).to_bytes(32, "big") + bytes([27 + (vs >> 255)])
    return raw


class OrderBook:
    def __init__(self, dep: Deployment, chain_id: int):
        self.dep = dep
        self.domain = EngineDomain(chain_id, dep.engine.address)
        self._orders: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._pruned_block = -1

    def add(self, body: dict, signature: str, snap: Snapshot) -> dict:
        # the book as a read would see it: orders their makers no longer back do not count
        # against the book's or a maker's quota (a stake rotated through keys backs one at a time)
        self._prune(snap)
        order = Order(account=to_checksum_address(body["account"]), instrument_id=int(body["instrument_id"]),
                      is_buy=bool(body["is_buy"]), size_wad=int(body["size_wad"]),
                      limit_price_wad=int(body["limit_price_wad"]), order_nonce=int(body["order_nonce"]),
                      deadline=int(body["deadline"]))
        if order.limit_price_wad == 0:
            raise ApiError(422, ["body", "order", "limit_price_wad"], "must be > 0, got 0")
        sig = signature_bytes(signature)
        if int.from_bytes(sig[32:64], "big") > SECP256K1_HALF_N or sig[64] not in (27, 28):
            raise ApiError(422, ["body", "signature"], "must have a low s and v of 27 or 28 "
                                                       "(a malleable signature is refused)")
        digest = order_digest(order, self.domain)
        try:
            signer = Account._recover_hash(digest, signature=sig)
        except Exception as exc:  # noqa: BLE001 - any recovery failure is a bad signature
            raise ApiError(422, ["body", "signature"], f"not a valid signature: {exc}") from exc
        if signer != order.account:
            raise ApiError(422, ["body", "signature"],
                           f"signed by {signer}, not by order.account {order.account}")
        if order.deadline <= snap.now:
            raise ApiError(422, ["body", "order", "deadline"],
                           f"must be after the chain's time {snap.now}, got {order.deadline}")
        row = snap.row(order.instrument_id)
        if row < 0:
            raise ApiError(422, ["body", "order", "instrument_id"],
                           f"no such instrument: {order.instrument_id} (listed: 1..{len(snap.table)})")
        if not snap.table.active[row] or not snap.live[row]:
            raise ApiError(422, ["body", "order", "instrument_id"],
                           f"instrument {order.instrument_id} is not open for trading (inactive or expired)")
        if any(rate != rate for rate in (snap.rates[0][row], snap.rates[1][row])):   # NaN: never posted
            raise ApiError(422, ["body", "order", "instrument_id"],
                           f"instrument {order.instrument_id} has no margin rates on chain yet")
        h = "0x" + digest.hex()
        fns = self.dep.engine.functions
        filled, health, view = batch_call(self.dep.w3, [fns.order_filled(digest), fns.health(order.account),
                                                        fns.account(order.account)])
        if filled == CANCELLED:
            raise ApiError(422, ["body", "order"], f"order {h} was cancelled on chain")
        if filled >= order.size_wad:
            raise ApiError(422, ["body", "order"], f"order {h} is already filled")
        with self._lock:
            if h in self._orders:
                raise ApiError(409, ["body", "order"], f"order {h} is already listed")
            if len(self._orders) >= MAX_ORDERS:
                raise ApiError(429, ["body", "order"], f"the book is full ({MAX_ORDERS} orders)")
            if sum(o["order"].account == order.account for o in self._orders.values()) >= MAX_ORDERS_PER_MAKER:
                raise ApiError(429, ["body", "order", "account"],
                               f"{order.account} already lists {MAX_ORDERS_PER_MAKER} orders")
            entry = {"hash": h, "order": order, "digest": digest, "signature": "0x" + sig.hex(),
                     "filled": int(filled)}
            listed = [e for e in self._orders.values() if e["order"].account == order.account]
            free = free_margin(health)
            need = backing_needed(listed + [entry], positions_of(view), snap)
            if need > free:
                raise ApiError(422, ["body", "order", "account"],
                               f"{order.account}'s free margin on chain ({free:,.2f}: equity minus initial margin) "
                               f"does not back its orders ({need:,.2f}: the initial margin they would open plus "
                               f"{ORDER_SLOT_BACKING:,.0f} per order, this order and the {len(listed)} it lists); "
                               "deposit, or list orders that close positions")
            self._orders[h] = entry
        return self._public(entry, snap)

    def delist(self, account: str) -> int:
        """Drop a maker's orders from the book (they stay valid on chain until their deadline:
        a maker that wants them dead cancels on chain). Returns how many were dropped."""
        with self._lock:
            gone = [h for h, e in self._orders.items() if e["order"].account == account]
            for h in gone:
                del self._orders[h]
        return len(gone)

    def get(self, h: str, snap: Snapshot) -> dict | None:
        self._prune(snap)
        entry = self._orders.get(h.lower())
        return self._public(entry, snap) if entry else None

    def list(self, snap: Snapshot, instrument_id: int | None = None, account: str | None = None) -> list[dict]:
        self._prune(snap)
        with self._lock:
            entries = list(self._orders.values())
        out = [self._public(e, snap) for e in entries
               if (instrument_id is None or e["order"].instrument_id == instrument_id)
               and (account is None or e["order"].account == account)]
        return sorted(out, key=lambda o: (o["order"]["instrument_id"], o["order"]["is_buy"], o["price"]))

    def _prune(self, snap: Snapshot) -> None:
        """Once per block: refresh fills from chain; drop filled, cancelled and expired orders."""
        with self._lock:
            if snap.block == self._pruned_block or not self._orders:
                self._pruned_block = snap.block
                return
            entries = list(self._orders.values())
            fills = batch_call(self.dep.w3, [self.dep.engine.functions.order_filled(e["digest"])
                                             for e in entries])
            for e, filled in zip(entries, fills, strict=True):
                o = e["order"]
                row = snap.row(o.instrument_id)
                done = filled == CANCELLED or filled >= o.size_wad or o.deadline <= snap.now \
                    or row < 0 or not snap.live[row]
                if done:
                    del self._orders[e["hash"]]
                else:
                    e["filled"] = int(filled)
            self._unback(snap)
            self._pruned_block = snap.block

    def _unback(self, snap: Snapshot) -> None:
        """Drop each maker's newest orders until the rest are backed by its free margin now
        (the caller holds the lock)."""
        by_maker: dict[str, list[dict]] = defaultdict(list)
        for e in self._orders.values():   # insertion order: oldest first
            by_maker[e["order"].account].append(e)
        makers = list(by_maker)
        if not makers:
            return
        fns = self.dep.engine.functions
        reads = batch_call(self.dep.w3, [c for m in makers for c in (fns.health(m), fns.account(m))])
        for k, maker in enumerate(makers):
            free, positions, kept = free_margin(reads[2 * k]), positions_of(reads[2 * k + 1]), by_maker[maker]
            while kept and backing_needed(kept, positions, snap) > free:
                del self._orders[kept.pop()["hash"]]

    @staticmethod
    def _public(e: dict, snap: Snapshot) -> dict:
        o: Order = e["order"]
        remaining = o.size_wad - e["filled"]
        return {"hash": e["hash"], "signature": e["signature"],
                "order": {"account": o.account, "instrument_id": o.instrument_id, "is_buy": o.is_buy,
                          "size_wad": str(o.size_wad), "limit_price_wad": str(o.limit_price_wad),
                          "order_nonce": str(o.order_nonce), "deadline": o.deadline},
                "filled_wad": str(e["filled"]), "remaining_wad": str(remaining),
                "size": o.size_wad / WAD, "remaining": remaining / WAD, "price": o.limit_price_wad / WAD,
                "instrument": snap.describe(snap.row(o.instrument_id)) if snap.row(o.instrument_id) >= 0 else {}}


def free_margin(health) -> float:
    """Equity minus initial margin (units), from the engine's `health` view; never below 0."""
    equity, _value, im, *_rest = health
    return max(int(equity) - int(im), 0) / WAD


def positions_of(view) -> dict[int, int]:
    """{instrument id: size (WAD, signed)} from the engine's `account` view."""
    return {int(i): int(size) for i, size, _funding in view[2]}


def backing_needed(entries: list[dict], positions: dict[int, int], snap: Snapshot) -> float:
    """Free margin (units) one maker's listed `entries` reserve: the IM they would open plus
    ORDER_SLOT_BACKING per order."""
    return opening_im(entries, positions, snap) + ORDER_SLOT_BACKING * len(entries)


def opening_im(entries: list[dict], positions: dict[int, int], snap: Snapshot) -> float:
    """Initial margin (units) of what one maker's orders would open if all were filled at
    once: per instrument and side, the remaining size beyond what would only close the
    position (a buy closes a short, a sell a long), at the oracle's IM rate of that side."""
    buys: dict[int, int] = defaultdict(int)
    sells: dict[int, int] = defaultdict(int)
    for e in entries:
        o = e["order"]
        (buys if o.is_buy else sells)[o.instrument_id] += o.size_wad - e["filled"]
    need = 0.0
    for iid in buys.keys() | sells.keys():
        held = positions.get(iid, 0)
        opens_long, opens_short = max(buys[iid] + min(held, 0), 0), max(sells[iid] - max(held, 0), 0)
        if not opens_long and not opens_short:
            continue
        long_rate, short_rate = snap.rates[0][snap.row(iid)], snap.rates[1][snap.row(iid)]
        if long_rate != long_rate or short_rate != short_rate:   # NaN: no rates posted yet
            return float("inf")
        need += opens_long / WAD * long_rate + opens_short / WAD * short_rate
    return need

"""A Python client for netmargin: what a trader, a market maker or an integrator does with
a deployment, in a few calls. The `netmargin` CLI is built on it.

    from offchain.chain.client import Client
    c = Client.connect("http://127.0.0.1:8545", ENGINE, account=my_local_account)
    c.deposit(25_000)                                   # approve (if needed) + deposit
    for ins in c.instruments():                         # ids, names, marks
        print(ins.id, ins.name, ins.mark)
    order = c.make_order("BTC-20240628-70000-C", "sell", size=2, price=3_150)
    order.save("order.json")                            # hand it to a taker...
    taker.fill(SignedOrder.load("order.json"))          # ...who fills it (checked first)
    c.cancel(order)                                     # or the maker cancels the rest
    state = c.account()                                 # equity, IM/MM, available to withdraw
    c.withdraw("max")                                   # everything above initial margin
    c.history()                                         # fills, liquidations, settlements, ...
    c.report()                                          # scenarios, binding loss, shares

Amounts and prices are floats in settlement-token units (USD); on-chain values are WAD
integers (1e18) and are converted exactly at the edge. Writes need `account` (an
eth-account `LocalAccount`); reads never do. Every refusal is a `UserError` in plain words:
a transaction is simulated before it is sent, and a revert is explained without paying gas.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from offchain.chain.contracts import (
    WAD,
    Deployment,
    batch_call,
    call_named,
    connect,
    underlying_name,
)
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.errors import UserError
from offchain.risk.pricing import CALL, FUTURE, KIND_NAMES, PERPETUAL, PUT

# what a revert reason means for the user, and what to do about it
REVERT_ADVICE = {
    "engine: below initial margin": "the account would end below its initial margin; "
                                    "withdraw or trade less, or add collateral first",
    "engine: insufficient cash": "the account does not hold that much cash",
    "engine: stale marks": "the oracle's prices are too old; wait for the keeper to post fresh ones",
    "engine: stale rates": "the oracle's margin rates are too old; wait for the keeper",
    "engine: leaf not newer than margin basis": "the account already uses this root's margin (or a newer one)",
    "engine: leaf for another book": "the leaf was computed for another book; fetch the current proof",
    "engine: leaf older than the book's last reduction": "the book shrank after this root; wait for the next one",
    "oracle: invalid proof": "the proof is not for the oracle's current root; fetch the current proof",
    "engine: order expired": "the order's deadline has passed; ask the maker for a new one",
    "engine: fill exceeds remaining size": "less of the order is left; fill a smaller size",
    "engine: invalid signature": "the order was not signed by its account; check the order file",
    "engine: order cancelled": "the maker cancelled this order",
    "engine: self-trade": "the maker and the taker are the same account",
    "engine: instrument expired": "the instrument has expired; it can only be settled",
    "engine: paused": "the engine is paused for new risk; deposits and reductions still work",
    "engine: caller is not the maker": "only the account that signed an order can cancel it",
    "engine: zero amount": "the amount must be above zero",
}
# a fill price further than this from the mark needs explicit confirmation (CLI: --yes)
FAR_FROM_MARK = 0.2


def plain_revert(reason: str) -> str:
    key = reason.removeprefix("execution reverted: ").strip()
    advice = REVERT_ADVICE.get(key)
    return f"{key}: {advice}" if advice else key


def _number(x: float) -> str:
    """70000.0 -> '70000', 2.5 -> '2.5' (no exponent)."""
    return f"{x:.8f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Instrument:
    id: int
    underlying: str
    kind: int  # offchain.risk.pricing codes: FUTURE, PERPETUAL, CALL, PUT
    strike: float  # 0 for futures and perpetuals
    expiry: int  # unix seconds, 0 for perpetuals
    active: bool
    mark: float = math.nan  # the oracle's mark (nan before the first post)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def name(self) -> str:
        """BTC-PERP, BTC-20240628 (future), BTC-20240628-70000-C (call), ...-P (put)."""
        if self.kind == PERPETUAL:
            return f"{self.underlying}-PERP"
        day = datetime.fromtimestamp(self.expiry, UTC).strftime("%Y%m%d")
        if self.kind == FUTURE:
            return f"{self.underlying}-{day}"
        return f"{self.underlying}-{day}-{_number(self.strike)}-{'C' if self.kind == CALL else 'P'}"

    def expired(self, now: int) -> bool:
        return self.kind != PERPETUAL and self.expiry <= now

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "underlying": self.underlying,
                "kind": self.kind_name, "strike": self.strike or None,
                "expiry": self.expiry or None, "active": self.active,
                "mark": None if math.isnan(self.mark) else self.mark}


@dataclass(frozen=True)
class Position:
    instrument: Instrument
    size: float
    value: float  # size x mark

    def as_dict(self) -> dict:
        return {**self.instrument.as_dict(), "size": self.size, "value": self.value}


@dataclass(frozen=True)
class AccountState:
    address: str
    cash: float
    equity: float
    initial_margin: float
    maintenance_margin: float
    # signed time of the applied leaf's root, or of the first trade since (0: no positions)
    margin_basis_timestamp: int
    available_to_withdraw: float
    liquidatable: bool
    state_nonce: int
    positions: list[Position] = field(default_factory=list)
    # why a withdrawal would be refused right now even within the available amount ("" if none)
    withdraw_blocked: str = ""

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in (
            "address", "cash", "equity", "initial_margin", "maintenance_margin",
            "margin_basis_timestamp", "available_to_withdraw", "liquidatable", "state_nonce", "withdraw_blocked")}
        return {**out, "positions": [p.as_dict() for p in self.positions]}


@dataclass(frozen=True)
class SignedOrder:
    """A maker order with its EIP-712 signature, as written to and read from JSON files."""

    engine: str
    order: Order
    signature: bytes

    def to_json(self) -> str:
        return json.dumps({"engine": self.engine, "order": self.order.message(),
                           "signature": "0x" + self.signature.hex()}, indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str, where: str = "order") -> SignedOrder:
        try:
            doc = json.loads(text)
            o = doc["order"]
            order = Order(o["account"], int(o["instrument_id"]), bool(o["is_buy"]), int(o["size_wad"]),
                          int(o["limit_price_wad"]), int(o["order_nonce"]), int(o["deadline"]))
            sig = bytes.fromhex(doc["signature"].removeprefix("0x"))
            return cls(str(doc.get("engine", "")), order, sig)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{where}: not an order ({type(exc).__name__}: {exc}); expected the JSON "
                            "written by `netmargin order`") from exc

    @classmethod
    def load(cls, path: str | Path) -> SignedOrder:
        p = Path(path)
        try:
            return cls.from_json(p.read_text(), str(p))
        except OSError as exc:
            raise UserError(f"{p}: cannot read the order file: {exc.strerror}") from exc


@dataclass(frozen=True)
class OrderStatus:
    size: float
    filled: float
    remaining: float
    cancelled: bool
    expired: bool
    deadline: int

    @property
    def fillable(self) -> bool:
        return not (self.cancelled or self.expired) and self.remaining > 0


class Client:
    """One deployment, optionally one signing account. Build with `Client.connect(...)`."""

    def __init__(self, dep: Deployment, account: LocalAccount | None = None):
        self.dep = dep
        self.w3 = dep.w3
        self.account_key = account
        self._instruments: list[Instrument] | None = None
        self._decimals: int | None = None
        self._cancelled_flag: int | None = None

    @classmethod
    def connect(cls, rpc_url: str, engine_address: str, account: LocalAccount | None = None) -> Client:
        if not engine_address:
            raise UserError("engine: missing; pass the MarginEngine address (CLI: --engine or "
                            "NETMARGIN_ENGINE)")
        w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        if not w3.is_connected():
            raise UserError(f"rpc: no node answers at {rpc_url}; start one or pass the right URL "
                            "(CLI: --rpc or NETMARGIN_RPC)")
        return cls(connect(w3, engine_address), account)

    # ---- chain ----
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    @property
    def decimals(self) -> int:
        if self._decimals is None:
            self._decimals = self.dep.token.functions.decimals().call()
        return self._decimals

    def _me(self) -> LocalAccount:
        if self.account_key is None:
            raise UserError("account: this action signs a transaction; connect with an account")
        return self.account_key

    def _address(self, address: str | None) -> str:
        if address is None:
            return self._me().address
        if not Web3.is_address(address):
            raise UserError(f"address: must be a 0x-prefixed 20-byte address, got {address!r}")
        return Web3.to_checksum_address(address)

    def send(self, call, what: str) -> dict:
        """Simulate `call` (a web3 contract function), then sign, send and wait for it."""
        me = self._me()
        try:
            call.call({"from": me.address})
            tx = call.build_transaction({"from": me.address, "chainId": self.w3.eth.chain_id,
                                         "nonce": self.w3.eth.get_transaction_count(me.address, "pending")})
        except Exception as exc:  # noqa: BLE001 - explained below
            reason = getattr(exc, "message", None) or str(exc)
            raise UserError(f"{what}: refused: {plain_revert(reason)}") from exc
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(me.sign_transaction(tx).raw_transaction), timeout=120)
        if receipt["status"] != 1:
            raise UserError(f"{what}: transaction reverted in block {receipt['blockNumber']}")
        return receipt

    # ---- instruments ----
    def instruments(self, refresh: bool = False) -> list[Instrument]:
        """Every listed instrument with its current mark."""
        if self._instruments is None or refresh:
            reg = self.dep.registry.functions
            count = reg.instrument_count().call()
            ids = list(range(1, count + 1))
            rows = batch_call(self.w3, [reg.instrument(i) for i in ids]) if ids else []
            marks = self._marks(ids)
            self._instruments = [
                Instrument(i, underlying_name(u), kind, strike / WAD, expiry, active, marks[k])
                for k, (i, (u, kind, strike, expiry, active)) in enumerate(zip(ids, rows, strict=True))]
        return self._instruments

    def _marks(self, ids: list[int]) -> list[float]:
        o = self.dep.oracle.functions
        updated = batch_call(self.w3, [o.market_updated_at(i) for i in ids]) if ids else []
        out = [math.nan] * len(ids)
        posted = [k for k, u in enumerate(updated) if u]
        chunks = [posted[j:j + 32] for j in range(0, len(posted), 32)]
        for chunk, (marks, _f, _at) in zip(chunks, batch_call(
                self.w3, [o.marks([ids[k] for k in c]) for c in chunks]), strict=True):
            for k, m in zip(chunk, marks, strict=True):
                out[k] = m / WAD
        return out

    def instrument(self, ref: int | str) -> Instrument:
        """An instrument by id (7, "7") or name ("BTC-20240628-70000-C", any case)."""
        table = self.instruments()
        text = str(ref).strip()
        if text.isdigit():
            i = int(text)
            if not 1 <= i <= len(table):
                raise UserError(f"instrument: no instrument {i}; ids run from 1 to {len(table)} "
                                "(`netmargin instruments` lists them)")
            return table[i - 1]
        for ins in table:
            if ins.name.upper() == text.upper():
                return ins
        near = [x.name for x in table if x.name.upper().startswith(text.upper().split("-")[0])][:5]
        hint = f"; did you mean one of {', '.join(near)}" if near else ""
        raise UserError(f"instrument: no instrument named {text!r}{hint} "
                        "(`netmargin instruments` lists them)")

    # ---- accounts ----
    def account(self, address: str | None = None) -> AccountState:
        """Cash, positions at the oracle's marks, equity, margins and what may be withdrawn."""
        address = self._address(address)
        view = call_named(self.dep.engine, "account", address)
        h = call_named(self.dep.engine, "health", address)
        table = self.instruments(refresh=True)
        positions = []
        for iid, size_wad, _funding in view["positions"]:
            ins = table[iid - 1]
            size = size_wad / WAD
            positions.append(Position(ins, size, size * (0.0 if math.isnan(ins.mark) else ins.mark)))
        cash, equity, im = view["cash_wad"] / WAD, h["equity_wad"] / WAD, h["im_wad"] / WAD
        free = max(equity - im, 0.0) if positions else max(cash, 0.0)
        free = math.floor(free * 10**self.decimals) / 10**self.decimals
        blocked = ""
        if positions and free > 0:
            params = call_named(self.dep.engine, "trading_params")
            if self.now() > h["marks_updated_at"] + params["max_price_age"]:
                blocked = "the oracle's prices are stale; withdrawals wait for the keeper's next post"
        return AccountState(
            address=address, cash=cash, equity=equity, initial_margin=im,
            maintenance_margin=h["mm_wad"] / WAD, margin_basis_timestamp=int(view["margin_basis_timestamp"]), available_to_withdraw=free,
            liquidatable=h["liquidatable"], state_nonce=view["state_nonce"], positions=positions,
            withdraw_blocked=blocked)

    def history(self, address: str | None = None, from_block: int = 0) -> list[dict]:
        """The account's deposits, withdrawals, fills (as maker or taker), cancellations,
        liquidations (as victim or liquidator), settlements and funding, oldest first."""
        address = self._address(address)
        ev = self.dep.engine.events
        names = {i.id: i.name for i in self.instruments()}
        out: list[dict] = []

        def logs(event, **flt):
            return event().get_logs(from_block=from_block, argument_filters=flt)

        for e in logs(ev.Deposit, account=address):
            out.append(self._entry(e, "deposit", amount=e.args.credit_wad / WAD))
        for e in logs(ev.Withdrawal, account=address):
            out.append(self._entry(e, "withdrawal", amount=e.args.debit_wad / WAD))
        for role, flt in (("maker", {"maker": address}), ("taker", {"taker": address})):
            for e in logs(ev.OrderFilled, **flt):
                a = e.args
                bought = a.maker_is_buy == (role == "maker")
                out.append(self._entry(e, "fill", role=role, side="buy" if bought else "sell",
                                       instrument=names.get(a.instrument_id, a.instrument_id),
                                       size=a.size_wad / WAD, price=a.price_wad / WAD,
                                       fee=a.fee_wad / WAD if role == "taker" else 0.0))
        for e in logs(ev.OrderCancelled, maker=address):
            out.append(self._entry(e, "cancel", order_hash="0x" + e.args.order_hash.hex()))
        for role, flt in (("liquidated", {"account": address}), ("liquidator", {"liquidator": address})):
            for e in logs(ev.Liquidation, **flt):
                a = e.args
                out.append(self._entry(e, "liquidation", role=role, fraction=a.fraction_wad / WAD,
                                       slice_value=a.slice_value_wad / WAD, discount=a.discount_wad / WAD,
                                       payment=a.payment_wad / WAD,
                                       counterparty=a.liquidator if role == "liquidated" else a.account))
        for e in logs(ev.Settlement, account=address):
            a = e.args
            out.append(self._entry(e, "settlement", instrument=names.get(a.instrument_id, a.instrument_id),
                                   size=a.size_wad / WAD, price=a.settlement_price_wad / WAD,
                                   payoff=a.payoff_wad / WAD))
        for e in logs(ev.FundingApplied, account=address):
            a = e.args
            out.append(self._entry(e, "funding", instrument=names.get(a.instrument_id, a.instrument_id),
                                   amount=a.amount_wad / WAD))
        out.sort(key=lambda x: (x["block"], x["log_index"]))
        times = {}
        for x in out:
            if x["block"] not in times:
                times[x["block"]] = int(self.w3.eth.get_block(x["block"])["timestamp"])
            x["time"] = times[x["block"]]
        return out

    @staticmethod
    def _entry(e, kind: str, **fields) -> dict:
        return {"kind": kind, "block": e.blockNumber, "log_index": e.logIndex,
                "tx": e.transactionHash.to_0x_hex(), **fields}

    def report(self, address: str | None = None, vols: dict[str, float] | None = None) -> dict:
        """The risk engine's explanation of the account's live (unexpired) book at the
        oracle's index prices: margins by method, binding scenario, shares, risk array."""
        from offchain.risk import Instruments, Market, RiskEngine, UnderlyingMarket, load_params
        from offchain.risk.explain import explain

        state = self.account(address)
        now = self.now()
        live = [p for p in state.positions if not p.instrument.expired(now)]
        if not live:
            raise UserError(f"account {state.address}: no open (unexpired) positions to report on")
        names = sorted({p.instrument.underlying for p in live})
        spot = {}
        for u in names:
            price, _at = self.dep.oracle.functions.index_price(u.encode().ljust(32, b"\0")).call()
            if price == 0:
                raise UserError(f"index price of {u}: none on chain yet; the keeper posts it")
            spot[u] = price / WAD
        ins = [p.instrument for p in live]
        is_opt = [i.kind in (CALL, PUT) for i in ins]
        instruments = Instruments(
            underlying=tuple(i.underlying for i in ins),
            kind=np.asarray([i.kind for i in ins], dtype=np.int8),
            strike=np.asarray([i.strike if o else math.nan for i, o in zip(ins, is_opt, strict=True)]),
            expiry=np.asarray([math.nan if i.kind == PERPETUAL else float(i.expiry) for i in ins]),
            contract_size=np.ones(len(ins)))
        vols = vols or {}
        market = Market(valuation_time=float(now), underlyings={
            u: UnderlyingMarket(spot=spot[u], vol=vols.get(u, 0.8)) for u in names})
        engine = RiskEngine(load_params(), instruments, market, dtype=np.float64)
        ex = explain(engine, np.asarray([p.size for p in live]))
        ex["account"] = state.as_dict()
        ex["instrument_names"] = [i.name for i in ins]
        ex["spot"] = spot
        return ex

    # ---- orders ----
    def domain(self) -> EngineDomain:
        return EngineDomain(self.w3.eth.chain_id, self.dep.engine.address)

    def make_order(self, instrument: int | str, side: str, size: float, price: float,
                   valid_s: float = 3600, nonce: int | None = None) -> SignedOrder:
        """Sign a maker order: `side` is "buy" or "sell", `price` the limit (fills happen at
        exactly this price), valid for `valid_s` seconds of chain time."""
        if side not in ("buy", "sell"):
            raise UserError(f"side: must be 'buy' or 'sell', got {side!r}")
        if not (size > 0 and math.isfinite(size)):
            raise UserError(f"size: must be > 0, got {size}")
        if not (price >= 0 and math.isfinite(price)):
            raise UserError(f"price: must be >= 0, got {price}")
        if not valid_s > 0:
            raise UserError(f"valid: must be > 0 seconds, got {valid_s}")
        ins = self.instrument(instrument)
        if ins.expired(self.now()):
            raise UserError(f"instrument {ins.name}: expired; it can only be settled")
        me = self._me()
        order = Order(me.address, ins.id, side == "buy", round(size * WAD), round(price * WAD),
                      nonce if nonce is not None else time.time_ns() // 10**6,
                      int(self.now() + valid_s))
        return SignedOrder(self.dep.engine.address, order, sign_order(order, self.domain(), me))

    def order_status(self, signed: SignedOrder) -> OrderStatus:
        o = signed.order
        digest = self.dep.engine.functions.order_hash(o.as_args()).call()
        filled = self.dep.engine.functions.order_filled(digest).call()
        cancelled = filled == 2**256 - 1  # the engine's CANCELLED marker replaces the count
        if cancelled:  # what was filled before the cancel: from the order's fill events
            fills = self.dep.engine.events.OrderFilled().get_logs(
                from_block=0, argument_filters={"order_hash": digest})
            filled = sum(e.args.size_wad for e in fills)
        return OrderStatus(size=o.size_wad / WAD, filled=filled / WAD,
                           remaining=0.0 if cancelled else (o.size_wad - filled) / WAD,
                           cancelled=cancelled, expired=o.deadline < self.now(), deadline=o.deadline)

    def check_fill(self, signed: SignedOrder, size: float | None = None,
                   max_mark_distance: float | None = FAR_FROM_MARK) -> tuple[int, str]:
        """What a fill would do, checked before sending: (size in WAD, warning). Refuses in
        plain words an order for another engine, cancelled, filled, expired or of an expired
        instrument; `warning` is non-empty when the price is further than
        `max_mark_distance` from the mark (the caller decides; the CLI asks for --yes)."""
        o = signed.order
        if signed.engine and signed.engine.lower() != self.dep.engine.address.lower():
            raise UserError(f"order: signed for engine {signed.engine}, not this one "
                            f"({self.dep.engine.address})")
        st = self.order_status(signed)
        when = datetime.fromtimestamp(o.deadline, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if st.cancelled:
            raise UserError("order: the maker cancelled this order; ask for a new one")
        if st.remaining <= 0:
            raise UserError(f"order: already fully filled ({_number(st.size)} of {_number(st.size)}); "
                            "nothing is left to take")
        if st.expired:
            raise UserError(f"order: expired at {when}; ask the maker for a new one")
        if self._me().address == o.account:
            raise UserError("order: you are its maker; a taker must be another account")
        self.instruments(refresh=True)  # the mark as of now, for the price check
        ins = self.instrument(o.instrument_id)
        if ins.expired(self.now()):
            raise UserError(f"order: {ins.name} has expired; it can only be settled")
        left_wad = o.size_wad - round(st.filled * WAD)
        want = left_wad if size is None else round(size * WAD)
        if size is not None and not (size > 0 and math.isfinite(size)):
            raise UserError(f"size: must be > 0, got {size}")
        if want > left_wad:
            raise UserError(f"size: {_number(size)} is more than what is left of the order "
                            f"({_number(left_wad / WAD)})")
        price = o.limit_price_wad / WAD
        warning = ""
        if max_mark_distance is not None and not math.isnan(ins.mark):
            base = max(abs(ins.mark), 1e-9)
            if abs(price - ins.mark) / base > max_mark_distance:
                side = "sell" if o.is_buy else "buy"
                warning = (f"you would {side} {ins.name} at {price:,.2f}, {abs(price / base - 1):.0%} "
                           f"{'below' if price < ins.mark else 'above'} its mark {ins.mark:,.2f}")
        return want, warning

    def fill(self, signed: SignedOrder, size: float | None = None, accept_far_price: bool = False) -> dict:
        """Take `size` (default: all that is left) of a maker's order, after `check_fill`."""
        want, warning = self.check_fill(signed, size)
        if warning and not accept_far_price:
            raise UserError(f"price check: {warning}; pass accept_far_price=True (CLI: --yes) "
                            "if you mean it")
        return self.send(self.dep.engine.functions.fill(signed.order.as_args(), signed.signature, want),
                         "fill")

    def cancel(self, signed: SignedOrder) -> dict:
        """Cancel the unfilled part of one of your own orders."""
        st = self.order_status(signed)
        if signed.order.account != self._me().address:
            raise UserError(f"order: signed by {signed.order.account}; only that account can cancel it")
        if st.cancelled:
            raise UserError("order: already cancelled")
        if st.remaining <= 0:
            raise UserError("order: already fully filled; there is nothing to cancel")
        return self.send(self.dep.engine.functions.cancel_order(signed.order.as_args()), "cancel")

    # ---- funds ----
    def token_units(self, amount: float | str, field: str = "amount") -> int:
        """Tokens -> token base units; refuses non-positive or over-precise amounts."""
        try:
            value = float(amount)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{field}: must be a number of tokens, got {amount!r}") from exc
        units = round(value * 10**self.decimals) if math.isfinite(value) else 0
        if not math.isfinite(value) or units <= 0:
            raise UserError(f"{field}: must be > 0, got {amount!r}")
        if abs(units - value * 10**self.decimals) > 1e-6 * max(1, units):
            raise UserError(f"{field}: the token has {self.decimals} decimals, got {amount!r}")
        return int(units)

    def deposit(self, amount: float | str) -> dict:
        """Approve the engine (if needed) and deposit `amount` tokens."""
        units = self.token_units(amount)
        me = self._me()
        held = self.dep.token.functions.balanceOf(me.address).call()
        if held < units:
            raise UserError(f"amount: {me.address} holds {held / 10**self.decimals:,.{self.decimals}f} "
                            f"tokens, asked to deposit {amount}")
        if self.dep.token.functions.allowance(me.address, self.dep.engine.address).call() < units:
            self.send(self.dep.token.functions.approve(self.dep.engine.address, units), "approve")
        return self.send(self.dep.engine.functions.deposit(units), "deposit")

    def withdraw(self, amount: float | str) -> tuple[dict, float]:
        """Withdraw `amount` tokens, or "max" (all cash without positions, else what keeps
        equity >= initial margin). Returns (receipt, tokens withdrawn)."""
        if amount == "max":
            state = self.account()
            if state.available_to_withdraw <= 0:
                if not state.positions:
                    raise UserError("amount max: the account holds no cash to withdraw")
                raise UserError(
                    f"amount max: nothing is free to withdraw: equity {state.equity:,.2f} is "
                    f"{'below' if state.equity < state.initial_margin else 'at'} the initial margin "
                    f"{state.initial_margin:,.2f} the open positions need; add collateral or reduce "
                    "positions first")
            if state.withdraw_blocked:
                raise UserError(f"amount max: {state.withdraw_blocked}")
            units = int(round(state.available_to_withdraw * 10**self.decimals))
        else:
            units = self.token_units(amount)
        receipt = self.send(self.dep.engine.functions.withdraw(units), "withdraw")
        return receipt, units / 10**self.decimals

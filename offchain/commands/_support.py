"""Shared plumbing of the user commands that talk to the chain (deposit, withdraw, order, fill,
positions, report); not a command itself.

Chain: `--rpc` / `NETMARGIN_RPC` and `--engine` / `NETMARGIN_ENGINE`. Wallet: `--account
<ape alias>` (ape's encrypted keyfile; passphrase from NETMARGIN_PASSPHRASE or a prompt).
Reverts are translated into what went wrong and what to do.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import numpy as np
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from offchain.chain.contracts import WAD, Deployment, call_named, connect, underlying_name
from offchain.errors import UserError
from offchain.keeper.config import KeySpec
from offchain.keeper.keys import load_key
from offchain.risk import Instruments, Market, RiskEngine, UnderlyingMarket, load_params
from offchain.risk.pricing import CALL, KIND_NAMES, PERPETUAL, PUT

# what a revert reason means for the user, and what to do about it
REVERT_ADVICE = {
    "engine: below initial margin": "the account would end below its initial margin; "
                                    "withdraw or trade less, or add collateral first",
    "engine: insufficient cash": "the account does not hold that much cash",
    "engine: stale marks": "the oracle's prices are too old; wait for the keeper to post fresh ones",
    "engine: stale rates": "the oracle's margin rates are too old; wait for the keeper",
    "engine: stale attestation": "the account's margin attestation is too old; wait for the keeper "
                                 "to re-attest it (it does so for every account with positions)",
    "engine: order expired": "the order's deadline has passed; ask the maker for a new one",
    "engine: fill exceeds remaining size": "less of the order is left; fill a smaller size",
    "engine: invalid signature": "the order was not signed by its account; check the order file",
    "engine: order cancelled": "the maker cancelled this order",
    "engine: self-trade": "the maker and the taker are the same account",
    "engine: instrument expired": "the instrument has expired; it can only be settled",
    "engine: paused": "the engine is paused for new risk; deposits and reductions still work",
}


def add_chain_arguments(parser, wallet: bool = True) -> None:
    parser.add_argument("--rpc", default=os.environ.get("NETMARGIN_RPC", "http://127.0.0.1:8545"),
                        help="node URL (env NETMARGIN_RPC)")
    parser.add_argument("--engine", default=os.environ.get("NETMARGIN_ENGINE", ""),
                        help="MarginEngine address (env NETMARGIN_ENGINE)")
    if wallet:
        parser.add_argument("--account", required=True,
                            help="ape account alias (import one with `ape accounts import <alias>`)")


def deployment(args) -> Deployment:
    if not args.engine:
        raise UserError("--engine: missing; pass the MarginEngine address or set NETMARGIN_ENGINE")
    w3 = Web3(HTTPProvider(args.rpc, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise UserError(f"--rpc: no node answers at {args.rpc}; start one or pass the right URL")
    return connect(w3, args.engine)


def wallet(args) -> LocalAccount:
    alias = args.account.removeprefix("ape:")
    return load_key(KeySpec(f"ape:{alias}", "NETMARGIN_PASSPHRASE"), "--account", prompt=True)


def plain_revert(reason: str) -> str:
    key = reason.removeprefix("execution reverted: ").strip()
    advice = REVERT_ADVICE.get(key)
    return f"{key}: {advice}" if advice else key


def send_tx(dep: Deployment, sender: LocalAccount, call, what: str) -> dict:
    """Simulate first (a revert is explained without spending gas), then send and wait."""
    w3 = dep.w3
    try:
        call.call({"from": sender.address})
        tx = call.build_transaction({"from": sender.address, "chainId": w3.eth.chain_id,
                                     "nonce": w3.eth.get_transaction_count(sender.address, "pending")})
    except Exception as exc:  # noqa: BLE001 - explained below
        reason = getattr(exc, "message", None) or str(exc)
        raise UserError(f"{what}: refused: {plain_revert(reason)}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction), timeout=120)
    if receipt["status"] != 1:
        raise UserError(f"{what}: transaction reverted in block {receipt['blockNumber']}")
    return receipt


def token_units(dep: Deployment, amount: str, field: str) -> tuple[int, int]:
    """'1234.5' -> (token base units, decimals); refuses non-positive or over-precise amounts."""
    decimals = dep.token.functions.decimals().call()
    try:
        value = float(amount)
    except ValueError as exc:
        raise UserError(f"{field}: must be a number of tokens, got {amount!r}") from exc
    units = round(value * 10**decimals)
    if not math.isfinite(value) or units <= 0:
        raise UserError(f"{field}: must be > 0, got {amount!r}")
    if abs(units - value * 10**decimals) > 1e-6 * max(1, units):
        raise UserError(f"{field}: the token has {decimals} decimals, got {amount!r}")
    return int(units), decimals


def instrument_rows(dep: Deployment, ids: list[int]) -> list[dict]:
    rows = []
    for iid in ids:
        u, kind, strike, expiry, active = dep.registry.functions.instrument(iid).call()
        rows.append({"id": iid, "underlying": underlying_name(u), "kind": kind,
                     "kind_name": KIND_NAMES[kind], "strike": strike / WAD, "expiry": expiry,
                     "active": active})
    return rows


def describe(row: dict) -> str:
    name = f"{row['underlying']}-{row['kind_name']}"
    if row["kind"] in (CALL, PUT):
        name += f"-{row['strike']:g}"
    if row["expiry"]:
        name += "-" + datetime.fromtimestamp(row["expiry"], UTC).strftime("%Y%m%d")
    return name


def account_book(dep: Deployment, address: str) -> dict:
    """The account read from chain: cash, positions with marks, margins and health."""
    view = call_named(dep.engine, "account", address)
    ids = [p[0] for p in view["positions"]]
    marks = dep.oracle.functions.marks(ids).call()[0] if ids else []
    rows = instrument_rows(dep, ids)
    for row, pos, mark in zip(rows, view["positions"], marks, strict=True):
        row.update(size=pos[1] / WAD, mark=mark / WAD, value=pos[1] * mark / WAD / WAD)
    h = call_named(dep.engine, "health", address)
    return {"address": address, "cash": view["cash_wad"] / WAD, "state_nonce": view["state_nonce"],
            "positions": rows, "attested_im": view["attested_im_wad"] / WAD,
            "attested_mm": view["attested_mm_wad"] / WAD,
            "attested_at": view["attestation_timestamp"], "pending_im": view["pending_im_wad"] / WAD,
            "pending_mm": view["pending_mm_wad"] / WAD, "equity": h["equity_wad"] / WAD,
            "im": h["im_wad"] / WAD, "mm": h["mm_wad"] / WAD, "liquidatable": h["liquidatable"]}


def risk_engine_for(dep: Deployment, rows: list[dict], vols: dict[str, float], now: int) -> RiskEngine:
    """The risk engine over the account's live instruments at the oracle's index prices."""
    names = sorted({r["underlying"] for r in rows})
    spot = {}
    for u in names:
        price, _at = dep.oracle.functions.index_price(u.encode().ljust(32, b"\0")).call()
        if price == 0:
            raise UserError(f"index price of {u}: none on chain yet; run the keeper first")
        spot[u] = price / WAD
    instruments = Instruments(
        underlying=tuple(r["underlying"] for r in rows),
        kind=np.asarray([r["kind"] for r in rows], dtype=np.int8),
        strike=np.asarray([r["strike"] if r["kind"] in (CALL, PUT) else math.nan for r in rows]),
        expiry=np.asarray([math.nan if r["kind"] == PERPETUAL else float(r["expiry"]) for r in rows]),
        contract_size=np.ones(len(rows)))
    market = Market(valuation_time=float(now), underlyings={
        u: UnderlyingMarket(spot=spot[u], vol=vols.get(u, 0.8)) for u in names})
    return RiskEngine(load_params(), instruments, market, dtype=np.float64)

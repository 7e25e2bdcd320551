"""One account's book over a market snapshot: read it from chain, value it, explain it.

Everything here works on one account (a few dozen positions at most); the maths is vectorised
over instruments and over a price grid, never a Python loop over accounts.
"""

from __future__ import annotations

import threading

import numpy as np
import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector

from offchain.api.market import Snapshot
from offchain.chain.contracts import WAD, Deployment, abi_type
from offchain.errors import UserError
from offchain.risk import RiskEngine
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import unit_value

TOKEN_UNITS = 10**6
# an account counts as near liquidation when equity < (1 + NEAR) * MM
NEAR_LIQUIDATION = 0.20
# liquidation price search: spot multiples from 1/50x to 20x, log-spaced (~1% apart), the
# crossing then interpolated between the two grid points around it
_GRID = np.geomspace(0.02, 20.0, 701)


class AccountReader:
    """An account's views in one raw JSON-RPC batch: selectors and ABI types prepared once,
    encoded and decoded with eth_abi, posted on a kept-alive session (web3's per-call
    contract objects cost more than the node takes to answer)."""

    VIEWS = (("engine", "account"), ("engine", "health"), ("token", "balanceOf"), ("token", "allowance"))

    def __init__(self, dep: Deployment):
        self.dep = dep
        self.url = dep.w3.provider.endpoint_uri
        self._local = threading.local()
        self._specs = {}
        for contract_name, fn in self.VIEWS:
            contract = getattr(dep, contract_name)
            abi = next(i for i in contract.abi if i.get("type") == "function" and i["name"] == fn)
            self._specs[fn] = (contract.address, function_abi_to_4byte_selector(abi),
                               [abi_type(i) for i in abi["inputs"]], [abi_type(o) for o in abi["outputs"]])
        self.unit = 10 ** int(dep.token.functions.decimals().call())

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def call(self, calls: list[tuple[str, list]]) -> list:
        body = []
        for k, (fn, args) in enumerate(calls):
            to, selector, ins, _outs = self._specs[fn]
            data = "0x" + (selector + abi_encode(ins, args)).hex()
            body.append({"jsonrpc": "2.0", "id": k, "method": "eth_call", "params": [{"to": to, "data": data}, "latest"]})
        replies = sorted(self._session().post(self.url, json=body, timeout=30).json(), key=lambda r: r["id"])
        out = []
        for (fn, _args), reply in zip(calls, replies, strict=True):
            if "error" in reply:
                raise UserError(f"{fn}: {reply['error'].get('message', reply['error'])}")
            values = abi_decode(self._specs[fn][3], bytes.fromhex(reply["result"][2:]))
            out.append(values[0] if len(values) == 1 else values)
        return out

    def read(self, address: str, wallet: bool = True) -> dict:
        """AccountView and Health (and, with `wallet`, token balance and allowance)."""
        calls = [("account", [address]), ("health", [address])]
        if wallet:
            calls += [("balanceOf", [address]), ("allowance", [address, self.dep.engine.address])]
        replies = self.call(calls)
        view, health = replies[0], replies[1]
        cash, nonce, positions, _im, _mm, basis_ts, *_rest = view
        equity, value, im, mm, liquidatable, _marks_at = health
        out = {"cash": cash / WAD, "state_nonce": int(nonce), "margin_basis_timestamp": int(basis_ts),
               "positions": [(int(i), size / WAD) for i, size, _funding in positions],
               "equity": equity / WAD, "position_value": value / WAD, "im": im / WAD, "mm": mm / WAD,
               "liquidatable": bool(liquidatable)}
        if wallet:
            out["wallet_balance"] = replies[2] / self.unit
            out["allowance"] = replies[3] / self.unit
        return out


def book_vector(snap: Snapshot, positions: list[tuple[int, float]]) -> np.ndarray:
    """Dense sizes over every listed instrument."""
    q = np.zeros(len(snap.table))
    for iid, size in positions:
        row = snap.row(iid)
        if row >= 0:
            q[row] = size
    return q


def live_book(snap: Snapshot, q: np.ndarray) -> np.ndarray:
    return q[snap.live]


def model_margins(engine: RiskEngine, q_live: np.ndarray) -> tuple[float, float]:
    if not np.any(q_live):
        return 0.0, 0.0
    m = engine.single(q_live)
    return m["initial_margin"], m["maintenance_margin"]


def _row_vols(snap: Snapshot, rows: np.ndarray, u: int) -> np.ndarray:
    """Each instrument's vol as the risk engine prices it (on the smile), held as the price
    moves (sticky strike); the underlying's ATM vol without an engine."""
    if snap.engine is None:
        return np.full(len(rows), snap.vol[u])
    return np.asarray(snap.engine.inputs.vol)[snap.live_index[rows]]


def liquidation_prices(snap: Snapshot, q: np.ndarray, equity: float, mm: float) -> list[dict]:
    """Per underlying held: the nearest index price below and above spot at which equity falls
    under `mm`, moving that underlying alone and holding margin at its current value."""
    t = snap.table
    out = []
    held = (q != 0) & snap.live
    for u, name in enumerate(snap.underlyings):
        rows = np.flatnonzero(held & (t.underlying_index == u))
        if len(rows) == 0 or not snap.spot[u] > 0:
            continue
        vols = _row_vols(snap, rows, u)
        s = snap.spot[u] * _GRID[:, None]  # (grid, held)
        tenor = np.where(t.expiry[rows] > 0, np.maximum(t.expiry[rows] - snap.now, 0) / SECONDS_PER_YEAR, 0.0)
        v = unit_value(t.kind[rows], s, s, t.strike[rows], tenor, vols, 0.0) @ q[rows]
        v0 = unit_value(t.kind[rows], snap.spot[u], snap.spot[u], t.strike[rows], tenor, vols, 0.0) @ q[rows]
        gap = equity + v - v0 - mm  # < 0: liquidatable
        short = gap < 0
        below = np.flatnonzero(short & (_GRID < 1.0))
        above = np.flatnonzero(short & (_GRID > 1.0))
        out.append({"underlying": name, "spot": float(snap.spot[u]),
                    "below": _crossing(s[:, 0], gap, below[-1], below[-1] + 1) if len(below) else None,
                    "above": _crossing(s[:, 0], gap, above[0], above[0] - 1) if len(above) else None})
    return out


def _crossing(price: np.ndarray, gap: np.ndarray, bad: int, good: int) -> float:
    """The price between grid points `good` (gap >= 0) and `bad` (gap < 0) where gap = 0."""
    if not 0 <= good < len(price):
        return float(price[bad])
    w = gap[good] / (gap[good] - gap[bad])
    return float(price[good] + w * (price[bad] - price[good]))


def grids(explained: dict) -> list[dict]:
    """Each held underlying's risk array as a price x vol grid (the core scenarios), tail moves
    apart, with the binding scenario's cell."""
    scen = explained["scenarios"]
    held = {p["underlying"] for p in explained["positions"]}
    out = []
    for name, u in explained["underlyings"].items():
        if name not in held:
            continue
        pnl = u["risk_array"]
        core = [s for s in scen if s["kind"] in ("range", "scan")]
        moves = sorted({round(s["price_move"][name], 10) for s in core})
        vols = [v for v in ("vol up", "vol flat", "vol down") if any(s["vol"] == v for s in core)]
        cells: list[list[float | None]] = [[None] * len(moves) for _ in vols]
        for s in core:
            cells[vols.index(s["vol"])][moves.index(round(s["price_move"][name], 10))] = pnl[s["index"]]
        b = u["binding_scenario"]
        binding = None
        if b["kind"] in ("range", "scan"):
            binding = {"vol": vols.index(b["vol"]), "price": moves.index(round(b["price_move"], 10))}
        tails = [{"index": s["index"], "price_move": s["price_move"][name], "vol": s["vol"],
                  "weight": s["weight"][name], "pnl": pnl[s["index"]],
                  "binding": s["index"] == b["index"]}
                 for s in scen if s["kind"] not in ("range", "scan")]
        out.append({"underlying": name, "price_moves": moves, "vols": vols, "pnl": cells,
                    "binding": binding, "tails": tails})
    return out


def pnl_curves(snap: Snapshot, q: np.ndarray, points: int = 61) -> dict[str, list[list[float]]]:
    """Book value change against each held underlying's price (+/-50%), others fixed."""
    t = snap.table
    held = (q != 0) & snap.live
    out = {}
    for u, name in enumerate(snap.underlyings):
        rows = np.flatnonzero(held & (t.underlying_index == u))
        if len(rows) == 0 or not snap.spot[u] > 0:
            continue
        vols = _row_vols(snap, rows, u)
        prices = snap.spot[u] * np.linspace(0.5, 1.5, points)
        s = prices[:, None]
        tenor = np.where(t.expiry[rows] > 0, np.maximum(t.expiry[rows] - snap.now, 0) / SECONDS_PER_YEAR, 0.0)
        v = unit_value(t.kind[rows], s, s, t.strike[rows], tenor, vols, 0.0) @ q[rows]
        v0 = unit_value(t.kind[rows], snap.spot[u], snap.spot[u], t.strike[rows], tenor, vols, 0.0) @ q[rows]
        out[name] = [[float(p), float(x)] for p, x in zip(prices, v - v0, strict=True)]
    return out

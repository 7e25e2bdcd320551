"""The end-to-end devnet demo: Anvil, deploy, five typical traders, the keeper, a historical crash.

`run_demo(...)` returns a `DemoResult` that `demo_report.py` prints and writes as markdown with
charts. Keys: the keeper's two oracle signing keys (of a 2-of-3 set) are written to encrypted
keyfiles and loaded back through `keys.load_key`, the path a production keeper uses.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from offchain.chain.contracts import WAD, Deployment, read_account_list
from offchain.devnet.anvil import Devnet, start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig, KeySpec, PriceSourceConfig
from offchain.keeper.executor import Executor
from offchain.keeper.keys import load_key, write_keyfile
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params
from offchain.risk.explain import explain

log = logging.getLogger("netmargin.demo")

# name -> (first day, last day) of the replay window around a notable crash
CRASHES = {
    "2020-03": ("2020-03-05", "2020-03-20"),
    "2021-05": ("2021-05-12", "2021-05-26"),
    "2022-06": ("2022-06-06", "2022-06-20"),
    "2022-11": ("2022-11-03", "2022-11-15"),
}
TRADERS = ("market_maker", "covered_call", "short_put", "perp_long", "btc_eth_spread")
# collateral each trader keeps after opening: this multiple of its portfolio IM
COLLATERAL_MULTIPLE = 1.25


@dataclass
class DemoResult:
    crash: str
    start: int
    end: int
    addresses: dict[str, str]
    traders: dict[str, str]  # name -> address
    capital: dict[str, dict]  # name -> isolated / cross / portfolio margin at the open, deposit
    liquidations: list[dict] = field(default_factory=list)
    settlements: list[dict] = field(default_factory=list)
    timeline: dict[str, np.ndarray] = field(default_factory=dict)
    funds: dict[str, float] = field(default_factory=dict)
    withdrawal_check: dict[str, str] = field(default_factory=dict)
    keeper_stats: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _strike(spot: float, frac: float, step: float) -> float:
    return float(round(spot * frac / step) * step)


def _books(spot_btc: float, spot_eth: float, short_exp: int, long_exp: int):
    """Instrument specs and each trader's book (instrument index -> size)."""
    k_atm = _strike(spot_btc, 1.0, 250)
    k_otm = _strike(spot_btc, 1.10, 250)
    k_put = _strike(spot_btc, 0.85, 250)
    specs = [
        {"underlying": "BTC", "kind": "perpetual"},                                     # 0
        {"underlying": "ETH", "kind": "perpetual"},                                     # 1
        {"underlying": "BTC", "kind": "future", "expiry": long_exp},                    # 2
        {"underlying": "BTC", "kind": "call", "strike": k_atm, "expiry": short_exp},    # 3
        {"underlying": "BTC", "kind": "call", "strike": k_otm, "expiry": long_exp},     # 4
        {"underlying": "BTC", "kind": "put", "strike": k_put, "expiry": short_exp},     # 5
        {"underlying": "BTC", "kind": "put", "strike": k_atm, "expiry": short_exp},     # 6
    ]
    eth_per_btc = spot_btc / spot_eth
    books = {
        # sells 20 ATM straddles and hedges the (small) net delta with the perp
        "market_maker": {3: -20.0, 6: -20.0, 0: 0.0},
        # long 10 BTC through the dated future, short 10 calls 10% out of the money
        "covered_call": {2: 10.0, 4: -10.0},
        # sells 25 puts 15% out of the money, no hedge
        "short_put": {5: -25.0},
        # 6 BTC long on the perpetual at high leverage
        "perp_long": {0: 6.0},
        # long BTC, short the same dollar amount of ETH
        "btc_eth_spread": {0: 5.0, 1: -round(5.0 * eth_per_btc, 1)},
    }
    return specs, books


def run_demo(crash: str = "2020-03", data_dir: str = str(DATA_DIR), step_hours: float = 2.0,
             start: str | None = None, end: str | None = None, progress=print) -> DemoResult:
    t_begin = time.perf_counter()
    if crash not in CRASHES and not (start and end):
        raise UserError(f"--crash: must be one of {sorted(CRASHES)} (or give --start and --end), got {crash!r}")
    first, last = (start, end) if (start and end) else CRASHES[crash]
    t0, t1 = parse_date(first, "--start"), parse_date(last, "--end")
    if not 0.25 <= step_hours <= 24:
        raise UserError(f"--step-hours: must be between 0.25 and 24, got {step_hours}")
    params = load_params()
    source = ReplaySource(data_dir, ["BTC", "ETH"], PriceSourceConfig().vols)
    source.check_range(t0, t1)
    short_exp = t0 + 8 * DAY + 8 * 3600   # a Friday-08:00-style expiry inside the window
    long_exp = t1 + 7 * DAY + 8 * 3600

    progress(f"starting anvil at {first} and deploying contracts ...")
    with start_anvil(accounts=12, timestamp=t0) as dev, tempfile.TemporaryDirectory() as tmp:
        a = dev.accounts
        owner, dealer, keeper_gas = a[0], a[1], a[2]
        oracle_keys = [a[3], a[4], a[5]]
        trader_keys = dict(zip(TRADERS, a[6:11], strict=True))
        dep = deploy_system(dev.w3, owner, [k.address for k in oracle_keys], 2, params, EngineSettings())
        spot0 = source.spot(t0)
        specs, books = _books(float(spot0[0]), float(spot0[1]), short_exp, long_exp)
        list_instruments(dep, owner, specs)

        # the keeper: two of the three oracle keys, from encrypted keyfiles; its own gas key
        os.environ["NETMARGIN_DEMO_KEY_PASSPHRASE"] = "demo-only"
        specs_keys = []
        for i, k in enumerate(oracle_keys[:2]):
            path = write_keyfile(k, Path(tmp) / f"signer{i}.json", "demo-only")
            specs_keys.append(KeySpec(f"keyfile:{path}", "NETMARGIN_DEMO_KEY_PASSPHRASE"))
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=tmp,
                           signers=specs_keys, price_max_age_s=int(step_hours * 3600),
                           attest_max_age_s=DAY)
        signers = Signers([load_key(s, f"signers[{i}]") for i, s in enumerate(cfg.signers)])
        fund(dep, owner, keeper_gas, 20_000_000)
        fund(dep, owner, dealer, 50_000_000)
        send(dev.w3, owner, dep.token.functions.mint(owner.address, 10**6 * 10**6), "mint")
        send(dev.w3, owner, dep.token.functions.approve(dep.engine.address, 10**6 * 10**6), "approve")
        send(dev.w3, owner, dep.engine.functions.fund_insurance(100_000 * 10**6), "fund_insurance")
        keeper = Keeper(cfg, dep, signers, Executor(dev.w3, keeper_gas, cfg.gas), StateStore(
            Path(tmp) / "keeper.sqlite"), params, source)
        keeper.startup()
        keeper.cycle()  # first marks and rates

        progress("opening five typical books ...")
        capital = _open_books(dev, dep, keeper, books, trader_keys, dealer, owner)
        withdrawal = capital.pop("_withdrawal")

        progress(f"replaying {first} .. {last} every {step_hours:g} h with the keeper running ...")
        timeline = _replay(dev, keeper, trader_keys, t0, t1, int(step_hours * 3600))

        result = DemoResult(crash=crash if not start else f"{first}..{last}", start=t0, end=t1,
                            addresses=dep.addresses,
                            traders={n: k.address for n, k in trader_keys.items()},
                            capital=capital, timeline=timeline, withdrawal_check=withdrawal)
        result.liquidations = _liquidations(dep, trader_keys, keeper_gas.address)
        result.settlements = _settlements(dep)
        result.funds = reconcile(dep)
        result.keeper_stats = _keeper_stats(keeper)
        signers.close()
        result.seconds = time.perf_counter() - t_begin
        return result


def _open_books(dev: Devnet, dep: Deployment, keeper: Keeper, books, trader_keys, dealer, owner):
    """Each trader deposits enough for its legs' standalone margin, trades against the dealer,
    gets attested at portfolio margin, then withdraws down to COLLATERAL_MULTIPLE x IM."""
    w3 = dev.w3
    domain = engine_domain(w3.eth.chain_id, dep.engine.address)
    now = int(w3.eth.get_block("latest")["timestamp"])
    capital: dict[str, dict] = {}
    # the prices of the keeper's last cycle (the demo ran one before opening books)
    spot, vol = keeper.last_spot, keeper.last_vol
    rates = keeper.compute(keeper.posted_marks, spot, vol, now, keeper._live(now))["rates"]
    engine = keeper._risk_engine(spot, vol, now, keeper._live(now))
    live_idx = np.flatnonzero(keeper._live(now))
    for name, book in books.items():
        trader = trader_keys[name]
        q = np.zeros(len(keeper.table))
        for i, size in book.items():
            q[i] = size
        if name == "market_maker":
            # delta-hedge the option legs with the perp
            delta = float(q[live_idx] @ engine.greeks["delta"])
            q[0] = -round(delta, 2)
        explained = explain(engine, q[live_idx])
        standalone = float(np.abs(q) @ np.maximum(rates[0], rates[1]))
        premium = float(np.abs(q) @ np.abs(keeper.posted_marks))
        opening = max(standalone, explained["portfolio_margin"]) * 1.1 + 0.05 * premium + 1_000
        fund(dep, owner, trader, opening)
        for nonce, i in enumerate(np.flatnonzero(q)):
            size = float(q[i])
            price = int(round(float(keeper.posted_marks[i]) * WAD))
            order = Order(trader.address, int(keeper.table.ids[i]), size > 0,
                          int(round(abs(size) * WAD)), price, nonce + 1, now + DAY)
            sig = sign_order(order, domain, trader)
            send(w3, dealer, dep.engine.functions.fill(order.as_tuple(), sig, order.size_wad),
                 f"{name}: fill {size:+g} of instrument {i + 1}")
        dev.mine(now + 60)
        now += 60
        keeper.cycle()  # attests the new books at portfolio margin
        target = COLLATERAL_MULTIPLE * explained["portfolio_margin"]
        capital[name] = {"isolated": explained["isolated_margin"], "cross": explained["cross_margin"],
                         "portfolio": explained["portfolio_margin"], "collateral": target,
                         "book": {int(i) + 1: float(q[i]) for i in np.flatnonzero(q)}}
        # withdraw the excess: first try too much (refused), then down to the target
        cash = dep.engine.functions.cash_wad(trader.address).call() / WAD
        value = float(q @ keeper.posted_marks)
        excess = cash + value - target
        if name == "short_put":
            too_much = int((cash + value) * 10**6)  # everything: below IM, must be refused
            try:
                send(w3, trader, dep.engine.functions.withdraw(too_much), "withdraw")
                refused = "allowed (unexpected)"
            except UserError as exc:
                refused = str(exc).split("would revert: ")[-1]
            capital["_withdrawal"] = {"trader": name, "attempt": f"{too_much / 1e6:,.0f}",
                                      "refused_with": refused}
        if excess > 1:
            send(w3, trader, dep.engine.functions.withdraw(int(excess * 10**6)), f"{name}: withdraw")
            if name == "short_put":
                capital["_withdrawal"]["allowed"] = f"{excess:,.0f}"
    return capital


def _replay(dev: Devnet, keeper: Keeper, trader_keys, t0: int, t1: int, step: int) -> dict:
    names = list(trader_keys)
    times, spots, equity, mm = [], [], [], []
    now = int(dev.w3.eth.get_block("latest")["timestamp"])
    t = max(t0 + step, now + 1)
    while t <= t1:
        dev.mine(t)
        keeper.cycle()
        b = keeper.book
        idx = [b.index.get(trader_keys[n].address) for n in names]
        risk_eq = keeper.last_equity
        times.append(t)
        spots.append(keeper.last_spot)
        equity.append([risk_eq[i] if i is not None else 0.0 for i in idx])
        mm.append([keeper.last_mm[i] if i is not None else 0.0 for i in idx])
        t += step
    return {"time": np.asarray(times), "spot": np.asarray(spots), "equity": np.asarray(equity),
            "mm": np.asarray(mm), "names": names}


def _events(dep: Deployment, name: str) -> list:
    event = getattr(dep.engine.events, name)
    return event().get_logs(from_block=0)


def _liquidations(dep: Deployment, trader_keys, keeper_address: str) -> list[dict]:
    who = {k.address: n for n, k in trader_keys.items()}
    who[keeper_address] = "keeper"
    out = []
    for ev in _events(dep, "Liquidation"):
        ts = dep.w3.eth.get_block(ev["blockNumber"])["timestamp"]
        a = ev["args"]
        out.append({"account": who.get(a["account"], a["account"]),
                    "liquidator": who.get(a["liquidator"], a["liquidator"]),
                    "time": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M"),
                    "block": ev["blockNumber"], "fraction": a["fraction_wad"] / WAD,
                    "slice_value": a["slice_value_wad"] / WAD, "discount": a["discount_wad"] / WAD,
                    "insurance": a["insurance_wad"] / WAD, "payment": a["payment_wad"] / WAD})
    return out


def _settlements(dep: Deployment) -> list[dict]:
    return [{"account": ev["args"]["account"], "instrument_id": ev["args"]["instrument_id"],
             "size": ev["args"]["size_wad"] / WAD, "price": ev["args"]["settlement_price_wad"] / WAD,
             "payoff": ev["args"]["payoff_wad"] / WAD} for ev in _events(dep, "Settlement")]


def reconcile(dep: Deployment) -> dict[str, float]:
    """The engine's funds identity, every term read from chain (exact integers, shown in USD):
    balance*SCALE + external_pnl + socialised == sum(cash) + insurance + fees."""
    e = dep.engine.functions
    holders = set(read_account_list(dep))
    holders |= {ev["args"]["account"] for ev in _events(dep, "Deposit")}
    cash = sum(e.cash_wad(a).call() for a in holders)
    scale = e.SCALE().call()
    balance = dep.token.functions.balanceOf(dep.engine.address).call() * scale
    insurance, fees = e.insurance_wad().call(), e.fees_wad().call()
    socialised, external = e.socialised_loss_wad().call(), e.external_pnl_wad().call()
    lhs = balance + external + socialised
    rhs = cash + insurance + fees
    return {"token_balance": balance / WAD, "external_pnl": external / WAD,
            "socialised_loss": socialised / WAD, "sum_cash": cash / WAD, "insurance_fund": insurance / WAD,
            "fees": fees / WAD, "difference_wad": lhs - rhs, "reconciled": lhs == rhs,
            "accounts": len(holders)}


def _keeper_stats(keeper: Keeper) -> dict[str, float]:
    reg = keeper.metrics.registry
    out = {}
    for metric in reg.collect():
        if metric.name == "keeper_actions":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[f"{s.labels['kind']}:{s.labels['outcome']}"] = s.value
    return out

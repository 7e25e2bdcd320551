"""The end-to-end devnet demo: Anvil, deploy, six typical traders, the keeper, a historical
crash, then the same books through a calm week for contrast.

`run_demo(...)` returns a `DemoResult` (the calm window's in `.calm`) that `demo_report.py`
prints and writes as markdown with charts. Keys: the keeper's two oracle signing keys (of a
2-of-3 set) are written to encrypted keyfiles and loaded back through `keys.load_key`, the
path a production keeper uses.

Every trader deposits, trades with a dealer, gets its leaf in the keeper's next epoch root
(portfolio margin, one signed root for every account), withdraws with that leaf's proof down
to COLLATERAL_MULTIPLE x its initial margin and never adds collateral: a move that eats that
buffer and the gap between initial and maintenance margin makes it liquidatable (the keeper
applies the newest leaf, then liquidates).
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

from offchain.chain.contracts import WAD, Deployment, call_named, read_account_list
from offchain.devnet.anvil import Devnet, start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments, send
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig, KeySpec, PriceSourceConfig
from offchain.keeper.executor import Executor
from offchain.keeper.keys import load_key, write_keyfile
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.roots import leaf_args
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
# a calm week (BTC and ETH daily ranges below 3.2%) replayed after the crash for contrast
CALM = ("2020-07-09", "2020-07-17")
TRADERS = ("market_maker", "covered_call", "short_put", "perp_long", "btc_eth_spread", "basis_trade")
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
    descriptions: dict[str, str] = field(default_factory=dict)  # name -> the book in words
    outcomes: dict[str, dict] = field(default_factory=dict)  # name -> final state, by name
    keeper_holds: list[str] = field(default_factory=list)  # "+1.2 BTC-PERP", ... at the end
    roots: list[dict] = field(default_factory=list)  # every epoch root posted, oldest first
    calm: DemoResult | None = None


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
        # cash and carry: long the dated future, short the perpetual, same size
        "basis_trade": {2: 10.0, 0: -10.0},
    }
    return specs, books


def describe_books(specs: list[dict], books: dict) -> dict[str, str]:
    """Each trader's book in words: what it holds and what portfolio margin does for it."""
    def day(i):
        return datetime.fromtimestamp(specs[i]["expiry"], UTC).strftime("%d %b %Y 08:00")

    k = {i: f"{specs[i]['strike']:,.0f}" for i, s_ in enumerate(specs) if "strike" in s_}
    return {
        "market_maker": (f"sells 20 at-the-money straddles (20 calls and 20 puts struck at {k[3]}, "
                         f"expiring {day(3)}) and hedges their delta with the BTC perpetual. Short "
                         "gamma and vega, flat delta: in a moderate move the calls' loss and the "
                         "puts' gain offset, which portfolio margin sees and isolated margin "
                         "(each leg alone) does not."),
        "covered_call": (f"is long 10 BTC through the future expiring {day(2)} and short 10 calls "
                         f"struck at {k[4]} (10% out of the money). In a rally the future pays for "
                         "the calls, in a fall the calls' premium cushions the future: the pair's "
                         "worst loss is far below the sum of its legs'."),
        "short_put": (f"sells 25 puts struck at {k[5]} (15% below spot, expiring {day(5)}), "
                      "unhedged. One leg: nothing offsets it, so every method charges the same."),
        "perp_long": ("is 6 BTC long on the perpetual with little collateral. One leg: every "
                      "method charges the same."),
        "btc_eth_spread": (f"is long 5 BTC and short {-books['btc_eth_spread'][1]:g} ETH (the same "
                           "dollar amount) on the perpetuals. BTC and ETH move together; portfolio "
                           "margin gives the pair only the calibrated cross-asset offset of the "
                           "risk parameters, cross margin none (different underlyings)."),
        "basis_trade": (f"is long 10 BTC through the future expiring {day(2)} and short 10 BTC on "
                        "the perpetual (a cash-and-carry). Two linear legs of one underlying: cross "
                        "margin nets them, and so does portfolio margin, while isolated margin "
                        "charges both legs in full. (The model shocks both legs' forwards alike, "
                        "so the pair needs next to nothing.)"),
    }


def run_demo(crash: str = "2020-03", data_dir: str = str(DATA_DIR), step_hours: float = 2.0,
             start: str | None = None, end: str | None = None, progress=print,
             calm: bool = True) -> DemoResult:
    """The crash window (a named crash, or --start/--end), then (with `calm`) the same books
    through CALM at twice the step, on a fresh chain."""
    t_begin = time.perf_counter()
    if crash not in CRASHES and not (start and end):
        raise UserError(f"--crash: must be one of {sorted(CRASHES)} (or give --start and --end), got {crash!r}")
    if not 0.25 <= step_hours <= 24:
        raise UserError(f"--step-hours: must be between 0.25 and 24, got {step_hours}")
    first, last = (start, end) if (start and end) else CRASHES[crash]
    label = crash if not start else f"{first}..{last}"
    result = run_window(label, first, last, data_dir, step_hours, progress)
    if calm:
        progress("")
        result.calm = run_window("calm", *CALM, data_dir, max(3 * step_hours, 6.0), progress)
    result.seconds = time.perf_counter() - t_begin
    return result


def run_window(label: str, first: str, last: str, data_dir: str, step_hours: float,
               progress=print) -> DemoResult:
    t_begin = time.perf_counter()
    t0, t1 = parse_date(first, "--start"), parse_date(last, "--end")
    params = load_params()
    source = ReplaySource(data_dir, ["BTC", "ETH"], PriceSourceConfig().vols)
    source.check_range(t0, t1)
    short_exp = t0 + 8 * DAY + 8 * 3600   # a Friday-08:00-style expiry inside the window
    long_exp = t1 + 7 * DAY + 8 * 3600

    progress(f"[{label}] starting anvil at {first} and deploying contracts ...")
    with start_anvil(accounts=6 + len(TRADERS), timestamp=t0) as dev, tempfile.TemporaryDirectory() as tmp:
        a = dev.accounts
        owner, dealer, keeper_gas = a[0], a[1], a[2]
        oracle_keys = [a[3], a[4], a[5]]
        trader_keys = dict(zip(TRADERS, a[6:6 + len(TRADERS)], strict=True))
        # the three signers bond their stake themselves (SignerBond); only bonded ones count
        dep = deploy_system(dev.w3, owner, [k.address for k in oracle_keys], 2, params, EngineSettings(),
                            signer_keys=oracle_keys)
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
                           root_max_age_s=DAY)
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

        progress(f"[{label}] opening {len(TRADERS)} typical books ...")
        capital = _open_books(dev, dep, keeper, books, trader_keys, dealer, owner)
        withdrawal = capital.pop("_withdrawal")
        start_equity = {n: call_named(dep.engine, "health", k.address)["equity_wad"] / WAD
                        for n, k in trader_keys.items()}

        days = (t1 - t0) / DAY
        progress(f"[{label}] replaying {first} .. {last} ({days:g} days, a keeper cycle every "
                 f"{step_hours:g} h) ...")
        timeline = _replay(dev, keeper, trader_keys, t0, t1, int(step_hours * 3600), progress, label)

        result = DemoResult(crash=label, start=t0, end=t1, addresses=dep.addresses,
                            traders={n: k.address for n, k in trader_keys.items()},
                            capital=capital, timeline=timeline, withdrawal_check=withdrawal,
                            descriptions=describe_books(specs, books))
        names = _instrument_names(dep)
        who = {k.address: n for n, k in trader_keys.items()}
        who.update({keeper_gas.address: "keeper", dealer.address: "dealer"})
        result.liquidations = _liquidations(dep, who)
        result.settlements = _settlements(dep, who, names)
        result.outcomes = _outcomes(dep, trader_keys, start_equity, result.liquidations, names)
        result.keeper_holds = _holdings(dep, keeper_gas.address, names)
        result.funds = reconcile(dep)
        result.keeper_stats = _keeper_stats(keeper)
        result.roots = _roots(dep)
        result.seconds = time.perf_counter() - t_begin
        return result


def _open_books(dev: Devnet, dep: Deployment, keeper: Keeper, books, trader_keys, dealer, owner):
    """Each trader deposits enough for its legs' standalone margin, trades against the dealer,
    gets its leaf (portfolio margin) in the keeper's next root, then withdraws with that
    leaf's proof down to COLLATERAL_MULTIPLE x IM."""
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
        keeper.cycle()  # a root with the new book's leaf at portfolio margin
        leaf, proof = leaf_args(keeper.proof(trader.address))
        onchain = call_named(dep.engine, "health", trader.address)
        # the leaf's exact margin may differ a little from the float64 report
        target = COLLATERAL_MULTIPLE * max(explained["portfolio_margin"], leaf[6] / WAD)
        capital[name] = {"isolated": explained["isolated_margin"], "cross": explained["cross_margin"],
                         "portfolio": explained["portfolio_margin"], "collateral": target,
                         "book": {int(i) + 1: float(q[i]) for i in np.flatnonzero(q)}}
        # withdraw the excess: first try too much (refused), then down to the target
        equity = onchain["equity_wad"] / WAD
        excess = equity - target
        if name == "market_maker":
            too_much = int(equity * 10**6)  # everything: below IM, must be refused
            try:
                send(w3, trader, dep.engine.functions.withdraw_with_leaf(too_much, leaf, proof), "withdraw")
                refused = "allowed (unexpected)"
            except UserError as exc:
                refused = str(exc).split("would revert: ")[-1]
            capital["_withdrawal"] = {"trader": name, "attempt": f"{too_much / 1e6:,.0f}",
                                      "refused_with": refused}
        if excess > 1:
            send(w3, trader, dep.engine.functions.withdraw_with_leaf(int(excess * 10**6), leaf, proof),
                 f"{name}: withdraw")
            if name == "market_maker":
                capital["_withdrawal"]["allowed"] = f"{excess:,.0f}"
    return capital


def _replay(dev: Devnet, keeper: Keeper, trader_keys, t0: int, t1: int, step: int,
            progress=print, label: str = "") -> dict:
    names = list(trader_keys)
    times, spots, equity, mm = [], [], [], []
    now = int(dev.w3.eth.get_block("latest")["timestamp"])
    t = max(t0 + step, now + 1)
    liquidated = 0
    next_day = t0 + DAY
    while t <= t1:
        dev.mine(t)
        report = keeper.cycle()
        liquidated += sum(1 for x in report.liquidated if x["ok"])
        if t >= next_day or t + step > t1:
            spot = keeper.last_spot
            progress(f"  [{label}] {datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M}  BTC {spot[0]:>9,.0f}  "
                     f"ETH {spot[1]:>7,.2f}  liquidations so far: {liquidated}")
            next_day += DAY
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


def _instrument_names(dep: Deployment) -> dict[int, str]:
    from offchain.chain.client import Client
    return {i.id: i.name for i in Client(dep).instruments()}


def _book_words(dep: Deployment, address: str, names: dict[int, str]) -> list[str]:
    view = call_named(dep.engine, "account", address)
    return [f"{p[1] / WAD:+,.4g} {names[p[0]]}" for p in view["positions"]]


def _holdings(dep: Deployment, address: str, names: dict[int, str]) -> list[str]:
    return _book_words(dep, address, names)


def _outcomes(dep: Deployment, trader_keys, start_equity: dict[str, float], liquidations: list[dict],
              names: dict[int, str]) -> dict[str, dict]:
    """Each trader at the end: equity, P&L since it kept its collateral, liquidation discounts
    paid, the share of its book taken and by whom, what it still holds (by name)."""
    out = {}
    for name, key in trader_keys.items():
        h = call_named(dep.engine, "health", key.address)
        mine = [x for x in liquidations if x["account"] == name]
        left = 1.0
        for x in mine:
            left *= 1 - x["fraction"]
        out[name] = {
            "start_equity": start_equity[name], "final_equity": h["equity_wad"] / WAD,
            "pnl": h["equity_wad"] / WAD - start_equity[name],
            "discounts": sum(x["discount"] for x in mine), "liquidations": len(mine),
            "taken": 1 - left if mine else 0.0,
            "liquidators": sorted({x["liquidator"] for x in mine}),
            "holds": _book_words(dep, key.address, names),
        }
    return out


def _events(dep: Deployment, name: str) -> list:
    event = getattr(dep.engine.events, name)
    return event().get_logs(from_block=0)


def _liquidations(dep: Deployment, who: dict[str, str]) -> list[dict]:
    """Every liquidation, accounts by name (`who`: address -> name)."""
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


def _roots(dep: Deployment) -> list[dict]:
    """Every epoch root on the oracle for this engine, with its published state block."""
    data = {e["args"]["epoch"]: e["args"]["state_block"]
            for e in dep.oracle.events.EpochDataPublished().get_logs(from_block=0)}
    return [{"epoch": e["args"]["epoch"], "block": e["blockNumber"],
             "time": datetime.fromtimestamp(e["args"]["signed_at"], UTC).strftime("%Y-%m-%d %H:%M"),
             "accounts": e["args"]["account_count"], "state_block": data.get(e["args"]["epoch"])}
            for e in dep.oracle.events.RootPosted().get_logs(from_block=0)
            if e["args"]["engine"] == dep.engine.address]


def _settlements(dep: Deployment, who: dict[str, str], names: dict[int, str]) -> list[dict]:
    return [{"account": who.get(ev["args"]["account"], ev["args"]["account"]),
             "instrument_id": names.get(ev["args"]["instrument_id"], ev["args"]["instrument_id"]),
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

"""Keeper speed on a real Anvil with real contracts (prints figures; not a test).

1. Cycle for N accounts (default 10,000), 1-second blocks: read (events + re-read touched
   books and pending counters at the state block), compute (market leaves, the epoch's
   engine, float risk of every account), sign (every account's leaf with exact margins, both
   trees, the root and its epoch data), send (prices, root, epoch data, liquidations in one
   batch) and receipts, in three cases: a quiet block after a 0.5% move, a block with 100 new
   fills, a 10% crash. Printed: the whole cycle and the blocks from the price update to the
   root mined.
2. Latency with M accounts (default 1,000): an external signer posts a crash; blocks from
   that price update to the keeper's root and liquidation mined, with 1-second interval mining.

Accounts are opened cheaply: traders are *takers* of a few large dealer orders (8 signatures
in all), their transactions sent unsigned through anvil's auto-impersonation in JSON-RPC batches.

    python benchmarks/bench_keeper.py [--accounts 10000] [--latency-accounts 1000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests
from eth_abi import encode as abi_encode
from eth_utils import keccak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offchain.chain.contracts import WAD  # noqa: E402
from offchain.devnet.anvil import start_anvil  # noqa: E402
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments  # noqa: E402
from offchain.keeper.bot import Keeper  # noqa: E402
from offchain.keeper.config import KeeperConfig  # noqa: E402
from offchain.keeper.executor import Executor  # noqa: E402
from offchain.keeper.prices import DAY  # noqa: E402
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order  # noqa: E402
from offchain.keeper.store import StateStore  # noqa: E402
from offchain.risk import load_params  # noqa: E402

T0 = 1_700_000_000
SPOT = {"BTC": 30_000.0, "ETH": 2_000.0}
SPECS = [{"underlying": "BTC", "kind": "perpetual"}, {"underlying": "ETH", "kind": "perpetual"},
         {"underlying": "BTC", "kind": "call", "strike": 32_000, "expiry": T0 + 30 * DAY},
         {"underlying": "BTC", "kind": "put", "strike": 28_000, "expiry": T0 + 30 * DAY}]


class FixedSource:
    """A price source the benchmark moves by hand (the keeper's replay interface)."""

    def __init__(self):
        self.underlyings = ["BTC", "ETH"]
        self.prices = np.array([SPOT["BTC"], SPOT["ETH"]])

    def spot(self, t):
        return self.prices.copy()

    def vol(self, t):
        return np.array([0.6, 0.7])


def rpc_batch(url: str, calls: list[tuple[str, list]], chunk: int = 200) -> list:
    results: list = []
    for i in range(0, len(calls), chunk):
        body = [{"jsonrpc": "2.0", "id": j, "method": m, "params": p}
                for j, (m, p) in enumerate(calls[i:i + chunk])]
        out = sorted(requests.post(url, json=body, timeout=300).json(), key=lambda r: r["id"])
        bad = [r for r in out if "error" in r]
        if bad:
            raise RuntimeError(f"rpc batch: {bad[0]['error']}")
        results.extend(r["result"] for r in out)
    return results


ORDER_T = "(address,uint256,bool,uint256,uint256,uint256,uint256)"


def calldata(signature: str, types: list[str], args: list) -> str:
    """selector + ABI-encoded args (eth_abi directly: web3's encode_abi costs ~10 ms a call)."""
    return "0x" + (keccak(text=signature)[:4] + abi_encode(types, args)).hex()


class Sender:
    """eth_sendTransaction calls with explicit per-sender nonces (batches need them).
    Fresh trader addresses start at nonce 0; only known senders are asked."""

    def __init__(self, w3, fresh: set[str]):
        self.w3 = w3
        self.nonces: dict[str, int] = dict.fromkeys(fresh, 0)

    def __call__(self, frm: str, to: str, data: str) -> tuple[str, list]:
        if frm not in self.nonces:
            self.nonces[frm] = self.w3.eth.get_transaction_count(frm, "pending")
        nonce = self.nonces[frm]
        self.nonces[frm] += 1
        return ("eth_sendTransaction", [{"from": frm, "to": to, "data": data, "gas": hex(1_500_000),
                                         "nonce": hex(nonce)}])


def populate(dev, dep, dealer, keeper: Keeper, n: int, seed: int = 7, first: int = 0) -> list[str]:
    """n new traders (numbered from `first`), each with 1-2 positions taken from the dealer's
    standing orders."""
    url, w3 = dev.url, dev.w3
    w3.provider.make_request("anvil_autoImpersonateAccount", [True])
    rng = np.random.default_rng(seed)
    traders = [w3.to_checksum_address(f"0x{0x10000 + first + i:040x}") for i in range(n)]
    marks = keeper.posted_marks
    domain = engine_domain(w3.eth.chain_id, dep.engine.address)
    # dealer standing orders: one buy and one sell per instrument, big enough for everyone
    orders = {}
    for i in range(len(SPECS)):
        for is_buy in (True, False):
            o = Order(dealer.address, i + 1, is_buy, 10**9 * WAD, int(round(marks[i] * WAD)),
                      1 + 2 * i + is_buy, T0 + 365 * DAY)
            orders[(i, is_buy)] = (o, sign_order(o, domain, dealer))
    token, engine = dep.token, dep.engine
    tx = Sender(w3, set(traders))
    deposit = 200_000 * 10**6
    owner = dealer.address  # the test token lets anyone mint
    rpc_batch(url, [("anvil_setBalance", [t, hex(10**20)]) for t in traders])  # gas money
    calls = [tx(owner, token.address, calldata("mint(address,uint256)", ["address", "uint256"],
                                               [t, deposit])) for t in traders]
    calls += [tx(t, token.address, calldata("approve(address,uint256)", ["address", "uint256"],
                                            [engine.address, deposit])) for t in traders]
    calls += [tx(t, engine.address, calldata("deposit(uint256)", ["uint256"], [deposit]))
              for t in traders]
    for t in traders:
        legs = rng.choice(len(SPECS), size=rng.integers(1, 3), replace=False)
        for leg in legs:
            size = float(np.round(rng.uniform(0.5, 4.0) * (1 if leg != 1 else 10), 2))
            trader_buys = bool(rng.random() < 0.5)
            o, sig = orders[(int(leg), not trader_buys)]
            calls.append(tx(t, engine.address, calldata(
                f"fill({ORDER_T},bytes,uint256)", [ORDER_T, "bytes", "uint256"],
                [o.as_tuple(), sig, int(size * WAD)])))
    # automine off while the pool fills, then mine it out in full blocks (much faster); in
    # slices of 2,000, as Anvil's pool slows down badly with tens of thousands pending
    w3.provider.make_request("evm_setAutomine", [False])
    count_before = dep.engine.functions.account_count().call()
    t0 = time.perf_counter()
    for i in range(0, len(calls), 2_000):
        rpc_batch(url, calls[i:i + 2_000])
        while int(w3.provider.make_request("txpool_status", [])["result"]["pending"], 16):
            w3.provider.make_request("evm_mine", [])
    w3.provider.make_request("evm_setAutomine", [True])
    print(f"   {len(calls):,} transactions sent and mined in {time.perf_counter() - t0:.1f} s", flush=True)
    # every trader ended up holding a position (a failed deposit or fill would leave it unlisted)
    listed = dep.engine.functions.account_count().call() - count_before
    if listed < len(traders):  # (the dealer is listed by its first fill too)
        raise RuntimeError(f"populate: {len(traders) - listed} of {len(traders)} traders hold no position")
    return traders


def system(n_traders: int, label: str):
    # base fee pinned at 0: thousands of batched transactions would otherwise price themselves out
    dev = start_anvil(accounts=6, timestamp=T0, extra_args=("--block-base-fee-per-gas", "0"))
    a = dev.accounts
    admin, dealer, gas, poster = a[0], a[1], a[2], a[3]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [a[4].address], 1, params,
                        EngineSettings(max_price_age_s=DAY, max_liquidation_price_age_s=DAY))
    list_instruments(dep, admin, SPECS)
    fund(dep, admin, dealer, 10**10)
    fund(dep, admin, gas, 10**9)
    return dev, dep, params, a, admin, dealer, gas, poster


def bench_cycle(n: int, tmp: Path) -> None:
    print(f"== keeper cycle with {n:,} accounts")
    dev, dep, params, a, admin, dealer, gas, poster = system(n, "cycle")
    try:
        source = FixedSource()
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(tmp),
                           price_max_age_s=DAY, root_max_age_s=7 * DAY)
        signers = Signers([a[4]])
        keeper = Keeper(cfg, dep, signers, Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"),
                        params, source)
        keeper.startup()
        keeper.cycle()
        t = time.perf_counter()
        populate(dev, dep, dealer, keeper, n)
        print(f"   populate: {n:,} traders opened in {time.perf_counter() - t:.1f} s "
              f"(head block {dev.w3.eth.block_number:,})")
        # 1-second blocks from here on, as a live chain makes them
        dev.interval_mining(1)
        t = time.perf_counter()
        first = keeper.cycle()  # reads every new book, one root for all of them
        print(f"   first cycle (re-read {first.accounts:,} books, root of {first.leaves:,} leaves): "
              f"{time.perf_counter() - t:.1f} s  {fmt(first.seconds)}")

        cases = [("quiet block, 0.5% move", 1.005, 0), ("100 new fills", 1.0, 100),
                 ("10% crash", 0.9, 0)]
        for name, move, fills in cases:
            source.prices = source.prices * move
            if fills:
                populate(dev, dep, dealer, keeper, fills, seed=11, first=len(keeper.book))
                dev.interval_mining(1)  # populate ends on automine
            dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
            r = keeper.cycle()
            root = dep.oracle.events.RootPosted().get_logs(from_block=r.block)
            prices = dep.oracle.events.MarketDataPosted().get_logs(from_block=r.block)
            blocks = (f"price update -> root mined {root[-1]['blockNumber'] - prices[-1]['blockNumber']} block(s)"
                      if root and prices else f"root {'posted' if root else 'not due'}, prices "
                      f"{'posted' if prices else 'not due'}")
            print(f"   {name:24s}: whole cycle {r.seconds['total']:.3f} s for {r.accounts:,} accounts "
                  f"(root epoch {r.epoch}, {r.leaves:,} leaves, {len(r.liquidated)} liquidated); "
                  f"{blocks}  {fmt(r.seconds)}")
    finally:
        dev.stop()


def bench_latency(n: int, tmp: Path) -> None:
    print(f"== price update -> liquidation mined, {n:,} accounts, 1 s blocks")
    dev, dep, params, a, admin, dealer, gas, poster = system(n, "latency")
    stop = threading.Event()
    th = None
    try:
        source = FixedSource()
        # the poster is another oracle signer holding the same 1-of-1 key; the keeper reads the oracle
        post_cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, liquidate=False,
                                settle=False, post_roots=False, price_max_age_s=DAY, data_dir=str(tmp / "poster"))
        poster_keeper = Keeper(post_cfg, dep, Signers([a[4]]), Executor(dev.w3, poster, post_cfg.gas),
                               StateStore(":memory:"), params, source)
        poster_keeper.startup()
        poster_keeper.cycle()
        populate(dev, dep, dealer, poster_keeper, n)
        # a leveraged victim: 10 BTC perps on 5% above their IM (from the posted rates), so
        # a 10% drop takes equity below MM whatever the parameter set
        victim = a[5]
        now0 = dev.w3.eth.get_block("latest")["timestamp"]
        im_rate = poster_keeper.compute(poster_keeper.posted_marks, source.spot(now0),
                                        source.vol(now0), now0, poster_keeper._live(now0))["rates"][0][0]
        fund(dep, admin, victim, int(10 * im_rate * 1.05) + 1)
        o = Order(victim.address, 1, True, 10 * WAD, int(round(poster_keeper.posted_marks[0] * WAD)), 99,
                  T0 + DAY)
        from offchain.devnet.deploy import send
        send(dev.w3, dealer, dep.engine.functions.fill(
            o.as_tuple(), sign_order(o, engine_domain(dev.w3.eth.chain_id, dep.engine.address), victim),
            o.size_wad), "victim fill")
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, post_prices=False,
                           poll_interval_s=0.02, root_max_age_s=7 * DAY, data_dir=str(tmp / "keeper"))
        keeper = Keeper(cfg, dep, Signers([a[4]]), Executor(dev.w3, gas, cfg.gas),
                        StateStore(":memory:"), params, None)
        keeper.startup()
        dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 60)
        keeper.cycle()  # one root for every book, the victim included
        keeper.cycle()
        th = threading.Thread(target=keeper.run_forever, args=(stop,), daemon=True)
        dev.interval_mining(1)
        th.start()
        time.sleep(2)
        source.prices = source.prices * np.array([0.90, 0.90])
        now = dev.w3.eth.get_block("latest")["timestamp"] + 1
        t_post = time.perf_counter()
        poster_keeper.posted_at = 0  # post now
        marks = poster_keeper._marks(source.spot(now), source.vol(now), now)
        live = poster_keeper._live(now)
        rates = poster_keeper.compute(marks, source.spot(now), source.vol(now), now, live)["rates_wad"]
        # the oracle refuses data stamped after the latest block: wait for the block of `now`
        wait_until = time.monotonic() + 5
        while dev.w3.eth.get_block("latest")["timestamp"] < now and time.monotonic() < wait_until:
            time.sleep(0.05)
        poster_keeper.publish_prices(marks, rates, source.spot(now), now, live)
        price_block = dev.w3.eth.get_block("latest")["number"]
        ev = None
        deadline = time.monotonic() + 60
        while ev is None and time.monotonic() < deadline:
            logs = dep.engine.events.Liquidation().get_logs(from_block=price_block)
            ev = next((x for x in logs if x["args"]["account"] == victim.address), None)
            time.sleep(0.05)
        wall = time.perf_counter() - t_post
        if ev is None:
            print("   no liquidation within 60 s")
            return
        mp = dep.oracle.events.MarketDataPosted().get_logs(from_block=price_block - 2)
        price_block = max(x["blockNumber"] for x in mp)
        roots = dep.oracle.events.RootPosted().get_logs(from_block=price_block)
        root_block = roots[0]["blockNumber"] if roots else None
        print(f"   price update mined in block {price_block}, root in block {root_block}, liquidation in "
              f"block {ev['blockNumber']}: {ev['blockNumber'] - price_block} block(s), {wall:.2f} s wall clock")
    finally:
        # the keeper thread finishes its cycle (receipts need the node) before the node stops:
        # a cycle retrying receipts from a stopped node kept the benchmark from exiting
        stop.set()
        if th is not None:
            th.join(timeout=120)
        dev.stop()


def fmt(seconds: dict) -> str:
    return "(" + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items()) + ")"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--latency-accounts", type=int, default=1_000)
    args = p.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory(prefix="bench-keeper-") as tmp:
        bench_cycle(args.accounts, Path(tmp) / "cycle")
        bench_latency(args.latency_accounts, Path(tmp) / "latency")


if __name__ == "__main__":
    main()

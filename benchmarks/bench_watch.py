"""The watcher against a false root on a real Anvil with N accounts (prints figures; not a test).

The keeper's setup of benchmarks/bench_keeper.py (the devnet deployment with SignerBond and
FraudProofs, dealer orders taken by N traders) and the keeper's honest root; then the bonded
signer posts a root over the same books with one trader's MM and IM understated twentyfold
(offchain/devnet/rogue.py). An in-process watcher with a challenger key polls once: it
rebuilds the root, names the false leaf from the signer's epoch file, predicts and estimates
the challenge and sends it. Printed: the rebuild's phases, the challenge's gas, code and
payout, and the wall time from the post_root receipt to the challenge's receipt.

    python benchmarks/bench_watch.py [--accounts 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_keeper import FixedSource, populate, system  # noqa: E402

from offchain.devnet.rogue import post_rogue_root  # noqa: E402
from offchain.keeper.bot import Keeper  # noqa: E402
from offchain.keeper.config import KeeperConfig  # noqa: E402
from offchain.keeper.executor import Executor  # noqa: E402
from offchain.keeper.prices import DAY  # noqa: E402
from offchain.keeper.signing import Signers  # noqa: E402
from offchain.keeper.store import StateStore  # noqa: E402
from offchain.watcher.challenge import Challenger  # noqa: E402
from offchain.watcher.config import WatchConfig  # noqa: E402
from offchain.watcher.watch import Watcher, WatchMetrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000)
    n = ap.parse_args().accounts
    print(f"== watcher challenge of a false root over {n:,} accounts")
    dev, dep, params, a, admin, dealer, gas, poster = system(n, "watch")
    tmp = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, price_max_age_s=DAY,
                           root_max_age_s=7 * DAY)
        keeper = Keeper(cfg, dep, Signers([a[4]]), Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"), params,
                        FixedSource())
        keeper.startup()
        keeper.cycle()
        t = time.perf_counter()
        traders = populate(dev, dep, dealer, keeper, n)
        print(f"   populate: {n:,} traders in {time.perf_counter() - t:.1f} s")
        epoch = 0
        for _ in range(5):   # the keeper posts its root once every book is older than the clock
            dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 1)
            report = keeper.cycle()
            if report.epoch:
                epoch = report.epoch
                break
        if not epoch:
            raise RuntimeError("the keeper posted no root")
        wcfg = WatchConfig(rpc_url=dev.url, engine_address=dep.engine.address, start_epoch=epoch + 1,
                           epoch_dir=str(tmp / "signer"), data_dir=str(tmp / "watch"))
        metrics = WatchMetrics()
        watcher = Watcher(wcfg, dep, metrics, Challenger(wcfg, dep, a[5], metrics))
        watcher.start()
        victim = traders[0]
        t0 = time.perf_counter()
        _path, receipt, _trees = post_rogue_root(
            dep, gas, [a[4]], params, keeper.trees.market_leaves, keeper.listed, epoch + 1, victim,
            lambda x: replace(x, initial_margin_wad=x.initial_margin_wad // 20,
                              maintenance_margin_wad=x.maintenance_margin_wad // 20), tmp / "signer")
        t1 = time.perf_counter()
        [finding] = watcher.poll()
        t2 = time.perf_counter()
        entry = finding.challenge.entry or {}
        print(f"   rogue root {epoch + 1} posted (block {receipt['blockNumber']}, with its data) in {t1 - t0:.2f} s")
        print(f"   watcher poll: rebuild {finding.seconds:.2f} s for {finding.accounts:,} accounts, challenge "
              f"{finding.challenge.status} code {entry.get('code')} gas {entry.get('gas'):,} paid "
              f"{entry.get('paid', 0) / 10**6:,.0f} tokens, {entry.get('blocks_after_post')} blocks after the post")
        print(f"   root posted -> challenge mined: {t2 - t1:.2f} s wall (watcher polling at once; add up to "
              f"poll_interval_s)")
    finally:
        dev.stop()


if __name__ == "__main__":
    main()

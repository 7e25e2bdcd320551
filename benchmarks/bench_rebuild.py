"""Rebuilding an epoch root on a real Anvil with N accounts (prints figures; not a test).

The keeper's setup of benchmarks/bench_keeper.py (dealer orders taken by N traders), the
keeper's root over every book with its published data, then the rebuild a third party runs: read every
book and pending counter at the state block (batched eth_calls), price the market leaves,
exact integer margins and leaves, both trees. Also times `netmargin rebuild` as its own
process (Python start-up and contract ABIs included).

    python benchmarks/bench_rebuild.py [--accounts 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_keeper import FixedSource, populate, system  # noqa: E402

from offchain.chain.rebuild import rebuild_from_chain  # noqa: E402
from offchain.keeper.bot import Keeper  # noqa: E402
from offchain.keeper.config import KeeperConfig  # noqa: E402
from offchain.keeper.executor import Executor  # noqa: E402
from offchain.keeper.prices import DAY  # noqa: E402
from offchain.keeper.signing import Signers  # noqa: E402
from offchain.keeper.store import StateStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    n = ap.parse_args().accounts
    print(f"== rebuild of an epoch root with {n:,} accounts")
    dev, dep, params, a, admin, dealer, gas, poster = system(n, "rebuild")
    try:
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, price_max_age_s=DAY,
                           root_max_age_s=7 * DAY)
        signers = Signers([a[4]])
        keeper = Keeper(cfg, dep, signers, Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"), params,
                        FixedSource())
        keeper.startup()
        keeper.cycle()
        t = time.perf_counter()
        populate(dev, dep, dealer, keeper, n)
        print(f"   populate: {n:,} traders in {time.perf_counter() - t:.1f} s")
        epoch = 0
        for _ in range(5):   # the keeper posts its root once every book is older than the clock
            dev.mine(dev.w3.eth.get_block("latest")["timestamp"] + 1)
            report = keeper.cycle()
            if report.epoch:
                epoch = report.epoch
                print(f"   keeper cycle with root {epoch} ({report.leaves:,} leaves): {report.seconds}")
                break
        if not epoch:
            raise RuntimeError("the keeper posted no root")
        t = time.perf_counter()
        result = rebuild_from_chain(dep, epoch)
        total = time.perf_counter() - t
        print(f"   rebuild in-process: {total:.2f} s for {len(result.trees.account_leaves):,} accounts "
              + " ".join(f"{k}={v:.2f}s" for k, v in result.seconds.items())
              + f"  roots match: {result.matches}")
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "offchain.cli", "rebuild", "--epoch", str(epoch), "--rpc", dev.url,
                            "--engine", dep.engine.address, "--json"],
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t
        out = json.loads(p.stdout) if p.returncode in (0, 1) else {"error": p.stderr.strip()}
        print(f"   `netmargin rebuild` process: {wall:.2f} s wall, exit {p.returncode}, "
              f"matches {out.get('matches')}, phases {out.get('phase_seconds')}")
    finally:
        dev.stop()


if __name__ == "__main__":
    main()

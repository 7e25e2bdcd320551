"""Rebuilding an epoch root on a real Anvil with N accounts (prints figures; not a test).

The keeper's setup of benchmarks/bench_keeper.py (dealer orders taken by N traders), one
root posted with the leaves of every book, then the rebuild a third party runs: read every
book and pending counter at the state block (batched eth_calls), price the market leaves,
exact integer margins and leaves, both trees. Also times `netmargin rebuild` as its own
process (Python start-up and contract ABIs included).

    python benchmarks/bench_rebuild.py [--accounts 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_keeper import FixedSource, populate, system  # noqa: E402

from offchain.chain.eip712 import Domain, sign_multi  # noqa: E402
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves  # noqa: E402
from offchain.chain.rebuild import Publication, find_root, read_books, rebuild_epoch  # noqa: E402
from offchain.chain.roots import EpochTrees  # noqa: E402
from offchain.devnet.deploy import send  # noqa: E402
from offchain.keeper.bot import Keeper  # noqa: E402
from offchain.keeper.config import KeeperConfig  # noqa: E402
from offchain.keeper.executor import Executor  # noqa: E402
from offchain.keeper.prices import DAY  # noqa: E402
from offchain.keeper.roots import EpochStore  # noqa: E402
from offchain.keeper.signing import Signers  # noqa: E402
from offchain.keeper.store import StateStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from test_rebuild_e2e import market_leaves  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    n = ap.parse_args().accounts
    print(f"== rebuild of an epoch root with {n:,} accounts")
    dev, dep, params, a, admin, dealer, gas, poster = system(n, "rebuild")
    try:
        cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, price_max_age_s=DAY,
                           attest_max_age_s=7 * DAY)
        signers = Signers([a[4]])
        keeper = Keeper(cfg, dep, signers, Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"), params,
                        FixedSource())
        keeper.startup()
        keeper.cycle()
        t = time.perf_counter()
        populate(dev, dep, dealer, keeper, n)
        print(f"   populate: {n:,} traders in {time.perf_counter() - t:.1f} s")
        state_block = dev.w3.eth.block_number
        now = dev.w3.eth.get_block(state_block)["timestamp"]
        keeper.last_spot, keeper.last_vol = keeper.source.spot(now), keeper.source.vol(now)
        mleaves = market_leaves(keeper, params, now)
        t = time.perf_counter()
        books = read_books(dep, state_block)
        leaves = epoch_account_leaves(MarketInputs.from_leaves(params, mleaves, now), books.addresses,
                                      books.state_nonces, books.books_wad, books.pending_totals)
        trees = EpochTrees.build(dep.engine.address, 1, leaves, mleaves)
        print(f"   keeper side (read + leaves + trees): {time.perf_counter() - t:.2f} s")
        msg = trees.root_message(timestamp=now, deadline=now + DAY, params_hash=bytes.fromhex(params.hash[2:]))
        sigs = sign_multi(msg, Domain(dev.w3.eth.chain_id, dep.oracle.address), [a[4]])
        send(dev.w3, gas, dep.oracle.functions.post_root(msg.as_args(), sigs), "post_root")
        root = find_root(dep, 1)
        t = time.perf_counter()
        result = rebuild_epoch(dep, params, root, Publication(state_block, mleaves, "benchmark"))
        total = time.perf_counter() - t
        print(f"   rebuild in-process: {total:.2f} s for {len(result.trees.account_leaves):,} accounts "
              + " ".join(f"{k}={v:.2f}s" for k, v in result.seconds.items())
              + f"  roots match: {result.matches}")
        path = EpochStore(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rebuild-{os.getpid()}").write(
            trees, msg, sigs)
        doc = json.loads(path.read_text())
        doc["state_block"] = state_block
        path.write_text(json.dumps(doc))
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "offchain.cli", "rebuild", "--epoch", "1", "--rpc", dev.url,
                            "--engine", dep.engine.address, "--epoch-file", str(path), "--json"],
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t
        out = json.loads(p.stdout) if p.returncode in (0, 1) else {"error": p.stderr.strip()}
        print(f"   `netmargin rebuild` process: {wall:.2f} s wall, exit {p.returncode}, "
              f"matches {out.get('matches')}, phases {out.get('phase_seconds')}")
        signers.close()
    finally:
        dev.stop()


if __name__ == "__main__":
    main()

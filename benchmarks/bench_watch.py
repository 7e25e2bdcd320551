"""The watcher against a false root on a real Anvil with N accounts (prints figures; not a test).

The keeper's setup of benchmarks/bench_keeper.py (the devnet deployment with SignerBond and
FraudProofs, dealer orders taken by N traders) and the keeper's honest root; then the bonded
signer posts a root over the same books with one trader's MM and IM understated twentyfold
(offchain/devnet/rogue.py). An in-process watcher with a challenger key polls once: it
rebuilds the root, names the false leaf from the signer's epoch file, predicts and estimates
the challenge and sends it. Printed: the rebuild's phases, the challenge's gas, code and
payout, and the wall time from the post_root receipt to the challenge's receipt.

Then (`--applied K`, 0 to skip) the signer, bonded again, posts another such root and
publishes no leaf: a watcher without epoch files finds the root false but not provable, K
traders apply their leaves of it (apply_leaf, one transaction each) and the victim its false
one with withdraw_with_leaf; one poll reads the K+1 leaves back from their transactions and
challenges the false one. Printed: the harvest's wall time per applied leaf.

    python benchmarks/bench_watch.py [--accounts 1000] [--applied 200]
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

from bench_keeper import FixedSource, Sender, populate, rpc_batch, system  # noqa: E402

from offchain.devnet.deploy import send  # noqa: E402
from offchain.devnet.rogue import post_rogue_root  # noqa: E402
from offchain.keeper.bot import Keeper  # noqa: E402
from offchain.keeper.config import KeeperConfig  # noqa: E402
from offchain.keeper.executor import Encoder, Executor  # noqa: E402
from offchain.keeper.prices import DAY  # noqa: E402
from offchain.keeper.signing import Signers  # noqa: E402
from offchain.keeper.store import StateStore  # noqa: E402
from offchain.watcher.challenge import Challenger  # noqa: E402
from offchain.watcher.config import WatchConfig  # noqa: E402
from offchain.watcher.watch import Watcher, WatchMetrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000)
    ap.add_argument("--applied", type=int, default=200, help="leaves applied from the withheld root (0: skip)")
    args = ap.parse_args()
    n = args.accounts
    if not 0 <= args.applied < n:
        ap.error(f"--applied: must be >= 0 and below --accounts ({n}), got {args.applied}")
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
              f"{finding.challenge.status} code {entry.get('code')} gas {entry.get('gas'):,} (+ commit "
              f"{entry.get('commit_gas'):,}) paid "
              f"{entry.get('paid', 0) / 10**6:,.0f} tokens, {entry.get('blocks_after_post')} blocks after the post")
        print(f"   root posted -> challenge mined (commit, then reveal): {t2 - t1:.2f} s wall (watcher polling at once; add up to "
              f"poll_interval_s)")
        if args.applied:
            withheld(dev, dep, params, keeper, a, gas, traders, epoch + 2, args.applied, tmp)
    finally:
        dev.stop()


def withheld(dev, dep, params, keeper, a, gas, traders, epoch: int, k: int, tmp: Path) -> None:
    """A false root with no leaf published, K honest leaves and the victim's false one applied."""
    signer, token = a[4], dep.token
    bond = dep.signer_bond
    stake = bond.functions.required_bond().call()
    send(dev.w3, a[0], token.functions.mint(a[0].address, stake), "mint")
    send(dev.w3, a[0], token.functions.approve(bond.address, stake), "approve")
    send(dev.w3, a[0], bond.functions.bond(signer.address, stake), "bond")
    victim = traders[0]
    _path, _receipt, trees = post_rogue_root(
        dep, gas, [signer], params, keeper.trees.market_leaves, keeper.listed, epoch, victim,
        lambda x: replace(x, initial_margin_wad=x.initial_margin_wad // 20,
                          maintenance_margin_wad=x.maintenance_margin_wad // 20), tmp / "withheld")
    wcfg = WatchConfig(rpc_url=dev.url, engine_address=dep.engine.address, start_epoch=epoch,
                       data_dir=str(tmp / "watch"))
    metrics = WatchMetrics()
    watcher = Watcher(wcfg, dep, metrics, Challenger(wcfg, dep, a[5], metrics))
    watcher.start()
    [finding] = watcher.poll()
    print(f"== withheld root {epoch}: {finding.challenge.status} from the root alone (rebuild "
          f"{finding.seconds:.2f} s)")
    encode, tx = Encoder(dep.engine), Sender(dev.w3, set())
    calls = [tx(t, dep.engine.address, encode("apply_leaf", *_leaf_args(trees, t)).data) for t in traders[1:k + 1]]
    leaf, proof = _leaf_args(trees, victim)
    calls.append(tx(victim, dep.engine.address, encode("withdraw_with_leaf", 10**6, leaf, proof).data))
    dev.w3.provider.make_request("evm_setAutomine", [False])
    rpc_batch(dev.url, calls)
    dev.w3.provider.make_request("evm_mine", [])
    dev.w3.provider.make_request("evm_setAutomine", [True])
    t0 = time.perf_counter()
    [harvest] = watcher.poll()
    seconds = time.perf_counter() - t0
    entry = harvest.challenge.entry or {}
    read = len(watcher.applied)
    t0 = time.perf_counter()      # the reading alone, again: logs, transactions, decoding, proofs
    again = watcher.harvester.applied(harvest.root, harvest.root.block, dev.w3.eth.block_number)
    reading = time.perf_counter() - t0
    assert len(again) == read
    print(f"   {read} applied leaves read back ({metrics.harvested.labels(verdict='false')._value.get():.0f} false), "
          f"challenge {harvest.challenge.status} code {entry.get('code')} gas {entry.get('gas')}")
    print(f"   harvest + challenge poll: {seconds:.2f} s wall, {1000 * seconds / max(read, 1):.1f} ms per applied "
          f"leaf (the challenge included); reading them back alone: {reading:.2f} s "
          f"({1000 * reading / max(read, 1):.1f} ms a leaf)")


def _leaf_args(trees, account: str) -> tuple:
    leaf, proof = trees.account_proof(account)
    return leaf.as_args(), proof


if __name__ == "__main__":
    main()

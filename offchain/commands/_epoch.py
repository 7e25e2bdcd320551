"""Shared plumbing of `rebuild`, `verify` and `watch`: run a rebuild from the command's
options and print it; not a command itself."""

from __future__ import annotations

import time

from offchain.chain.leaves import AccountLeaf
from offchain.chain.rebuild import Rebuild
from offchain.commands._support import day, hexs

WAD = 10**18


def rebuild(args, dep, epoch: int | None) -> tuple[Rebuild, dict | None, float]:
    """(rebuild, the --epoch-file document or None, seconds)."""
    from offchain.chain.published import load_epoch_file
    from offchain.chain.rebuild import rebuild_from_chain
    doc = load_epoch_file(args.epoch_file) if args.epoch_file else None
    t0 = time.perf_counter()
    result = rebuild_from_chain(dep, epoch, args.params, doc, f"--epoch-file {args.epoch_file}")
    return result, doc, time.perf_counter() - t0


def _ok(flag: bool) -> str:
    return "match" if flag else "MISMATCH"


def summary_lines(r: Rebuild, seconds: float) -> list[str]:
    root, pub = r.root, r.publication
    lines = [
        f"epoch {root.epoch} of engine {root.engine}: root posted in block {root.block} (tx {root.tx_hash}), "
        f"signed at {root.signed_at} ({day(root.signed_at)} UTC)",
        f"params 0x{root.params_hash.hex()}; state block {pub.state_block}; {len(pub.market_leaves)} market "
        f"leaves ({pub.source})",
        f"rebuilt {len(r.trees.account_leaves):,} accounts in {seconds:.2f} s ("
        + ", ".join(f"{k} {v:.2f} s" for k, v in r.seconds.items()) + ")",
        f"  accounts root  chain {hexs(root.accounts_root)}  rebuilt {hexs(r.trees.accounts.root)}  "
        f"{_ok(r.accounts_root_ok)}",
        f"  market root    chain {hexs(root.market_root)}  rebuilt {hexs(r.trees.market.root)}  "
        f"{_ok(r.market_root_ok)}",
        f"  account count  chain {root.account_count:<66}  rebuilt {len(r.trees.account_leaves):<66}  "
        f"{_ok(r.count_ok)}",
    ]
    for iid, name, published, expected in r.market_errors:
        lines.append(f"  market leaf of instrument {iid}: {name} is {figure(name, published)}, expected {figure(name, expected)}")
    return lines


def figure(name: str, value) -> str:
    if isinstance(value, bytes):
        return hexs(value)
    if name.endswith("_wad") and isinstance(value, int):
        return f"{value}  ({value / WAD:,.6f})"
    return str(value)


def leaf_table(ours: AccountLeaf, theirs: AccountLeaf | None, their_name: str) -> list[str]:
    """Field by field, our figures and (when given) the published ones, differences flagged."""
    from dataclasses import fields
    head = f"  {'field':<24} {'rebuilt':<48}"
    lines = [head + (f" {their_name}" if theirs is not None else "")]
    for f in fields(ours):
        a = getattr(ours, f.name)
        row = f"  {f.name:<24} {figure(f.name, a):<48}"
        if theirs is not None:
            b = getattr(theirs, f.name)
            same = a.lower() == b.lower() if isinstance(a, str) else a == b
            row += f" {figure(f.name, b)}" + ("" if same else "   <-- DIFFERS")
        lines.append(row)
    return lines


def _plain(v) -> str:
    return hexs(v) if isinstance(v, bytes) else str(v)


def leaf_json(leaf: AccountLeaf | None) -> dict | None:
    return None if leaf is None else leaf.as_dict()


def result_json(r: Rebuild, seconds: float) -> dict:
    root = r.root
    return {
        "engine": root.engine, "epoch": root.epoch, "root_block": root.block, "root_tx": root.tx_hash,
        "signed_at": root.signed_at, "params_hash": hexs(root.params_hash),
        "state_block": r.publication.state_block, "market_leaves": len(r.publication.market_leaves),
        "publication": r.publication.source,
        "accounts_root": {"chain": hexs(root.accounts_root), "rebuilt": hexs(r.trees.accounts.root),
                          "match": r.accounts_root_ok},
        "market_root": {"chain": hexs(root.market_root), "rebuilt": hexs(r.trees.market.root),
                        "match": r.market_root_ok},
        "account_count": {"chain": root.account_count, "rebuilt": len(r.trees.account_leaves), "match": r.count_ok},
        "market_errors": [{"instrument_id": i, "field": n, "published": _plain(p), "expected": _plain(e)}
                          for i, n, p, e in r.market_errors],
        "matches": r.matches, "seconds": round(seconds, 3),
        "phase_seconds": {k: round(v, 3) for k, v in r.seconds.items()},
    }

"""`netmargin rebuild [--epoch N]`: rebuild an epoch root from the chain and the params file
alone and compare it with the posted root (docs/oracle.md, "Rebuilding a root")."""

from __future__ import annotations

import json
from dataclasses import replace

DESCRIPTION = """\
Rebuild an epoch's roots from public data only: the RootPosted log, the epoch's published
state block and market leaves (EpochDataPublished), every account's book and pending
counters at that block, and the params file of the root's params_hash. Prints the chain's
roots beside the rebuilt ones; with --epoch-file (or --keeper URL, asked account by account on
a mismatch), also the first account whose published leaf differs from the rebuilt one, field
by field. Exit code 0 when everything matches, 1
on any mismatch, 2 on an error (no root, unknown epoch, params of another hash)."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_epoch_arguments
    add_epoch_arguments(parser)
    parser.add_argument("--epoch", type=int, help="epoch number (default: the latest root posted)")
    parser.add_argument("--keeper", metavar="URL",
                        help="a keeper's metrics port or the HTTP API (base URL): on a mismatch, its "
                             "/proof/<account> answers name the first false leaf")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from offchain.chain.published import file_leaves, first_false_leaf_at_keeper
    from offchain.chain.rebuild import first_false_leaf
    from offchain.commands._epoch import leaf_table, rebuild, result_json, summary_lines
    from offchain.commands._support import deployment

    result, doc, seconds = rebuild(args, deployment(args), args.epoch)
    false, source = None, args.epoch_file
    if doc is not None:
        false = first_false_leaf(result, file_leaves(doc, "--epoch-file"))
    if false is None and args.keeper and not result.accounts_root_ok:
        false, source = first_false_leaf_at_keeper(result, args.keeper), args.keeper
    ok = result.matches and false is None
    if args.json:
        out = result_json(result, seconds)
        if false is not None:
            account, diff = false
            out["first_false_leaf"] = {"account": account, "fields": [
                {"field": n, "rebuilt": str(a), "published": str(b)} for n, a, b in diff]}
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    print("\n".join(summary_lines(result, seconds)))
    if false is not None:
        account, diff = false
        names = ", ".join(n for n, _a, _b in diff)
        print(f"first false leaf ({source}): account {account}: {names}")
        if result.trees.has_account(account):
            ours = result.leaf(account)
            theirs = replace(ours, **{n: b for n, _a, b in diff})
            print("\n".join(leaf_table(ours, theirs, "published")))
    print("result: " + ("MATCH" if ok else "MISMATCH"))
    return 0 if ok else 1

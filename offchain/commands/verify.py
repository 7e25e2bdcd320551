"""`netmargin verify ACCOUNT [--epoch N]`: rebuild the epoch's roots and print one account's
leaf field by field, beside the keeper's published leaf when one is available."""

from __future__ import annotations

import json

DESCRIPTION = """\
Check one account's margin leaf without trusting the keeper: rebuild the whole epoch from the
chain (RootPosted, the published state block and market leaves, every book at that block) and
the params file of the root's params_hash, print the account's leaf field by field and
whether the rebuilt roots equal the posted ones. With --keeper URL (GET /proof/<account> of a
keeper's metrics port or the HTTP API) or --epoch-file, the keeper's leaf is shown beside it,
with every differing field and whether that leaf's proof verifies against the chain's root.
Exit code 0 when everything matches, 1 on any mismatch, 2 on an error (no root posted,
unknown epoch, account not in the epoch, params of another hash)."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_epoch_arguments
    parser.add_argument("address", metavar="ACCOUNT", help="account address (0x...)")
    add_epoch_arguments(parser)
    parser.add_argument("--epoch", type=int, help="epoch number (default: the latest root posted)")
    parser.add_argument("--keeper", metavar="URL",
                        help="a keeper's metrics port or the HTTP API (base URL): its /proof/<account>")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from web3 import Web3

    from offchain.chain.published import leaf_from_file, leaf_from_keeper
    from offchain.chain.rebuild import leaf_diff
    from offchain.commands._epoch import leaf_json, leaf_table, rebuild, result_json, summary_lines
    from offchain.commands._support import deployment
    from offchain.errors import UserError

    if not Web3.is_address(args.address):
        raise UserError(f"ACCOUNT: must be a 0x-prefixed 20-byte address, got {args.address!r}")
    account = Web3.to_checksum_address(args.address)
    dep = deployment(args)
    result, doc, seconds = rebuild(args, dep, args.epoch)
    ours = result.leaf(account)
    root = result.root
    published, note = None, ""
    if args.keeper:
        published = leaf_from_keeper(args.keeper, account)
        if published is None:
            note = f"the keeper at {args.keeper} has no leaf for {account}"
    elif doc is not None:
        published = leaf_from_file(doc, root.engine, account, args.epoch_file)
        if published is None:
            note = f"{args.epoch_file} has no leaf for {account}"
    if published is not None and published.epoch != root.epoch:
        note = (f"the keeper's leaf is of epoch {published.epoch}, not {root.epoch}: not compared "
                f"(pass --epoch {published.epoch})")
        published = None
    diff = leaf_diff(ours, published.leaf) if published is not None else []
    in_root = published.in_root(root.engine, root.accounts_root) if published is not None else None
    ok = result.matches and not diff and in_root is not False
    if args.json:
        out = {**result_json(result, seconds), "account": account, "leaf": leaf_json(ours),
               "published": None if published is None else {
                   "source": published.source, "leaf": leaf_json(published.leaf), "in_chain_root": in_root,
                   "differences": [{"field": n, "rebuilt": str(a), "published": str(b)} for n, a, b in diff]},
               "note": note, "matches": ok}
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    print("\n".join(summary_lines(result, seconds)))
    print(f"\nleaf of {account} in epoch {root.epoch}:")
    print("\n".join(leaf_table(ours, published.leaf if published else None, "keeper")))
    if published is not None:
        print(f"keeper's leaf from {published.source}: its proof "
              + ("verifies against the chain's accounts root" if in_root
                 else "does NOT verify against the chain's accounts root"))
    if note:
        print(note)
    if diff:
        print(f"keeper's leaf differs from the rebuilt one in {', '.join(n for n, _a, _b in diff)}"
              + (" and it is in the posted root: the signed root holds a false leaf" if in_root else ""))
    print("result: " + ("MATCH" if ok else "MISMATCH"))
    return 0 if ok else 1

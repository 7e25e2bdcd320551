"""A false epoch root on a devnet, for drills of the watcher and its fraud proofs: the leaves
built exactly as the keeper builds them (same leaf code, the state block one block back),
one account's leaf rewritten, signed by real oracle signers, posted with its public data,
and written as the signers' epoch file (what their keeper's `/proof` would serve).

    path, receipt, trees = post_rogue_root(dep, poster, signers, params, market_leaves, addresses,
                                           epoch, victim, lambda leaf: replace(leaf, ...), store_dir)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from eth_account.signers.local import LocalAccount

from offchain.chain.contracts import Deployment, read_books
from offchain.chain.eip712 import Domain, sign_multi
from offchain.chain.epoch_leaves import epoch_account_leaves, finish_market_leaves
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.roots import EpochTrees
from offchain.devnet.deploy import send_in_one_block
from offchain.keeper.roots import EpochStore
from offchain.risk import Params


def next_second(dep: Deployment) -> None:
    """Mine one block a second later (a root's time must be after the last root's, and after
    the books it margins)."""
    w3 = dep.w3
    w3.provider.make_request("evm_mine", [w3.eth.get_block("latest")["timestamp"] + 1])


def post_rogue_root(dep: Deployment, poster: LocalAccount, signers: Sequence[LocalAccount], params: Params,
                    market_leaves: Sequence[MarketLeaf], addresses: Sequence[str], epoch: int, victim: str,
                    lie: Callable[[AccountLeaf], AccountLeaf], store_dir: Path) -> tuple[Path, dict, EpochTrees]:
    """Post epoch `epoch` over `addresses` with `victim`'s leaf passed through `lie`; market
    leaves re-finished at the root's time from `market_leaves` (the keeper's inputs). Returns
    the epoch file, the post_root receipt and the trees."""
    w3 = dep.w3
    next_second(dep)
    state_block = w3.eth.block_number
    next_second(dep)
    now = w3.eth.get_block("latest")["timestamp"]
    mleaves, market_inputs = finish_market_leaves(params, market_leaves, now)
    views, totals = read_books(dep, list(addresses), state_block)
    leaves = epoch_account_leaves(market_inputs, list(addresses), [v[1] for v in views],
                                  [{i: q for i, q, _f in v[2] if q} for v in views], totals)
    leaves = [lie(x) if x.account.lower() == victim.lower() else x for x in leaves]
    trees = EpochTrees.build(dep.engine.address, epoch, leaves, mleaves,
                             dep.registry.functions.instrument_count().call())
    root = trees.root_message(timestamp=now, deadline=now + 3600, params_hash=bytes.fromhex(params.hash[2:]))
    data = trees.data_message(state_block)
    domain = Domain(w3.eth.chain_id, dep.oracle.address)
    # the epoch file first, as signers publish: a watcher that sees the root finds its leaves
    path = EpochStore(store_dir).write(trees, root, [], state_block)
    receipt, _published = send_in_one_block(w3, poster, [
        (dep.oracle.functions.post_root(root.as_args(), sign_multi(root, domain, signers)), "post_root"),
        (dep.oracle.functions.publish_epoch_data(
            data.as_args(), [m.as_args() for m in trees.market_leaves_by_id()], sign_multi(data, domain, signers)),
         "publish_epoch_data")])
    return path, receipt, trees


"""`netmargin fill --order FILE [--size N] --account ALIAS`: take a maker's signed order."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser)
    parser.add_argument("--order", required=True, help="order JSON written by `netmargin order`")
    parser.add_argument("--size", type=float, default=None, help="contracts to fill (default: all left)")


def run(args) -> int:
    from offchain.chain.contracts import WAD
    from offchain.commands._support import deployment, send_tx, wallet
    from offchain.errors import UserError
    from offchain.keeper.signing import Order

    path = Path(args.order)
    if not path.is_file():
        raise UserError(f"--order: {path} does not exist; create one with `netmargin order`")
    try:
        doc = json.loads(path.read_text())
        o = doc["order"]
        order = Order(o["account"], int(o["instrument_id"]), bool(o["is_buy"]), int(o["size_wad"]),
                      int(o["limit_price_wad"]), int(o["order_nonce"]), int(o["deadline"]))
        sig = bytes.fromhex(doc["signature"].removeprefix("0x"))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--order: {path} is not an order file ({exc!r}); expected the JSON "
                        "written by `netmargin order`") from exc
    dep = deployment(args)
    if doc.get("engine", "").lower() != dep.engine.address.lower():
        raise UserError(f"--order: signed for engine {doc.get('engine')}, not {dep.engine.address}")
    digest = dep.engine.functions.order_hash(order.as_tuple()).call()
    left = order.size_wad - dep.engine.functions.order_filled(digest).call()
    size = left if args.size is None else round(args.size * WAD)
    if size <= 0 or size > left:
        raise UserError(f"--size: must be in (0, {left / WAD:g}] (what is left of the order), "
                        f"got {size / WAD:g}")
    me = wallet(args)
    receipt = send_tx(dep, me, dep.engine.functions.fill(order.as_tuple(), sig, size), "fill")
    side = "sold" if order.is_buy else "bought"
    print(f"{side} {size / WAD:g} of instrument {order.instrument_id} at "
          f"{order.limit_price_wad / WAD:g} in block {receipt['blockNumber']}")
    return 0

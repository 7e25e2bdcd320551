"""`netmargin order ...`: sign a maker order (EIP-712) and write it as JSON for a taker to fill."""

from __future__ import annotations

import json
import time


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    add_chain_arguments(parser)
    parser.add_argument("--instrument", type=int, required=True, help="instrument id")
    parser.add_argument("--side", choices=("buy", "sell"), required=True)
    parser.add_argument("--size", type=float, required=True, help="contracts, > 0")
    parser.add_argument("--price", type=float, required=True, help="limit price per contract, >= 0")
    parser.add_argument("--valid-minutes", type=float, default=60.0)
    parser.add_argument("--nonce", type=int, default=None, help="salt (default: time in ms)")
    parser.add_argument("--out", default="-", help="file to write (default stdout)")


def run(args) -> int:
    from offchain.chain.contracts import WAD
    from offchain.commands._support import deployment, wallet
    from offchain.errors import UserError
    from offchain.keeper.signing import Order, engine_domain, sign_order

    if not args.size > 0:
        raise UserError(f"--size: must be > 0, got {args.size}")
    if not args.price >= 0:
        raise UserError(f"--price: must be >= 0, got {args.price}")
    dep = deployment(args)
    count = dep.registry.functions.instrument_count().call()
    if not 1 <= args.instrument <= count:
        raise UserError(f"--instrument: must be an id between 1 and {count}, got {args.instrument}")
    me = wallet(args)
    now = dep.w3.eth.get_block("latest")["timestamp"]
    order = Order(me.address, args.instrument, args.side == "buy", round(args.size * WAD),
                  round(args.price * WAD), args.nonce if args.nonce is not None else time.time_ns() // 10**6,
                  int(now + args.valid_minutes * 60))
    sig = sign_order(order, engine_domain(dep.w3.eth.chain_id, dep.engine.address), me)
    doc = json.dumps({"engine": dep.engine.address, "order": order.as_dict(),
                      "signature": "0x" + sig.hex()}, indent=2)
    if args.out == "-":
        print(doc)
    else:
        with open(args.out, "w") as fh:
            fh.write(doc + "\n")
        print(f"order written to {args.out}")
    return 0

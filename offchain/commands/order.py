"""`netmargin order --instrument ID|NAME --side buy|sell --size N --price P --account ALIAS`."""

from __future__ import annotations

DESCRIPTION = """\
Sign a maker order (EIP-712, nothing is sent to the chain) and write it as JSON for a
taker to fill with `netmargin fill`. Fills happen at exactly --price. Cancel it with
`netmargin cancel --order FILE`."""


def add_arguments(parser) -> None:
    from offchain.commands._support import add_chain_arguments
    parser.add_argument("--instrument", required=True,
                        help="instrument id or name, e.g. 3 or BTC-20240628-70000-C")
    parser.add_argument("--side", choices=("buy", "sell"), required=True, help="your side")
    parser.add_argument("--size", type=float, required=True, help="contracts, > 0")
    parser.add_argument("--price", type=float, required=True, help="price per contract, >= 0")
    parser.add_argument("--valid-minutes", type=float, default=60.0,
                        help="how long it can be filled (default 60)")
    parser.add_argument("--nonce", type=int, default=None,
                        help="salt that tells identical orders apart (default: time in ms)")
    parser.add_argument("--out", default="-", metavar="FILE", help="file to write (default: stdout)")
    add_chain_arguments(parser)


def run(args) -> int:
    from offchain.commands._support import client, wallet
    from offchain.errors import UserError

    c = client(args, sign=False)
    c.instrument(args.instrument)  # a wrong name or id fails before the passphrase prompt
    c.account_key = wallet(args.account)
    signed = c.make_order(args.instrument, args.side, args.size, args.price,
                          valid_s=args.valid_minutes * 60, nonce=args.nonce)
    if args.out == "-":
        print(signed.to_json())
    else:
        try:
            signed.save(args.out)
        except OSError as exc:
            raise UserError(f"--out: cannot write {args.out}: {exc.strerror}") from exc
        ins = c.instrument(args.instrument)
        print(f"order to {args.side} {args.size:g} {ins.name} at {args.price:,.2f} written to {args.out}; "
              f"a taker fills it with `netmargin fill --order {args.out} --account ALIAS`, you cancel it "
              f"with `netmargin cancel --order {args.out} --account {args.account}`", flush=True)
    return 0

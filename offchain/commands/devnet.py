"""`netmargin devnet`: a persistent local chain with the system deployed, the standard
instrument chain, funded test wallets, the keeper on a price source, the API and the web app,
and deployment.json for integrators. Runs until Ctrl-C, which stops everything cleanly."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--prices", choices=("replay", "live"), default="replay",
                        help="replay: the shipped history on an accelerated clock (default); "
                             "live: a fat-tailed random walk calibrated on it, from today")
    parser.add_argument("--start", default="2020-03-05",
                        help="replay: first day, YYYY-MM-DD (default 2020-03-05, before the March 2020 crash)")
    parser.add_argument("--speed", type=float, default=None,
                        help="chain seconds per wall-clock second (replay default 600: a day in 2.4 min; "
                             "live default 1: the chain keeps today's date)")
    parser.add_argument("--block-interval", type=float, default=1.0,
                        help="wall seconds between blocks mined by the clock (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="interface for Anvil and the API")
    parser.add_argument("--rpc-port", type=int, default=8545, help="Anvil's port (default 8545)")
    parser.add_argument("--api-port", type=int, default=8000, help="the API and web app's port (default 8000)")
    parser.add_argument("--out", default=".devnet",
                        help="folder for deployment.json, the keeper store and anvil.log (default .devnet)")
    parser.add_argument("--wallets", type=int, default=4, help="funded test wallets (default 4)")
    parser.add_argument("--log", choices=("quiet", "text", "json"), default="quiet",
                        help="keeper logs on stderr (default quiet)")


def run(args) -> int:
    from offchain.devnet.run import DevnetOptions, start_devnet
    from offchain.keeper.logs import setup_logging

    setup_logging("text" if args.log == "quiet" else args.log, "WARNING" if args.log == "quiet" else "INFO")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    speed = args.speed if args.speed is not None else (600.0 if args.prices == "replay" else 1.0)
    options = DevnetOptions(prices=args.prices, start=args.start, speed=speed,
                            block_interval_s=args.block_interval, host=args.host, rpc_port=args.rpc_port,
                            api_port=args.api_port, out=Path(args.out), wallets=args.wallets)
    options.check()
    net = None
    try:
        net = start_devnet(options)
        net.start_keeper()
        net.start_clock()
        print_welcome(net, Path(args.out))
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if net is not None:
            print("\nstopping: clock, keeper, API, anvil ...", flush=True)
            net.stop()
            print("stopped.")
    return 0


def print_welcome(net, out: Path) -> None:
    d = net.deployment
    c = d["contracts"]
    w = d["test_wallets"]
    print(f"""
netmargin devnet is up (chain id {d['chain_id']}, prices: {d['price_source']['kind']}, \
{net.options.speed:g}x clock)

  web app      {net.api_url}/
  API docs     {net.api_url}/docs
  RPC          {d['rpc_url']}
  deployment   {out / 'deployment.json'}  (addresses, ABIs, EIP-712 order domain)

  engine       {c['engine']['address']}
  token (nUSD) {c['token']['address']}   oracle {c['oracle']['address']}
  signer bond  {c['signer_bond']['address']}   fraud proofs {c['fraud_proofs']['address']}

  test wallets (Anvil's public test keys, {net.options.faucet:,.0f} nUSD each; import one into your wallet):""")
    for x in w:
        print(f"    {x['address']}  {x['private_key']}")
    print(f"""
  next: open the web app, or from another shell
    netmargin positions --rpc {d['rpc_url']} --engine {c['engine']['address']} ...
    curl {net.api_url}/api/instruments

Ctrl-C stops everything.""", flush=True)

"""What the end-to-end suites (tests/e2e: a real Anvil, the deployed system, the real keeper)
do the same way: bind and start the keeper, trade at its posted marks, run it until it posts
a root."""

from __future__ import annotations

import numpy as np

from offchain.chain.contracts import WAD
from offchain.devnet.deploy import send
from offchain.devnet.rogue import next_second
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.prices import DAY
from offchain.keeper.signing import Order, Signers, engine_domain, sign_order
from offchain.keeper.store import StateStore


class FixedSource:
    """A price source whose prices the test moves by hand (`prices`, one per underlying: BTC
    alone unless named), at 60% vol."""

    def __init__(self, price: float | list[float] = 30_000.0, underlyings: list[str] | None = None):
        self.prices = np.array(price if isinstance(price, list) else [price], dtype=np.float64)
        self.underlyings = underlyings or ["BTC"]

    def spot(self, t):
        return self.prices.copy()

    def vol(self, t):
        return np.full(len(self.prices), 0.6)


def start_keeper(dev, dep, gas, signers, params, source, data_dir, metrics=None, spares=(), **config) -> Keeper:
    """The keeper bound as `netmargin keeper` binds it (in-memory state store; `spares`: its
    spare liquidator accounts), started, and one cycle run: the first marks and rates posted."""
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, data_dir=str(data_dir),
                       **{"price_max_age_s": 3600, **config})
    keeper = Keeper(cfg, dep, Signers(list(signers)), Executor(dev.w3, gas, cfg.gas), StateStore(":memory:"),
                    params, source, metrics, liquidators=[Executor(dev.w3, s, cfg.gas) for s in spares])
    keeper.startup()
    keeper.cycle()
    return keeper


def fill_at_marks(dev, dep, keeper, trades, first_nonce: int = 1) -> None:
    """Each (maker, taker, instrument id, size WAD: > 0 the maker buys) as a signed order at
    the keeper's posted mark, filled whole by the taker; order nonces first_nonce, +1, ..."""
    domain = engine_domain(dev.w3.eth.chain_id, dep.engine.address)
    now = dev.w3.eth.get_block("latest")["timestamp"]
    for nonce, (maker, taker, iid, size) in enumerate(trades, start=first_nonce):
        mark = int(round(keeper.posted_marks[iid - 1] * WAD))
        order = Order(maker.address, iid, size > 0, abs(size), mark, nonce, now + DAY)
        send(dev.w3, taker, dep.engine.functions.fill(order.as_tuple(), sign_order(order, domain, maker), abs(size)),
             "fill")


def keeper_epoch(dep, keeper) -> int:
    """Cycles of the real keeper, each a block one second later, until it posts a root (it does
    once every book is older than the chain's clock): the epoch posted."""
    for _ in range(5):
        next_second(dep)
        report = keeper.cycle()
        if report.epoch:
            return report.epoch
    raise AssertionError("the keeper posted no root")

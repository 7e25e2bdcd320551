"""Attack-suite fixtures: the engine fixtures of tests/engine (re-exported so the same
deployment, signing factories and the autouse funds-add-up check apply here) plus a
session-scoped `Desk` of helpers that module-scoped setups can use (ape snapshots the chain
after each module fixture and restores it around every test).
"""

from __future__ import annotations

from dataclasses import dataclass

import ape
import pytest
from conftest import PARAMS_HASH, WAD, mark_steps
from engine.conftest import (  # noqa: F401 - re-exported fixtures
    LIQUIDATION,
    TRADING,
    engine,
    engine_domain,
    extension,
    flag,
    fund,
    funds_add_up,
    governance,
    leaf_for,
    liquidate,
    local_keys,
    make_order,
    market_leaf,
    mine,
    post_root,
    role_accounts,
    set_market,
    trade,
    verifier,
    witness_for,
)
from support.margins import SignedRoot, book_leaf, next_epoch, sign_root

from offchain.chain.eip712 import MarketData, sign_multi
from offchain.chain.leaves import AccountLeaf
from offchain.chain.orders import Order, sign_order

PERP, FUTURE, CALL, PUT = 1, 2, 3, 4
# Mark and per-unit rates (im_long, im_short, mm_long, mm_short) of the shared fixtures.
BTC_MARK = 60_000 * WAD
DEFAULT_ROWS = {
    1: (60_000 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
    2: (60_500 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
    3: (2_500 * WAD, 0, 2_500 * WAD, 9_000 * WAD, 1_250 * WAD, 4_500 * WAD),
    4: (2_400 * WAD, 0, 2_400 * WAD, 9_000 * WAD, 1_200 * WAD, 4_500 * WAD),
}


@dataclass
class Desk:
    """Trading-desk helpers over one engine and its token (any fixture scope may use them)."""

    engine: object
    token: object
    oracle: object
    chain: object
    domain: object
    engine_domain: object
    signers: list
    keys: dict
    poster: object
    witness_for: object = None
    order_nonce: int = 10_000
    registry: object = None

    @property
    def scale(self) -> int:
        return self.engine.SCALE()

    def mine(self, seconds: int = 1) -> None:
        self.chain.mine(timestamp=self.chain.pending_timestamp + seconds)

    def now(self) -> int:
        return self.chain.blocks.head.timestamp

    def fund(self, who, units: int):
        """Mint `units` token units to `who` and deposit them."""
        self.token.mint(who, units, sender=who)
        self.token.approve(self.engine, units, sender=who)
        return self.engine.deposit(units, sender=who)

    def stock(self, maker, taker, admin, maker_units: int, taker_units: int, insurance_units: int):
        """A module's market: a funded maker and taker, an insurance fund, fresh marks."""
        self.fund(maker, maker_units)
        self.fund(taker, taker_units)
        self.token.mint(admin, insurance_units, sender=admin)
        self.token.approve(self.engine, insurance_units, sender=admin)
        self.engine.fund_insurance(insurance_units, sender=admin)
        self.post_marks()
        return self

    def market_data(self, marks=None, rates=None, ids=(PERP, FUTURE, CALL, PUT)) -> MarketData:
        """Unsigned market data at the head timestamp; `marks` {id: wad}, `rates` {id: 4-tuple}."""
        marks, rates = marks or {}, rates or {}
        rows = []
        for i in ids:
            m, f, *r = DEFAULT_ROWS.get(i, DEFAULT_ROWS[PERP])
            rows.append((marks.get(i, m), f, *rates.get(i, tuple(r))))
        ts = self.now()
        return MarketData(
            ids=list(ids),
            marks_wad=[r[0] for r in rows],
            funding_indices_wad=[r[1] for r in rows],
            im_long_wad=[r[2] for r in rows],
            im_short_wad=[r[3] for r in rows],
            mm_long_wad=[r[4] for r in rows],
            mm_short_wad=[r[5] for r in rows],
            params_hash=PARAMS_HASH,
            timestamp=ts,
            deadline=ts + 300,
        )

    def post_marks(self, marks=None, rates=None, ids=(PERP, FUTURE, CALL, PUT), step=True):
        """Sign (2 of 3) and post fresh market data one second later; a move beyond the
        oracle's per-update bound goes in steps, one second apart, as the keeper posts it
        (`step=False` posts the target in one update)."""
        final = self.market_data(marks, rates, ids)
        mm_wad = [max(pair) for pair in zip(final.mm_long_wad, final.mm_short_wad, strict=True)]
        path = mark_steps(self.oracle, ids, list(final.marks_wad), mm_wad) if step else [list(final.marks_wad)]
        for marks_wad in path:
            self.mine(1)
            data = self.market_data(dict(zip(ids, marks_wad, strict=True)), rates, ids)
            tx = self.oracle.post_market_data(
                data.as_args(), sign_multi(data, self.domain, self.signers[:2]), sender=self.poster
            )
        return tx

    def order(self, maker, instrument_id, maker_size_wad, price_wad, deadline=None) -> tuple[Order, bytes]:
        """A maker order (signed size: > 0 buys) and its signature."""
        self.order_nonce += 1
        order = Order(
            account=maker.address,
            instrument_id=instrument_id,
            is_buy=maker_size_wad > 0,
            size_wad=abs(maker_size_wad),
            limit_price_wad=price_wad,
            order_nonce=self.order_nonce,
            deadline=self.chain.pending_timestamp + 3_600 if deadline is None else deadline,
        )
        return order, sign_order(order, self.engine_domain, self.keys[maker.address])

    def trade(self, maker, taker, instrument_id, maker_size_wad, price_wad):
        order, sig = self.order(maker, instrument_id, maker_size_wad, price_wad)
        return self.engine.fill(order.as_args(), sig, abs(maker_size_wad), sender=taker)

    def leaf(self, account, im_wad, mm_wad, **overrides) -> AccountLeaf:
        """A leaf for the account's current book (nonce, positions hash, pending counters)."""
        return book_leaf(self.engine, account, im_wad, mm_wad, **overrides)

    def root(self, leaves, by=None, timestamp=None, deadline=None, domain=None) -> SignedRoot:
        """The engine's next epoch root over `leaves`, signed (2 of 3 by default), not posted."""
        ts = self.now() if timestamp is None else timestamp
        return sign_root(self.engine, next_epoch(self.oracle, self.engine), leaves, timestamp=ts, deadline=deadline,
                         domain=domain or self.domain, signers=self.signers[:2] if by is None else by,
                         params_hash=PARAMS_HASH, market_count=self.registry.instrument_count())

    def give_margin(self, account, im_wad, mm_wad):
        """Margin the account as the keeper does: a signed root holding a leaf for its current
        book, posted one second later, and the leaf applied. Returns the apply receipt."""
        self.mine(1)
        root = self.root([self.leaf(account, im_wad, mm_wad)])
        self.oracle.post_root(*root.post_args(), sender=self.poster)
        return self.engine.apply_leaf(*root.apply_args(account), sender=self.poster)

    def flag(self, account, sender, **witness):
        """MarginEngine.flag with the account's witness (the clock needs the model's shortfall)."""
        return self.engine.flag(account, self.witness_for(account, eng=self.engine, **witness), sender=sender)

    def liquidate(self, account, fraction, max_payment, nonce, sender, **witness):
        """MarginEngine.liquidate with the account's witness (binding scenarios of its book
        against a freshly posted market root; `witness` options as engine.conftest's)."""
        w = self.witness_for(account, eng=self.engine, **witness)
        return self.engine.liquidate(account, fraction, max_payment, nonce, w, sender=sender)

    def equity(self, account) -> int:
        return self.engine.health(account).equity_wad

    def snapshot(self, *accounts) -> tuple:
        """Everything a reverted call must leave as it was."""
        e = self.engine
        return (
            tuple(e.account(a) for a in accounts),
            e.insurance_wad(), e.fees_wad(), e.socialised_loss_wad(), e.external_pnl_wad(),
            self.token.balanceOf(e),
        )


def succeeds(call, *args, **kwargs) -> bool:
    """True if the transaction went through, False if it reverted (for attack steps whose
    safe outcome may be either a revert or a harmless success)."""
    try:
        call(*args, **kwargs)
    except ape.exceptions.ContractLogicError:
        return False
    return True


def assert_funds_add_up(eng, tok, holders) -> None:
    """The engine's funds invariant (see MarginEngine.vy) for an engine the autouse check
    does not cover."""
    assets = tok.balanceOf(eng) * eng.SCALE() + eng.external_pnl_wad() + eng.socialised_loss_wad()
    liabilities = sum(eng.cash_wad(a) for a in holders) + eng.insurance_wad() + eng.fees_wad()
    assert assets == liabilities, f"funds do not add up: assets {assets} != liabilities {liabilities}"


def deploy_engine(project, admin, token, oracle, registry):
    """A MarginEngine (+ extension) on `token`, with the suite's trading/liquidation params."""
    ext = project.MarginEngineExtension.deploy(token, oracle, registry, sender=admin)
    gov = project.MarginEngineGovernance.deploy(token, oracle, registry, sender=admin)
    return project.MarginEngine.deploy(token, oracle, registry, ext, gov, TRADING, LIQUIDATION, sender=admin)


@pytest.fixture(scope="session")
def desk(engine, token, oracle, registry, chain, domain, engine_domain, signers, local_keys,  # noqa: F811
         keeper, witness_for):  # noqa: F811
    return Desk(engine, token, oracle, chain, domain, engine_domain, signers, local_keys, keeper, witness_for,
                registry=registry)


@pytest.fixture(scope="session")
def make_desk(oracle, registry, chain, domain, signers, local_keys, keeper, witness_for):  # noqa: F811
    """make_desk(engine, token) -> a Desk over another engine deployment."""
    from offchain.chain.orders import EngineDomain

    def make(engine_, token_):
        dom = EngineDomain(chain_id=chain.chain_id, verifying_contract=engine_.address)
        return Desk(engine_, token_, oracle, chain, domain, dom, signers, local_keys, keeper, witness_for,
                    registry=registry)

    return make


@pytest.fixture(scope="session")
def accomplice(accounts):
    """The attacker's second account (self-liquidation, wash trades)."""
    return accounts[7]


@pytest.fixture(autouse=True)
def _no_revert_source_traceback(monkeypatch):
    """Ape decorates every reverted transaction with a Vyper source traceback (and dev
    message), which costs up to ~25 s for a revert deep inside fill(). These tests match
    revert strings only, so skip that decoration here (revert data, reasons and chain
    state are untouched; restored after each test)."""
    monkeypatch.setattr(ape.exceptions, "_get_ape_traceback_from_tx", lambda txn: None)

"""Shared root fixtures: role accounts, risk signers, and the deployed token, registry and
oracle, plus factories that sign and post oracle data.

Deployments are session-scoped; ape's pytest plugin snapshots the chain around every
test and fixture scope (isolation), so a test's transactions and time travel never leak
into the next test.
"""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_utils import keccak

from offchain.chain.eip712 import (
    Domain,
    IndexPrices,
    MarketData,
    SettlementPrice,
    sign_multi,
    symbol_to_bytes32,
)

WAD = 10**18
DAY = 86_400
BTC = symbol_to_bytes32("BTC")
ETH = symbol_to_bytes32("ETH")
PARAMS_HASH = keccak(text="netmargin test risk parameters v1")
MAX_INDEX_MOVE_BPS = 2_000  # 20% per update
SIGNER_THRESHOLD = 2
FUTURE_EXPIRY_DAYS = 30
STRIKE_WAD = 60_000 * WAD
KIND_FUTURE, KIND_PERPETUAL, KIND_CALL, KIND_PUT = 0, 1, 2, 3

# Fixed, publicly known test keys (never use outside tests).
SIGNER_KEYS = [keccak(text=f"netmargin test signer {i}") for i in range(3)]
OUTSIDER_KEY = keccak(text="netmargin test outsider")


# ------------------------------------------------------------------ fraud proofs


def committed(fraud, sender, trees, record, account: str, book: dict, scenarios=(), joint: int = 0) -> tuple:
    """`FraudProofs.challenge` arguments for `account`'s leaf after `sender` committed to them
    (a fresh salt). Ape mines each transaction in its own block, so the reveal sent next is
    a block after the commit."""
    from offchain.chain.fraud import challenge_arguments, commitment, new_salt

    salt = new_salt()
    fraud.commit(commitment(sender.address, trees.engine, record.signed_at, account, salt), sender=sender)
    return challenge_arguments(trees, record, account, book, scenarios, joint, salt=salt)


def committed_market(fraud, sender, trees, record, instrument_id: int, leaf=None, proof=None) -> tuple:
    """`FraudProofs.challenge_market` arguments for a market slot after `sender` committed to
    them (the instrument id in the account's place, a fresh salt)."""
    from offchain.chain.fraud import commitment, market_challenge_arguments, new_salt, slot_account

    salt = new_salt()
    fraud.commit(commitment(sender.address, trees.engine, record.signed_at, slot_account(instrument_id), salt),
                 sender=sender)
    return market_challenge_arguments(trees, record, instrument_id, leaf, proof, salt=salt)


# ------------------------------------------------------------------ ape isolation


def pytest_configure(config):
    """HYPOTHESIS_PROFILE (quick or long) sets every suite's fuzz depth: refuse a misspelt one
    before anything runs (it would run the quick counts while meaning the long ones)."""
    from support.fuzz import check_profile

    try:
        check_profile()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(session, config, items):
    """Refuse a run where one fixture name is session-scoped somewhere and package-, module- or
    class-scoped elsewhere. ape's isolation groups fixtures by name over every definition
    collected: such a name counts as a module fixture of every test that uses it, and when
    ape rebases a module's snapshot it clears the cached value of every definition of that
    name, the session one included. A module-scoped `engine` in another suite once made the
    engine suites redeploy their session `engine` mid-module on a whole-tree run, while the
    other session helpers (trade, give_margin, liquidate) kept the old one: empty books,
    "no root for engine". ape's own fixtures (chain, accounts...) are never cleared."""
    from ape.pytest.fixtures import PytestApeFixtures

    ape_names = {n for n in dir(PytestApeFixtures) if not n.startswith("_")}
    clashes = []
    for name, defs in session._fixturemanager._arg2fixturedefs.items():
        scopes = {d.scope for d in defs}
        if name not in ape_names and "session" in scopes and scopes & {"package", "module", "class"}:
            where = ", ".join(f"{d.scope} in {d.baseid or '.'}" for d in defs)
            clashes.append(f"{name!r} ({where})")
    if clashes:
        raise pytest.UsageError("fixture names defined both session-scoped and narrower (ape's isolation "
                                f"would re-create the session one mid-module): {'; '.join(clashes)}; "
                                "rename the narrower one")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Every test starts with the `netmargin` loggers as Python leaves them. The keeper's
    `setup_logging` (called by any test that runs a command in-process) stops them propagating,
    which hid later tests' records from `caplog`: a test then passed or failed by which tests
    its worker ran before it."""
    import logging

    root = logging.getLogger("netmargin")
    root.handlers[:] = []
    root.setLevel(logging.NOTSET)
    root.propagate = True


# ------------------------------------------------------------------ ape revert cost


@pytest.fixture(scope="session", autouse=True)
def _skip_ape_revert_tracebacks():
    """For every reverted transaction ape (via ape-vyper's `enrich_error` -> `dev_message`)
    streams the struct-log trace to build a Vyper source traceback, and prints the call
    tree: measured 5-70 s per revert on this 2-core machine. Revert reasons (what
    `ape.reverts` matches) are unaffected; only "dev:" comment matching is lost, which
    does not work with Vyper 0.4.3 anyway. NETMARGIN_APE_TRACES=1 restores ape's
    behaviour for debugging."""
    if os.environ.get("NETMARGIN_APE_TRACES"):
        yield
        return
    import ape.exceptions
    from ape_ethereum.trace import Trace

    patch = pytest.MonkeyPatch()
    patch.setattr(ape.exceptions, "_get_ape_traceback_from_tx", lambda txn: None)
    patch.setattr(Trace, "show", lambda self, *args, **kwargs: None)
    yield
    patch.undo()


# ------------------------------------------------------------------ roles


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def trader(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def maker(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def taker(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def liquidator(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def attacker(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def signers():
    """Three risk signers (eth-account LocalAccounts), sorted by ascending address."""
    return sorted((Account.from_key(k) for k in SIGNER_KEYS), key=lambda a: int(a.address, 16))


@pytest.fixture(scope="session")
def outsider_signer():
    """A key that is not (and never was) an oracle signer."""
    return Account.from_key(OUTSIDER_KEY)


# ------------------------------------------------------------------ deployments


@pytest.fixture(scope="session")
def token(project, admin):
    """6-decimal settlement token with public mint."""
    return project.MockERC20.deploy("Mock USD", "mUSD", 6, sender=admin)


@pytest.fixture(scope="session")
def registry(project, admin, chain):
    """Registry with BTC instruments listed: ids 1 perp, 2 future, 3 call, 4 put
    (future and options expire FUTURE_EXPIRY_DAYS after deployment, strike 60k)."""
    reg = project.InstrumentRegistry.deploy(sender=admin)
    expiry = chain.pending_timestamp + FUTURE_EXPIRY_DAYS * DAY
    reg.list_instrument(BTC, KIND_PERPETUAL, 0, 0, sender=admin)
    reg.list_instrument(BTC, KIND_FUTURE, 0, expiry, sender=admin)
    reg.list_instrument(BTC, KIND_CALL, STRIKE_WAD, expiry, sender=admin)
    reg.list_instrument(BTC, KIND_PUT, STRIKE_WAD, expiry, sender=admin)
    return reg


@pytest.fixture
def market_count(registry, admin):
    """market_count(at_least=0) -> the registry's instrument count, after listing perpetuals on
    made-up underlyings until it is at least `at_least` (a root's market tree has one slot per
    listed instrument, and the oracle requires the registry's count)."""

    def _count(at_least: int = 0) -> int:
        n = registry.instrument_count()
        while n < at_least:
            n += 1
            registry.list_instrument(f"X{n}".encode().ljust(32, b"\0"), KIND_PERPETUAL, 0, 0, sender=admin)
        return n

    return _count


@pytest.fixture(scope="session")
def instrument_ids():
    return {"perp": 1, "future": 2, "call": 3, "put": 4}


@pytest.fixture(scope="session")
def oracle(project, admin, registry, signers):
    """RiskOracle: 2 of 3 signers, PARAMS_HASH, 20% max index move per update."""
    return project.RiskOracle.deploy(
        registry,
        [s.address for s in signers],
        SIGNER_THRESHOLD,
        PARAMS_HASH,
        MAX_INDEX_MOVE_BPS,
        sender=admin,
    )


@pytest.fixture(scope="session")
def domain(chain, oracle):
    return Domain(chain_id=chain.chain_id, verifying_contract=oracle.address)


@pytest.fixture
def now(chain):
    """Timestamp of the latest block: safe as a signed `timestamp` for the next tx."""
    return lambda: chain.blocks.head.timestamp


def mark_steps(oracle, ids, marks_wad, mm_wad) -> list[list[int]]:
    """Mark vectors to post one after another, ending at `marks_wad`, so that every update
    stays within RiskOracle's per-update bound (max of `max_index_move_bps` of the previous
    mark and its previous maintenance rate): a test's crash is posted the way the keeper
    posts one. `mm_wad` is the larger per-unit MM rate posted with every step."""
    bps = oracle.max_index_move_bps()
    current, bands = [], []
    for i in ids:
        posted = oracle.market_updated_at(i) != 0
        current.append(oracle.marks([i])[0][0] if posted else None)
        bands.append(max(oracle.rates(i)[0][2:]) if posted else 0)
    steps = []
    while True:
        nxt = [target if prev is None else
               min(max(target, prev - max(abs(prev) * bps // 10_000, band)),
                   prev + max(abs(prev) * bps // 10_000, band))
               for prev, band, target in zip(current, bands, marks_wad, strict=True)]
        steps.append(nxt)
        if nxt == list(marks_wad):
            return steps
        current, bands = nxt, list(mm_wad)


# ------------------------------------------------------------------ signing factories


@pytest.fixture(scope="session")
def default_market():
    """Per-instrument defaults (WAD) for `post_market`: mark, funding, im/mm long/short."""
    return {
        1: (60_000 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
        2: (60_500 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
        3: (2_500 * WAD, 0, 2_500 * WAD, 9_000 * WAD, 1_250 * WAD, 4_500 * WAD),
        4: (2_400 * WAD, 0, 2_400 * WAD, 9_000 * WAD, 1_200 * WAD, 4_500 * WAD),
    }


@pytest.fixture
def make_market(chain, default_market):
    """Build (unsigned) MarketData; keyword overrides replace whole arrays or fields."""

    def make(ids=(1, 2, 3, 4), **overrides) -> MarketData:
        ids = list(ids)
        rows = [default_market.get(i, default_market[1]) for i in ids]
        ts = chain.blocks.head.timestamp
        fields = {
            "ids": ids,
            "marks_wad": [r[0] for r in rows],
            "funding_indices_wad": [r[1] for r in rows],
            "im_long_wad": [r[2] for r in rows],
            "im_short_wad": [r[3] for r in rows],
            "mm_long_wad": [r[4] for r in rows],
            "mm_short_wad": [r[5] for r in rows],
            "params_hash": PARAMS_HASH,
            "timestamp": ts,
            "deadline": ts + 300,
        }
        fields.update(overrides)
        return MarketData(**fields)

    return make


@pytest.fixture
def sign(domain, signers):
    """sign(message, signer_accounts=first two signers, domain=oracle domain) -> sigs."""

    def _sign(message, by=None, dom=None):
        return sign_multi(message, dom or domain, signers[:SIGNER_THRESHOLD] if by is None else by)

    return _sign


@pytest.fixture
def post_market(oracle, keeper, make_market, sign):
    """Sign (2 of 3) and post market data; returns (tx, MarketData)."""

    def post(ids=(1, 2, 3, 4), by=None, sender=None, **overrides):
        data = make_market(ids, **overrides)
        tx = oracle.post_market_data(data.as_args(), sign(data, by), sender=sender or keeper)
        return tx, data

    return post


@pytest.fixture
def post_index(oracle, keeper, chain, sign):
    """Sign and post index prices: post_index({BTC: price_wad, ...}); returns (tx, IndexPrices)."""

    def post(prices: dict, timestamp=None, deadline=None, by=None, sender=None):
        ts = chain.blocks.head.timestamp if timestamp is None else timestamp
        data = IndexPrices(
            underlyings=list(prices),
            prices_wad=list(prices.values()),
            timestamp=ts,
            deadline=ts + 300 if deadline is None else deadline,
        )
        tx = oracle.post_index_prices(data.as_args(), sign(data, by), sender=sender or keeper)
        return tx, data

    return post


@pytest.fixture
def post_settlement(oracle, keeper, chain, sign):
    """Sign and post a settlement price; returns (tx, SettlementPrice)."""

    def post(instrument_id: int, price_wad: int, timestamp=None, deadline=None, by=None, sender=None):
        ts = chain.blocks.head.timestamp if timestamp is None else timestamp
        data = SettlementPrice(
            instrument_id=instrument_id,
            price_wad=price_wad,
            timestamp=ts,
            deadline=ts + 300 if deadline is None else deadline,
        )
        tx = oracle.post_settlement_price(data.as_args(), sign(data, by), sender=sender or keeper)
        return tx, data

    return post


@pytest.fixture
def expire_instruments(chain):
    """Move chain time past the fixture registry's expiry (isolation undoes it)."""

    def expire(extra_seconds: int = 60):
        chain.mine(timestamp=chain.pending_timestamp + FUTURE_EXPIRY_DAYS * DAY + extra_seconds)

    return expire

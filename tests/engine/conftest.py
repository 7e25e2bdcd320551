"""MarginEngine fixtures: the deployed engine (+ its delegatecalled extension and governance) on the shared
token, registry and oracle, factories that trade, post epoch roots and apply leaves (give_margin) and move marks, and an autouse
check that the engine's funds add up exactly after every test.

Deployments are session-scoped; ape snapshots the chain around every test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import PARAMS_HASH, WAD, mark_steps
from eth_account import Account
from support.margins import book_leaf, next_epoch, sign_root, with_model_rates

from offchain.chain.eip712 import MarketData, sign_multi
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.chain.witness import liquidation_witness
from offchain.risk import load_params

ROOT = Path(__file__).resolve().parents[2]
SITE = next((ROOT / ".venv/lib").glob("python3*/site-packages"))


def storage_layout(path) -> dict[str, int]:
    """Storage slot of every variable of a contract, keyed `module.name` (vyper -f layout)."""
    out = subprocess.run([str(ROOT / ".venv/bin/vyper"), "-p", str(SITE), "-f", "layout", str(path)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    layout = json.loads(out)["storage_layout"]
    slots = {}
    for module, entries in layout.items():
        for name, spec in (entries.items() if "slot" not in entries else [("", entries)]):
            slots[f"{module}.{name}"] = spec["slot"]
    return slots


TEST_MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()

# (max_positions, taker_fee_bps, max_price_age, max_margin_basis_age, max_liquidation_price_age)
TRADING = (8, 10, 3_600, 86_400, 7_200)
# (discount_base_bps, slope_bps_per_hour, discount_max_bps, insurance_share_bps, buffer_bps, dust_mm_wad)
LIQUIDATION = (1_000, 500, 5_000, 2_000, 1_000, 100 * WAD)
PERP, FUTURE, CALL, PUT = 1, 2, 3, 4


@pytest.fixture(scope="module", autouse=True)
def no_source_tracebacks():
    """Skip ape's Vyper source traceback on reverts (engine tests only): it re-walks the
    whole trace against the AST and takes 5-15 s per revert here. Revert reasons, which the
    tests match, are unaffected."""
    import ape.exceptions

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ape.exceptions, "_get_ape_traceback_from_tx", lambda txn: None)
        yield


@pytest.fixture(scope="session")
def local_keys(accounts):
    """address -> eth-account LocalAccount for ape's test accounts (same mnemonic)."""
    out = {}
    for i in range(len(accounts)):
        acct = Account.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        out[acct.address] = acct
    return out


@pytest.fixture(scope="session")
def extension(project, admin, token, oracle, registry):
    return project.MarginEngineExtension.deploy(token, oracle, registry, sender=admin)


@pytest.fixture(scope="session")
def governance(project, admin, token, oracle, registry):
    return project.MarginEngineGovernance.deploy(token, oracle, registry, sender=admin)


# The model the oracle's ScenarioVerifier prices liquidations with (the test oracle's params
# hash is a label, PARAMS_HASH; the verifier carries it with default-v2's generator).
WITNESS_PARAMS = load_params("default-v2")
# Market inputs of the witness's leaves: spot (perpetual and option forward), option vol.
SPOT_WAD = 60_000 * WAD
VOL_WAD = 6 * WAD // 10


@pytest.fixture(scope="session")
def verifier(project, admin, oracle):
    """ScenarioVerifier registered with the oracle: every liquidation is re-priced by it."""
    generator, rows = verifier_config(WITNESS_PARAMS)
    v = project.ScenarioVerifier.deploy(oracle, PARAMS_HASH, generator, rows, sender=admin)
    oracle.set_verifier(v, sender=admin)
    return v


@pytest.fixture(scope="session")
def engine(project, admin, token, oracle, registry, extension, governance, verifier):
    return project.MarginEngine.deploy(
        token, oracle, registry, extension, governance, TRADING, LIQUIDATION, sender=admin
    )


@pytest.fixture(scope="session")
def engine_domain(chain, engine):
    return EngineDomain(chain_id=chain.chain_id, verifying_contract=engine.address)


@pytest.fixture(scope="session", autouse=True)
def _session_helpers_first(request):
    """Set up the session-scoped helpers before any module's state exists. ape isolates
    tests by chain snapshots per scope; a session fixture first requested in the middle of
    a module (after that module's snapshot) makes ape rebase its snapshots, and on a full
    run that lost the module's state (every later test of the module saw an empty book)."""
    for name in ("give_margin", "witness_for", "flag", "liquidate"):
        request.getfixturevalue(name)


@pytest.fixture(scope="session")
def role_accounts(accounts):
    return list(accounts)


@pytest.fixture(autouse=True)
def funds_add_up(request, role_accounts):
    """After every engine test: token balance * SCALE + external P&L (settlement payoffs and
    funding credited) + socialised loss == sum(cash) + insurance fund + fees, exactly."""
    yield
    if "engine" not in request.fixturenames:
        return
    engine = request.getfixturevalue("engine")
    token = request.getfixturevalue("token")
    assets = token.balanceOf(engine) * engine.SCALE() + engine.external_pnl_wad() + engine.socialised_loss_wad()
    liabilities = sum(engine.cash_wad(a) for a in role_accounts) + engine.insurance_wad() + engine.fees_wad()
    assert assets == liabilities, f"funds do not add up: assets {assets} != liabilities {liabilities}"


@pytest.fixture(scope="session")
def mine(chain):
    """Advance chain time by `seconds` (one block)."""

    def _mine(seconds: int = 1):
        chain.mine(timestamp=chain.pending_timestamp + seconds)

    return _mine


@pytest.fixture(scope="session")
def set_market(oracle, keeper, domain, signers, mine, chain):
    """Post fresh signed market data (2 of 3 signers, one second later) for ids 1-4 by default;
    `marks` overrides {id: mark_wad}, `funding` {id: index_wad}, `rates` {id: (im_l, im_s,
    mm_l, mm_s)}. Session-scoped so module-scoped books can use it."""

    def _set(marks=None, funding=None, rates=None, ids=(PERP, FUTURE, CALL, PUT), step=True):
        fields = _overrides(ids, marks or {}, funding or {}, rates or {})
        # a move beyond the oracle's per-update bound is posted in steps, as the keeper does
        mm_wad = [max(pair) for pair in zip(fields["mm_long_wad"], fields["mm_short_wad"], strict=True)]
        path = mark_steps(oracle, ids, fields["marks_wad"], mm_wad) if step else [fields["marks_wad"]]
        for marks_wad in path:
            mine(1)
            ts = chain.blocks.head.timestamp
            data = MarketData(ids=list(ids), params_hash=PARAMS_HASH, timestamp=ts, deadline=ts + 300,
                              **{**fields, "marks_wad": marks_wad})
            tx = oracle.post_market_data(data.as_args(), sign_multi(data, domain, signers[:2]), sender=keeper)
        return tx

    return _set


def _overrides(ids, marks, funding, rates):
    """MarketData array overrides: the shared defaults (tests/conftest.py) with changes."""
    defaults = {
        1: (60_000 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
        2: (60_500 * WAD, 0, 6_000 * WAD, 6_000 * WAD, 3_000 * WAD, 3_000 * WAD),
        3: (2_500 * WAD, 0, 2_500 * WAD, 9_000 * WAD, 1_250 * WAD, 4_500 * WAD),
        4: (2_400 * WAD, 0, 2_400 * WAD, 9_000 * WAD, 1_200 * WAD, 4_500 * WAD),
    }
    rows = []
    for i in ids:
        m, f, a, b, c, d = defaults.get(i, defaults[1])
        m = marks.get(i, m)
        f = funding.get(i, f)
        a, b, c, d = rates.get(i, (a, b, c, d))
        rows.append((m, f, a, b, c, d))
    return {
        "marks_wad": [r[0] for r in rows],
        "funding_indices_wad": [r[1] for r in rows],
        "im_long_wad": [r[2] for r in rows],
        "im_short_wad": [r[3] for r in rows],
        "mm_long_wad": [r[4] for r in rows],
        "mm_short_wad": [r[5] for r in rows],
    }


@pytest.fixture(scope="session")
def fund(token, engine):
    """Mint `amount` token units to `who` and deposit them."""

    def _fund(who, amount):
        token.mint(who, amount, sender=who)
        token.approve(engine, amount, sender=who)
        return engine.deposit(amount, sender=who)

    return _fund


@pytest.fixture(scope="session")
def make_order(engine_domain, local_keys, chain):
    """make_order(maker, instrument, is_buy, size_wad, price_wad, nonce=1) -> (Order, signature)."""

    def _make(maker, instrument_id, is_buy, size_wad, price_wad, order_nonce=1, deadline=None):
        order = Order(
            account=maker.address,
            instrument_id=instrument_id,
            is_buy=is_buy,
            size_wad=size_wad,
            limit_price_wad=price_wad,
            order_nonce=order_nonce,
            deadline=chain.pending_timestamp + 3_600 if deadline is None else deadline,
        )
        return order, sign_order(order, engine_domain, local_keys[maker.address])

    return _make


@pytest.fixture(scope="session")
def trade(engine, make_order):
    """trade(maker, taker, instrument, maker_size_wad (signed), price_wad): maker signs, taker fills."""
    counter = {"nonce": 1000}

    def _trade(maker, taker, instrument_id, maker_size_wad, price_wad):
        counter["nonce"] += 1
        order, sig = make_order(maker, instrument_id, maker_size_wad > 0, abs(maker_size_wad), price_wad,
                                order_nonce=counter["nonce"])
        return engine.fill(order.as_args(), sig, abs(maker_size_wad), sender=taker)

    return _trade


@pytest.fixture(scope="session")
def leaf_for(engine):
    """leaf_for(account, im_wad, mm_wad, **overrides) -> AccountLeaf for the account's
    current book: its state nonce, positions hash and pending counters."""

    def _leaf(account, im_wad, mm_wad, **over) -> AccountLeaf:
        return book_leaf(engine, account, im_wad, mm_wad, **over)

    return _leaf


@pytest.fixture(scope="session")
def post_root(engine, oracle, registry, keeper, domain, signers, mine, chain):
    """post_root(leaves, engine=engine, by=2 of 3 signers) -> EpochTrees: builds both trees,
    signs the root one second later and posts it (the engine's next epoch each call)."""

    def _post(leaves, eng=None, market=(), by=None, timestamp=None, sender=None) -> EpochTrees:
        mine(1)
        eng = eng or engine
        ts = chain.blocks.head.timestamp if timestamp is None else timestamp
        root = sign_root(eng, next_epoch(oracle, eng), leaves, timestamp=ts, domain=domain,
                         signers=signers[:2] if by is None else by, params_hash=PARAMS_HASH, market=market,
                         market_count=registry.instrument_count())
        oracle.post_root(*root.post_args(), sender=sender or keeper)
        return root.trees

    return _post


@pytest.fixture(scope="session")
def give_margin(engine, leaf_for, post_root, keeper):
    """give_margin(account, im_wad, mm_wad, sender=keeper) -> the apply_leaf receipt: the
    signers post a root holding a leaf for the account's current book (IM, MM) and it is
    applied, as the keeper margins a book in production."""

    def _give(account, im_wad, mm_wad, by=None, sender=None, **leaf_overrides):
        trees = post_root([leaf_for(account, im_wad, mm_wad, **leaf_overrides)], by=by)
        leaf, proof = trees.account_proof(account.address)
        return engine.apply_leaf(leaf.as_args(), proof, sender=sender or keeper)

    return _give


_PLACEHOLDER_LEAF = AccountLeaf(
    account="0x" + "0d" * 20, state_nonce=0, positions_hash=b"\0" * 32, pending_base_im_wad=0,
    pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=0, maintenance_margin_wad=0,
    worst_loss_wad=0, worst_scenarios=0, basis_addon_wad=0, short_option_addon_wad=0,
    liquidity_addon_wad=0, rounding_guard_wad=0)


@pytest.fixture(scope="session")
def market_leaf(registry, oracle):
    """market_leaf(instrument_id, **overrides) -> MarketLeaf from the registry's terms: a
    perpetual or future at its current oracle mark, an option on a SPOT_WAD forward at
    VOL_WAD (the model inputs a liquidation is judged on); every leaf carries its
    instrument's oracle mark, as honest signers' leaves do (the engine refuses a witness
    whose leaf marks are not the oracle's)."""

    def _leaf(iid: int, **over) -> MarketLeaf:
        inst = registry.instrument(iid)
        mark = oracle.marks([iid])[0][0]
        fields = dict(instrument_id=iid, kind=inst.kind, underlying=bytes(inst.underlying),
                      strike_wad=inst.strike_wad, expiry=inst.expiry, contract_size_wad=WAD,
                      spot_wad=SPOT_WAD, forward_wad=SPOT_WAD, vol_wad=0, rate_wad=0, mark_wad=mark,
                      im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0)
        if inst.kind in (2, 3):
            fields["vol_wad"] = VOL_WAD
        else:
            fields["spot_wad"] = fields["forward_wad"] = mark
        fields.update(over)
        return MarketLeaf(**fields)

    return _leaf


@pytest.fixture(scope="session")
def witness_for(engine, post_root, market_leaf, chain):
    """witness_for(account, eng=engine, leaves={id: overrides}, scenarios=None, joint=None,
    raw=False) -> the abi-encoded witness of the account's stored book (the Witness itself
    with raw=True): posts a root whose market tree holds a leaf per position (one second
    later, with the model's per-unit rates unless overridden) and names the binding
    scenarios unless told. An empty book gets empty bytes (the
    engine refuses it first)."""

    def _witness(account, eng=None, leaves=None, scenarios=None, joint=None, account_leaves=(), extra_ids=(),
                 raw=False):
        eng = eng or engine
        book = [(p.instrument_id, p.size_wad) for p in eng.account(account).positions]
        if not book:
            return b""
        over = leaves or {}
        # the root is signed at the next second (post_root mines a block first): its leaves
        # carry the model's per-unit rates at that time, as honest signers' do
        signed_at = chain.blocks.head.timestamp + 1
        market = with_model_rates(WITNESS_PARAMS, [market_leaf(i, **over.get(i, {}))
                                                   for i in sorted({i for i, _ in book} | set(extra_ids))],
                                  signed_at, keep=over)
        # an accounts root is never empty: a leaf no engine account can apply stands in
        trees = post_root(list(account_leaves) or [_PLACEHOLDER_LEAF], eng=eng, market=market, timestamp=signed_at)
        w = liquidation_witness(WITNESS_PARAMS, eng.address, book, trees, signed_at, scenarios, joint)
        return w if raw else w.encode()

    return _witness


@pytest.fixture(scope="session")
def flag(engine, witness_for):
    """flag(account, sender=..., eng=engine, **witness options): MarginEngine.flag with the
    account's witness (binding scenarios): once a verifier is registered the clock starts or
    runs on only with the model's shortfall."""

    def _flag(account, sender, eng=None, witness=None, **kw):
        eng = eng or engine
        w = witness_for(account, eng=eng, **kw) if witness is None else witness
        return eng.flag(account, w, sender=sender)

    return _flag


@pytest.fixture(scope="session")
def liquidate(engine, witness_for):
    """liquidate(account, fraction, max_payment, nonce, sender=..., eng=engine, **witness
    options): MarginEngine.liquidate with the account's witness (binding scenarios)."""

    def _liquidate(account, fraction, max_payment, nonce, sender, eng=None, witness=None, **kw):
        eng = eng or engine
        w = witness_for(account, eng=eng, **kw) if witness is None else witness
        return eng.liquidate(account, fraction, max_payment, nonce, w, sender=sender)

    return _liquidate

"""ScenarioVerifier.check_market: every leg's market inputs proven against an engine's epoch
market root on a real RiskOracle (a threshold-signed root), then priced as `check` prices:
equal to `check` on the same inputs and to the engine's margin; a leaf that is not in the
root, a root under another parameter set, or an expired instrument is refused. All legs are
proven by one multiproof (offchain/chain/merkle.py `MerkleTree.multiproof`)."""

from dataclasses import replace

import boa
import numpy as np
import pytest
from boa import BoaError
from eth_account import Account
from eth_utils import keccak

from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
from offchain.chain.leaves import AccountLeaf, MarketLeaf, positions_hash
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import check_arguments, params_hash_bytes, verifier_config
from offchain.risk import RiskEngine, load_params
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import PERPETUAL

from .conftest import ROOT, WAD, random_book

SIGNERS = sorted((Account.from_key(keccak(text=f"netmargin verifier signer {i}")) for i in range(2)),
                 key=lambda a: int(a.address, 16))
ENGINE = "0x" + "e1" * 20
SECONDS_YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def system():
    params = load_params("default-v2")
    registry = boa.load(str(ROOT / "contracts" / "InstrumentRegistry.vy"))
    oracle = boa.load(str(ROOT / "contracts" / "RiskOracle.vy"), registry.address,
                      [s.address for s in SIGNERS], 2, params_hash_bytes(params), 2_000)
    generator, rows = verifier_config(params)
    verifier = boa.load(str(ROOT / "contracts" / "ScenarioVerifier.vy"), oracle.address,
                        params_hash_bytes(params), generator, rows)
    domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
    return params, oracle, verifier, domain


def _market_leaves(book, signed_at: int) -> list[MarketLeaf]:
    """One market leaf per leg: its instrument's inputs, expiry = root time + tenor."""
    leaves = []
    for i, (_, kind, u, fwd, spot, strike, tenor, vol, rate, cs) in enumerate(book.legs):
        expiry = 0 if kind == PERPETUAL else signed_at + round(tenor / WAD * SECONDS_PER_YEAR)
        leaves.append(MarketLeaf(
            instrument_id=i + 1, kind=kind, underlying=symbol_to_bytes32(book.units[u]),
            strike_wad=strike, expiry=expiry, contract_size_wad=cs, spot_wad=spot,
            forward_wad=spot if kind == PERPETUAL else fwd, vol_wad=vol, rate_wad=rate,
            mark_wad=0, im_long_wad=0, im_short_wad=0, mm_long_wad=0, mm_short_wad=0))
    return leaves


def _post_root(params, oracle, domain, leaves, epoch):
    signed_at = boa.env.evm.patch.timestamp
    account = AccountLeaf(
        account="0x" + "a1" * 20, state_nonce=1, positions_hash=positions_hash([1], [WAD]),
        pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=0,
        maintenance_margin_wad=0, worst_loss_wad=0, worst_scenarios=0, basis_addon_wad=0,
        short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)
    trees = EpochTrees.build(ENGINE, epoch, [account], leaves)
    msg = trees.root_message(timestamp=signed_at, deadline=signed_at + 300,
                             params_hash=params_hash_bytes(params))
    oracle.post_root(msg.as_args(), sign_multi(msg, domain, SIGNERS))
    return trees


def _engine_of(params, book, leaves, signed_at) -> RiskEngine:
    """The engine on exactly the leaves' inputs (tenor from expiry and the root time)."""
    x = book.inputs
    tenor = np.array([0.0 if leaf.kind == PERPETUAL else (leaf.expiry - signed_at) / SECONDS_PER_YEAR
                      for leaf in leaves])
    inputs = InstrumentInputs(kind=x.kind, u_idx=x.u_idx, spot=x.spot,
                              fwd=np.where(x.kind == PERPETUAL, x.spot, x.fwd), strike=x.strike,
                              tenor=tenor, vol=x.vol, rate=x.rate, contract_size=x.contract_size)
    return RiskEngine.from_inputs(params, inputs, book.units, dtype=np.float64)


def test_check_market__proven_leaves__equals_check_and_engine(system):
    params, oracle, verifier, domain = system
    rng = np.random.default_rng(21)
    for epoch in (1, 2, 3):
        boa.env.time_travel(seconds=600)
        book = random_book(rng, 6)
        signed_at = boa.env.evm.patch.timestamp
        leaves = _market_leaves(book, signed_at)
        trees = _post_root(params, oracle, domain, leaves, epoch)
        mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
        engine = _engine_of(params, book, leaves, signed_at)
        _, units, scenarios, joint = check_arguments(engine, book.sizes)
        sizes = [leg[0] for leg in book.legs]
        out = verifier.check_market(ENGINE, sizes, [leaf.as_args() for leaf in leaves], mp,
                                    units, scenarios, joint)
        b = engine.breakdown(book.sizes[None, :], exact=True)
        assert abs(out.maintenance_wad / WAD - b.mm[0]) <= 1e-9 * book.gross_notional()
        # the same legs handed to `check` directly (tenor from the leaf's expiry): identical
        direct = [(size, leaf.kind, u, leaf.forward_wad, leaf.spot_wad, leaf.strike_wad,
                   0 if leaf.kind == PERPETUAL else (leaf.expiry - signed_at) * WAD // SECONDS_YEAR,
                   leaf.vol_wad, leaf.rate_wad, leaf.contract_size_wad)
                  for size, leaf, u in zip(sizes, leaves, [units.index(leaf.underlying)
                                                           for leaf in leaves], strict=True)]
        assert out == verifier.check(direct, units, scenarios, joint)


def test_check_market__leaf_not_in_root__reverts(system):
    params, oracle, verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(np.random.default_rng(4), 3, units=("BTC",))
    signed_at = boa.env.evm.patch.timestamp
    leaves = _market_leaves(book, signed_at)
    trees = _post_root(params, oracle, domain, leaves, 10)
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
    forged = [leaf.as_args() for leaf in leaves]
    forged[0] = replace(leaves[0], vol_wad=leaves[0].vol_wad // 2).as_args()   # a calmer market
    sizes = [leg[0] for leg in book.legs]
    with boa.reverts("ScenarioVerifier: invalid market multiproof"):
        verifier.check_market(ENGINE, sizes, forged, mp, book.unit_symbols(), [0], 0)
    # the true leaves with a leaf dropped, or with the ops dropped: refused. Which step of the
    # multiproof notices the missing leaf depends on the leaves' hash order (their timestamps)
    with pytest.raises(BoaError) as dropped:
        verifier.check_market(ENGINE, sizes[1:], [leaf.as_args() for leaf in leaves[1:]], mp,
                              book.unit_symbols(), [0], 0)
    assert ("multiproof: order is not a permutation of the leaves" in str(dropped.value)
            or "multiproof: op without a second queued node" in str(dropped.value))
    with boa.reverts("multiproof: nodes or proof elements left over"):
        verifier.check_market(ENGINE, sizes, [leaf.as_args() for leaf in leaves], (mp[0], [], mp[2]),
                              book.unit_symbols(), [0], 0)


def test_check_market__expired_instrument__reverts(system):
    params, oracle, verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(np.random.default_rng(5), 2, kinds=(3,), units=("BTC",))
    signed_at = boa.env.evm.patch.timestamp
    leaves = [replace(leaf, expiry=signed_at) for leaf in _market_leaves(book, signed_at)]
    trees = _post_root(params, oracle, domain, leaves, 11)
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
    with boa.reverts("ScenarioVerifier: instrument expired at the root"):
        verifier.check_market(ENGINE, [leg[0] for leg in book.legs],
                              [leaf.as_args() for leaf in leaves], mp, book.unit_symbols(), [0], 0)


def test_check_market__oracle_on_another_params_set__reverts(system):
    params, oracle, _, _ = system
    other = load_params("default-v1")
    generator, rows = verifier_config(other)
    verifier = boa.load(str(ROOT / "contracts" / "ScenarioVerifier.vy"), oracle.address,
                        params_hash_bytes(other), generator, rows)
    with boa.reverts("ScenarioVerifier: oracle runs another params set"):
        verifier.check_market(ENGINE, [], [], ([], [], 0), [symbol_to_bytes32("BTC")], [0], 0)


def test_check_market__sizes_and_leaves_mismatch__reverts(system):
    params, oracle, verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(np.random.default_rng(6), 2, units=("BTC",))
    leaves = _market_leaves(book, boa.env.evm.patch.timestamp)
    trees = _post_root(params, oracle, domain, leaves, 12)
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
    with boa.reverts("ScenarioVerifier: one size per leaf expected"):
        verifier.check_market(ENGINE, [WAD], [leaf.as_args() for leaf in leaves], mp,
                              [symbol_to_bytes32("BTC")], [0], 0)

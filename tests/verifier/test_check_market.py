"""ScenarioVerifier.check_market: every leg's market inputs proven against an engine's epoch
market root on a real RiskOracle (a threshold-signed root), then priced as `check` prices:
equal to `check` on the same inputs and to the engine's margin; a leaf that is not in the
root, a root under another parameter set, or an expired instrument is refused. All legs are
proven by one multiproof over the positional market tree (offchain/chain/merkle.py
`PositionalTree.multiproof`)."""

from dataclasses import replace

import boa
import numpy as np
import pytest
from boa import BoaError
from eth_account import Account
from eth_utils import keccak
from support.boa_contracts import deploy, deployer
from support.check_market import check_market

from offchain.chain.eip712 import Domain, sign_multi, symbol_to_bytes32
from offchain.chain.leaves import AccountLeaf, MarketLeaf, positions_hash
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import check_arguments, params_hash_bytes, verifier_config
from offchain.chain.witness import encode_check_market
from offchain.risk import RiskEngine, load_params
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.pricing import PERPETUAL

from .conftest import WAD, random_book

SIGNERS = sorted((Account.from_key(keccak(text=f"netmargin verifier signer {i}")) for i in range(2)),
                 key=lambda a: int(a.address, 16))
ENGINE = "0x" + "e1" * 20
SECONDS_YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def system():
    return deploy_system()


def deploy_system():
    """A registry, an oracle with two signers under default-v2 and its verifier."""
    params = load_params("default-v2")
    registry = deploy("InstrumentRegistry")
    oracle = deploy("RiskOracle", registry.address,
                    [s.address for s in SIGNERS], 2, params_hash_bytes(params), 2_000)
    generator, rows = verifier_config(params)
    verifier = deploy("ScenarioVerifier", oracle.address, params_hash_bytes(params), generator, rows)
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


def _listed(oracle, at_least: int) -> int:
    """The oracle's registry count, after listing perpetuals until it is at least `at_least`
    (a root's market tree has a slot per listed instrument; the oracle wants the registry's
    count)."""
    registry = deployer("InstrumentRegistry").at(oracle.registry())
    while registry.instrument_count() < at_least:
        registry.list_instrument(f"P{registry.instrument_count()}".encode().ljust(32, b"\0"), PERPETUAL, 0, 0)
    return registry.instrument_count()


def _post_root(params, oracle, domain, leaves, epoch):
    signed_at = boa.env.evm.patch.timestamp
    account = AccountLeaf(
        account="0x" + "a1" * 20, state_nonce=1, positions_hash=positions_hash([1], [WAD]),
        pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=0,
        maintenance_margin_wad=0, worst_loss_wad=0, worst_scenarios=0, basis_addon_wad=0,
        short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)
    trees = EpochTrees.build(ENGINE, epoch, [account], leaves, _listed(oracle, max(m.instrument_id for m in leaves)))
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


def _posted_book(system, rng, legs: int, epoch: int, **book_options):
    """Ten minutes on, a random book of `legs` legs, its market leaves at the root time and a
    root holding them posted as `epoch`: (book, leaves, trees, signed_at)."""
    params, oracle, _verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(rng, legs, **book_options)
    signed_at = boa.env.evm.patch.timestamp
    leaves = _market_leaves(book, signed_at)
    return book, leaves, _post_root(params, oracle, domain, leaves, epoch), signed_at


def test_check_market__proven_leaves__equals_check_and_engine(system):
    params, verifier = system[0], system[2]
    rng = np.random.default_rng(21)
    for epoch in (1, 2, 3):
        book, leaves, trees, signed_at = _posted_book(system, rng, 6, epoch)
        mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
        engine = _engine_of(params, book, leaves, signed_at)
        _, units, scenarios, joint = check_arguments(engine, book.sizes)
        sizes = [leg[0] for leg in book.legs]
        out = check_market(verifier, ENGINE, sizes, [leaf.as_args() for leaf in leaves], mp,
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
    verifier = system[2]
    book, leaves, trees, _ = _posted_book(system, np.random.default_rng(4), 3, 10, units=("BTC",))
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
    forged = [leaf.as_args() for leaf in leaves]
    forged[0] = replace(leaves[0], vol_wad=leaves[0].vol_wad // 2).as_args()   # a calmer market
    sizes = [leg[0] for leg in book.legs]
    with boa.reverts("ScenarioVerifier: invalid market multiproof"):
        check_market(verifier, ENGINE, sizes, forged, mp, book.unit_symbols(), [0], 0)
    # the true leaves with a leaf dropped (its slot's node missing), a proof element more or
    # one less: refused
    with pytest.raises(BoaError):
        check_market(verifier, ENGINE, sizes[1:], [leaf.as_args() for leaf in leaves[1:]], mp,
                              book.unit_symbols(), [0], 0)
    with boa.reverts("multiproof: proof elements left over"):
        check_market(verifier, ENGINE, sizes, [leaf.as_args() for leaf in leaves], (mp[0] + [bytes(32)], mp[1]),
                              book.unit_symbols(), [0], 0)
    with boa.reverts("multiproof: proof too short"):
        check_market(verifier, ENGINE, sizes, [leaf.as_args() for leaf in leaves], (mp[0][:-1], mp[1]),
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
        check_market(verifier, ENGINE, [leg[0] for leg in book.legs],
                              [leaf.as_args() for leaf in leaves], mp, book.unit_symbols(), [0], 0)


def test_check_market__oracle_on_another_params_set__reverts(system):
    params, oracle, _, _ = system
    other = load_params("default-v1")
    generator, rows = verifier_config(other)
    verifier = deploy("ScenarioVerifier", oracle.address, params_hash_bytes(other), generator, rows)
    with boa.reverts("ScenarioVerifier: oracle runs another params set"):
        check_market(verifier, ENGINE, [], [], ([], 0), [symbol_to_bytes32("BTC")], [0], 0)


def test_check_market__sizes_and_leaves_mismatch__reverts(system):
    params, oracle, verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(np.random.default_rng(6), 2, units=("BTC",))
    leaves = _market_leaves(book, boa.env.evm.patch.timestamp)
    trees = _post_root(params, oracle, domain, leaves, 12)
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves]).as_args()
    with boa.reverts("ScenarioVerifier: one size per leaf expected"):
        check_market(verifier, ENGINE, [WAD], [leaf.as_args() for leaf in leaves], mp,
                              [symbol_to_bytes32("BTC")], [0], 0)


@pytest.fixture(scope="module")
def deployers():
    """The three contracts compiled once (fresh deployments per count below)."""
    return {name: deployer(name)
            for name in ("InstrumentRegistry", "RiskOracle", "ScenarioVerifier")}


@pytest.mark.parametrize("count", [1, 5])
def test_check_market__one_and_non_power_of_two_counts__last_slot_proven_past_the_count_refused(count, deployers):
    """A registry of `count` perpetuals and a root over all of them: the oracle's own tree
    (publish_epoch_data) is the Python one, the leaf at the last slot (beside the padding of
    a non-power-of-two count, or alone in a 1-instrument tree) proves and prices, and a leaf
    claiming the slot past the count is refused."""
    params = load_params("default-v2")
    registry = deployers["InstrumentRegistry"].deploy()
    oracle = deployers["RiskOracle"].deploy(registry.address, [s.address for s in SIGNERS], 2,
                                            params_hash_bytes(params), 2_000)
    generator, rows = verifier_config(params)
    verifier = deployers["ScenarioVerifier"].deploy(oracle.address, params_hash_bytes(params), generator, rows)
    domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
    btc = symbol_to_bytes32("BTC")
    leaves = []
    for i in range(1, count + 1):
        registry.list_instrument(symbol_to_bytes32(f"P{i}") if i < count else btc, PERPETUAL, 0, 0)
        u = symbol_to_bytes32(f"P{i}") if i < count else btc
        leaves.append(MarketLeaf(i, PERPETUAL, u, 0, 0, WAD, 60_000 * WAD, 60_000 * WAD, 0, 0, 0, 0, 0, 0, 0))
    boa.env.time_travel(seconds=60)
    trees = _post_root(params, oracle, domain, leaves, 1)
    assert oracle.market_tree(ENGINE)[2:] == (count, trees.market.root)
    boa.env.time_travel(blocks=1)
    data = trees.data_message(boa.env.evm.patch.block_number - 1)
    oracle.publish_epoch_data(data.as_args(), [m.as_args() for m in trees.market_leaves_by_id()],
                              sign_multi(data, domain, SIGNERS))
    last = leaves[-1]
    mp = trees.market_multiproof([count]).as_args()
    out = check_market(verifier, ENGINE, [-WAD], [last.as_args()], mp, [btc], [0], 0)
    assert out.maintenance_wad > 0
    beyond = replace(last, instrument_id=count + 1)
    with boa.reverts("multiproof: instrument id beyond the root's count"):
        check_market(verifier, ENGINE, [-WAD], [beyond.as_args()], mp, [btc], [0], 0)


def test_check_market__proof_read_where_its_offset_points__same_root_else_refused(system):
    # the multiproof's hashes are read from the call data at the `proof` head word's offset (not
    # copied): the same array anywhere in the call data proves the same leaves; an offset past
    # the data, a length beyond it, or one hash fewer or more than the walk uses is refused
    verifier = system[2]
    book, leaves, trees, _ = _posted_book(system, np.random.default_rng(29), 5, 13, units=("BTC",))
    mp = trees.market_multiproof([leaf.instrument_id for leaf in leaves])
    assert len(mp.proof) >= 2
    sizes = [leg[0] for leg in book.legs]
    data = encode_check_market(ENGINE, sizes, [leaf.as_args() for leaf in leaves], list(mp.proof), mp.order,
                               book.unit_symbols(), [0], 0)
    genuine = check_market(verifier, data)
    word = lambda x: x.to_bytes(32, "big")  # noqa: E731
    head_at = 4 + 32 * 3   # the proof's head word: its offset from the arguments' start
    array = len(mp.proof).to_bytes(32, "big") + b"".join(mp.proof)

    def with_proof(offset: int, tail: bytes = b"") -> bytes:
        return data[:head_at] + word(offset) + data[head_at + 32:] + tail

    # the same array appended after everything, the head pointing there: the same check
    moved = with_proof(len(data) - 4, array)
    assert check_market(verifier, moved) == genuine
    # an offset past the call data, or an array whose length runs past it: refused
    with pytest.raises(BoaError):
        check_market(verifier, with_proof(len(data)))
    longer = (len(mp.proof) + 1).to_bytes(32, "big") + b"".join(mp.proof)
    with pytest.raises(BoaError):
        check_market(verifier, with_proof(len(data) - 4, longer))
    # one hash fewer than the walk needs, or one more: the multiproof's own reverts
    shorter = (len(mp.proof) - 1).to_bytes(32, "big") + b"".join(mp.proof[:-1])
    with boa.reverts("multiproof: proof too short"):
        check_market(verifier, with_proof(len(data) - 4, shorter))
    extra = (len(mp.proof) + 1).to_bytes(32, "big") + b"".join(mp.proof) + bytes(32)
    with boa.reverts("multiproof: proof elements left over"):
        check_market(verifier, with_proof(len(data) - 4, extra))
    # another array of the right length (the first hash changed): not the root's
    forged = array[:32] + bytes(31) + b"\x01" + array[64:]
    with boa.reverts("ScenarioVerifier: invalid market multiproof"):
        check_market(verifier, with_proof(len(data) - 4, forged))

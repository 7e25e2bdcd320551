"""Liquidation witnesses (offchain/chain/witness.py) against a real oracle and verifier: the
risk engine's binding columns, in the scenario table's indexing, name the model's margin on
chain for books over several underlyings (the joint column of the decorrelated term
included), no other choice of columns gives more, and a book that cannot be witnessed is
refused with its reason."""

from dataclasses import replace

import boa
import numpy as np
import pytest
from support.check_market import check_market

from offchain.chain.witness import WitnessError, liquidation_witness

from .conftest import WAD, random_book
from .test_check_market import ENGINE, _market_leaves, _post_root, system  # noqa: F401


def _setup(params, oracle, domain, book, epoch):
    boa.env.time_travel(seconds=600)
    signed_at = boa.env.evm.patch.timestamp
    leaves = _market_leaves(book, signed_at)
    trees = _post_root(params, oracle, domain, leaves, epoch)
    pairs = [(leaf.instrument_id, leg[0]) for leaf, leg in zip(leaves, book.legs, strict=True)]
    return trees, signed_at, pairs


def test_witness__binding_columns__margin_is_the_models_and_no_column_gives_more(system):  # noqa: F811
    params, oracle, verifier, domain = system
    rng = np.random.default_rng(7)
    n = int(verifier.n_scenarios())
    for epoch in (40, 41, 42):
        book = random_book(rng, 6, units=("BTC", "ETH", "SOL"))
        trees, signed_at, pairs = _setup(params, oracle, domain, book, epoch)
        w = liquidation_witness(params, ENGINE, pairs, trees, signed_at)
        margin = check_market(verifier, w).maintenance_wad
        tol = 1e-9 * book.gross_notional() * WAD + len(pairs)
        assert abs(margin - w.margin * WAD) <= tol
        # any other columns (per unit, and the joint one): never above the binding margin
        for _ in range(12):
            cols = [int(c) for c in rng.integers(0, n, size=len(w.units))]
            other = liquidation_witness(params, ENGINE, pairs, trees, signed_at, cols, int(rng.integers(0, n)))
            assert check_market(verifier, other).maintenance_wad <= margin + tol


def test_witness__unwitnessable_books__refused_with_reason(system):  # noqa: F811
    params, oracle, _, domain = system
    book = random_book(np.random.default_rng(3), 2, kinds=(2,), units=("BTC",))
    trees, signed_at, pairs = _setup(params, oracle, domain, book, 50)
    with pytest.raises(WitnessError, match="no market leaf"):
        liquidation_witness(params, ENGINE, [*pairs, (999, WAD)], trees, signed_at)
    with pytest.raises(WitnessError, match="expired at the root"):
        liquidation_witness(params, ENGINE, pairs, trees, trees.market_leaves[0].expiry)
    with pytest.raises(WitnessError, match="empty"):
        liquidation_witness(params, ENGINE, [], trees, signed_at)


def test_witness__nine_underlyings__refused(system):  # noqa: F811
    params, oracle, _, domain = system
    book = random_book(np.random.default_rng(5), 9, kinds=(1,), units=("BTC",))
    trees, signed_at, pairs = _setup(params, oracle, domain, book, 60)
    leaves = [replace(leaf, underlying=f"U{i}".encode().ljust(32, b"\0")) for i, leaf in enumerate(trees.market_leaves)]
    boa.env.time_travel(seconds=1)
    trees = _post_root(params, oracle, domain, leaves, 61)
    with pytest.raises(WitnessError, match="9 underlyings"):
        liquidation_witness(params, ENGINE, pairs, trees, boa.env.evm.patch.timestamp)


def test_max_witness__the_engines_bound_is_the_call_data_of_a_maximal_witness():
    # engine_core MAX_WITNESS (the engine's and extension's `witness` bound, and their memory
    # frames') is exactly a witness of 32 packed leaves, a 512-hash multiproof and 8 units
    from pathlib import Path

    from offchain.chain.leaves import MarketLeaf
    from offchain.chain.witness import MAX_WITNESS_BYTES, encode_check_market

    leaf = MarketLeaf(1, 1, b"BTC".ljust(32, b"\0"), 0, 0, WAD, WAD, WAD, 0, 0, 0, 0, 0, 0, 0).as_args()
    data = encode_check_market("0x" + "e1" * 20, [WAD] * 32, [leaf] * 32, [b"\x01" * 32] * 512, 0,
                               [b"U".ljust(32, b"\0")] * 8, [0] * 8, 0)
    assert len(data) == MAX_WITNESS_BYTES
    core = (Path(__file__).resolve().parents[2] / "contracts" / "modules" / "engine_core.vy").read_text()
    assert f"MAX_WITNESS: constant(uint256) = {MAX_WITNESS_BYTES:_}\n" in core

"""Witness-verified liquidation: the engine liquidates only if the equity is below the applied
MM and below the model's margin of the stored book in the scenarios the liquidator names
(ScenarioVerifier, every leg's inputs proven against the engine's current epoch market
root). A rogue or stale signed MM cannot liquidate a book the model calls healthy, whatever
scenario is named; a wrong scenario, a forged or stale proof, a witness for another book or
an old market root revert with their reason and leave the state as it was."""

from dataclasses import replace

import ape
import numpy as np
import pytest
from conftest import PARAMS_HASH, WAD
from eth_utils import keccak
from support.check_market import check_market

from offchain.chain.verifier import verifier_config
from offchain.chain.witness import leaves_engine, liquidation_witness

from .conftest import _PLACEHOLDER_LEAF, LIQUIDATION, PERP, TRADING, WITNESS_PARAMS

USDC = 10**6
PRICE = 60_000 * WAD
BPS = 10_000
HOUR = 3_600


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, witness_for,
                  flag):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def book(engine, fund, set_market, trade, accounts, maker, liquidator):
    """book(deposit_usd) -> accounts[9] long 1 BTC perp at 60k with that deposit (pending MM
    3k); maker short; liquidator funded. A factory called in the test body."""

    def _open(deposit_usd: int):
        owner = accounts[9]
        fund(owner, deposit_usd * USDC)
        fund(maker, 500_000 * USDC)
        fund(liquidator, 200_000 * USDC)
        set_market()
        trade(owner, maker, PERP, WAD, PRICE)  # the owner makes: no taker fee
        return owner

    return _open


def _apply_rogue_leaf(engine, account, leaf_for, post_root, keeper, mm_wad):
    """A threshold-signed root whose leaf overstates the account's MM, applied."""
    leaf = leaf_for(account, mm_wad * 2, mm_wad)
    trees = post_root([leaf, _PLACEHOLDER_LEAF])
    leaf, proof = trees.account_proof(account.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=keeper)
    assert engine.health(account).mm_wad == mm_wad


def _margin(verifier, witness) -> int:
    """The verifier's margin of a witness (what the engine compares the equity with)."""
    return check_market(verifier, witness).maintenance_wad


def _state(engine, *accounts):
    return tuple(engine.account(a) for a in accounts), engine.insurance_wad()


def test_liquidate__rogue_root_overstates_healthy_book__reverts_whatever_scenario(
    engine, verifier, book, leaf_for, post_root, keeper, liquidator, witness_for
):
    owner = book(20_000)  # equity 20k; the model's MM of 1 BTC perp at 60k is ~9.5k
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 25_000 * WAD)
    h = engine.health(owner)
    assert h.liquidatable and h.equity_wad == 20_000 * WAD  # the signed MM alone would liquidate
    before = _state(engine, owner, liquidator)
    n = verifier.n_scenarios()
    top = _margin(verifier, witness_for(owner, raw=True))  # the binding scenarios
    assert 9_000 * WAD < top < h.equity_wad
    for s in range(n):
        w = witness_for(owner, scenarios=[s], joint=(s * 7) % n, raw=True)
        assert _margin(verifier, w) <= top + 10**6
        with ape.reverts("engine: witness scenarios show no shortfall"):
            engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner), w.encode(), sender=liquidator)
    assert _state(engine, owner, liquidator) == before


def test_flag__rogue_root_overstates_healthy_book__cannot_start_the_discount_clock(
    engine, verifier, book, set_market, leaf_for, post_root, keeper, liquidator, witness_for, mine, flag
):
    """The attack: a rogue root overstates a healthy book's MM. It cannot liquidate the book
    (the witness shows no shortfall), but `flag` read the applied MM alone: flagged and
    re-confirmed every hour, the book's clock ran, and at its first real dip the liquidator
    took the grown discount at once (here base + 4 h x slope = 3,000 bps instead of 1,000).
    Now starting or confirming the clock needs the witness too."""
    owner = book(12_000)  # equity 12k; the model's MM of 1 BTC perp at 60k is ~9.5k
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 25_000 * WAD)
    assert engine.health(owner).liquidatable  # by the signed MM alone
    before = _state(engine, owner, liquidator)
    for _ in range(4):  # hourly, as a running episode is confirmed
        set_market()
        with ape.reverts("engine: witness scenarios show no shortfall"):
            flag(owner, sender=liquidator)
        mine(HOUR)
    assert _state(engine, owner, liquidator) == before and engine.account(owner).liquidatable_since == 0
    # the real dip (equity 8k, below the model's margin too): the clock starts now, at the base
    set_market(marks={PERP: 56_000 * WAD})
    witness = witness_for(owner, raw=True)
    assert engine.health(owner).equity_wad < _margin(verifier, witness)
    assert engine.liquidation_preview(owner, WAD).discount_bps == LIQUIDATION[0]
    tx = flag(owner, sender=liquidator, witness=witness.encode())
    assert tx.decode_logs(engine.Flagged)[0].since == tx.timestamp == engine.account(owner).liquidatable_since
    assert engine.liquidation_preview(owner, WAD).discount_bps == LIQUIDATION[0]


def test_liquidate__unhealthy_book__liquidated_with_binding_scenario(
    engine, verifier, book, set_market, liquidator, witness_for, market_leaf, chain
):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})  # equity 2.5k < MM 3k (and < the model's ~8.7k)
    h = engine.health(owner)
    assert h.liquidatable and h.equity_wad == 2_500 * WAD
    witness = witness_for(owner, raw=True)
    model_mm = _margin(verifier, witness)
    # the model's margin of this book on these leaves (float64 engine), to the pricer's precision
    risk, _ = leaves_engine(WITNESS_PARAMS, [market_leaf(PERP)], chain.blocks.head.timestamp)
    assert abs(model_mm / WAD - risk.breakdown(np.array([[1.0]]), exact=True).mm[0]) <= 1e-9 * 55_500
    assert abs(model_mm / WAD - witness.margin) <= 1e-9 * 55_500

    tx = engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner), witness.encode(), sender=liquidator)

    [log] = tx.decode_logs(engine.Liquidation)
    # the applied MM (3k) is below the model's: the slice is capped on it, as before
    target = 3_000 * WAD * (BPS + LIQUIDATION[4]) // BPS
    f = -(-(target - 2_500 * WAD) * WAD // (target - 3_000 * WAD * LIQUIDATION[0] // BPS))
    assert log.fraction_wad == f and engine.position(liquidator, PERP) == f


def test_liquidate__rogue_mm_on_unhealthy_book__slice_and_discount_on_model_margin(
    engine, verifier, book, set_market, leaf_for, post_root, keeper, liquidator, witness_for
):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 60_000 * WAD)
    witness = witness_for(owner, raw=True)
    model_mm = _margin(verifier, witness)
    assert model_mm < 60_000 * WAD

    tx = engine.liquidate(owner, WAD // 100, 10**30, engine.state_nonce(owner), witness.encode(), sender=liquidator)

    [log] = tx.decode_logs(engine.Liquidation)
    equity = 2_500 * WAD
    target = model_mm * (BPS + LIQUIDATION[4]) // BPS
    cap = -(-(target - equity) * WAD // (target - model_mm * LIQUIDATION[0] // BPS))
    assert cap > WAD // 100  # the request binds, not the cap
    assert log.fraction_wad == WAD // 100
    # discount = min(d * f * MM, equity) on the model's margin, not the signed 60k
    assert log.discount_wad == LIQUIDATION[0] * (WAD // 100) // BPS * model_mm // WAD


def test_liquidate__scenario_without_the_loss__reverts_with_reason(
    engine, verifier, book, set_market, liquidator, witness_for
):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    before = _state(engine, owner, liquidator)
    n = verifier.n_scenarios()
    margins = [_margin(verifier, witness_for(owner, scenarios=[s], joint=s, raw=True)) for s in range(n)]
    # a price rise: the long perp gains, only the add-ons remain (below the 2.5k equity)
    up = int(np.argmin(margins))
    assert margins[up] < 2_500 * WAD < max(margins)
    with ape.reverts("engine: witness scenarios show no shortfall"):
        engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner),
                         witness_for(owner, scenarios=[up], joint=up), sender=liquidator)
    with ape.reverts("ScenarioVerifier: scenario index out of range"):
        engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner),
                         witness_for(owner, scenarios=[n], joint=0), sender=liquidator)
    assert _state(engine, owner, liquidator) == before


def test_liquidate__forged_stale_or_foreign_witness__reverts(
    engine, book, set_market, liquidator, witness_for, market_leaf, post_root, chain, mine
):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    before = _state(engine, owner, liquidator)
    nonce = engine.state_nonce(owner)
    leaf = market_leaf(PERP)
    trees = post_root([_PLACEHOLDER_LEAF], market=[leaf])
    honest = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, chain.blocks.head.timestamp)

    # forged: a leaf with twice the spot (a larger margin) under the honest leaf's proof
    forged = replace(honest, leaves=[replace(leaf, spot_wad=2 * leaf.spot_wad, forward_wad=2 * leaf.forward_wad)])
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        engine.liquidate(owner, WAD, 10**30, nonce, forged.encode(), sender=liquidator)
    # another book: half the size (the verifier prices what it is given; the engine binds it)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, WAD, 10**30, nonce, replace(honest, sizes_wad=[WAD // 2]).encode(),
                         sender=liquidator)
    # a witness naming another engine (its root, its books)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, WAD, 10**30, nonce, replace(honest, engine=liquidator.address).encode(),
                         sender=liquidator)
    # not a witness at all
    with ape.reverts():
        engine.liquidate(owner, WAD, 10**30, nonce, engine.address.encode() + b"\x01" * 64, sender=liquidator)
    # the engine sends the witness on as call data: only check_market's selector goes (the
    # arguments without it, or with another function's selector in front, are refused; so is
    # the selector without the three head words the engine reads)
    args = honest.encode()[4:]
    for data in (args, bytes.fromhex("12345678") + args, b"", honest.encode()[:3], honest.encode()[:99]):
        with ape.reverts("engine: witness for another book"):
            engine.liquidate(owner, WAD, 10**30, nonce, data, sender=liquidator)
    # stale: the next epoch's root (the spot moved) replaces the one the leaf is in
    post_root([_PLACEHOLDER_LEAF], market=[replace(leaf, spot_wad=leaf.spot_wad - WAD, forward_wad=leaf.forward_wad - WAD)])
    with ape.reverts("ScenarioVerifier: invalid market multiproof"):
        engine.liquidate(owner, WAD, 10**30, nonce, honest.encode(), sender=liquidator)
    # an old market root (fresh marks, but the root is older than a liquidation's mark age)
    current = liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)],
                                  post_root([_PLACEHOLDER_LEAF], market=[leaf]), chain.blocks.head.timestamp)
    mine(TRADING[4] + 1)
    set_market(marks={PERP: 55_500 * WAD})
    with ape.reverts("engine: stale market root"):
        engine.liquidate(owner, WAD, 10**30, nonce, current.encode(), sender=liquidator)
    assert _state(engine, owner, liquidator) == before
    # the same book with a fresh root goes through
    engine.liquidate(owner, WAD, 10**30, nonce, witness_for(owner), sender=liquidator)


def test_liquidate__leaves_out_of_order_or_missing__reverts(
    engine, book, set_market, trade, maker, liquidator, market_leaf, post_root, chain
):
    owner = book(7_000)
    trade(owner, maker, 2, WAD // 10, 60_500 * WAD)  # a second leg: the future
    set_market(marks={PERP: 54_000 * WAD})
    assert engine.health(owner).liquidatable
    nonce = engine.state_nonce(owner)
    stored = [(p.instrument_id, p.size_wad) for p in engine.account(owner).positions]
    assert stored == [(PERP, WAD), (2, WAD // 10)]
    trees = post_root([_PLACEHOLDER_LEAF], market=[market_leaf(PERP), market_leaf(2)])
    signed_at = chain.blocks.head.timestamp
    swapped = liquidation_witness(WITNESS_PARAMS, engine.address, stored[::-1], trees, signed_at)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, WAD, 10**30, nonce, swapped.encode(), sender=liquidator)
    dropped = liquidation_witness(WITNESS_PARAMS, engine.address, stored[:1], trees, signed_at)
    with ape.reverts("engine: witness for another book"):
        engine.liquidate(owner, WAD, 10**30, nonce, dropped.encode(), sender=liquidator)
    w = liquidation_witness(WITNESS_PARAMS, engine.address, stored, trees, signed_at)
    engine.liquidate(owner, WAD, 10**30, nonce, w.encode(), sender=liquidator)


def test_liquidate__params_changed__fails_closed_until_new_verifier(
    engine, oracle, verifier, project, admin, book, set_market, liquidator, witness_for
):
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    witness = witness_for(owner)
    # the signers move to another parameter file: the registered verifier (the old file's)
    # refuses every witness; no liquidation on the old model, none without a model
    other_hash = keccak(text="another parameter file")
    oracle.set_params_hash(other_hash, sender=admin)
    with ape.reverts("ScenarioVerifier: oracle runs another params set"):
        engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner), witness, sender=liquidator)
    with ape.reverts("oracle: verifier for another params set"):
        oracle.set_verifier(verifier, sender=admin)
    with ape.reverts():
        oracle.set_verifier("0x" + "00" * 20, sender=admin)  # never back to no verifier
    generator, rows = verifier_config(WITNESS_PARAMS)
    other = project.ScenarioVerifier.deploy(oracle, other_hash, generator, rows, sender=admin)
    with ape.reverts():
        oracle.set_verifier(other, sender=owner)  # owner only
    oracle.set_verifier(other, sender=admin)
    assert oracle.verifier() == other.address
    # back to the test file and its verifier: a fresh root and witness liquidate
    oracle.set_params_hash(PARAMS_HASH, sender=admin)
    oracle.set_verifier(verifier, sender=admin)
    engine.liquidate(owner, WAD, 10**30, engine.state_nonce(owner), witness_for(owner), sender=liquidator)

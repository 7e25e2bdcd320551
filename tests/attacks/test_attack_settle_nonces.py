"""Leaves around a settlement: `settle` bumps the state nonce without a record in the nonce
ring and grows the IM pending counter (never MM, never the basis). A leaf at the nonce a
settlement reached, a leaf from before it, and a leaf re-applied after it. Names say the
sequence and the outcome (held: passing tests)."""

import ape
import pytest
from conftest import WAD

from .conftest import FUTURE, PERP

USDC = 10**6


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, make_order):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def hedged(engine, fund, set_market, trade, trader, maker, expire_instruments, post_settlement):
    """hedged() -> the trader long 1 future, short 1 perp (a hedge), on 50,000; the keeper's
    leaf of that book (nonce k, recorded) is signed; then the future expires and its
    settlement price is posted (fresh perp marks after the expiry). Returns the leaf."""

    def _open(leaf_for):
        fund(trader, 50_000 * USDC)
        fund(maker, 500_000 * USDC)
        set_market()
        trade(maker, trader, FUTURE, -WAD, 60_500 * WAD)
        trade(maker, trader, PERP, WAD, 60_000 * WAD)
        before = leaf_for(trader, 1_000 * WAD, 500 * WAD)
        expire_instruments()
        post_settlement(FUTURE, 60_000 * WAD)
        set_market(ids=(PERP,))
        return before

    return _open


def _posted(post_root, trader, signed):
    """A root holding `signed` posted: the trader's leaf and proof as `apply_leaf` takes them."""
    leaf, proof = post_root([signed]).account_proof(trader.address)
    return leaf.as_args(), proof


def _applied_margins(engine, keeper, trader, posted) -> tuple[int, int]:
    """Applies a posted leaf: the trader's effective (IM, MM) after it."""
    engine.apply_leaf(*posted, sender=keeper)
    view = engine.account(trader)
    return view.initial_margin_wad, view.maintenance_margin_wad


def test_settle__leaf_at_the_nonce_settlement_reached__applies_while_current_refused_after_the_next_trade(
        engine, trader, maker, keeper, hedged, leaf_for, post_root, trade):
    """A settlement's nonce has no ring record: a leaf for the book it left (the short perp)
    applies while that nonce is the current one (the positions hash binds it), and not once
    a trade moved the account on (its nonce is not recorded), which leaves the account as it
    was."""
    hedged(leaf_for)
    engine.settle(trader, FUTURE, sender=keeper)
    posted = _posted(post_root, trader, leaf_for(trader, 6_000 * WAD, 3_000 * WAD))
    before = engine.account(trader)
    engine.settle(maker, FUTURE, sender=keeper)              # the maker's expired leg too (its marks are old)
    trade(maker, trader, PERP, WAD // 100, 60_000 * WAD)    # the trader sells 0.01 more: new risk
    after_trade = engine.account(trader)
    with ape.reverts("engine: leaf's nonce not recorded"):
        engine.apply_leaf(*posted, sender=keeper)
    assert engine.account(trader) == after_trade != before


def test_settle__leaf_at_the_nonce_settlement_reached__applies_while_it_is_current(
        engine, trader, keeper, hedged, leaf_for, post_root):
    hedged(leaf_for)
    engine.settle(trader, FUTURE, sender=keeper)
    posted = _posted(post_root, trader, leaf_for(trader, 6_000 * WAD, 3_000 * WAD))
    assert _applied_margins(engine, keeper, trader, posted) == (6_000 * WAD, 3_000 * WAD)


def test_settle__leaf_from_before_the_settlement__applies_with_the_settled_legs_im_bound_not_lower(
        engine, trader, keeper, hedged, leaf_for, post_root):
    """The keeper's leaf of the hedged book (IM 1,000) lands after the future settled: it
    applies at its recorded nonce with the IM counter's growth since, the removed leg's
    standalone rate (6,000 for 1 long future, removed as a short trade), so the naked perp's
    IM is 7,000, never the hedge's 1,000; MM is the leaf's (settlement never raises MM)."""
    before = hedged(leaf_for)
    engine.settle(trader, FUTURE, sender=keeper)
    assert _applied_margins(engine, keeper, trader, _posted(post_root, trader, before)) == (7_000 * WAD, 500 * WAD)


def test_settle__current_roots_leaf_applied_before_it__cannot_be_reapplied_after_it(
        engine, trader, keeper, hedged, leaf_for, post_root):
    """Unlike a liquidation slice (V13), a settlement adds its bound at the block's time and
    keeps the account's basis, so the current root's leaf, applied before the settlement,
    is not newer than the basis after it: re-applying it (which would drop the settled leg's
    IM bound) is refused."""
    posted = _posted(post_root, trader, hedged(leaf_for))
    engine.apply_leaf(*posted, sender=keeper)
    engine.settle(trader, FUTURE, sender=keeper)
    settled = engine.account(trader)
    assert settled.initial_margin_wad == 7_000 * WAD
    with ape.reverts("engine: leaf not newer than margin basis"):
        engine.apply_leaf(*posted, sender=keeper)
    assert engine.account(trader) == settled

"""Attacks on the engine's nonce ring: each trade records, at slot nonce % NONCE_RING, the
state nonce it moved the account to with a digest of its pending counters and positions
hash, and a leaf at an older nonce applies only if it names that nonce's recorded counters
and book (V10's fix). Tried on a real Anvil engine with threshold-signed roots: slot
aliasing (nonce k against k + ring), a base off by 2**96 (the counters' modulus), the floor
nonce of a reduction, nonces no trade recorded, another account's record, the liquidator's
leaf from before its slice, and a taker churning a maker's ring with 1-wei fills. A leaf
that cannot bind ("refused" in the names) never lowers the margins nor freshens their basis:
raising nothing it reverts and leaves the account as it was; raising, it applies raise-only.
Names say the sequence and the outcome."""

from dataclasses import replace

import ape
import pytest
from conftest import WAD
from engine.conftest import _PLACEHOLDER_LEAF

from .conftest import PERP

USDC = 10**6
PRICE = 60_000 * WAD
RING = 8  # engine_core.NONCE_RING
M96 = 2**96 - 1


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, make_order,
                  witness_for, flag, liquidate):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


@pytest.fixture
def owner(accounts, maker, fund, set_market):
    """accounts[9], funded with 20,000, the maker with 500,000; marks posted."""
    fund(accounts[9], 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    return accounts[9]


def _view(engine, account):
    v = engine.account(account)
    return (v.cash_wad, v.state_nonce, tuple((p.instrument_id, p.size_wad) for p in v.positions),
            v.initial_margin_wad, v.maintenance_margin_wad, v.margin_basis_timestamp, engine.pending_total(account))


def _apply(engine, post_root, keeper, leaf):
    """Posts a root holding `leaf` and applies it (the keeper's path)."""
    trees = post_root([leaf, _PLACEHOLDER_LEAF])
    signed, proof = trees.account_proof(leaf.account)
    return engine.apply_leaf(signed.as_args(), proof, sender=keeper)


def _refused(engine, post_root, keeper, leaf, reason, oracle=None):
    """`leaf` cannot be bound to the book: it never lowers the margins nor freshens their
    basis. Its copy that raises nothing (zero margins) is refused with `reason`, the account
    as it was; `leaf` itself, where it raises IM or MM, applies raise-only: IM and MM become
    the larger of the held and the leaf's, and the nonce, book, cash, basis and pending
    counters stay as they were. Below the floor (pass `oracle`) the leaf's figures count only
    up to the isolated bound of the book held."""
    for candidate in (replace(leaf, initial_margin_wad=0, maintenance_margin_wad=0), leaf):
        before = _view(engine, leaf.account)
        cap = (2**256 - 1,) * 2
        if oracle is not None:
            cap = oracle.isolated_margins([i for i, _ in before[2]], [q for _, q in before[2]])
        raised = (max(before[3], min(candidate.initial_margin_wad, cap[0])),
                  max(before[4], min(candidate.maintenance_margin_wad, cap[1])))
        trees = post_root([candidate, _PLACEHOLDER_LEAF])
        signed, proof = trees.account_proof(leaf.account)
        if raised == before[3:5]:
            with ape.reverts(reason):
                engine.apply_leaf(signed.as_args(), proof, sender=keeper)
            assert _view(engine, leaf.account) == before
        else:
            engine.apply_leaf(signed.as_args(), proof, sender=keeper)
            assert _view(engine, leaf.account) == (*before[:3], *raised, *before[5:])


def _buys(owner, maker, trade, count, size=WAD // 1000):
    """`count` trades, each adding `size` of the perp to the owner's long (new risk: recorded)."""
    for _ in range(count):
        trade(owner, maker, PERP, size, PRICE)


def test_ring__leaf_ring_minus_one_trades_old__applies_with_the_growth_since(
        engine, owner, maker, trade, leaf_for, post_root, keeper):
    """The control: a leaf signed at nonce k applies after RING - 1 more trades (slot k % RING
    still holds k), with the counters' growth since k added to its margins."""
    _buys(owner, maker, trade, 1, WAD // 10)
    leaf = leaf_for(owner, 900 * WAD, 600 * WAD)
    base_im = leaf.pending_base_im_wad
    _buys(owner, maker, trade, RING - 1)
    grown = (engine.pending_total(owner) & M96) - base_im
    assert grown > 0
    _apply(engine, post_root, keeper, leaf)
    assert engine.account(owner).initial_margin_wad == 900 * WAD + grown


def test_ring__leaf_a_full_ring_of_trades_old__refused_state_unchanged(
        engine, owner, maker, trade, leaf_for, post_root, keeper):
    """Slot aliasing: after RING more trades, nonce k + RING sits in k's slot. The leaf at k
    (true when signed) is refused, whatever slot it hashes to; the book keeps its counters."""
    _buys(owner, maker, trade, 1, WAD // 10)
    leaf = leaf_for(owner, 900 * WAD, 600 * WAD)
    _buys(owner, maker, trade, RING)
    _refused(engine, post_root, keeper, leaf, "engine: leaf's nonce not recorded")


def test_ring__leaf_renamed_to_the_aliasing_nonce__refused(
        engine, owner, maker, trade, leaf_for, post_root, keeper):
    """The leaf of nonce k relabelled k + RING (the nonce now in that slot, no longer the
    current one): its counters and book are k's, not the recorded ones. Refused."""
    _buys(owner, maker, trade, 1, WAD // 10)
    leaf = leaf_for(owner, 900 * WAD, 600 * WAD)
    _buys(owner, maker, trade, RING + 1)
    _refused(engine, post_root, keeper, replace(leaf, state_nonce=leaf.state_nonce + RING),
             "engine: leaf's book or pending base is not its nonce's")


def test_ring__base_off_by_the_counters_modulus_or_another_nonces_base__refused(
        engine, owner, maker, trade, leaf_for, post_root, keeper):
    """The counters are kept modulo 2**96; a base of true + 2**96 is the same residue but not
    the recorded value (the growth would wrap to 0). A base of the current counters (V10's
    zeroing: no growth added) and a base one wei off are refused too."""
    _buys(owner, maker, trade, 1, WAD // 10)
    leaf = leaf_for(owner, 900 * WAD, 600 * WAD)
    _buys(owner, maker, trade, 2)
    total = engine.pending_total(owner)
    for bad in (dict(pending_base_im_wad=leaf.pending_base_im_wad + 2**96),
                dict(pending_base_mm_wad=leaf.pending_base_mm_wad + 2**96),
                dict(pending_base_im_wad=total & M96, pending_base_mm_wad=(total >> 96) & M96),
                dict(pending_base_mm_wad=leaf.pending_base_mm_wad - 1)):
        _refused(engine, post_root, keeper, replace(leaf, **bad),
                 "engine: leaf's book or pending base is not its nonce's")


def test_ring__older_nonce_naming_the_empty_or_a_smaller_book__refused(
        engine, owner, maker, trade, leaf_for, post_root, keeper):
    """V10's sequence: the book at nonce 0 (never recorded: the slot reads nonce 0 with a zero
    digest) and the book of nonce k named at nonce k + 1 (a smaller long, true counters of
    k + 1) are refused: a leaf must name the recorded book of its nonce."""
    from offchain.chain.leaves import EMPTY_POSITIONS_HASH

    _buys(owner, maker, trade, 1, WAD // 10)
    smaller = leaf_for(owner, 0, 0)
    _buys(owner, maker, trade, 1)
    at_next = leaf_for(owner, 0, 0)
    _buys(owner, maker, trade, 1)
    _refused(engine, post_root, keeper,
             replace(at_next, state_nonce=0, positions_hash=EMPTY_POSITIONS_HASH, pending_base_im_wad=0,
                     pending_base_mm_wad=0),
             "engine: leaf's book or pending base is not its nonce's")
    _refused(engine, post_root, keeper, replace(at_next, positions_hash=smaller.positions_hash),
             "engine: leaf's book or pending base is not its nonce's")


def test_ring__another_account_of_the_owner__its_record_does_not_serve(
        engine, owner, accomplice, maker, fund, trade, leaf_for, post_root, keeper):
    """The owner's second account holds a bigger book; the first account's record (its book and
    counters at that nonce) named as the second's leaf is refused at the second's slot."""
    fund(accomplice, 20_000 * USDC)
    _buys(owner, maker, trade, 1, WAD // 10)
    _buys(accomplice, maker, trade, 1, WAD // 5)
    small = leaf_for(owner, 0, 0)
    _buys(accomplice, maker, trade, 1)
    _refused(engine, post_root, keeper, replace(small, account=accomplice.address),
             "engine: leaf's book or pending base is not its nonce's")


def test_ring__floor_nonce_of_a_reduction__applies_there_refused_before(
        engine, oracle, owner, maker, trade, leaf_for, post_root, keeper):
    """A reduction raises the leaf floor to its nonce f (and records f). After one more trade
    the leaf of f applies (recorded, at the floor); the leaf of f - 1 (recorded, true when
    signed) is refused by the floor, not by the ring."""
    _buys(owner, maker, trade, 1, WAD // 10)
    before_floor = leaf_for(owner, 900 * WAD, 600 * WAD)
    trade(owner, maker, PERP, -(WAD // 20), PRICE)  # the owner sells half back
    at_floor = leaf_for(owner, 450 * WAD, 300 * WAD)
    _buys(owner, maker, trade, 1)
    _refused(engine, post_root, keeper, before_floor, "engine: leaf older than the book's last reduction", oracle)
    _apply(engine, post_root, keeper, at_floor)
    assert engine.account(owner).initial_margin_wad > 450 * WAD


def test_ring__liquidators_leaf_from_before_its_slice__refused_the_slice_nonces_leaf_applies(
        engine, oracle, owner, maker, accounts, liquidator, fund, set_market, trade, leaf_for, post_root, keeper, flag,
        liquidate):
    """The slice bumps the liquidator's nonce without a ring record and raises its leaf floor
    to that nonce: its leaf signed before the slice (recorded, true then: a small short perp)
    is refused (it would stamp the root's basis on the slice's inherited margins), the
    stored margins keep the slice's MM, and the leaf at the slice's nonce applies while it
    is current and is refused once the liquidator trades again (no record)."""
    fund(liquidator, 200_000 * USDC)
    victim = accounts[8]
    fund(victim, 7_000 * USDC)
    trade(victim, maker, PERP, WAD, PRICE)
    trade(liquidator, maker, PERP, -(WAD // 100), PRICE)
    before = leaf_for(liquidator, 100 * WAD, 60 * WAD)
    set_market(marks={PERP: 55_500 * WAD})
    flag(victim, sender=liquidator)
    victim_mm = engine.account(victim).maintenance_margin_wad
    liquidate(victim, WAD // 2, 10**30, engine.state_nonce(victim), sender=liquidator)
    slice_mm = victim_mm - engine.account(victim).maintenance_margin_wad  # the capped slice's share
    assert slice_mm > 0
    held = engine.account(liquidator).maintenance_margin_wad
    assert held >= slice_mm
    at_slice = leaf_for(liquidator, 100 * WAD, 60 * WAD)
    assert at_slice.state_nonce == before.state_nonce + 1
    _refused(engine, post_root, keeper, before, "engine: leaf older than the book's last reduction", oracle)
    assert engine.account(liquidator).maintenance_margin_wad == held
    _apply(engine, post_root, keeper, at_slice)
    assert engine.account(liquidator).maintenance_margin_wad == 60 * WAD
    trade(liquidator, maker, PERP, WAD // 100, 55_500 * WAD)  # more long: new risk
    _refused(engine, post_root, keeper, at_slice, "engine: leaf's nonce not recorded")


@pytest.mark.xfail(strict=True, reason="V11: a taker's 1-wei fills of a maker's resting order push the maker's "
                                       "signed nonce out of the ring; its honest leaf no longer applies")
def test_ring__taker_churns_a_makers_ring_with_1_wei_fills__makers_honest_leaf_still_applies(
        engine, owner, maker, attacker, fund, make_order, leaf_for, post_root, keeper):
    """V11 (low, griefing). Only an account's owner signs its trades, but a maker's resting
    order is filled by whoever takes it, in any size down to 1 wei. The keeper signs the
    maker's leaf at its snapshot nonce k; before the leaf is applied a taker fills the
    maker's resting order RING times for 1 wei each (8 fills, no fee worth the name): nonce
    k + RING overwrites k's slot and the honest leaf is refused. Repeated after each root,
    the maker's margins never leave the isolated pending adds (its portfolio offsets never
    count: withdrawals and new risk are held to the conservative bound) unless it cancels
    every resting order. Safe outcome: the leaf applies with the growth since k.
    Fix: a minimum fill (a maker-set `min_fill_wad` in the order, or a per-instrument lot
    size), or record a nonce in the ring only when it is the first of a block (the keeper
    snapshots at a block; fills in one block share a slot), or a ring slot per root epoch
    (the first trade after each posted root records; later ones in the epoch only move a
    'latest' slot) so that trades cannot evict the nonce of the last root's snapshot."""
    fund(attacker, 20_000 * USDC)
    trade_order, sig = make_order(owner, PERP, True, WAD // 10, PRICE, order_nonce=77)
    engine.fill(trade_order.as_args(), sig, WAD // 100, sender=maker)  # the owner's book opens
    leaf = leaf_for(owner, 600 * WAD, 400 * WAD)  # the keeper's snapshot
    for _ in range(RING):
        engine.fill(trade_order.as_args(), sig, 1, sender=attacker)
    assert engine.state_nonce(owner) == leaf.state_nonce + RING
    [log] = _apply(engine, post_root, keeper, leaf).decode_logs(engine.LeafApplied)
    # bound to the book: the root's time is the new basis (an unbound leaf only raises and
    # keeps the old basis, so the maker's offsets still never count)
    assert engine.account(owner).margin_basis_timestamp == log.root_timestamp
    assert engine.account(owner).initial_margin_wad >= 600 * WAD

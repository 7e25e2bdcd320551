"""A liquidation slice carries the victim's margins into the liquidator's word with the
victim's basis (the older of the two), so a day-old or voided IM never backs new risk. A
leaf of the liquidator's book signed *before* the slice (a recorded nonce, the keeper's
snapshot) applied after it, with the slice's margins added as counter growth, gave the whole
word the root's fresh timestamp as its basis: the inherited margins then backed withdrawals
as if a fresh leaf had re-priced them (SECURITY.md V13). A slice now raises the
liquidator's leaf floor to the nonce it reaches, so only a leaf of the book it holds after
the slice replaces the inherited basis. Names say the sequence and the outcome."""

import ape
import pytest
from conftest import WAD, committed
from engine.conftest import (
    WITNESS_PARAMS,
    give_margin,  # noqa: F401 - the engine suite's fixture
)
from support.margins import with_model_rates

from offchain.chain.witness import liquidation_witness

from .conftest import FUTURE, PERP, TRADING
from .test_verification_attacks import (  # noqa: F401 - system is a fixture
    VOID,
    bond_funds_add_up,
    post_epoch,
    rebond,
    system,
    understate,
)

USDC = 10**6
PRICE = 60_000 * WAD
MAX_MARGIN_BASIS_AGE = TRADING[3]
# the per-unit rates of the perp a day later (IM long/short, MM long/short): vol went up
HIGHER = (9_000 * WAD, 9_000 * WAD, 4_500 * WAD, 4_500 * WAD)
# a slice raises the liquidator's leaf floor to the nonce it reaches: leaves of its book
# before the slice are refused (the message names the floor's first use, a book's reduction)
PRE_SLICE = "engine: leaf older than the book's last reduction"


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade, make_order,
                  witness_for, liquidate):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def _victim_with_day_old_margins(engine, maker, victim, liquidator, fund, set_market, trade, margin, mine):
    """The victim long 1 BTC perp on 7,000, margined a day ago by a leaf (IM 6,000, MM
    3,000); the liquidator long 0.01 BTC future on 200,000 (its own book, at nonce k). A
    day later the perp's rates are 1.5x and BTC is at 53,200: the victim's equity (200) is
    below its discount, so a liquidation takes the whole book."""
    fund(maker, 1_000_000 * USDC)
    fund(victim, 7_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(maker, victim, PERP, -WAD, PRICE)
    margin(victim, 6_000 * WAD, 3_000 * WAD)
    trade(maker, liquidator, FUTURE, -WAD // 100, 60_500 * WAD)
    mine(MAX_MARGIN_BASIS_AGE + 1)
    set_market(marks={PERP: 53_200 * WAD}, rates={PERP: HIGHER})
    assert engine.health(victim).liquidatable


def test_slice__liquidators_pre_slice_leaf_applied_after_it__inherited_day_old_im_still_held_to_isolated_bound(
        engine, oracle, maker, accounts, liquidator, fund, set_market, trade, give_margin, mine, leaf_for,  # noqa: F811
        post_root, keeper, liquidate):
    """V13. The keeper snapshots the liquidator's book (0.01 BTC future, nonce k) and signs its
    leaf; before the root is posted the liquidator takes the victim's whole book. The slice
    brings the victim's day-old IM (6,000 for 1 BTC perp, at rates since raised to 9,000)
    with the victim's basis: new risk is on the isolated bound (~9,060). Then the root is
    posted and the liquidator (anyone may) applies its own honest leaf from nonce k: the
    engine adds the slice as counter growth and stamps the root's fresh timestamp on the
    whole word, so the inherited 6,000 now backs a withdrawal ~3,000 beyond the bound.
    Fixed: the slice raised the liquidator's leaf floor, so the pre-slice leaf is refused; until a leaf of the book the liquidator holds after the slice, its new
    risk stays on the isolated bound (the withdrawal below is refused)."""
    victim = accounts[8]
    _victim_with_day_old_margins(engine, maker, victim, liquidator, fund, set_market, trade, give_margin, mine)
    snapshot = leaf_for(liquidator, 60 * WAD, 30 * WAD)  # honest: 0.01 BTC future at 6,000 / 3,000 per unit
    liquidate(victim, WAD, 10**30, engine.state_nonce(victim), sender=liquidator)
    assert engine.position(liquidator, PERP) == WAD
    isolated_im, _ = oracle.isolated_margins([FUTURE, PERP], [WAD // 100, WAD])
    equity = engine.health(liquidator).equity_wad
    free = (equity - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    # the root with the pre-slice leaf lands after the slice
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(liquidator.address)
    with ape.reverts(PRE_SLICE):   # it would stamp the root's basis on the inherited 6,000
        engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)
    before = engine.cash_wad(liquidator)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    assert engine.cash_wad(liquidator) == before


def test_slice__liquidator_reapplies_its_leaf_of_the_current_root_after_it__inherited_day_old_im_still_held_to_isolated_bound(
        engine, oracle, maker, accounts, liquidator, fund, set_market, trade, give_margin, mine, leaf_for,  # noqa: F811
        post_root, keeper, market_leaf, chain):
    """V13 needs no race with the keeper: every slice is taken under a current root, and
    that root's leaf of the liquidator is for its book before the slice (at a recorded
    nonce). Here the root the liquidation's witness opens holds the liquidator's leaf; the
    liquidator applies it, liquidates, and applies the same leaf again (the slice moved its
    basis back to the victim's, so the root is "newer" again): the inherited 6,000 gets the
    root's basis."""
    victim = accounts[8]
    _victim_with_day_old_margins(engine, maker, victim, liquidator, fund, set_market, trade, give_margin, mine)
    own = leaf_for(liquidator, 60 * WAD, 30 * WAD)
    book = [(p.instrument_id, p.size_wad) for p in engine.account(victim).positions]
    signed_at = chain.blocks.head.timestamp + 1
    market = with_model_rates(WITNESS_PARAMS, [market_leaf(i) for i, _ in book], signed_at, keep={})
    trees = post_root([own], market=market, timestamp=signed_at)
    leaf, proof = trees.account_proof(liquidator.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)
    witness = liquidation_witness(WITNESS_PARAMS, engine.address, book, trees, signed_at, None, None).encode()
    engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    isolated_im, _ = oracle.isolated_margins([FUTURE, PERP], [WAD // 100, engine.position(liquidator, PERP)])
    free = (engine.health(liquidator).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    with ape.reverts(PRE_SLICE):
        engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)   # the same leaf, again
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)


def test_slice__flat_liquidators_empty_book_leaf_applied_after_it__inherited_day_old_im_still_held_to_isolated_bound(
        engine, oracle, maker, accounts, liquidator, fund, set_market, trade, give_margin, mine, leaf_for,  # noqa: F811
        post_root, keeper, liquidate):
    """V13 for a flat liquidator, the case the inherited basis was made for
    (`test_withdraw__flat_liquidator_after_slice_with_day_old_margins__margined_by_isolated_bound`).
    The keeper signs a leaf for every listed account whose book changed, flat ones included
    (`strategy.epoch_due`): the liquidator traded and closed, its empty book's leaf (IM 0,
    at the closing nonce, which is recorded and is the leaf floor) is signed; the liquidator
    then takes the victim's book and applies that leaf: IM = the inherited 6,000 on the
    root's fresh basis, where the isolated bound is 9,000."""
    victim = accounts[8]
    _victim_with_day_old_margins(engine, maker, victim, liquidator, fund, set_market, trade, give_margin, mine)
    trade(maker, liquidator, FUTURE, WAD // 100, 60_500 * WAD)   # closes its future: flat
    assert engine.account(liquidator).positions == []
    snapshot = leaf_for(liquidator, 0, 0)
    liquidate(victim, WAD, 10**30, engine.state_nonce(victim), sender=liquidator)
    isolated_im, _ = oracle.isolated_margins([PERP], [engine.position(liquidator, PERP)])
    free = (engine.health(liquidator).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(liquidator.address)
    with ape.reverts(PRE_SLICE):
        engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)


def test_slice__liquidators_leaf_at_the_slice_nonce__the_fresh_leaf_of_its_new_book_frees_margin(
        engine, oracle, maker, accounts, liquidator, fund, set_market, trade, give_margin, mine, leaf_for,  # noqa: F811
        post_root, keeper, liquidate):
    """Held (the rule V13's fix must keep): a leaf of the book the liquidator holds after the
    slice (its current nonce and positions hash) is what may replace the inherited basis;
    before it, the isolated bound holds new risk."""
    victim = accounts[8]
    _victim_with_day_old_margins(engine, maker, victim, liquidator, fund, set_market, trade, give_margin, mine)
    liquidate(victim, WAD, 10**30, engine.state_nonce(victim), sender=liquidator)
    isolated_im, _ = oracle.isolated_margins([FUTURE, PERP], [WAD // 100, WAD])
    free = (engine.health(liquidator).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    trees = post_root([leaf_for(liquidator, 9_060 * WAD, 4_530 * WAD)])
    leaf, proof = trees.account_proof(liquidator.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)
    engine.withdraw(free, sender=liquidator)


def test_slice__liquidators_pre_slice_leaf_applied_after_it__voided_inherited_im_still_held_to_isolated_bound(
        engine, oracle, registry, token, domain, signers, chain, keeper, admin, maker, accounts, liquidator,
        system, fund, set_market, trade, leaf_for, post_root, liquidate):  # noqa: F811
    """V13 through a fraud proof (V1's second direction, reopened). The victim applied its
    leaf of a false root (IM and MM 20x too low); the root is proven and voided. A slice of
    the victim carries the voided basis into the liquidator's word (V1's fix): new risk on
    the isolated bound. The liquidator's honest leaf of its own book, signed before the
    slice and posted after it in a valid root, applies with the slice's margins as counter
    growth and the valid root's basis: the understated IM of the proven-false root backs
    the liquidator's withdrawals again (~3,260 beyond the bound on the 0.59 BTC perp slice).
    Fixed: the pre-slice leaf is refused (the slice raised the leaf floor), and the withdrawal
    beyond the isolated bound until a leaf of the book the liquidator holds after the slice."""
    bond, fraud, _ = system()
    victim = accounts[8]
    fund(maker, 500_000 * USDC)
    fund(liquidator, 100_000 * USDC)
    fund(victim, 7_000 * USDC)
    set_market()
    trade(maker, liquidator, FUTURE, -WAD // 100, 60_500 * WAD)   # the liquidator's own book
    trade(maker, victim, PERP, -WAD, PRICE)                         # the victim long 1 perp
    chain.pending_timestamp += 10
    trees, record, books = post_epoch(engine, oracle, registry, domain, signers, chain, keeper,
                                      [liquidator, victim, maker], lie={victim.address: understate()})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=victim)
    fraud.challenge(*committed(fraud, keeper, trees, record, victim.address, books[victim.address]), sender=keeper)
    assert oracle.epoch_record_hash(engine, record.signed_at) == VOID
    for s in signers[:2]:
        rebond(token, bond, admin, s)
    set_market(marks={PERP: 53_300 * WAD})
    assert engine.health(victim).liquidatable
    snapshot = leaf_for(liquidator, 60 * WAD, 30 * WAD)   # the keeper's next root, signed now
    liquidate(victim, WAD, 10**30, engine.state_nonce(victim), sender=liquidator)
    size = engine.position(liquidator, PERP)
    assert engine.account(liquidator).margin_basis_timestamp == record.signed_at   # V1: void wins
    isolated_im, _ = oracle.isolated_margins([FUTURE, PERP], [WAD // 100, size])
    free = (engine.health(liquidator).equity_wad - isolated_im) // 10**12
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    trees2 = post_root([snapshot])
    leaf2, proof2 = trees2.account_proof(liquidator.address)
    with ape.reverts(PRE_SLICE):   # it would put the false root's 1/20 IM on a valid basis
        engine.apply_leaf(leaf2.as_args(), proof2, sender=liquidator)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free + 1_000 * USDC, sender=liquidator)
    bond_funds_add_up(token, bond)

"""Attacks on V21's fix, the FLOOR_RAISED mark (header bit 111): a raise-only leaf below the
account's leaf floor (the book shrank since the leaf) marks the account's header, and while
the mark is set `_new_risk_im` (withdrawals, non-reducing fills, a liquidator's check after a
slice) returns min(effective IM, the book's isolated bound at the oracle's current per-unit
rates) instead of the effective IM. A leaf that binds clears the mark. A slice of a marked book
passes on at most f x its isolated bound at the current rates and no mark: the mark is the
account's, and on a liquidator it would cap the IM its own leaf set (the first version of the
fix passed the bit on; the findings below, now held, are what that broke). The position
count now has 7 bits (104-110).
Also the owner's `pause` / `unpause`, moved from MarginEngine into MarginEngineGovernance
(reached by delegatecall).

What is attacked: whether the mark can lower an account's new-risk IM below the IM of the
honest leaf that bound it (the mark is per account, not per part of the margins), whether a
header write drops or forges bit 111 or lets the count reach it, whether the moved pause
lost an access check, and whether funds add up (the autouse check after every test). Names
say the sequence and the safe outcome; docstrings say what was measured. Real Anvil chain,
token, signed roots, market data and (for liquidations) the model's witness."""

import ape
import pytest
from conftest import WAD
from engine.conftest import ROOT, WITNESS_PARAMS, give_margin, storage_layout  # noqa: F401 - give_margin is a fixture
from eth_utils import keccak
from support.check_market import check_market

from offchain.chain.witness import liquidation_witness

from .conftest import FUTURE, PERP, succeeds
from .test_attack_isolated_cap import _isolated, _rates  # noqa: F401 - _isolated is an autouse fixture
from .test_attack_own_leaf_floor import _root_with
from .test_attack_raise_only_leaf import _reduced_long
from .test_attack_raise_only_rule import _half_book

USDC = 10**6
PRICE = 60_000 * WAD
FUTURE_PRICE = 60_500 * WAD
IM, MM = 6_000 * WAD, 3_000 * WAD        # the default per-BTC rates (and 1 BTC's leaf at them)
FLOOR_RAISED = 2**111


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, governance, oracle, verifier, leaf_for, post_root, set_market, fund, trade,
                  make_order, witness_for, liquidate, flag, market_leaf, attacker, accomplice, liquidator,
                  give_margin):  # noqa: F811
    """Deployments and session fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(scope="module")
def header_slot():
    return storage_layout(ROOT / "contracts/MarginEngine.vy")["core._header"]


def _header(engine, chain, slot, account) -> int:
    """The account's packed header word (Vyper HashMap: keccak(slot . key))."""
    key = keccak(slot.to_bytes(32, "big") + bytes.fromhex(account.address[2:].rjust(64, "0")))
    word = int.from_bytes(chain.provider.get_storage(engine.address, int.from_bytes(key, "big")), "big")
    assert word & (2**64 - 1) == engine.state_nonce(account)     # the slot is the header's
    return word


def _marked(engine, chain, slot, account) -> bool:
    return _header(engine, chain, slot, account) & FLOOR_RAISED != 0


def _count(engine, chain, slot, account) -> int:
    return (_header(engine, chain, slot, account) >> 104) & 127


def _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,  # noqa: F811
                        post_root):
    """V21's setup: the owner long 1 BTC perp on 20,000 reduced to 0.1 BTC after the keeper's
    snapshot (IM 600); the rates double, an outsider applies the pre-reduction leaf (capped:
    1,200 / 600, marked), the rates return to 6,000 / 3,000 per BTC."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    set_market(rates=_rates(2 * IM, 2 * MM))
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    set_market()
    return owner


# ------------------------------------------------------------------ the mark in the header


def test_mark__outsider_raises_a_reduced_book__bit_111_set_nonce_and_count_intact_then_a_bound_leaf_clears_it(
        engine, chain, header_slot, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,  # noqa: F811
        post_root):
    """Held. Before the raise the reduced owner's header has no mark (count 1). The outsider's
    floor-route raise (IM 1,200 / MM 600 on 0.1 BTC) sets bit 111 and nothing else: the state
    nonce is unchanged (a raise is not a trade), the count still reads 1 and the view lists the
    one position. The owner's honest leaf of the next root (IM 600) binds and clears the bit,
    leaving every other header field as it was."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    before = _header(engine, chain, header_slot, owner)
    assert before & FLOOR_RAISED == 0 and (before >> 104) & 127 == 1
    set_market(rates=_rates(2 * IM, 2 * MM))
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    after = _header(engine, chain, header_slot, owner)
    assert after == before | FLOOR_RAISED
    assert len(engine.account(owner).positions) == 1
    set_market()
    trees = post_root([leaf_for(owner, IM // 10, MM // 10)])
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=owner)
    assert _header(engine, chain, header_slot, owner) == before


def test_mark__marked_account_deposits_opens_and_closes_a_second_position_and_is_flagged_healthy__bit_kept_count_exact(
        engine, chain, header_slot, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,  # noqa: F811
        post_root):
    """Held (every header write of the fill, deposit and flag paths). The marked owner (0.1 BTC
    perp) deposits 1,000, buys 0.2 BTC of the future (new risk: count 2, the nonce +1), sells it
    back (count 1), and a flag of the healthy book reverts ("account is healthy"): after each
    step bit 111 is still set and the 7-bit count equals the positions listed. Then it sells
    its last 0.1 BTC (a reduction emptying the book: count 0, margins 0): the bit stays on the
    empty book (measured), and on a reopened 0.1 BTC the new risk reads min(pending 600, bound
    600) = the bound, so nothing is freed by the stale bit at unchanged rates."""
    owner = _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,
                                post_root)
    assert _marked(engine, chain, header_slot, owner)

    def check(n):
        assert _marked(engine, chain, header_slot, owner)
        assert _count(engine, chain, header_slot, owner) == n == len(engine.account(owner).positions)

    fund(owner, 1_000 * USDC)
    check(1)
    trade(maker, owner, FUTURE, -WAD // 5, FUTURE_PRICE)
    check(2)
    trade(maker, owner, FUTURE, WAD // 5, FUTURE_PRICE)
    check(1)
    with ape.reverts("engine: account is healthy"):
        engine.flag(owner, b"", sender=attacker)
    check(1)
    trade(maker, owner, PERP, WAD // 10, PRICE)                # sells the rest: the book empties
    check(0)
    assert engine.health(owner).im_wad == 0
    trade(maker, owner, PERP, -WAD // 10, PRICE)               # reopens 0.1 BTC
    check(1)
    h = engine.health(owner)
    assert h.im_wad == IM // 10
    engine.withdraw((h.equity_wad - IM // 10 - WAD) // 10**12, sender=owner)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(2 * USDC, sender=owner)


# ------------------------------------------------------------------ the mark carried by a slice


def _liquidator_with_bound_leaf(engine, accounts, maker, liquidator, fund, set_market, trade, give_margin, im, mm):  # noqa: F811
    """The liquidator long 1 BTC future on 50,000 (it takes: fee 60.5; V19's half book then
    funds it with 200,000 more), margined by its own leaf (IM `im`, MM `mm`) that binds at its
    current nonce."""
    fund(maker, 500_000 * USDC)
    fund(liquidator, 50_000 * USDC)
    set_market()
    trade(maker, liquidator, FUTURE, -WAD, FUTURE_PRICE)
    give_margin(liquidator, im, mm)
    assert engine.health(liquidator).im_wad == im


def _slice_of_victim(engine, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
                     give_margin, leaf_for, post_root, witness_for, mark: bool, future_rates=None):  # noqa: F811
    """V19's half book (0.5 BTC perp, margins ~9,474 / ~4,737 from the 1 BTC leaf halved; the
    root's pre-reduction leaf not applied). With `mark`, the perp's rates rise to 3 x the
    model's MM per BTC and an outsider applies that leaf: raised to the half book's bound then
    (~14,211 / ~7,105) and marked. BTC falls to 54,000 (the model shows the shortfall) and the
    liquidator takes a slice of 0.1% with the model's witness. Returns the victim, the slice
    fraction and the victim's IM and isolated bound (current rates) before the slice."""
    victim, trees, mm1 = _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade,
                                    give_margin, leaf_for, post_root, witness_for)
    if mark:
        set_market(rates=_rates(3 * mm1, 3 * mm1 // 2))
        leaf, proof = trees.account_proof(victim.address)
        engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    set_market(marks={PERP: 54_000 * WAD}, rates=future_rates)
    book = engine.account(victim).positions
    before = (engine.health(victim).im_wad,
              oracle.isolated_margins([p.instrument_id for p in book], [p.size_wad for p in book])[0])
    witness = witness_for(victim)
    tx = engine.liquidate(victim, WAD // 1_000, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    return victim, log.fraction_wad, before


def _repriced_liquidator_slices(engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator,  # noqa: F811
                                fund, set_market, trade, give_margin, leaf_for, post_root, witness_for, mark: bool):  # noqa: F811
    """The liquidator long 1 BTC future with its re-priced leaf bound (IM 18,000 / MM 9,000,
    the future's rates lagging at 6,000 / 3,000 per BTC) takes a 0.1% slice of V19's half book,
    raised and marked by an outsider if `mark`: the slice is f = 1e15 and leaves the
    liquidator unmarked either way. Returns its health."""
    _liquidator_with_bound_leaf(engine, accounts, maker, liquidator, fund, set_market, trade, give_margin,
                                3 * IM, 3 * MM)
    _victim, f, _before = _slice_of_victim(engine, oracle, verifier, accounts, maker, attacker, liquidator, fund,
                                           set_market, trade, give_margin, leaf_for, post_root, witness_for, mark=mark)
    assert f == WAD // 1_000 and not _marked(engine, chain, header_slot, liquidator)
    return engine.health(liquidator)


def _withdrawal_leaving(engine, oracle, chain, who, left_wad: int):
    """`who`'s health, its book's isolated bound at the current rates, and whether a
    withdrawal leaving `left_wad` of equity goes through (tried, then undone)."""
    h = engine.health(who)
    book = engine.account(who).positions
    bound = oracle.isolated_margins([p.instrument_id for p in book], [p.size_wad for p in book])[0]
    with chain.isolate():
        withdrew = succeeds(engine.withdraw, (h.equity_wad - left_wad) // 10**12, sender=who)
    return h, bound, withdrew


def test_mark__liquidator_with_a_bound_repriced_leaf_takes_a_tiny_slice_of_a_marked_book__its_leafs_im_still_holds_withdrawals(
        engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
        give_margin, leaf_for, post_root, witness_for):  # noqa: F811
    """Found against the first version of the fix (fixed: a slice passes on no mark). The mark
    is the account's, not the raised margins'. The liquidator long 1 BTC
    future (equity ~249,940) has its honest leaf re-priced after a vol rise bound: IM 18,000 / MM
    9,000, while the oracle's per-unit future rates still carry 6,000 / 3,000 per BTC (V22's
    lag: signers that hold the rates back behind the root). The leaf binds, so no mark:
    `_new_risk_im` is 18,000 and a withdrawal leaving ~8,000 is refused (the control below).
    It then takes a 0.1% slice (f = 1e15, 0.0005 BTC, discount ~0.4) of any marked liquidatable
    book (here V19's half book raised by an outsider; it could be its own second account's):
    the slice ORed the victim's bit 111 into its header. Measured then: its effective IM ~18,014 stayed
    stored, but new risk reads min(~18,014, its book's bound at the current rates 6,003): a
    withdrawal of 241,939.84 leaving 8,000 of equity (~10,014 below the IM of the leaf it bound;
    up to ~12,011 below it, down to the bound) goes through. Safe
    outcome: new risk keeps the IM of the leaf that bound (the bound leaf "clears the mark").
    The fix: a slice passes on no mark; from a marked book it passes on at most f x the book's
    isolated bound at the current rates as IM."""
    _repriced_liquidator_slices(engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator,
                                fund, set_market, trade, give_margin, leaf_for, post_root, witness_for, mark=True)
    h, bound, withdrew = _withdrawal_leaving(engine, oracle, chain, liquidator, 8_000 * WAD)
    print(f"marked liquidator: IM {h.im_wad / WAD:,.2f} (its leaf 18,000), bound now {bound / WAD:,.2f}, "
          f"equity {h.equity_wad / WAD:,.2f}; withdraw leaving 8,000: {withdrew}")
    assert h.im_wad > 3 * IM and bound < 2 * IM
    assert not withdrew


def test_mark__liquidator_slices_an_unmarked_book_raises_it_with_its_own_leaf_and_slices_again__its_leafs_im_still_holds(
        engine, chain, header_slot, oracle, verifier, accounts, maker, liquidator, fund, set_market, trade,
        give_margin, leaf_for, post_root, witness_for, market_leaf):  # noqa: F811
    """Found against the first version of the fix (fixed as above), no marked book needed.
    The liquidator as above (1 BTC future, its re-priced leaf
    IM 18,000 / MM 9,000 bound, future rates lagging at 6,000 / 3,000 per BTC). The victim long
    1 BTC perp on 12,000, margined by root 1 at the model's 60,000 figures (IM 2 x mm1, MM mm1,
    mm1 ~9,474); the perp's posted rates carry 1.5x the model's per unit (the liquidity term the
    keeper adds). BTC falls to 54,000 and the crash root re-prices the victim higher (IM 2.4 x
    mm1, MM 1.2 x mm1, not applied) beside the model's market leaf: the victim (equity ~6,000)
    is short by the model. The liquidator (1) takes a 0.1% slice (the victim's floor rises
    above the root's leaf), (2) applies the victim's leaf of the root: below the floor it is
    raise-only, capped at the rest's bound (~28,394 at the 1.5x rates), so IM ~22,737 (the
    leaf's) and the victim is marked, (3) takes another 0.1% slice: marked in turn. Measured then:
    victim IM 22,715.78 after it; the liquidator's IM 18,041.69 stored (its leaf's 18,000 and
    two slices), the bound of its book at the current rates 6,056.82, equity 49,940.86, and a
    withdrawal leaving 8,000 of equity (~10,042 below its IM) goes through. Cost: the two
    slices' discounts, which the liquidator itself collects (less the insurance share).
    Safe outcome: refused (its own leaf bound)."""
    _liquidator_with_bound_leaf(engine, accounts, maker, liquidator, fund, set_market, trade, give_margin,
                                3 * IM, 3 * MM)
    victim = accounts[9]
    fund(victim, 12_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)
    mm1 = check_market(verifier, witness_for(victim, raw=True)).maintenance_wad
    give_margin(victim, 2 * mm1, mm1)
    above = _rates(3 * mm1, 3 * mm1 // 2)
    set_market(marks={PERP: 54_000 * WAD}, rates=above)
    hi = 12 * mm1 // 10
    book = [(PERP, WAD)]
    trees, signed_at = _root_with(post_root, market_leaf, chain, [leaf_for(victim, 2 * hi, hi)], book)

    def slice_():
        now = [(p.instrument_id, p.size_wad) for p in engine.account(victim).positions]
        w = liquidation_witness(WITNESS_PARAMS, engine.address, now, trees, signed_at, None, None).encode()
        engine.liquidate(victim, WAD // 1_000, 10**30, engine.state_nonce(victim), w, sender=liquidator)

    assert engine.health(victim).liquidatable
    slice_()
    assert not _marked(engine, chain, header_slot, victim) and not _marked(engine, chain, header_slot, liquidator)
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)
    assert _marked(engine, chain, header_slot, victim)
    slice_()
    assert not _marked(engine, chain, header_slot, liquidator)
    h, bound, withdrew = _withdrawal_leaving(engine, oracle, chain, liquidator, 8_000 * WAD)
    print(f"self-made mark: victim IM {engine.health(victim).im_wad / WAD:,.2f}; liquidator IM {h.im_wad / WAD:,.2f}, "
          f"bound {bound / WAD:,.2f}, equity {h.equity_wad / WAD:,.2f}; withdraw leaving 8,000: {withdrew}")
    assert h.im_wad > 3 * IM and bound < 2 * IM
    assert not withdrew


def test_mark__liquidator_with_a_bound_repriced_leaf_takes_a_tiny_slice_of_an_unmarked_book__its_leafs_im_holds_withdrawals(
        engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
        give_margin, leaf_for, post_root, witness_for):  # noqa: F811
    """Held (the control of the finding above). The same liquidator (IM 18,000 bound, future
    rates lagging at 6,000 per BTC) takes the same 0.1% slice of the same half book, not
    raised (no mark): its header stays unmarked, its IM ~18,005, and a withdrawal leaving
    ~8,000 of equity is refused ("below initial margin"); one leaving ~18,100 goes through."""
    h = _repriced_liquidator_slices(engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator,
                                    fund, set_market, trade, give_margin, leaf_for, post_root, witness_for, mark=False)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw((h.equity_wad - 8_000 * WAD) // 10**12, sender=liquidator)
    engine.withdraw((h.equity_wad - h.im_wad - 100 * WAD) // 10**12, sender=liquidator)


def test_mark__liquidator_with_a_bound_leaf_rates_fall_then_a_tiny_slice_of_a_marked_book__its_leafs_im_still_holds_withdrawals(
        engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
        give_margin, leaf_for, post_root, witness_for):  # noqa: F811
    """Found against the first version of the fix (fixed as above), second form (no rate held back). The liquidator long 1 BTC future binds its leaf
    of the current root at the rates of the moment (IM 6,000 / MM 3,000: its bound). The
    future's per-unit rates then halve (3,000 / 1,500 per BTC: vol falls; honest data). Without
    a mark the leaf's 6,000 margins new risk until the next leaf. After a 0.1% slice of a marked
    book, measured then: IM 6,014.21 stored, new risk reads the bound 3,003, and a withdrawal leaving
    4,000 of equity (~2,014 below the leaf's IM; up to ~3,011 below it) goes through. Unlike the first form the figure is still above the model at
    today's inputs (the bound never is below it), so this is the escape hatch's figure reached
    a day early, through another account's mark. Safe outcome by V21's own rule (a bound leaf's
    margins are the model's, no floor raise in them): refused."""
    _liquidator_with_bound_leaf(engine, accounts, maker, liquidator, fund, set_market, trade, give_margin, IM, MM)
    half = _rates(IM // 2, MM // 2, FUTURE)
    _victim, f, _before = _slice_of_victim(engine, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market,
                                  trade, give_margin, leaf_for, post_root, witness_for, mark=True, future_rates=half)
    assert not _marked(engine, chain, header_slot, liquidator)
    h, _bound, withdrew = _withdrawal_leaving(engine, oracle, chain, liquidator, 4_000 * WAD)
    print(f"marked liquidator, rates halved: IM {h.im_wad / WAD:,.2f} (its leaf 6,000), equity "
          f"{h.equity_wad / WAD:,.2f}; withdraw leaving 4,000: {withdrew}")
    assert h.im_wad > IM
    assert not withdrew


def test_mark__liquidator_without_a_book_slices_a_marked_book__unmarked_inherits_f_times_the_current_bound_then_its_leaf_binds(
        engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
        give_margin, leaf_for, post_root, witness_for):  # noqa: F811
    """Held. A liquidator with no book of its own takes a 0.1% slice of the marked half book
    (raised at 3x the model's rates, the rates back at the defaults for the crash): it is not
    marked, and its IM is ceil(f x the victim's isolated bound at the current rates), not
    ceil(f x the raised IM), which is larger; its MM is ceil(f x the victim's MM). A leaf of
    its new book (the 0.0005 BTC perp, IM 100 / MM 50: above that bound, as a keeper's leaf
    with add-ons may be) binds: a withdrawal leaving 60 of equity is refused and one leaving
    150 goes through."""
    fund(liquidator, 10_000 * USDC)
    victim, f, (im_before, bound_before) = _slice_of_victim(
        engine, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade, give_margin,
        leaf_for, post_root, witness_for, mark=True)
    assert _marked(engine, chain, header_slot, victim) and not _marked(engine, chain, header_slot, liquidator)
    assert bound_before < im_before
    assert engine.health(liquidator).im_wad == -(-f * bound_before // WAD)
    set_market(marks={PERP: 54_000 * WAD})
    give_margin(liquidator, 100 * WAD, 50 * WAD)
    h = engine.health(liquidator)
    assert h.im_wad == 100 * WAD
    with ape.reverts("engine: below initial margin"):
        engine.withdraw((h.equity_wad - 60 * WAD) // 10**12, sender=liquidator)
    engine.withdraw((h.equity_wad - 150 * WAD) // 10**12, sender=liquidator)


def test_mark__slice_of_a_marked_book_by_an_unmarked_liquidator__victim_keeps_its_mark_liquidator_unmarked_nonces_bumped(
        engine, chain, header_slot, oracle, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade,  # noqa: F811
        give_margin, leaf_for, post_root, witness_for):  # noqa: F811
    """Held (the liquidation's two header writes). After a 0.1% slice of the marked half book
    the victim's header keeps bit 111 with its count 1 and nonce +1; the liquidator's has no
    bit, count 1 (its new perp) and nonce +1; neither count reads the bit."""
    fund(liquidator, 10_000 * USDC)
    nonces = (engine.state_nonce(liquidator),)
    victim, _f, _before = _slice_of_victim(engine, oracle, verifier, accounts, maker, attacker, liquidator, fund,
                                           set_market, trade, give_margin, leaf_for, post_root, witness_for, mark=True)
    assert _marked(engine, chain, header_slot, victim) and not _marked(engine, chain, header_slot, liquidator)
    assert engine.state_nonce(liquidator) == nonces[0] + 1
    for who in (victim, liquidator):
        assert _count(engine, chain, header_slot, who) == 1 == len(engine.account(who).positions)


# ------------------------------------------------------------------ self-marking and the escape hatch


def test_mark__owner_marks_its_own_reduced_book_at_a_rate_peak__new_risk_never_below_the_current_bound(
        engine, oracle, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """Held. The owner applies its own pre-reduction leaf at doubled rates (IM 1,200 / MM 600 on
    0.1 BTC, marked), then the rates return. Its new risk reads the bound at the current rates
    (600, the model's margin of the book held): a withdrawal leaving ~650 goes through, one
    leaving ~550 is refused; a non-reducing buy of 0.1 BTC needs the bound of 0.2 BTC (1,200)."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    set_market(rates=_rates(2 * IM, 2 * MM))
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=owner)
    set_market()
    h = engine.health(owner)
    assert h.im_wad == 1_200 * WAD
    engine.withdraw((h.equity_wad - 650 * WAD) // 10**12, sender=owner)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(100 * USDC, sender=owner)
    with ape.reverts("engine: taker below initial margin"):
        trade(maker, owner, PERP, -WAD // 10, PRICE)


def test_mark__marked_book_past_max_margin_basis_age__escape_hatch_unchanged_the_bound(
        engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root, mine):  # noqa: F811
    """Held. The marked reduced owner (IM 1,200 stored on 0.1 BTC) a day and an hour after its
    basis: new risk reads the bound at the current rates (600), as for an unmarked book; a
    withdrawal leaving ~650 goes through, one leaving ~550 is refused."""
    owner = _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,
                                post_root)
    mine(90_000)
    set_market()
    h = engine.health(owner)
    engine.withdraw((h.equity_wad - 650 * WAD) // 10**12, sender=owner)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(100 * USDC, sender=owner)


def test_mark__marked_owner_while_paused__withdrawal_against_positions_refused_reduction_at_the_mark_works(
        engine, admin, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """Held. The owner pauses the engine through the moved `pause`; the marked reduced owner's
    withdrawal against its position is refused ("pausable: contract is paused"), a flat
    account's is not, and its reduction at the mark (sell 0.05 BTC) works; after `unpause` the
    withdrawal the bound allows goes through."""
    owner = _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,
                                post_root)
    fund(attacker, 100 * USDC)
    engine.pause(sender=admin)
    with ape.reverts("pausable: contract is paused"):
        engine.withdraw(1_000 * USDC, sender=owner)
    engine.withdraw(100 * USDC, sender=attacker)
    trade(maker, owner, PERP, WAD // 20, PRICE)
    engine.unpause(sender=admin)
    engine.withdraw(1_000 * USDC, sender=owner)


# ------------------------------------------------------------------ the moved pause


@pytest.mark.parametrize("call", ["pause", "unpause"])
def test_pause__called_directly_on_governance_by_owner_or_attacker__reverts_engine_unchanged(
        engine, governance, admin, attacker, call):
    """Held. `pause` / `unpause` of MarginEngineGovernance called directly (not through the
    engine's delegatecall) revert "engine: delegatecall only" for the engine's owner and for
    an attacker: the engine's `paused` does not move (nor does the governance contract's own)."""
    if call == "unpause":
        engine.pause(sender=admin)
    before = engine.paused()
    for who in (admin, attacker):
        with ape.reverts("engine: delegatecall only"):
            getattr(governance, call)(sender=who)
    assert engine.paused() == before


def test_pause__pending_owner_and_old_owner_around_a_two_step_transfer__only_the_current_owner_pauses(
        engine, admin, keeper, attacker):
    """Held. While the transfer is pending only the old owner pauses and unpauses (the pending
    owner is refused); once accepted only the new one. Paused and Unpaused are logged from the
    engine's address (its ABI carries the governance contract's events)."""
    engine.transfer_ownership(keeper, sender=admin)
    with ape.reverts("ownable: caller is not the owner"):
        engine.pause(sender=keeper)
    tx = engine.pause(sender=admin)
    assert [log.account for log in tx.decode_logs(engine.Paused)] == [admin.address]
    assert all(log.contract_address == engine.address for log in tx.decode_logs(engine.Paused))
    engine.unpause(sender=admin)
    engine.accept_ownership(sender=keeper)
    for who in (admin, attacker):
        with ape.reverts("ownable: caller is not the owner"):
            engine.pause(sender=who)
    tx = engine.pause(sender=keeper)
    assert engine.paused() and tx.decode_logs(engine.Paused)
    with ape.reverts("ownable: caller is not the owner"):
        engine.unpause(sender=admin)
    tx = engine.unpause(sender=keeper)
    assert not engine.paused() and tx.decode_logs(engine.Unpaused)


# ------------------------------------------------------------------ the count next to the bit


def test_mark__marked_account_fills_up_to_32_positions__count_reads_32_bit_kept_33rd_refused_bound_leaf_clears_only_the_bit(
        engine, registry, chain, header_slot, admin, accounts, maker, attacker, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root):
    """Held (the 7-bit count beside bit 111 at MAX_POSITIONS). The owner raises max_positions to
    the hard bound (32) and lists 32 more BTC futures; the marked reduced owner (0.1 BTC of
    perp 1) buys 0.01 BTC of 31 of them: after every fill the count read from the header equals the
    positions listed and bit 111 stays set; at 32 the count field holds 0b0100000, bit 111
    untouched. A 33rd instrument is refused (without a reason: `_trade_side` appends it to the
    32-bound id array before its "too many positions" check; still nothing moves). An honest leaf of
    the 32-position book binds and clears the bit only (count 32, same nonce)."""
    owner = _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,
                                post_root)
    engine.set_trading_params((32, 10, 3_600, 86_400, 7_200), sender=admin)
    btc = registry.instrument(PERP).underlying
    first = registry.instrument_count() + 1
    later = chain.pending_timestamp + 90 * 86_400
    for i in range(32):
        registry.list_instrument(btc, 0, 0, later + i, sender=admin)   # futures: distinct expiries
    extra = list(range(first, first + 32))
    set_market(ids=tuple(extra[:28]))
    set_market(ids=tuple(extra[28:]) + (PERP, FUTURE, 3, 4))
    for k, iid in enumerate(extra[:31]):
        trade(maker, owner, iid, -WAD // 100, PRICE)
        assert _count(engine, chain, header_slot, owner) == k + 2 == len(engine.account(owner).positions)
        assert _marked(engine, chain, header_slot, owner)
    with ape.reverts():   # no reason: the book's 33-entry DynArray overflows before the count check
        trade(maker, owner, extra[31], -WAD // 100, PRICE)
    word = _header(engine, chain, header_slot, owner)
    assert (word >> 104) & 0xFF == 32 | 0x80
    h = engine.health(owner)
    give_margin(owner, h.im_wad // 2, h.mm_wad // 2)
    assert _header(engine, chain, header_slot, owner) == word ^ FLOOR_RAISED


def test_mark__marked_hedged_book_settles_its_future_leg__bit_and_count_kept_new_risk_at_least_the_rests_bound(
        engine, oracle, chain, header_slot, accounts, maker, attacker, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, expire_instruments, post_settlement):
    """Held (settlement's header write). The marked reduced owner (0.1 BTC perp) sells 0.1 BTC
    of the future (a hedge; count 2). Past the future's expiry its settlement price (62,000) is
    posted and anyone settles the leg: the header keeps bit 111, the count reads 1, IM grows by
    the leg's standalone rate (settlement adds IM only). With fresh marks of the perp, new risk
    reads the bound of the rest (600; the basis has aged past a day in any case, so the escape
    hatch gives the same): a withdrawal leaving ~650 goes through, one leaving ~550 is refused."""
    owner = _mark_reduced_owner(engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for,
                                post_root)
    trade(maker, owner, FUTURE, WAD // 10, FUTURE_PRICE)          # the owner sells 0.1 BTC of the future
    assert _count(engine, chain, header_slot, owner) == 2
    im_before = engine.health(owner).im_wad
    expire_instruments()
    post_settlement(FUTURE, 62_000 * WAD)
    engine.settle(owner, FUTURE, sender=attacker)
    assert _marked(engine, chain, header_slot, owner) and _count(engine, chain, header_slot, owner) == 1
    assert engine.health(owner).im_wad > im_before
    set_market(ids=(PERP,))
    assert tuple(oracle.isolated_margins([PERP], [WAD // 10]))[0] == IM // 10
    h = engine.health(owner)
    engine.withdraw((h.equity_wad - 650 * WAD) // 10**12, sender=owner)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(100 * USDC, sender=owner)

"""Attacks on the raise-only rule of `_apply_leaf` as it stands after V18's fix (below the
leaf floor a leaf applies raise-only only when the oracle has a verifier): what a raised MM
still moves once the verifier caps a liquidation's slice and discount at the model's MM.

The slice and the discount of one liquidation use min(applied MM, model MM); whether the
liquidation ends the discount clock (`Unflagged`) compares the rest's equity with the
applied MM scaled by 1 - f. Names say the sequence and the safe outcome. Real Anvil chain,
token, signed roots and witnesses."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture
from support.check_market import check_market

from offchain.chain.verifier import verifier_config

from .conftest import FUTURE, LIQUIDATION, PERP, succeeds
from .test_attack_raise_only_leaf import _deploy_first, _post, _rates_above, bare  # noqa: F401 - fixtures

USDC = 10**6
PRICE = 60_000 * WAD
WINDOW = 7_200            # max_liquidation_price_age of the shared TRADING parameters


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


# ------------------------------------------------------------------ no verifier: the ring route


def test_no_verifier__two_leg_book_closes_a_leg_then_its_leaf_leaves_the_ring__raise_only_raises_nothing_binding_gave_the_same(
        bare, maker, accounts, attacker):  # noqa: F811
    """Held (claim: without a verifier the raise-only route never exceeds what binding gives).
    A reduction of a multi-position book raises no leaf floor, but it is new risk: the closing
    trade's standalone rates are pending (+6,000 / +3,000 for 1 future). The owner long 1 perp
    and 1 future (leaf IM 12,000, MM 6,000 applied); the keeper's next root holds the same leaf
    of the two-leg book; the owner closes the future (the leaf floor stays), then eight 1-wei
    perp buys push the leaf's nonce out of the ring. Before the eight the leaf binds through the
    ring to IM 18,000, MM 9,000 (the leaf's plus the closing trade's growth: the held figures,
    to the wei); after them, out of the ring, it would apply raise-only and is refused ("leaf's
    nonce not recorded": it raises neither, the held MM already carries the closing trade's
    bound). Nobody's apply makes the book liquidatable."""
    d = bare
    e = d.engine
    owner = accounts[9]
    d.fund(maker, 1_000_000 * USDC)
    d.fund(owner, 40_000 * USDC)
    d.post_marks()
    d.trade(owner, maker, PERP, WAD, PRICE)                  # the owner makes both legs: no fee
    d.trade(owner, maker, FUTURE, WAD, 60_500 * WAD)
    d.give_margin(owner, 12_000 * WAD, 6_000 * WAD)
    root = _post(d, [d.leaf(owner, 12_000 * WAD, 6_000 * WAD)])
    floor = e.pending_total(owner) >> 192
    d.trade(owner, maker, FUTURE, -WAD, 60_500 * WAD)        # closes the future: n == 2, new risk
    closed = e.health(owner)
    assert (closed.im_wad, closed.mm_wad) == (18_000 * WAD, 9_000 * WAD)
    assert e.pending_total(owner) >> 192 == floor            # a multi-position reduction raises no floor
    snap = d.chain.snapshot()
    e.apply_leaf(*root.apply_args(owner), sender=attacker)       # bound through the ring
    bound = e.health(owner)
    d.chain.restore(snap)
    assert (bound.im_wad, bound.mm_wad) == (closed.im_wad, closed.mm_wad)
    for _ in range(8):
        d.trade(owner, maker, PERP, 1, PRICE)                # 1 wei bought, 8 times: nonce out of the ring
    held = e.health(owner)
    with ape.reverts("engine: leaf's nonce not recorded"):
        e.apply_leaf(*root.apply_args(owner), sender=attacker)
    assert e.health(owner) == held and not held.liquidatable


# ------------------------------------------------------------------ the registration moment


def test_registration__root_posted_before_the_verifier__below_floor_leaf_refused_before_raises_after_never_liquidates_without_witness(
        bare, project, admin, maker, accounts, attacker, liquidator):  # noqa: F811
    """Held (RiskOracle.set_verifier, irrevocable): the owner long 1 BTC perp on 9,000 on a
    deployment without a verifier (IM 6,000, MM 3,000 applied from root 1); the keeper's next
    root holds that leaf; the owner sells 0.9 BTC (margins 600 / 300, floor up) and withdraws
    8,000 (equity ~886); the signers' per-unit rates then rise to 20,000 / 10,000 (isolated
    bound of 0.1 BTC: 2,000 / 1,000). Before the registration the root's leaf is refused
    ("older than the book's last reduction": no floor-route raise without a verifier). The
    oracle's owner registers a verifier; the same root's leaf (posted before it) now applies
    raise-only up to the book's isolated bound: IM 2,000, MM 1,000 on 0.1 BTC, liquidatable by
    the applied MM, but in the very next transaction a liquidation or a flag without the
    model's witness is refused ("witness for another book"): no block lets the raise and the
    MM-alone rule meet. There is no way back (a zero verifier is refused)."""
    d = bare
    e = d.engine
    owner = accounts[9]
    d.fund(maker, 1_000_000 * USDC)
    d.fund(owner, 9_000 * USDC)
    d.fund(liquidator, 200_000 * USDC)
    d.post_marks()
    d.trade(maker, owner, PERP, -WAD, PRICE)
    d.give_margin(owner, 6_000 * WAD, 3_000 * WAD)
    root = _post(d, [d.leaf(owner, 6_000 * WAD, 3_000 * WAD)])
    d.trade(maker, owner, PERP, 9 * WAD // 10, PRICE)
    e.withdraw(8_000 * USDC, sender=owner)                  # ~886 left on 0.1 BTC: three times its MM
    d.post_marks(rates={PERP: (20_000 * WAD, 20_000 * WAD, 10_000 * WAD, 10_000 * WAD)})
    with ape.reverts("engine: leaf older than the book's last reduction"):
        e.apply_leaf(*root.apply_args(owner), sender=attacker)
    generator, rows = verifier_config(WITNESS_PARAMS)
    v = project.ScenarioVerifier.deploy(d.oracle, PARAMS_HASH, generator, rows, sender=admin)
    d.oracle.set_verifier(v, sender=admin)
    e.apply_leaf(*root.apply_args(owner), sender=attacker)
    h = e.health(owner)
    assert (h.im_wad, h.mm_wad) == (2_000 * WAD, 1_000 * WAD) and h.liquidatable
    before = e.account(owner)
    with ape.reverts("engine: witness for another book"):
        e.liquidate(owner, WAD, 10**30, e.state_nonce(owner), b"", sender=liquidator)
    with ape.reverts("engine: witness for another book"):
        e.flag(owner, b"", sender=liquidator)
    assert e.account(owner) == before
    assert not succeeds(d.oracle.set_verifier, "0x" + "00" * 20, sender=admin)


def _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
               leaf_for, post_root, witness_for):
    """The victim long 1 BTC perp on 6,530 (it makes: no fee), margined at the model's MM
    (~9,474 at 60,000); the keeper's next root holds that leaf, not applied; the victim sells
    half at the mark (taker fee 30): margins halve and the leaf floor rises."""
    victim = accounts[9]
    fund(victim, 6_530 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)
    mm1 = check_market(verifier, witness_for(victim, raw=True)).maintenance_wad
    give_margin(victim, 2 * mm1, mm1)
    trees = post_root([leaf_for(victim, 2 * mm1, mm1)])
    trade(maker, victim, PERP, WAD // 2, PRICE)
    return victim, trees, mm1


def _discount_bps(log, model: int) -> float:
    """The discount's rate in bps of the slice's MM (f x the model's MM)."""
    return log.discount_wad * 10_000 * WAD / (log.fraction_wad * model)


def _two_liquidations(engine, verifier, victim, liquidator, set_market, witness_for, mine, chain, between=None,
                      second_mark=50_000 * WAD):
    """BTC falls to 54,000 (the half book is short by the model too): a capped slice; then,
    ~1h56 later, BTC falls to 50,000 and the rest is short by the model again: a second slice.
    The two Liquidation logs, the model's MM at each, and the clock after the first."""
    set_market(marks={PERP: 54_000 * WAD})
    witness = witness_for(victim)
    model1 = check_market(verifier, witness).maintenance_wad
    assert engine.health(victim).equity_wad < model1
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    [first] = tx.decode_logs(engine.Liquidation)
    cleared = bool(tx.decode_logs(engine.Unflagged))
    since = engine.account(victim).liquidatable_since
    if between:
        between()
    mine(WINDOW - 240)
    set_market(marks={PERP: second_mark})
    witness = witness_for(victim)
    model2 = check_market(verifier, witness).maintenance_wad
    equity = engine.health(victim).equity_wad
    assert 0 < equity < model2
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    [second] = tx.decode_logs(engine.Liquidation)
    return first, model1, cleared, since, second, model2, equity


@pytest.mark.xfail(strict=True, reason="V20: a raise-only MM above the model keeps the discount clock running "
                                       "after a slice that restores the book by the model: the next shortfall "
                                       "within max_liquidation_price_age is liquidated at the grown discount")
def test_raise_only__outsider_raises_mm_then_a_slice_restores_the_book__clock_cleared_next_slice_at_the_base_discount(
        engine, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, witness_for, mine, chain):
    """V20 (medium, with a verifier). The victim's half book (0.5 BTC perp, applied MM ~4,737,
    the model's) has the keeper's root leaf of the 1 BTC book above it. With the signers'
    isolated rates twice the model's (the half book's isolated bound is then the leaf's, so the
    raise is not capped) an outsider applies that leaf raise-only (below the floor; a verifier
    is registered): MM ~9,474 on 0.5 BTC.
    BTC falls to 54,000; a liquidator takes the slice the model's MM caps (equity back to
    model x 1.1 on the rest, base discount 10%): the model calls the rest healthy, but the
    engine compares the rest's equity with the raised MM x (1 - f), finds it short, and keeps
    the clock running (no Unflagged). Nobody can clear it (a flag needs the rest's equity to
    cover its isolated bound, which no book margined at the model near its MM does). BTC
    falls to 50,000 1h56 later and the rest is short by the model again: the second slice's
    discount is base + slope x 1h56 (~19.7% of the slice's MM), where a book whose first
    slice ended its episode pays the base 10% (the next test). The liquidator who raised the
    MM earns the difference; the same holds after any honest MM above the model (pending
    growth), but the raise lets anyone put it there. Safe outcome: the slice clears the clock
    when the rest's equity covers the model's MM x (1 - f) (the MM the slice was cut on), and
    the next slice pays the base discount."""
    victim, trees, mm1 = _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade,
                                    give_margin, leaf_for, post_root, witness_for)
    _rates_above(set_market, 2 * mm1, mm1)                      # isolated rates above the model: no cap
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)   # raise-only: below the floor
    assert engine.health(victim).mm_wad == mm1
    first, model1, cleared, since, second, model2, equity = _two_liquidations(
        engine, verifier, victim, liquidator, set_market, witness_for, mine, chain)
    base = LIQUIDATION[0]
    print(f"V20: first slice f {first.fraction_wad / WAD:.4f} at {_discount_bps(first, model1):,.0f} bps; "
          f"clock cleared {cleared} (since {since}); second slice f {second.fraction_wad / WAD:.4f} at "
          f"{_discount_bps(second, model2):,.0f} bps, discount {second.discount_wad / WAD:,.2f} "
          f"(base: {base * second.fraction_wad // 10_000 * model2 // WAD / WAD:,.2f}), equity {equity / WAD:,.2f}")
    # the safe outcome: the first slice ends the episode; the second pays the base discount
    assert cleared
    assert second.discount_wad == min(base * second.fraction_wad // 10_000 * model2 // WAD, equity)


@pytest.mark.xfail(strict=True, reason="V20: a long margined before a fall (leaf MM above the model at the "
                                       "lower marks): the slice restores it by the model but keeps the clock "
                                       "running; the next shortfall within the window pays the grown discount")
def test_clock__long_margined_before_a_fall_restored_by_a_slice__clock_cleared_next_slice_at_the_base_discount(
        engine, verifier, accounts, maker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, witness_for, mine, chain):
    """V20 without any raise: the same half book and prices, nobody applying the root's leaf of
    the 1 BTC book. The applied MM (~4,737, the model's at 60,000, halved by the reduction)
    is above the model's at 54,000 (~4,263): the first slice is cut on the model's MM and
    restores the rest by it, but the rest's equity is below the applied MM x (1 - f), so the
    clock keeps running (no Unflagged) and the second shortfall 1h56 later pays ~1,966 bps of
    the slice's MM (259.28 of the rest's 1,939.16 equity) where the base 1,000 bps gives
    131.88. Any long liquidated after a fall on a leaf from before it is in this case. Safe
    outcome: the first slice clears the clock; the second pays the base discount."""
    victim, _trees, _mm1 = _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade,
                                      give_margin, leaf_for, post_root, witness_for)
    first, model1, cleared, since, second, model2, equity = _two_liquidations(
        engine, verifier, victim, liquidator, set_market, witness_for, mine, chain)
    base = LIQUIDATION[0]
    print(f"V20 honest MM: first slice at {_discount_bps(first, model1):,.0f} bps, cleared {cleared}; second at "
          f"{_discount_bps(second, model2):,.0f} bps, discount {second.discount_wad / WAD:,.2f}")
    # the safe outcome
    assert cleared and since == 0
    assert second.discount_wad == min(base * second.fraction_wad // 10_000 * model2 // WAD, equity)


def test_clock__rest_left_flagged_by_a_slice__owner_deposits_to_its_applied_mm_and_flags__next_slice_at_base(
        engine, verifier, accounts, maker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, witness_for, mine, chain):
    """Held, V20's only remedy (its name: what holds): the rest of the book (0.36 BTC perp at 54,000) has equity
    3,381.02, the model's MM x 1.1 (3,073.65), below the applied 3,415.17 and below its isolated
    bound at the witness leaf's MM rate, 3,462.95: the owner's fraction-0 call with a witness
    showing no shortfall is refused ("equity below the isolated bound"). Once the owner
    deposits up to the applied MM (34.15 and 1 unit) `flag` clears the clock (Unflagged: a
    book healthy by its applied MM) and the second shortfall pays the base discount. The remedy
    costs the owner a deposit it does not owe by the model, and a watch of its own clock."""
    victim, _trees, _mm1 = _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade,
                                      give_margin, leaf_for, post_root, witness_for)
    refused, cleared_by_flag = [], []

    def clear():
        w = witness_for(victim, raw=True)
        [size] = [p.size_wad for p in engine.account(victim).positions]
        bound = (abs(size) * w.leaves[0].mm_long_wad + WAD - 1) // WAD
        equity = engine.health(victim).equity_wad
        assert equity < bound                                    # V5's rule cannot clear it
        refused.append(not succeeds(engine.liquidate, victim, 0, 0, engine.state_nonce(victim), w.encode(),
                                    sender=victim))
        applied = engine.health(victim).mm_wad
        fund(victim, (applied - equity) // 10**12 + 1)             # healthy by the applied MM: flag clears
        tx = engine.flag(victim, w.encode(), sender=victim)
        cleared_by_flag.append(bool(tx.decode_logs(engine.Unflagged)))

    first, model1, cleared, since, second, model2, equity = _two_liquidations(
        engine, verifier, victim, liquidator, set_market, witness_for, mine, chain, between=clear,
        second_mark=49_500 * WAD)
    base = LIQUIDATION[0]
    assert not cleared and since != 0 and refused == [True] and cleared_by_flag == [True]
    assert second.discount_wad == min(base * second.fraction_wad // 10_000 * model2 // WAD, equity)


def test_raise_only__outsider_raises_a_half_book_then_it_is_liquidated__liquidator_inherits_no_more_than_the_models_margins(
        engine, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, witness_for):
    """V19 carried by a slice, fixed. The half book (0.5 BTC perp, margins ~9,474 / ~4,737: the
    halved 1 BTC leaf) with the signers' isolated rates at the model's one-unit margins (what
    the keeper posts for a perp). An outsider applies the root's leaf of the 1 BTC book: below
    the floor it counts only up to the half book's isolated bound, the margins held, so it
    raises nothing and is refused. Liquidated at 54,000 with the witness, the liquidator (no
    book before) inherits ceil(f x IM), ceil(f x MM) of the victim's own margins. Before the
    cap the apply put the 1 BTC book's margins on the half and the liquidator inherited twice
    those (its withdrawals held against an IM twice its slice's, and a liquidator with equity
    between the two refused: "liquidator below initial margin")."""
    victim, trees, mm1 = _half_book(engine, verifier, accounts, maker, liquidator, fund, set_market, trade,
                                    give_margin, leaf_for, post_root, witness_for)
    set_market(rates={PERP: (2 * mm1, 2 * mm1, mm1, mm1)})
    own = engine.health(victim)
    leaf, proof = trees.account_proof(victim.address)
    with ape.reverts("engine: leaf older than the book's last reduction"):
        engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    set_market(marks={PERP: 54_000 * WAD})
    witness = witness_for(victim)
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    f = log.fraction_wad
    got = engine.health(liquidator)
    assert got.im_wad == -(-own.im_wad * f // WAD) and got.mm_wad == -(-own.mm_wad * f // WAD)


def _reduced_maker_quoting(engine, owner, maker, fund, set_market, trade, give_margin, leaf_for, post_root,  # noqa: F811
                           make_order):
    """The owner long 1 BTC perp (IM 6,000 applied; the next root, posted, holds that leaf),
    then sells 0.9 BTC (taker fee 54) and withdraws down to ~5,000 of equity on 0.1 BTC,
    quoting a resting buy of 0.5 BTC at the mark. Returns (the root's trees, order, signature)."""
    fund(owner, 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(owner, maker, PERP, WAD, PRICE)
    give_margin(owner, 6_000 * WAD, 3_000 * WAD)
    trees = post_root([leaf_for(owner, 6_000 * WAD, 3_000 * WAD)])
    trade(maker, owner, PERP, 9 * WAD // 10, PRICE)
    engine.withdraw(14_946 * USDC, sender=owner)
    order, sig = make_order(owner, PERP, True, WAD // 2, PRICE, order_nonce=91)
    return trees, order, sig


def test_raise_only__outsider_raises_a_reduced_makers_im__its_resting_buy_still_fills(
        engine, verifier, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root,  # noqa: F811
        make_order):
    """V19 beyond withdrawals, fixed: the raised IM would be the IM every new-risk fill must
    keep. The owner long 1 BTC perp (IM 6,000 applied; the keeper's next root holds that leaf)
    sells 0.9 BTC (IM 600) and withdraws down to ~5,000 of equity, quoting a resting buy of 0.5
    BTC at the mark (IM after: 600 + 3,000 = 3,600, covered). An outsider's apply of the root's
    leaf of the 1 BTC book counts only up to the isolated bound of the 0.1 BTC held (600) and
    is refused; the buy fills. Before the cap the apply put IM 6,000 on the book and the fill
    was refused ("maker below initial margin": 9,000 > ~5,000) until a leaf bound again."""
    owner = accounts[9]
    trees, order, sig = _reduced_maker_quoting(engine, owner, maker, fund, set_market, trade, give_margin,
                                               leaf_for, post_root, make_order)
    leaf, proof = trees.account_proof(owner.address)
    with ape.reverts("engine: leaf older than the book's last reduction"):
        engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    engine.fill(order.as_args(), sig, WAD // 2, sender=maker)
    assert engine.position(owner, PERP) == 6 * WAD // 10

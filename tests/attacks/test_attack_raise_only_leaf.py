"""Attacks on the raise-only rule of `_apply_leaf` (the fix of SECURITY.md V16): a leaf of the
engine's current root at an older state nonce that cannot be bound to the book (below the
account's leaf floor, out of the nonce ring, or not the ring's record) still applies, raising
IM and MM to the larger of the held and the leaf's, keeping the basis and the counters.

Anyone may apply any account's leaf, and a leaf below the floor is by definition one of a
book that has shrunk since (a liquidation slice, a reduction of a one-position book, a book
emptied and reopened): raise-only puts the margins of the larger book back on the smaller one.
Without a registered verifier the applied MM alone decides a liquidation (SECURITY.md,
residual risks: the witness rule is opt-in per deployment, `scripts/deploy.py` registers none
by default), so that MM liquidated a book that is healthy (V18, fixed: without a verifier a
leaf below the floor changes nothing). With the verifier the model refuses those liquidations,
and the raise stops at the isolated bound of the book held (V19: the larger book's IM held the
reduced book's withdrawals). Names say the sequence and the safe outcome. Real Anvil chain, token, signed roots and (where registered) witnesses."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture
from support.check_market import check_market

from offchain.chain.eip712 import Domain
from offchain.chain.orders import EngineDomain
from offchain.chain.witness import liquidation_witness

from .conftest import FUTURE, LIQUIDATION, PERP, Desk, deploy_engine, succeeds
from .test_attack_own_leaf_floor import _root_with

USDC = 10**6
PRICE = 60_000 * WAD
FUTURE_PRICE = 60_500 * WAD
IM, MM = 6_000 * WAD, 3_000 * WAD        # the signers' leaf of 1 BTC perp at the default rates


def _rates_above(set_market, im_per_btc, mm_per_btc, marks=None):
    """Posts per-unit perp rates of twice `im_per_btc` / `mm_per_btc` (the signers' isolated
    rates, above the model as a hedged book's isolated bound is above its portfolio margin),
    so that a raise of half the book or more to those figures is not capped."""
    set_market(marks=marks, rates={PERP: (2 * im_per_btc, 2 * im_per_btc, 2 * mm_per_btc, 2 * mm_per_btc)})


@pytest.fixture(scope="module")
def bare(project, admin, token, registry, signers, chain, local_keys, keeper):
    """A deployment whose oracle has no verifier (`scripts/deploy.py` without `--witness`):
    its own RiskOracle (same signers, 2 of 3), engine, extension and governance on the shared
    token and registry. The applied MM alone decides a liquidation."""
    oracle = project.RiskOracle.deploy(registry, [s.address for s in signers], 2, PARAMS_HASH, 2_000, sender=admin)
    engine = deploy_engine(project, admin, token, oracle, registry)
    assert oracle.verifier() == "0x" + "00" * 20
    return Desk(engine, token, oracle, chain, Domain(chain_id=chain.chain_id, verifying_contract=oracle.address),
                EngineDomain(chain_id=chain.chain_id, verifying_contract=engine.address), signers, local_keys,
                keeper, registry=registry)


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(bare, engine, extension, oracle, verifier, leaf_for, post_root, set_market, fund, trade,
                  make_order, witness_for, liquidate, flag, give_margin):  # noqa: F811
    """Deployments and session fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def _post(d: Desk, leaves):
    """The engine's next root over `leaves`, posted (not applied)."""
    d.mine(1)
    root = d.root(leaves)
    d.oracle.post_root(*root.post_args(), sender=d.poster)
    return root


def _discounts(engine, receipt) -> list[int]:
    return [int(log.discount_wad) for log in receipt.decode_logs(engine.Liquidation)]


def _long_one_btc(d: Desk, maker, owner, cash_units: int):
    """`owner` long 1 BTC perp at 60,000 against `maker`, margined by a root's leaf (IM 6,000,
    MM 3,000: the default per-unit rates) applied at once, as the keeper margins a book."""
    d.fund(maker, 1_000_000 * USDC)
    d.fund(owner, cash_units)
    d.post_marks()
    d.trade(maker, owner, PERP, -WAD, PRICE)
    d.give_margin(owner, IM, MM)


def _cascade(d: Desk, root, victim, liquidator, rounds: int = 60) -> list[int]:
    """Apply the victim's leaf of the current root (anyone may; raise-only once it cannot
    bind), liquidate it (whole book requested, the engine caps the slice), and repeat while the
    book is liquidatable. The discounts paid."""
    e = d.engine
    paid = []
    for _ in range(rounds):
        if not e.account(victim).positions:
            break
        succeeds(e.apply_leaf, *root.apply_args(victim), sender=liquidator)   # refused once it raises nothing
        if not e.health(victim).liquidatable:
            break
        paid += _discounts(e, e.liquidate(victim, WAD, 10**30, e.state_nonce(victim), b"", sender=liquidator))
    return paid


def _one_slice_only(d: Desk, root, victim, liquidator, label: str, equity: int):
    """The first (capped) slice restores the book; then `_cascade`. The safe outcome: one
    slice, one discount, the rest of the book and its equity stay the victim's."""
    e = d.engine
    first = _discounts(e, e.liquidate(victim, WAD, 10**30, e.state_nonce(victim), b"", sender=liquidator))
    assert e.account(victim).positions and not e.health(victim).liquidatable   # restored
    rest = d.equity(victim)
    paid = first + _cascade(d, root, victim, liquidator)
    print(f"{label}: {len(paid)} slices, discounts {sum(paid) / WAD:,.2f} of equity {equity / WAD:,.2f}; "
          f"first slice {first[0] / WAD:,.2f}; left {d.equity(victim) / WAD:,.2f}")
    assert len(paid) == 1
    assert d.equity(victim) == rest


# ------------------------------------------------------------------ V18: no verifier


def test_raise_only__liquidator_reapplies_the_victims_pre_slice_leaf_after_each_slice_without_a_verifier__one_slice_only(
        bare, maker, accounts, liquidator):
    """V18 (high, deployments without a verifier). The victim is long 1 BTC perp on 9,000,
    margined by root 1 (IM 6,000, MM 3,000). The keeper's next root holds the victim's leaf at
    its current nonce, the same margins (the book did not change), and nobody applies it.
    BTC falls to 54,000: equity 2,940 < MM 3,000, a real shortfall. A liquidator takes the
    capped slice (f ~0.12: equity back to MM x 1.1 on the rest, discount ~36) and the slice
    raises the victim's leaf floor. The root's leaf is now below the floor, so it applies
    raise-only, and the victim's basis (root 1's) is older than the root, so it applies again
    after every slice: MM goes back to 3,000 on the rest, which is liquidatable again, and so on.
    Measured: ~25 slices in a row take the whole book and ~2,900 of the victim's 2,940 in
    discounts (the liquidator keeps 80%, the insurance fund 20%), where one slice and ~36 was
    due. Safe outcome: after the first slice the leaf of the book before it puts no margin back
    (the victim keeps what the first slice left it)."""
    d = bare
    e = d.engine
    victim = accounts[9]
    _long_one_btc(d, maker, victim, 9_000 * USDC)
    d.fund(liquidator, 200_000 * USDC)
    root = _post(d, [d.leaf(victim, IM, MM)])                 # the keeper's next root: not applied
    d.post_marks(marks={PERP: 54_000 * WAD})
    equity = d.equity(victim)
    assert 0 < equity < MM and e.health(victim).liquidatable
    _one_slice_only(d, root, victim, liquidator, "V18 cascade", equity)


def test_raise_only__outsider_applies_a_reduced_books_pre_reduction_leaf_without_a_verifier__not_liquidatable(
        bare, maker, accounts, attacker):
    """V18, the griefing route (deployments without a verifier). The owner is long 1 BTC perp
    on 9,000 (IM 6,000, MM 3,000 applied from root 1); the keeper's next root holds its leaf
    of that book. The owner then sells 0.9 BTC at the mark (a reduction of a one-position book:
    margins scale to IM 600, MM 300, the leaf floor rises) and withdraws 6,000, keeping ~2,886
    of equity on 0.1 BTC: ten times its MM. An outsider applies the owner's leaf of the current
    root: below the floor, it applies raise-only and MM is 3,000 again on 0.1 BTC. The book is
    liquidatable; the outsider liquidates it, applies the leaf again after each slice (the basis
    is root 1's, older than the root) and takes the whole book: the owner loses ~2,880 of ~2,886
    in discounts. Safe outcome: the leaf of the 1 BTC book puts no margin on the 0.1 BTC book
    (it is not liquidatable)."""
    d = bare
    e = d.engine
    owner = accounts[9]
    _long_one_btc(d, maker, owner, 9_000 * USDC)
    d.fund(attacker, 200_000 * USDC)
    root = _post(d, [d.leaf(owner, IM, MM)])
    d.trade(maker, owner, PERP, 9 * WAD // 10, PRICE)       # the owner sells 0.9 BTC at the mark
    e.withdraw(6_000 * USDC, sender=owner)
    assert not e.health(owner).liquidatable
    equity = d.equity(owner)
    # below the floor and no verifier: the leaf of the 1 BTC book changes nothing
    with ape.reverts("engine: leaf older than the book's last reduction"):
        e.apply_leaf(*root.apply_args(owner), sender=attacker)
    h = e.health(owner)
    paid = _cascade(d, root, owner, attacker)
    print(f"V18 griefing: MM {h.mm_wad / WAD:,.2f} on 0.1 BTC, equity {equity / WAD:,.2f}; "
          f"{len(paid)} slices, discounts {sum(paid) / WAD:,.2f}; left {d.equity(owner) / WAD:,.2f}")
    # the safe outcome
    assert not h.liquidatable
    assert d.equity(owner) == equity


def test_raise_only__hedged_books_pre_slice_leaf_reapplied_after_each_slice_without_a_verifier__one_slice_only(
        bare, maker, accounts, liquidator):
    """V18 on a hedged book, the case a cap of the raise at the book's isolated bound does not
    close: the victim is long 1 BTC perp and short 1 BTC future, margined by the signers' hedged
    figures (IM 1,000, MM 500; the isolated bound is 12,000 / 6,000), and withdraws down to
    ~1,050. The keeper's next root holds the same leaf, not applied. The future's mark rises
    600 over the perp's: equity ~450 < MM 500. The first slice (f 0.2, discount 10) restores
    the rest; the leaf re-applied raise-only puts MM 500 back on it (a cap at the rest's
    isolated bound, 4,800, would not stop it), and the cascade takes the book and the equity.
    Safe outcome: one slice, the rest kept."""
    d = bare
    e = d.engine
    victim = accounts[9]
    d.fund(maker, 1_000_000 * USDC)
    d.fund(victim, 20_000 * USDC)
    d.fund(liquidator, 200_000 * USDC)
    d.post_marks()
    d.trade(victim, maker, PERP, WAD, PRICE)                  # the victim makes both legs: no fee
    d.trade(victim, maker, FUTURE, -WAD, FUTURE_PRICE)
    d.give_margin(victim, 1_000 * WAD, 500 * WAD)
    e.withdraw(18_950 * USDC, sender=victim)
    root = _post(d, [d.leaf(victim, 1_000 * WAD, 500 * WAD)])
    d.post_marks(marks={FUTURE: FUTURE_PRICE + 600 * WAD})
    equity = d.equity(victim)
    assert 0 < equity < 500 * WAD and e.health(victim).liquidatable
    _one_slice_only(d, root, victim, liquidator, "V18 hedged cascade", equity)


def test_raise_only__leaf_applied_bound_before_the_slice__not_reapplied_after_it_without_a_verifier(
        bare, maker, accounts, liquidator):
    """What holds of V18's sequence: when the victim's leaf of the current root was applied
    (bound) before the slice, its basis is that root's time and the same leaf is refused after
    the slice ("not newer than margin basis"): one slice, the rest of the book kept. The
    cascade needs a leaf of the current root that nobody applied before the first slice."""
    d = bare
    e = d.engine
    victim = accounts[9]
    _long_one_btc(d, maker, victim, 9_000 * USDC)
    d.fund(liquidator, 200_000 * USDC)
    root = _post(d, [d.leaf(victim, IM, MM)])
    e.apply_leaf(*root.apply_args(victim), sender=liquidator)
    d.post_marks(marks={PERP: 54_000 * WAD})
    e.liquidate(victim, WAD, 10**30, e.state_nonce(victim), b"", sender=liquidator)
    rest = d.equity(victim)
    assert e.account(victim).positions and not e.health(victim).liquidatable
    assert not succeeds(e.apply_leaf, *root.apply_args(victim), sender=liquidator)
    assert d.equity(victim) == rest and not e.health(victim).liquidatable


# ------------------------------------------------------------------ with the verifier


def test_raise_only__pre_slice_leaf_reapplied_after_a_slice_with_a_verifier__the_restored_book_is_not_liquidated_again(
        engine, verifier, accounts, maker, liquidator, fund, set_market, trade, give_margin, leaf_for, post_root,  # noqa: F811
        market_leaf, witness_for, chain):
    """V18's cascade where the oracle has a verifier: the victim's leaf of the current root
    (the model's MM, ~8,527 on 1 BTC perp at 54,000) is applied raise-only after the first
    slice (the signers' isolated rates are twice the model's, so the rest's isolated bound does
    not cap it) and makes the rest liquidatable by the applied MM again, but the witness
    re-prices the rest (its model MM scales by 1 - f, equity covers it x 1.1): "no shortfall",
    nothing moves. One slice, one discount. (The rates post re-signs the marks after the
    slice's root, so the witness is against the signers' next root, as new as the marks, as
    the engine requires.)"""
    victim = accounts[9]
    fund(victim, 14_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)                    # the victim makes: long 1 BTC, no fee
    set_market(marks={PERP: 54_000 * WAD})
    mm = check_market(verifier, witness_for(victim, raw=True)).maintenance_wad
    give_margin(victim, 2 * mm, mm)                           # the signers' honest leaf, applied
    book = [(p.instrument_id, p.size_wad) for p in engine.account(victim).positions]
    trees, signed_at = _root_with(post_root, market_leaf, chain, [leaf_for(victim, 2 * mm, mm)], book)
    assert engine.health(victim).equity_wad < mm
    engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim),
                     liquidation_witness(WITNESS_PARAMS, engine.address, book, trees, signed_at, None, None).encode(),
                     sender=liquidator)
    assert not engine.health(victim).liquidatable
    _rates_above(set_market, 2 * mm, mm, marks={PERP: 54_000 * WAD})
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=liquidator)  # raise-only: below the floor the slice raised
    assert engine.health(victim).mm_wad == mm and engine.health(victim).liquidatable
    before = engine.account(victim)
    rest = [(p.instrument_id, p.size_wad) for p in before.positions]
    fresh, fresh_at = _root_with(post_root, market_leaf, chain, [leaf_for(victim, 2 * mm, mm)], rest)
    witness = liquidation_witness(WITNESS_PARAMS, engine.address, rest, fresh, fresh_at, None, None).encode()
    with ape.reverts("engine: witness scenarios show no shortfall"):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    with ape.reverts("engine: witness scenarios show no shortfall"):
        engine.flag(victim, witness, sender=liquidator)
    assert engine.account(victim) == before


def _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """The owner long 1 BTC perp on 20,000 (it makes: no fee), margined by root 1 (IM 6,000,
    MM 3,000); the keeper's next root holds its leaf of that book; then the owner sells 0.9 BTC
    at the mark (taker fee 54): margins scale to IM 600, MM 300, the leaf floor rises."""
    owner = accounts[9]
    fund(owner, 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(owner, maker, PERP, WAD, PRICE)
    give_margin(owner, IM, MM)
    trees = post_root([leaf_for(owner, IM, MM)])
    trade(maker, owner, PERP, 9 * WAD // 10, PRICE)
    assert engine.health(owner).im_wad == IM // 10
    return owner, trees


def test_raise_only__outsider_applies_a_reduced_books_pre_reduction_leaf__capped_at_its_isolated_bound_nothing_held(
        engine, oracle, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """V19, fixed. After the reduction (equity 19,946, IM 600 on 0.1 BTC) an outsider applies the
    owner's leaf of the current root, of the 1 BTC book (IM 6,000, MM 3,000). Below the floor
    the leaf counts only up to the isolated bound of the book held, 600 / 300 at the signers'
    per-unit rates (a one-position book's isolated bound is its margin): it raises nothing and
    is refused, and the owner withdraws 19,000 (19,346 is free). Before the cap the apply put
    IM 6,000 on 0.1 BTC and held 19,000 until a leaf bound again."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    assert tuple(oracle.isolated_margins([PERP], [WAD // 10])) == (IM // 10, MM // 10)
    before = engine.account(owner)
    leaf, proof = trees.account_proof(owner.address)
    with ape.reverts("engine: leaf older than the book's last reduction"):
        engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    assert engine.account(owner) == before
    engine.withdraw(19_000 * USDC, sender=owner)
    assert engine.health(owner).im_wad == IM // 10


def test_raise_only__outsider_raises_a_reduced_book_then_fills_1_wei_of_its_resting_order__next_roots_leaf_frees_it(
        engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root, keeper,  # noqa: F811
        make_order):
    """V19 (low, availability; fixed). As above, but the owner has a resting order that reduces
    its book (sell 0.05 BTC at the mark). The outsider tries the raise-only apply, then each
    time a root holding the owner's honest leaf (IM 600, MM 300) is posted, fills 1 wei of that
    order before the owner applies it: a reduction of a one-position book, so the leaf floor
    rises above the leaf's nonce, the leaf cannot bind, and raising nothing it is refused.
    Before the isolated-bound cap the first apply put IM 6,000 on 0.1 BTC and the fills kept
    it there root after root (19,000 of 19,946 locked until root 1's basis aged a day). Safe
    outcome, now held: nothing above the book's own margins, 19,000 withdrawn."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    order, sig = make_order(owner, PERP, False, WAD // 20, PRICE, order_nonce=77)   # resting: sells 0.05 BTC
    leaf, proof = trees.account_proof(owner.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=attacker)   # raise-only: below the floor
    fund(attacker, 1_000 * USDC)
    for _ in range(2):
        trees = post_root([leaf_for(owner, IM // 10, MM // 10)])
        engine.fill(order.as_args(), sig, 1, sender=attacker)     # 1 wei of the owner's resting sell
        leaf, proof = trees.account_proof(owner.address)
        succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=owner)
    h = engine.health(owner)
    print(f"V19: IM {h.im_wad / WAD:,.2f} on {engine.position(owner, PERP) / WAD} BTC, equity {h.equity_wad / WAD:,.2f}")
    # the safe outcome
    assert succeeds(engine.withdraw, 19_000 * USDC, sender=owner)


def test_raise_only__book_closed_and_reopened_small_after_the_snapshot__leaf_of_the_closed_book_puts_no_margin_on_it(
        engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """V19, the flat-then-reopened book. The keeper reads the books at its state block and signs
    the root later (`now`, after `confirmations` blocks or its own latency). The owner's 1 BTC
    book is read (IM 6,000, MM 3,000); before the root is signed it closes the book (margins 0,
    floor up) and opens 0.01 BTC (pending IM 60, basis: that trade's time, older than the
    root's). An outsider applies the leaf of the closed book: below the floor, raise-only, but
    only up to the isolated bound of the 0.01 BTC held (60 / 30): before that cap it put IM
    6,000 and MM 3,000 on 0.01 BTC (V19; without a verifier, V18, the floor route changes
    nothing). Safe outcome, held: the closed book's leaf puts nothing on the new one."""
    owner = accounts[9]
    fund(owner, 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(owner, maker, PERP, WAD, PRICE)
    give_margin(owner, IM, MM)
    snapshot = leaf_for(owner, IM, MM)                          # the keeper's state block
    trade(maker, owner, PERP, WAD, PRICE)                       # closed: flat
    trade(owner, maker, PERP, WAD // 100, PRICE)                # reopened: 0.01 BTC
    trees = post_root([snapshot])                              # signed after
    leaf, proof = trees.account_proof(owner.address)
    succeeds(engine.apply_leaf, leaf.as_args(), proof, sender=attacker)
    h = engine.health(owner)
    print(f"V19 reopened: IM {h.im_wad / WAD:,.2f} MM {h.mm_wad / WAD:,.2f} on 0.01 BTC")
    # the safe outcome
    assert h.im_wad == 60 * WAD and h.mm_wad == 30 * WAD


def test_raise_only__reduced_book_raised_by_an_outsider__holds_no_more_than_the_escape_hatch(
        engine, oracle, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """V19's residual bound: where the signers' isolated rates are above the leaf's (here IM
    12,000 per BTC, as a hedged book's isolated bound is above its portfolio margin) the raise
    still happens, but stops at the isolated bound of the book held, 1,200 / 600 on 0.1 BTC:
    the figure the escape hatch margins the book at anyway once its basis ages
    (max_margin_basis_age), with no leaf at all. The owner withdraws down to that bound and
    not below."""
    owner, trees = _reduced_long(engine, accounts, maker, fund, set_market, trade, give_margin, leaf_for, post_root)
    _rates_above(set_market, IM, MM)
    bound = tuple(oracle.isolated_margins([PERP], [WAD // 10]))
    assert bound == (1_200 * WAD, 600 * WAD)
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    h = engine.health(owner)
    assert (h.im_wad, h.mm_wad) == bound
    assert not succeeds(engine.withdraw, 18_800 * USDC, sender=owner)   # would leave ~1,146 < 1,200
    engine.withdraw(18_700 * USDC, sender=owner)                          # leaves ~1,246


def test_raise_only__outsider_raises_mm_above_the_model_before_a_liquidation__slice_and_discount_on_the_models_mm(
        engine, verifier, accounts, maker, attacker, liquidator, fund, set_market, trade, give_margin,  # noqa: F811
        leaf_for, post_root, witness_for):
    """With a verifier, a raise cannot enlarge a slice or a discount. The victim long 1 BTC perp
    is margined at the model's MM (~9,474 at 60,000); the keeper's next root holds that leaf;
    the victim sells half at the mark (margins halve, floor up); the signers' isolated rates are
    twice the model's. An outsider applies the root's leaf raise-only (not capped: the half
    book's isolated bound is the leaf's): MM ~9,474 on 0.5 BTC, twice the model's. BTC falls to 54,000 and the half
    book is short by the model too (equity 3,500 < ~4,263): the liquidation's fraction and
    discount are exactly those the model's MM gives (the engine uses min(applied, model)), to
    the wei."""
    victim = accounts[9]
    fund(victim, 6_530 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 200_000 * USDC)
    set_market()
    trade(victim, maker, PERP, WAD, PRICE)                    # the victim makes: long 1 BTC, no fee
    mm1 = check_market(verifier, witness_for(victim, raw=True)).maintenance_wad
    give_margin(victim, 2 * mm1, mm1)
    trees = post_root([leaf_for(victim, 2 * mm1, mm1)])       # the keeper's next root: not applied
    trade(maker, victim, PERP, WAD // 2, PRICE)               # the victim sells half (taker fee 30)
    _rates_above(set_market, 2 * mm1, mm1)                    # isolated bound of 0.5 BTC: the leaf's
    leaf, proof = trees.account_proof(victim.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)  # raise-only: below the floor
    assert engine.health(victim).mm_wad == mm1
    set_market(marks={PERP: 54_000 * WAD})
    witness = witness_for(victim)
    model = check_market(verifier, witness).maintenance_wad
    equity = engine.health(victim).equity_wad
    assert equity < model < mm1
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), witness, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    base, _slope, _max, _share, buffer, _dust = LIQUIDATION
    target = model * (10_000 + buffer) // 10_000
    denom = target - model * base // 10_000
    f = min(WAD, ((target - equity) * WAD + denom - 1) // denom)
    assert log.fraction_wad == f
    assert log.discount_wad == min(base * f // 10_000 * model // WAD, equity)


def test_raise_only__raise_then_trades__next_leaf_binds_with_exactly_the_trades_growth(
        engine, accounts, maker, attacker, fund, set_market, trade, give_margin, leaf_for, post_root):  # noqa: F811
    """The raise moves the margins up but not the pending counters (the offset takes up new -
    old, modulo 2**96), so it changes nothing a later bound leaf sees. The owner (1 BTC perp,
    IM 6,000 applied) halves its book after the keeper's snapshot; with the signers' isolated
    rates at 18,000 / 9,000 per BTC (so the half book's bound does not cap it) an outsider
    applies the snapshot's leaf (IM 9,000, MM 4,500) raise-only; the rates fall back. The owner then buys 0.1 BTC twice (each a
    pending 600 / 300); the keeper's next leaf, at the nonce between the two buys (IM 4,000,
    MM 2,000), binds through the ring and sets IM 4,600, MM 2,300 (the second buy's growth, to
    the wei) on the root's basis."""
    owner = accounts[9]
    fund(owner, 20_000 * USDC)
    fund(maker, 500_000 * USDC)
    set_market()
    trade(owner, maker, PERP, WAD, PRICE)
    give_margin(owner, IM, MM)
    trees = post_root([leaf_for(owner, 9_000 * WAD, 4_500 * WAD)])
    trade(maker, owner, PERP, WAD // 2, PRICE)                 # the owner sells half: floor up
    counters = engine.pending_total(owner)
    _rates_above(set_market, 9_000 * WAD, 4_500 * WAD)
    leaf, proof = trees.account_proof(owner.address)
    engine.apply_leaf(leaf.as_args(), proof, sender=attacker)  # raise-only
    assert (engine.health(owner).im_wad, engine.health(owner).mm_wad) == (9_000 * WAD, 4_500 * WAD)
    set_market()                                               # the default rates: 600 / 300 a buy
    assert engine.pending_total(owner) == counters
    trade(owner, maker, PERP, WAD // 10, PRICE)                # buys 0.1: +600 / +300 pending
    snapshot = leaf_for(owner, 4_000 * WAD, 2_000 * WAD)
    trade(owner, maker, PERP, WAD // 10, PRICE)                # and 0.1 more
    trees = post_root([snapshot])
    leaf, proof = trees.account_proof(owner.address)
    tx = engine.apply_leaf(leaf.as_args(), proof, sender=attacker)
    [log] = tx.decode_logs(engine.LeafApplied)
    view = engine.account(owner)
    assert (view.initial_margin_wad, view.maintenance_margin_wad) == (4_600 * WAD, 2_300 * WAD)
    assert view.margin_basis_timestamp == log.root_timestamp

"""Account leaves on the engine: applied with a Merkle proof of the current epoch root (by
anyone, or inline in a withdrawal or fill), bound to the book (state nonce, positions hash,
pending counters), never voided by a later trade, never replacing a newer basis; the escape
hatch (isolated bound) when no leaf is usable; liquidation on the newest root's leaf."""

from dataclasses import replace

import ape
import pytest
from conftest import WAD
from support.margins import filler_leaves

from offchain.chain.leaves import EMPTY_POSITIONS_HASH, AccountLeaf, positions_hash

from .conftest import CALL, FUTURE, PERP, PUT, TRADING

USDC = 10**6
PRICE = 60_000 * WAD


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, oracle, leaf_for, post_root, set_market, fund, trade, make_order):
    """Session deployments and fixtures before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    """Each test in its own snapshot, whatever ape's per-test isolation inherited from modules
    with module-scoped books run before this one."""
    with chain.isolate():
        yield


@pytest.fixture
def fresh(accounts):
    """An account no other test module trades with (module-scoped books of other modules
    can outlive their module under ape's isolation)."""
    return accounts[8]


@pytest.fixture
def open_long(engine, fund, set_market, trade, fresh, maker):
    """open_long() -> `fresh` long 1 perp at 60k with 10k deposited (pending IM 6k, MM 3k);
    maker short, 100k. A factory, called in the test body: ape re-runs state-changing
    function fixtures when it rebases isolation after modules with module-scoped books."""

    def _open():
        fund(fresh, 10_000 * USDC)
        fund(maker, 100_000 * USDC)
        set_market()
        trade(maker, fresh, PERP, -WAD, PRICE)
        return fresh

    return _open


def _filler(i: int) -> AccountLeaf:
    return AccountLeaf(account=f"0x{(0xF0000 + i):040x}", state_nonce=1, positions_hash=b"\x01" * 32,
                       pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=1,
                       maintenance_margin_wad=1, worst_loss_wad=1, worst_scenarios=0, basis_addon_wad=0,
                       short_option_addon_wad=0, liquidity_addon_wad=0, rounding_guard_wad=0)


def test_apply_leaf__current_book__sets_margins_basis_and_logs(engine, open_long, leaf_for, post_root, keeper, oracle):
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    trees = post_root([leaf, _filler(1), _filler(2)])
    tx = engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    h = engine.health(long_perp)
    assert (h.im_wad, h.mm_wad) == (2_000 * WAD, 1_000 * WAD)
    view = engine.account(long_perp)
    assert view.margin_basis_timestamp == oracle.root_timestamp(engine)
    [log] = tx.decode_logs(engine.LeafApplied)
    assert (log.account, log.state_nonce, log.initial_margin_wad) == (long_perp.address, 1, 2_000 * WAD)
    # the freed margin can leave: equity 9,940 - IM 2,000
    engine.withdraw(7_940 * USDC, sender=long_perp)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(1, sender=long_perp)


def _args(trees, account):
    leaf, proof = trees.account_proof(account.address)
    return leaf.as_args(), proof


def test_withdraw_with_leaf__depth_17_proof__applies_inline_within_gas_target(engine, open_long, leaf_for, post_root,
                                                                             trade, maker, fund, taker):
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    trees = post_root([leaf, *filler_leaves(2**16)])
    leaf_, proof = trees.account_proof(long_perp.address)
    assert len(proof) == 17
    plain = engine.withdraw(1 * USDC, sender=long_perp).gas_used
    inline = engine.withdraw_with_leaf(7_000 * USDC, leaf_.as_args(), proof, sender=long_perp).gas_used
    print(f"\nwithdraw {plain} gas; withdraw_with_leaf (depth 17) {inline} gas: +{inline - plain}")
    assert inline - plain <= 40_000
    assert engine.health(long_perp).im_wad == 2_000 * WAD


def test_fill_with_leaf__depth_17_proof__applies_taker_leaf_within_gas_target(engine, open_long, leaf_for, post_root,
                                                                             make_order, maker, mine):
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    trees = post_root([leaf, *filler_leaves(2**16)])
    leaf_, proof = trees.account_proof(long_perp.address)
    order, sig = make_order(maker, PERP, False, 10 * WAD, PRICE, order_nonce=77)
    plain = engine.fill(order.as_args(), sig, WAD // 10, sender=long_perp).gas_used
    # the leaf (nonce 1) is older than the book now (nonce 2): it applies with that fill's pending bound
    inline = engine.fill_with_leaf(order.as_args(), sig, WAD // 10, leaf_.as_args(), proof, sender=long_perp).gas_used
    print(f"\nfill {plain} gas; fill_with_leaf (depth 17) {inline} gas: +{inline - plain}")
    assert inline - plain <= 40_000
    # leaf 2,000 + two fills of 0.1 at the 6,000 long rate
    assert engine.health(long_perp).im_wad == 2_000 * WAD + 2 * 600 * WAD


def test_apply_leaf__older_nonce_after_trades__adds_their_pending_bounds(engine, open_long, leaf_for, post_root,
                                                                        trade, maker, keeper):
    """A fill never voids a leaf in flight (a 1-wei fill by anyone included): the leaf applies
    with the standalone rates of every trade since its nonce added."""
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    trade(maker, long_perp, PERP, -1, PRICE)  # a 1-wei fill
    trade(maker, long_perp, PERP, -WAD // 2, PRICE)
    trees = post_root([leaf, _filler(1)])
    engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    h = engine.health(long_perp)
    assert h.im_wad == 2_000 * WAD + 3_000 * WAD + 6_000  # + 0.5 and 1 wei at 6,000 per unit
    assert h.mm_wad == 1_000 * WAD + 1_500 * WAD + 3_000


def test_apply_leaf__self_trade_before_higher_root__cannot_keep_lower_margin(engine, open_long, leaf_for, post_root,
                                                                           trade, maker, attacker, keeper, mine):
    """The account's margin rose (new root: IM 9,000); it front-runs with a 1-wei trade to keep
    its lower applied margin. Anyone still applies the new leaf, which binds to the older nonce
    plus the trade's bound."""
    long_perp = open_long()
    low = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    engine.apply_leaf(*_args(post_root([low, _filler(1)]), long_perp), sender=keeper)
    high = leaf_for(long_perp, 9_000 * WAD, 4_500 * WAD)
    trees = post_root([high, _filler(1)])
    trade(maker, long_perp, PERP, -1, PRICE)
    engine.apply_leaf(*_args(trees, long_perp), sender=attacker)
    assert engine.health(long_perp).im_wad == 9_000 * WAD + 6_000
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(1_000 * USDC, sender=long_perp)


def _state(engine, account) -> tuple:
    """What a refused leaf must leave as it was: margins, basis, counters and floor."""
    view = engine.account(account)
    h = engine.health(account)
    return h.im_wad, h.mm_wad, view.margin_basis_timestamp, engine.pending_total(account)


def test_apply_leaf__true_base_after_seven_trades__applies_with_their_growth(engine, open_long, leaf_for,
                                                                            post_root, trade, maker, keeper):
    """The engine remembers the counters and book of the last 8 nonces a trade reached: the
    keeper's leaf (true counters and book at its snapshot) applies after 7 more trades."""
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    for _ in range(7):
        trade(maker, long_perp, PERP, -1, PRICE)  # 1 wei of new risk: + 6,000 / 3,000 wei
    assert engine.state_nonce(long_perp) == leaf.state_nonce + 7
    engine.apply_leaf(*_args(post_root([leaf, _filler(1)]), long_perp), sender=keeper)
    h = engine.health(long_perp)
    assert (h.im_wad, h.mm_wad) == (2_000 * WAD + 7 * 6_000, 1_000 * WAD + 7 * 3_000)


def test_apply_leaf__eight_trades_after_its_nonce__refused_state_unchanged(engine, open_long, leaf_for, post_root,
                                                                          trade, maker, keeper):
    """The ring holds 8 nonces: the 8th trade since overwrites the leaf's record, so the leaf
    no longer applies (the book keeps its pending bounds; the keeper signs a newer one)."""
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    for _ in range(8):
        trade(maker, long_perp, PERP, -1, PRICE)
    trees = post_root([leaf, _filler(1)])
    before = _state(engine, long_perp)
    with ape.reverts("engine: leaf's nonce not recorded"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    assert _state(engine, long_perp) == before


@pytest.mark.parametrize("field", ["pending_base_im_wad", "pending_base_mm_wad"])
def test_apply_leaf__base_one_wei_off__refused(engine, open_long, leaf_for, post_root, trade, maker, keeper, field):
    """A base one wei above the counters at the leaf's nonce would hide one wei of growth: the
    engine compares it with its record, not with anything the leaf says."""
    long_perp = open_long()
    true = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    forged = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD, **{field: getattr(true, field) + 1})
    trade(maker, long_perp, PERP, -WAD // 2, PRICE)
    trees = post_root([forged, _filler(1)])
    before = _state(engine, long_perp)
    with ape.reverts("engine: leaf's book or pending base is not its nonce's"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    assert _state(engine, long_perp) == before


def test_apply_leaf__recorded_nonce_naming_another_book__refused(engine, open_long, leaf_for, post_root, trade,
                                                                maker, keeper):
    """True counters at a recorded nonce do not make a false book true: a leaf naming the empty
    book (margins 0) at the nonce where the account held 1 perp, applied after a 1-wei trade,
    would set IM to that wei's bound. No fraud proof reaches the book at an older nonce, so
    the engine checks it against its record."""
    long_perp = open_long()
    lie = leaf_for(long_perp, 0, 0, positions_hash=EMPTY_POSITIONS_HASH)
    trade(maker, long_perp, PERP, -1, PRICE)
    trees = post_root([lie, _filler(1)])
    with ape.reverts("engine: leaf's book or pending base is not its nonce's"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    assert engine.health(long_perp).im_wad == 6_000 * WAD + 6_000


def test_apply_leaf__another_book_at_same_nonce__reverts(engine, open_long, leaf_for, post_root, keeper):
    """A leaf computed for a different book at the same nonce (a reorged branch) never applies."""
    long_perp = open_long()
    other = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD, positions_hash=positions_hash([PERP], [2 * WAD]))
    trees = post_root([other, _filler(1)])
    with ape.reverts("engine: leaf for another book"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)


def test_apply_leaf__future_nonce__reverts(engine, open_long, leaf_for, post_root, keeper):
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD, state_nonce=2)
    with ape.reverts("engine: leaf for a future state nonce"):
        engine.apply_leaf(*_args(post_root([leaf, _filler(1)]), long_perp), sender=keeper)


def test_apply_leaf__older_than_last_reduction__only_raises_to_the_books_isolated_bound_keeping_the_basis(
        engine, oracle, open_long, leaf_for, post_root, trade, maker, keeper, set_market):
    """A proportional shrink scales margins down without a pending bound: an older leaf plus
    the counters' growth would overstate them, so it cannot bind. It only raises: IM and MM
    become the larger of the held and the leaf's, the leaf's counting up to the isolated bound
    of the book held (the leaf is the larger book's), the basis and the counters stay; a copy
    that raises nothing is refused with the reason."""
    long_perp = open_long()
    leaf = leaf_for(long_perp, 6_000 * WAD, 3_000 * WAD)
    trade(maker, long_perp, PERP, WAD // 2, PRICE)  # the trader sells half: risk-reducing
    held, pending = engine.account(long_perp), engine.pending_total(long_perp)
    assert held.initial_margin_wad < 6_000 * WAD and held.maintenance_margin_wad < 3_000 * WAD
    set_market(rates={PERP: (9_000 * WAD, 9_000 * WAD, 4_500 * WAD, 4_500 * WAD)})  # the model's rates rose
    bound = tuple(oracle.isolated_margins([PERP], [WAD // 2]))      # 4,500 / 2,250
    assert held.initial_margin_wad < bound[0] < 6_000 * WAD and held.maintenance_margin_wad < bound[1] < 3_000 * WAD
    lower = replace(leaf, initial_margin_wad=held.initial_margin_wad, maintenance_margin_wad=0)
    with ape.reverts("engine: leaf older than the book's last reduction"):
        engine.apply_leaf(*_args(post_root([lower, _filler(1)]), long_perp), sender=keeper)
    tx = engine.apply_leaf(*_args(post_root([leaf, _filler(1)]), long_perp), sender=keeper)
    now = engine.account(long_perp)
    assert (now.initial_margin_wad, now.maintenance_margin_wad) == bound
    assert now.margin_basis_timestamp == held.margin_basis_timestamp
    assert engine.pending_total(long_perp) == pending
    [log] = tx.decode_logs(engine.LeafApplied)
    assert (log.initial_margin_wad, log.maintenance_margin_wad) == bound


def test_apply_leaf__root_older_than_basis__reverts(engine, open_long, leaf_for, post_root, keeper):
    """A root signed before the book's margin basis (here: its first trade) never replaces it."""
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    basis = engine.account(long_perp).margin_basis_timestamp
    trees = post_root([leaf, _filler(1)], timestamp=basis - 1)
    with ape.reverts("engine: leaf not newer than margin basis"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)


def test_apply_leaf__twice__reverts(engine, open_long, leaf_for, post_root, keeper):
    long_perp = open_long()
    trees = post_root([leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD), _filler(1)])
    engine.apply_leaf(*_args(trees, long_perp), sender=keeper)
    with ape.reverts("engine: leaf not newer than margin basis"):
        engine.apply_leaf(*_args(trees, long_perp), sender=keeper)


def test_apply_leaf__leaf_of_another_engine__reverts(engine, extension, open_long, leaf_for, post_root, keeper):
    long_perp = open_long()
    other = post_root([leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD), _filler(1)], eng=extension)
    with ape.reverts("oracle: no root for engine"):
        engine.apply_leaf(*_args(other, long_perp), sender=keeper)
    post_root([_filler(1), _filler(2)])
    with ape.reverts("oracle: invalid proof"):
        engine.apply_leaf(*_args(other, long_perp), sender=keeper)


def test_apply_leaf__leaf_of_previous_epoch__reverts(engine, open_long, leaf_for, post_root, keeper):
    long_perp = open_long()
    leaf = leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD)
    old = post_root([leaf, _filler(1)])
    post_root([leaf, _filler(1)])
    with ape.reverts("oracle: invalid proof"):
        engine.apply_leaf(*_args(old, long_perp), sender=keeper)


def test_withdraw__root_older_than_margin_basis_age__escape_hatch_bound(engine, open_long, leaf_for, post_root, keeper,
                                                                        mine, set_market, oracle):
    long_perp = open_long()
    engine.apply_leaf(*_args(post_root([leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD), _filler(1)]), long_perp),
                      sender=keeper)
    mine(TRADING[3] + 1)
    set_market()
    isolated_im, _ = oracle.isolated_margins([PERP], [WAD])
    free = engine.health(long_perp).equity_wad - isolated_im
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(free // 10**12 + 1, sender=long_perp)
    engine.withdraw(free // 10**12, sender=long_perp)


def test_withdraw__no_keeper_ever__escape_hatch_frees_hedged_book(engine, fund, set_market, trade, fresh, maker, mine,
                                                                  oracle):
    """No root, no leaf, ever: after max_margin_basis_age the hedged book is margined by
    its isolated bound (both legs' standalone rates) and withdraws what that frees."""
    fund(fresh, 30_000 * USDC)
    fund(maker, 100_000 * USDC)
    set_market()
    trade(maker, fresh, PERP, -WAD, PRICE)
    trade(maker, fresh, FUTURE, WAD, 60_500 * WAD)
    mine(TRADING[3] + 1)
    set_market()
    im, _ = oracle.isolated_margins([PERP, FUTURE], [WAD, -WAD])
    free = engine.health(fresh).equity_wad - im
    assert free > 0
    engine.withdraw(free // 10**12, sender=fresh)
    with ape.reverts("engine: below initial margin"):
        engine.withdraw(1, sender=fresh)


def test_liquidate__newest_leaf_applied_by_the_account__healthy(engine, fund, set_market, trade, trader, maker,
                                                                liquidator, leaf_for, post_root, liquidate):
    """Liquidation acts on the applied margins; the newest root's leaf is applied by whoever
    needs it: here the account itself, before a liquidator uses its older, higher MM."""
    fund(trader, 7_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 50_000 * USDC)
    set_market()
    trade(trader, maker, PERP, WAD, PRICE)
    set_market(marks={PERP: 55_000 * WAD})
    assert engine.health(trader).liquidatable  # pending MM 3,000 > equity ~1,940
    trees = post_root([leaf_for(trader, 2_000 * WAD, 1_000 * WAD), _filler(1)])
    engine.apply_leaf(*_args(trees, trader), sender=trader)
    with ape.reverts("engine: account is healthy"):
        liquidate(trader, WAD, 10**30, 1, sender=liquidator)


def test_apply_leaf__empty_book__applies(engine, fund, trader, leaf_for, post_root, keeper):
    fund(trader, 1_000 * USDC)
    trees = post_root([leaf_for(trader, 0, 0), _filler(1)])
    engine.apply_leaf(*_args(trees, trader), sender=keeper)
    assert engine.account(trader).margin_basis_timestamp > 0
    engine.withdraw(1_000 * USDC, sender=trader)


def test_apply_leaf__proof_served_from_keeper_epoch_file__applies(engine, open_long, leaf_for, post_root, keeper,
                                                                  tmp_path):
    """What the keeper writes per epoch (and serves at /proof/<account>) is what the engine takes."""
    long_perp = open_long()
    from offchain.keeper.roots import EpochStore, leaf_args, proof_for

    trees = post_root([leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD), _filler(1), _filler(2)])
    store = EpochStore(tmp_path)
    store.write(trees, trees.root_message(timestamp=1, deadline=2, params_hash=b"\x01" * 32), [])
    leaf, proof = leaf_args(proof_for(EpochStore(tmp_path), engine.address, long_perp.address))
    engine.apply_leaf(leaf, proof, sender=keeper)
    assert engine.health(long_perp).im_wad == 2_000 * WAD


M96 = 2**96 - 1


def _counters(engine, account) -> tuple[int, int, int]:
    """pending_total(account) unpacked: (IM counter, MM counter, leaf floor nonce)."""
    total = engine.pending_total(account)
    return total & M96, (total >> 96) & M96, total >> 192


def test_pending_counters__margin_resets__never_move_them(engine, open_long, leaf_for, post_root, trade, maker,
                                                          keeper):
    """The counters are stored as an offset from the effective margins, so a fill writes the
    margins word only. A leaf and a risk-reducing shrink rewrite the margins: the counters stay
    exactly where they were (the shrink raises the floor only), and each later trade adds
    exactly its own bound, so a leaf taken at any nonce since applies with the right growth."""
    long_perp = open_long()
    im0, mm0, floor0 = _counters(engine, long_perp)
    assert (im0, mm0) == (6_000 * WAD, 3_000 * WAD)  # the opening trade's bound
    engine.apply_leaf(*_args(post_root([leaf_for(long_perp, 2_000 * WAD, 1_000 * WAD), _filler(1)]), long_perp),
                      sender=keeper)
    assert engine.health(long_perp).im_wad == 2_000 * WAD
    assert _counters(engine, long_perp) == (im0, mm0, floor0)

    trade(maker, long_perp, PERP, -WAD // 2, PRICE)  # new risk: + 0.5 at 6,000 / 3,000 per unit
    grown = (im0 + 3_000 * WAD, mm0 + 1_500 * WAD)
    assert _counters(engine, long_perp) == (*grown, floor0)
    assert engine.health(long_perp).im_wad == 5_000 * WAD

    trade(maker, long_perp, PERP, WAD // 2, PRICE)  # sells half: risk-reducing, margins scale
    nonce = engine.state_nonce(long_perp)
    assert nonce > floor0
    assert _counters(engine, long_perp) == (*grown, nonce)

    leaf = leaf_for(long_perp, 1_000 * WAD, 500 * WAD)  # at the floor: still applies
    trade(maker, long_perp, PERP, -1, PRICE)  # 1 wei of new risk after the leaf's nonce
    engine.apply_leaf(*_args(post_root([leaf, _filler(1)]), long_perp), sender=keeper)
    h = engine.health(long_perp)
    assert (h.im_wad, h.mm_wad) == (1_000 * WAD + 6_000, 500 * WAD + 3_000)
    assert _counters(engine, long_perp) == (grown[0] + 6_000, grown[1] + 3_000, nonce)


def _liquidatable_book(engine, fund, set_market, trade, trader, maker, liquidator, leaf_for, post_root, keeper):
    """The trader long 1 BTC perp on a leaf of MM 3,500, then the mark falls to 55,000: liquidatable."""
    fund(trader, 7_000 * USDC)
    fund(maker, 500_000 * USDC)
    fund(liquidator, 50_000 * USDC)
    set_market()
    trade(trader, maker, PERP, WAD, PRICE)
    engine.apply_leaf(*_args(post_root([leaf_for(trader, 6_500 * WAD, 3_500 * WAD), _filler(1)]), trader),
                      sender=keeper)
    set_market(marks={PERP: 55_000 * WAD})



def test_pending_counters__liquidation__both_keep_them_both_floors_rise_to_the_new_nonces(
        engine, fund, set_market, trade, trader, maker, liquidator, leaf_for, post_root, keeper, liquidate):
    """Being liquidated scales the victim's margins (its counters stay, its floor rises to the
    new nonce). The liquidator's margins take the slice's inherited IM and MM while its
    counters stay and its floor rises to the nonce the slice reached: a leaf of its book
    before the slice would stamp the root's fresh basis on the inherited margins."""
    _liquidatable_book(engine, fund, set_market, trade, trader, maker, liquidator, leaf_for, post_root, keeper)
    h = engine.health(trader)
    assert h.liquidatable
    victim_before = _counters(engine, trader)
    liq_before = _counters(engine, liquidator)
    liq_margins = engine.account(liquidator)
    tx = liquidate(trader, WAD // 10, 10**30, engine.state_nonce(trader), sender=liquidator)
    f = tx.decode_logs(engine.Liquidation)[0].fraction_wad
    assert _counters(engine, trader) == (*victim_before[:2], engine.state_nonce(trader))
    assert _counters(engine, liquidator) == (*liq_before[:2], engine.state_nonce(liquidator))
    inherited = (-(-h.im_wad * f // WAD), -(-h.mm_wad * f // WAD))
    after = engine.account(liquidator)
    assert (after.initial_margin_wad, after.maintenance_margin_wad) == (
        liq_margins.initial_margin_wad + inherited[0], liq_margins.maintenance_margin_wad + inherited[1])


def test_apply_leaf__nonce_reached_by_a_liquidation__refused_after_the_next_trade(
        engine, fund, set_market, trade, trader, maker, liquidator, leaf_for, post_root, keeper, liquidate):
    """Liquidation bumps the liquidator's nonce without recording it (nor the victim's, whose
    floor rises anyway): the liquidator's leaf at that nonce applies while it is the current
    one and is refused once the liquidator trades again (it keeps its pending bounds)."""
    _liquidatable_book(engine, fund, set_market, trade, trader, maker, liquidator, leaf_for, post_root, keeper)
    liquidate(trader, WAD // 10, 10**30, engine.state_nonce(trader), sender=liquidator)
    leaf = leaf_for(liquidator, 100 * WAD, 50 * WAD)  # its book at the nonce the slice reached
    trade(maker, liquidator, PERP, -1, 55_000 * WAD)
    trees = post_root([leaf, _filler(1)])
    before = _state(engine, liquidator)
    with ape.reverts("engine: leaf's nonce not recorded"):
        engine.apply_leaf(*_args(trees, liquidator), sender=keeper)
    assert _state(engine, liquidator) == before


def test_apply_leaf__every_nonce_of_an_unsorted_book_closing_a_middle_position__applies_later(
        engine, fund, set_market, trade, fresh, maker, leaf_for, post_root, keeper, chain):
    """A fill records the positions hash of the book it reaches from the book it priced in
    memory (ids ascending, a closed position left out), as `apply_leaf` hashes a stored book:
    for a book opened in no id order, grown, with a middle position closed and a position
    reduced, the leaf of each nonce applies after every trade since (up to a ring's length)."""
    fund(fresh, 100_000 * USDC)
    fund(maker, 1_000_000 * USDC)
    set_market()
    marks = {PERP: PRICE, FUTURE: 60_500 * WAD, CALL: 2_500 * WAD, PUT: 2_400 * WAD}
    # maker's signed size: fresh takes the other side
    steps = [(PUT, -WAD), (PERP, -WAD), (CALL, -WAD), (PERP, WAD // 2), (FUTURE, -WAD), (PERP, WAD // 2),
             (CALL, WAD // 4)]
    leaves = []
    for iid, size in steps:
        trade(maker, fresh, iid, size, marks[iid])
        leaves.append(leaf_for(fresh, 20_000 * WAD, 10_000 * WAD))
    book = [(p.instrument_id, p.size_wad) for p in engine.account(fresh).positions]
    assert book == [(PUT, WAD), (CALL, 3 * WAD // 4), (FUTURE, WAD)]  # the perp closed in the middle
    for leaf in leaves:
        with chain.isolate():
            engine.apply_leaf(*_args(post_root([leaf, _filler(1)]), fresh), sender=keeper)
            assert engine.account(fresh).initial_margin_wad >= 20_000 * WAD

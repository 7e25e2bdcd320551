"""The keeper's decisions, as pure functions over arrays (no chain)."""

import numpy as np
import pytest

from offchain.keeper.strategy import (
    AccountsView,
    Policy,
    assign_liquidators,
    clamp_moves,
    plan,
    prices_due,
)

NOW = 1_000_000


ROOT_TS = NOW - 10


def make_view(n=4, **over):
    base = dict(
        state_nonce=np.ones(n, dtype=np.int64), has_positions=np.ones(n, dtype=bool),
        equity=np.full(n, 1_000.0), im=np.full(n, 500.0), mm=np.full(n, 400.0),
        leaf_nonce=np.ones(n, dtype=np.int64), leaf_im=np.full(n, 500.0), leaf_mm=np.full(n, 400.0),
        onchain_liquidatable=np.zeros(n, dtype=bool), inflight=np.zeros(n, dtype=bool))
    base.update(over)
    return AccountsView(**base)


@pytest.fixture
def policy():
    return Policy(leaf_move_frac=0.05, leaf_move_abs=1.0, root_max_age_s=3600)


def test_plan__nothing_moved__no_actions(policy):
    p = plan(make_view(), NOW, policy, ROOT_TS)
    assert p.empty and p.unhealthy == 0 and p.epoch == ""


def test_plan__one_margin_moved_materially__root_due(policy):
    mm = np.array([400.0, 430.0, 410.0, 400.0])  # +7.5% and +2.5%
    assert plan(make_view(mm=mm), NOW, policy, ROOT_TS).epoch == "margins moved (1 account(s))"
    assert plan(make_view(mm=np.array([400.0, 410.0, 405.0, 400.0])), NOW, policy, ROOT_TS).epoch == ""


def test_plan__book_changed__root_due_without_margin_move(policy):
    p = plan(make_view(state_nonce=np.array([1, 2, 1, 1])), NOW, policy, ROOT_TS)
    assert p.epoch == "1 book(s) changed"


def test_plan__root_ageing__heartbeat_root(policy):
    assert plan(make_view(), NOW, policy, NOW - 3590).epoch == "heartbeat (3590 s since the last root)"
    assert plan(make_view(), NOW, policy, NOW - 3000).epoch == ""


def test_plan__no_root_yet__first_root_once_anyone_holds_positions(policy):
    assert plan(make_view(), NOW, policy, 0).epoch == "first root"
    flat = make_view(has_positions=np.zeros(4, dtype=bool), leaf_nonce=np.full(4, -1))
    assert plan(flat, NOW, policy, 0).epoch == ""


def test_plan__flat_account_never_in_a_root__ignored(policy):
    v = make_view(has_positions=np.array([False, True, True, True]),
                  leaf_nonce=np.array([-1, 1, 1, 1]), state_nonce=np.array([0, 1, 1, 1]))
    assert plan(v, NOW, policy, ROOT_TS).epoch == ""


def test_plan__account_closed_its_book__root_due(policy):
    v = make_view(has_positions=np.array([False, True, True, True]), state_nonce=np.array([2, 1, 1, 1]))
    assert plan(v, NOW, policy, ROOT_TS).epoch == "1 book(s) changed"


def test_plan__unhealthy_and_liquidatable_on_chain__liquidates_largest_shortfall_first(policy):
    eq = np.array([1_000.0, 300.0, 100.0, 1_000.0])
    liq = np.array([False, True, True, False])
    p = plan(make_view(equity=eq, onchain_liquidatable=liq), NOW, policy, ROOT_TS)
    assert p.liquidate.tolist() == [2, 1]
    assert p.unhealthy == 2


def test_plan__liquidatable_with_marks_newer_than_the_root__root_due_in_the_same_batch(policy):
    """The engine judges a witness only against a root at least as new as the book's marks:
    an account liquidatable after the marks moved past the root makes a root due, also when
    this keeper does not liquidate it (liquidations off, or one already in flight: another
    liquidator needs the root too); marks no newer than the root (or none needing a witness:
    marks_at 0), or nobody liquidatable, do not."""
    v = make_view(equity=np.array([100.0, 1_000.0, 1_000.0, 1_000.0]),
                  onchain_liquidatable=np.array([True, False, False, False]))
    due = "1 liquidatable account(s): marks newer than the root"
    assert plan(v, NOW, policy, ROOT_TS, marks_at=NOW).epoch == due
    assert plan(v, NOW, Policy(liquidate=False), ROOT_TS, marks_at=NOW).epoch == due
    inflight = make_view(equity=v.equity, onchain_liquidatable=v.onchain_liquidatable,
                         inflight=np.array([True, False, False, False]))
    assert plan(inflight, NOW, policy, ROOT_TS, marks_at=NOW).epoch == due
    assert plan(v, NOW, policy, ROOT_TS, marks_at=ROOT_TS).epoch == ""
    assert plan(v, NOW, policy, ROOT_TS).epoch == ""
    assert plan(make_view(), NOW, policy, ROOT_TS, marks_at=NOW).epoch == ""   # nobody liquidatable


def test_plan__liquidatable_book_on_an_instrument_whose_root_mark_is_not_the_oracles__root_due(policy):
    """The engine counts a witness only where every leaf's mark is the oracle's: a liquidatable
    account holding an instrument whose root leaf does not carry the oracle's mark makes a root
    due (the keeper posts the new leaves' marks with it); one holding only bound instruments,
    or nobody liquidatable, does not; marks newer than the root say so first."""
    v = make_view(equity=np.array([100.0, 100.0, 1_000.0, 1_000.0]),
                  onchain_liquidatable=np.array([True, True, False, False]))
    positions = np.array([[1.0, 0.0], [0.0, -2.0], [1.0, 1.0], [0.0, 0.0]])
    off = np.array([False, True])   # the second instrument's leaf mark is not the oracle's
    p = plan(v, NOW, policy, ROOT_TS, positions, unbound_instruments=off)
    assert p.epoch == "1 liquidatable account(s): the root's marks are not the oracle's"
    assert p.liquidate.tolist() == [0, 1]   # the bot skips the unbound one with its reason
    assert plan(v, NOW, policy, ROOT_TS, positions, unbound_instruments=np.array([False, False])).epoch == ""
    assert plan(v, NOW, policy, ROOT_TS, positions).epoch == ""   # not known: nothing due
    assert plan(make_view(), NOW, policy, ROOT_TS, positions, unbound_instruments=off).epoch == ""
    assert plan(v, NOW, policy, ROOT_TS, positions, marks_at=NOW,
                unbound_instruments=off).epoch == "2 liquidatable account(s): marks newer than the root"


def test_plan__unhealthy_but_chain_disagrees__not_liquidated(policy):
    eq = np.array([1_000.0, 300.0, 1_000.0, 1_000.0])
    p = plan(make_view(equity=eq), NOW, policy, ROOT_TS)
    assert p.liquidate.tolist() == [] and p.unhealthy == 1


def test_plan__chain_says_liquidatable_but_fresh_risk_healthy__not_liquidated(policy):
    liq = np.array([False, False, True, False])
    assert plan(make_view(onchain_liquidatable=liq), NOW, policy, ROOT_TS).liquidate.tolist() == []


def test_plan__liquidation_already_in_flight__not_retried(policy):
    eq = np.array([100.0, 1_000.0, 1_000.0, 1_000.0])
    v = make_view(equity=eq, onchain_liquidatable=np.array([True, False, False, False]),
                  inflight=np.array([True, False, False, False]))
    assert plan(v, NOW, policy, ROOT_TS).liquidate.tolist() == []


def test_plan__liquidation_disabled__no_liquidations(policy):
    v = make_view(equity=np.full(4, 1.0), onchain_liquidatable=np.ones(4, dtype=bool))
    p = plan(v, NOW, Policy(liquidate=False), ROOT_TS)
    assert p.liquidate.tolist() == [] and p.unhealthy == 4


def test_plan__more_liquidatable_than_cap__largest_shortfalls_kept(policy):
    n = 10
    v = make_view(n, equity=np.linspace(390.0, 300.0, n), onchain_liquidatable=np.ones(n, dtype=bool))
    assert plan(v, NOW, Policy(max_liquidations_per_cycle=3), ROOT_TS).liquidate.tolist() == [9, 8, 7]


def test_plan__expired_settled_instrument__settles_every_holder(policy):
    positions = np.array([[1.0, 0.0], [0.0, -2.0], [3.0, 1.0], [0.0, 0.0]])
    p = plan(make_view(), NOW, policy, ROOT_TS, positions, settleable_instruments=np.array([True, False]))
    assert p.settle.tolist() == [[0, 0], [2, 0]]


def test_plan__ten_thousand_accounts__vectorised_fast(policy):
    import time
    n = 10_000
    rng = np.random.default_rng(1)
    v = make_view(n, mm=400 * rng.uniform(0.9, 1.1, n), equity=rng.uniform(300, 2000, n))
    t = time.perf_counter()
    plan(v, NOW, policy, ROOT_TS)
    assert time.perf_counter() - t < 0.05


def test_prices_due__small_move_recent__false():
    assert not prices_due(np.array([100.05]), np.array([100.0]), NOW - 10, NOW, 0.002, 300)


def test_prices_due__move_above_threshold_or_aged__true():
    assert prices_due(np.array([101.0]), np.array([100.0]), NOW - 10, NOW, 0.002, 300)
    assert prices_due(np.array([100.0]), np.array([100.0]), NOW - 300, NOW, 0.002, 300)


def test_clamp_moves__crash_beyond_bound__steps_by_bound():
    out = clamp_moves(np.array([50.0, 104.0, 7.0]), np.array([100.0, 100.0, 0.0]), 0.25)
    assert out.tolist() == [75.0, 104.0, 7.0]


def test_clamp_moves__cheap_option__moves_up_to_its_maintenance_rate():
    # a 2.0 option whose one-unit MM is 30: a 20% band alone would allow only 0.4
    out = clamp_moves(np.array([50.0, 10.0]), np.array([2.0, 2.0]), 0.2, floor=np.array([30.0, 30.0]),
                      fresh=np.array([False, False]))
    assert out.tolist() == [32.0, 10.0]


def test_clamp_moves__never_posted__unbounded_even_at_zero():
    out = clamp_moves(np.array([5.0, 5.0]), np.array([0.0, 0.0]), 0.2, floor=0.0,
                      fresh=np.array([True, False]))
    assert out.tolist() == [5.0, 0.0]


def test_plan__book_first_traded_this_second__root_waits_for_a_later_block(policy):
    """A leaf applies only under a root signed after the book's margin basis."""
    v = make_view(state_nonce=np.array([1, 2, 1, 1]), basis_timestamp=np.array([0, NOW, 0, 0]))
    assert plan(v, NOW, policy, ROOT_TS).epoch == ""
    assert plan(v, NOW + 1, policy, ROOT_TS).epoch == "1 book(s) changed"
    stale = make_view(leaf_nonce=np.array([1, -2, 1, 1]), basis_timestamp=np.array([0, ROOT_TS, 0, 0]))
    assert plan(stale, NOW, policy, ROOT_TS).epoch == "1 book(s) changed"
    assert plan(make_view(basis_timestamp=np.full(4, NOW)), NOW, policy, 0).epoch == ""


def _takers(pos, victims, rows, unit_of, max_positions, max_units):
    taker, _fraction = assign_liquidators(pos, np.array(victims), np.array(rows), unit_of, max_positions, max_units)
    return taker.tolist()


def _books(rows):
    """(accounts x 6 instruments) sizes from {account: [instrument, ...]}; instruments 0-3 on
    underlying 0, 4 on 1, 5 on 2."""
    pos = np.zeros((len(rows), 6))
    for a, held in rows.items():
        pos[a, held] = 1.0
    return pos, np.array([0, 0, 0, 0, 1, 2])


def test_assign_liquidators__first_account_full__the_spare_takes_the_slice():
    # account 0: the keeper's full book (instruments 0-2 of a cap of 3); 1: its empty spare;
    # 2: the victim on instrument 3, a fourth position for account 0
    pos, unit_of = _books({0: [0, 1, 2], 1: [], 2: [3]})
    assert _takers(pos, [2], [0, 1], unit_of, 3, 8) == [1]
    # a victim on instruments the full account already holds still goes to it
    pos, unit_of = _books({0: [0, 1, 2], 1: [], 2: [1, 2]})
    assert _takers(pos, [2], [0, 1], unit_of, 3, 8) == [0]


def test_assign_liquidators__slices_of_one_cycle_add_up__the_second_victim_moves_on_or_is_blocked():
    pos, unit_of = _books({0: [0], 1: [1], 2: [2], 3: []})
    # cap 2: account 0 takes victim 1 (book {0, 1}); victim 2 needs a third: the spare (row 3)
    assert _takers(pos, [1, 2], [0, 3], unit_of, 2, 8) == [0, 1]
    # without the spare, nobody can take victim 2: -1
    assert _takers(pos, [1, 2], [0], unit_of, 2, 8) == [0, -1]


def test_assign_liquidators__underlyings_cap_and_own_book_and_unlisted_account():
    pos, unit_of = _books({0: [0, 4], 1: [5], 2: []})
    # max 2 underlyings: account 0 (units 0, 1) cannot take a book on unit 2; the unlisted
    # spare (-1: an empty book) can
    assert _takers(pos, [1], [0, -1], unit_of, 32, 2) == [1]
    # nobody liquidates its own book: account 0 short is given to the spare
    assert _takers(pos, [0], [0, 2], unit_of, 32, 8) == [1]


def test_assign_liquidators__margin__first_account_that_covers_the_whole_book_else_a_part_else_none():
    pos, unit_of = _books({0: [], 1: [], 2: [0], 3: [1]})
    # free margin 1,000 and 11,000; the victim's book brings 5,000 of IM: the second account, whole
    taker, fraction = assign_liquidators(pos, np.array([2]), np.array([0, 1]), unit_of, 32, 8,
                                         free=np.array([1_000.0, 11_000.0]), need=np.array([5_000.0]))
    assert taker.tolist() == [1] and fraction.tolist() == [1.0]
    # two victims of 5,000 each: the second account covers the first whole, then 6,000 is left
    # of which the second victim needs 5,000: whole again; a third finds 1,000 + 1,000: a fifth
    taker, fraction = assign_liquidators(pos, np.array([2, 3, 2]), np.array([0, 1]), unit_of, 32, 8,
                                         free=np.array([1_000.0, 11_000.0]), need=np.array([5_000.0] * 3))
    assert taker.tolist() == [1, 1, 0] and fraction.tolist() == [1.0, 1.0, 0.2]
    # nobody has free margin: none
    taker, fraction = assign_liquidators(pos, np.array([2]), np.array([0, 1]), unit_of, 32, 8,
                                         free=np.array([0.0, -5.0]), need=np.array([5_000.0]))
    assert taker.tolist() == [-1]

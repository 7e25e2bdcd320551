"""The keeper's decisions, as pure functions over arrays (no chain)."""

import numpy as np
import pytest

from offchain.keeper.strategy import AccountsView, Policy, clamp_moves, plan, prices_due

NOW = 1_000_000


def make_view(n=4, **over):
    base = dict(
        state_nonce=np.ones(n, dtype=np.int64), has_positions=np.ones(n, dtype=bool),
        equity=np.full(n, 1_000.0), im=np.full(n, 500.0), mm=np.full(n, 400.0),
        att_nonce=np.ones(n, dtype=np.int64), att_im=np.full(n, 500.0), att_mm=np.full(n, 400.0),
        att_timestamp=np.full(n, NOW - 10, dtype=np.int64),
        onchain_liquidatable=np.zeros(n, dtype=bool), inflight=np.zeros(n, dtype=bool))
    base.update(over)
    return AccountsView(**base)


@pytest.fixture
def policy():
    return Policy(attest_move_frac=0.05, attest_move_abs=1.0, attest_max_age_s=3600)


def test_plan__nothing_moved__no_actions(policy):
    p = plan(make_view(), NOW, policy)
    assert p.empty and p.unhealthy == 0


def test_plan__margin_moved_materially__attests_only_that_account(policy):
    mm = np.array([400.0, 430.0, 410.0, 400.0])  # +7.5% and +2.5%
    p = plan(make_view(mm=mm), NOW, policy)
    assert p.attest.tolist() == [1]


def test_plan__book_changed__attests_even_without_margin_move(policy):
    p = plan(make_view(state_nonce=np.array([1, 2, 1, 1])), NOW, policy)
    assert p.attest.tolist() == [1]


def test_plan__attestation_ageing__attests(policy):
    ts = np.array([NOW - 10, NOW - 3590, NOW - 10, NOW - 10])
    p = plan(make_view(att_timestamp=ts), NOW, policy)
    assert p.attest.tolist() == [1]


def test_plan__flat_account_never_attested__ignored(policy):
    v = make_view(has_positions=np.array([False, True, True, True]),
                  att_nonce=np.array([-1, 1, 1, 1]), state_nonce=np.array([0, 1, 1, 1]))
    assert plan(v, NOW, policy).attest.tolist() == []


def test_plan__unhealthy_and_liquidatable_on_chain__liquidates_largest_shortfall_first(policy):
    eq = np.array([1_000.0, 300.0, 100.0, 1_000.0])
    liq = np.array([False, True, True, False])
    p = plan(make_view(equity=eq, onchain_liquidatable=liq), NOW, policy)
    assert p.liquidate.tolist() == [2, 1]
    assert p.unhealthy == 2
    assert not set(p.attest) & {1, 2}  # nonce changes with the liquidation: attest next cycle


def test_plan__unhealthy_but_chain_disagrees__attests_instead_of_liquidating(policy):
    eq = np.array([1_000.0, 300.0, 1_000.0, 1_000.0])
    p = plan(make_view(equity=eq), NOW, policy)
    assert p.liquidate.tolist() == []
    assert p.attest[0] == 1  # most urgent first


def test_plan__chain_says_liquidatable_but_fresh_risk_healthy__rescues_with_attestation(policy):
    liq = np.array([False, False, True, False])
    p = plan(make_view(onchain_liquidatable=liq), NOW, policy)
    assert p.liquidate.tolist() == [] and p.attest.tolist() == [2]


def test_plan__liquidation_already_in_flight__not_retried(policy):
    eq = np.array([100.0, 1_000.0, 1_000.0, 1_000.0])
    v = make_view(equity=eq, onchain_liquidatable=np.array([True, False, False, False]),
                  inflight=np.array([True, False, False, False]))
    assert plan(v, NOW, policy).liquidate.tolist() == []


def test_plan__liquidation_disabled__no_liquidations(policy):
    v = make_view(equity=np.full(4, 1.0), onchain_liquidatable=np.ones(4, dtype=bool))
    p = plan(v, NOW, Policy(liquidate=False))
    assert p.liquidate.tolist() == [] and p.unhealthy == 4


def test_plan__expired_settled_instrument__settles_every_holder(policy):
    positions = np.array([[1.0, 0.0], [0.0, -2.0], [3.0, 1.0], [0.0, 0.0]])
    p = plan(make_view(), NOW, policy, positions, settleable_instruments=np.array([True, False]))
    assert p.settle.tolist() == [[0, 0], [2, 0]]


def test_plan__more_due_than_cap__most_urgent_kept(policy):
    n = 10
    mm = 400.0 * (1 + np.linspace(0.1, 1.0, n))
    p = plan(make_view(n, mm=mm), NOW, Policy(max_attestations_per_cycle=3))
    assert p.attest.tolist() == [9, 8, 7]


def test_plan__ten_thousand_accounts__vectorised_fast(policy):
    import time
    n = 10_000
    rng = np.random.default_rng(1)
    v = make_view(n, mm=400 * rng.uniform(0.9, 1.1, n), equity=rng.uniform(300, 2000, n))
    t = time.perf_counter()
    plan(v, NOW, policy)
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

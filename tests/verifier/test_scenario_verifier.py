"""ScenarioVerifier against the float64 risk engine (offchain/risk) on random books, for every
bundled parameter set: scenario table, unit losses, floors, add-ons and the maintenance margin
when the named scenarios are the binding ones.

Tolerance: 1e-9 of the book's gross notional (sum |size * contract_size| * forward): each
premium is within 1e-9 relative of the engine's (tests/pricer), and the WAD rounding of the
inputs and coefficients moves a loss by far less.
"""

import boa
import numpy as np
import pytest
from support.boa_contracts import deploy

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.verifier import (
    check_arguments,
    generator_hash,
    params_hash_bytes,
    verifier_config,
)
from offchain.risk import load_params
from offchain.risk.pricing import CALL, PUT
from offchain.risk.scenarios import build_scenarios

from .conftest import (
    PARAM_SETS,
    SPOTS,
    WAD,
    ZERO,
    book_from_rows,
    deploy_verifier,
    random_book,
    wad,
)

TOL = 1e-9


def _python_losses(engine, book):
    """(U, S) weighted loss of the book per unit and scenario, and the breakdown."""
    b = engine.breakdown(book.sizes[None, :], exact=True)
    loss = -b.pnl[0] * engine.scenarios.weight
    return loss, b


def _close(chain_wad: int, expected: float, scale: float) -> bool:
    return abs(chain_wad / WAD - expected) <= TOL * scale + 1e-12


@pytest.mark.parametrize("name", PARAM_SETS)
def test_generator_hash__bundled_sets__equals_python(verifiers, name):
    params, verifier = verifiers[name]
    assert verifier.generator_hash() == generator_hash(params)
    assert verifier.params_hash() == bytes.fromhex(params.hash[2:])


@pytest.mark.parametrize("name", PARAM_SETS)
def test_generator__bundled_sets__returns_the_constructor_rows(verifiers, name):
    """The rows are stored packed (two 128-bit values a slot, tail moves offset by 2**127):
    `generator()` gives back exactly what the constructor took, negative tail moves included."""
    params, verifier = verifiers[name]
    generator, rows = verifier_config(params)
    got_generator, got_rows = verifier.generator()
    assert tuple(got_generator) == tuple(generator)
    assert [tuple(tuple(x) if isinstance(x, list) else x for x in r) for r in got_rows] == \
        [tuple(tuple(x) if isinstance(x, list) else x for x in r) for r in rows]


def _deploy_rows(params, rows):
    generator, _ = verifier_config(params)
    return deploy("ScenarioVerifier", ZERO, params_hash_bytes(params), generator, rows)


@pytest.mark.parametrize(("field", "reason"), [
    (2, "vol shocks"), (5, "tail_weight"), (7, "basis coefficients"), (9, "short_option_min_rate"),
    (10, "liquidity coefficients"), (11, "liquidity coefficients")])
def test_deploy__coefficient_at_2_128__reverts_and_just_below_is_stored_exactly(field, reason):
    """Each packed coefficient gets 128 bits: 2**128 is refused with the field named, 2**128 - 1
    is kept exactly."""
    params = load_params("default-v2")
    _, rows = verifier_config(params)
    row = list(rows[0])
    row[field] = 2**128
    with boa.reverts(f"ScenarioVerifier: {reason} must be < 2**128"):
        _deploy_rows(params, [tuple(row)] + rows[1:])
    row[field] = 2**128 - 1
    _, got = _deploy_rows(params, [tuple(row)] + rows[1:]).generator()
    assert got[0][field] == 2**128 - 1


def test_deploy__tail_move_outside_int128__reverts():
    params = load_params("default-v2")
    _, rows = verifier_config(params)
    row = list(rows[0])
    row[6] = [2**127] + list(row[6])[1:]
    with boa.reverts("ScenarioVerifier: tail moves must be within int128"):
        _deploy_rows(params, [tuple(row)] + rows[1:])


@pytest.mark.parametrize("name", PARAM_SETS)
def test_scenario__every_index__equals_build_scenarios(verifiers, name):
    params, verifier = verifiers[name]
    units = ("BTC", "ETH", "SOL")
    scen = build_scenarios(params, units)
    assert verifier.n_scenarios() == scen.n
    for u, sym in enumerate(units):
        for s in range(scen.n):
            move, vol_dir, weight = verifier.scenario(symbol_to_bytes32(sym), s)
            assert abs(move / WAD - scen.move[u, s]) <= 1e-15
            assert vol_dir == scen.vol_dir[s]
            assert abs(weight / WAD - scen.weight[u, s]) <= 1e-15


@pytest.mark.parametrize("name", PARAM_SETS)
def test_check__random_books_binding_scenarios__maintenance_equals_engine(verifiers, name):
    params, verifier = verifiers[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(6):
        book = random_book(rng, int(rng.integers(1, 9)))
        engine = book.engine(params)
        loss, b = _python_losses(engine, book)
        binding = [int(s) for s in b.binding_idx[0]]
        joint = int(loss.sum(axis=0).argmax())
        out = verifier.check(book.legs, book.unit_symbols(), binding, joint)
        scale = book.gross_notional()
        for u in range(len(book.units)):
            assert _close(out.unit_losses_wad[u], loss[u, binding[u]], scale)
        assert _close(out.scenario_loss_wad, b.worst_loss[0], scale)
        assert _close(out.basis_wad, b.basis[0], scale)
        assert _close(out.short_option_wad, b.short_option[0], scale)
        assert _close(out.liquidity_wad, b.liquidity[0], scale)
        assert _close(out.maintenance_wad, b.mm[0], scale)


@pytest.mark.parametrize("name", PARAM_SETS)
def test_check__random_scenarios__unit_losses_equal_engine_and_bound_worst(verifiers, name):
    params, verifier = verifiers[name]
    rng = np.random.default_rng(7 + sum(map(ord, name)))
    for _ in range(6):
        book = random_book(rng, int(rng.integers(1, 7)))
        engine = book.engine(params)
        loss, b = _python_losses(engine, book)
        named = [int(s) for s in rng.integers(engine.n_scenarios, size=len(book.units))]
        joint = int(named[0]) if params.decorrelation < 1 else 0
        out = verifier.check(book.legs, book.unit_symbols(), named, joint)
        scale = book.gross_notional()
        for u in range(len(book.units)):
            assert _close(out.unit_losses_wad[u], loss[u, named[u]], scale)
        if params.decorrelation < 1:
            assert _close(out.joint_loss_wad, loss[:, joint].sum(), scale)
        # any named scenarios give a lower bound of the engine's worst loss (with floors)
        worst = b.worst_loss[0] + (b.short_option[0] if params.short_option_netted else 0.0)
        assert out.weighted_loss_wad / WAD <= worst + TOL * scale + 1e-12


def test_check__conversion_and_short_strangle__netted_floor(verifiers):
    """A call and a put of one strike and expiry net (long call, short put: no net short);
    a short strangle's two strikes each count."""
    params, verifier = verifiers["default-v2"]
    rng = np.random.default_rng(3)
    book = random_book(rng, 1, kinds=(CALL,), units=("BTC",))
    call = list(book.legs[0])
    put = list(call)
    put[1] = PUT
    call[0], put[0] = 2 * WAD, -2 * WAD
    conversion = verifier.check([tuple(call), tuple(put)], [symbol_to_bytes32("BTC")], [13], 0)
    assert conversion.unit_floors_wad[0] == 0
    call[0] = -2 * WAD
    put[5] = call[5] * 8 // 10
    strangle = verifier.check([tuple(call), tuple(put)], [symbol_to_bytes32("BTC")], [13], 0)
    rate = params.coeff("BTC", "short_option_min_rate")
    expected = 2 * call[9] / WAD * (call[3] + put[3]) / WAD * rate
    assert abs(strangle.unit_floors_wad[0] / WAD - expected) <= 1e-9 * expected


# ScenarioVerifier GROUP_HASH: `_check` marks each netted group's key in a 256-bit filter
GROUP_HASH = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251F86C6A11D0C18E95


def _filter_bit(strike: int, tenor: int, unit: int = 0) -> int:
    key = strike | (tenor << 129) | (unit << 196)
    return (key * GROUP_HASH % 2**256) >> 248


def test_check__netted_groups__shared_filter_bit_and_a_put_listed_far_from_its_call(verifiers):
    """The group filter only skips searches: two strikes whose keys share a filter bit stay two
    groups, and a put listed after other strikes still nets with its call."""
    params, verifier = verifiers["default-v2"]
    book = random_book(np.random.default_rng(3), 1, kinds=(CALL,), units=("BTC",))
    call = list(book.legs[0])
    k0, tenor = call[5], call[6]
    twin = next(k for k in range(k0 + WAD, k0 + 10_000 * WAD, WAD) if _filter_bit(k, tenor) == _filter_bit(k0, tenor))
    others = [k0 + (2 * i + 1) * WAD // 2 for i in range(4)]
    legs = []
    for strike in [k0, twin, *others]:
        leg = list(call)
        leg[0], leg[5] = -WAD, strike
        legs.append(tuple(leg))
    put = list(call)
    put[0], put[1] = WAD, PUT
    legs.append(tuple(put))
    out = verifier.check(legs, [symbol_to_bytes32("BTC")], [13], 0)
    _, rows = verifier_config(params)
    rate = next(r for r in rows if r[0] == symbol_to_bytes32("BTC"))[9]
    held = call[9]  # one contract of contract_size (WAD) each
    per_group = held * rate // WAD * call[3] // WAD
    # k0 nets to zero with its put; the twin and the four others are each one short group
    assert out.unit_floors_wad[0] == 5 * per_group


@pytest.mark.parametrize("name", PARAM_SETS)
def test_check_arguments__engine_book__binding_scenarios_give_engine_mm(verifiers, name):
    """The keeper-side helper: the arguments of `check` for a book of a RiskEngine (zeros
    skipped, units in the engine's order), naming the binding scenarios."""
    params, verifier = verifiers[name]
    rng = np.random.default_rng(11)
    book = random_book(rng, 8)
    engine = book.engine(params)
    sizes = book.sizes.copy()
    sizes[0] = 0.0
    legs, units, scenarios, joint = check_arguments(engine, sizes)
    assert len(legs) == 7
    out = verifier.check(legs, units, scenarios, joint)
    b = engine.breakdown(sizes[None, :], exact=True)
    assert _close(out.maintenance_wad, b.mm[0], book.gross_notional())


def test_check__short_far_otm_options__floor_binds_and_equals_engine(verifiers):
    """Short far out-of-the-money BTC puts and calls: the scenario loss is small, the netted
    short-option floor binds, and the verifier's MM still equals the engine's."""
    params, verifier = verifiers["default-v2"]
    spot = SPOTS["BTC"]
    rows = [(-5.0, kind, 0, wad(spot), wad(spot), wad(spot * m), wad(7 / 365), wad(0.5), 0, WAD)
            for kind, m in ((PUT, 0.5), (CALL, 1.8), (PUT, 0.55))]
    book = book_from_rows(("BTC",), rows)
    loss, b = _python_losses(book.engine(params), book)
    binding = [int(b.binding_idx[0, 0])]
    out = verifier.check(book.legs, book.unit_symbols(), binding, binding[0])
    assert out.unit_floors_wad[0] > max(out.unit_losses_wad[0], 0)
    assert b.short_option[0] > 0
    scale = book.gross_notional()
    assert _close(out.short_option_wad, b.short_option[0], scale)
    assert _close(out.weighted_loss_wad, b.worst_loss[0] + b.short_option[0], scale)
    assert _close(out.maintenance_wad, b.mm[0], scale)


def test_check__scenario_index_out_of_range__reverts(verifiers):
    params, verifier = verifiers["default-v2"]
    book = random_book(np.random.default_rng(1), 2, units=("BTC",))
    n = verifier.n_scenarios()
    with boa.reverts("ScenarioVerifier: scenario index out of range"):
        verifier.check(book.legs, book.unit_symbols(), [n], 0)


def test_check__leg_unit_out_of_range__reverts(verifiers):
    _, verifier = verifiers["default-v2"]
    book = random_book(np.random.default_rng(1), 2, units=("BTC",))
    leg = list(book.legs[0])
    leg[2] = 1
    with boa.reverts("ScenarioVerifier: leg unit out of range"):
        verifier.check([tuple(leg)], book.unit_symbols(), [0], 0)


def test_check__duplicate_unit__reverts(verifiers):
    _, verifier = verifiers["default-v2"]
    book = random_book(np.random.default_rng(1), 2, units=("BTC",))
    btc = symbol_to_bytes32("BTC")
    with boa.reverts("ScenarioVerifier: duplicate unit"):
        verifier.check(book.legs, [btc, btc], [0, 0], 0)


def test_check__scenarios_count_mismatch__reverts(verifiers):
    _, verifier = verifiers["default-v2"]
    book = random_book(np.random.default_rng(1), 2, units=("BTC",))
    with boa.reverts("ScenarioVerifier: one scenario per unit expected"):
        verifier.check(book.legs, book.unit_symbols(), [0, 1], 0)


def test_deploy__runtime_size__under_eip170(verifiers):
    _, verifier = verifiers["default-v2"]
    assert len(boa.env.get_code(verifier.address)) <= 24_576


def test_deploy__extreme_move_below_minus_one__reverts():
    """A SPAN set whose extreme move would take prices below zero cannot be deployed."""
    import copy

    from offchain.risk import load_params
    from offchain.risk.params import params_from_dict

    raw = copy.deepcopy(load_params("span16-v1").raw)
    raw["span16"]["extreme_multiple"] = 5.0       # default row: 0.25 * 5 = 125 % down
    with boa.reverts("ScenarioVerifier: extreme moves must be > -1"):
        deploy_verifier(params_from_dict(raw))

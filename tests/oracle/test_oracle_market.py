"""RiskOracle.post_market_data and its views (marks, rates, market_updated_at)."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD

from offchain.chain.eip712 import Domain, digest, sign_multi

INT96_MIN, INT96_MAX = -(2**95), 2**95 - 1


def test_post_market_data__four_instruments__stored_readable_and_event(oracle, post_market, keeper, domain):
    tx, data = post_market()
    marks, funding, oldest = oracle.marks([1, 2, 3, 4])
    assert list(marks) == list(data.marks_wad)
    assert list(funding) == list(data.funding_indices_wad)
    assert oldest == data.timestamp
    for i, instrument_id in enumerate(data.ids):
        rates, updated_at = oracle.rates(instrument_id)
        assert tuple(rates) == (data.im_long_wad[i], data.im_short_wad[i], data.mm_long_wad[i], data.mm_short_wad[i])
        assert updated_at == data.timestamp == oracle.market_updated_at(instrument_id)
        assert tuple(oracle.side_rates(instrument_id, True)) == (data.im_long_wad[i], data.mm_long_wad[i])
        assert tuple(oracle.side_rates(instrument_id, False)) == (data.im_short_wad[i], data.mm_short_wad[i])
    [log] = tx.decode_logs(oracle.MarketDataPosted)
    assert (log.digest, log.poster, log.count, log.signed_at) == (digest(data, domain), keeper.address, 4, data.timestamp)


def test_post_market_data__negative_and_extreme_values__roundtrip(oracle, post_market):
    _, data = post_market(
        ids=[1, 2, 3],
        marks_wad=[INT96_MIN, INT96_MAX, 0],
        funding_indices_wad=[-7 * WAD // 3, INT96_MIN, INT96_MAX],
        im_long_wad=[2**128 - 1, 0, 5],
        im_short_wad=[2**128 - 1, 0, 5],
        mm_long_wad=[2**128 - 1, 0, 5],
        mm_short_wad=[1, 0, 5],
    )
    marks, funding, _ = oracle.marks([1, 2, 3])
    assert list(marks) == [INT96_MIN, INT96_MAX, 0]
    assert list(funding) == [-7 * WAD // 3, INT96_MIN, INT96_MAX]
    assert tuple(oracle.rates(1)[0]) == (2**128 - 1, 2**128 - 1, 2**128 - 1, 1)
    assert tuple(oracle.side_rates(1, False)) == (2**128 - 1, 1)


def test_post_market_data__anyone_may_post_signed_data(oracle, post_market, attacker):
    post_market(ids=[1], sender=attacker)
    assert oracle.market_updated_at(1) > 0


def test_post_market_data__partial_batches__oldest_timestamp_reported(oracle, post_market, now):
    t = now()
    post_market(ids=[1, 2], timestamp=t - 50, deadline=t + 300)
    post_market(ids=[3, 4], timestamp=t - 10, deadline=t + 300)
    assert oracle.marks([3, 4])[2] == t - 10
    assert oracle.marks([4, 1, 3])[2] == t - 50
    assert oracle.marks([])[2] == 0


def test_post_market_data__newer_update__overwrites(oracle, post_market, now):
    t = now()
    post_market(ids=[1], timestamp=t - 50, deadline=t + 300)
    post_market(ids=[1], timestamp=t - 49, deadline=t + 300, marks_wad=[61_000 * WAD])
    marks, _, oldest = oracle.marks([1])
    assert (marks[0], oldest) == (61_000 * WAD, t - 49)


def test_post_market_data__mark_move_up_to_bound__accepted(oracle, post_market, now):
    t = now()
    post_market(ids=[1], timestamp=t - 50, deadline=t + 300)  # 60,000, MM rates 3,000
    post_market(ids=[1], timestamp=t - 49, deadline=t + 300, marks_wad=[72_000 * WAD])  # +20%
    post_market(ids=[1], timestamp=t - 48, deadline=t + 300, marks_wad=[57_600 * WAD])  # -20%
    assert oracle.marks([1])[0][0] == 57_600 * WAD


def test_post_market_data__mark_move_above_bound__reverts_and_keeps_state(oracle, post_market, now):
    t = now()
    post_market(ids=[1], timestamp=t - 50, deadline=t + 300)
    with ape.reverts("oracle: mark move above limit"):
        post_market(ids=[1], timestamp=t - 49, deadline=t + 300, marks_wad=[72_000 * WAD + 1])
    assert oracle.marks([1])[0][0] == 60_000 * WAD


@pytest.mark.parametrize("mark, ok", [(7_000 * WAD, True), (7_000 * WAD + 1, False), (0, True)])
def test_post_market_data__option_mark__moves_up_to_its_maintenance_rate(oracle, post_market, now, mark, ok):
    t = now()
    post_market(ids=[3], timestamp=t - 50, deadline=t + 300)  # 2,500, MM rates 1,250 / 4,500
    if ok:
        post_market(ids=[3], timestamp=t - 49, deadline=t + 300, marks_wad=[mark])
        assert oracle.marks([3])[0][0] == mark
    else:
        with ape.reverts("oracle: mark move above limit"):
            post_market(ids=[3], timestamp=t - 49, deadline=t + 300, marks_wad=[mark])


def test_post_market_data__replayed__reverts(oracle, post_market, keeper, sign):
    _, data = post_market()
    with ape.reverts("oracle: market data not newer than stored"):
        oracle.post_market_data(data.as_args(), sign(data), sender=keeper)


def test_post_market_data__older_than_stored__reverts_and_keeps_state(oracle, post_market, now):
    t = now()
    post_market(ids=[1, 2], timestamp=t, deadline=t + 300)
    with ape.reverts("oracle: market data not newer than stored"):
        post_market(ids=[2], timestamp=t - 1, deadline=t + 300, marks_wad=[1])
    assert oracle.marks([2])[0][0] == 60_500 * WAD


def test_post_market_data__fresh_id_after_stale_one__whole_batch_reverts(oracle, post_market, now):
    t = now()
    post_market(ids=[2], timestamp=t, deadline=t + 300)
    with ape.reverts("oracle: market data not newer than stored"):
        post_market(ids=[1, 2], timestamp=t, deadline=t + 300)
    assert oracle.market_updated_at(1) == 0  # the valid first entry was rolled back too


def test_post_market_data__duplicate_id_in_batch__reverts(post_market):
    with ape.reverts("oracle: market data not newer than stored"):
        post_market(ids=[1, 1])


def test_post_market_data__future_dated__reverts(post_market, now):
    with ape.reverts("oracle: timestamp in the future"):
        post_market(timestamp=now() + 3_600, deadline=now() + 7_200)


def test_post_market_data__deadline_passed__reverts(post_market, now):
    with ape.reverts("oracle: deadline passed"):
        post_market(timestamp=now() - 100, deadline=now() - 1)


def test_post_market_data__other_params_hash__reverts(post_market):
    with ape.reverts("oracle: params hash mismatch"):
        post_market(params_hash=b"\x09" * 32)


def test_post_market_data__tampered_after_signing__reverts(oracle, make_market, sign, keeper):
    data = make_market()
    sigs = sign(data)
    tampered = type(data)(**{**data.message(), "mm_short_wad": [0, 0, 0, 0]})
    with ape.reverts("oracle: not a signer"):
        oracle.post_market_data(tampered.as_args(), sigs, sender=keeper)


def test_post_market_data__foreign_domain__reverts(oracle, make_market, sign, keeper, domain):
    data = make_market()
    foreign = Domain(chain_id=domain.chain_id + 1, verifying_contract=domain.verifying_contract)
    with ape.reverts("oracle: not a signer"):
        oracle.post_market_data(data.as_args(), sign(data, dom=foreign), sender=keeper)


def test_post_market_data__one_signature__reverts_below_threshold(post_market, signers):
    with ape.reverts("oracle: below threshold"):
        post_market(by=signers[:1])


def test_post_market_data__unsorted_signatures__reverts(oracle, make_market, keeper, domain, signers):
    data = make_market()
    sigs = sign_multi(data, domain, signers[:2])
    with ape.reverts("oracle: signers not in ascending order"):
        oracle.post_market_data(data.as_args(), list(reversed(sigs)), sender=keeper)


def test_post_market_data__empty_batch__reverts(oracle, keeper):
    empty = ([], [], [], [], [], [], [], PARAMS_HASH, 1, 2**64)
    with ape.reverts("oracle: empty batch"):
        oracle.post_market_data(empty, [], sender=keeper)


@pytest.mark.parametrize("field", [1, 2, 3, 4, 5, 6])
def test_post_market_data__array_length_mismatch__reverts(oracle, make_market, keeper, field):
    args = list(make_market().as_args())
    args[field] = args[field][:-1]
    with ape.reverts("oracle: array length mismatch"):
        oracle.post_market_data(tuple(args), [], sender=keeper)


@pytest.mark.parametrize("instrument_id", [0, 5])
def test_post_market_data__unknown_instrument__reverts(post_market, instrument_id):
    with ape.reverts("oracle: unknown instrument"):
        post_market(ids=[instrument_id])


@pytest.mark.parametrize("field", ["im_long_wad", "im_short_wad"])
def test_post_market_data__rate_above_128_bits__reverts(post_market, field):
    with ape.reverts("oracle: rate out of range"):
        post_market(ids=[1], **{field: [2**128]})


@pytest.mark.parametrize("side", ["long", "short"])
def test_post_market_data__initial_below_maintenance__reverts(post_market, side):
    with ape.reverts("oracle: initial rate below maintenance rate"):
        post_market(ids=[1], **{f"im_{side}_wad": [10], f"mm_{side}_wad": [11]})


@pytest.mark.parametrize(
    "field, value",
    [("marks_wad", INT96_MAX + 1), ("marks_wad", INT96_MIN - 1), ("funding_indices_wad", INT96_MAX + 1),
     ("funding_indices_wad", INT96_MIN - 1)],
)
def test_post_market_data__value_beyond_96_bits__reverts(post_market, field, value):
    with ape.reverts("oracle: mark or funding out of range"):
        post_market(ids=[1], **{field: [value]})


def test_marks__never_priced_id__reverts(oracle, post_market):
    post_market(ids=[1])
    with ape.reverts("oracle: no market data for instrument"):
        oracle.marks([1, 2])


def test_rates__never_priced_id__reverts(oracle):
    with ape.reverts("oracle: no market data for instrument"):
        oracle.rates(1)


def test_side_rates__never_priced_id__zero(oracle):
    # a view that never reverts: callers price the instrument first (marks() reverts)
    assert tuple(oracle.side_rates(1, True)) == tuple(oracle.side_rates(1, False)) == (0, 0)

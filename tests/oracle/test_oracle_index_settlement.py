"""RiskOracle.post_index_prices (bounded moves) and post_settlement_price (after expiry, final)."""

import ape
import pytest
from conftest import BTC, ETH, WAD

P0 = 60_000 * WAD  # first BTC index price; max move 20% per update (fixture)


# ------------------------------------------------------------------ index prices


def test_post_index_prices__first_prices__unbounded_stored_with_events(oracle, post_index):
    tx, data = post_index({BTC: P0, ETH: 3_000 * WAD})
    assert oracle.index_price(BTC) == (P0, data.timestamp)
    assert oracle.index_price(ETH) == (3_000 * WAD, data.timestamp)
    logs = tx.decode_logs(oracle.IndexPriceUpdated)
    assert [(log.underlying, log.price_wad, log.signed_at) for log in logs] == [
        (BTC, P0, data.timestamp),
        (ETH, 3_000 * WAD, data.timestamp),
    ]


@pytest.mark.parametrize("new_price", [P0 * 12 // 10, P0 * 8 // 10])
def test_post_index_prices__move_at_limit__accepted(oracle, post_index, now, new_price):
    t = now()
    post_index({BTC: P0}, timestamp=t - 10)
    post_index({BTC: new_price}, timestamp=t - 9)
    assert oracle.index_price(BTC) == (new_price, t - 9)


@pytest.mark.parametrize("new_price", [P0 * 12 // 10 + 1, P0 * 8 // 10 - 1])
def test_post_index_prices__move_above_limit__reverts_and_keeps_price(oracle, post_index, now, new_price):
    t = now()
    post_index({BTC: P0}, timestamp=t - 10)
    with ape.reverts("oracle: index move above limit"):
        post_index({BTC: new_price}, timestamp=t - 9)
    assert oracle.index_price(BTC) == (P0, t - 10)


def test_post_index_prices__limit_lowered_by_owner__applies_next_update(oracle, admin, post_index, now):
    t = now()
    post_index({BTC: P0}, timestamp=t - 10)
    oracle.set_max_index_move_bps(100, sender=admin)
    with ape.reverts("oracle: index move above limit"):
        post_index({BTC: P0 * 102 // 100}, timestamp=t - 9)
    post_index({BTC: P0 * 101 // 100}, timestamp=t - 9)


def test_post_index_prices__replayed__reverts(oracle, post_index, keeper, sign):
    _, data = post_index({BTC: P0})
    with ape.reverts("oracle: index price not newer than stored"):
        oracle.post_index_prices(data.as_args(), sign(data), sender=keeper)


def test_post_index_prices__older__reverts(post_index, now):
    t = now()
    post_index({BTC: P0}, timestamp=t)
    with ape.reverts("oracle: index price not newer than stored"):
        post_index({BTC: P0}, timestamp=t - 1)


def test_post_index_prices__same_underlying_twice_in_batch__reverts(oracle, keeper, sign, now):
    from offchain.chain.eip712 import IndexPrices

    data = IndexPrices(underlyings=[BTC, BTC], prices_wad=[P0, P0], timestamp=now(), deadline=now() + 60)
    with ape.reverts("oracle: index price not newer than stored"):
        oracle.post_index_prices(data.as_args(), sign(data), sender=keeper)


def test_post_index_prices__zero_price__reverts(post_index):
    with ape.reverts("oracle: index price must be > 0"):
        post_index({BTC: 0})


def test_post_index_prices__empty_underlying__reverts(post_index):
    with ape.reverts("oracle: empty underlying"):
        post_index({b"\0" * 32: P0})


def test_post_index_prices__empty_batch__reverts(oracle, keeper):
    with ape.reverts("oracle: empty batch"):
        oracle.post_index_prices(([], [], 1, 2**64), [], sender=keeper)


def test_post_index_prices__length_mismatch__reverts(oracle, keeper):
    with ape.reverts("oracle: array length mismatch"):
        oracle.post_index_prices(([BTC, ETH], [P0], 1, 2**64), [], sender=keeper)


def test_post_index_prices__future_dated__reverts(post_index, now):
    with ape.reverts("oracle: timestamp in the future"):
        post_index({BTC: P0}, timestamp=now() + 3_600)


def test_post_index_prices__deadline_passed__reverts(post_index, now):
    with ape.reverts("oracle: deadline passed"):
        post_index({BTC: P0}, timestamp=now() - 100, deadline=now() - 1)


def test_post_index_prices__one_signature__reverts(post_index, signers):
    with ape.reverts("oracle: below threshold"):
        post_index({BTC: P0}, by=signers[:1])


def test_post_index_prices__outsider_signer__reverts(post_index, signers, outsider_signer):
    with ape.reverts("oracle: not a signer"):
        post_index({BTC: P0}, by=[signers[0], outsider_signer])


def test_index_price__never_posted__zeros(oracle):
    assert oracle.index_price(ETH) == (0, 0)


# ------------------------------------------------------------------ settlement prices


@pytest.mark.parametrize("instrument_id", [2, 3, 4])
def test_post_settlement_price__after_expiry__final_with_event(
    oracle, post_settlement, expire_instruments, instrument_id
):
    expire_instruments()
    tx, data = post_settlement(instrument_id, 61_000 * WAD)
    assert oracle.settlement_price(instrument_id) == 61_000 * WAD
    [log] = tx.decode_logs(oracle.SettlementPriceSet)
    assert (log.instrument_id, log.price_wad, log.signed_at) == (instrument_id, 61_000 * WAD, data.timestamp)


def test_post_settlement_price__before_expiry__reverts(oracle, post_settlement):
    with ape.reverts("oracle: instrument not expired"):
        post_settlement(2, 61_000 * WAD)
    assert oracle.settlement_price(2) == 0


def test_post_settlement_price__twice__reverts_first_is_final(oracle, post_settlement, expire_instruments, now):
    expire_instruments()
    post_settlement(2, 61_000 * WAD)
    with ape.reverts("oracle: settlement price already final"):
        post_settlement(2, 59_000 * WAD, timestamp=now())
    assert oracle.settlement_price(2) == 61_000 * WAD


def test_post_settlement_price__observed_before_expiry__reverts(post_settlement, expire_instruments, registry):
    expire_instruments()
    with ape.reverts("oracle: price observed before expiry"):
        post_settlement(2, 61_000 * WAD, timestamp=registry.instrument(2).expiry - 1)


def test_post_settlement_price__perpetual__reverts(post_settlement, expire_instruments):
    expire_instruments()
    with ape.reverts("oracle: perpetual has no settlement"):
        post_settlement(1, 61_000 * WAD)


def test_post_settlement_price__unknown_instrument__reverts(post_settlement):
    with ape.reverts("registry: unknown instrument"):
        post_settlement(9, 61_000 * WAD)


def test_post_settlement_price__zero_price__reverts(post_settlement, expire_instruments):
    expire_instruments()
    with ape.reverts("oracle: settlement price must be > 0"):
        post_settlement(2, 0)


def test_post_settlement_price__future_dated__reverts(post_settlement, expire_instruments, now):
    expire_instruments()
    with ape.reverts("oracle: timestamp in the future"):
        post_settlement(2, 61_000 * WAD, timestamp=now() + 3_600)


def test_post_settlement_price__deadline_passed__reverts(post_settlement, expire_instruments, now):
    expire_instruments()
    with ape.reverts("oracle: deadline passed"):
        post_settlement(2, 61_000 * WAD, timestamp=now() - 10, deadline=now() - 1)


def test_post_settlement_price__one_signature__reverts(post_settlement, expire_instruments, signers):
    expire_instruments()
    with ape.reverts("oracle: below threshold"):
        post_settlement(2, 61_000 * WAD, by=signers[:1])


def test_post_settlement_price__tampered__reverts(oracle, keeper, sign, expire_instruments, now):
    from offchain.chain.eip712 import SettlementPrice

    expire_instruments()
    data = SettlementPrice(instrument_id=2, price_wad=61_000 * WAD, timestamp=now(), deadline=now() + 60)
    sigs = sign(data)
    tampered = SettlementPrice(instrument_id=2, price_wad=1, timestamp=data.timestamp, deadline=data.deadline)
    with ape.reverts("oracle: not a signer"):
        oracle.post_settlement_price(tampered.as_args(), sigs, sender=keeper)

"""InstrumentRegistry: listing rules, delisting, retiring, views, two-step ownership."""

import ape
import pytest
from conftest import (
    BTC,
    DAY,
    ETH,
    FUTURE_EXPIRY_DAYS,
    KIND_CALL,
    KIND_FUTURE,
    KIND_PERPETUAL,
    KIND_PUT,
    STRIKE_WAD,
)


@pytest.fixture
def later(chain):
    return chain.pending_timestamp + 7 * DAY


def test_fixture_registry__four_btc_instruments__listed_in_order(registry):
    assert registry.instrument_count() == 4
    kinds = [registry.instrument(i).kind for i in range(1, 5)]
    assert kinds == [KIND_PERPETUAL, KIND_FUTURE, KIND_CALL, KIND_PUT]
    call = registry.instrument(3)
    assert (call.underlying, call.strike_wad, call.active) == (BTC, STRIKE_WAD, True)


@pytest.mark.parametrize(
    "kind, strike, has_expiry",
    [(KIND_FUTURE, 0, True), (KIND_PERPETUAL, 0, False), (KIND_CALL, 3_000, True), (KIND_PUT, 2_500, True)],
)
def test_list_instrument__valid_kind__next_id_and_event(registry, admin, later, kind, strike, has_expiry):
    expiry = later if has_expiry else 0
    tx = registry.list_instrument(ETH, kind, strike, expiry, sender=admin)
    assert tx.return_value == 5
    assert registry.instrument_count() == 5
    item = registry.instrument(5)
    assert (item.underlying, item.kind, item.strike_wad, item.expiry, item.active) == (ETH, kind, strike, expiry, True)
    [log] = tx.decode_logs(registry.InstrumentListed)
    assert (log.instrument_id, log.underlying, log.kind, log.strike_wad, log.expiry) == (5, ETH, kind, strike, expiry)


def test_list_instrument__non_owner__reverts(registry, attacker, later):
    with ape.reverts("ownable: caller is not the owner"):
        registry.list_instrument(ETH, KIND_FUTURE, 0, later, sender=attacker)


@pytest.mark.parametrize(
    "underlying, kind, strike, expiry_offset, reason",
    [
        (b"\0" * 32, KIND_FUTURE, 0, DAY, "registry: empty underlying"),
        (ETH, 4, 0, DAY, "registry: unknown kind"),
        (ETH, KIND_PERPETUAL, 1, None, "registry: perpetual takes no strike"),
        (ETH, KIND_PERPETUAL, 0, DAY, "registry: perpetual takes no expiry"),
        (ETH, KIND_FUTURE, 0, None, "registry: expiry not in the future"),
        (ETH, KIND_FUTURE, 0, -DAY, "registry: expiry not in the future"),
        (ETH, KIND_FUTURE, 5, DAY, "registry: future takes no strike"),
        (ETH, KIND_CALL, 0, DAY, "registry: option needs a strike"),
        (ETH, KIND_PUT, 0, DAY, "registry: option needs a strike"),
        (ETH, KIND_CALL, 1, -DAY, "registry: expiry not in the future"),
        (ETH, KIND_PUT, 1, None, "registry: expiry not in the future"),
    ],
)
def test_list_instrument__invalid_fields__reverts_and_lists_nothing(
    registry, admin, chain, underlying, kind, strike, expiry_offset, reason
):
    expiry = 0 if expiry_offset is None else chain.pending_timestamp + expiry_offset
    with ape.reverts(reason):
        registry.list_instrument(underlying, kind, strike, expiry, sender=admin)
    assert registry.instrument_count() == 4


def test_list_instrument__expiry_above_64_bits__reverts(registry, admin):
    # the expiry is packed into 64 bits of the instrument's terms word
    with ape.reverts("registry: expiry above 2**64 - 1"):
        registry.list_instrument(ETH, KIND_FUTURE, 0, 2**64, sender=admin)
    assert registry.instrument_count() == 4


def test_list_instrument__same_contract_twice__reverts(registry, admin):
    with ape.reverts("registry: instrument already listed"):
        registry.list_instrument(BTC, KIND_PERPETUAL, 0, 0, sender=admin)


def test_delist__active_instrument__inactive_and_event(registry, admin):
    tx = registry.delist(3, sender=admin)
    assert not registry.instrument(3).active
    assert [log.instrument_id for log in tx.decode_logs(registry.InstrumentDelisted)] == [3]


def test_delist__twice__reverts(registry, admin):
    registry.delist(3, sender=admin)
    with ape.reverts("registry: instrument not active"):
        registry.delist(3, sender=admin)


@pytest.mark.parametrize("instrument_id", [0, 5])
def test_delist__unknown_id__reverts(registry, admin, instrument_id):
    with ape.reverts("registry: unknown instrument"):
        registry.delist(instrument_id, sender=admin)


def test_delist__non_owner__reverts(registry, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        registry.delist(1, sender=attacker)


def test_retire_expired__after_expiry__anyone_deactivates_with_event(registry, attacker, expire_instruments):
    expire_instruments()
    tx = registry.retire_expired(2, sender=attacker)
    assert not registry.instrument(2).active
    [log] = tx.decode_logs(registry.InstrumentRetired)
    assert (log.instrument_id, log.caller) == (2, attacker.address)


def test_retire_expired__before_expiry__reverts(registry, attacker):
    with ape.reverts("registry: not expired yet"):
        registry.retire_expired(2, sender=attacker)


def test_retire_expired__perpetual__reverts(registry, attacker, expire_instruments):
    expire_instruments()
    with ape.reverts("registry: perpetual never expires"):
        registry.retire_expired(1, sender=attacker)


def test_retire_expired__already_inactive__reverts(registry, admin, attacker, expire_instruments):
    registry.delist(2, sender=admin)
    expire_instruments()
    with ape.reverts("registry: instrument not active"):
        registry.retire_expired(2, sender=attacker)


def test_retire_expired__unknown_id__reverts(registry, attacker):
    with ape.reverts("registry: unknown instrument"):
        registry.retire_expired(99, sender=attacker)


@pytest.mark.parametrize("instrument_id", [0, 5, 2**256 - 1])
def test_instrument__unknown_id__reverts(registry, instrument_id):
    with ape.reverts("registry: unknown instrument"):
        registry.instrument(instrument_id)


@pytest.mark.parametrize("instrument_id", [0, 5, 2**256 - 1])
def test_trading_terms__unknown_id__reverts(registry, instrument_id):
    with ape.reverts("registry: unknown instrument"):
        registry.trading_terms(instrument_id)


def test_trading_terms__follow_listing_delisting_and_retiring(registry, admin, attacker, expire_instruments):
    perp, future = registry.trading_terms(1), registry.trading_terms(2)
    assert (perp.expiry, perp.active) == (0, True)
    assert (future.expiry, future.active) == (registry.instrument(2).expiry, True)
    registry.delist(1, sender=admin)
    expire_instruments()
    registry.retire_expired(2, sender=attacker)
    for iid in (1, 2):
        terms, item = registry.trading_terms(iid), registry.instrument(iid)
        assert (terms.expiry, terms.active) == (item.expiry, False)


def test_instruments__page_past_end__cut_at_last_id(registry):
    page = registry.instruments(3, 10)
    assert [p.kind for p in page] == [KIND_CALL, KIND_PUT]
    assert registry.instruments(5, 10) == []


def test_instruments__first_id_zero__reverts(registry):
    with ape.reverts("registry: ids start at 1"):
        registry.instruments(0, 1)


def test_instruments__page_above_max__reverts(registry):
    with ape.reverts("registry: page too large"):
        registry.instruments(1, 65)


def test_transfer_ownership__two_step__new_owner_only_after_accept(registry, admin, keeper, attacker, later):
    tx = registry.transfer_ownership(keeper, sender=admin)
    assert tx.decode_logs(registry.OwnershipTransferStarted)[0].new_owner == keeper.address
    assert registry.owner() == admin.address and registry.pending_owner() == keeper.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        registry.accept_ownership(sender=attacker)
    registry.accept_ownership(sender=keeper)
    assert registry.owner() == keeper.address and registry.pending_owner() == ape.utils.ZERO_ADDRESS
    with ape.reverts("ownable: caller is not the owner"):
        registry.list_instrument(ETH, KIND_FUTURE, 0, later, sender=admin)
    registry.list_instrument(ETH, KIND_FUTURE, 0, later, sender=keeper)


def test_transfer_ownership__non_owner__reverts(registry, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        registry.transfer_ownership(attacker, sender=attacker)


def test_renounce_ownership__not_exposed(registry):
    assert not hasattr(registry, "renounce_ownership")


def test_fixture_expiry__thirty_days_out(registry, chain):
    expiry = registry.instrument(2).expiry
    assert 0 < expiry - chain.blocks.head.timestamp <= FUTURE_EXPIRY_DAYS * DAY

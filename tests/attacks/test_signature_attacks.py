"""Signature attacks through the engine: every bad attestation goes through
MarginEngine.post_attestation (oracle check + engine nonce/timestamp binding) and every bad
order through MarginEngine.fill, and each revert leaves the accounts exactly as they were.
(tests/oracle covers RiskOracle.check_attestation on its own.)
"""

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from eth_account import Account

from offchain.chain.eip712 import SECP256K1_N, Domain, sign_multi
from offchain.chain.orders import EngineDomain, sign_order

from .conftest import BTC_MARK, PERP

IM, MM = 9_000 * WAD, 4_500 * WAD


@pytest.fixture(scope="module")
def book(desk, trader, maker, taker, attacker, outsider_signer, oracle, registry, admin):
    """Trader long 1 BTC perp against the maker; marks fresh. Restored before every test."""
    desk.fund(trader, 100_000 * 10**6)
    desk.fund(maker, 100_000 * 10**6)
    desk.post_marks()
    desk.trade(maker, trader, PERP, -WAD, BTC_MARK)
    return desk


@pytest.fixture
def signed(book, trader):
    """A valid attestation for the trader's current state and its 2-of-3 signatures."""
    book.mine(1)
    att = book.attestation(trader, IM, MM)
    return att, sign_multi(att, book.domain, book.signers[:2])


def _post_reverts(book, att, sigs, reason, *accounts):
    before = book.snapshot(*accounts)
    with ape.reverts(reason):
        book.engine.post_attestation(att.as_args(), sigs, sender=book.poster)
    assert book.snapshot(*accounts) == before


def _malleate(sig: bytes) -> bytes:
    """(r, n - s, flipped v): the same signer's high-s twin."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


# ------------------------------------------------------------------ attestations


def test_post_attestation__valid__stored_and_pending_cleared(book, signed, trader):
    att, sigs = signed
    assert book.engine.account(trader).pending_im_wad > 0
    book.engine.post_attestation(att.as_args(), sigs, sender=book.poster)
    view = book.engine.account(trader)
    assert (view.attested_im_wad, view.attested_mm_wad, view.pending_im_wad) == (IM, MM, 0)


def test_post_attestation__replayed__reverts_not_newer(book, signed, trader):
    att, sigs = signed
    book.engine.post_attestation(att.as_args(), sigs, sender=book.poster)
    _post_reverts(book, att, sigs, "engine: attestation not newer", trader)


def test_post_attestation__replayed_after_position_change__reverts_wrong_state_nonce(
    book, signed, trader, maker
):
    att, sigs = signed
    book.trade(maker, trader, PERP, -WAD, BTC_MARK)  # bumps the trader's state nonce
    _post_reverts(book, att, sigs, "engine: wrong state nonce", trader)


def test_post_attestation__older_than_posted__reverts_not_newer(book, signed, trader):
    old_att, old_sigs = signed  # signed first, with a lower margin (what an attacker keeps)
    book.mine(5)
    newer = book.attestation(trader, 2 * IM, 2 * MM)
    book.engine.post_attestation(newer.as_args(), sign_multi(newer, book.domain, book.signers[:2]),
                                 sender=book.poster)
    _post_reverts(book, old_att, old_sigs, "engine: attestation not newer", trader)
    assert book.engine.account(trader).attested_im_wad == 2 * IM


def test_post_attestation__expired__reverts_deadline_passed(book, trader):
    att = book.attestation(trader, IM, MM, timestamp=book.now() - 60, deadline=book.now() - 1)
    _post_reverts(book, att, sign_multi(att, book.domain, book.signers[:2]), "oracle: deadline passed", trader)


def test_post_attestation__future_dated__reverts(book, trader):
    att = book.attestation(trader, IM, MM, timestamp=book.now() + 3_600, deadline=book.now() + 7_200)
    _post_reverts(book, att, sign_multi(att, book.domain, book.signers[:2]),
                  "oracle: timestamp in the future", trader)


@pytest.mark.parametrize(
    "field, value",
    [("initial_margin_wad", 0), ("maintenance_margin_wad", 0), ("state_nonce", 0), ("timestamp", 1),
     ("params_hash", b"\x42" * 32), ("position_value_wad", 10**24)],
)
def test_post_attestation__tampered_field__reverts(book, signed, trader, field, value):
    att, sigs = signed
    tampered = type(att)(**{**att.message(), field: value})
    reason = {"params_hash": "oracle: params hash mismatch",
              "initial_margin_wad": "oracle: initial margin below maintenance margin"}.get(field, "oracle: not a signer")
    _post_reverts(book, tampered, sigs, reason, trader)


def test_post_attestation__other_accounts_attestation__reverts(book, signed, trader, attacker):
    """The attacker re-targets the trader's low-margin attestation at itself."""
    att, sigs = signed
    stolen = type(att)(**{**att.message(), "account": attacker.address, "state_nonce": 0})
    _post_reverts(book, stolen, sigs, "oracle: not a signer", trader, attacker)


def test_post_attestation__foreign_chain__reverts(book, trader):
    att = book.attestation(trader, IM, MM)
    foreign = Domain(chain_id=book.domain.chain_id + 1, verifying_contract=book.domain.verifying_contract)
    _post_reverts(book, att, sign_multi(att, foreign, book.signers[:2]), "oracle: not a signer", trader)


def test_post_attestation__signed_for_another_oracle__reverts(book, project, admin, registry, trader):
    """A second RiskOracle with the same signers (e.g. a testnet deployment): its signatures
    do not count on this one."""
    other = project.RiskOracle.deploy(registry, [s.address for s in book.signers], 2, PARAMS_HASH, 2_000,
                                      sender=admin)
    att = book.attestation(trader, IM, MM)
    foreign = Domain(chain_id=book.domain.chain_id, verifying_contract=other.address)
    sigs = sign_multi(att, foreign, book.signers[:2])
    other.check_attestation(att.as_args(), sigs)  # valid where it was meant to be
    _post_reverts(book, att, sigs, "oracle: not a signer", trader)


def test_post_attestation__high_s_twin__reverts(book, signed, trader):
    att, sigs = signed
    _post_reverts(book, att, [_malleate(sigs[0]), sigs[1]], "oracle: high-s signature", trader)


def test_post_attestation__zero_signature__reverts(book, signed, trader):
    att, sigs = signed
    _post_reverts(book, att, [b"\0" * 65, sigs[1]], "oracle: signature v must be 27 or 28", trader)


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (bytes(range(1, 65)) + b"\x1c", "oracle: invalid signature"),  # r off the curve
        (b"\xff" * 65, "oracle: signature v must be 27 or 28"),
        (b"\x01" * 20, "oracle: signature must be 65 bytes"),
    ],
)
def test_post_attestation__garbage_signature__reverts(book, signed, trader, garbage, reason):
    att, sigs = signed
    _post_reverts(book, att, [garbage, sigs[1]], reason, trader)


def test_post_attestation__revoked_signer__reverts(book, signed, trader, admin, oracle):
    att, sigs = signed  # signed while both signers were valid, posted after the revocation
    oracle.remove_signer(book.signers[0].address, sender=admin)
    _post_reverts(book, att, sigs, "oracle: not a signer", trader)


def test_post_attestation__one_signer_below_threshold__reverts(book, trader):
    att = book.attestation(trader, IM, MM)
    _post_reverts(book, att, sign_multi(att, book.domain, book.signers[:1]), "oracle: below threshold", trader)


def test_post_attestation__one_signer_twice__reverts_duplicate(book, signed, trader):
    att, sigs = signed
    _post_reverts(book, att, [sigs[0], sigs[0]], "oracle: duplicate signer", trader)


def test_post_attestation__one_signer_plus_outsider__reverts(book, trader, outsider_signer):
    att = book.attestation(trader, IM, MM)
    sigs = sign_multi(att, book.domain, [book.signers[0], outsider_signer])
    _post_reverts(book, att, sigs, "oracle: not a signer", trader)


def test_remove_signer__set_would_fall_below_threshold__reverts(oracle, admin, signers):
    oracle.remove_signer(signers[0].address, sender=admin)  # 2 left, threshold 2
    with ape.reverts("oracle: would leave fewer signers than threshold"):
        oracle.remove_signer(signers[1].address, sender=admin)
    with ape.reverts("oracle: threshold out of range"):
        oracle.set_threshold(3, sender=admin)
    assert oracle.signer_count() == 2 and oracle.threshold() == 2


# ------------------------------------------------------------------ orders


@pytest.fixture
def order(book, maker):
    """The maker's valid order to sell 2 BTC at the mark, and its signature."""
    return book.order(maker, PERP, -2 * WAD, BTC_MARK)


def _fill_reverts(book, order, sig, size, taker, reason):
    before = book.snapshot(order.account, taker)
    filled = book.engine.order_filled(book.engine.order_hash(order.as_args()))
    with ape.reverts(reason):
        book.engine.fill(order.as_args(), sig, size, sender=taker)
    assert book.snapshot(order.account, taker) == before
    assert book.engine.order_filled(book.engine.order_hash(order.as_args())) == filled


def test_fill__replayed_beyond_size__reverts(book, order, taker):
    o, sig = order
    book.fund(taker, 100_000 * 10**6)
    book.engine.fill(o.as_args(), sig, 2 * WAD, sender=taker)
    _fill_reverts(book, o, sig, 1, taker, "engine: fill exceeds remaining size")


def test_fill__compact_eip2098_twin_of_used_signature__reverts(book, order, taker):
    """The 64-byte encoding of the same signature is the same order: no second fill."""
    o, sig = order
    book.fund(taker, 100_000 * 10**6)
    book.engine.fill(o.as_args(), sig, 2 * WAD, sender=taker)
    vs = int.from_bytes(sig[32:64], "big") | ((sig[64] - 27) << 255)
    _fill_reverts(book, o, sig[:32] + vs.to_bytes(32, "big"), WAD, taker, "engine: fill exceeds remaining size")


def test_fill__expired_order__reverts(book, maker, taker):
    o, sig = book.order(maker, PERP, -WAD, BTC_MARK, deadline=book.now())
    book.mine(1)
    _fill_reverts(book, o, sig, WAD, taker, "engine: order expired")


def test_fill__cancelled_order__reverts(book, order, maker, taker):
    o, sig = order
    book.engine.cancel_order(o.as_args(), sender=maker)
    _fill_reverts(book, o, sig, WAD, taker, "engine: order cancelled")


@pytest.mark.parametrize(
    "field, value", [("limit_price_wad", 1), ("is_buy", True), ("size_wad", 10**9 * WAD), ("instrument_id", 2)]
)
def test_fill__tampered_order__reverts(book, order, taker, field, value):
    o, sig = order
    tampered = type(o)(**{**o.message(), field: value})
    _fill_reverts(book, tampered, sig, WAD, taker, "engine: invalid signature")


def test_fill__order_for_another_account__reverts(book, order, trader, taker, attacker):
    """The attacker forges an order in the trader's name with its own key."""
    o, _ = order
    forged = type(o)(**{**o.message(), "account": trader.address})
    sig = sign_order(type(o)(**{**o.message(), "account": attacker.address}), book.engine_domain,
                     book.keys[attacker.address])
    _fill_reverts(book, forged, sig, WAD, taker, "engine: invalid signature")


def test_fill__foreign_chain__reverts(book, order, maker, taker):
    o, _ = order
    foreign = EngineDomain(chain_id=book.engine_domain.chain_id + 1, verifying_contract=book.engine.address)
    _fill_reverts(book, o, sign_order(o, foreign, book.keys[maker.address]), WAD, taker, "engine: invalid signature")


@pytest.mark.parametrize("contract", ["oracle", "registry"])
def test_fill__signed_for_another_contract__reverts(book, order, maker, taker, contract, request):
    o, _ = order
    other = request.getfixturevalue(contract)
    foreign = EngineDomain(chain_id=book.engine_domain.chain_id, verifying_contract=other.address)
    _fill_reverts(book, o, sign_order(o, foreign, book.keys[maker.address]), WAD, taker, "engine: invalid signature")


def test_fill__high_s_twin__reverts(book, order, taker):
    o, sig = order
    _fill_reverts(book, o, _malleate(sig), WAD, taker, "ecdsa: invalid signature `s` value")


def test_fill__zero_signature__reverts(book, order, taker):
    o, _ = order
    _fill_reverts(book, o, b"\0" * 65, WAD, taker, "ecdsa: invalid signature")


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (bytes(range(1, 65)) + b"\x1c", "ecdsa: invalid signature"),
        (b"", "engine: invalid signature"),
        (b"\x07" * 30, "engine: invalid signature"),
    ],
)
def test_fill__garbage_signature__reverts(book, order, taker, garbage, reason):
    o, _ = order
    _fill_reverts(book, o, garbage, WAD, taker, reason)


def test_fill__signed_by_random_key__reverts(book, order, taker):
    o, _ = order
    stranger = Account.from_key(b"\x09" * 32)
    sig = sign_order(type(o)(**{**o.message(), "account": stranger.address}), book.engine_domain, stranger)
    _fill_reverts(book, o, sig, WAD, taker, "engine: invalid signature")

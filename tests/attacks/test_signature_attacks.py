"""Signature attacks through the engine: every bad epoch root goes through RiskOracle.post_root
and its leaf through MarginEngine.apply_leaf (proof, nonce, positions hash, basis binding),
every bad order through MarginEngine.fill, and each revert leaves the accounts exactly as
they were. (tests/oracle covers the signature check and the root rules on their own.)
"""

from dataclasses import replace

import ape
import pytest
from conftest import PARAMS_HASH, WAD
from eth_account import Account

from offchain.chain.eip712 import SECP256K1_N, Domain, EpochRoot
from offchain.chain.leaves import positions_hash
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
    """A valid root (next epoch) holding a leaf for the trader's current book, signed 2 of 3."""
    book.mine(1)
    return book.root([book.leaf(trader, IM, MM)])


def _post_reverts(book, root, sigs, reason, *accounts):
    before = book.snapshot(*accounts), book.oracle.epoch_root(book.engine)
    with ape.reverts(reason):
        book.oracle.post_root(root.as_args(), sigs, sender=book.poster)
    assert (book.snapshot(*accounts), book.oracle.epoch_root(book.engine)) == before


def _apply_reverts(book, leaf_args, proof, reason, *accounts):
    before = book.snapshot(*accounts)
    with ape.reverts(reason):
        book.engine.apply_leaf(leaf_args, proof, sender=book.poster)
    assert book.snapshot(*accounts) == before


def _post(book, root):
    book.oracle.post_root(*root.post_args(), sender=book.poster)


def _malleate(sig: bytes) -> bytes:
    """(r, n - s, flipped v): the same signer's high-s twin."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


# ------------------------------------------------------------------ roots and leaves


def test_apply_leaf__valid__margins_replaced_and_pending_cleared(book, signed, trader):
    assert book.engine.health(trader).im_wad == 6_000 * WAD  # the trade's standalone bound
    _post(book, signed)
    book.engine.apply_leaf(*signed.apply_args(trader), sender=book.poster)
    h = book.engine.health(trader)
    assert (h.im_wad, h.mm_wad) == (IM, MM)


def test_apply_leaf__replayed__reverts_not_newer(book, signed, trader):
    _post(book, signed)
    book.engine.apply_leaf(*signed.apply_args(trader), sender=book.poster)
    _apply_reverts(book, *signed.apply_args(trader), "engine: leaf not newer than margin basis", trader)


def test_post_root__replayed__reverts_epoch_not_newer(book, signed, trader):
    _post(book, signed)
    _post_reverts(book, signed.message, signed.signatures, "oracle: epoch not newer than stored", trader)


def test_apply_leaf__after_position_change__applies_with_the_trades_bound(book, signed, trader, maker):
    """A leaf in flight is not voided by a trade of its book (a 1-wei fill included): it
    applies with the pending bound of every trade since its nonce."""
    _post(book, signed)
    book.trade(maker, trader, PERP, -1, BTC_MARK)  # bumps the trader's state nonce
    book.engine.apply_leaf(*signed.apply_args(trader), sender=book.poster)
    assert book.engine.health(trader).im_wad == IM + 6_000  # 1 wei at 6,000 per unit, rounded up


def test_apply_leaf__older_epoch_than_posted__reverts_invalid_proof(book, signed, trader):
    """An attacker keeps the lower leaf of an older epoch: once a newer root is posted, the
    older proof no longer verifies."""
    _post(book, signed)  # low margin, epoch k
    book.mine(5)
    newer = book.root([book.leaf(trader, 2 * IM, 2 * MM)])
    _post(book, newer)
    book.engine.apply_leaf(*newer.apply_args(trader), sender=book.poster)
    _apply_reverts(book, *signed.apply_args(trader), "oracle: invalid proof", trader)
    assert book.engine.health(trader).im_wad == 2 * IM


def test_post_root__stale_epoch__reverts(book, signed, trader):
    """A root signed for epoch k cannot be posted after epoch k (or later) was."""
    newer = book.root([book.leaf(trader, 2 * IM, 2 * MM)])  # same epoch number as `signed`
    book.mine(1)
    _post(book, newer)
    _post_reverts(book, signed.message, signed.signatures, "oracle: epoch not newer than stored", trader)


def test_post_root__expired__reverts_deadline_passed(book, trader):
    root = book.root([book.leaf(trader, IM, MM)], timestamp=book.now() - 60, deadline=book.now() - 1)
    _post_reverts(book, root.message, root.signatures, "oracle: deadline passed", trader)


def test_post_root__future_dated__reverts(book, trader):
    root = book.root([book.leaf(trader, IM, MM)], timestamp=book.now() + 3_600, deadline=book.now() + 7_200)
    _post_reverts(book, root.message, root.signatures, "oracle: timestamp in the future", trader)


@pytest.mark.parametrize(
    "field, value",
    [("accounts_root", b"\x42" * 32), ("epoch", 10**6), ("timestamp", 1), ("params_hash", b"\x42" * 32),
     ("account_count", 10**6)],
)
def test_post_root__tampered_field__reverts(book, signed, trader, field, value):
    tampered = EpochRoot(**{**signed.message.message(), field: value})
    reason = {"params_hash": "oracle: params hash mismatch"}.get(field, "oracle: not a signer")
    _post_reverts(book, tampered, signed.signatures, reason, trader)


@pytest.mark.parametrize(
    "field, value",
    [("initial_margin_wad", 0), ("maintenance_margin_wad", 0), ("state_nonce", 0), ("pending_base_im_wad", 1),
     ("position_value_wad", 10**24)],
)
def test_apply_leaf__tampered_leaf__reverts(book, signed, trader, field, value):
    _post(book, signed)
    leaf, proof = signed.proof(trader)
    tampered = replace(leaf, **{field: value})
    reason = {"initial_margin_wad": "oracle: initial margin below maintenance margin"}.get(field,
                                                                                           "oracle: invalid proof")
    _apply_reverts(book, tampered.as_args(), proof, reason, trader)


def test_apply_leaf__other_accounts_leaf__reverts(book, trader, attacker):
    """The attacker re-targets the trader's low-margin leaf at itself: the proof breaks, and a
    leaf of its own book signed for the trader's book never applies."""
    book.mine(1)
    root = book.root([book.leaf(trader, IM, MM), book.leaf(attacker, 0, 0,
                                                           positions_hash=positions_hash([PERP], [WAD]))])
    _post(book, root)
    leaf, proof = root.proof(trader)
    stolen = replace(leaf, account=attacker.address, state_nonce=0)
    _apply_reverts(book, stolen.as_args(), proof, "oracle: invalid proof", trader, attacker)
    _apply_reverts(book, *root.apply_args(attacker), "engine: leaf for another book", trader, attacker)


def test_post_root__foreign_chain__reverts(book, trader):
    foreign = Domain(chain_id=book.domain.chain_id + 1, verifying_contract=book.domain.verifying_contract)
    root = book.root([book.leaf(trader, IM, MM)], domain=foreign)
    _post_reverts(book, root.message, root.signatures, "oracle: not a signer", trader)


def test_post_root__signed_for_another_oracle__reverts(book, project, admin, registry, trader):
    """A second RiskOracle with the same signers (e.g. a testnet deployment): its signatures
    do not count on this one."""
    other = project.RiskOracle.deploy(registry, [s.address for s in book.signers], 2, PARAMS_HASH, 2_000,
                                      sender=admin)
    foreign = Domain(chain_id=book.domain.chain_id, verifying_contract=other.address)
    root = book.root([book.leaf(trader, IM, MM)], domain=foreign)
    other.post_root(*root.post_args(), sender=book.poster)  # valid where it was meant to be
    _post_reverts(book, root.message, root.signatures, "oracle: not a signer", trader)


def test_post_root__high_s_twin__reverts(book, signed, trader):
    sigs = signed.signatures
    _post_reverts(book, signed.message, [_malleate(sigs[0]), sigs[1]], "oracle: high-s signature", trader)


def test_post_root__zero_signature__reverts(book, signed, trader):
    _post_reverts(book, signed.message, [b"\0" * 65, signed.signatures[1]], "oracle: signature v must be 27 or 28",
                  trader)


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (bytes(range(1, 65)) + b"\x1c", "oracle: invalid signature"),  # r off the curve
        (b"\xff" * 65, "oracle: signature v must be 27 or 28"),
        (b"\x01" * 20, "oracle: signature must be 65 bytes"),
    ],
)
def test_post_root__garbage_signature__reverts(book, signed, trader, garbage, reason):
    _post_reverts(book, signed.message, [garbage, signed.signatures[1]], reason, trader)


def test_post_root__revoked_signer__reverts(book, signed, trader, admin, oracle):
    # signed while both signers were valid, posted after the revocation
    oracle.remove_signer(book.signers[0].address, sender=admin)
    _post_reverts(book, signed.message, signed.signatures, "oracle: not a signer", trader)


def test_post_root__one_signer_below_threshold__reverts(book, trader):
    root = book.root([book.leaf(trader, IM, MM)], by=book.signers[:1])
    _post_reverts(book, root.message, root.signatures, "oracle: below threshold", trader)


def test_post_root__one_signer_twice__reverts_duplicate(book, signed, trader):
    sig = signed.signatures[0]
    _post_reverts(book, signed.message, [sig, sig], "oracle: duplicate signer", trader)


def test_post_root__one_signer_plus_outsider__reverts(book, trader, outsider_signer):
    root = book.root([book.leaf(trader, IM, MM)], by=sorted([book.signers[0], outsider_signer],
                                                            key=lambda a: int(a.address, 16)))
    _post_reverts(book, root.message, root.signatures, "oracle: not a signer", trader)


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

"""RiskOracle.check_attestation: signature rules (every revert path) and gas."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD

from offchain.chain.eip712 import SECP256K1_N, Domain, sign, sign_multi


@pytest.fixture
def att(make_attestation, trader):
    return make_attestation(
        trader, state_nonce=3, position_value_wad=-1_500 * WAD, initial_margin_wad=900 * WAD,
        maintenance_margin_wad=450 * WAD,
    )


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2)])
def test_check_attestation__any_two_of_three__passes(oracle, att, domain, signers, pair):
    oracle.check_attestation(att.as_args(), sign_multi(att, domain, [signers[i] for i in pair]))


def test_check_attestation__all_three_signers__passes(oracle, att, domain, signers):
    oracle.check_attestation(att.as_args(), sign_multi(att, domain, signers))


def test_check_attestation__one_signature__reverts_below_threshold(oracle, att, domain, signers):
    with ape.reverts("oracle: below threshold"):
        oracle.check_attestation(att.as_args(), [sign(att, domain, signers[0])])


def test_check_attestation__no_signatures__reverts_below_threshold(oracle, att):
    with ape.reverts("oracle: below threshold"):
        oracle.check_attestation(att.as_args(), [])


def test_check_attestation__im_below_mm__reverts(oracle, make_attestation, trader, sign):
    att = make_attestation(trader, initial_margin_wad=WAD - 1, maintenance_margin_wad=WAD)
    with ape.reverts("oracle: initial margin below maintenance margin"):
        oracle.check_attestation(att.as_args(), sign(att))


def test_check_attestation__im_equal_mm__passes(oracle, make_attestation, trader, sign):
    att = make_attestation(trader, initial_margin_wad=WAD, maintenance_margin_wad=WAD)
    oracle.check_attestation(att.as_args(), sign(att))


def test_check_attestation__deadline_passed__reverts(oracle, make_attestation, trader, sign, now):
    att = make_attestation(trader, timestamp=now() - 100, deadline=now() - 1)
    with ape.reverts("oracle: deadline passed"):
        oracle.check_attestation(att.as_args(), sign(att))


def test_check_attestation__future_dated__reverts(oracle, make_attestation, trader, sign, now):
    att = make_attestation(trader, timestamp=now() + 3_600, deadline=now() + 7_200)
    with ape.reverts("oracle: timestamp in the future"):
        oracle.check_attestation(att.as_args(), sign(att))


def test_check_attestation__other_params_hash__reverts(oracle, make_attestation, trader, sign):
    att = make_attestation(trader, params_hash=b"\x42" * 32)
    with ape.reverts("oracle: params hash mismatch"):
        oracle.check_attestation(att.as_args(), sign(att))


def test_check_attestation__params_hash_rotated__old_attestation_reverts(oracle, admin, att, sign):
    sigs = sign(att)
    oracle.set_params_hash(b"\x43" * 32, sender=admin)
    with ape.reverts("oracle: params hash mismatch"):
        oracle.check_attestation(att.as_args(), sigs)


@pytest.mark.parametrize(
    "field, value",
    [("state_nonce", 4), ("position_value_wad", 0), ("maintenance_margin_wad", 0), ("initial_margin_wad", 10**30), ("engine", "0x" + "ab" * 20)],
)
def test_check_attestation__tampered_field__reverts_not_a_signer(oracle, att, sign, field, value):
    sigs = sign(att)
    tampered = type(att)(**{**att.message(), field: value})
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(tampered.as_args(), sigs)


def test_check_attestation__foreign_chain_domain__reverts(oracle, att, domain, sign):
    foreign = Domain(chain_id=domain.chain_id + 1, verifying_contract=domain.verifying_contract)
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), sign(att, dom=foreign))


def test_check_attestation__foreign_contract_domain__reverts(oracle, registry, att, domain, sign):
    foreign = Domain(chain_id=domain.chain_id, verifying_contract=registry.address)
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), sign(att, dom=foreign))


def test_check_attestation__high_s_variant__reverts(oracle, att, sign):
    sigs = sign(att)
    r, s, v = sigs[0][:32], int.from_bytes(sigs[0][32:64], "big"), sigs[0][64]
    # Same signer, malleated: (r, n - s, flipped v) recovers the same address.
    malleated = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("oracle: high-s signature"):
        oracle.check_attestation(att.as_args(), [malleated, sigs[1]])


def test_check_attestation__zero_signature__reverts_bad_v(oracle, att, sign):
    with ape.reverts("oracle: signature v must be 27 or 28"):
        oracle.check_attestation(att.as_args(), [b"\0" * 65, sign(att)[1]])


def test_check_attestation__unrecoverable_signature__reverts_invalid(oracle, att, sign):
    garbage = b"\0" * 32 + (1).to_bytes(32, "big") + b"\x1b"  # r = 0: ecrecover returns 0
    with ape.reverts("oracle: invalid signature"):
        oracle.check_attestation(att.as_args(), [garbage, sign(att)[1]])


@pytest.mark.parametrize("length", [0, 1, 64])
def test_check_attestation__short_signature__reverts_length(oracle, att, sign, length):
    with ape.reverts("oracle: signature must be 65 bytes"):
        oracle.check_attestation(att.as_args(), [sign(att)[0][:length], sign(att)[1]])


def test_check_attestation__garbage_random_signature__reverts_clearly(oracle, att, sign):
    valid = sign(att)
    # A valid curve point r with an arbitrary s recovers some unrelated address.
    garbage = valid[0][:32] + (12_345).to_bytes(32, "big") + b"\x1c"
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), [garbage, valid[1]])


def test_check_attestation__r_not_on_curve__reverts_invalid(oracle, att, sign):
    garbage = bytes(range(1, 65)) + b"\x1c"
    with ape.reverts("oracle: invalid signature"):
        oracle.check_attestation(att.as_args(), [garbage, sign(att)[1]])


def test_check_attestation__same_signature_twice__reverts_duplicate(oracle, att, sign):
    sig = sign(att)[0]
    with ape.reverts("oracle: duplicate signer"):
        oracle.check_attestation(att.as_args(), [sig, sig])


def test_check_attestation__descending_signers__reverts_unsorted(oracle, att, sign):
    with ape.reverts("oracle: signers not in ascending order"):
        oracle.check_attestation(att.as_args(), list(reversed(sign(att))))


def test_check_attestation__outsider_signature__reverts(oracle, att, domain, signers, outsider_signer):
    sigs = sign_multi(att, domain, [signers[0], outsider_signer])
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), sigs)


def test_check_attestation__revoked_signer__reverts_at_once(oracle, admin, att, sign, signers):
    sigs = sign(att)  # signed while signers[0] was valid
    oracle.remove_signer(signers[0].address, sender=admin)
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), sigs)


def test_check_attestation__extra_invalid_signature_beyond_threshold__reverts(
    oracle, att, domain, signers, outsider_signer
):
    sigs = sign_multi(att, domain, [*signers[:2], outsider_signer])
    with ape.reverts("oracle: not a signer"):
        oracle.check_attestation(att.as_args(), sigs)


def test_check_attestation__gas__lean_per_signer(oracle, admin, att, domain, signers, keeper):
    """Gas of the whole call (21k base + calldata + check) with 1, 2 and 3 signers."""
    oracle.set_threshold(1, sender=admin)
    gas = [
        oracle.check_attestation.estimate_gas_cost(att.as_args(), sign_multi(att, domain, signers[:k]), sender=keeper)
        for k in (1, 2, 3)
    ]
    print(f"check_attestation tx gas for 1/2/3 signers: {gas}")
    assert gas[0] <= 40_000
    assert gas[1] - gas[0] <= 8_000 and gas[2] - gas[1] <= 8_000


def test_check_attestation__params_hash_fixture__is_current(oracle):
    assert oracle.params_hash() == PARAMS_HASH

"""RiskOracle threshold signatures, through post_root (the one message that margins
accounts): every revert path of the signature check, revocation, domains, and gas per
signer. Posting rules of roots themselves (epochs, timestamps, params) are in test_roots.py."""

import ape
import pytest
from conftest import PARAMS_HASH, WAD

from offchain.chain.eip712 import SECP256K1_N, Domain, EpochRoot, sign_multi
from offchain.chain.leaves import AccountLeaf, positions_hash
from offchain.chain.roots import EpochTrees


def _leaf(i: int, im_wad: int = 900 * WAD, mm_wad: int = 450 * WAD) -> AccountLeaf:
    return AccountLeaf(account=f"0x{(0x2000 + i):040x}", state_nonce=3, positions_hash=positions_hash([1], [WAD]),
                       pending_base_im_wad=0, pending_base_mm_wad=0, position_value_wad=-1_500 * WAD,
                       initial_margin_wad=im_wad, maintenance_margin_wad=mm_wad, worst_loss_wad=mm_wad,
                       worst_scenarios=0, basis_addon_wad=0, short_option_addon_wad=0, liquidity_addon_wad=0,
                       rounding_guard_wad=0)


@pytest.fixture
def trees(keeper, registry):
    """Epoch 1 trees of a (stand-in) engine: the keeper's address, no engine deployed."""
    return EpochTrees.build(keeper.address, 1, [_leaf(1), _leaf(2)], [], registry.instrument_count())


@pytest.fixture
def root(trees, now) -> EpochRoot:
    return trees.root_message(timestamp=now(), deadline=now() + 300, params_hash=PARAMS_HASH)


def _post(oracle, root, sigs, keeper):
    return oracle.post_root(root.as_args(), sigs, sender=keeper)


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2)])
def test_post_root__any_two_of_three__posts(oracle, root, domain, signers, keeper, pair):
    _post(oracle, root, sign_multi(root, domain, [signers[i] for i in pair]), keeper)
    assert oracle.epoch_root(keeper)[0] == 1


def test_post_root__all_three_signers__posts(oracle, root, domain, signers, keeper):
    _post(oracle, root, sign_multi(root, domain, signers), keeper)
    assert oracle.root_timestamp(keeper) == root.timestamp


def test_post_root__no_signatures__reverts_below_threshold(oracle, root, keeper):
    with ape.reverts("oracle: below threshold"):
        _post(oracle, root, [], keeper)


@pytest.mark.parametrize("field, value", [("epoch", 2), ("timestamp", -1), ("accounts_root", b"\x07" * 32),
                                          ("market_root", b"\x07" * 32), ("account_count", 3),
                                          ("engine", "0x" + "ab" * 20)])
def test_post_root__tampered_field__reverts_not_a_signer(oracle, root, sign, keeper, field, value):
    """Each field is under the signatures: re-targeting a root at another engine, epoch or
    tree fails (an earlier timestamp still passes the time checks)."""
    sigs = sign(root)
    tampered = EpochRoot(**{**root.message(), field: root.timestamp + value if field == "timestamp" else value})
    with ape.reverts("oracle: not a signer"):
        _post(oracle, tampered, sigs, keeper)
    assert oracle.epoch_root(keeper)[0] == 0


def test_post_root__foreign_chain_domain__reverts(oracle, root, domain, sign, keeper):
    foreign = Domain(chain_id=domain.chain_id + 1, verifying_contract=domain.verifying_contract)
    with ape.reverts("oracle: not a signer"):
        _post(oracle, root, sign(root, dom=foreign), keeper)


def test_post_root__foreign_contract_domain__reverts(oracle, registry, root, domain, sign, keeper):
    foreign = Domain(chain_id=domain.chain_id, verifying_contract=registry.address)
    with ape.reverts("oracle: not a signer"):
        _post(oracle, root, sign(root, dom=foreign), keeper)


def test_post_root__high_s_variant__reverts(oracle, root, sign, keeper):
    sigs = sign(root)
    r, s, v = sigs[0][:32], int.from_bytes(sigs[0][32:64], "big"), sigs[0][64]
    # Same signer, malleated: (r, n - s, flipped v) recovers the same address.
    malleated = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("oracle: high-s signature"):
        _post(oracle, root, [malleated, sigs[1]], keeper)


def test_post_root__zero_signature__reverts_bad_v(oracle, root, sign, keeper):
    with ape.reverts("oracle: signature v must be 27 or 28"):
        _post(oracle, root, [b"\0" * 65, sign(root)[1]], keeper)


def test_post_root__unrecoverable_signature__reverts_invalid(oracle, root, sign, keeper):
    garbage = b"\0" * 32 + (1).to_bytes(32, "big") + b"\x1b"  # r = 0: ecrecover returns 0
    with ape.reverts("oracle: invalid signature"):
        _post(oracle, root, [garbage, sign(root)[1]], keeper)


@pytest.mark.parametrize("length", [0, 1, 64])
def test_post_root__short_signature__reverts_length(oracle, root, sign, keeper, length):
    with ape.reverts("oracle: signature must be 65 bytes"):
        _post(oracle, root, [sign(root)[0][:length], sign(root)[1]], keeper)


def test_post_root__garbage_random_signature__reverts_clearly(oracle, root, sign, keeper):
    valid = sign(root)
    # A valid curve point r with an arbitrary s recovers some unrelated address.
    garbage = valid[0][:32] + (12_345).to_bytes(32, "big") + b"\x1c"
    with ape.reverts("oracle: not a signer"):
        _post(oracle, root, [garbage, valid[1]], keeper)


def test_post_root__r_not_on_curve__reverts_invalid(oracle, root, sign, keeper):
    garbage = bytes(range(1, 65)) + b"\x1c"
    with ape.reverts("oracle: invalid signature"):
        _post(oracle, root, [garbage, sign(root)[1]], keeper)


def test_post_root__same_signature_twice__reverts_duplicate(oracle, root, sign, keeper):
    sig = sign(root)[0]
    with ape.reverts("oracle: duplicate signer"):
        _post(oracle, root, [sig, sig], keeper)


def test_post_root__descending_signers__reverts_unsorted(oracle, root, sign, keeper):
    with ape.reverts("oracle: signers not in ascending order"):
        _post(oracle, root, list(reversed(sign(root))), keeper)


def test_post_root__revoked_signer__reverts_at_once(oracle, admin, root, sign, signers, keeper):
    sigs = sign(root)  # signed while signers[0] was valid
    oracle.remove_signer(signers[0].address, sender=admin)
    with ape.reverts("oracle: not a signer"):
        _post(oracle, root, sigs, keeper)


def test_post_root__extra_invalid_signature_beyond_threshold__reverts(oracle, root, domain, signers, outsider_signer,
                                                                      keeper):
    sigs = sign_multi(root, domain, [*signers[:2], outsider_signer])
    with ape.reverts("oracle: not a signer"):
        _post(oracle, root, sigs, keeper)


def test_post_root__params_hash_rotated_after_signing__reverts(oracle, admin, root, sign, keeper):
    sigs = sign(root)
    oracle.set_params_hash(b"\x43" * 32, sender=admin)
    with ape.reverts("oracle: params hash mismatch"):
        _post(oracle, root, sigs, keeper)


def test_verify_account_leaf__im_equal_mm__accepted(oracle, domain, signers, keeper, now, registry):
    trees = EpochTrees.build(keeper.address, 1, [_leaf(1, WAD, WAD), _leaf(2)], [], registry.instrument_count())
    msg = trees.root_message(timestamp=now(), deadline=now() + 300, params_hash=PARAMS_HASH)
    _post(oracle, msg, sign_multi(msg, domain, signers[:2]), keeper)
    leaf, proof = trees.account_proof(_leaf(1).account)
    assert oracle.verify_account_leaf(leaf.as_args(), proof, sender=keeper) == msg.timestamp


def test_params_hash_fixture__is_current(oracle):
    assert oracle.params_hash() == PARAMS_HASH


"""RiskOracle owner functions and constructor: signer set, threshold, params hash,
max index move, two-step ownership. Every revert path and every event."""

import ape
import pytest
from conftest import MAX_INDEX_MOVE_BPS, PARAMS_HASH, SIGNER_THRESHOLD
from eth_account import Account

NEW_SIGNER = Account.from_key(b"\x07" * 32).address
ZERO = "0x" + "00" * 20


def _deploy(project, admin, registry, signers, threshold=1, params_hash=PARAMS_HASH, max_move=100):
    return project.RiskOracle.deploy(registry, signers, threshold, params_hash, max_move, sender=admin)


def test_constructor__fixture__configured_and_owned(oracle, admin, registry, signers):
    assert oracle.owner() == admin.address
    assert oracle.registry() == registry.address
    assert oracle.signers() == [s.address for s in signers]
    assert oracle.signer_count() == 3 and oracle.threshold() == SIGNER_THRESHOLD
    assert all(oracle.is_signer(s.address) for s in signers)
    assert oracle.params_hash() == PARAMS_HASH
    assert oracle.max_index_move_bps() == MAX_INDEX_MOVE_BPS


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"signers": [ZERO]}, "oracle: zero signer"),
        ({"signers": [NEW_SIGNER, NEW_SIGNER]}, "oracle: already a signer"),
        ({"threshold": 0}, "oracle: threshold out of range"),
        ({"threshold": 2}, "oracle: threshold out of range"),
        ({"signers": [], "threshold": 0}, "oracle: threshold out of range"),
        ({"params_hash": b"\0" * 32}, "oracle: empty params hash"),
        ({"max_move": 0}, "oracle: max move out of range"),
        ({"max_move": 10_001}, "oracle: max move out of range"),
    ],
)
def test_constructor__invalid_setting__reverts(project, admin, registry, kwargs, reason):
    args = {"signers": [NEW_SIGNER], **kwargs}
    with ape.reverts(reason):
        _deploy(project, admin, registry, **args)


def test_constructor__zero_registry__reverts(project, admin):
    with ape.reverts("oracle: zero registry"):
        _deploy(project, admin, ZERO, [NEW_SIGNER])


def test_constructor__events__one_per_setting(project, admin, registry):
    oracle = _deploy(project, admin, registry, [NEW_SIGNER])
    receipt = oracle.creation_metadata.receipt
    assert [log.signer for log in receipt.decode_logs(oracle.SignerAdded)] == [NEW_SIGNER]
    assert [log.threshold for log in receipt.decode_logs(oracle.ThresholdSet)] == [1]
    assert [log.params_hash for log in receipt.decode_logs(oracle.ParamsHashSet)] == [PARAMS_HASH]
    assert [log.max_index_move_bps for log in receipt.decode_logs(oracle.MaxIndexMoveSet)] == [100]


def test_add_signer__new_address__listed_and_event(oracle, admin):
    tx = oracle.add_signer(NEW_SIGNER, sender=admin)
    assert oracle.is_signer(NEW_SIGNER) and oracle.signer_count() == 4
    assert oracle.signers()[-1] == NEW_SIGNER
    assert [log.signer for log in tx.decode_logs(oracle.SignerAdded)] == [NEW_SIGNER]


def test_add_signer__zero_address__reverts(oracle, admin):
    with ape.reverts("oracle: zero signer"):
        oracle.add_signer(ZERO, sender=admin)


def test_add_signer__existing__reverts(oracle, admin, signers):
    with ape.reverts("oracle: already a signer"):
        oracle.add_signer(signers[1].address, sender=admin)


def test_add_signer__seventeenth__reverts(oracle, admin):
    for i in range(13):
        oracle.add_signer(Account.from_key((100 + i).to_bytes(32, "big")).address, sender=admin)
    assert oracle.signer_count() == 16
    with ape.reverts("oracle: too many signers"):
        oracle.add_signer(NEW_SIGNER, sender=admin)


def test_add_signer__non_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.add_signer(attacker, sender=attacker)


def test_remove_signer__member__unlisted_and_event(oracle, admin, signers):
    tx = oracle.remove_signer(signers[1].address, sender=admin)
    assert not oracle.is_signer(signers[1].address)
    assert oracle.signers() == [signers[0].address, signers[2].address]
    assert [log.signer for log in tx.decode_logs(oracle.SignerRemoved)] == [signers[1].address]


def test_remove_signer__not_a_signer__reverts(oracle, admin):
    with ape.reverts("oracle: not a signer"):
        oracle.remove_signer(NEW_SIGNER, sender=admin)


def test_remove_signer__would_go_below_threshold__reverts(oracle, admin, signers):
    oracle.remove_signer(signers[0].address, sender=admin)
    with ape.reverts("oracle: would leave fewer signers than threshold"):
        oracle.remove_signer(signers[1].address, sender=admin)
    assert oracle.signer_count() == 2


def test_remove_signer__non_owner__reverts(oracle, attacker, signers):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.remove_signer(signers[0].address, sender=attacker)


def test_remove_then_add_signer__readded__counts_again(oracle, admin, signers):
    oracle.remove_signer(signers[0].address, sender=admin)
    oracle.add_signer(signers[0].address, sender=admin)
    assert oracle.is_signer(signers[0].address) and oracle.signer_count() == 3


@pytest.mark.parametrize("threshold", [1, 3])
def test_set_threshold__in_range__set_and_event(oracle, admin, threshold):
    tx = oracle.set_threshold(threshold, sender=admin)
    assert oracle.threshold() == threshold
    assert [log.threshold for log in tx.decode_logs(oracle.ThresholdSet)] == [threshold]


@pytest.mark.parametrize("threshold", [0, 4])
def test_set_threshold__out_of_range__reverts(oracle, admin, threshold):
    with ape.reverts("oracle: threshold out of range"):
        oracle.set_threshold(threshold, sender=admin)
    assert oracle.threshold() == SIGNER_THRESHOLD


def test_set_threshold__non_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_threshold(1, sender=attacker)


def test_set_params_hash__new_hash__set_and_event(oracle, admin):
    tx = oracle.set_params_hash(b"\x05" * 32, sender=admin)
    assert oracle.params_hash() == b"\x05" * 32
    assert [log.params_hash for log in tx.decode_logs(oracle.ParamsHashSet)] == [b"\x05" * 32]


def test_set_params_hash__empty__reverts(oracle, admin):
    with ape.reverts("oracle: empty params hash"):
        oracle.set_params_hash(b"\0" * 32, sender=admin)


def test_set_params_hash__non_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_params_hash(b"\x05" * 32, sender=attacker)


@pytest.mark.parametrize("bps", [1, 10_000])
def test_set_max_index_move_bps__in_range__set_and_event(oracle, admin, bps):
    tx = oracle.set_max_index_move_bps(bps, sender=admin)
    assert oracle.max_index_move_bps() == bps
    assert [log.max_index_move_bps for log in tx.decode_logs(oracle.MaxIndexMoveSet)] == [bps]


@pytest.mark.parametrize("bps", [0, 10_001])
def test_set_max_index_move_bps__out_of_range__reverts(oracle, admin, bps):
    with ape.reverts("oracle: max move out of range"):
        oracle.set_max_index_move_bps(bps, sender=admin)


def test_set_max_index_move_bps__non_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_max_index_move_bps(5, sender=attacker)


def test_transfer_ownership__two_step__only_pending_owner_accepts(oracle, admin, keeper, attacker):
    oracle.transfer_ownership(keeper, sender=admin)
    assert oracle.pending_owner() == keeper.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        oracle.accept_ownership(sender=attacker)
    tx = oracle.accept_ownership(sender=keeper)
    assert oracle.owner() == keeper.address
    assert tx.decode_logs(oracle.OwnershipTransferred)[0].new_owner == keeper.address
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_threshold(1, sender=admin)
    oracle.set_threshold(1, sender=keeper)


def test_transfer_ownership__non_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.transfer_ownership(attacker, sender=attacker)

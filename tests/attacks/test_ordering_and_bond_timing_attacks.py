"""Ordering and timing sequences around leaves, the pause and the signers' bonds: a leaf
applied by a call that the pause refuses, a signer leaving its bond between signing a root
and its posting, a bond whose withdrawal delay would not outlast the challenge window. Each
test asserts the rule and that a refused call changes nothing (funds identity autouse).
"""

import ape
import pytest
from conftest import WAD

from .conftest import BTC_MARK, PERP
from .test_verification_attacks import BOND, WINDOW, as_sender, post_epoch, rebond, system  # noqa: F401 - a fixture

USD = 10**6
PAUSED = "pausable: contract is paused"


@pytest.fixture(scope="module")
def book(desk, admin, maker, taker, trader, accomplice, keeper):
    """Trader long 1 BTC perp on 7,000 against the accomplice (a one-position book each);
    the signers' next root holds the trader's leaf with an IM lower than its pending one
    (signed, not posted)."""
    for who, usd in ((maker, 1_000_000), (taker, 100_000), (trader, 7_000), (accomplice, 100_000)):
        desk.fund(who, usd * USD)
    desk.post_marks()
    desk.trade(accomplice, trader, PERP, -WAD, BTC_MARK)
    desk.mine(1)
    return desk


def test_withdraw_with_leaf__while_paused_with_positions__refused_whole_leaf_not_applied(book, admin, trader):
    """The leaf would lower the trader's IM from 6,000 to 3,000; with it, 3,000 more could
    leave. Paused, `withdraw_with_leaf` reverts as a whole (the leaf is not applied either),
    while the same leaf applies alone (margins keep updating during a pause)."""
    e = book.engine
    root = book.root([book.leaf(trader, 3_000 * WAD, 1_500 * WAD)])
    e.pause(sender=admin)
    book.oracle.post_root(*root.post_args(), sender=book.poster)
    leaf, proof = root.apply_args(trader)
    before = book.snapshot(trader)
    with ape.reverts(PAUSED):
        e.withdraw_with_leaf(3_000 * USD, leaf, proof, sender=trader)
    assert book.snapshot(trader) == before
    e.apply_leaf(leaf, proof, sender=trader)
    assert e.health(trader).im_wad == 3_000 * WAD
    with ape.reverts(PAUSED):
        e.withdraw(1, sender=trader)


def test_fill_with_leaf__while_paused__leaf_applies_only_with_a_reduction_at_the_mark(book, admin, trader, accomplice):
    """`fill_with_leaf` applies the leaf and fills in one call: while paused the fill must be
    one a pause allows (a reduction at the mark), else the whole call, leaf included, is
    undone."""
    e = book.engine
    root = book.root([book.leaf(trader, 3_000 * WAD, 1_500 * WAD)])
    e.pause(sender=admin)
    book.oracle.post_root(*root.post_args(), sender=book.poster)
    leaf, proof = root.apply_args(trader)
    grow, sig = book.order(accomplice, PERP, -WAD // 10, BTC_MARK)      # the trader would buy more
    before = book.snapshot(trader, accomplice)
    with ape.reverts(PAUSED):
        e.fill_with_leaf(grow.as_args(), sig, WAD // 10, leaf, proof, sender=trader)
    assert book.snapshot(trader, accomplice) == before
    reduce, sig = book.order(accomplice, PERP, WAD // 2, BTC_MARK)      # the trader sells half at the mark
    e.fill_with_leaf(reduce.as_args(), sig, WAD // 2, leaf, proof, sender=trader)
    assert e.position(trader, PERP) == WAD // 2
    # the leaf's IM, then halved with the book (homogeneity)
    assert e.health(trader).im_wad == 1_500 * WAD


def test_post_root__signer_leaves_its_bond_between_signing_and_posting__signature_stops_counting(
        engine, oracle, registry, token, admin, domain, signers, chain, keeper, trader, system):  # noqa: F811
    """Signer 0 asks for its whole stake; signers 0 and 1 then sign and post a root (when it
    was signed does not matter: the stake behind a root is what its signers hold when it is
    posted). Signer 0's signature no longer counts, so the root is refused below the bonded
    threshold instead of being posted with a signer whose stake leaves after the delay.
    Re-bonded, the same signatures count again."""
    bond, _fraud, _ = system()
    s0 = as_sender(chain, signers[0])
    bond.request_withdrawal(BOND, sender=s0)
    assert not bond.is_bonded(signers[0].address)
    with ape.reverts("oracle: below threshold of bonded signers"):
        post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [trader])
    rebond(token, bond, admin, signers[0])
    post_epoch(engine, oracle, registry, domain, signers, chain, keeper, [trader])


def test_bond__withdrawal_delay_not_longer_than_the_challenge_window__refused_at_deployment(
        project, admin, token, engine):
    """A withdrawal due no later than the window closes would let a signer of a false root
    take its stake out before the last second a proof can land: refused at deployment."""
    for delay in (WINDOW, WINDOW - 1):
        with ape.reverts("bond: withdrawal delay must exceed the challenge window"):
            project.SignerBond.deploy(token, BOND, WINDOW, delay, engine, sender=admin)
    bond = project.SignerBond.deploy(token, BOND, WINDOW, WINDOW + 1, engine, sender=admin)
    assert bond.withdrawal_delay() > bond.challenge_window()

"""Attacks on clearing a discount clock (V5's fix): a fraction-0 `liquidate` (`flag`) whose
witness shows no shortfall clears a running clock when the equity covers the stored book's
isolated bound at the witness leaves' MM rates. Beyond the sequences of
`test_flag_witness_attacks.py`: a witness whose bytes put caller-chosen words where a leaf
decoder reading the wrong stride would find its rates (padding between the leaves and the
next argument, which the verifier's ABI decoder skips), each leg's rate taken on its own side
(long / short) and at its own leaf on a two-leg book, a clearing on stale marks, while paused,
and again once cleared. Real Anvil chain, verifier, roots and signatures."""

from dataclasses import replace

import ape
import pytest
from conftest import WAD
from support.check_market import check_market

from .conftest import FUTURE, PERP
from .test_flag_witness_attacks import (  # noqa: F401 - fixtures
    WINDOW,
    _apply_rogue_leaf,
    _deploy_first,
    _dip_flag_recover,
    _everything,
    _isolated,
    book,
)

BIG = 10**30  # a per-unit rate no book's equity covers


def _pad_after_leaves(encoded: bytes, words: int) -> bytes:
    """The same check_market call data with `words` zero words between the leaves array and
    the multiproof: every head offset past the leaves moves by as much. The verifier's decoder
    follows the offsets (it decodes the same arguments); only a reader that assumes a leaf
    stride other than the real one lands in the padding."""
    selector, args = encoded[:4], encoded[4:]
    # eight head words: engine, sizes, leaves, proof, order, units, scenarios, joint; the
    # proof, units and scenarios are offsets past the leaves
    heads = [int.from_bytes(args[32 * i: 32 * i + 32], "big") for i in range(8)]
    cut = heads[3]  # the multiproof's tail: right after the leaves array (standard encoding)
    assert heads[2] < cut and all(heads[i] >= cut for i in (3, 5, 6))
    for i in (3, 5, 6):
        heads[i] += 32 * words
    head = b"".join(h.to_bytes(32, "big") for h in heads)
    return selector + head + args[256:cut] + bytes(32 * words) + args[cut:]


def _mildest(verifier, w):
    """The witness naming only the scenario with the smallest margin for the book."""
    s = min(range(verifier.n_scenarios()),
            key=lambda s: check_market(verifier, replace(w, scenarios=[s], joint_scenario=s)).maintenance_wad)
    return replace(w, scenarios=[s], joint_scenario=s)


def test_clear__short_book_with_padding_where_a_wrong_stride_reads_its_rates__refused(
        engine, token, verifier, book, set_market, liquidator, accomplice, witness_for, flag):  # noqa: F811
    """A book short by the model, its clock running. The owner's second account sends the
    mildest scenario (no shortfall in it) with 14 zero words between the leaves and the
    multiproof: the verifier decodes the same arguments and passes, so only the isolated bound
    stands between the owner and a cleared clock. The engine reads each rate inside its leaf
    (words at the leaf's own stride): refused, the clock and everything else stay. A reader
    at another stride (a leaf layout changed under it) would read the zeros: bound 0, cleared."""
    owner = book(7_000)
    set_market(marks={PERP: 55_500 * WAD})
    since = flag(owner, sender=liquidator).timestamp
    mild = _mildest(verifier, witness_for(owner, raw=True))
    assert check_market(verifier, mild).maintenance_wad <= engine.health(owner).equity_wad
    nonce = engine.state_nonce(owner)
    before = _everything(engine, token, owner, accomplice)
    for padded in (mild.encode(), _pad_after_leaves(mild.encode(), 14), _pad_after_leaves(mild.encode(), 40)):
        with ape.reverts("engine: equity below the isolated bound"):
            engine.liquidate(owner, 0, 0, nonce, padded, sender=accomplice)
        with ape.reverts("engine: equity below the isolated bound"):
            engine.flag(owner, padded, sender=owner)
    assert engine.account(owner).liquidatable_since == since
    assert _everything(engine, token, owner, accomplice) == before


@pytest.fixture
def hedged(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag):  # noqa: F811
    """A two-leg book (1 BTC perp long, 0.5 BTC future short) whose clock a real dip started
    and whose applied MM a rogue root keeps above its equity after the recovery."""
    owner = book(12_000, extra=((FUTURE, -(WAD // 2)),))
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 11_500 * WAD)
    set_market(marks={PERP: 40_000 * WAD, FUTURE: 40_500 * WAD})
    flag(owner, sender=liquidator)
    set_market()
    _apply_rogue_leaf(engine, owner, leaf_for, post_root, keeper, 40_000 * WAD)
    assert engine.health(owner).liquidatable and engine.account(owner).liquidatable_since != 0
    return owner


def test_clear__two_legs__each_rate_read_on_its_own_side_at_its_own_leaf_to_the_wei(
        engine, token, hedged, accomplice, witness_for):
    """The bound is 1 x the perp's mm_long + 0.5 x the future's mm_short (the stored sizes'
    sides), each from its own leaf; the other side's rate of each leg is BIG. Rates summing to
    the equity plus one wei are refused, with the sides swapped refused, to the wei cleared;
    the padded call data changes none of it."""
    owner = hedged
    nonce = engine.state_nonce(owner)
    equity = engine.health(owner).equity_wad
    b = 2_000 * WAD

    def rates(perp_long, fut_short):
        return {PERP: {"mm_long_wad": perp_long, "mm_short_wad": BIG},
                FUTURE: {"mm_long_wad": BIG, "mm_short_wad": fut_short}}

    before = _everything(engine, token, owner, accomplice)
    swapped = {PERP: {"mm_long_wad": BIG, "mm_short_wad": equity - b // 2},
               FUTURE: {"mm_long_wad": b, "mm_short_wad": BIG}}
    for leaves in (rates(equity - b // 2 + 1, b), swapped):
        w = witness_for(owner, leaves=leaves)  # each posts the current root
        for data in (w, _pad_after_leaves(w, 30)):
            with ape.reverts("engine: equity below the isolated bound"):
                engine.liquidate(owner, 0, 0, nonce, data, sender=accomplice)
    assert engine.account(owner).liquidatable_since != 0
    at = _pad_after_leaves(witness_for(owner, leaves=rates(equity - b // 2, b)), 30)
    assert engine.liquidate(owner, 0, 0, nonce, at, sender=accomplice).decode_logs(engine.Unflagged)
    assert engine.account(owner).liquidatable_since == 0
    assert _everything(engine, token, owner, accomplice) == before


def test_clear__on_stale_marks__refused_clock_stays(
        engine, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, witness_for, flag, mine):  # noqa: F811
    """Marks older than max_liquidation_price_age could hide a new fall: a clearing on them is
    refused as a liquidation is, even with a fresh market root."""
    owner, since = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    mine(WINDOW + 60)
    w = witness_for(owner)  # a fresh root; the marks are not
    with ape.reverts("engine: stale marks"):
        engine.liquidate(owner, 0, 0, engine.state_nonce(owner), w, sender=accomplice)
    assert engine.account(owner).liquidatable_since == since


def test_clear__while_paused__same_evidence_as_unpaused(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, admin, witness_for,  # noqa: F811
        flag):
    """Liquidation stays open while paused, and so does its mirror: a short book's clock is
    not cleared (isolated bound), a recovered one is, and nothing else moves."""
    owner, since = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    engine.pause(sender=admin)
    before = _everything(engine, token, owner, accomplice)
    nonce = engine.state_nonce(owner)
    equity = engine.health(owner).equity_wad
    with ape.reverts("engine: equity below the isolated bound"):
        engine.liquidate(owner, 0, 0, nonce, witness_for(owner, leaves={PERP: {"mm_long_wad": equity + 1}}),
                         sender=accomplice)
    assert engine.account(owner).liquidatable_since == since
    assert flag(owner, sender=accomplice).decode_logs(engine.Unflagged)
    assert engine.account(owner).liquidatable_since == 0
    assert _everything(engine, token, owner, accomplice) == before


def test_clear__again_once_cleared__refused_no_event_no_gas_sink(
        engine, token, book, set_market, leaf_for, post_root, keeper, liquidator, accomplice, witness_for, flag):  # noqa: F811
    """Griefing by repetition: once cleared, the same witness is refused (nothing to clear,
    no second Unflagged), and a flag without shortfall cannot restart the clock."""
    owner, _ = _dip_flag_recover(engine, book, set_market, leaf_for, post_root, keeper, liquidator, flag)
    w = witness_for(owner)
    engine.flag(owner, w, sender=accomplice)
    before = _everything(engine, token, owner, accomplice)
    for sender in (accomplice, liquidator, owner):
        with ape.reverts("engine: witness scenarios show no shortfall"):
            engine.flag(owner, w, sender=sender)
    assert engine.account(owner).liquidatable_since == 0
    assert _everything(engine, token, owner, accomplice) == before

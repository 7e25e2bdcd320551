"""V25's identity loop reads each witness leaf's id and mark and each size through unchecked
offsets (unsafe_add/unsafe_mul) from the two head offsets. These tests attack the gap between
the engine's reads and the verifier's ABI decoding: aliased arrays (the leaves' head on the
sizes' head, sharing the length word n), head offsets that wrap or sit at the witness's end,
a non-canonical encoding whose canonical region holds a decoy. Both sides read the same bytes
through the same heads (4 + offset, checked; extract32 bounds every read), so each is refused
or prices exactly what the engine checked. Real Anvil chain, threshold-signed root."""

import ape
import pytest
from conftest import WAD
from engine.conftest import WITNESS_PARAMS, give_margin  # noqa: F401 - give_margin is a fixture

from offchain.chain.witness import liquidation_witness

from .conftest import PERP
from .test_attack_stale_market_root import _long_margined_at_60k, _state

ANOTHER_BOOK = "engine: witness for another book"


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, governance, oracle, verifier, leaf_for, post_root, set_market, fund,
                  trade, make_order, witness_for, liquidate, flag, market_leaf, attacker, accomplice, liquidator,
                  give_margin):  # noqa: F811
    """Deployments and session fixtures before the first test's snapshot (ape isolation)."""


def _word(x: int) -> bytes:
    return (x % 2**256).to_bytes(32, "big")


def _heads(w: bytes) -> tuple[int, int]:
    return int.from_bytes(w[36:68], "big"), int.from_bytes(w[68:100], "big")


def _short_long(engine, verifier, accounts, maker, liquidator, fund, set_market, trade, leaf_for, post_root,
                market_leaf, chain):
    """Long 1 BTC perp at 60,000 on 9,000, below its leaf's MM (~9,474) at the root's marks:
    liquidatable by the model. Returns the victim and its honest witness (bytes)."""
    victim, trees, at, mm60 = _long_margined_at_60k(engine, verifier, accounts, maker, liquidator, fund, set_market,
                                                    trade, leaf_for, post_root, market_leaf, chain,
                                                    deposit_usdc=9_000)
    assert engine.health(victim).equity_wad < mm60 and engine.health(victim).liquidatable
    return victim, liquidation_witness(WITNESS_PARAMS, engine.address, [(PERP, WAD)], trees, at).encode()


def test_witness__aliased_or_out_of_range_heads__each_refused_nothing_moved_honest_one_liquidates(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain):
    """Sequence: a model-short long (equity 9,000 < MM ~9,474) and its honest witness; the
    liquidator sends mutated encodings of it first: (a) the leaves' head set to the sizes'
    head (one length word n, the size word read as the leaf's head); (b) the sizes' head set
    to the leaves' head (sizes read from the leaf words); (c) a head of 2**256 - 4 (4 + head
    wraps unless checked); (d) a head at the witness's last word; (e) a head at MAX_WITNESS
    range. Safe outcome: each reverts, every book, insurance, fees and the token balance as
    before; the honest witness then liquidates."""
    victim, w = _short_long(engine, verifier, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
                            post_root, market_leaf, chain)
    sizes, leaves = _heads(w)
    mutated = {
        "leaves on sizes": w[:68] + _word(sizes) + w[100:],
        "sizes on leaves": w[:36] + _word(leaves) + w[68:],
        "sizes head wraps": w[:36] + _word(2**256 - 4) + w[68:],
        "leaves head wraps": w[:68] + _word(2**256 - 4) + w[100:],
        "sizes head at the last word": w[:36] + _word(len(w) - 4 - 32) + w[68:],
        "leaves head past the end": w[:68] + _word(25_508) + w[100:],
    }
    before = _state(engine, token, victim, liquidator)
    for name, bad in mutated.items():
        with ape.reverts():
            engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), bad, sender=liquidator)
        with ape.reverts():
            engine.flag(victim, bad, sender=liquidator)
        assert _state(engine, token, victim, liquidator) == before, name
    with ape.reverts(ANOTHER_BOOK):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), mutated["leaves on sizes"],
                         sender=liquidator)
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), w, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert log.fraction_wad > 0


def test_witness__decoy_leaves_at_the_canonical_place_real_heads_elsewhere__verifier_reads_what_the_engine_read(
        engine, token, verifier, oracle, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
        post_root, market_leaf, chain):
    """Sequence: the honest witness re-encoded non-canonically: its sizes and leaves copied to
    the end of the call data and both heads pointed there, the canonical region left holding
    a decoy (the leaf's mark field zeroed, the size doubled). The engine and the verifier
    follow the same heads. Safe outcome: the re-encoding liquidates exactly as the canonical
    one would (same fraction), and a decoy-only variant (heads on the decoy) is refused as
    another book."""
    victim, w = _short_long(engine, verifier, accounts, maker, liquidator, fund, set_market, trade, leaf_for,
                            post_root, market_leaf, chain)
    sizes, leaves = _heads(w)
    n = 1
    size_block = w[4 + sizes: 4 + sizes + 32 + 32 * n]
    leaf_block = w[4 + leaves: 4 + leaves + 32 + 224 * n]
    # decoy in place: the size doubled, the leaf's 5th word (vol | rate | mark) zeroed
    decoy = bytearray(w)
    decoy[4 + sizes + 32: 4 + sizes + 64] = _word(2 * WAD)
    decoy[4 + leaves + 32 + 128: 4 + leaves + 32 + 160] = _word(0)
    tail_at = len(decoy) - 4
    moved = bytes(decoy[:36]) + _word(tail_at) + _word(tail_at + len(size_block)) + bytes(decoy[100:]) \
        + size_block + leaf_block
    before = _state(engine, token, victim, liquidator)
    with ape.reverts(ANOTHER_BOOK):
        engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), bytes(decoy), sender=liquidator)
    assert _state(engine, token, victim, liquidator) == before
    tx = engine.liquidate(victim, WAD, 10**30, engine.state_nonce(victim), moved, sender=liquidator)
    [log] = tx.decode_logs(engine.Liquidation)
    assert log.fraction_wad > 0

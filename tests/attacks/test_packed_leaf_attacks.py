"""Attacks on the packed market leaf (seven words: head id|expiry|kind|tag, underlying,
strike|contract size, spot|forward, vol|rate|mark, IM rates, MM rates) as a liquidation's
witness carries it: a witness built for the fifteen-word layout (its selector, or its words
under the packed selector), a head whose reserved bits or tag are not the layout's while its
low 64 bits still name the position's instrument (the engine's id check masks them), leaves
of a two-leg book swapped, and the registry's strike bound the packed field relies on. Each
refused witness leaves the book, both accounts and the pools as they were; the honest
witness then liquidates. Real Anvil chain, verifier, roots and signatures."""

from dataclasses import replace

import ape
import pytest
from conftest import WAD
from eth_abi import encode as abi_encode
from eth_utils import keccak

from offchain.chain.eip712 import symbol_to_bytes32

from .conftest import FUTURE, PERP
from .test_flag_witness_attacks import _deploy_first, _everything, _isolated, book  # noqa: F401 - fixtures

OLD_LEAF = "(uint256,uint256,bytes32,uint256,uint256,uint256,uint256,uint256,uint256,int256,int256,uint256,uint256,uint256,uint256)"
OLD_TYPES = ["address", "int256[]", OLD_LEAF + "[]", "(bytes32[],uint256)", "bytes32[]", "uint256[]", "uint256"]
OLD_SELECTOR = keccak(text="check_market(" + ",".join(OLD_TYPES) + ")")[:4]
KIND_CALL = 2


def _old_words(w) -> bytes:
    """The witness's arguments in the fifteen-word leaf layout."""
    leaves = [(m.instrument_id, m.kind, m.underlying, m.strike_wad, m.expiry, m.contract_size_wad, m.spot_wad,
               m.forward_wad, m.vol_wad, m.rate_wad, m.mark_wad, m.im_long_wad, m.im_short_wad, m.mm_long_wad,
               m.mm_short_wad) for m in w.leaves]
    return abi_encode(OLD_TYPES, [w.engine, w.sizes_wad, leaves, w.proof.as_args(), w.units, w.scenarios,
                                  w.joint_scenario])


def _with_head_bits(encoded: bytes, i: int, bits: int) -> bytes:
    """The call data with leaf i's head word OR-ed with `bits` (the leaves' head offset read
    as the verifier's decoder reads it)."""
    leaves_at = 4 + int.from_bytes(encoded[4 + 64: 4 + 96], "big")
    at = leaves_at + 32 + 224 * i
    head = int.from_bytes(encoded[at: at + 32], "big") | bits
    return encoded[:at] + head.to_bytes(32, "big") + encoded[at + 32:]


@pytest.fixture
def short_book(engine, book, set_market, liquidator, flag):  # noqa: F811
    """A two-leg book (1 BTC perp long, 0.1 BTC future long) short by the model, flagged."""
    owner = book(7_000, extra=((FUTURE, WAD // 10),))
    set_market(marks={PERP: 55_000 * WAD, FUTURE: 55_500 * WAD})
    flag(owner, sender=liquidator)
    return owner


def test_witness__old_layout_or_foreign_heads_or_swapped_leaves__refused_then_honest_one_liquidates(
        engine, token, short_book, liquidator, witness_for):
    owner = short_book
    w = witness_for(owner, raw=True)
    packed = w.encode()
    nonce = engine.state_nonce(owner)
    before = _everything(engine, token, owner, liquidator)
    refused = [
        # the fifteen-word witness, whole: its selector is not the engine's
        (OLD_SELECTOR + _old_words(w), "engine: witness for another book"),
        # its words under the packed selector: leaf 0's first word is still the id, but the
        # second leaf's id is read 224 bytes on, inside the first fifteen-word leaf
        (packed[:4] + _old_words(w), "engine: witness for another book"),
        # the id's low 64 bits kept, a reserved bit, the tag or the kind changed (the engine
        # masks the id; the verifier refuses the layout before the multiproof)
        (_with_head_bits(packed, 0, 1 << 200), "ScenarioVerifier: market leaf not of the packed layout (tag, reserved bits or kind)"),
        (_with_head_bits(packed, 1, 1 << 255), "ScenarioVerifier: market leaf not of the packed layout (tag, reserved bits or kind)"),
        (_with_head_bits(packed, 0, 4 << 128), "ScenarioVerifier: market leaf not of the packed layout (tag, reserved bits or kind)"),
        # a bit of the expiry (a perp's is 0): well formed, not the signed leaf
        (_with_head_bits(packed, 0, 1 << 64), "ScenarioVerifier: invalid market multiproof"),
        # each leaf proven, at the other position: the stored book's order is the engine's
        (replace(w, leaves=list(reversed(w.leaves))).encode(), "engine: witness for another book"),
    ]
    for data, reason in refused:
        with ape.reverts(reason):
            engine.liquidate(owner, WAD, 10**30, nonce, data, sender=liquidator)
    assert _everything(engine, token, owner, liquidator) == before
    tx = engine.liquidate(owner, WAD, 10**30, nonce, packed, sender=liquidator)
    assert tx.decode_logs(engine.Liquidation)


def test_registry__option_strike_at_the_packed_fields_bound__listed_one_above_refused(registry, admin, chain):
    """The packed leaf holds a strike in 128 bits: the largest listable strike fits it, one
    more is refused at listing (no instrument exists whose leaf cannot be signed)."""
    expiry = chain.pending_timestamp + 86_400
    btc = symbol_to_bytes32("BTC")
    with ape.reverts("registry: strike above 2**128 - 1"):
        registry.list_instrument(btc, KIND_CALL, 2**128, expiry, sender=admin)
    registry.list_instrument(btc, KIND_CALL, 2**128 - 1, expiry, sender=admin)
    assert registry.instrument(registry.instrument_count()).strike_wad == 2**128 - 1

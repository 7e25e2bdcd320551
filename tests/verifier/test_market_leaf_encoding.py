"""The packed market leaf (contracts/modules/market_leaf.vy, offchain/chain/leaves.py
`MarketLeaf.words`): seven words, each field at a fixed bit range, the head carrying the
layout's tag. A value that does not fit its range is refused by the signer side (no such
leaf is ever built, and on chain no word pattern decodes to it); a leaf of another layout,
another tag, a head with reserved bits or an unknown kind, or a truncated leaf is refused by
check_market even when the signers committed to it."""

from dataclasses import dataclass

import boa
import numpy as np
import pytest
from eth.exceptions import Revert
from support.check_market import check_market

from offchain.chain.eip712 import Eip712Error
from offchain.chain.leaves import MARKET_LEAF_LAYOUT, MARKET_LEAF_TAG, MarketLeaf
from offchain.chain.witness import encode_check_market

from .conftest import WAD, random_book
from .test_check_market import ENGINE, _market_leaves, _post_root, deploy_system

BTC = b"BTC".ljust(32, b"\0")


@pytest.fixture(scope="module")
def system():
    return deploy_system()


def _leaf(**kw) -> MarketLeaf:
    base = dict(instrument_id=3, kind=2, underlying=BTC, strike_wad=60_000 * WAD, expiry=1_900_000_000,
                contract_size_wad=WAD, spot_wad=61_000 * WAD, forward_wad=61_500 * WAD, vol_wad=6 * WAD // 10,
                rate_wad=-WAD // 50, mark_wad=-3 * WAD, im_long_wad=7 * WAD, im_short_wad=8 * WAD,
                mm_long_wad=5 * WAD, mm_short_wad=6 * WAD)
    return MarketLeaf(**{**base, **kw})


@pytest.mark.parametrize("field, value", [
    ("instrument_id", 2**64), ("expiry", 2**64), ("kind", 4), ("strike_wad", 2**128),
    ("contract_size_wad", 2**128), ("spot_wad", 2**128), ("forward_wad", 2**128), ("vol_wad", 2**64),
    ("rate_wad", 2**63), ("rate_wad", -(2**63) - 1), ("mark_wad", 2**127), ("mark_wad", -(2**127) - 1),
    ("im_long_wad", 2**128), ("im_short_wad", 2**128), ("mm_long_wad", 2**128), ("mm_short_wad", 2**128),
])
def test_market_leaf__field_overflows_its_packed_range__refused_by_the_signer(field, value):
    with pytest.raises(Eip712Error, match=f"MarketLeaf.{field}: expected .*got {value}"):
        _leaf(**{field: value})


def test_market_leaf__every_range_at_its_bounds__round_trips_through_the_words():
    for bound in ("low", "high"):
        values = {}
        for name, (_, _, bits, bias) in MARKET_LEAF_LAYOUT.items():
            values[name] = -bias if bound == "low" else 2**bits - 1 - bias
        values["kind"] = 0 if bound == "low" else 3
        leaf = _leaf(**values)
        words = leaf.words()
        assert len(words) == 7 and all(0 <= w < 2**256 for w in words if isinstance(w, int))
        assert words[0] >> 248 == MARKET_LEAF_TAG and (words[0] >> 136) & (2**112 - 1) == 0
        assert MarketLeaf.from_words(words) == leaf


def test_market_leaf__truncated_or_overlong_or_retagged_words__refused_by_the_reader():
    words = _leaf().words()
    with pytest.raises(Eip712Error, match="expected 7 packed words, got 6"):
        MarketLeaf.from_words(words[:6])
    with pytest.raises(Eip712Error, match="expected 7 packed words, got 8"):
        MarketLeaf.from_words((*words, 0))
    with pytest.raises(Eip712Error, match="not of the packed layout"):
        MarketLeaf.from_words((words[0] ^ (1 << 248), *words[1:]))   # another tag
    with pytest.raises(Eip712Error, match="not of the packed layout"):
        MarketLeaf.from_words((words[0] | (1 << 150), *words[1:]))   # a reserved bit
    with pytest.raises(Eip712Error, match="MarketLeaf.kind: expected 0..3"):
        MarketLeaf.from_words((words[0] | (7 << 128), *words[1:]))   # kind 7


# ---------------------------------------------------------------- on chain

@dataclass(frozen=True)
class _Head(MarketLeaf):
    """A leaf whose head word is XORed with `flip` (a signer committing to a head of another
    tag, with reserved bits set, or an unknown kind: the packed range checks are bypassed)."""

    flip: int = 0

    def words(self) -> tuple:
        w = super().words()
        return (w[0] ^ self.flip, *w[1:])


@dataclass(frozen=True)
class _Unpacked(MarketLeaf):
    """The same fields in the unpacked layout (fifteen ABI words, no tag)."""

    def as_args(self) -> tuple:
        return tuple(getattr(self, n) for n, _ in self.FIELDS)

    @classmethod
    def abi_types(cls) -> list[str]:
        return [t for _, t in cls.FIELDS]


def _book(system, seed, epoch, make=None):
    params, oracle, verifier, domain = system
    boa.env.time_travel(seconds=600)
    book = random_book(np.random.default_rng(seed), 3, units=("BTC",))
    leaves = _market_leaves(book, boa.env.evm.patch.timestamp)
    committed = [make(m) for m in leaves] if make else leaves
    trees = _post_root(params, oracle, domain, committed, epoch)
    mp = trees.market_multiproof([m.instrument_id for m in leaves]).as_args()
    return verifier, book, leaves, committed, mp


def _fields(m: MarketLeaf) -> dict:
    return {n: getattr(m, n) for n, _ in MarketLeaf.FIELDS}


def test_check_market__leaf_of_another_layout__refused(system):
    # the signers commit to the unpacked fifteen-word encoding of the true leaves: the packed
    # leaves hash to other nodes, so no multiproof of them gives that root
    verifier, book, leaves, _, mp = _book(system, 31, 40, lambda m: _Unpacked(**_fields(m)))
    assert _Unpacked(**_fields(leaves[0])).leaf_hash(ENGINE, 40) != leaves[0].leaf_hash(ENGINE, 40)
    with boa.reverts("ScenarioVerifier: invalid market multiproof"):
        check_market(verifier, ENGINE, [leg[0] for leg in book.legs], [m.as_args() for m in leaves], mp,
                     book.unit_symbols(), [0], 0)


@pytest.mark.parametrize("flip", [
    pytest.param(((MARKET_LEAF_TAG ^ 0x6E) << 248), id="wrong_domain_tag"),
    pytest.param(1 << 200, id="reserved_bit"),
    # where the four-byte tag ("mkt1") of the layout before sat: reserved (zero) now
    pytest.param(0x6B7431 << 224, id="old_tag_bytes"),
    pytest.param(4 << 128, id="kind_beyond_3"),
])
def test_check_market__committed_leaf_with_a_foreign_head__refused(system, flip):
    # the root holds exactly these leaves (signed), yet the verifier decodes none of them
    verifier, book, _, committed, mp = _book(system, 32 + flip % 7, 41 + flip % 97,
                                             lambda m: _Head(**_fields(m), flip=flip))
    with boa.reverts("ScenarioVerifier: market leaf not of the packed layout (tag, reserved bits or kind)"):
        check_market(verifier, ENGINE, [leg[0] for leg in book.legs], [m.as_args() for m in committed], mp,
                     book.unit_symbols(), [0], 0)


def test_check_market__truncated_leaf__refused(system):
    verifier, book, leaves, _, mp = _book(system, 35, 45)
    sizes = [leg[0] for leg in book.legs]
    whole = encode_check_market(ENGINE, sizes, [m.as_args() for m in leaves], mp[0], mp[1], [BTC], [0], 0)
    boa.env.raw_call(verifier.address, data=whole)   # the whole call data: priced
    # the call data ends inside the last leaf's words (what follows the leaves cut too):
    # the decoder refuses it (eight head words: engine, sizes, leaves, proof, order, units,
    # scenarios, joint)
    cut = whole[:4 + 32 * 8 + 32 * (1 + len(sizes)) + 32 + 32 * 7 * len(leaves) - 32]
    with pytest.raises(Revert):
        boa.env.raw_call(verifier.address, data=cut)

"""Leaf encodings of the epoch roots: account leaves (margin of one book) and market leaves
(model inputs of one instrument), and the positions hash that binds a leaf to a book.

    leaf = AccountLeaf(account=a, state_nonce=3, positions_hash=positions_hash(ids, sizes), ...)
    h = leaf.leaf_hash(engine, epoch)   # keccak256(keccak256(abi.encode(engine, epoch, *leaf)))

Each leaf hash covers the engine and the epoch it was built for, although neither travels
with the leaf: RiskOracle inserts the calling engine and that engine's current epoch when it
verifies a proof, so a leaf can never be used on another engine or in another epoch. An
account leaf is encoded in the struct order of `IRiskOracle.AccountLeaf`; a market leaf is
packed into seven words (`MarketLeaf.words`, contracts/modules/market_leaf.vy). The
hashes are checked against the contracts' own hashing: account leaves by RiskOracle's
`verify_account_leaf` (tests/oracle/test_roots.py), market leaves by the multiproof checks of
ScenarioVerifier and FraudProofs (tests/verifier, tests/fraud). docs/oracle.md lists every field with its meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from eth_abi import encode as abi_encode
from sha3 import keccak_256

from offchain.chain.eip712 import Eip712Error, _check_atomic

# Scenario indices packed into `worst_scenarios`, 16 bits each: slot k (bits 16k..16k+15)
# names the binding scenario of the k-th risk unit OF THE BOOK, its units (underlyings of its
# live positions) ordered by their bytes32 symbol ascending, which is the order FraudProofs
# derives from the book's market leaves; slot 15 names the joint scenario (the argmax of the
# summed unit losses, used when decorrelation < 1). The chain can re-price exactly these.
SCENARIO_BITS = 16
JOINT_SLOT = 15
MAX_UNITS = JOINT_SLOT


def _keccak(data: bytes) -> bytes:
    return keccak_256(data).digest()


def positions_hash(ids: Sequence[int], sizes_wad: Sequence[int]) -> bytes:
    """keccak256(abi.encode(uint256[] ids ascending, int256[] sizes)) of the non-zero positions
    of a book: the engine computes the same over its stored book when a leaf is applied."""
    book = sorted((int(i), int(s)) for i, s in zip(ids, sizes_wad, strict=True) if int(s) != 0)
    if len({i for i, _ in book}) != len(book):
        raise Eip712Error(f"ids: an instrument appears twice in the book {sorted(ids)}")
    return _keccak(abi_encode(["uint256[]", "int256[]"], [[i for i, _ in book], [s for _, s in book]]))


EMPTY_POSITIONS_HASH = positions_hash([], [])


def pack_scenarios(indices: Sequence[int], joint: int = 0) -> int:
    """Binding scenario of each of the book's risk units (ordered by bytes32 symbol) and the
    joint scenario -> one uint256 (16 bits per slot, joint in slot 15)."""
    if len(indices) > MAX_UNITS:
        raise Eip712Error(f"worst_scenarios: at most {MAX_UNITS} risk units, got {len(indices)}")
    out = 0
    for u, k in enumerate([*indices, joint]):
        if not 0 <= int(k) < 2**SCENARIO_BITS:
            raise Eip712Error(f"worst_scenarios[{u}]: expected 0..65535, got {k}")
    for u, k in enumerate(indices):
        out |= int(k) << (SCENARIO_BITS * u)
    return out | (int(joint) << (SCENARIO_BITS * JOINT_SLOT))


def unpack_scenarios(packed: int, units: int) -> tuple[list[int], int]:
    """(per-unit scenarios of the first `units` slots, joint scenario)."""
    mask = 2**SCENARIO_BITS - 1
    return [(packed >> (SCENARIO_BITS * u)) & mask for u in range(units)], (packed >> (SCENARIO_BITS * JOINT_SLOT)) & mask


class _Leaf:
    FIELDS: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, typ in self.FIELDS:
            object.__setattr__(self, name, _check_atomic(f"{type(self).__name__}.{name}", typ, getattr(self, name)))

    def as_args(self) -> tuple:
        """The struct as a tuple in field order (ape call argument); fields are immutable
        scalars, so no deep copy (dataclasses.astuple costs ~15 us a leaf)."""
        d = self.__dict__
        return tuple(d[n] for n, _ in self.FIELDS)

    def as_dict(self) -> dict:
        return {f.name: ("0x" + v.hex() if isinstance(v := getattr(self, f.name), bytes) else v)
                for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{n: d[n] for n, _ in cls.FIELDS})

    @classmethod
    def abi_types(cls) -> list[str]:
        return [t for _, t in cls.FIELDS]

    def encode(self, engine: str, epoch: int) -> bytes:
        return abi_encode(["address", "uint256", *self.abi_types()], [engine, epoch, *self.as_args()])

    def leaf_hash(self, engine: str, epoch: int) -> bytes:
        """keccak256(keccak256(abi.encode(engine, epoch, *fields))): hashed twice."""
        return _keccak(_keccak(self.encode(engine, epoch)))


@dataclass(frozen=True)
class AccountLeaf(_Leaf):
    """One account's margin, computed for the book at `state_nonce` (`positions_hash`).
    `pending_base_*` are the engine's cumulative pending-margin counters at that nonce, so
    the leaf still applies after later trades, with their standalone rates added."""

    account: str
    state_nonce: int
    positions_hash: bytes
    pending_base_im_wad: int
    pending_base_mm_wad: int
    position_value_wad: int
    initial_margin_wad: int
    maintenance_margin_wad: int
    worst_loss_wad: int
    worst_scenarios: int
    basis_addon_wad: int
    short_option_addon_wad: int
    liquidity_addon_wad: int
    rounding_guard_wad: int

    FIELDS = (
        ("account", "address"),
        ("state_nonce", "uint256"),
        ("positions_hash", "bytes32"),
        ("pending_base_im_wad", "uint256"),
        ("pending_base_mm_wad", "uint256"),
        ("position_value_wad", "int256"),
        ("initial_margin_wad", "uint256"),
        ("maintenance_margin_wad", "uint256"),
        ("worst_loss_wad", "uint256"),
        ("worst_scenarios", "uint256"),
        ("basis_addon_wad", "uint256"),
        ("short_option_addon_wad", "uint256"),
        ("liquidity_addon_wad", "uint256"),
        ("rounding_guard_wad", "uint256"),
    )


# The packed market leaf (contracts/modules/market_leaf.vy, docs/oracle.md "Market leaf"):
# seven ABI words, each field at a fixed bit range of a fixed word, signed fields biased, so
# the leaf has one encoding and its hash one preimage. The head's top byte is the layout's
# tag ("m") and bits 136-247 are zero: a decoder refuses any other head.
MARKET_LEAF_TAG = 0x6D
MARKET_LEAF_TAG_SHIFT = 248
MARKET_LEAF_WORDS = 7
KIND_MAX = 3
# field -> (word, shift, bits, bias): value + bias is stored in bits shift..shift+bits-1
MARKET_LEAF_LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "instrument_id": (0, 0, 64, 0),
    "expiry": (0, 64, 64, 0),
    "kind": (0, 128, 8, 0),
    "strike_wad": (2, 0, 128, 0),
    "contract_size_wad": (2, 128, 128, 0),
    "spot_wad": (3, 0, 128, 0),
    "forward_wad": (3, 128, 128, 0),
    "vol_wad": (4, 0, 64, 0),
    "rate_wad": (4, 64, 64, 2**63),
    "mark_wad": (4, 128, 128, 2**127),
    "im_long_wad": (5, 0, 128, 0),
    "im_short_wad": (5, 128, 128, 0),
    "mm_long_wad": (6, 0, 128, 0),
    "mm_short_wad": (6, 128, 128, 0),
}
_HEAD_HIGH = MARKET_LEAF_TAG << (MARKET_LEAF_TAG_SHIFT - 136)  # head >> 136 of a well-formed head


@dataclass(frozen=True)
class MarketLeaf(_Leaf):
    """One instrument's model inputs and outputs for the epoch: enough to reprice it in any
    scenario (kind, strike, expiry, spot, forward, vol, rate) and its per-unit figures.
    Fields are the logical values; on chain the leaf is `words()` (packed, seven words), and
    a value outside its packed range is refused here, so no signer builds such a leaf."""

    instrument_id: int
    kind: int
    underlying: bytes
    strike_wad: int
    expiry: int
    contract_size_wad: int
    spot_wad: int
    forward_wad: int
    vol_wad: int
    rate_wad: int
    mark_wad: int
    im_long_wad: int
    im_short_wad: int
    mm_long_wad: int
    mm_short_wad: int

    FIELDS = (
        ("instrument_id", "uint256"),
        ("kind", "uint256"),
        ("underlying", "bytes32"),
        ("strike_wad", "uint256"),
        ("expiry", "uint256"),
        ("contract_size_wad", "uint256"),
        ("spot_wad", "uint256"),
        ("forward_wad", "uint256"),
        ("vol_wad", "uint256"),
        ("rate_wad", "int256"),
        ("mark_wad", "int256"),
        ("im_long_wad", "uint256"),
        ("im_short_wad", "uint256"),
        ("mm_long_wad", "uint256"),
        ("mm_short_wad", "uint256"),
    )
    # the on-chain struct (modules/market_leaf.vy MarketLeaf): head, underlying, strike_size,
    # spot_forward, vol_rate_mark, im, mm
    PACKED_TYPES = ("uint256", "bytes32", "uint256", "uint256", "uint256", "uint256", "uint256")
    PACKED_NAMES = ("head", "underlying", "strike_size", "spot_forward", "vol_rate_mark", "im", "mm")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, (_, _, bits, bias) in MARKET_LEAF_LAYOUT.items():
            v = getattr(self, name)
            if not -bias <= v < 2**bits - bias:
                raise Eip712Error(f"MarketLeaf.{name}: expected {-bias}..{2**bits - bias - 1} "
                                  f"(the packed leaf's {bits}-bit field), got {v}")
        if self.kind > KIND_MAX:
            raise Eip712Error(f"MarketLeaf.kind: expected 0..{KIND_MAX} (future, perpetual, call, put), got {self.kind}")

    def words(self) -> tuple:
        """The packed leaf, word by word (the underlying as bytes32)."""
        w = [0] * MARKET_LEAF_WORDS
        d = self.__dict__
        for name, (i, shift, _, bias) in MARKET_LEAF_LAYOUT.items():
            w[i] |= (d[name] + bias) << shift
        w[0] |= MARKET_LEAF_TAG << MARKET_LEAF_TAG_SHIFT
        return (w[0], d["underlying"], *w[2:])

    @classmethod
    def from_words(cls, words: Sequence) -> MarketLeaf:
        """The leaf of seven packed words (as a log or a call returns them); refuses a
        truncated or overlong leaf and a head of another layout (tag, reserved bits, kind)."""
        if len(words) != MARKET_LEAF_WORDS:
            raise Eip712Error(f"MarketLeaf: expected {MARKET_LEAF_WORDS} packed words, got {len(words)}")
        w = [int(x) if not isinstance(x, bytes | bytearray) else bytes(x) for x in words]
        head = w[0]
        if not isinstance(head, int) or head >> 136 != _HEAD_HIGH:
            raise Eip712Error(f"MarketLeaf: head {head:#x} is not of the packed layout "
                              f"(tag {MARKET_LEAF_TAG:#x} in bits 248-255, bits 136-247 zero)"
                              if isinstance(head, int) else f"MarketLeaf: head must be an integer, got {head!r}")
        values = {name: ((w[i] >> shift) & (2**bits - 1)) - bias
                  for name, (i, shift, bits, bias) in MARKET_LEAF_LAYOUT.items()}
        return cls(underlying=w[1], **values)

    def as_args(self) -> tuple:
        """The packed struct (ape call argument, abi_encode input)."""
        return self.words()

    @classmethod
    def abi_types(cls) -> list[str]:
        return list(cls.PACKED_TYPES)


_M64 = 2**64 - 1


def _words(values: Sequence[int], signed: bool = False) -> np.ndarray:
    """ABI words (n, 32) uint8 of integers, big-endian (two's complement when signed)."""
    v = np.asarray(list(values), dtype=object)
    if signed:
        v = v % 2**256
    limbs = np.empty((len(v), 4), dtype=">u8")
    for k in range(4):
        limbs[:, k] = ((v >> (64 * (3 - k))) & _M64).astype(np.uint64)
    return limbs.view(np.uint8).reshape(len(v), 32)


def account_leaf_hashes(engine: str, epoch: int, leaves: Sequence[AccountLeaf]) -> list[bytes]:
    """AccountLeaf.leaf_hash of many leaves: every ABI word built column by column with numpy
    (~3 us a leaf instead of ~25); equal, tested."""
    n = len(leaves)
    if n == 0:
        return []
    cols = {name: [leaf.__dict__[name] for leaf in leaves] for name, _ in AccountLeaf.FIELDS}
    parts = [np.broadcast_to(np.frombuffer(bytes(12) + bytes.fromhex(engine.removeprefix("0x"))
                                           + int(epoch).to_bytes(32, "big"), dtype=np.uint8), (n, 64))]
    for name, typ in AccountLeaf.FIELDS:
        if typ == "address":
            raw = b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in cols[name])
            parts.append(np.frombuffer(raw, dtype=np.uint8).reshape(n, 32))
        elif typ == "bytes32":
            parts.append(np.frombuffer(b"".join(cols[name]), dtype=np.uint8).reshape(n, 32))
        else:
            parts.append(_words(cols[name], signed=typ == "int256"))
    body = np.ascontiguousarray(np.concatenate(parts, axis=1)).tobytes()
    size = 32 * (2 + len(AccountLeaf.FIELDS))
    return [keccak_256(keccak_256(body[i * size:(i + 1) * size]).digest()).digest() for i in range(n)]

"""EIP-712 messages of RiskOracle: types, builders, digests and (multi-)signing.

The type strings here and the *_TYPEHASH constants in contracts/RiskOracle.vy must stay
identical (tests/oracle/test_chain_eip712.py compares the digests with the contract's views).
All values are integers (wei / WAD); floats are refused.

    domain = Domain(chain_id=1337, verifying_contract=oracle.address)
    root = EpochRoot(engine=engine.address, epoch=7, timestamp=t, deadline=t + 60, ...)
    sigs = sign_multi(root, domain, [signer_a, signer_b])   # ascending signer, low-s
    oracle.post_root(root.as_args(), sigs, sender=keeper)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields

from eth_abi import encode as abi_encode
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import is_address, keccak, to_checksum_address

DOMAIN_NAME = "netmargin RiskOracle"
DOMAIN_VERSION = "1"

# secp256k1 group order; signatures with s > N/2 are rejected on-chain (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# Bounds of RiskOracle (MAX_BATCH, MAX_UNDERLYINGS, MAX_SIGNATURES).
MAX_BATCH = 256
MAX_UNDERLYINGS = 32
MAX_SIGNATURES = 16

UINT256_MAX = 2**256 - 1
INT256_MIN, INT256_MAX = -(2**255), 2**255 - 1

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class Eip712Error(ValueError):
    """A message field that cannot be encoded (names the field, value and expectation)."""


# ---------------------------------------------------------------------------- domain


@dataclass(frozen=True)
class Domain:
    """The oracle's EIP-712 domain: one per (chain, oracle deployment)."""

    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        _check_uint("domain.chain_id", self.chain_id)
        object.__setattr__(self, "verifying_contract", str(getattr(self.verifying_contract, "address", self.verifying_contract)))
        if not is_address(self.verifying_contract):
            raise Eip712Error(
                f"domain.verifying_contract: expected a 20-byte address, got {self.verifying_contract!r}"
            )
        object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))

    def as_dict(self) -> dict:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    def separator(self) -> bytes:
        """keccak256(abi.encode(EIP712Domain typehash, name, version, chainId, contract))."""
        typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [typehash, keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION), self.chain_id,
                 self.verifying_contract],
            )
        )


# ---------------------------------------------------------------------------- messages


class _Message:
    """Shared behaviour: field validation, EIP-712 type list, contract call arguments."""

    PRIMARY_TYPE: str = ""
    # (field name, EIP-712 type) in struct order; must match RiskOracle.vy.
    FIELDS: tuple[tuple[str, str], ...] = ()

    @classmethod
    def eip712_type(cls) -> list[dict]:
        return [{"name": n, "type": t} for n, t in cls.FIELDS]

    @classmethod
    def type_string(cls) -> str:
        return f"{cls.PRIMARY_TYPE}({','.join(f'{t} {n}' for n, t in cls.FIELDS)})"

    @classmethod
    def typehash(cls) -> bytes:
        return keccak(text=cls.type_string())

    def message(self) -> dict:
        # eth-account wants lists for EIP-712 arrays; the dataclass keeps tuples (immutable).
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)  # type: ignore[arg-type]
        }

    def as_args(self) -> tuple:
        """The struct as a tuple in field order, ready for an ape contract call."""
        return tuple(list(v) if isinstance(v, tuple) else v for v in astuple(self))  # type: ignore[arg-type]

    def _validate(self) -> None:
        for name, typ in self.FIELDS:
            value = getattr(self, name)
            base = typ.removesuffix("[]")
            if typ.endswith("[]"):
                if not isinstance(value, list | tuple):
                    raise Eip712Error(f"{self.PRIMARY_TYPE}.{name}: expected a list, got {type(value).__name__}")
                value = tuple(value)
                object.__setattr__(self, name, value)
                for i, item in enumerate(value):
                    _check_atomic(f"{self.PRIMARY_TYPE}.{name}[{i}]", base, item)
            else:
                object.__setattr__(self, name, _check_atomic(f"{self.PRIMARY_TYPE}.{name}", base, value))


@dataclass(frozen=True)
class MarketData(_Message):
    """Signed marks, cumulative funding indices and per-unit margin rates of a batch."""

    ids: Sequence[int]
    marks_wad: Sequence[int]
    funding_indices_wad: Sequence[int]
    im_long_wad: Sequence[int]
    im_short_wad: Sequence[int]
    mm_long_wad: Sequence[int]
    mm_short_wad: Sequence[int]
    params_hash: bytes
    timestamp: int
    deadline: int

    PRIMARY_TYPE = "MarketData"
    FIELDS = (
        ("ids", "uint256[]"),
        ("marks_wad", "int256[]"),
        ("funding_indices_wad", "int256[]"),
        ("im_long_wad", "uint256[]"),
        ("im_short_wad", "uint256[]"),
        ("mm_long_wad", "uint256[]"),
        ("mm_short_wad", "uint256[]"),
        ("params_hash", "bytes32"),
        ("timestamp", "uint256"),
        ("deadline", "uint256"),
    )

    def __post_init__(self) -> None:
        self._validate()
        n = len(self.ids)
        if not 1 <= n <= MAX_BATCH:
            raise Eip712Error(f"MarketData.ids: expected 1..{MAX_BATCH} ids, got {n}")
        for name, _ in self.FIELDS[1:7]:
            if len(getattr(self, name)) != n:
                raise Eip712Error(
                    f"MarketData.{name}: expected {n} values (one per id), got {len(getattr(self, name))}"
                )


@dataclass(frozen=True)
class IndexPrices(_Message):
    """Signed index prices per underlying (bytes32 symbols, see `symbol_to_bytes32`)."""

    underlyings: Sequence[bytes]
    prices_wad: Sequence[int]
    timestamp: int
    deadline: int

    PRIMARY_TYPE = "IndexPrices"
    FIELDS = (
        ("underlyings", "bytes32[]"),
        ("prices_wad", "uint256[]"),
        ("timestamp", "uint256"),
        ("deadline", "uint256"),
    )

    def __post_init__(self) -> None:
        self._validate()
        n = len(self.underlyings)
        if not 1 <= n <= MAX_UNDERLYINGS:
            raise Eip712Error(f"IndexPrices.underlyings: expected 1..{MAX_UNDERLYINGS} entries, got {n}")
        if len(self.prices_wad) != n:
            raise Eip712Error(f"IndexPrices.prices_wad: expected {n} values, got {len(self.prices_wad)}")


@dataclass(frozen=True)
class SettlementPrice(_Message):
    """Signed expiry settlement price of one future or option."""

    instrument_id: int
    price_wad: int
    timestamp: int
    deadline: int

    PRIMARY_TYPE = "SettlementPrice"
    FIELDS = (
        ("instrument_id", "uint256"),
        ("price_wad", "uint256"),
        ("timestamp", "uint256"),
        ("deadline", "uint256"),
    )

    def __post_init__(self) -> None:
        self._validate()


@dataclass(frozen=True)
class EpochRoot(_Message):
    """One epoch's margin roots for one engine: the accounts root (a Merkle tree of account
    leaves, `offchain.chain.leaves`) and the market root (per-instrument model inputs, a
    positional tree over instrument ids 1..market_count, the registry's count at posting)."""

    engine: str
    epoch: int
    timestamp: int
    deadline: int
    params_hash: bytes
    market_root: bytes
    market_count: int
    accounts_root: bytes
    account_count: int

    PRIMARY_TYPE = "EpochRoot"
    FIELDS = (
        ("engine", "address"),
        ("epoch", "uint256"),
        ("timestamp", "uint256"),
        ("deadline", "uint256"),
        ("params_hash", "bytes32"),
        ("market_root", "bytes32"),
        ("market_count", "uint256"),
        ("accounts_root", "bytes32"),
        ("account_count", "uint256"),
    )

    def __post_init__(self) -> None:
        self._validate()


@dataclass(frozen=True)
class EpochData(_Message):
    """What makes an epoch rebuildable from public data, signed beside its root: the block
    whose state the account leaves were built on (`RiskOracle.publish_epoch_data`, which
    also logs every market leaf)."""

    engine: str
    epoch: int
    state_block: int
    accounts_root: bytes
    market_root: bytes

    PRIMARY_TYPE = "EpochData"
    FIELDS = (
        ("engine", "address"),
        ("epoch", "uint256"),
        ("state_block", "uint256"),
        ("accounts_root", "bytes32"),
        ("market_root", "bytes32"),
    )

    def __post_init__(self) -> None:
        self._validate()


Message = MarketData | IndexPrices | SettlementPrice | EpochRoot | EpochData

# RiskOracle storage ranges (packed words) and the registry's perpetual kind code.
INT96_MIN, INT96_MAX = -(2**95), 2**95 - 1
RATE_MAX = 2**128 - 1
KIND_PERPETUAL = 1


def check_market_rules(data: MarketData, kinds: dict[int, int]) -> None:
    """The rules RiskOracle enforces on a batch, plus the one it cannot check cheaply
    (funding index 0 for non-perpetuals), raised here with the offending field named.
    `kinds` maps instrument id -> registry kind. Call before signing."""
    seen: set[int] = set()
    for i, instrument_id in enumerate(data.ids):
        where = f"MarketData[{i}] (instrument {instrument_id})"
        if instrument_id in seen:
            raise Eip712Error(f"{where}.ids: expected each id once per batch, got a repeat")
        seen.add(instrument_id)
        if instrument_id not in kinds:
            raise Eip712Error(f"{where}.ids: expected a listed instrument, got an unknown id")
        for name in ("marks_wad", "funding_indices_wad"):
            value = getattr(data, name)[i]
            if not INT96_MIN <= value <= INT96_MAX:
                raise Eip712Error(f"{where}.{name}: expected within +/-2**95, got {value}")
        if kinds[instrument_id] != KIND_PERPETUAL and data.funding_indices_wad[i] != 0:
            raise Eip712Error(
                f"{where}.funding_indices_wad: expected 0 for a non-perpetual, got {data.funding_indices_wad[i]}"
            )
        for side in ("long", "short"):
            im, mm = getattr(data, f"im_{side}_wad")[i], getattr(data, f"mm_{side}_wad")[i]
            if im > RATE_MAX:
                raise Eip712Error(f"{where}.im_{side}_wad: expected < 2**128, got {im}")
            if im < mm:
                raise Eip712Error(f"{where}.im_{side}_wad: expected >= mm_{side}_wad ({mm}), got {im}")


# ---------------------------------------------------------------------------- encoding


def typed_data(message: Message, domain: Domain) -> dict:
    """The full EIP-712 JSON document (what a wallet's eth_signTypedData_v4 takes)."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, message.PRIMARY_TYPE: message.eip712_type()},
        "primaryType": message.PRIMARY_TYPE,
        "domain": domain.as_dict(),
        "message": message.message(),
    }


def signable(message: Message, domain: Domain) -> SignableMessage:
    return encode_typed_data(full_message=typed_data(message, domain))


def struct_hash(message: Message) -> bytes:
    """hashStruct(message), independent of the domain."""
    return bytes(encode_typed_data({"name": "x"}, {message.PRIMARY_TYPE: message.eip712_type()},
                                   message.message()).body)


def digest(message: Message, domain: Domain) -> bytes:
    """keccak256(0x1901 || domainSeparator || hashStruct(message)): what signers sign and
    what RiskOracle's *_digest views return."""
    return bytes(_hash_eip191_message(signable(message, domain)))


# ---------------------------------------------------------------------------- signing


def sign(message: Message, domain: Domain, account: LocalAccount) -> bytes:
    """65-byte r || s || v signature (v in {27, 28}, low s)."""
    signed = account.sign_message(signable(message, domain))
    return normalize_signature(signed.r, signed.s, signed.v)


def sign_multi(message: Message, domain: Domain, accounts: Iterable[LocalAccount]) -> list[bytes]:
    """One signature per account, ordered by ascending signer address as RiskOracle
    requires. Duplicate accounts are refused (the contract would reject them)."""
    ordered = sorted(accounts, key=lambda a: int(a.address, 16))
    addresses = [a.address for a in ordered]
    if len(set(addresses)) != len(addresses):
        raise Eip712Error(f"accounts: expected distinct signers, got {addresses}")
    if len(ordered) > MAX_SIGNATURES:
        raise Eip712Error(f"accounts: expected at most {MAX_SIGNATURES} signers, got {len(ordered)}")
    return [sign(message, domain, a) for a in ordered]


def normalize_signature(r: int, s: int, v: int) -> bytes:
    """Encode (r, s, v) as 65 bytes with s in the lower half of the curve order
    (flipping v), so the signature passes the EIP-2 high-s check."""
    if v < 27:
        v += 27
    if v not in (27, 28):
        raise Eip712Error(f"signature.v: expected 27 or 28, got {v}")
    if s > SECP256K1_N // 2:
        s = SECP256K1_N - s
        v = 55 - v  # 27 <-> 28
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def recover(message: Message, domain: Domain, signature: bytes) -> str:
    """Signer address of a 65-byte signature (checksummed)."""
    if len(signature) != 65:
        raise Eip712Error(f"signature: expected 65 bytes, got {len(signature)}")
    v = signature[64] - 27 if signature[64] >= 27 else signature[64]
    sig = keys.Signature(signature_bytes=signature[:64] + bytes([v]))
    return sig.recover_public_key_from_msg_hash(digest(message, domain)).to_checksum_address()


# ---------------------------------------------------------------------------- helpers


def symbol_to_bytes32(symbol: str) -> bytes:
    """'BTC' -> b'BTC' right-padded with zeros to 32 bytes (the registry's underlying)."""
    raw = symbol.encode("ascii")
    if not 1 <= len(raw) <= 32:
        raise Eip712Error(f"symbol: expected 1..32 ASCII characters, got {symbol!r}")
    return raw.ljust(32, b"\0")


def bytes32_to_symbol(value: bytes) -> str:
    return bytes(value).rstrip(b"\0").decode("ascii")


def _check_uint(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Eip712Error(f"{name}: expected an integer (wei/WAD), got {value!r}")
    if not 0 <= value <= UINT256_MAX:
        raise Eip712Error(f"{name}: expected 0..2**256-1, got {value}")
    return value


def _check_atomic(name: str, typ: str, value: object) -> object:
    if typ == "uint256":
        return _check_uint(name, value)
    if typ == "int256":
        if isinstance(value, bool) or not isinstance(value, int):
            raise Eip712Error(f"{name}: expected an integer (WAD), got {value!r}")
        if not INT256_MIN <= value <= INT256_MAX:
            raise Eip712Error(f"{name}: expected an int256, got {value}")
        return value
    if typ == "bytes32":
        if isinstance(value, str) and value.startswith("0x"):
            value = bytes.fromhex(value[2:])
        if not isinstance(value, bytes | bytearray) or len(value) != 32:
            raise Eip712Error(f"{name}: expected 32 bytes, got {value!r}")
        return bytes(value)
    if typ == "address":
        value = getattr(value, "address", value)  # ape accounts and contracts
        if not isinstance(value, str) or not is_address(value):
            raise Eip712Error(f"{name}: expected a 20-byte address, got {value!r}")
        return to_checksum_address(value)
    raise Eip712Error(f"{name}: unsupported EIP-712 type {typ}")

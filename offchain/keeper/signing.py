"""EIP-712 digests and signatures for what the keeper signs, fast enough for a cycle.

The type strings are RiskOracle's (`MARKET_DATA_TYPEHASH` etc.); tests/e2e checks every digest
here against the oracle's own `*_digest` views, so the two cannot drift apart silently.
Signing uses eth-keys' coincurve backend (native secp256k1, ~140 us per signature; the
pure-Python fallback takes ~3 ms). A cycle signs a handful of digests (an epoch root and its
data, marks, index and settlement prices), so signing is serial in the keeper's process.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_keys import keys as eth_keys

from offchain.chain import eip712

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# One source of truth for the type strings: offchain.chain.eip712 (checked against the
# contract's *_TYPEHASH constants in tests/oracle); this module only encodes them faster.
MARKET_DATA_TYPE = eip712.MarketData.type_string().encode()
INDEX_PRICES_TYPE = eip712.IndexPrices.type_string().encode()
SETTLEMENT_PRICE_TYPE = eip712.SettlementPrice.type_string().encode()
DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

MARKET_DATA_TYPEHASH = keccak(MARKET_DATA_TYPE)
INDEX_PRICES_TYPEHASH = keccak(INDEX_PRICES_TYPE)
SETTLEMENT_PRICE_TYPEHASH = keccak(SETTLEMENT_PRICE_TYPE)


def _u(x: int) -> bytes:
    return int(x).to_bytes(32, "big")


def _i(x: int) -> bytes:
    return int(x).to_bytes(32, "big", signed=True)


def _addr(a: str) -> bytes:
    return bytes(12) + bytes.fromhex(a[2:] if a.startswith("0x") else a)


def _b32(b: bytes | str) -> bytes:
    if isinstance(b, str):
        b = bytes.fromhex(b.removeprefix("0x"))
    return b.ljust(32, b"\0")


def domain_separator(name: str, chain_id: int, verifying_contract: str, version: str = "1") -> bytes:
    return keccak(keccak(DOMAIN_TYPE) + keccak(name.encode()) + keccak(version.encode())
                  + _u(chain_id) + _addr(verifying_contract))


def oracle_domain(chain_id: int, oracle: str) -> bytes:
    return domain_separator("netmargin RiskOracle", chain_id, oracle)


def typed_digest(domain: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain + struct_hash)


def market_data_struct_hash(ids, marks, funding, im_long, im_short, mm_long, mm_short,
                            params_hash: bytes, timestamp: int, deadline: int) -> bytes:
    def arr(xs, enc):
        return keccak(b"".join(enc(x) for x in xs))
    return keccak(MARKET_DATA_TYPEHASH + arr(ids, _u) + arr(marks, _i) + arr(funding, _i)
                  + arr(im_long, _u) + arr(im_short, _u) + arr(mm_long, _u) + arr(mm_short, _u)
                  + _b32(params_hash) + _u(timestamp) + _u(deadline))


def index_prices_struct_hash(underlyings: list[bytes], prices, timestamp: int, deadline: int) -> bytes:
    return keccak(INDEX_PRICES_TYPEHASH + keccak(b"".join(_b32(u) for u in underlyings))
                  + keccak(b"".join(_u(p) for p in prices)) + _u(timestamp) + _u(deadline))


def settlement_price_struct_hash(instrument_id: int, price_wad: int, timestamp: int, deadline: int) -> bytes:
    return keccak(SETTLEMENT_PRICE_TYPEHASH + _u(instrument_id) + _u(price_wad) + _u(timestamp)
                  + _u(deadline))


def sign_digest(key: eth_keys.PrivateKey, digest: bytes) -> bytes:
    """65-byte r || s || v, v in {27, 28}, low s (what snekmate's ecdsa accepts)."""
    sig = key.sign_msg_hash(digest)
    r, s, v = sig.r, sig.s, sig.v
    if s > SECP256K1_N // 2:  # eth-keys already returns low s; kept as a guard
        s, v = SECP256K1_N - s, v ^ 1
    return _u(r) + _u(s) + bytes([27 + v])


class Signers:
    """The keeper's signing keys (one or more of the oracle's M-of-N), ordered by address.

    `sign(digests)` returns, per digest, the signatures in ascending signer order as the
    oracle requires.
    """

    def __init__(self, accounts: list[LocalAccount]):
        ordered = sorted(accounts, key=lambda a: int(a.address, 16))
        self.addresses = [a.address for a in ordered]
        self._keys = [eth_keys.PrivateKey(a.key) for a in ordered]

    def sign(self, digests: list[bytes]) -> list[list[bytes]]:
        return [[sign_digest(k, d) for k in self._keys] for d in digests]


# ---- maker orders (MarginEngine's own EIP-712 domain) ----
ORDER_TYPE = (
    b"Order(address account,uint256 instrument_id,bool is_buy,uint256 size_wad,"
    b"uint256 limit_price_wad,uint256 order_nonce,uint256 deadline)"
)
ORDER_TYPEHASH = keccak(ORDER_TYPE)


def engine_domain(chain_id: int, engine: str) -> bytes:
    return domain_separator("netmargin MarginEngine", chain_id, engine)


@dataclass(frozen=True)
class Order:
    account: str
    instrument_id: int
    is_buy: bool
    size_wad: int
    limit_price_wad: int
    order_nonce: int
    deadline: int

    def struct_hash(self) -> bytes:
        return keccak(ORDER_TYPEHASH + _addr(self.account) + _u(self.instrument_id)
                      + _u(1 if self.is_buy else 0) + _u(self.size_wad) + _u(self.limit_price_wad)
                      + _u(self.order_nonce) + _u(self.deadline))

    def as_tuple(self) -> tuple:
        return (self.account, self.instrument_id, self.is_buy, self.size_wad, self.limit_price_wad,
                self.order_nonce, self.deadline)

    def as_dict(self) -> dict:
        return {"account": self.account, "instrument_id": self.instrument_id, "is_buy": self.is_buy,
                "size_wad": str(self.size_wad), "limit_price_wad": str(self.limit_price_wad),
                "order_nonce": str(self.order_nonce), "deadline": self.deadline}


def sign_order(order: Order, domain: bytes, account: LocalAccount) -> bytes:
    return sign_digest(eth_keys.PrivateKey(account.key), typed_digest(domain, order.struct_hash()))

"""EIP-712 maker orders of MarginEngine: the Order struct, its domain, digest and signature.

The type string must equal ORDER_TYPEHASH in contracts/MarginEngine.vy (tests/engine checks
the digest against the engine's `order_hash` view). Signing goes through eth-account's
`encode_typed_data` (what a wallet's eth_signTypedData_v4 does), reusing the encoding and
signature helpers of offchain.chain.eip712; only the domain name differs from the oracle's.

    domain = EngineDomain(chain_id=chain.chain_id, verifying_contract=engine.address)
    order = Order(account=maker.address, instrument_id=1, is_buy=True, size_wad=10**18,
                  limit_price_wad=60_000 * 10**18, order_nonce=1, deadline=t + 3600)
    engine.fill(order.as_args(), sign_order(order, domain, maker), fill_size_wad, sender=taker)
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, keccak, to_checksum_address

from offchain.chain import eip712
from offchain.chain.eip712 import Eip712Error, _check_uint, _Message

ENGINE_DOMAIN_NAME = "netmargin MarginEngine"
ENGINE_DOMAIN_VERSION = "1"


@dataclass(frozen=True)
class EngineDomain:
    """MarginEngine's EIP-712 domain: one per (chain, engine deployment)."""

    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        _check_uint("domain.chain_id", self.chain_id)
        address = str(getattr(self.verifying_contract, "address", self.verifying_contract))
        if not is_address(address):
            raise Eip712Error(f"domain.verifying_contract: expected a 20-byte address, got {address!r}")
        object.__setattr__(self, "verifying_contract", to_checksum_address(address))

    def as_dict(self) -> dict:
        return {
            "name": ENGINE_DOMAIN_NAME,
            "version": ENGINE_DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    def separator(self) -> bytes:
        typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [typehash, keccak(text=ENGINE_DOMAIN_NAME), keccak(text=ENGINE_DOMAIN_VERSION),
                 self.chain_id, self.verifying_contract],
            )
        )


@dataclass(frozen=True)
class Order(_Message):
    """A maker order (IMarginEngine.Order). Fills happen at exactly `limit_price_wad`."""

    account: str
    instrument_id: int
    is_buy: bool
    size_wad: int
    limit_price_wad: int
    order_nonce: int
    deadline: int

    PRIMARY_TYPE = "Order"
    FIELDS = (
        ("account", "address"),
        ("instrument_id", "uint256"),
        ("is_buy", "bool"),
        ("size_wad", "uint256"),
        ("limit_price_wad", "uint256"),
        ("order_nonce", "uint256"),
        ("deadline", "uint256"),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.is_buy, bool):
            raise Eip712Error(f"Order.is_buy: expected True or False, got {self.is_buy!r}")
        # _Message validates the atomic types it knows; is_buy is checked above.
        for name, typ in self.FIELDS:
            if typ != "bool":
                object.__setattr__(self, name, eip712._check_atomic(f"Order.{name}", typ, getattr(self, name)))
        if self.size_wad == 0:
            raise Eip712Error("Order.size_wad: expected > 0, got 0")
        if self.instrument_id == 0:
            raise Eip712Error("Order.instrument_id: expected an id >= 1, got 0")


def order_digest(order: Order, domain: EngineDomain) -> bytes:
    """keccak256(0x1901 || domainSeparator || hashStruct(order)): the engine's `order_hash`."""
    return eip712.digest(order, domain)  # type: ignore[arg-type]


def sign_order(order: Order, domain: EngineDomain, maker: LocalAccount) -> bytes:
    """65-byte r || s || v signature by the maker (low s, v in {27, 28})."""
    if to_checksum_address(maker.address) != order.account:
        raise Eip712Error(f"maker: expected the order's account {order.account}, got {maker.address}")
    return eip712.sign(order, domain, maker)  # type: ignore[arg-type]

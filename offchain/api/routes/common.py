"""Shared path parameters."""

from __future__ import annotations

from typing import Annotated

from eth_utils import to_checksum_address
from fastapi import Path

from offchain.api.models import ADDRESS_PATTERN

AddressPath = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x-prefixed 20-byte address")]


def checksum(address: str) -> str:
    return to_checksum_address(address)

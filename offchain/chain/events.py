"""Contract event logs read straight from the node (eth_getLogs), decoded with the project's ABIs.

The watcher (roots, applied leaves), the fraud-proof record reader and the keeper (the
signer bond to push) all search logs the same way: one event, topics after topic0, a block
range. Indexed arguments stay in the raw log's topics for the caller to read.
"""

from __future__ import annotations

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic
from web3.contract import Contract

from offchain.chain.contracts import abi_type
from offchain.errors import UserError


def event_abi(contract: Contract, name: str) -> dict:
    for item in contract.abi:
        if item.get("type") == "event" and item["name"] == name:
            return item
    raise UserError(f"{contract.address}: its ABI has no event {name}; this checkout's contracts are "
                    "older than the deployment's")


def event_logs(contract: Contract, name: str, topics: list[str], from_block: int = 0,
               to_block: int | str = "latest") -> list[tuple[dict, dict]]:
    """(log, decoded non-indexed arguments) of `name` logs matching `topics` after topic0."""
    abi = event_abi(contract, name)
    data = [i for i in abi["inputs"] if not i["indexed"]]
    logs = contract.w3.eth.get_logs({"address": contract.address, "fromBlock": from_block, "toBlock": to_block,
                                     "topics": ["0x" + event_abi_to_log_topic(abi).hex(), *topics]})
    return [(log, dict(zip([i["name"] for i in data], abi_decode([abi_type(i) for i in data], bytes(log["data"])),
                           strict=True))) for log in logs]


def topic_uint(n: int) -> str:
    """An indexed uint256 argument as a topic filter."""
    return "0x" + int(n).to_bytes(32, "big").hex()


def topic_address(a: str) -> str:
    """An indexed address argument as a topic filter."""
    return "0x" + bytes(12).hex() + a.lower().removeprefix("0x")

"""Account leaves applied on chain, read back from the transactions that applied them.

Signers who post a false root can withhold its leaves (no epoch file, no `/proof`), but a
false leaf harms only once applied, and applying one puts the leaf and its Merkle proof in
calldata: every engine function that takes an `AccountLeaf` and its proof (`apply_leaf`,
`withdraw_with_leaf`, `fill_with_leaf`) logs `LeafApplied(account, ..., root_timestamp)`.
For a root's `LeafApplied` logs (root_timestamp = the root's signed time) in a block range,
each transaction is fetched and its input decoded when it called the engine itself; a call
made by another contract is found in the node's `debug_traceTransaction` call tracer, and
when the node has none the leaf is reported as applied through a contract, not harvested.
Only a leaf whose proof verifies against the posted accounts root is returned as evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from web3.exceptions import TransactionNotFound

from offchain.chain.contracts import Deployment, abi_type
from offchain.chain.leaves import AccountLeaf
from offchain.chain.published import PublishedLeaf
from offchain.chain.rebuild import PostedRoot, _logs

LEAF_FIELDS = [n for n, _t in AccountLeaf.FIELDS]


@dataclass(frozen=True)
class AppliedLeaf:
    """One `LeafApplied` log of a root, with the leaf and proof the transaction carried
    (None and `note` saying why when they could not be read)."""

    epoch: int
    account: str
    tx_hash: str
    block: int
    function: str = ""        # the engine function that applied it
    via: str = ""             # "" = the transaction called the engine; else the calling contract
    leaf: AccountLeaf | None = None
    proof: list[bytes] = field(default_factory=list)
    note: str = ""

    def published(self) -> PublishedLeaf:
        where = f"calldata of tx {self.tx_hash} ({self.function}" + (f" via {self.via})" if self.via else ")")
        return PublishedLeaf(self.epoch, self.leaf, self.proof, where)


class LeafCalls:
    """Decodes calls to the engine's functions that carry an account leaf and its proof,
    found in its ABI by shape (a tuple with the AccountLeaf fields, then a bytes32[] proof),
    so a function added later is decoded too."""

    def __init__(self, engine_abi: list):
        self.by_selector: dict[bytes, tuple[str, list[str], int, int]] = {}
        for item in engine_abi:
            if item.get("type") != "function":
                continue
            inputs = item["inputs"]
            names = [i["name"] for i in inputs]
            leaf_at = next((k for k, i in enumerate(inputs) if i["type"] == "tuple" and
                            [c["name"] for c in i["components"]] == LEAF_FIELDS), None)
            if leaf_at is None or "proof" not in names or inputs[names.index("proof")]["type"] != "bytes32[]":
                continue
            types = [abi_type(i) for i in inputs]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            self.by_selector[selector] = (item["name"], types, leaf_at, names.index("proof"))

    def decode(self, data: bytes) -> tuple[str, AccountLeaf, list[bytes]] | None:
        """(function, leaf, proof) of calldata to one of these functions; None otherwise
        (another function, or calldata that does not decode)."""
        found = self.by_selector.get(bytes(data[:4]))
        if found is None:
            return None
        name, types, leaf_at, proof_at = found
        try:
            args = abi_decode(types, bytes(data[4:]))
            leaf = AccountLeaf(*args[leaf_at])
        except Exception:  # noqa: BLE001 - malformed calldata in a reverted inner call: not evidence
            return None
        return name, leaf, [bytes(p) for p in args[proof_at]]


class Harvester:
    def __init__(self, dep: Deployment):
        self.dep = dep
        self.engine = dep.engine.address.lower()
        self.calls = LeafCalls(dep.engine.abi)

    def applied(self, root: PostedRoot, from_block: int, to_block: int) -> list[AppliedLeaf]:
        """The leaves of `root` applied in blocks from_block..to_block, in log order."""
        logs = [(lg, v) for lg, v in _logs(self.dep, self.dep.engine, "LeafApplied", [], from_block, to_block)
                if int(v["root_timestamp"]) == root.signed_at]
        out: list[AppliedLeaf] = []
        calls_of: dict[str, tuple[str, list] | str] = {}
        for lg, _v in logs:
            tx_hash = "0x" + bytes(lg["transactionHash"]).hex().removeprefix("0x")
            account = to_checksum_address("0x" + bytes(lg["topics"][1])[-20:].hex())
            if tx_hash not in calls_of:
                calls_of[tx_hash] = self._calls(tx_hash)
            got = calls_of[tx_hash]
            base = AppliedLeaf(root.epoch, account, tx_hash, int(lg["blockNumber"]))
            if isinstance(got, str):
                out.append(_with(base, note=got))
                continue
            via, decoded = got
            match = next(((fn, leaf, proof) for fn, leaf, proof in decoded
                          if leaf.account.lower() == account.lower() and
                          PublishedLeaf(root.epoch, leaf, proof, "").in_root(root.engine, root.accounts_root)), None)
            if match is None:
                out.append(_with(base, via=via, note="no call in the transaction carries this account's leaf "
                                                     "with a proof in the posted root; not harvested"))
                continue
            fn, leaf, proof = match
            out.append(_with(base, function=fn, via=via, leaf=leaf, proof=proof))
        return out

    def _calls(self, tx_hash: str) -> tuple[str, list] | str:
        """("" or the calling contract, [(function, leaf, proof) of each leaf-carrying call to
        the engine]) or, when they cannot be read, why."""
        try:
            tx = self.dep.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return f"transaction {tx_hash} not found at the node; not harvested"
        to = (tx.get("to") or "").lower()
        if to == self.engine:
            one = self.calls.decode(bytes(tx["input"]))
            return ("", [one]) if one else "the transaction's input is no leaf-carrying engine call; not harvested"
        via = to_checksum_address(to) if to else "a contract creation"
        answer = self.dep.w3.provider.make_request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        if not isinstance(answer, dict) or "result" not in answer or not isinstance(answer["result"], dict):
            why = (answer.get("error") or {}).get("message", "no result") if isinstance(answer, dict) else "no answer"
            return (f"applied through a contract ({via}); not harvested: the node's debug_traceTransaction "
                    f"call tracer answered: {str(why)[:200]}")
        return via, [d for d in (self.calls.decode(bytes.fromhex(c.get("input", "0x")[2:]))
                                 for c in _engine_calls(answer["result"], self.engine)) if d]


def _engine_calls(frame: dict, engine: str) -> Iterator[dict]:
    """Every successful CALL frame to the engine in a callTracer tree (a delegatecall from the
    engine to its extension carries the same input, so the engine's own frame is enough)."""
    if frame.get("type") == "CALL" and (frame.get("to") or "").lower() == engine and not frame.get("error"):
        yield frame
    for child in frame.get("calls") or ():
        yield from _engine_calls(child, engine)


def _with(base: AppliedLeaf, **changes) -> AppliedLeaf:
    return AppliedLeaf(**{**base.__dict__, **changes})

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

from eth_utils import keccak, to_checksum_address

from offchain.chain.contracts import READ_BATCH, Deployment, abi_type
from offchain.chain.eip712 import Eip712Error
from offchain.chain.events import event_logs
from offchain.chain.leaves import AccountLeaf, account_leaf_hashes
from offchain.chain.merkle import verify
from offchain.chain.published import PublishedLeaf
from offchain.chain.rebuild import PostedRoot

LEAF_FIELDS = [n for n, _t in AccountLeaf.FIELDS]
LEAF_WORDS = len(AccountLeaf.FIELDS)
MAX_PROOF = 32          # the engine's DynArray[bytes32, 32]


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
    leaf_hash: bytes = b""    # the leaf's tree node in the root's epoch

    def published(self) -> PublishedLeaf:
        where = f"calldata of tx {self.tx_hash} ({self.function}" + (f" via {self.via})" if self.via else ")")
        return PublishedLeaf(self.epoch, self.leaf, self.proof, where)


class LeafCalls:
    """Decodes calls to the engine's functions that carry an account leaf and its proof,
    found in its ABI by shape (a tuple with the AccountLeaf fields, then a bytes32[] proof),
    so a function added later is decoded too. The leaf is a static tuple at a fixed place in
    the head and the proof one offset away, so both are sliced from the calldata directly
    (eth_abi's generic decoder costs ~1.5 ms a call, most of a busy root's harvest)."""

    def __init__(self, engine_abi: list):
        # selector -> (function, byte offset of the leaf in the head, of the proof's offset word, head size)
        self.by_selector: dict[bytes, tuple[str, int, int, int]] = {}
        for item in engine_abi:
            if item.get("type") != "function":
                continue
            inputs = item["inputs"]
            names = [i["name"] for i in inputs]
            leaf_at = next((k for k, i in enumerate(inputs) if i["type"] == "tuple" and
                            [c["name"] for c in i["components"]] == LEAF_FIELDS), None)
            if leaf_at is None or "proof" not in names or inputs[names.index("proof")]["type"] != "bytes32[]":
                continue
            heads = [_head_size(i) for i in inputs]
            selector = keccak(text=f"{item['name']}({','.join(abi_type(i) for i in inputs)})")[:4]
            self.by_selector[selector] = (item["name"], sum(heads[:leaf_at]), sum(heads[:names.index("proof")]),
                                          sum(heads))

    def decode(self, data: bytes) -> tuple[str, AccountLeaf, list[bytes]] | None:
        """(function, leaf, proof) of calldata to one of these functions; None otherwise
        (another function, or calldata that does not decode: short, dirty padding, an offset
        or length out of range)."""
        found = self.by_selector.get(bytes(data[:4]))
        if found is None:
            return None
        name, leaf_at, proof_at, head = found
        body = bytes(data[4:])
        if len(body) < head:
            return None
        words = [body[leaf_at + 32 * k: leaf_at + 32 * (k + 1)] for k in range(LEAF_WORDS)]
        values = []
        for word, (_n, typ) in zip(words, AccountLeaf.FIELDS, strict=True):
            if typ == "address":
                if any(word[:12]):
                    return None
                values.append(to_checksum_address(word[12:]))
            elif typ == "bytes32":
                values.append(word)
            else:
                values.append(int.from_bytes(word, "big", signed=typ == "int256"))
        off = int.from_bytes(body[proof_at:proof_at + 32], "big")
        if off + 32 > len(body):
            return None
        n = int.from_bytes(body[off:off + 32], "big")
        if n > MAX_PROOF or off + 32 * (n + 1) > len(body):
            return None
        try:
            leaf = AccountLeaf(*values)
        except (TypeError, ValueError, Eip712Error):   # cannot happen for 32-byte words; never a crash
            return None
        return name, leaf, [body[off + 32 * (k + 1): off + 32 * (k + 2)] for k in range(n)]


def _head_size(item: dict) -> int:
    """Bytes an ABI input takes in the head: its words when static, one offset word when dynamic."""
    t = item["type"]
    if t.endswith("]") or t in ("bytes", "string"):
        return 32
    if t == "tuple":
        sizes = [_head_size(c) for c in item["components"]]
        dynamic = any(c["type"].endswith("]") or c["type"] in ("bytes", "string") for c in item["components"])
        return 32 if dynamic else sum(sizes)
    return 32


class Harvester:
    def __init__(self, dep: Deployment):
        self.dep = dep
        self.engine = dep.engine.address.lower()
        self.calls = LeafCalls(dep.engine.abi)

    def applied(self, root: PostedRoot, from_block: int, to_block: int) -> list[AppliedLeaf]:
        """The leaves of `root` applied in blocks from_block..to_block, in log order."""
        logs = [(lg, v) for lg, v in event_logs(self.dep.engine, "LeafApplied", [], from_block, to_block)
                if int(v["root_timestamp"]) == root.signed_at]
        out: list[AppliedLeaf] = []
        hashes = list(dict.fromkeys("0x" + bytes(lg["transactionHash"]).hex().removeprefix("0x") for lg, _v in logs))
        calls_of = {h: self._calls(h, tx) for h, tx in zip(hashes, self._transactions(hashes), strict=True)}
        # every decoded leaf's tree node at once (vectorised), then its proof against the root
        decoded = [d for got in calls_of.values() if not isinstance(got, str) for d in got[1]]
        nodes = dict(zip(map(id, decoded), account_leaf_hashes(root.engine, root.epoch, [d[1] for d in decoded]),
                         strict=True))
        for lg, _v in logs:
            tx_hash = "0x" + bytes(lg["transactionHash"]).hex().removeprefix("0x")
            account = to_checksum_address("0x" + bytes(lg["topics"][1])[-20:].hex())
            got = calls_of[tx_hash]
            base = AppliedLeaf(root.epoch, account, tx_hash, int(lg["blockNumber"]))
            if isinstance(got, str):
                out.append(_with(base, note=got))
                continue
            via, calls = got
            match = next((d for d in calls if d[1].account.lower() == account.lower() and
                          verify(d[2], root.accounts_root, nodes[id(d)])), None)
            if match is None:
                out.append(_with(base, via=via, note="no call in the transaction carries this account's leaf "
                                                     "with a proof in the posted root; not harvested"))
                continue
            fn, leaf, proof = match
            out.append(_with(base, function=fn, via=via, leaf=leaf, proof=proof, leaf_hash=nodes[id(match)]))
        return out

    def _transactions(self, hashes: list[str]) -> list[dict | None]:
        """eth_getTransactionByHash of each hash, in JSON-RPC batches (one request per applied
        leaf would make a busy root's harvest a round trip per leaf)."""
        out: list[dict | None] = []
        for i in range(0, len(hashes), READ_BATCH):
            chunk = hashes[i:i + READ_BATCH]
            replies = self.dep.w3.provider.make_batch_request([("eth_getTransactionByHash", [h]) for h in chunk])
            if not isinstance(replies, list):      # a node refusing batches: one by one
                replies = [self.dep.w3.provider.make_request("eth_getTransactionByHash", [h]) for h in chunk]
            out.extend(r.get("result") if isinstance(r, dict) else None for r in replies)
        return out

    def _calls(self, tx_hash: str, tx: dict | None) -> tuple[str, list] | str:
        """("" or the calling contract, [(function, leaf, proof) of each leaf-carrying call to
        the engine]) of the raw transaction `tx`, or, when they cannot be read, why."""
        if not isinstance(tx, dict):
            return f"transaction {tx_hash} not found at the node; not harvested"
        to = (tx.get("to") or "").lower()
        if to == self.engine:
            one = self.calls.decode(bytes.fromhex(str(tx.get("input", "0x"))[2:]))
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

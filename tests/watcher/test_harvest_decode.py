"""Reading an applied leaf back from calldata: every engine function that carries an
AccountLeaf and its proof is found in the ABI by shape and decoded to the same leaf and
proof; other selectors and truncated or garbled input are no evidence (None, never an
exception); a call tracer's tree yields only the successful CALL frames to the engine."""

from __future__ import annotations

import pytest

from offchain.chain.contracts import abis
from offchain.chain.leaves import AccountLeaf
from offchain.keeper.executor import Encoder
from offchain.watcher.harvest import LeafCalls, _engine_calls

ENGINE = "0x" + "ee" * 20
LEAF = AccountLeaf("0x" + "12" * 20, 7, b"\x01" * 32, 3, 2, -5 * 10**18, 9 * 10**18, 8 * 10**18, 7 * 10**18,
                   0x0102, 1, 2, 3, 0)
PROOF = [bytes([i]) * 32 for i in range(1, 6)]


class _Engine:
    address = ENGINE

    def __init__(self, abi):
        self.abi = abi


# not named `engine`: ape's isolation keys fixtures by name across the whole session, and a
# module-scoped `engine` here made it re-create the engine suites' session-scoped `engine`
# (a fresh deployment mid-module) whenever it rebased a module's snapshot
@pytest.fixture(scope="module")
def engine_abi():
    return _Engine(abis()["MarginEngine"])


def test_every_leaf_carrying_engine_function__found_by_shape(engine_abi):
    assert sorted(n for n, *_ in LeafCalls(engine_abi.abi).by_selector.values()) == \
        ["apply_leaf", "fill_with_leaf", "withdraw_with_leaf"]


@pytest.mark.parametrize("fn,args", [
    ("apply_leaf", (LEAF.as_args(), PROOF)),
    ("withdraw_with_leaf", (123, LEAF.as_args(), PROOF)),
    ("fill_with_leaf", (("0x" + "34" * 20, 1, True, 10**18, 5 * 10**18, 1, 99), b"\x00" * 65, 10**18,
                        LEAF.as_args(), PROOF)),
])
def test_leaf_and_proof__decoded_from_each_function(engine_abi, fn, args):
    data = bytes.fromhex(Encoder(engine_abi)(fn, *args).data[2:])
    assert LeafCalls(engine_abi.abi).decode(data) == (fn, LEAF, PROOF)


def test_other_selector_or_garbled_input__no_leaf(engine_abi):
    calls = LeafCalls(engine_abi.abi)
    good = bytes.fromhex(Encoder(engine_abi)("apply_leaf", LEAF.as_args(), PROOF).data[2:])
    assert calls.decode(bytes.fromhex(Encoder(engine_abi)("deposit", 5).data[2:])) is None
    assert calls.decode(good[:100]) is None                 # truncated
    assert calls.decode(good[:4]) is None
    assert calls.decode(b"") is None
    assert calls.decode(good[:4] + b"\xff" * (len(good) - 4)) is None   # offsets out of range


def test_call_tree__only_successful_calls_to_the_engine(engine_abi):
    tree = {"type": "CALL", "to": "0x" + "aa" * 20, "input": "0x", "calls": [
        {"type": "CALL", "to": ENGINE.upper().replace("0X", "0x"), "input": "0x01", "calls": [
            {"type": "DELEGATECALL", "to": "0x" + "bb" * 20, "input": "0x01"}]},
        {"type": "CALL", "to": ENGINE, "input": "0x02", "error": "execution reverted"},
        {"type": "STATICCALL", "to": ENGINE, "input": "0x03"},
        {"type": "CALL", "to": "0x" + "cc" * 20, "input": "0x", "calls": [{"type": "CALL", "to": ENGINE,
                                                                           "input": "0x04"}]},
    ]}
    assert [c["input"] for c in _engine_calls(tree, ENGINE)] == ["0x01", "0x04"]

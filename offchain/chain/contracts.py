"""Contract bindings for the keeper, the devnet and the CLI (web3, ABIs from the project's own contracts).

Reads are batched JSON-RPC requests so refreshing hundreds of accounts is one round trip.
Everything returned is plain integers (WAD) and addresses; conversion to floats happens in
`book.py`, never on the transaction path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from web3 import Web3
from web3.contract import Contract

from offchain.chain.build import compile_contracts
from offchain.errors import UserError

WAD = 10**18
CONTRACTS = ("MarginEngine", "MarginEngineExtension", "RiskOracle", "InstrumentRegistry", "MockERC20",
             "SignerBond", "FraudProofs", "ScenarioVerifier")
# JSON-RPC batch size for account reads (anvil and geth accept a few hundred per batch)
READ_BATCH = 250


@dataclass
class Deployment:
    w3: Web3
    engine: Contract
    oracle: Contract
    registry: Contract
    token: Contract
    # the signers' stake and the fraud proofs that slash it (None: a deployment without them,
    # where every oracle signer counts unbonded), and the verifier the proofs re-price with
    signer_bond: Contract | None = None
    fraud_proofs: Contract | None = None
    verifier: Contract | None = None

    @property
    def addresses(self) -> dict[str, str]:
        out = {"engine": self.engine.address, "oracle": self.oracle.address,
               "registry": self.registry.address, "token": self.token.address}
        for name in ("signer_bond", "fraud_proofs", "verifier"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).address
        return out


def abis() -> dict[str, list]:
    """ABIs by contract name; the engine's includes the events its delegatecalled extension logs."""
    out = {k: v["abi"] for k, v in compile_contracts(list(CONTRACTS)).items()}
    return {**out, "MarginEngine": engine_abi(out["MarginEngine"], out["MarginEngineExtension"])}


def engine_abi(engine: list, extension: list) -> list:
    names = {(i.get("type"), i.get("name")) for i in engine}
    extra = [i for i in extension if i.get("type") == "event" and ("event", i["name"]) not in names]
    return engine + extra


def connect(w3: Web3, engine_address: str, oracle_address: str = "", registry_address: str = "",
            token_address: str = "") -> Deployment:
    """Bind to a deployment; oracle, registry and token default to what the engine points at."""
    if not Web3.is_address(engine_address):
        raise UserError(f"engine_address: must be a 0x-prefixed 20-byte address, got {engine_address!r}")
    a = abis()
    engine = w3.eth.contract(address=Web3.to_checksum_address(engine_address), abi=a["MarginEngine"])
    try:
        oracle_address = oracle_address or engine.functions.ORACLE().call()
        registry_address = registry_address or engine.functions.REGISTRY().call()
        token_address = token_address or engine.functions.TOKEN().call()
    except Exception as exc:  # noqa: BLE001 - any failure here means "not our engine"
        raise UserError(f"engine_address: {engine_address} does not answer as a MarginEngine "
                        f"on {w3.provider.endpoint_uri}: {str(exc)[:120]}") from exc
    check_account_view(engine)
    return Deployment(
        w3=w3,
        engine=engine,
        oracle=w3.eth.contract(address=Web3.to_checksum_address(oracle_address), abi=a["RiskOracle"]),
        registry=w3.eth.contract(address=Web3.to_checksum_address(registry_address),
                                 abi=a["InstrumentRegistry"]),
        token=w3.eth.contract(address=Web3.to_checksum_address(token_address), abi=a["MockERC20"]),
    )


@dataclass(frozen=True)
class InstrumentTable:
    """Instruments as arrays (index = instrument id - 1)."""

    ids: np.ndarray  # on-chain ids
    underlying_index: np.ndarray  # index into the price source's underlyings
    kind: np.ndarray  # contract kind codes
    strike: np.ndarray  # float units, 0 for non-options
    expiry: np.ndarray  # unix seconds, 0 for perpetuals
    active: np.ndarray  # bool
    strike_wad: tuple[int, ...] = ()  # the registry's exact strikes (market leaves), if read

    def __len__(self) -> int:
        return len(self.ids)


def underlying_name(b: bytes) -> str:
    return b.rstrip(b"\0").decode()


def read_instruments(dep: Deployment, underlyings: list[str]) -> tuple[InstrumentTable, list[str]]:
    """All listed instruments as arrays; `underlyings` fixes the price source's order (extended)."""
    count = dep.registry.functions.instrument_count().call()
    names = list(underlyings)
    rows = []
    for i in range(1, count + 1):
        u, kind, strike, expiry, active = dep.registry.functions.instrument(i).call()
        name = underlying_name(u)
        if name not in names:
            names.append(name)
        rows.append((i, names.index(name), kind, strike / WAD, expiry, active, strike))
    arr = list(zip(*rows, strict=True)) if rows else [[]] * 7
    table = InstrumentTable(
        ids=np.asarray(arr[0], dtype=np.int64), underlying_index=np.asarray(arr[1], dtype=np.int64),
        kind=np.asarray(arr[2], dtype=np.int64), strike=np.asarray(arr[3], dtype=np.float64),
        expiry=np.asarray(arr[4], dtype=np.int64), active=np.asarray(arr[5], dtype=bool),
        strike_wad=tuple(int(v) for v in arr[6]))
    return table, names


def abi_type(item: dict) -> str:
    """The canonical ABI type of a function/event input or output (tuples spelled out)."""
    if item["type"].startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + item["type"][5:]
    return item["type"]


def _checksummed(v):
    if isinstance(v, str) and len(v) == 42 and v.startswith("0x"):
        return Web3.to_checksum_address(v)
    if isinstance(v, list | tuple):
        return type(v)(_checksummed(x) for x in v)
    return v


def batch_call(w3: Web3, calls: list, block: int | str = "latest") -> list:
    """Run contract-function calls (`contract.functions.f(args)`) as raw JSON-RPC eth_call
    batches, encoded and decoded with eth_abi directly (web3's per-call encoding and
    decoding cost ~5 ms a call, most of a keeper cycle's read time). Results come back in
    order, as web3 would return them: one output as itself, several as a list. `block`: a
    block number reads the state after that block (the node must hold it: an archive node,
    or a full node within its pruning window)."""
    tag = block if isinstance(block, str) else hex(int(block))
    out: list = []
    for i in range(0, len(calls), READ_BATCH):
        chunk = calls[i:i + READ_BATCH]
        requests = []
        for c in chunk:
            data = function_abi_to_4byte_selector(c.abi) + abi_encode(
                [abi_type(x) for x in c.abi["inputs"]], list(c.args))
            requests.append(("eth_call", [{"to": c.address, "data": "0x" + data.hex()}, tag]))
        replies = w3.provider.make_batch_request(requests)
        if not isinstance(replies, list):
            raise UserError(f"rpc batch refused: {replies.get('error', replies)}")
        for c, reply in zip(chunk, replies, strict=True):
            if "error" in reply:
                raise UserError(f"{c.abi['name']}{tuple(c.args)}: {reply['error'].get('message', reply['error'])}")
            values = abi_decode([abi_type(x) for x in c.abi["outputs"]], bytes.fromhex(reply["result"][2:]))
            values = _checksummed(values)
            out.append(values[0] if len(values) == 1 else list(values))
    return out


def read_account_list(dep: Deployment, start: int = 0, block: int | str = "latest") -> list[str]:
    """Every account that ever held a position, from index `start` (the engine's own list)."""
    count = dep.engine.functions.account_count().call(block_identifier=block)
    calls = [dep.engine.functions.account_at(i) for i in range(start, count)]
    return list(batch_call(dep.w3, calls, block))


# AccountView field order that book.apply_views reads positionally (checked against the ABI)
ACCOUNT_VIEW_FIELDS = ["cash_wad", "state_nonce", "positions", "initial_margin_wad", "maintenance_margin_wad",
                       "margin_basis_timestamp", "liquidatable_since"]


def check_account_view(engine: Contract) -> None:
    abi = next(i for i in engine.abi if i.get("type") == "function" and i["name"] == "account")
    names = [c["name"] for c in abi["outputs"][0]["components"]]
    if names != ACCOUNT_VIEW_FIELDS:
        raise UserError(f"engine ABI: AccountView fields are {names}, this keeper reads "
                        f"{ACCOUNT_VIEW_FIELDS}; update offchain/keeper/book.py")


def read_accounts(dep: Deployment, addresses: list[str], block: int | str = "latest") -> list[tuple]:
    """AccountView tuples: (cash, state_nonce, [(id, size, funding)], im, mm, basis_ts,
    liquidatable_since); im and mm are the last applied leaf's plus the pending bounds since."""
    return batch_call(dep.w3, [dep.engine.functions.account(a) for a in addresses], block)


def read_books(dep: Deployment, addresses: list[str], block: int | str = "latest") -> tuple[list[tuple], list[int]]:
    """(AccountView tuples, `pending_total` words) of `addresses`, all read at `block` in the
    same JSON-RPC batches: what an account leaf is built from."""
    fns = dep.engine.functions
    replies = batch_call(dep.w3, [c for a in addresses for c in (fns.account(a), fns.pending_total(a))], block)
    return replies[0::2], replies[1::2]


def call_named(contract, fn: str, *args) -> dict:
    """Call a view returning one struct and key the result by the ABI's field names, so a
    field added to the struct cannot silently shift positional reads."""
    abi = next(i for i in contract.abi if i.get("type") == "function" and i["name"] == fn)
    names = [c["name"] for c in abi["outputs"][0]["components"]]
    return dict(zip(names, getattr(contract.functions, fn)(*args).call(), strict=True))

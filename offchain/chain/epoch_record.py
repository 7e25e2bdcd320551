"""The record of a posted epoch (what `FraudProofs.challenge` takes back), read from the chain.

    fp = fraud_contracts(dep)                 # FraudProofs and SignerBond of the oracle
    record = epoch_record(dep, root, fp.bond)  # RootPosted + the post_root transaction

RiskOracle hashed `EpochRecord(epoch, roots, market count, params hash, signed time, block time, signers
that counted)` when the root was posted and stores only the hash. The signers that counted
are those whose signatures the post_root call carried and whom the SignerBond called bonded
at that moment: recovered here from the transaction's calldata and the bond's state just
before its block, and the result checked against the stored hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address
from web3.contract import Contract

from offchain.chain.build import compile_contracts
from offchain.chain.contracts import Deployment
from offchain.chain.eip712 import Domain, EpochRoot, recover
from offchain.chain.events import event_logs
from offchain.chain.fraud import EpochRecord
from offchain.chain.rebuild import PostedRoot
from offchain.errors import UserError

VOID_RECORD = (1).to_bytes(32, "big")


@dataclass(frozen=True)
class FraudContracts:
    fraud: Contract
    bond: Contract
    token: str
    window_s: int


def fraud_contracts(dep: Deployment, fraud_address: str = "") -> FraudContracts:
    """FraudProofs at `fraud_address`, else the one the oracle last named (FraudContractsSet);
    its SignerBond and that bond's token. Raises UserError when the oracle has none."""
    builds = compile_contracts(["FraudProofs", "SignerBond"])
    if not fraud_address:
        logs = event_logs(dep.oracle, "FraudContractsSet", [])
        if not logs:
            raise UserError(f"fraud_proofs_address: the oracle {dep.oracle.address} never named a FraudProofs "
                            "contract (no FraudContractsSet log); set fraud_proofs_address")
        fraud_address = "0x" + bytes(logs[-1][0]["topics"][2])[-20:].hex()
    fraud = dep.w3.eth.contract(address=to_checksum_address(fraud_address), abi=builds["FraudProofs"]["abi"])
    try:
        if to_checksum_address(fraud.functions.ORACLE().call()) != dep.oracle.address:
            raise UserError(f"fraud_proofs_address: {fraud.address} challenges the roots of another oracle "
                            f"({fraud.functions.ORACLE().call()}), not {dep.oracle.address}")
        bond = dep.w3.eth.contract(address=fraud.functions.BOND().call(), abi=builds["SignerBond"]["abi"])
        window = int(fraud.functions.CHALLENGE_WINDOW().call())
        token = bond.functions.token().call()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else: not a FraudProofs contract
        raise UserError(f"fraud_proofs_address: {fraud_address} does not answer as a FraudProofs contract: "
                        f"{str(exc)[:120]}") from exc
    return FraudContracts(fraud, bond, to_checksum_address(token), window)


def epoch_record(dep: Deployment, root: PostedRoot, bond: Contract) -> EpochRecord:
    """The record RiskOracle hashed for `root`. Raises UserError when the post_root call
    cannot be read back (posted through another contract) or no reading gives the hash."""
    w3 = dep.w3
    tx = w3.eth.get_transaction(root.tx_hash)
    try:
        fn, args = dep.oracle.decode_function_input(tx["input"])
    except ValueError as exc:
        raise UserError(f"epoch {root.epoch}: transaction {root.tx_hash} is no direct post_root call to the oracle; "
                        "its signers cannot be read from its calldata") from exc
    if fn.fn_name != "post_root" or to_checksum_address(tx["to"]) != dep.oracle.address:
        raise UserError(f"epoch {root.epoch}: transaction {root.tx_hash} calls {fn.fn_name}, not the oracle's "
                        "post_root; its signers cannot be read from its calldata")
    r = args["root"]
    r = r if isinstance(r, dict) else dict(zip([f for f, _ in EpochRoot.FIELDS], r, strict=True))
    message = EpochRoot(engine=r["engine"], epoch=r["epoch"], timestamp=r["timestamp"], deadline=r["deadline"],
                        params_hash=bytes(r["params_hash"]), market_root=bytes(r["market_root"]),
                        market_count=r["market_count"],
                        accounts_root=bytes(r["accounts_root"]), account_count=r["account_count"])
    domain = Domain(w3.eth.chain_id, dep.oracle.address)
    signers = [recover(message, domain, bytes(sig)) for sig in args["signatures"]]
    posted_at = int(w3.eth.get_block(root.block)["timestamp"])
    stored = bytes(dep.oracle.functions.epoch_record_hash(root.engine, root.signed_at)
                   .call(block_identifier=root.block))

    def record(counted) -> EpochRecord:
        return EpochRecord(root.epoch, root.accounts_root, root.market_root, root.market_count, root.params_hash,
                           root.signed_at, posted_at, tuple(counted))

    # bonded just before the root's block (an earlier transaction of that block could still
    # have changed a bond: then at its end), or every signer (an oracle without a bond)
    readings = [[s for s in signers if bond.functions.is_bonded(s).call(block_identifier=b)]
                for b in (root.block - 1, root.block)] + [signers]
    for counted in readings:
        if record(counted).hash() == stored:
            return record(counted)
    raise UserError(f"epoch {root.epoch}: no reading of the post_root signers ({', '.join(signers)}) gives the "
                    f"record hash the oracle stored (0x{stored.hex()})")

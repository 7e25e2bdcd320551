"""ScenarioVerifier.check_market from its call data, on titanoboa or on ape (Anvil).

check_market reads the multiproof's hashes where the call data holds them (a bytes32[] whose
ABI offset is the `proof` head word; offchain/chain/witness.py), so its ABI declares that word
a uint256 and a generated call cannot encode the array: `check_market` sends the encoded call
data and decodes the returned Check as the framework's own call would (its errors and revert
reasons too: boa's BoaError, ape's ContractLogicError)."""

from __future__ import annotations

from offchain.chain.witness import Witness, encode_check_market


def check_market(verifier, *args, sender=None):
    """verifier.check_market on a Witness, on its call data (bytes), or on (engine, sizes,
    leaves, (proof, order), units, scenarios, joint_scenario) with the multiproof as
    MultiProof.as_args() gives it."""
    if len(args) == 1 and isinstance(args[0], Witness):
        data = args[0].encode()
    elif len(args) == 1 and isinstance(args[0], bytes):
        data = args[0]
    else:
        engine, sizes, leaves, mp, units, scenarios, joint = args
        data = encode_check_market(engine, sizes, leaves, mp[0], mp[1], units, scenarios, joint)
    fn = verifier.check_market
    if hasattr(verifier, "marshal_to_python"):  # titanoboa
        with verifier._anchor_source_map(fn._source_map):
            computation = verifier.env.execute_code(to_address=verifier.address, sender=sender, data=data,
                                                    is_modifying=False, contract=verifier)
            return verifier.marshal_to_python(computation, fn.func_t.return_type)
    # ape: the view's own transaction and decoding, with these bytes as its data
    from ape.contracts.base import ContractCall

    call = ContractCall(fn.abis[0], verifier.address)
    txn = call.serialize_transaction("0x" + "00" * 20, [], [], 0, 0, [], [], 0)   # any, of its types
    txn.data = data
    txn.chain_id = call.provider.network.chain_id
    return call._decode_returndata(call.provider.send_call(txn))

"""A liquidation witness: the book's market leaves from the engine's current epoch root, one
multiproof of them and the scenarios that show its loss, encoded as `MarginEngine.liquidate`
takes it: the call data of ScenarioVerifier.check_market (selector, then the argument tuple).

    book = [(p.instrument_id, p.size_wad) for p in engine.account(a).positions]   # storage order
    w = liquidation_witness(params, engine_address, book, trees, root_timestamp)
    engine.liquidate(account, fraction, max_payment, nonce, w.encode())

The engine checks that the tuple names itself and its stored book (every position in storage
order, its size and its own leaf), then sends it on to the oracle's verifier, which proves
the leaves against the current market root and re-prices the book in the named scenarios;
the engine liquidates only if its equity is below that margin too. Named scenarios never give
more than the model's margin; the binding ones (the risk engine's `binding_scenarios`, in the
scenario table's column indexing) give it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import keccak

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.leaves import MarketLeaf
from offchain.chain.merkle import MerkleError, MultiProof
from offchain.chain.roots import EpochTrees
from offchain.errors import UserError
from offchain.risk.arrays import InstrumentInputs
from offchain.risk.engine import RiskEngine
from offchain.risk.instruments import SECONDS_PER_YEAR
from offchain.risk.params import Params
from offchain.risk.pricing import PERPETUAL

WAD = 10**18
# ScenarioVerifier bounds: legs (the engine's MAX_POSITIONS) and underlyings per book.
MAX_LEGS = 32
MAX_UNITS = 8
# MarginEngine's bound on a witness (engine_core MAX_WITNESS): its call data with a 512-hash
# multiproof at 32 legs and 8 units
MAX_WITNESS_BYTES = 25_508
LEAF_ABI = "(" + ",".join(MarketLeaf.abi_types()) + ")"
# check_market(engine, sizes, leaves, proof, order, units, scenarios, joint_scenario), encoded
# as the standard ABI of these types: the proof is a bytes32[] in the call data...
WITNESS_ABI = ["address", "int256[]", f"{LEAF_ABI}[]", "bytes32[]", "uint256", "bytes32[]",
               "uint256[]", "uint256"]
# ...but the verifier declares its head word as a uint256 (the array's offset) and reads the
# hashes where they lie (a copied argument would reserve its 512-hash bound in memory), so
# the selector names uint256 there. The witness is check_market's call data, selector first:
# the engine sends it on unchanged.
CHECK_MARKET_SIGNATURE = (f"check_market(address,int256[],{LEAF_ABI}[],uint256,uint256,bytes32[],"
                          "uint256[],uint256)")
CHECK_MARKET_SELECTOR = keccak(text=CHECK_MARKET_SIGNATURE)[:4]


def encode_check_market(engine: str, sizes: Sequence[int], leaves: Sequence[tuple], proof: Sequence[bytes],
                        order: int, units: Sequence[bytes], scenarios: Sequence[int], joint_scenario: int) -> bytes:
    """ScenarioVerifier.check_market's call data (selector first) for these arguments: leaves
    as `MarketLeaf.as_args()` tuples, the multiproof's hashes and order."""
    return CHECK_MARKET_SELECTOR + abi_encode(WITNESS_ABI, (engine, list(sizes), list(leaves), list(proof), order,
                                                            list(units), list(scenarios), joint_scenario))


class WitnessError(UserError):
    """The book cannot be witnessed on chain (named in the message)."""


def _symbol(underlying: bytes) -> str:
    return underlying.rstrip(b"\0").decode()


@dataclass(frozen=True)
class Witness:
    engine: str
    sizes_wad: list[int]
    leaves: list[MarketLeaf]
    proof: MultiProof
    units: list[bytes]
    scenarios: list[int]
    joint_scenario: int
    # the model's maintenance margin of the book in these scenarios (float64): what
    # `witness_margin` returns, to its pricer's precision
    margin: float

    def args(self) -> tuple:
        """ScenarioVerifier.check_market's arguments as `encode_check_market` takes them (the
        multiproof's hashes and its order apart)."""
        return (self.engine, self.sizes_wad, [leaf.as_args() for leaf in self.leaves], list(self.proof.proof),
                self.proof.order, self.units, self.scenarios, self.joint_scenario)

    def encode(self) -> bytes:
        """check_market's call data (selector, the arguments' ABI encoding): the `witness` of
        MarginEngine.liquidate."""
        return encode_check_market(*self.args())


def leaves_engine(params: Params, leaves: Sequence[MarketLeaf], signed_at: int) -> tuple[RiskEngine, tuple[str, ...]]:
    """The float64 risk engine on exactly these leaves' inputs, one row per leaf, as the
    verifier reads them: tenor = (expiry - root time) / 365 days, a perpetual's forward at
    its spot. Returns the engine and its underlyings (sorted symbols)."""
    names = tuple(sorted({_symbol(leaf.underlying) for leaf in leaves}))
    u_of = {n: k for k, n in enumerate(names)}
    kind = np.array([leaf.kind for leaf in leaves], dtype=np.int8)
    col = lambda f: np.array([f(leaf) for leaf in leaves], dtype=np.float64) / WAD  # noqa: E731
    tenor = np.array([0.0 if leaf.kind == PERPETUAL else (leaf.expiry - signed_at) / SECONDS_PER_YEAR
                      for leaf in leaves])
    spot = col(lambda leaf: leaf.spot_wad)
    inputs = InstrumentInputs(
        kind=kind, u_idx=np.array([u_of[_symbol(leaf.underlying)] for leaf in leaves], dtype=np.intp),
        spot=spot, fwd=np.where(kind == PERPETUAL, spot, col(lambda leaf: leaf.forward_wad)),
        strike=col(lambda leaf: leaf.strike_wad), tenor=tenor, vol=col(lambda leaf: leaf.vol_wad),
        rate=col(lambda leaf: leaf.rate_wad), contract_size=col(lambda leaf: leaf.contract_size_wad))
    return RiskEngine.from_inputs(params, inputs, names, dtype=np.float64), names


def liquidation_witness(params: Params, engine: str, book: Sequence[tuple[int, int]], trees: EpochTrees,
                        signed_at: int, scenarios: Sequence[int] | None = None,
                        joint_scenario: int | None = None) -> Witness:
    """The witness of a book on `engine`: (instrument id, WAD size) pairs in the engine's
    storage order (`account(a).positions`), the stored integers, against the epoch `trees`
    (signed at `signed_at`). Without `scenarios` the binding ones are named (each unit's, in
    `units` order, and the joint one): the margin is then the model's. Raises WitnessError
    when no witness exists on chain: an instrument without a market leaf in the root, one
    expired at the root (settle it first), more legs or underlyings than the verifier takes."""
    book = [(int(i), int(s)) for i, s in book if s != 0]
    if not book:
        raise WitnessError("book: empty, nothing to liquidate")
    if len(book) > MAX_LEGS:
        raise WitnessError(f"book: {len(book)} positions, the verifier takes at most {MAX_LEGS}")
    ids = [i for i, _ in book]
    try:
        leaves = trees.market_leaves_of(ids)
    except MerkleError as e:
        raise WitnessError(f"book: {e}") from e
    for leaf in leaves:
        if leaf.kind != PERPETUAL and leaf.expiry <= signed_at:
            raise WitnessError(f"instrument_id {leaf.instrument_id}: expired at the root (expiry {leaf.expiry} "
                               f"<= {signed_at}); settle it before liquidating")
    engine_inputs, names = leaves_engine(params, leaves, signed_at)
    if len(names) > MAX_UNITS:
        raise WitnessError(f"book: {len(names)} underlyings, the verifier names scenarios for at most {MAX_UNITS}")
    q = np.array([s / WAD for _, s in book])[None, :]
    binding, joint = engine_inputs.binding_scenarios(q)
    named = [int(x) for x in (binding[0] if scenarios is None else scenarios)]
    j = int(joint[0]) if joint_scenario is None else int(joint_scenario)
    margin = float(engine_inputs.breakdown(q, exact=True).mm[0]) if scenarios is None and joint_scenario is None \
        else float("nan")
    w = Witness(str(getattr(engine, "address", engine)), [s for _, s in book], leaves, trees.market_multiproof(ids),
                [symbol_to_bytes32(n) for n in names], named, j, margin)
    if len(w.encode()) > MAX_WITNESS_BYTES:
        raise WitnessError(f"book: its witness is {len(w.encode())} bytes ({len(w.proof.proof)} proof hashes), "
                           f"the engine takes at most {MAX_WITNESS_BYTES}")
    return w

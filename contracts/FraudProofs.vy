# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title FraudProofs
@custom:contract-name FraudProofs
@license MIT
@notice Anyone may challenge an account leaf of a posted epoch root within the challenge
        window: the leaf with its proof, the book it commits to (ids and sizes, checked
        against its positions hash), each position's market leaf (one multiproof against the
        epoch's market root; the slot of an instrument expired at the root shown empty, as
        an honest root holds it, SECURITY.md V8) and the scenarios to re-price in (one per risk unit and a joint
        one; none: the leaf's own). The book is re-priced on chain by the ScenarioVerifier of
        the root's parameter set. A challenge is proven when (codes in `FraudProven`):
          1 MARGIN_BELOW_SCENARIO  the re-priced maintenance margin exceeds the leaf's MM, or
                                   its IM (times mm_factor), by more than the tolerance;
          2 LOSS_ABOVE_LEAF        the re-priced weighted loss (with the short-option floor)
                                   exceeds the leaf's worst loss (with its floor add-on);
          3 BINDING_MISMATCH       re-priced in the leaf's own named scenarios, the loss (or
                                   the netted short-option add-on) differs from the leaf's;
          4 ADDON_MISMATCH         the basis, liquidity or per-contract short-option add-on
                                   differs from its closed form;
          5 SCENARIO_OUT_OF_RANGE  the leaf names a scenario the table does not have.
        And `challenge_market` proves the market root itself false (no account leaf needed):
          6 MARKET_SLOT_FALSE      the slot of an instrument the root counted (1..count)
                                   holds not what the registry says it must: empty for an
                                   instrument live at the root's time (left out), a leaf for
                                   another id, with other terms (kind, underlying, strike,
                                   expiry), or for an instrument expired at the root's time.
        A proven challenge voids the epoch (RiskOracle `void_epoch`) and pays the challenger
        every bond of the signers that counted for the root (SignerBond `slash`); anything
        else reverts, so a wrong challenge costs only its gas.
        Commit-reveal: the payout goes to msg.sender, so a proof copied from the mempool would
        pay the copier. A challenger first `commit`s keccak256(abi_encode(challenger, engine,
        signed_at, account, salt)) and reveals with `challenge(..., salt)` from the next block
        on, within the challenge window; a copier's own commitment is at best as young as the
        reveal it copies. The first valid reveal wins (SECURITY.md V2).
@dev Tolerance: 1e-9 of the book's gross notional + 1e-9 per leg (units, WAD) + the leaf's
     rounding guard for the component checks: the pricer agrees with the float engine to
     ~1e-16 of the notional (docs/verification.md), so an honest leaf never comes near it.
     The record of the epoch (roots, parameter set, times, signers) is taken from the
     challenger and checked first against the hash the oracle stored when the root was
     posted: a forged record reverts before any pricing.
     Leaf scenario convention (offchain/chain/leaves.py `pack_scenarios`): slot k (bits
     16k..16k+15) names the scenario of the k-th risk unit of the book, units ordered by
     their bytes32 symbol ascending; slot 15 names the joint scenario.
"""

from snekmate.utils import merkle_proof_verification as merkle
from modules import multiproof
from modules import market_leaf
from interfaces import IRiskOracle
from interfaces import IInstrumentRegistry

#### CONSTANTS ####

WAD: constant(uint256) = 10**18
WAD_I: constant(int256) = 10**18
MAX_LEGS: constant(uint256) = 32
MAX_UNITS: constant(uint256) = 8
MAX_SIGNERS: constant(uint256) = 16
MAX_PROOF: constant(uint256) = 32
MASK_64: constant(uint256) = 2**64 - 1
MASK_128: constant(uint256) = 2**128 - 1
SECONDS_PER_YEAR: constant(uint256) = 365 * 86_400
KIND_PERPETUAL: constant(uint256) = 1
JOINT_SLOT: constant(uint256) = 15
# RiskOracle's epoch_record_hash of a voided root
VOID_RECORD: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001
# tolerance: 1e-9 of the gross notional, plus 1e-9 (units) per leg
TOL_DIV: constant(uint256) = 10**9
TOL_PER_LEG: constant(uint256) = 10**9

MARGIN_BELOW_SCENARIO: constant(uint256) = 1
LOSS_ABOVE_LEAF: constant(uint256) = 2
BINDING_MISMATCH: constant(uint256) = 3
ADDON_MISMATCH: constant(uint256) = 4
SCENARIO_OUT_OF_RANGE: constant(uint256) = 5
MARKET_SLOT_FALSE: constant(uint256) = 6

#### STRUCTS (same ABI as RiskOracle / ScenarioVerifier) ####

struct EpochRecord:
    epoch: uint256
    accounts_root: bytes32
    market_root: bytes32
    market_count: uint256
    params_hash: bytes32
    signed_at: uint256
    posted_at: uint256
    signers: DynArray[address, MAX_SIGNERS]

struct Leg:
    size_wad: int256
    kind: uint8
    unit: uint256
    fwd_wad: uint256
    spot_wad: uint256
    strike_wad: uint256
    tenor_wad: uint256
    vol_wad: uint256
    rate_wad: int256
    contract_size_wad: uint256

struct Check:
    unit_losses_wad: DynArray[int256, MAX_UNITS]
    unit_floors_wad: DynArray[uint256, MAX_UNITS]
    joint_loss_wad: int256
    scenario_loss_wad: uint256
    weighted_loss_wad: uint256
    basis_wad: uint256
    short_option_wad: uint256
    liquidity_wad: uint256
    maintenance_wad: uint256

# What a verifier prices with, read once when it is registered.
struct VerifierInfo:
    verifier: address
    n_scenarios: uint256
    mm_factor_wad: uint256
    short_option_netted: bool

# ScenarioVerifier.Generator (for `generator()`)
struct Generator:
    mode: uint8
    price_steps: uint256
    tail_vol_dir: int256
    reference_days_wad: uint256
    min_days_wad: uint256
    power_short_wad: uint256
    power_long_wad: uint256
    vol_down_min_factor_wad: uint256
    extreme_multiple_wad: uint256
    extreme_weight_wad: uint256
    min_vol_wad: uint256
    decorrelation_wad: uint256
    mm_factor_wad: uint256
    short_option_netted: bool
    basis_on_options: bool

struct Coefficients:
    symbol: bytes32
    range_wad: uint256
    vol_up_wad: uint256
    vol_down_wad: uint256
    vol_up_floor_wad: uint256
    tail_weight_wad: uint256
    tail_moves_wad: DynArray[int256, 16]
    basis_rate_per_sqrt_year_wad: uint256
    basis_min_days_wad: uint256
    short_option_min_rate_wad: uint256
    liquidity_notional_threshold_wad: uint256
    liquidity_rate_wad: uint256

interface IScenarioVerifier:
    def check(legs: DynArray[Leg, MAX_LEGS], units: DynArray[bytes32, MAX_UNITS], scenarios: DynArray[uint256, MAX_UNITS], joint_scenario: uint256) -> Check: view
    def params_hash() -> bytes32: view
    def n_scenarios() -> uint256: view
    def generator() -> (Generator, DynArray[Coefficients, 32]): view

interface IOracle:
    def void_epoch(engine: address, signed_at: uint256): nonpayable
    def epoch_record_hash(engine: address, signed_at: uint256) -> bytes32: view
    def registry() -> address: view

interface IBond:
    def slash(signers: DynArray[address, MAX_SIGNERS], challenger: address) -> uint256: nonpayable
    def challenge_window() -> uint256: view

#### IMMUTABLES / STORAGE ####

ORACLE: public(immutable(address))
# the oracle's registry (immutable there too): the terms of an instrument shown expired
REGISTRY: immutable(IInstrumentRegistry)
BOND: public(immutable(address))
CHALLENGE_WINDOW: public(immutable(uint256))
# who may register a verifier for a parameter set (once per set)
deployer: immutable(address)
# params hash -> the verifier that re-prices roots signed under it, packed in one slot (a
# challenge reads it cold once): verifier (bits 0-159) | short_option_netted (160) |
# n_scenarios (161-192) | mm_factor_wad (193-255); `verifiers` unpacks it
_verifier_info: HashMap[bytes32, uint256]
# committer -> commitment -> block of the commit (0: none; cleared when revealed). Keyed by the
# committer too, so a copy of someone's commitment made first by another address takes no slot
# of theirs.
commitments: public(HashMap[address, HashMap[bytes32, uint256]])

#### EVENTS ####

event VerifierRegistered:
    params_hash: indexed(bytes32)
    verifier: indexed(address)

event ChallengeCommitted:
    committer: indexed(address)
    commitment: indexed(bytes32)

# The proof itself (leaf, book, market leaves) is the transaction's calldata; the event names
# the leaf and carries what decided: the code, the scenarios, the re-priced figures. A market
# slot proof (code 6) names no account: `leaf_hash` is the slot's node (zero: empty),
# `scenarios_packed` the instrument id, the figures zero.
event FraudProven:
    engine: indexed(address)
    epoch: indexed(uint256)
    challenger: indexed(address)
    code: uint256
    account: address
    leaf_hash: bytes32
    scenarios_packed: uint256
    maintenance_wad: uint256
    weighted_loss_wad: uint256
    scenario_loss_wad: uint256
    tolerance_wad: uint256
    paid: uint256


@deploy
def __init__(oracle_: address, bond_: address):
    """
    @param oracle_ The RiskOracle whose epochs are challenged (its `fraud_proofs` must be set
           to this contract).
    @param bond_ The SignerBond it slashes (its `slasher` must be set to this contract).
    """
    assert oracle_ != empty(address) and bond_ != empty(address), "fraud: zero oracle or bond"
    ORACLE = oracle_
    REGISTRY = IInstrumentRegistry(staticcall IOracle(oracle_).registry())
    BOND = bond_
    CHALLENGE_WINDOW = staticcall IBond(bond_).challenge_window()
    deployer = msg.sender


@external
def register_verifier(verifier: address):
    """
    @notice Name the verifier of its parameter set (its own `params_hash`), once per set: a
            verifier's `generator_hash` lets anyone check it prices with the file that hash
            names (offchain/chain/verifier.py).
    """
    assert msg.sender == deployer, "fraud: only the deployer registers verifiers"
    h: bytes32 = staticcall IScenarioVerifier(verifier).params_hash()
    assert self._verifier_info[h] == 0, "fraud: parameter set already has a verifier"
    gen: Generator = empty(Generator)
    coefficients: DynArray[Coefficients, 32] = []
    gen, coefficients = staticcall IScenarioVerifier(verifier).generator()
    n: uint256 = staticcall IScenarioVerifier(verifier).n_scenarios()
    # the verifier's own bounds keep both far inside their fields (<= 3,019 scenarios, mm_factor <= 1)
    assert n < 2**32 and gen.mm_factor_wad < 2**63, "fraud: verifier parameters out of range"
    self._verifier_info[h] = (convert(verifier, uint256) | (convert(gen.short_option_netted, uint256) << 160)
                              | (n << 161) | (gen.mm_factor_wad << 193))
    log VerifierRegistered(params_hash=h, verifier=verifier)


@view
@external
def verifiers(params_hash: bytes32) -> VerifierInfo:
    """
    @return The verifier registered for `params_hash` and what it prices with (zeros if none).
    """
    return self._info(params_hash)


@internal
@view
def _info(params_hash: bytes32) -> VerifierInfo:
    word: uint256 = self._verifier_info[params_hash]
    return VerifierInfo(verifier=convert(convert(word & (2**160 - 1), uint160), address),
                        n_scenarios=(word >> 161) & (2**32 - 1), mm_factor_wad=word >> 193,
                        short_option_netted=(word >> 160) & 1 == 1)


@external
def commit(commitment: bytes32):
    """
    @notice Commit to a challenge: `commitment` = `commitment_of(msg.sender, engine, signed_at,
            account, salt)` with a secret salt. Reveal it with `challenge(..., salt)` from the
            next block on, within the epoch's challenge window. Nothing is checked about the
            epoch here (the hash hides it): a commitment never revealed costs its sender gas only.
    """
    assert commitment != empty(bytes32), "fraud: zero commitment"
    assert self.commitments[msg.sender][commitment] == 0, "fraud: commitment already made"
    self.commitments[msg.sender][commitment] = block.number
    log ChallengeCommitted(committer=msg.sender, commitment=commitment)


@pure
@external
def commitment_of(challenger: address, engine: address, signed_at: uint256, account: address,
                  salt: bytes32) -> bytes32:
    """
    @return The commitment `challenge` looks up for `challenger` (offchain/chain/fraud.py `commitment`).
    """
    return keccak256(abi_encode(challenger, engine, signed_at, account, salt))


@external
def challenge(
    engine: address,
    record: EpochRecord,
    leaf: IRiskOracle.AccountLeaf,
    leaf_proof: DynArray[bytes32, MAX_PROOF],
    ids: DynArray[uint256, MAX_LEGS],
    sizes_wad: DynArray[int256, MAX_LEGS],
    market_leaves: DynArray[market_leaf.MarketLeaf, MAX_LEGS],
    mp: multiproof.MultiProof,
    scenarios: DynArray[uint256, MAX_UNITS],
    joint_scenario: uint256,
    salt: bytes32,
) -> uint256:
    """
    @notice Challenge `leaf` of `engine`'s epoch `record.epoch`. Reverts "fraud: <reason>" unless
            fraud is proven and msg.sender committed to it (`commit`) in an earlier block; then
            voids the epoch and pays the signers' bonds to msg.sender.
    @param record The epoch's record (RootPosted and the root's signers; checked by the oracle).
    @param leaf The account leaf, `leaf_proof` its proof in `record.accounts_root`.
    @param ids The book's instrument ids, strictly ascending; `sizes_wad` its non-zero sizes.
    @param market_leaves One market leaf per id, same order; `mp` their multiproof. For an
           instrument expired at `record.signed_at` (registry: not a perpetual, expiry <=
           signed_at) the all-zero leaf (head 0) shows its slot empty, as an honest root
           holds it; the position is left out of the re-pricing either way.
    @param scenarios One scenario per risk unit (units: the book's underlyings by bytes32
           ascending) and `joint_scenario`; empty: the leaf's own named scenarios.
    @param salt The salt of msg.sender's commitment to (engine, record.signed_at, leaf.account).
    @return The amount paid to the challenger.
    """
    self._check_record(engine, record)
    info: VerifierInfo = self._info(record.params_hash)
    assert info.verifier != empty(address), "fraud: no verifier for the root's parameter set"

    # the leaf is in the epoch's accounts root
    epoch: uint256 = record.epoch
    node: bytes32 = keccak256(keccak256(abi_encode(engine, epoch, leaf)))
    assert merkle._verify(leaf_proof, record.accounts_root, node), "fraud: account leaf not in the accounts root"
    # the book is the one the leaf commits to
    n: uint256 = len(ids)
    assert n != 0 and len(sizes_wad) == n and len(market_leaves) == n, "fraud: one size and one market leaf per id expected"
    assert keccak256(abi_encode(ids, sizes_wad)) == leaf.positions_hash, "fraud: book does not match the leaf's positions hash"
    # every position's market inputs are in the epoch's market root; the units are the
    # underlyings of the live positions
    hashes: DynArray[bytes32, MAX_LEGS] = []
    units: DynArray[bytes32, MAX_UNITS] = []
    signed_at: uint256 = record.signed_at
    last: uint256 = 0
    for i: uint256 in range(n, bound=MAX_LEGS):
        iid: uint256 = ids[i]
        assert i == 0 or iid > last, "fraud: ids must be strictly ascending"
        last = iid
        head: uint256 = market_leaves[i].head
        assert sizes_wad[i] != 0, "fraud: zero size in the book"
        if head == 0:
            # the slot shown empty: what an honest root holds for an instrument expired at its
            # time (V8). The registry's terms say so; such a leg carries no risk and is left out
            # of the re-pricing (its all-zero leaf reads below as a future expired at 0).
            item: IInstrumentRegistry.Instrument = staticcall REGISTRY.instrument(iid)
            assert convert(item.kind, uint256) != KIND_PERPETUAL and item.expiry <= signed_at, "fraud: empty slot for an instrument live at the root"
            hashes.append(empty(bytes32))
            continue
        # a head of another layout is refused here; `challenge_market` proves it false
        assert market_leaf._well_formed(head), "fraud: market leaf not of the packed layout (tag, reserved bits or kind)"
        assert head & MASK_64 == iid, "fraud: market leaf for another instrument"
        hashes.append(keccak256(keccak256(abi_encode(engine, epoch, market_leaves[i]))))
        if (head >> 128) & 255 == KIND_PERPETUAL or (head >> 64) & MASK_64 > signed_at:
            units = self._add_unit(units, market_leaves[i].underlying)
    assert multiproof._root(ids, hashes, mp, record.market_count) == record.market_root, "fraud: market leaves not in the market root"
    assert len(units) != 0, "fraud: no live position to re-price"

    # legs as ScenarioVerifier.check_market builds them (tenor from the root time, a
    # perpetual's forward at its spot); positions expired at the root carry no risk, as in
    # the engine, and are left out. `gross`: sum |size x contract size| x forward, the
    # tolerance's scale.
    legs: DynArray[Leg, MAX_LEGS] = []
    gross: uint256 = 0
    for i: uint256 in range(n, bound=MAX_LEGS):
        m: market_leaf.MarketLeaf = market_leaves[i]
        kind: uint256 = (m.head >> 128) & 255
        expiry: uint256 = (m.head >> 64) & MASK_64
        spot: uint256 = m.spot_forward & MASK_128
        fwd: uint256 = m.spot_forward >> 128
        size: uint256 = m.strike_size >> 128
        tenor: uint256 = 0
        if kind == KIND_PERPETUAL:
            fwd = spot
        elif expiry <= signed_at:
            continue
        else:
            tenor = (expiry - signed_at) * WAD // SECONDS_PER_YEAR
        unit: uint256 = 0
        for k: uint256 in range(len(units), bound=MAX_UNITS):
            if units[k] == m.underlying:
                unit = k
                break
        legs.append(Leg(size_wad=sizes_wad[i], kind=convert(kind, uint8), unit=unit, fwd_wad=fwd,
                        spot_wad=spot, strike_wad=m.strike_size & MASK_128, tenor_wad=tenor,
                        vol_wad=m.vol_rate_mark & MASK_64, rate_wad=market_leaf._rate(m.vol_rate_mark),
                        contract_size_wad=size))
        gross += convert(abs(sizes_wad[i]), uint256) * size // WAD * fwd // WAD
    tol: uint256 = gross // TOL_DIV + TOL_PER_LEG * len(legs)

    # the leaf's own scenarios (slot k: k-th unit by symbol; slot 15: joint)
    own: DynArray[uint256, MAX_UNITS] = []
    code: uint256 = 0
    for k: uint256 in range(len(units), bound=MAX_UNITS):
        s: uint256 = (leaf.worst_scenarios >> (16 * k)) & 65535
        own.append(s)
        if s >= info.n_scenarios:
            code = SCENARIO_OUT_OF_RANGE
    own_joint: uint256 = leaf.worst_scenarios >> (16 * JOINT_SLOT)
    if own_joint >= info.n_scenarios:
        code = SCENARIO_OUT_OF_RANGE
    named: DynArray[uint256, MAX_UNITS] = scenarios
    joint: uint256 = joint_scenario
    if len(scenarios) == 0:
        named = own
        joint = own_joint
    is_own: bool = joint == own_joint and len(named) == len(own)
    for k: uint256 in range(len(named), bound=MAX_UNITS):
        if is_own and named[k] != own[k]:
            is_own = False
    out: Check = empty(Check)
    if code == 0:
        out = staticcall IScenarioVerifier(info.verifier).check(legs, units, named, joint)
        code = self._verdict(out, leaf, info, tol, is_own)
    assert code != 0, "fraud: no fraud proven"

    # commit-reveal, checked last so that an eth_call without a commitment still tells a
    # challenger whether its proof holds before it commits (it reverts here and only here)
    self._reveal(engine, record.signed_at, leaf.account, salt)
    extcall IOracle(ORACLE).void_epoch(engine, record.signed_at)
    paid: uint256 = extcall IBond(BOND).slash(record.signers, msg.sender)
    packed: uint256 = joint << (16 * JOINT_SLOT)
    for k: uint256 in range(len(named), bound=MAX_UNITS):
        packed |= named[k] << (16 * k)
    log FraudProven(engine=engine, epoch=epoch, challenger=msg.sender, code=code, account=leaf.account,
                    leaf_hash=node, scenarios_packed=packed, maintenance_wad=out.maintenance_wad,
                    weighted_loss_wad=out.weighted_loss_wad, scenario_loss_wad=out.scenario_loss_wad,
                    tolerance_wad=tol, paid=paid)
    return paid


@external
def challenge_market(engine: address, record: EpochRecord, instrument_id: uint256, present: bool,
                     leaf: market_leaf.MarketLeaf, proof: DynArray[bytes32, MAX_PROOF], salt: bytes32) -> uint256:
    """
    @notice Challenge `engine`'s market root of epoch `record.epoch` at the slot of
            `instrument_id` (1..record.market_count: the registry's instruments when the root
            was posted). Proven (code 6) when the slot does not hold what the registry makes
            it: the leaf of that id, of the packed layout (modules/market_leaf.vy), with the
            registry's kind, underlying, strike and expiry and a contract size of one (WAD)
            while the instrument is live at the root's time (a perpetual, or expiring after
            it), else the empty node. Then voids the epoch and pays the signers' bonds to
            msg.sender, as `challenge` does (commit-reveal included: the commitment names the
            instrument id, as an address, in the account's place); anything else reverts
            "fraud: <reason>".
    @param present False: the slot is shown empty (`leaf` ignored); true: it holds `leaf`.
    @param proof The slot's siblings from the bottom (the positional tree's single proof).
    @return The amount paid to the challenger.
    """
    self._check_record(engine, record)
    assert instrument_id != 0 and instrument_id <= record.market_count, "fraud: instrument id outside the root's count"
    node: bytes32 = empty(bytes32)
    if present:
        node = keccak256(keccak256(abi_encode(engine, record.epoch, leaf)))
    assert multiproof._root([instrument_id], [node], multiproof.MultiProof(proof=proof, order=0),
                            record.market_count) == record.market_root, "fraud: slot not in the market root"
    item: IInstrumentRegistry.Instrument = staticcall REGISTRY.instrument(instrument_id)
    live: bool = convert(item.kind, uint256) == KIND_PERPETUAL or item.expiry > record.signed_at
    proven: bool = live != present
    if present and not proven:
        # a head of another layout is false too (no decoder takes it: it would block every
        # witness and challenge of a book that holds the instrument)
        head: uint256 = leaf.head
        proven = (not market_leaf._well_formed(head) or head & MASK_64 != instrument_id
                  or (head >> 128) & 255 != convert(item.kind, uint256) or leaf.underlying != item.underlying
                  or leaf.strike_size & MASK_128 != item.strike_wad or (head >> 64) & MASK_64 != item.expiry
                  # the engine holds every position in units of the underlying: contract size 1
                  or leaf.strike_size >> 128 != WAD)
    assert proven, "fraud: the slot holds what the registry says"

    self._reveal(engine, record.signed_at, convert(convert(instrument_id, uint160), address), salt)
    extcall IOracle(ORACLE).void_epoch(engine, record.signed_at)
    paid: uint256 = extcall IBond(BOND).slash(record.signers, msg.sender)
    log FraudProven(engine=engine, epoch=record.epoch, challenger=msg.sender, code=MARKET_SLOT_FALSE,
                    account=empty(address), leaf_hash=node, scenarios_packed=instrument_id, maintenance_wad=0,
                    weighted_loss_wad=0, scenario_loss_wad=0, tolerance_wad=0, paid=paid)
    return paid


#### INTERNAL ####

@internal
def _reveal(engine: address, signed_at: uint256, account: address, salt: bytes32):
    """
    @dev The sender committed to (engine, signed_at, account, salt) in an earlier block; the
         commitment is used up.
    """
    commitment: bytes32 = keccak256(abi_encode(msg.sender, engine, signed_at, account, salt))
    committed: uint256 = self.commitments[msg.sender][commitment]
    assert committed != 0, "fraud: no commitment by the sender to this epoch and account"
    assert block.number > committed, "fraud: commitment too young (reveal from the block after the commit)"
    self.commitments[msg.sender][commitment] = 0


@internal
@view
def _check_record(engine: address, record: EpochRecord):
    """
    @dev The record is the posted epoch's (the oracle hashed it at post_root), not yet
         voided, and its challenge window is open.
    """
    posted: bytes32 = staticcall IOracle(ORACLE).epoch_record_hash(engine, record.signed_at)
    assert posted != VOID_RECORD, "fraud: epoch already void"
    assert posted != empty(bytes32) and posted == keccak256(abi_encode(record)), "fraud: record does not match the posted epoch"
    assert block.timestamp <= record.posted_at + CHALLENGE_WINDOW, "fraud: challenge window over"


@internal
@pure
def _verdict(out: Check, leaf: IRiskOracle.AccountLeaf, info: VerifierInfo, tol: uint256, own: bool) -> uint256:
    """
    @dev The first proven code, 0 if none (see the contract's notice).
    """
    # IM = MM / mm_factor: the leaf's IM times mm_factor is the MM its IM stands for
    im_as_mm: uint256 = leaf.initial_margin_wad * info.mm_factor_wad // WAD
    if out.maintenance_wad > min(leaf.maintenance_margin_wad, im_as_mm) + tol:
        return MARGIN_BELOW_SCENARIO
    floor_addon: uint256 = 0
    if info.short_option_netted:
        floor_addon = leaf.short_option_addon_wad
    if out.weighted_loss_wad > leaf.worst_loss_wad + floor_addon + tol:
        return LOSS_ABOVE_LEAF
    wide: uint256 = tol + leaf.rounding_guard_wad
    if own:
        if self._differs(out.scenario_loss_wad, leaf.worst_loss_wad, wide):
            return BINDING_MISMATCH
        if info.short_option_netted and self._differs(out.short_option_wad, leaf.short_option_addon_wad, wide):
            return BINDING_MISMATCH
    if self._differs(out.basis_wad, leaf.basis_addon_wad, wide) or self._differs(out.liquidity_wad, leaf.liquidity_addon_wad, wide):
        return ADDON_MISMATCH
    if not info.short_option_netted and self._differs(out.short_option_wad, leaf.short_option_addon_wad, wide):
        return ADDON_MISMATCH
    return 0


@internal
@pure
def _differs(a: uint256, b: uint256, tol: uint256) -> bool:
    return max(a, b) - min(a, b) > tol


@internal
@pure
def _add_unit(units_: DynArray[bytes32, MAX_UNITS], u: bytes32) -> DynArray[bytes32, MAX_UNITS]:
    """
    @dev `units_` with `u` inserted (distinct, ascending by bytes32: the leaf's slot order).
    """
    if u in units_:
        return units_
    assert len(units_) < MAX_UNITS, "fraud: too many underlyings"
    units: DynArray[bytes32, MAX_UNITS] = units_
    units.append(u)
    j: uint256 = len(units) - 1
    for _: uint256 in range(MAX_UNITS):
        if j == 0 or convert(units[j - 1], uint256) <= convert(u, uint256):
            break
        units[j] = units[j - 1]
        j -= 1
    units[j] = u
    return units

# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title ScenarioVerifier
@custom:contract-name ScenarioVerifier
@license MIT
@notice Re-prices a book in one named scenario of a risk-parameter set, on chain, with the
        same model as offchain/risk: per underlying (risk unit) the weighted loss
        weight * -P&L of the book when every forward and spot moves by the scenario's price
        move and each option's implied vol takes its shocked value (tenor-scaled, floored),
        and the add-ons in closed form (basis shock, short-option minimum, delta-liquidity
        shock, or the netted short-option floor under each unit's loss). Any choice of
        scenarios gives a lower bound of the book's worst loss; the binding ones give it
        exactly, and the maintenance margin an account leaf carries.
@dev The scenario table is not stored: its generating parameters are, fixed at deployment
     (one verifier per parameter set), and `generator_hash` = keccak256(abi_encode(generator,
     coefficients)) lets anyone check them against the JSON parameter file
     (offchain/chain/verifier.py computes the same hash from the file). `params_hash` is the
     file's content hash the signers put in every epoch root.
     Market inputs (forward, spot, strike, tenor, vol, rate) come with each leg; a caller
     that acts on the result must check them against the epoch's market root.
@custom:security Stateless views. Leg arithmetic is checked (reverts on overflow); the
     pricer's unchecked operations are bounded by its input checks.
"""

from snekmate.utils import math
from modules import pricer
from modules import multiproof
from modules import market_leaf


#### CONSTANTS ####

WAD: constant(uint256) = 10**18
WAD_I: constant(int256) = 10**18
# Bounds of every loop and array (legs: the engine's MAX_POSITIONS).
MAX_LEGS: public(constant(uint256)) = 32
MAX_UNITS: public(constant(uint256)) = 8
MAX_TAIL_MOVES: public(constant(uint256)) = 16
MAX_COEFFICIENTS: public(constant(uint256)) = 32
SECONDS_PER_YEAR: constant(uint256) = 365 * 86_400
KIND_PERPETUAL: constant(uint8) = 1
MODE_MATRIX: public(constant(uint8)) = 0
MODE_SPAN16: public(constant(uint8)) = 1
DAYS_PER_YEAR: constant(uint256) = 365
MASK_128: constant(uint256) = 2**128 - 1
MASK_64: constant(uint256) = 2**64 - 1
OFFSET_128: constant(int256) = 2**127
# odd 2**256 / golden ratio: spreads the netted-group keys over `_check`'s 256-bit filter
GROUP_HASH: constant(uint256) = 71563446777022297856526126342750658392501306254664949883333486863006233104021
# Instrument kind codes (pricer).
KIND_CALL: constant(uint8) = 2
KIND_PUT: constant(uint8) = 3
# The coefficient row used for an underlying without its own ("default" in the file).
DEFAULT_SYMBOL: public(constant(bytes32)) = 0x64656661756c7400000000000000000000000000000000000000000000000000


#### STRUCTS ####

# Set-wide generating parameters (offchain/risk/scenarios.py, params.py), WAD.
struct Generator:
    mode: uint8
    price_steps: uint256
    # vol direction of the tail moves: 1 up, 0 flat, -1 down
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

# One underlying's coefficients, resolved (its own value, else `default`'s, else set-wide).
struct Coefficients:
    symbol: bytes32
    # matrix: price_range, vol_up, vol_down (relative); span16: price_scan_range and
    # vol_scan_range (absolute) twice
    range_wad: uint256
    vol_up_wad: uint256
    vol_down_wad: uint256
    vol_up_floor_wad: uint256
    tail_weight_wad: uint256
    tail_moves_wad: DynArray[int256, MAX_TAIL_MOVES]
    basis_rate_per_sqrt_year_wad: uint256
    basis_min_days_wad: uint256
    short_option_min_rate_wad: uint256
    liquidity_notional_threshold_wad: uint256
    liquidity_rate_wad: uint256

# One position and its instrument's market inputs (the market root's fields), WAD.
struct Leg:
    size_wad: int256
    kind: uint8
    # index into the `units` argument (the book's underlyings)
    unit: uint256
    fwd_wad: uint256
    spot_wad: uint256
    strike_wad: uint256
    tenor_wad: uint256
    vol_wad: uint256
    rate_wad: int256
    contract_size_wad: uint256

struct Scenario:
    move_wad: int256
    vol_dir: int256
    weight_wad: uint256

struct Check:
    # weight * -P&L per unit in its named scenario (negative: a gain)
    unit_losses_wad: DynArray[int256, MAX_UNITS]
    # netted short-option floor per unit (0 when charged per contract)
    unit_floors_wad: DynArray[uint256, MAX_UNITS]
    # sum over units of weight * -P&L in the joint scenario (decorrelation < 1)
    joint_loss_wad: int256
    # d * sum_u max(0, loss_u) + (1 - d) * max(0, joint): the scenario part
    scenario_loss_wad: uint256
    # the same with each unit's floor: a lower bound of the worst loss
    weighted_loss_wad: uint256
    basis_wad: uint256
    short_option_wad: uint256
    liquidity_wad: uint256
    # scenario part + add-ons: the maintenance margin if the named scenarios bind
    maintenance_wad: uint256

# What a unit's vol shock needs (generator and coefficients), WAD.
struct Shock:
    span16: bool
    up_wad: uint256
    down_wad: uint256
    up_floor_wad: uint256
    min_vol_wad: uint256
    down_min_factor_wad: uint256

# One coefficient row in storage, two 128-bit values per slot (checked at deployment), so a
# unit reads the five slots `_check` needs, not the whole row (13 slots and its tail moves).
struct Row:
    # range | vol_up << 128
    range_up: uint256
    # vol_down | vol_up_floor << 128
    down_floor: uint256
    # tail_weight | basis_rate_per_sqrt_year << 128
    tail_basis: uint256
    # basis_min_days | short_option_min_rate << 128
    days_short: uint256
    # liquidity_notional_threshold | liquidity_rate << 128
    liquidity: uint256
    n_tail: uint256
    # tail move + 2**127, two per slot (move 2i in bits 0-127, 2i + 1 in 128-255)
    tail: uint256[8]

# Per-unit terms and accumulators of `check` (fixed size: copied in one piece).
struct Unit:
    scenario: Scenario
    joint: Scenario
    # ln(1 + move) of each scenario (WAD), taken once at the unit's first option: a moved
    # forward's ln(F / K) is its own plus this
    log_move: int256
    joint_log_move: int256
    has_logs: bool
    shock: Shock
    # the unit's coefficients the legs and the add-ons use
    short_option_min_rate_wad: uint256
    basis_rate_per_sqrt_year_wad: uint256
    basis_min_days_wad: uint256
    liquidity_notional_threshold_wad: uint256
    liquidity_rate_wad: uint256
    pnl: int256
    joint_pnl: int256
    basis: int256
    notional: int256
    floor: uint256


interface Oracle:
    def market_tree(engine: address) -> (uint256, uint256, uint256, bytes32): view
    def params_hash() -> bytes32: view


#### STORAGE ####

# RiskOracle holding each engine's epoch roots (their market roots feed `check_market`).
oracle: public(immutable(address))

# Content hash of the risk-parameter file (sha256 of its canonical JSON).
params_hash: public(immutable(bytes32))
# keccak256(abi_encode(generator, coefficients)): what this verifier prices with.
generator_hash: public(immutable(bytes32))
# Number of scenarios per underlying.
n_scenarios: public(immutable(uint256))
# The set-wide generating parameters (in code: read for the price of a copy).
GENERATOR: immutable(Generator)
# Per-underlying coefficient rows by symbol (a row's range_up is never 0: range > 0), and the
# symbols in constructor order (for `generator`).
_rows: HashMap[bytes32, Row]
_symbols: DynArray[bytes32, MAX_COEFFICIENTS]


#### CONSTRUCTOR ####

@deploy
def __init__(oracle_: address, params_hash_: bytes32, generator_: Generator,
             coefficients_: DynArray[Coefficients, MAX_COEFFICIENTS]):
    """
    @param oracle_ The RiskOracle whose market roots `check_market` reads (may be empty:
           then only `check` is usable).
    @param params_hash_ The parameter file's content hash.
    @param generator_ The set-wide scenario generator and aggregation parameters (WAD).
    @param coefficients_ One resolved row per underlying symbol (and DEFAULT_SYMBOL for
           underlyings without their own).
    """
    assert generator_.mode == MODE_MATRIX or generator_.mode == MODE_SPAN16, "ScenarioVerifier: mode must be 0 (matrix) or 1 (span16)"
    assert generator_.mm_factor_wad != 0 and generator_.mm_factor_wad <= WAD, "ScenarioVerifier: mm_factor must be in (0, 1]"
    assert generator_.decorrelation_wad <= WAD, "ScenarioVerifier: decorrelation must be <= 1"
    assert len(coefficients_) != 0, "ScenarioVerifier: no coefficients"
    count: uint256 = 16
    if generator_.mode == MODE_MATRIX:
        assert generator_.price_steps >= 3 and generator_.price_steps % 2 == 1, "ScenarioVerifier: price_steps must be odd and >= 3"
        assert generator_.price_steps <= 1001, "ScenarioVerifier: price_steps must be <= 1001"
        assert generator_.tail_vol_dir >= -1 and generator_.tail_vol_dir <= 1, "ScenarioVerifier: tail_vol_dir must be -1, 0 or 1"
        assert generator_.reference_days_wad != 0 and generator_.min_days_wad != 0, "ScenarioVerifier: vol scaling days must be > 0"
        assert generator_.vol_down_min_factor_wad != 0, "ScenarioVerifier: vol_down_min_factor must be > 0"
        count = 3 * generator_.price_steps + len(coefficients_[0].tail_moves_wad)
    for c: Coefficients in coefficients_:
        assert c.symbol != empty(bytes32), "ScenarioVerifier: empty symbol"
        assert self._rows[c.symbol].range_up == 0, "ScenarioVerifier: duplicate symbol"
        assert c.range_wad != 0 and c.range_wad < WAD, "ScenarioVerifier: range must be in (0, 1)"
        if generator_.mode == MODE_SPAN16:
            assert c.range_wad * generator_.extreme_multiple_wad < WAD * WAD, "ScenarioVerifier: extreme moves must be > -1"
        if generator_.mode == MODE_MATRIX:
            assert 3 * generator_.price_steps + len(c.tail_moves_wad) == count, "ScenarioVerifier: every underlying needs the same number of tail moves"
            for m: int256 in c.tail_moves_wad:
                assert m > -WAD_I and m != 0, "ScenarioVerifier: tail moves must be non-zero and > -1"
        assert c.vol_up_wad <= MASK_128 and c.vol_down_wad <= MASK_128 and c.vol_up_floor_wad <= MASK_128, "ScenarioVerifier: vol shocks must be < 2**128"
        assert c.tail_weight_wad <= MASK_128, "ScenarioVerifier: tail_weight must be < 2**128"
        assert c.basis_rate_per_sqrt_year_wad <= MASK_128 and c.basis_min_days_wad <= MASK_128, "ScenarioVerifier: basis coefficients must be < 2**128"
        assert c.short_option_min_rate_wad <= MASK_128, "ScenarioVerifier: short_option_min_rate must be < 2**128"
        assert c.liquidity_notional_threshold_wad <= MASK_128 and c.liquidity_rate_wad <= MASK_128, "ScenarioVerifier: liquidity coefficients must be < 2**128"
        row: Row = Row(
            range_up=c.range_wad | (c.vol_up_wad << 128),
            down_floor=c.vol_down_wad | (c.vol_up_floor_wad << 128),
            tail_basis=c.tail_weight_wad | (c.basis_rate_per_sqrt_year_wad << 128),
            days_short=c.basis_min_days_wad | (c.short_option_min_rate_wad << 128),
            liquidity=c.liquidity_notional_threshold_wad | (c.liquidity_rate_wad << 128),
            n_tail=len(c.tail_moves_wad),
            tail=empty(uint256[8]),
        )
        for i: uint256 in range(len(c.tail_moves_wad), bound=MAX_TAIL_MOVES):
            m: int256 = c.tail_moves_wad[i]
            assert m > -OFFSET_128 and m < OFFSET_128, "ScenarioVerifier: tail moves must be within int128"
            # m + 2**127 is in (0, 2**128)
            row.tail[i // 2] |= convert(m + OFFSET_128, uint256) << (128 * (i % 2))
        self._rows[c.symbol] = row
        self._symbols.append(c.symbol)
    GENERATOR = generator_
    oracle = oracle_
    params_hash = params_hash_
    generator_hash = keccak256(abi_encode(generator_, coefficients_))
    n_scenarios = count


#### EXTERNAL ####

@external
@view
def generator() -> (Generator, DynArray[Coefficients, MAX_COEFFICIENTS]):
    """
    @notice The generating parameters and coefficient rows this verifier prices with.
    """
    rows: DynArray[Coefficients, MAX_COEFFICIENTS] = []
    for symbol: bytes32 in self._symbols:
        row: Row = self._rows[symbol]
        moves: DynArray[int256, MAX_TAIL_MOVES] = []
        for i: uint256 in range(row.n_tail, bound=MAX_TAIL_MOVES):
            moves.append(convert((row.tail[i // 2] >> (128 * (i % 2))) & MASK_128, int256) - OFFSET_128)
        rows.append(Coefficients(
            symbol=symbol, range_wad=row.range_up & MASK_128, vol_up_wad=row.range_up >> 128,
            vol_down_wad=row.down_floor & MASK_128, vol_up_floor_wad=row.down_floor >> 128,
            tail_weight_wad=row.tail_basis & MASK_128, tail_moves_wad=moves,
            basis_rate_per_sqrt_year_wad=row.tail_basis >> 128, basis_min_days_wad=row.days_short & MASK_128,
            short_option_min_rate_wad=row.days_short >> 128,
            liquidity_notional_threshold_wad=row.liquidity & MASK_128, liquidity_rate_wad=row.liquidity >> 128))
    return GENERATOR, rows


@external
@view
def scenario(symbol: bytes32, index: uint256) -> Scenario:
    """
    @notice Scenario `index` of underlying `symbol`: price move, vol direction (1 up, 0
            flat, -1 down) and the weight its loss counts with (WAD).
    """
    key: bytes32 = empty(bytes32)
    range_up: uint256 = 0
    key, range_up = self._row_of(symbol)
    return self._scenario(GENERATOR, key, range_up & MASK_128, index)


@external
@pure
def black76(fwd_wad: uint256, strike_wad: uint256, tenor_wad: uint256, vol_wad: uint256,
            rate_wad: int256, is_call: bool) -> uint256:
    """
    @notice Black-76 premium of one option (WAD), as the risk engine prices it.
    """
    return pricer._black76(fwd_wad, strike_wad, tenor_wad, vol_wad, rate_wad, is_call)


@external
@pure
def unit_value(kind: uint8, fwd_wad: uint256, spot_wad: uint256, strike_wad: uint256,
               tenor_wad: uint256, vol_wad: uint256, rate_wad: int256) -> uint256:
    """
    @notice Value of one unit of an instrument (WAD): perp at spot, future at its forward,
            option at Black-76.
    """
    return pricer._unit_value(kind, fwd_wad, spot_wad, strike_wad, tenor_wad, vol_wad, rate_wad)


@external
@view
def check(legs: DynArray[Leg, MAX_LEGS], units: DynArray[bytes32, MAX_UNITS],
          scenarios: DynArray[uint256, MAX_UNITS], joint_scenario: uint256) -> Check:
    """
    @notice Re-prices a book in one named scenario per risk unit (and one joint scenario for
            the decorrelated part) and computes its add-ons.
    @param legs The book: signed size, instrument and its market inputs, per position.
    @param units The book's underlyings, distinct; `legs[i].unit` indexes this list.
    @param scenarios The scenario index named for each unit (same order as `units`).
    @param joint_scenario The scenario of the all-units-together term (used only when the
           parameter set's decorrelation is below 1).
    @return Check Unit losses and floors, the scenario and weighted losses, each add-on and
            the maintenance margin they make (WAD).
    """
    return self._check(legs, units, scenarios, joint_scenario)


@external
@view
def check_market(engine: address, sizes: DynArray[int256, MAX_LEGS],
                 leaves: DynArray[market_leaf.MarketLeaf, MAX_LEGS], proof: uint256, order: uint256,
                 units: DynArray[bytes32, MAX_UNITS], scenarios: DynArray[uint256, MAX_UNITS],
                 joint_scenario: uint256) -> Check:
    """
    @notice `check` with every leg's market inputs taken from `engine`'s current epoch
            market root: the leaves are verified by the oracle with one multiproof (root
            under the current parameter set, which must be this verifier's), each leg's
            tenor is its expiry minus the root's signed timestamp.
    @dev The caller supplies the sizes and must tie them to the book it judges (the
         engine's positions, or an account leaf's positions hash): a book with a position
         left out is a different book.
    @param engine The MarginEngine whose root holds the market leaves.
    @param sizes The signed size of each position (WAD), aligned with `leaves`.
    @param leaves One market leaf per position (modules/market_leaf.vy: packed, seven words),
           in any order (`order` takes them by ascending instrument id); each is proven at
           the slot of its own id, so one id twice, or an id past the root's instrument
           count, is refused.
    @param proof The multiproof's hashes (offchain/chain/merkle.py `PositionalTree.multiproof`)
           as a bytes32[] in the call data: this head word is its ABI offset, as a bytes32[]
           argument's would be (the call data is the standard encoding of `proof` as a
           bytes32[]; offchain/chain/witness.py). Read where it lies, not copied: a copied
           argument reserves its whole bound (512 hashes) in memory, and every word above it
           pays for that expansion.
    @param order The multiproof's order: byte j the index in `leaves` of the j-th leaf by
           ascending instrument id.
    @param units The book's underlyings, distinct; each leaf's underlying must be listed.
    @param scenarios The scenario index named for each unit.
    @param joint_scenario The scenario of the decorrelated joint term.
    @return Check As `check`.
    """
    assert oracle != empty(address), "ScenarioVerifier: no oracle"
    assert staticcall Oracle(oracle).params_hash() == params_hash, "ScenarioVerifier: oracle runs another params set"
    # signed_at is 0 when the engine has no root, its root was signed under an older params
    # set or voided; count: the registry's instrument count the root committed to
    epoch: uint256 = 0
    signed_at: uint256 = 0
    count: uint256 = 0
    market_root: bytes32 = empty(bytes32)
    epoch, signed_at, count, market_root = staticcall Oracle(oracle).market_tree(engine)
    assert signed_at != 0, "ScenarioVerifier: no current root for engine"
    # leaves are read where the decoder put them: passing the array to a helper would copy it
    # (and its frame would widen memory)
    n: uint256 = len(leaves)
    assert len(sizes) == n, "ScenarioVerifier: one size per leaf expected"
    # tree nodes: keccak256(keccak256(abi_encode(engine, epoch, leaf))) (as RiskOracle hashes
    # them in `publish_epoch_data`), each at the slot of its own instrument id; the legs
    # decoded in the same pass (inline: a helper per leaf copied the leaf and the units)
    ids: DynArray[uint256, MAX_LEGS] = []
    hashes: DynArray[bytes32, MAX_LEGS] = []
    legs: DynArray[Leg, MAX_LEGS] = []
    for i: uint256 in range(n, bound=MAX_LEGS):
        leaf: market_leaf.MarketLeaf = leaves[i]
        head: uint256 = leaf.head
        # the packed layout (modules/market_leaf.vy `_well_formed`, inline): its tag, zero
        # reserved bits, a kind 0..3
        assert head >> 136 == market_leaf.HEAD_HIGH and (head >> 128) & 255 <= market_leaf.KIND_MAX, "ScenarioVerifier: market leaf not of the packed layout (tag, reserved bits or kind)"
        ids.append(head & MASK_64)
        hashes.append(keccak256(keccak256(abi_encode(engine, epoch, leaf))))
        # a leg: unit by underlying, tenor in years from the root time, a perpetual's forward
        # at its spot (as the engine resolves it)
        kind: uint8 = convert((head >> 128) & 255, uint8)
        spot: uint256 = leaf.spot_forward & MASK_128
        fwd: uint256 = spot
        tenor: uint256 = 0
        if kind != KIND_PERPETUAL:
            expiry: uint256 = (head >> 64) & MASK_64
            assert expiry > signed_at, "ScenarioVerifier: instrument expired at the root"
            tenor = (expiry - signed_at) * WAD // SECONDS_PER_YEAR
            fwd = leaf.spot_forward >> 128
        unit: uint256 = MAX_UNITS
        for u: uint256 in range(len(units), bound=MAX_UNITS):
            if units[u] == leaf.underlying:
                unit = u
                break
        assert unit < MAX_UNITS, "ScenarioVerifier: leaf underlying not among units"
        # rate: bits 64-127 biased by 2**63
        legs.append(Leg(size_wad=sizes[i], kind=kind, unit=unit, fwd_wad=fwd, spot_wad=spot,
                        strike_wad=leaf.strike_size & MASK_128, tenor_wad=tenor, vol_wad=leaf.vol_rate_mark & MASK_64,
                        rate_wad=convert((leaf.vol_rate_mark >> 64) & MASK_64, int256) - market_leaf.RATE_BIAS,
                        contract_size_wad=leaf.strike_size >> 128))
    assert multiproof._root_at(ids, hashes, order, 4 + proof, count) == market_root, "ScenarioVerifier: invalid market multiproof"
    return self._check(legs, units, scenarios, joint_scenario)


#### INTERNAL ####

@internal
@view
def _check(legs: DynArray[Leg, MAX_LEGS], units: DynArray[bytes32, MAX_UNITS],
           scenarios: DynArray[uint256, MAX_UNITS], joint_scenario: uint256) -> Check:
    """
    @dev `check`'s body (see there). Each option is priced from terms taken once: ln(F / K)
         per leg; sqrt(T), exp(-rT) and the tenor's vol scale once per run of legs of one
         tenor (and rate); ln(1 + move) once per unit and scenario. Its base evaluation
         gives the premium and N(d1) (the delta) together.
    """
    n_units: uint256 = len(units)
    assert n_units != 0, "ScenarioVerifier: no units"
    assert len(scenarios) == n_units, "ScenarioVerifier: one scenario per unit expected"
    gen: Generator = GENERATOR
    decorrelated: bool = gen.decorrelation_wad < WAD
    acc: DynArray[Unit, MAX_UNITS] = []
    for u: uint256 in range(n_units, bound=MAX_UNITS):
        for v: uint256 in range(u, bound=MAX_UNITS):
            assert v == u or units[v] != units[u], "ScenarioVerifier: duplicate unit"
        key: bytes32 = empty(bytes32)
        range_up: uint256 = 0
        key, range_up = self._row_of(units[u])
        down_floor: uint256 = self._rows[key].down_floor
        tail_basis: uint256 = self._rows[key].tail_basis
        days_short: uint256 = self._rows[key].days_short
        liquidity: uint256 = self._rows[key].liquidity
        unit: Unit = empty(Unit)
        unit.scenario = self._scenario(gen, key, range_up & MASK_128, scenarios[u])
        if decorrelated:
            unit.joint = self._scenario(gen, key, range_up & MASK_128, joint_scenario)
        unit.shock = Shock(span16=gen.mode == MODE_SPAN16, up_wad=range_up >> 128, down_wad=down_floor & MASK_128,
                           up_floor_wad=down_floor >> 128, min_vol_wad=gen.min_vol_wad,
                           down_min_factor_wad=gen.vol_down_min_factor_wad)
        unit.short_option_min_rate_wad = days_short >> 128
        unit.basis_rate_per_sqrt_year_wad = tail_basis >> 128
        unit.basis_min_days_wad = days_short & MASK_128
        unit.liquidity_notional_threshold_wad = liquidity & MASK_128
        unit.liquidity_rate_wad = liquidity >> 128
        acc.append(unit)

    out: Check = empty(Check)
    # the terms of the last option's tenor and rate (max_value: none yet); scale 0: the
    # matrix vol scale of that tenor not taken yet
    tenor: uint256 = max_value(uint256)
    rate: int256 = 0
    sqrt_t: uint256 = 0
    factor: uint256 = 0
    scale: uint256 = 0
    # the last option's evaluations (base, own and joint scenario) and what they were taken
    # at: the next leg reuses them when it is the same option's other kind (a call and a
    # put of one strike and expiry, listed together) or the same option again
    last_unit: uint256 = MAX_UNITS
    last_fwd: uint256 = 0
    last_strike: uint256 = 0
    last_vol: uint256 = 0
    e_base: pricer.Eval = empty(pricer.Eval)
    e_own: pricer.Eval = empty(pricer.Eval)
    e_joint: pricer.Eval = empty(pricer.Eval)
    # netted short-option groups (engine.py `short_option_floor`): options of one unit,
    # expiry and strike, calls netting against puts; key = strike | tenor << 129 | unit << 196
    # (strike <= 2**128 and tenor < 2**67 once priced, unit < 8), the first leg's forward
    g_key: DynArray[uint256, MAX_LEGS] = []
    g_fwd: DynArray[uint256, MAX_LEGS] = []
    g_net: DynArray[int256, MAX_LEGS] = []
    # one bit per group key seen (bit = top 8 bits of key * GROUP_HASH, mod 2**256): a key
    # whose bit is clear is in no group yet and opens one without a search
    g_seen: uint256 = 0
    for leg: Leg in legs:
        u: uint256 = leg.unit
        assert u < n_units, "ScenarioVerifier: leg unit out of range"
        # contracts held times the contract size
        held: int256 = leg.size_wad * convert(leg.contract_size_wad, int256) // WAD_I
        is_option: bool = leg.kind == KIND_CALL or leg.kind == KIND_PUT
        own: Scenario = acc[u].scenario
        joint: Scenario = acc[u].joint
        joint_differs: bool = decorrelated and joint_scenario != scenarios[u]
        base: uint256 = 0
        value: uint256 = 0
        joint_value: uint256 = 0
        delta: int256 = WAD_I
        if is_option:
            is_call: bool = leg.kind == KIND_CALL
            if not (u == last_unit and leg.fwd_wad == last_fwd and leg.strike_wad == last_strike and
                    leg.vol_wad == last_vol and leg.tenor_wad == tenor and leg.rate_wad == rate):
                x: int256 = pricer._log_moneyness(leg.fwd_wad, leg.strike_wad)
                pricer._check_tenor_rate(leg.tenor_wad, leg.rate_wad)
                if leg.tenor_wad != tenor:
                    tenor = leg.tenor_wad
                    rate = leg.rate_wad
                    sqrt_t = pricer._sqrt_tenor(tenor)
                    factor = pricer._discount_factor(tenor, rate)
                    scale = 0
                elif leg.rate_wad != rate:
                    rate = leg.rate_wad
                    factor = pricer._discount_factor(tenor, rate)
                if not acc[u].has_logs:
                    acc[u].log_move = self._log_move(own.move_wad)
                    if joint_differs:
                        acc[u].joint_log_move = self._log_move(joint.move_wad)
                    acc[u].has_logs = True
                if gen.mode == MODE_MATRIX and scale == 0 and (own.vol_dir != 0 or (joint_differs and joint.vol_dir != 0)):
                    scale = self._vol_scale(gen, tenor)
                e_base = pricer._evaluate(leg.fwd_wad, leg.strike_wad, x, sqrt_t, leg.vol_wad)
                e_own = self._scenario_eval(e_base, own.move_wad, x + acc[u].log_move, sqrt_t,
                                            self._shocked_vol(acc[u].shock, leg.vol_wad, scale, own.vol_dir), leg.vol_wad)
                if joint_differs:
                    e_joint = self._scenario_eval(e_base, joint.move_wad, x + acc[u].joint_log_move, sqrt_t,
                                                  self._shocked_vol(acc[u].shock, leg.vol_wad, scale, joint.vol_dir), leg.vol_wad)
                last_unit = u
                last_fwd = leg.fwd_wad
                last_strike = leg.strike_wad
                last_vol = leg.vol_wad
            base = pricer._value(e_base, is_call, factor)
            delta = pricer._delta(e_base, is_call, factor)
            value = pricer._value(e_own, is_call, factor)
            if joint_differs:
                joint_value = pricer._value(e_joint, is_call, factor)
            if gen.short_option_netted:
                key: uint256 = leg.strike_wad | (leg.tenor_wad << 129) | (u << 196)
                # multiplicative hash: wraps mod 2**256 by design; the shift leaves 0..255
                bit: uint256 = 1 << (unsafe_mul(key, GROUP_HASH) >> 248)
                found: bool = False
                if g_seen & bit != 0:
                    # newest first: a call and its put are listed together
                    n_groups: uint256 = len(g_key)
                    for i: uint256 in range(n_groups, bound=MAX_LEGS):
                        g: uint256 = unsafe_sub(unsafe_sub(n_groups, 1), i)  # i < n_groups
                        if g_key[g] == key:
                            g_net[g] += held
                            found = True
                            break
                if not found:
                    g_seen |= bit
                    g_key.append(key)
                    g_fwd.append(leg.fwd_wad)
                    g_net.append(held)
            elif held < 0:
                out.short_option_wad += convert(-held, uint256) * acc[u].short_option_min_rate_wad // WAD * leg.fwd_wad // WAD
        else:
            base = pricer._unit_value(leg.kind, leg.fwd_wad, leg.spot_wad, leg.strike_wad, leg.tenor_wad, leg.vol_wad, leg.rate_wad)
            value = self._moved(base, own.move_wad)
            if joint_differs:
                joint_value = self._moved(base, joint.move_wad)
        pnl: int256 = held * (convert(value, int256) - convert(base, int256)) // WAD_I
        acc[u].pnl += pnl
        if decorrelated:
            if joint_differs:
                pnl = held * (convert(joint_value, int256) - convert(base, int256)) // WAD_I
            acc[u].joint_pnl += pnl
        # delta (dV/dF) times the forward: the delta notional; times the basis shift: basis
        exposure: int256 = held * delta // WAD_I * convert(leg.fwd_wad, int256) // WAD_I
        acc[u].notional += exposure
        if not is_option or gen.basis_on_options:
            acc[u].basis += exposure * convert(self._basis_shift(acc[u].basis_rate_per_sqrt_year_wad, acc[u].basis_min_days_wad, leg.tenor_wad), int256) // WAD_I

    # each net short group's contracts times short_option_min_rate * forward, in its unit's
    # floor (the expiry is identified by the tenor: one valuation time per book)
    for g: uint256 in range(len(g_key), bound=MAX_LEGS):
        if g_net[g] < 0:
            u: uint256 = g_key[g] >> 196
            acc[u].floor += convert(-g_net[g], uint256) * acc[u].short_option_min_rate_wad // WAD * g_fwd[g] // WAD
    # margin.py `worst_loss` for the named scenarios, and the liquidity and basis sums (here,
    # not in a helper: its frame would hold a second copy of `acc` below check_market's)
    d: uint256 = gen.decorrelation_wad
    positive: uint256 = 0
    with_floor: uint256 = 0
    joint_sum: int256 = 0
    floors: uint256 = 0
    for unit: Unit in acc:
        loss: int256 = -unit.pnl * convert(unit.scenario.weight_wad, int256) // WAD_I
        out.unit_losses_wad.append(loss)
        out.unit_floors_wad.append(unit.floor)
        raw: uint256 = 0
        if loss > 0:
            raw = convert(loss, uint256)
        positive += raw
        with_floor += max(raw, unit.floor)
        floors += unit.floor
        joint_sum += -unit.joint_pnl * convert(unit.joint.weight_wad, int256) // WAD_I
        out.basis_wad += convert(abs(unit.basis), uint256)
        excess: int256 = abs(unit.notional) - convert(unit.liquidity_notional_threshold_wad, int256)
        if excess > 0:
            out.liquidity_wad += convert(excess, uint256) * unit.liquidity_rate_wad // WAD
    out.joint_loss_wad = joint_sum
    joint_pos: uint256 = 0
    if joint_sum > 0:
        joint_pos = convert(joint_sum, uint256)
    if d == WAD:
        out.scenario_loss_wad = positive
        out.weighted_loss_wad = with_floor
    else:
        out.scenario_loss_wad = (positive * d + joint_pos * (WAD - d)) // WAD
        out.weighted_loss_wad = (with_floor * d + max(joint_pos, floors) * (WAD - d)) // WAD
    if gen.short_option_netted:
        out.short_option_wad = out.weighted_loss_wad - out.scenario_loss_wad
    out.maintenance_wad = out.scenario_loss_wad + out.basis_wad + out.short_option_wad + out.liquidity_wad
    return out


@internal
@view
def _row_of(symbol: bytes32) -> (bytes32, uint256):
    """
    @dev The key of the underlying's row (its own, else DEFAULT_SYMBOL's) and the row's first
         word (range | vol_up << 128; never 0 for a row).
    """
    range_up: uint256 = self._rows[symbol].range_up
    if range_up != 0:
        return symbol, range_up
    range_up = self._rows[DEFAULT_SYMBOL].range_up
    assert range_up != 0, "ScenarioVerifier: no coefficients for underlying"
    return DEFAULT_SYMBOL, range_up


@internal
@view
def _scenario(gen: Generator, key: bytes32, range_wad: uint256, index: uint256) -> Scenario:
    """
    @dev scenarios.py `_matrix` / `_span16`, one column, for the row at `key` (its range
         given; a tail move and the tail weight are read only for a tail scenario).
    """
    out: Scenario = empty(Scenario)
    out.weight_wad = WAD
    if gen.mode == MODE_MATRIX:
        core: uint256 = 3 * gen.price_steps
        if index < core:
            # linspace(-1, 1, steps)[j] = (2 j - (steps - 1)) / (steps - 1); vol up, flat, down
            j: int256 = convert(index // 3, int256)
            half: int256 = convert(gen.price_steps - 1, int256)
            out.move_wad = convert(range_wad, int256) * (2 * j - half) // half
            out.vol_dir = 1 - convert(index % 3, int256)
            return out
        t: uint256 = index - core
        assert t < self._rows[key].n_tail, "ScenarioVerifier: scenario index out of range"
        # stored as move + 2**127 in 128 bits (t < n_tail <= 16: t // 2 < 8)
        m: int256 = unsafe_sub(convert((self._rows[key].tail[t // 2] >> (128 * (t % 2))) & MASK_128, int256), OFFSET_128)
        out.move_wad = m
        out.vol_dir = gen.tail_vol_dir
        # tail moves count tail_weight * R / |move| of their loss, never more than 1
        out.weight_wad = min((self._rows[key].tail_basis & MASK_128) * range_wad // convert(abs(m), uint256), WAD)
        return out
    assert index < 16, "ScenarioVerifier: scenario index out of range"
    if index < 14:
        # pairs (vol up, vol down) at thirds 0, 1, -1, 2, -2, 3, -3 of the scan range
        j: uint256 = index // 2
        third: int256 = convert((j + 1) // 2, int256)
        if j % 2 == 0:
            third = -third
        out.move_wad = convert(range_wad, int256) * third // 3
        out.vol_dir = 1
        if index % 2 == 1:
            out.vol_dir = -1
        return out
    out.move_wad = convert(range_wad * gen.extreme_multiple_wad // WAD, int256)
    if index == 15:
        out.move_wad = -out.move_wad
    out.weight_wad = gen.extreme_weight_wad
    return out


@internal
@pure
def _scenario_eval(e: pricer.Eval, move: int256, x: int256, sqrt_t: uint256, vol: uint256,
                   base_vol: uint256) -> pricer.Eval:
    """
    @dev An option's evaluation with its forward moved by `move` and its vol shocked to
         `vol`, from its base evaluation `e` (at `base_vol`) and terms: x = ln(F (1 + move)
         / K), sqrt(T); `e` itself when the scenario moves neither.
    """
    if move == 0 and vol == base_vol:
        return e
    moved: uint256 = self._moved(e.fwd, move)
    pricer._check_prices(moved, e.strike)
    return pricer._evaluate(moved, e.strike, x, sqrt_t, vol)


@internal
@pure
def _moved(price: uint256, move_wad: int256) -> uint256:
    """
    @dev price * (1 + move); every move is > -1 (checked at deployment; ranges < 1).
    """
    return convert(convert(price, int256) * (WAD_I + move_wad) // WAD_I, uint256)


@internal
@pure
def _log_move(move_wad: int256) -> int256:
    """
    @dev ln(1 + move), WAD (1 + move > 0: see `_moved`).
    """
    if move_wad == 0:
        return 0
    return math._wad_ln(WAD_I + move_wad)


@internal
@pure
def _vol_scale(gen: Generator, tenor: uint256) -> uint256:
    """
    @dev The matrix vol shock's tenor scaling (reference / max(days, min_days)) ** power,
         power_short under the reference tenor (scenarios.py `ScenarioSet.shocked_vols`), WAD.
    """
    days: uint256 = max(tenor * DAYS_PER_YEAR, gen.min_days_wad)
    power: uint256 = gen.power_long_wad
    if days < gen.reference_days_wad:
        power = gen.power_short_wad
    log_ratio: int256 = math._wad_ln(convert(gen.reference_days_wad * WAD // days, int256))
    return convert(math._wad_exp(log_ratio * convert(power, int256) // WAD_I), uint256)


@internal
@pure
def _shocked_vol(shock: Shock, vol: uint256, scale: uint256, vol_dir: int256) -> uint256:
    """
    @dev scenarios.py `ScenarioSet.shocked_vols`, one instrument (`vol` itself when vol_dir
         is 0); `scale` is the tenor's `_vol_scale` (matrix mode).
    """
    if vol_dir == 0:
        return vol
    if shock.span16:
        if vol_dir > 0:
            return vol + shock.up_wad
        if vol <= shock.down_wad + shock.min_vol_wad:
            return shock.min_vol_wad
        return vol - shock.down_wad
    if vol_dir > 0:
        return max(vol * (WAD + shock.up_wad * scale // WAD) // WAD, shock.up_floor_wad)
    factor: int256 = WAD_I - convert(shock.down_wad * scale // WAD, int256)
    return vol * convert(max(factor, convert(shock.down_min_factor_wad, int256)), uint256) // WAD


@internal
@pure
def _basis_shift(rate: uint256, min_days: uint256, tenor: uint256) -> uint256:
    """
    @dev basis_rate * sqrt(max(T, basis_min_days / 365)) (arrays.py `addon_vectors`), WAD.
    """
    t: uint256 = max(tenor, min_days // DAYS_PER_YEAR)
    return rate * pricer._sqrt_tenor(t) // WAD

# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
# (codesize: `market_words` beside `marks` fits EIP-170 so, at ~+200 gas per oracle transaction)
"""
@title RiskOracle
@custom:contract-name RiskOracle
@license MIT
@notice Verifies M-of-N EIP-712 signatures of the netmargin risk signers and stores what
        they sign: per-instrument marks, funding indices and per-unit margin rates, index
        prices per underlying (bounded move per update), final expiry settlement prices, and
        one epoch root per engine: an accounts root (Merkle tree of account margin leaves)
        and a market root (per-instrument model inputs), whose leaves it verifies for the
        engine (`verify_account_leaf`). MarginEngine applies a verified leaf and binds it to
        the book (state nonce, positions hash, pending counters, never an older basis).
@dev EIP-712 domain: name "netmargin RiskOracle", version "1", chain.id, this address
     (snekmate `eip712_domain_separator`, rebuilt if the chain id changes). Type strings
     are the *_TYPEHASH constants below and must equal offchain/chain/eip712.py.
     Signatures: 65 bytes (r, s, v), v in {27, 28}, low s, recovered signers strictly
     ascending, every one a current signer, at least `threshold` of them.
@custom:security Signers are trusted for values, not for liveness of old data: they can
     post any mark or margin (within storage ranges), but cannot rewind a timestamp,
     replay a message, move an index price more than `max_index_move_bps` per update
     (a mark more than that or its previous maintenance rate),
     settle before expiry or change a settlement price once set.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator
from snekmate.utils import merkle_proof_verification as merkle
from interfaces import IRiskOracle
from interfaces import IInstrumentRegistry
from interfaces import IScenarioVerifier
from modules import market_leaf

implements: IRiskOracle

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: eip712_domain_separator

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    eip712_domain_separator.eip712Domain,
)


#### CONSTANTS ####

# Bounds of every loop (see IRiskOracle).
MAX_SIGNATURES: public(constant(uint256)) = 16
MAX_SIGNERS: public(constant(uint256)) = 16
MAX_IDS: public(constant(uint256)) = 32
# Instruments per market-data batch and underlyings per index update.
MAX_BATCH: public(constant(uint256)) = 256
MAX_UNDERLYINGS: public(constant(uint256)) = 32
# Longest Merkle proof accepted (2**32 leaves).
MAX_PROOF: public(constant(uint256)) = 32
BPS: constant(uint256) = 10_000
# IInstrumentRegistry kind code of perpetuals (no expiry, no settlement).
KIND_PERPETUAL: constant(uint8) = 1

MARKET_DATA_TYPEHASH: public(constant(bytes32)) = keccak256(
    "MarketData(uint256[] ids,int256[] marks_wad,int256[] funding_indices_wad,uint256[] im_long_wad,uint256[] im_short_wad,uint256[] mm_long_wad,uint256[] mm_short_wad,bytes32 params_hash,uint256 timestamp,uint256 deadline)"
)
INDEX_PRICES_TYPEHASH: public(constant(bytes32)) = keccak256(
    "IndexPrices(bytes32[] underlyings,uint256[] prices_wad,uint256 timestamp,uint256 deadline)"
)
SETTLEMENT_PRICE_TYPEHASH: public(constant(bytes32)) = keccak256(
    "SettlementPrice(uint256 instrument_id,uint256 price_wad,uint256 timestamp,uint256 deadline)"
)
EPOCH_ROOT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "EpochRoot(address engine,uint256 epoch,uint256 timestamp,uint256 deadline,bytes32 params_hash,bytes32 market_root,uint256 market_count,bytes32 accounts_root,uint256 account_count)"
)
EPOCH_DATA_TYPEHASH: public(constant(bytes32)) = keccak256(
    "EpochData(address engine,uint256 epoch,uint256 state_block,bytes32 accounts_root,bytes32 market_root)"
)

# Packed market word: [mark + 2**95 : 96 bits][funding + 2**95 : 96 bits][updated_at : 64 bits].
# Biased (offset) encoding keeps signed values as plain unsigned bit fields.
SIGNED_96_BIAS: constant(int256) = 2**95
MASK_96: constant(uint256) = 2**96 - 1
MASK_64: constant(uint256) = 2**64 - 1
MASK_40: constant(uint256) = 2**40 - 1
MASK_128: constant(uint256) = 2**128 - 1
# Highest rate that fits a 128-bit half of a packed rates word.
MAX_RATE_WAD: constant(uint256) = 2**128 - 1


#### STRUCTS ####

struct MarketData:
    ids: DynArray[uint256, MAX_BATCH]
    marks_wad: DynArray[int256, MAX_BATCH]
    funding_indices_wad: DynArray[int256, MAX_BATCH]
    im_long_wad: DynArray[uint256, MAX_BATCH]
    im_short_wad: DynArray[uint256, MAX_BATCH]
    mm_long_wad: DynArray[uint256, MAX_BATCH]
    mm_short_wad: DynArray[uint256, MAX_BATCH]
    params_hash: bytes32
    timestamp: uint256
    deadline: uint256

struct IndexPrices:
    underlyings: DynArray[bytes32, MAX_UNDERLYINGS]
    prices_wad: DynArray[uint256, MAX_UNDERLYINGS]
    timestamp: uint256
    deadline: uint256

struct SettlementPrice:
    instrument_id: uint256
    price_wad: uint256
    timestamp: uint256
    deadline: uint256

struct IndexPrice:
    price_wad: uint256
    updated_at: uint256

struct EpochRoot:
    engine: address
    epoch: uint256
    timestamp: uint256
    deadline: uint256
    params_hash: bytes32
    # positional tree of the market leaves over instrument ids 1..market_count, which must
    # be the registry's instrument count when the root is posted (docs/oracle.md)
    market_root: bytes32
    market_count: uint256
    accounts_root: bytes32
    account_count: uint256

struct EpochData:
    # What the signers commit to beside the root so anyone can rebuild every leaf of it:
    # the block whose state the account leaves were built on (docs/oracle.md).
    engine: address
    epoch: uint256
    state_block: uint256
    accounts_root: bytes32
    market_root: bytes32


struct EpochRecord:
    # What a posted epoch root committed to (`epoch_record_hash`): a fraud proof against a
    # past epoch passes it back, with the signers whose bonds answer for it.
    epoch: uint256
    accounts_root: bytes32
    market_root: bytes32
    market_count: uint256
    params_hash: bytes32
    signed_at: uint256
    posted_at: uint256
    signers: DynArray[address, MAX_SIGNATURES]

# Stands in for the live roots of an engine whose current epoch was voided by a fraud proof,
# and for the record of a voided epoch.
VOID_ROOT: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001


interface ISignerBond:
    def is_bonded(signer: address) -> bool: view


#### IMMUTABLES ####

# Instrument registry whose ids the market data refers to.
registry: public(immutable(IInstrumentRegistry))


#### STORAGE ####

# Signatures needed (1 <= threshold <= signer_count at all times).
threshold: public(uint256)
# Current signer set, as a flag (cheap lookup) and a list (for keepers).
is_signer: public(HashMap[address, bool])
_signers: DynArray[address, MAX_SIGNERS]
# Risk parameter set that epoch roots and market data must carry.
params_hash: public(bytes32)
# Largest index move per update, in bps of the previous price; also bounds marks
# (see _check_mark_move).
max_index_move_bps: public(uint256)
# instrument id -> packed mark / funding / updated_at (see MASK_* above).
_market: HashMap[uint256, uint256]
# instrument id -> (im_long << 128 | mm_long), (im_short << 128 | mm_short): one side is one
# slot, since settling a leg needs only the rates of the opposite side (`side_rates`).
_long_rates: HashMap[uint256, uint256]
_short_rates: HashMap[uint256, uint256]
# underlying -> latest index price.
_index: HashMap[bytes32, IndexPrice]
# instrument id -> final expiry settlement price (0 while unset).
settlement_price: public(HashMap[uint256, uint256])
# Bumped by every params-hash change: a root signed under an older set stops verifying.
_params_version: uint256
# engine -> current epoch's accounts root and market root.
_accounts_root: HashMap[address, bytes32]
_market_root: HashMap[address, bytes32]
# engine -> epoch (bits 0-63) | signed timestamp (64-127) | account count (128-167) |
# market count (168-207) | params version it was posted under (208-255).
_root_meta: HashMap[address, uint256]
# ScenarioVerifier of the current params set: engines re-price a book with it before a
# liquidation. Never unset once registered (engines apply the witness rule from then on); a
# params change leaves the old file's verifier, which refuses every witness (its params hash
# differs) until the owner registers the new file's: liquidations fail closed meanwhile.
verifier: public(address)

# engine -> signed timestamp of a root -> keccak256(abi_encode(EpochRecord)), or VOID_ROOT
# (bytes32 1) once a fraud proof voided it (what the engine checks its margin basis against): kept for every epoch so a proof can reach a root after newer ones
# were posted. Keyed by the signed timestamp (strictly increasing per engine, so it names one
# epoch) because that is what the engine keeps as an applied leaf's margin basis.
epoch_record_hash: public(HashMap[address, HashMap[uint256, bytes32]])
# SignerBond whose `is_bonded` decides which signatures count (empty: every signer counts).
# (not public: EIP-170 room; FraudContractsSet logs both)
signer_bond: address
# The only caller of `void_epoch` (the FraudProofs contract).
fraud_proofs: address


#### EVENTS ####

event SignerAdded:
    signer: indexed(address)

event SignerRemoved:
    signer: indexed(address)

event ThresholdSet:
    threshold: uint256

event ParamsHashSet:
    params_hash: bytes32

event VerifierSet:
    verifier: indexed(address)

event MaxIndexMoveSet:
    max_index_move_bps: uint256

# `signed_at` is the message's signed timestamp (not named `timestamp`: ape's ContractLog
# has a `timestamp` attribute of its own, the block time, which would shadow it).
event MarketDataPosted:
    digest: indexed(bytes32)
    poster: indexed(address)
    count: uint256
    signed_at: uint256

event IndexPriceUpdated:
    underlying: indexed(bytes32)
    price_wad: uint256
    signed_at: uint256

event SettlementPriceSet:
    instrument_id: indexed(uint256)
    price_wad: uint256
    signed_at: uint256

event FraudContractsSet:
    signer_bond: indexed(address)
    fraud_proofs: indexed(address)

event EpochVoided:
    engine: indexed(address)
    signed_at: indexed(uint256)

event RootPosted:
    engine: indexed(address)
    epoch: indexed(uint256)
    poster: indexed(address)
    signed_at: uint256
    accounts_root: bytes32
    market_root: bytes32
    market_count: uint256
    account_count: uint256

# Data availability of an epoch: its state block and every market leaf (the account leaves
# are rebuilt from the engine's state at `state_block` and these). Logged, never stored.
event EpochDataPublished:
    engine: indexed(address)
    epoch: indexed(uint256)
    state_block: uint256
    accounts_root: bytes32
    market_root: bytes32
    market_leaves: DynArray[market_leaf.MarketLeaf, MAX_BATCH]


#### CONSTRUCTOR ####

@deploy
def __init__(
    registry_: IInstrumentRegistry,
    signers_: DynArray[address, MAX_SIGNERS],
    threshold_: uint256,
    params_hash_: bytes32,
    max_index_move_bps_: uint256,
):
    """
    @notice Deploy with a complete signer set so the oracle is never in a state where
            zero signatures would pass.
    @param registry_ The InstrumentRegistry.
    @param signers_ Initial signers (distinct, non-zero).
    @param threshold_ Signatures required, 1..len(signers_).
    @param params_hash_ Initial risk parameter set hash (non-zero).
    @param max_index_move_bps_ Largest index move per update, 1..10000 bps.
    """
    ownable.__init__()
    ownable_2step.__init__()
    eip712_domain_separator.__init__("netmargin RiskOracle", "1")
    assert registry_.address != empty(address), "oracle: zero registry"
    registry = registry_
    for s: address in signers_:
        self._add_signer(s)
    self._set_threshold(threshold_)
    self._set_params_hash(params_hash_)
    self._set_max_index_move(max_index_move_bps_)


#### EXTERNAL: OWNER ####

@external
def add_signer(signer: address):
    """
    @notice Add a signer (effective at once).
    """
    ownable._check_owner()
    self._add_signer(signer)


@external
def remove_signer(signer: address):
    """
    @notice Remove a signer (effective at once: its signatures stop counting, including
            on already signed, unposted messages). Reverts if fewer than `threshold`
            signers would remain; lower the threshold first.
    """
    ownable._check_owner()
    assert self.is_signer[signer], "oracle: not a signer"
    assert len(self._signers) > self.threshold, "oracle: would leave fewer signers than threshold"
    self.is_signer[signer] = False
    kept: DynArray[address, MAX_SIGNERS] = []
    for s: address in self._signers:
        if s != signer:
            kept.append(s)
    self._signers = kept
    log SignerRemoved(signer=signer)


@external
def set_threshold(threshold_: uint256):
    """
    @notice Set how many signatures every signed message needs.
    """
    ownable._check_owner()
    self._set_threshold(threshold_)


@external
def set_params_hash(params_hash_: bytes32):
    """
    @notice Switch the risk parameter set; epoch roots and market data signed for the
            previous set stop being accepted at once, and the leaves of a root stored under
            it stop verifying.
    """
    ownable._check_owner()
    self._set_params_hash(params_hash_)


@external
def set_verifier(verifier_: address):
    """
    @notice Register the ScenarioVerifier of the current parameter set (it prices with the
            file `params_hash` names: anyone checks its `generator_hash` against the file).
            From the first registration on, engines liquidate only books it re-prices below
            their margin; there is no way back to no verifier.
    """
    ownable._check_owner()
    assert staticcall IScenarioVerifier(verifier_).params_hash() == self.params_hash, "oracle: verifier for another params set"
    assert staticcall IScenarioVerifier(verifier_).oracle() == self, "oracle: verifier reads another oracle"
    self.verifier = verifier_
    log VerifierSet(verifier=verifier_)


@external
def set_fraud_contracts(signer_bond_: address, fraud_proofs_: address):
    """
    @notice Name the SignerBond (from then on only signers it calls bonded count toward the
            threshold; empty: every signer counts, as before bonds) and the FraudProofs
            contract (the only caller of `void_epoch`).
    """
    ownable._check_owner()
    self.signer_bond = signer_bond_
    self.fraud_proofs = fraud_proofs_
    log FraudContractsSet(signer_bond=signer_bond_, fraud_proofs=fraud_proofs_)


@external
def set_max_index_move_bps(max_index_move_bps_: uint256):
    """
    @notice Set the largest index move per update, in bps of the previous price.
    """
    ownable._check_owner()
    self._set_max_index_move(max_index_move_bps_)


#### EXTERNAL: SIGNED DATA (anyone may post) ####

@external
def post_market_data(data: MarketData, signatures: DynArray[Bytes[65], MAX_SIGNATURES]):
    """
    @notice Store signed marks, funding indices and per-unit margin rates for a batch of
            instruments. Each instrument's `updated_at` must strictly increase, so a batch
            cannot be replayed and an older batch cannot overwrite a newer one, and its mark
            may move at most max(max_index_move_bps of the previous mark, the previous
            per-unit maintenance rate) per update (the first mark is unbounded).
    @param data The signed batch (all arrays the same length, 1..MAX_BATCH).
    @param signatures Threshold signatures over `market_data_digest(data)`.
    """
    n: uint256 = len(data.ids)
    assert n > 0, "oracle: empty batch"
    assert (
        len(data.marks_wad) == n
        and len(data.funding_indices_wad) == n
        and len(data.im_long_wad) == n
        and len(data.im_short_wad) == n
        and len(data.mm_long_wad) == n
        and len(data.mm_short_wad) == n
    ), "oracle: array length mismatch"
    self._check_envelope(data.params_hash, data.timestamp, data.deadline)
    digest: bytes32 = self._market_data_digest(data)
    self._check_signatures(digest, signatures)

    count: uint256 = staticcall registry.instrument_count()
    max_move_bps: uint256 = self.max_index_move_bps
    for i: uint256 in range(n, bound=MAX_BATCH):
        instrument_id: uint256 = data.ids[i]
        assert instrument_id >= 1 and instrument_id <= count, "oracle: unknown instrument"
        previous: uint256 = self._market[instrument_id]
        # Strictly newer per instrument; this also rejects an id repeated in one batch.
        assert data.timestamp > previous & MASK_64, "oracle: market data not newer than stored"
        if previous & MASK_64 != 0:
            self._check_mark_move(self._unbias96(previous >> 160), data.marks_wad[i], instrument_id, max_move_bps)
        im_long: uint256 = data.im_long_wad[i]
        im_short: uint256 = data.im_short_wad[i]
        mm_long: uint256 = data.mm_long_wad[i]
        mm_short: uint256 = data.mm_short_wad[i]
        assert im_long <= MAX_RATE_WAD and im_short <= MAX_RATE_WAD, "oracle: rate out of range"
        assert im_long >= mm_long and im_short >= mm_short, "oracle: initial rate below maintenance rate"
        # timestamp <= block.timestamp < 2**64 (checked in _check_envelope), so it fits 64 bits.
        self._market[instrument_id] = (
            (self._bias96(data.marks_wad[i]) << 160)
            | (self._bias96(data.funding_indices_wad[i]) << 64)
            | data.timestamp
        )
        self._long_rates[instrument_id] = (im_long << 128) | mm_long
        self._short_rates[instrument_id] = (im_short << 128) | mm_short
    log MarketDataPosted(digest=digest, poster=msg.sender, count=n, signed_at=data.timestamp)


@external
def post_index_prices(data: IndexPrices, signatures: DynArray[Bytes[65], MAX_SIGNATURES]):
    """
    @notice Store signed index prices. Per underlying, the timestamp must strictly
            increase and the price may move at most `max_index_move_bps` from the
            previous one (the first price is unbounded).
    @param data The signed update (arrays of equal length, 1..MAX_UNDERLYINGS).
    @param signatures Threshold signatures over `index_prices_digest(data)`.
    """
    n: uint256 = len(data.underlyings)
    assert n > 0, "oracle: empty batch"
    assert len(data.prices_wad) == n, "oracle: array length mismatch"
    self._check_time(data.timestamp, data.deadline)
    self._check_signatures(self._index_prices_digest(data), signatures)

    max_move_bps: uint256 = self.max_index_move_bps
    for i: uint256 in range(n, bound=MAX_UNDERLYINGS):
        underlying: bytes32 = data.underlyings[i]
        price: uint256 = data.prices_wad[i]
        assert underlying != empty(bytes32), "oracle: empty underlying"
        assert price > 0, "oracle: index price must be > 0"
        previous: IndexPrice = self._index[underlying]
        assert data.timestamp > previous.updated_at, "oracle: index price not newer than stored"
        if previous.price_wad != 0:
            move: uint256 = max(price, previous.price_wad) - min(price, previous.price_wad)
            assert move * BPS <= previous.price_wad * max_move_bps, "oracle: index move above limit"
        self._index[underlying] = IndexPrice(price_wad=price, updated_at=data.timestamp)
        log IndexPriceUpdated(underlying=underlying, price_wad=price, signed_at=data.timestamp)


@external
def post_settlement_price(data: SettlementPrice, signatures: DynArray[Bytes[65], MAX_SIGNATURES]):
    """
    @notice Store the signed expiry settlement price of a future or option. Accepted
            only once the instrument has expired, observed at or after expiry, and
            final once set.
    @param data The signed settlement price.
    @param signatures Threshold signatures over `settlement_price_digest(data)`.
    """
    self._check_time(data.timestamp, data.deadline)
    assert data.price_wad > 0, "oracle: settlement price must be > 0"
    assert self.settlement_price[data.instrument_id] == 0, "oracle: settlement price already final"
    item: IInstrumentRegistry.Instrument = staticcall registry.instrument(data.instrument_id)
    assert item.kind != KIND_PERPETUAL, "oracle: perpetual has no settlement"
    assert block.timestamp >= item.expiry, "oracle: instrument not expired"
    assert data.timestamp >= item.expiry, "oracle: price observed before expiry"
    self._check_signatures(self._settlement_price_digest(data), signatures)
    self.settlement_price[data.instrument_id] = data.price_wad
    log SettlementPriceSet(instrument_id=data.instrument_id, price_wad=data.price_wad, signed_at=data.timestamp)


@external
def post_root(root: EpochRoot, signatures: DynArray[Bytes[65], MAX_SIGNATURES]):
    """
    @notice Store an engine's signed epoch root: one transaction re-margins every account
            in it, whatever their number. Epoch and timestamp must strictly increase per
            engine, so a root can never be replayed or replaced by an older one.
    @param root The signed root (engine, epoch, timestamp, deadline, params hash, market
           root, accounts root, account count).
    @param signatures Threshold signatures over `epoch_root_digest(root)`.
    """
    assert root.engine != empty(address), "oracle: zero engine"
    assert root.accounts_root != empty(bytes32), "oracle: empty accounts root"
    self._check_envelope(root.params_hash, root.timestamp, root.deadline)
    meta: uint256 = self._root_meta[root.engine]
    assert root.epoch > meta & MASK_64, "oracle: epoch not newer than stored"
    assert root.timestamp > (meta >> 64) & MASK_64, "oracle: root not newer than stored"
    assert root.epoch <= MASK_64 and root.account_count <= MASK_40, "oracle: epoch or count out of range"
    # every instrument listed now has a slot in the market tree: one left out is provable
    # (FraudProofs `challenge_market`), one listed after the signing makes the root unpostable
    assert root.market_count == staticcall registry.instrument_count(), "oracle: market count is not the registry's instrument count"
    digest: bytes32 = self._epoch_root_digest(root)
    signers_: DynArray[address, MAX_SIGNATURES] = self._check_signatures(digest, signatures)
    self.epoch_record_hash[root.engine][root.timestamp] = keccak256(abi_encode(EpochRecord(
        epoch=root.epoch, accounts_root=root.accounts_root, market_root=root.market_root,
        market_count=root.market_count, params_hash=root.params_hash,
        signed_at=root.timestamp, posted_at=block.timestamp, signers=signers_)))
    self._accounts_root[root.engine] = root.accounts_root
    self._market_root[root.engine] = root.market_root
    # timestamp <= block.timestamp < 2**64 (_check_envelope); the registry's count < 2**40
    # (one listing per transaction); params version < 2**48 (bumped by owner calls)
    self._root_meta[root.engine] = (
        root.epoch | (root.timestamp << 64) | (root.account_count << 128) | (root.market_count << 168)
        | (self._params_version << 208)
    )
    log RootPosted(
        engine=root.engine,
        epoch=root.epoch,
        poster=msg.sender,
        signed_at=root.timestamp,
        accounts_root=root.accounts_root,
        market_root=root.market_root,
        market_count=root.market_count,
        account_count=root.account_count,
    )


@external
def publish_epoch_data(
    data: EpochData, market_leaves: DynArray[market_leaf.MarketLeaf, MAX_BATCH], signatures: DynArray[Bytes[65], MAX_SIGNATURES]
):
    """
    @notice Publish the public inputs of an engine's current epoch: the state block its
            account leaves were built on (signed) and every market leaf (checked against the
            stored market root). With these, an RPC node and the params file, anyone rebuilds
            every leaf and both roots. Gas grows with the instruments, not the accounts.
    @param data The signed (engine, epoch, state block, accounts root, market root).
    @param market_leaves Every market leaf of the epoch, in ascending instrument id order.
    @param signatures Threshold signatures over `epoch_data_digest(data)`.
    """
    meta: uint256 = self._root_meta[data.engine]
    assert meta != 0, "oracle: no root for engine"
    assert data.epoch == meta & MASK_64, "oracle: epoch is not the engine's current epoch"
    assert data.accounts_root == self._accounts_root[data.engine], "oracle: accounts root mismatch"
    assert data.market_root == self._market_root[data.engine], "oracle: market root mismatch"
    assert data.state_block < block.number, "oracle: state block not in the past"
    assert self._market_tree_root(data.engine, data.epoch, market_leaves, (meta >> 168) & MASK_40) == data.market_root, "oracle: market leaves do not give the market root"
    self._check_signatures(self._epoch_data_digest(data), signatures)
    log EpochDataPublished(
        engine=data.engine,
        epoch=data.epoch,
        state_block=data.state_block,
        accounts_root=data.accounts_root,
        market_root=data.market_root,
        market_leaves=market_leaves,
    )


@external
def void_epoch(engine: address, signed_at: uint256):
    """
    @notice Void the engine's root signed at `signed_at`, which a fraud proof has proven
            false (only the FraudProofs contract, which checked the epoch's record against
            `epoch_record_hash`). Leaves of a voided current epoch stop verifying at once; the
            engine is told (`note_void`) and from then on refuses new risk on margins applied
            from a voided root.
    """
    assert msg.sender == self.fraud_proofs and msg.sender != empty(address), "oracle: only the fraud proofs contract voids"
    h: bytes32 = self.epoch_record_hash[engine][signed_at]
    assert h != VOID_ROOT, "oracle: epoch already void"
    assert h != empty(bytes32), "oracle: no such epoch"
    self.epoch_record_hash[engine][signed_at] = VOID_ROOT
    if (self._root_meta[engine] >> 64) & MASK_64 == signed_at:
        self._accounts_root[engine] = VOID_ROOT
        self._market_root[engine] = VOID_ROOT
    # an address that is no engine ignores the call or fails it; neither stops the void
    noted: bool = raw_call(engine, method_id("note_void()"), revert_on_failure=False)
    log EpochVoided(engine=engine, signed_at=signed_at)


#### VIEWS ####

@view
@external
@reentrant
def verify_account_leaf(leaf: IRiskOracle.AccountLeaf, proof: DynArray[bytes32, MAX_PROOF]) -> uint256:
    """
    @notice Reverts "oracle: <reason>" unless `leaf` is in the accounts root the calling
            engine holds now (signed under the current params set).
    @dev The leaf hash covers msg.sender and its current epoch, so a leaf of another engine
         or of another epoch never verifies. Hashed twice: no inner node passes as a leaf.
    @return The root's signed timestamp.
    """
    # IM >= MM keeps "equity >= IM after a withdrawal" from leaving an account liquidatable
    assert leaf.initial_margin_wad >= leaf.maintenance_margin_wad, "oracle: initial margin below maintenance margin"
    meta: uint256 = self._root_meta[msg.sender]
    self._check_root_meta(meta)
    accounts_root: bytes32 = self._accounts_root[msg.sender]
    assert accounts_root != VOID_ROOT, "oracle: epoch voided by a fraud proof"
    node: bytes32 = keccak256(keccak256(abi_encode(msg.sender, meta & MASK_64, leaf)))
    assert merkle._verify(proof, accounts_root, node), "oracle: invalid proof"
    return (meta >> 64) & MASK_64


@view
@external
@reentrant
def isolated_margins(instrument_ids: DynArray[uint256, MAX_IDS], sizes_wad: DynArray[int256, MAX_IDS]) -> (uint256, uint256):
    """
    @notice The isolated bound of a book: sum over positions of |size| x the standalone
            per-unit rate of its side, rounded up. By subadditivity and homogeneity of the
            margin it is never below the portfolio figure, so it margins a book safely with
            no account leaf at all (the escape hatch).
    @return (IM, MM) WAD. Reverts for an id never priced.
    """
    im: uint256 = 0
    mm: uint256 = 0
    for i: uint256 in range(len(instrument_ids), bound=MAX_IDS):
        instrument_id: uint256 = instrument_ids[i]
        size: int256 = sizes_wad[i]
        assert self._market[instrument_id] & MASK_64 != 0, "oracle: no market data for instrument"
        word: uint256 = self._short_rates[instrument_id]
        if size > 0:
            word = self._long_rates[instrument_id]
        q: uint256 = convert(abs(size), uint256)
        im += (q * (word >> 128) + 10**18 - 1) // 10**18
        mm += (q * (word & MASK_128) + 10**18 - 1) // 10**18
    return im, mm


@view
@external
@reentrant
def root_timestamp(engine: address) -> uint256:
    """
    @return The signed timestamp of the engine's current root; 0 if none, if it was
            signed under a params set that is no longer current, or if it was voided.
    """
    meta: uint256 = self._root_meta[engine]
    if meta == 0 or meta >> 208 != self._params_version or self._accounts_root[engine] == VOID_ROOT:
        return 0
    return (meta >> 64) & MASK_64


@view
@external
@reentrant
def epoch_root(engine: address) -> (uint256, uint256, uint256, bytes32, bytes32):
    """
    @return (epoch, signed timestamp, account count, accounts root, market root) of the
            engine's current root; zeros if none.
    """
    meta: uint256 = self._root_meta[engine]
    return meta & MASK_64, (meta >> 64) & MASK_64, (meta >> 128) & MASK_40, self._accounts_root[engine], self._market_root[engine]


@view
@external
@reentrant
def market_tree(engine: address) -> (uint256, uint256, uint256, bytes32):
    """
    @return (epoch, signed timestamp, instrument count, market root) of the engine's current
            root, what a market multiproof is checked against; the timestamp is 0 as in
            `root_timestamp` (no root, an older params set, voided).
    """
    meta: uint256 = self._root_meta[engine]
    signed_at: uint256 = (meta >> 64) & MASK_64
    market_root: bytes32 = self._market_root[engine]
    if meta >> 208 != self._params_version or market_root == VOID_ROOT:
        signed_at = 0
    return meta & MASK_64, signed_at, (meta >> 168) & MASK_40, market_root


@view
@external
@reentrant
def marks(instrument_ids: DynArray[uint256, MAX_IDS]) -> (DynArray[int256, MAX_IDS], DynArray[int256, MAX_IDS], uint256):
    """
    @return (mark_wad per id, cumulative funding index per id, oldest updated_at among
            the ids). Reverts for an id never priced.
    """
    marks_out: DynArray[int256, MAX_IDS] = []
    funding_out: DynArray[int256, MAX_IDS] = []
    oldest: uint256 = max_value(uint256)
    for instrument_id: uint256 in instrument_ids:
        word: uint256 = self._market[instrument_id]
        updated_at: uint256 = word & MASK_64
        assert updated_at != 0, "oracle: no market data for instrument"
        # _unbias96 inlined: this loop runs for every position of every margin check
        marks_out.append(unsafe_sub(convert(word >> 160, int256), SIGNED_96_BIAS))
        funding_out.append(unsafe_sub(convert((word >> 64) & MASK_96, int256), SIGNED_96_BIAS))
        if updated_at < oldest:
            oldest = updated_at
    if len(instrument_ids) == 0:
        oldest = 0
    return marks_out, funding_out, oldest


@view
@external
@reentrant
def market_words(instrument_ids: DynArray[uint256, MAX_IDS]) -> (DynArray[uint256, MAX_IDS], uint256):
    """
    @return (the packed market word per id: mark + 2**95 (bits 160-255) | funding index
            + 2**95 (64-159) | updated_at (0-63), oldest updated_at among the ids): `marks`
            undecoded, one array to encode (what the engine reads: it decodes the words).
            Reverts for an id never priced.
    """
    out: DynArray[uint256, MAX_IDS] = []
    oldest: uint256 = max_value(uint256)
    for instrument_id: uint256 in instrument_ids:
        word: uint256 = self._market[instrument_id]
        updated_at: uint256 = word & MASK_64
        assert updated_at != 0, "oracle: no market data for instrument"
        out.append(word)
        if updated_at < oldest:
            oldest = updated_at
    if len(instrument_ids) == 0:
        oldest = 0
    return out, oldest


@view
@external
@reentrant
def rates(instrument_id: uint256) -> (IRiskOracle.Rates, uint256):
    """
    @return (per-unit margin rates, updated_at). Reverts for an id never priced.
    """
    updated_at: uint256 = self._market[instrument_id] & MASK_64
    assert updated_at != 0, "oracle: no market data for instrument"
    long_rates: uint256 = self._long_rates[instrument_id]
    short_rates: uint256 = self._short_rates[instrument_id]
    return IRiskOracle.Rates(
        im_long_wad=long_rates >> 128,
        im_short_wad=short_rates >> 128,
        mm_long_wad=long_rates & MASK_128,
        mm_short_wad=short_rates & MASK_128,
    ), updated_at


@view
@external
@reentrant
def side_rates(instrument_id: uint256, is_long: bool) -> (uint256, uint256):
    """
    @return (IM, MM) per unit of a long (`is_long`) or short position: one storage read.
            (0, 0) for an id never priced: callers price the instrument first (marks()).
    """
    word: uint256 = self._short_rates[instrument_id]
    if is_long:
        word = self._long_rates[instrument_id]
    return word >> 128, word & MASK_128


@view
@external
@reentrant
def market_updated_at(instrument_id: uint256) -> uint256:
    """
    @return When the instrument's market data was signed (0 if never).
    """
    return self._market[instrument_id] & MASK_64


@view
@external
@reentrant
def index_price(underlying: bytes32) -> (uint256, uint256):
    """
    @return (index price WAD, updated_at); (0, 0) if never posted.
    """
    p: IndexPrice = self._index[underlying]
    return p.price_wad, p.updated_at


@view
@external
@reentrant
def signers() -> DynArray[address, MAX_SIGNERS]:
    """
    @return The current signer set, in insertion order.
    """
    return self._signers


@view
@external
@reentrant
def signer_count() -> uint256:
    return len(self._signers)


@view
@external
@reentrant
def domain_separator() -> bytes32:
    """
    @return The EIP-712 domain separator for this chain and address.
    """
    return eip712_domain_separator._domain_separator_v4()


@view
@external
@reentrant
def epoch_root_digest(root: EpochRoot) -> bytes32:
    return self._epoch_root_digest(root)


@view
@external
@reentrant
def epoch_data_digest(data: EpochData) -> bytes32:
    return self._epoch_data_digest(data)


@view
@external
@reentrant
def settlement_price_digest(data: SettlementPrice) -> bytes32:
    return self._settlement_price_digest(data)


#### INTERNAL: SIGNATURES ####

@view
@internal
def _check_signatures(digest: bytes32, signatures: DynArray[Bytes[65], MAX_SIGNATURES]) -> DynArray[address, MAX_SIGNATURES]:
    """
    @dev At least `threshold` signatures of bonded signers (SignerBond `is_bonded`, when a
         bond contract is set: a signer below its bond is ignored), recovered signers
         strictly ascending (so no signer counts twice) and every one a current signer.
    @return The signers that counted (those whose bonds answer for the message).
    """
    threshold_: uint256 = self.threshold
    assert len(signatures) >= threshold_, "oracle: below threshold"
    bond: address = self.signer_bond
    counted: DynArray[address, MAX_SIGNATURES] = []
    last: uint256 = 0
    for sig: Bytes[65] in signatures:
        signer: address = self._recover(digest, sig)
        as_uint: uint256 = convert(signer, uint256)
        if as_uint <= last:
            assert as_uint != last, "oracle: duplicate signer"
            raise "oracle: signers not in ascending order"
        assert self.is_signer[signer], "oracle: not a signer"
        last = as_uint
        if bond == empty(address) or staticcall ISignerBond(bond).is_bonded(signer):
            counted.append(signer)
    assert len(counted) >= threshold_, "oracle: below threshold of bonded signers"
    return counted


@pure
@internal
def _recover(digest: bytes32, sig: Bytes[65]) -> address:
    """
    @dev Strict 65-byte (r, s, v) recovery with oracle-prefixed reasons. snekmate's
         `_recover_sig` also takes 64-byte EIP-2098 signatures and reverts with
         "ecdsa: ..." reasons; here one signature has exactly one accepted encoding.
    """
    assert len(sig) == 65, "oracle: signature must be 65 bytes"
    r: uint256 = extract32(sig, 0, output_type=uint256)
    s: uint256 = extract32(sig, 32, output_type=uint256)
    v: uint256 = convert(slice(sig, 64, 1), uint256)
    assert v == 27 or v == 28, "oracle: signature v must be 27 or 28"
    assert s <= ecdsa._MALLEABILITY_THRESHOLD, "oracle: high-s signature"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "oracle: invalid signature"
    return signer


#### INTERNAL: CHECKS ####


@view
@internal
def _check_time(timestamp: uint256, deadline: uint256):
    assert timestamp <= block.timestamp, "oracle: timestamp in the future"
    assert deadline >= block.timestamp, "oracle: deadline passed"


@view
@internal
def _check_root_meta(meta: uint256):
    assert meta != 0, "oracle: no root for engine"
    assert meta >> 208 == self._params_version, "oracle: root signed under old params"


@view
@internal
def _check_envelope(params_hash_: bytes32, timestamp: uint256, deadline: uint256):
    assert params_hash_ == self.params_hash, "oracle: params hash mismatch"
    self._check_time(timestamp, deadline)


@pure
@internal
def _market_tree_root(engine: address, epoch: uint256, leaves: DynArray[market_leaf.MarketLeaf, MAX_BATCH],
                      count: uint256) -> bytes32:
    """
    @dev The positional market root (modules/multiproof.vy): slot i holds instrument id i's
         leaf hash, every other slot of 0..2**depth - 1 the empty node (zero), depth the bit
         length of `count`; a parent of two empty nodes is empty. `leaves` in strictly
         ascending id order within 1..count, so each leaf sits at its own id's slot and none
         is given twice; zero if there are none.
    """
    slot: DynArray[uint256, MAX_BATCH] = []
    layer: DynArray[bytes32, MAX_BATCH] = []
    last: uint256 = 0
    for leaf: market_leaf.MarketLeaf in leaves:
        # the id is the packed head's bits 0-63 (modules/market_leaf.vy)
        iid: uint256 = leaf.head & MASK_64
        assert iid > last, "oracle: market leaves not in ascending id order"
        last = iid
        slot.append(last)
        layer.append(keccak256(keccak256(abi_encode(engine, epoch, leaf))))
    assert last <= count, "oracle: market leaf id beyond the root's instrument count"
    if len(layer) == 0:
        return empty(bytes32)
    # one level per bit of count (< 2**40); the nodes of a level stay in ascending slot order
    c: uint256 = count
    for _: uint256 in range(40):
        if c == 0:
            break
        c >>= 1
        n: uint256 = len(layer)
        up: DynArray[bytes32, MAX_BATCH] = []
        up_slot: DynArray[uint256, MAX_BATCH] = []
        j: uint256 = 0
        for _r: uint256 in range(MAX_BATCH):
            if j >= n:
                break
            s: uint256 = slot[j]
            left: bytes32 = layer[j]
            right: bytes32 = empty(bytes32)
            if s & 1 == 1:
                right = left
                left = empty(bytes32)
            elif j + 1 < n and slot[j + 1] == s + 1:
                j += 1
                right = layer[j]
            j += 1
            # a present leaf's path is never two empty children
            up.append(keccak256(abi_encode(left, right)))
            up_slot.append(s >> 1)
        layer = up
        slot = up_slot
    return layer[0]


#### INTERNAL: EIP-712 ####

@view
@internal
def _epoch_root_digest(root: EpochRoot) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(
                EPOCH_ROOT_TYPEHASH,
                root.engine,
                root.epoch,
                root.timestamp,
                root.deadline,
                root.params_hash,
                root.market_root,
                root.market_count,
                root.accounts_root,
                root.account_count,
            )
        )
    )


@view
@internal
def _epoch_data_digest(data: EpochData) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(
                EPOCH_DATA_TYPEHASH, data.engine, data.epoch, data.state_block, data.accounts_root, data.market_root
            )
        )
    )


@view
@internal
def _market_data_digest(data: MarketData) -> bytes32:
    # EIP-712 encodes an array of atomic values as keccak256 of the 32-byte words
    # concatenated: the ABI encoding of the array without its length word.
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(
                MARKET_DATA_TYPEHASH,
                self._hash_uint_array(data.ids),
                self._hash_int_array(data.marks_wad),
                self._hash_int_array(data.funding_indices_wad),
                self._hash_uint_array(data.im_long_wad),
                self._hash_uint_array(data.im_short_wad),
                self._hash_uint_array(data.mm_long_wad),
                self._hash_uint_array(data.mm_short_wad),
                data.params_hash,
                data.timestamp,
                data.deadline,
            )
        )
    )


@view
@internal
def _index_prices_digest(data: IndexPrices) -> bytes32:
    words: Bytes[32 + 32 * MAX_UNDERLYINGS] = abi_encode(data.underlyings, ensure_tuple=False)
    underlyings_hash: bytes32 = keccak256(slice(words, 32, 32 * len(data.underlyings)))
    prices: Bytes[32 + 32 * MAX_UNDERLYINGS] = abi_encode(data.prices_wad, ensure_tuple=False)
    prices_hash: bytes32 = keccak256(slice(prices, 32, 32 * len(data.prices_wad)))
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(INDEX_PRICES_TYPEHASH, underlyings_hash, prices_hash, data.timestamp, data.deadline))
    )


@view
@internal
def _settlement_price_digest(data: SettlementPrice) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(
        keccak256(
            abi_encode(SETTLEMENT_PRICE_TYPEHASH, data.instrument_id, data.price_wad, data.timestamp, data.deadline)
        )
    )


@pure
@internal
def _hash_uint_array(xs: DynArray[uint256, MAX_BATCH]) -> bytes32:
    words: Bytes[32 + 32 * MAX_BATCH] = abi_encode(xs, ensure_tuple=False)
    return keccak256(slice(words, 32, 32 * len(xs)))


@pure
@internal
def _hash_int_array(xs: DynArray[int256, MAX_BATCH]) -> bytes32:
    words: Bytes[32 + 32 * MAX_BATCH] = abi_encode(xs, ensure_tuple=False)
    return keccak256(slice(words, 32, 32 * len(xs)))


#### INTERNAL: STORAGE HELPERS ####

@view
@internal
def _check_mark_move(previous: int256, mark: int256, instrument_id: uint256, max_move_bps: uint256):
    """
    @dev A mark may move per update by at most the larger of `max_move_bps` of its previous
         value and its previous per-unit maintenance rate (the model's own worst one-unit
         loss, which is what lets a cheap option reprice by more than a few % of itself).
         Without this a single signed batch after a pump of a thin underlying would let a
         long withdraw many times its notional while the index stays bounded.
    """
    # both slots are rewritten by the caller right after, so reading them costs no cold access
    mm_rate: uint256 = max(self._long_rates[instrument_id] & MASK_128, self._short_rates[instrument_id] & MASK_128)
    band_wad: uint256 = max(convert(abs(previous), uint256) * max_move_bps // BPS, mm_rate)
    # checked arithmetic: a mark far outside 96 bits reverts here or in _bias96 later
    assert convert(abs(mark - previous), uint256) <= band_wad, "oracle: mark move above limit"


@pure
@internal
def _bias96(x: int256) -> uint256:
    assert x >= -SIGNED_96_BIAS and x < SIGNED_96_BIAS, "oracle: mark or funding out of range"
    # x + 2**95 is in [0, 2**96) after the range check above.
    return convert(unsafe_add(x, SIGNED_96_BIAS), uint256)


@pure
@internal
def _unbias96(field: uint256) -> int256:
    # field < 2**96, so the conversion and the subtraction cannot overflow.
    return unsafe_sub(convert(field, int256), SIGNED_96_BIAS)


@internal
def _add_signer(signer: address):
    assert signer != empty(address), "oracle: zero signer"
    assert not self.is_signer[signer], "oracle: already a signer"
    assert len(self._signers) < MAX_SIGNERS, "oracle: too many signers"
    self.is_signer[signer] = True
    self._signers.append(signer)
    log SignerAdded(signer=signer)


@internal
def _set_threshold(threshold_: uint256):
    assert threshold_ >= 1 and threshold_ <= len(self._signers), "oracle: threshold out of range"
    self.threshold = threshold_
    log ThresholdSet(threshold=threshold_)


@internal
def _set_params_hash(params_hash_: bytes32):
    assert params_hash_ != empty(bytes32), "oracle: empty params hash"
    self.params_hash = params_hash_
    # a counter, far below 2**64
    self._params_version += 1
    log ParamsHashSet(params_hash=params_hash_)


@internal
def _set_max_index_move(max_index_move_bps_: uint256):
    assert max_index_move_bps_ >= 1 and max_index_move_bps_ <= BPS, "oracle: max move out of range"
    self.max_index_move_bps = max_index_move_bps_
    log MaxIndexMoveSet(max_index_move_bps=max_index_move_bps_)

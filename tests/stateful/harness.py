"""The real netmargin contracts on titanoboa's in-process EVM, for the state machines.

`deploy()` compiles and deploys MockERC20, InstrumentRegistry, RiskOracle, ScenarioVerifier
(registered with the oracle), MarginEngineExtension, MarginEngineGovernance and MarginEngine from contracts/ once per
session; every hypothesis
example then runs inside `boa.env.anchor()` and is rolled back (storage and block time).
Orders, market data, epoch roots and settlement prices are signed with real eth-account
keys through offchain/chain, against the domains the contracts report (boa's chain id is 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import boa
from boa.contracts.event_decoder import decode_log
from conftest import mark_steps
from engine.conftest import ROOT, storage_layout
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from support.boa_contracts import deploy
from support.check_market import check_market
from support.margins import book_leaf, next_epoch, sign_root, with_model_rates

from offchain.chain.eip712 import (
    Domain,
    MarketData,
    SettlementPrice,
    sign_multi,
    symbol_to_bytes32,
)
from offchain.chain.leaves import AccountLeaf, MarketLeaf
from offchain.chain.orders import EngineDomain, Order, sign_order
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.chain.witness import Witness, liquidation_witness
from offchain.risk import load_params

WAD = 10**18
BPS = 10_000
DECIMALS = 6
SCALE = 10 ** (18 - DECIMALS)
HOUR = 3_600
DAY = 86_400
BTC = symbol_to_bytes32("BTC")
PARAMS_HASH = keccak(text="netmargin stateful fuzzing v1")
KIND_FUTURE, KIND_PERPETUAL, KIND_CALL, KIND_PUT = 0, 1, 2, 3
PERP, FUTURE, CALL, PUT = 1, 2, 3, 4
INSTRUMENTS = (PERP, FUTURE, CALL, PUT)
EXPIRING = (FUTURE, CALL, PUT)
STRIKE_WAD = 60_000 * WAD
# Short expiry so that a run of a few dozen steps regularly reaches settlement.
EXPIRY_AFTER = 2 * DAY
SIGNER_THRESHOLD = 2
# The model liquidations are checked against (the verifier carries PARAMS_HASH as its label)
# and the option vol of the market leaves.
WITNESS_PARAMS = load_params("default-v2")
VOL_WAD = 6 * WAD // 10
_PLACEHOLDER_LEAF = AccountLeaf(
    account="0x" + "0d" * 20, state_nonce=0, positions_hash=b"\0" * 32, pending_base_im_wad=0,
    pending_base_mm_wad=0, position_value_wad=0, initial_margin_wad=0, maintenance_margin_wad=0,
    worst_loss_wad=0, worst_scenarios=0, basis_addon_wad=0, short_option_addon_wad=0,
    liquidity_addon_wad=0, rounding_guard_wad=0)

# (max_positions, taker_fee_bps, max_price_age, max_margin_basis_age, max_liquidation_price_age)
TRADING = (8, 10, HOUR, DAY, 2 * HOUR)
# (discount_base_bps, slope_bps_per_hour, discount_max_bps, insurance_share_bps, buffer_bps,
#  dust_mm_wad)
LIQUIDATION = (1_000, 500, 5_000, 2_000, 1_000, 100 * WAD)
DISCOUNT_MAX_BPS = LIQUIDATION[2]

# Fixed, publicly known test keys (never use outside tests).
SIGNER_KEYS = [keccak(text=f"netmargin stateful signer {i}") for i in range(3)]
TRADER_NAMES = ("alice", "bob", "carol", "liz")
ACTOR_NAMES = (*TRADER_NAMES, "saver")

# the engine's account headers (a HashMap: keccak(slot . key)); bit 111 is FLOOR_RAISED
HEADER_SLOT = storage_layout(ROOT / "contracts/MarginEngine.vy")["core._header"]


def _key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"netmargin stateful actor {name}"))


@dataclass
class CallResult:
    """Outcome of one transaction: success flag, revert reason, decoded logs, return value."""

    ok: bool
    reason: str = ""
    logs: tuple = ()
    value: object = None

    def events(self, name: str) -> list:
        return [e for e in self.logs if type(e).__name__ == name]


def revert_reason(err: Exception) -> str:
    """The Error(string) reason of a boa revert, else the exception text."""
    frame = getattr(getattr(err, "stack_trace", None), "last_frame", None)
    vm_error = getattr(frame, "vm_error", None)
    if vm_error is not None and vm_error.args:
        data = vm_error.args[0]
        if isinstance(data, bytes) and data[:4] == b"\x08\xc3y\xa0":
            return abi_decode(["string"], data[4:])[0]
        return repr(data)
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class System:
    """One deployment: contracts, keys, domains, and signed-message helpers."""

    def __init__(self) -> None:
        self.admin = boa.env.eoa
        self.keeper = boa.env.generate_address("keeper")
        self.signers = sorted((Account.from_key(k) for k in SIGNER_KEYS), key=lambda a: int(a.address, 16))
        self.keys = {name: _key(name) for name in ACTOR_NAMES}
        self.addr = {name: k.address for name, k in self.keys.items()}

        self.token = deploy("mocks/MockERC20", "Mock USD", "mUSD", DECIMALS)
        self.registry = deploy("InstrumentRegistry")
        self.expiry = self.now() + EXPIRY_AFTER
        self.registry.list_instrument(BTC, KIND_PERPETUAL, 0, 0)
        self.registry.list_instrument(BTC, KIND_FUTURE, 0, self.expiry)
        self.registry.list_instrument(BTC, KIND_CALL, STRIKE_WAD, self.expiry)
        self.registry.list_instrument(BTC, KIND_PUT, STRIKE_WAD, self.expiry)
        self.oracle = deploy(
            "RiskOracle",
            self.registry.address,
            [s.address for s in self.signers],
            SIGNER_THRESHOLD,
            PARAMS_HASH,
            2_000,
        )
        generator, rows = verifier_config(WITNESS_PARAMS)
        self.verifier = deploy("ScenarioVerifier", self.oracle.address, PARAMS_HASH,
                               generator, rows)
        self.oracle.set_verifier(self.verifier.address)
        self.extension = deploy(
            "MarginEngineExtension",
            self.token.address,
            self.oracle.address,
            self.registry.address,
        )
        self.governance = deploy("MarginEngineGovernance", self.token.address, self.oracle.address,
                                 self.registry.address)
        self.engine = deploy(
            "MarginEngine",
            self.token.address,
            self.oracle.address,
            self.registry.address,
            self.extension.address,
            self.governance.address,
            TRADING,
            LIQUIDATION,
        )
        chain_id = boa.env.evm.patch.chain_id
        # The Python domains must be the ones the contracts hash with (chain.id, address).
        assert self.engine.eip712Domain()[3] == chain_id
        self.oracle_domain = Domain(chain_id=chain_id, verifying_contract=self.oracle.address)
        self.engine_domain = EngineDomain(chain_id=chain_id, verifying_contract=self.engine.address)
        for name in ACTOR_NAMES:
            self.token.approve(self.engine.address, 2**256 - 1, sender=self.addr[name])
        self.token.approve(self.engine.address, 2**256 - 1, sender=self.keeper)
        self.order_nonce = 0

    # ------------------------------------------------------------------ time

    @staticmethod
    def now() -> int:
        return boa.env.evm.patch.timestamp

    @staticmethod
    def advance(seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    # ------------------------------------------------------------------ calls

    def call(self, contract, fn: str, *args, sender) -> CallResult:
        """Run one transaction; a revert is returned, not raised (boa rolls state back)."""
        try:
            value = getattr(contract, fn)(*args, sender=sender)
        except boa.BoaError as err:
            return CallResult(False, revert_reason(err))
        return CallResult(True, logs=tuple(self._decode(e) for e in contract.get_logs(strict=False)), value=value)

    def _decode(self, entry):
        """Events the engine logs inside its delegatecalls come back raw (boa decodes with
        the engine's own code, which logs none of them): decode them with the delegate's ABI,
        the extension's or the governance's (`SocialisedLossRepaid`, `FeesWithdrawn`)."""
        if type(entry).__name__ != "RawLogEntry":
            return entry
        for delegate in (self.extension, self.governance):
            if entry.topics[0] in delegate.event_abi_for:
                return decode_log(self.engine.address, delegate.event_abi_for, entry)
        return entry

    # ------------------------------------------------------------------ oracle data

    def post_market(self, rows: dict[int, tuple[int, int, int, int, int, int]], step: bool = True) -> CallResult:
        """Sign (2 of 3) and post {id: (mark, funding, im_long, im_short, mm_long, mm_short)}
        one second after the previous block (per-instrument timestamps strictly increase).
        A move beyond the oracle's per-update mark bound is posted in steps, as the keeper
        does; the result is the last post's (or the first failed one's)."""
        ids = sorted(rows)
        targets = [rows[i][0] for i in ids]
        path = mark_steps(self.oracle, ids, targets, [max(rows[i][4:]) for i in ids]) if step else [targets]
        for marks in path:
            res = self._post_market_once(ids, dict(zip(ids, marks, strict=True)), rows)
            if not res.ok:
                return res
        return res

    def _post_market_once(self, ids: list[int], marks: dict[int, int], rows: dict) -> CallResult:
        self.advance(1)
        ts = self.now()
        data = MarketData(
            ids=ids,
            marks_wad=[marks[i] for i in ids],
            funding_indices_wad=[rows[i][1] for i in ids],
            im_long_wad=[rows[i][2] for i in ids],
            im_short_wad=[rows[i][3] for i in ids],
            mm_long_wad=[rows[i][4] for i in ids],
            mm_short_wad=[rows[i][5] for i in ids],
            params_hash=PARAMS_HASH,
            timestamp=ts,
            deadline=ts + 300,
        )
        sigs = sign_multi(data, self.oracle_domain, self.signers[:SIGNER_THRESHOLD])
        return self.call(self.oracle, "post_market_data", data.as_args(), sigs, sender=self.keeper)

    def isolated_bound(self, book: dict[int, int]) -> tuple[int, int]:
        """(IM, MM) of a book {id: size} at the oracle's stored per-unit rates, each position
        rounded up: the bound no portfolio margin of that book exceeds."""
        im = mm = 0
        for i, q in book.items():
            (im_l, im_s, mm_l, mm_s), _ = self.oracle.rates(i)
            im += -(-abs(q) * (im_l if q > 0 else im_s) // WAD)
            mm += -(-abs(q) * (mm_l if q > 0 else mm_s) // WAD)
        return im, mm

    def leaf(self, account: str, im_wad: int, mm_wad: int, **overrides) -> AccountLeaf:
        """A leaf for the account's current book (nonce, positions hash, pending counters)."""
        return book_leaf(self.engine, account, im_wad, mm_wad, **overrides)

    def post_root(self, leaves: list[AccountLeaf]) -> tuple[CallResult, EpochTrees]:
        """Sign (2 of 3) and post the engine's next epoch root over `leaves`, now."""
        root = sign_root(self.engine, next_epoch(self.oracle, self.engine), leaves, timestamp=self.now(),
                         domain=self.oracle_domain, signers=self.signers[:SIGNER_THRESHOLD], params_hash=PARAMS_HASH,
                         market_count=self.registry.instrument_count())
        return self.call(self.oracle, "post_root", *root.post_args(), sender=self.keeper), root.trees

    def market_leaves(self, spot_wad: int) -> list[MarketLeaf]:
        """The epoch's market leaves at `spot_wad` (the instruments live at the root: the
        perpetual, and the others before expiry): futures at their mark's forward, options
        on a spot forward at VOL_WAD; each carries its instrument's oracle mark, as honest
        signers' leaves do (the engine refuses a witness whose leaf marks are not the oracle's)."""
        rows = market_rows(spot_wad, 0, self.expiry - self.now())
        live = [PERP] + ([FUTURE, CALL, PUT] if self.now() < self.expiry else [])
        mark = dict(zip(live, self.oracle.marks(live)[0], strict=True))
        out = [MarketLeaf(PERP, KIND_PERPETUAL, BTC, 0, 0, WAD, spot_wad, spot_wad, 0, 0, mark[PERP], 0, 0, 0, 0)]
        if self.now() < self.expiry:
            out += [MarketLeaf(FUTURE, KIND_FUTURE, BTC, 0, self.expiry, WAD, spot_wad, rows[FUTURE][0], 0, 0,
                               mark[FUTURE], 0, 0, 0, 0)]
            out += [MarketLeaf(i, kind, BTC, STRIKE_WAD, self.expiry, WAD, spot_wad, spot_wad, VOL_WAD, 0, mark[i],
                               0, 0, 0, 0) for i, kind in ((CALL, KIND_CALL), (PUT, KIND_PUT))]
        return out

    def witness(self, account: str, spot_wad: int, scenarios=None, joint=None) -> Witness:
        """Post (one second later) a root whose market tree is `market_leaves(spot_wad)` (with
        the model's per-unit rates, as honest signers sign them) and
        return the account's witness (binding scenarios unless named); raises WitnessError
        when the book has none (a leg expired at the root)."""
        self.advance(1)  # roots' timestamps strictly increase
        root = sign_root(self.engine, next_epoch(self.oracle, self.engine), [_PLACEHOLDER_LEAF], timestamp=self.now(),
                         domain=self.oracle_domain, signers=self.signers[:SIGNER_THRESHOLD], params_hash=PARAMS_HASH,
                         market=with_model_rates(WITNESS_PARAMS, self.market_leaves(spot_wad), self.now()),
                         market_count=self.registry.instrument_count())
        res = self.call(self.oracle, "post_root", *root.post_args(), sender=self.keeper)
        assert res.ok, res.reason
        trees = root.trees
        book = [(int(p.instrument_id), int(p.size_wad)) for p in self.engine.account(account).positions]
        return liquidation_witness(WITNESS_PARAMS, self.engine.address, book, trees, self.now(), scenarios, joint)

    def witness_margin(self, w: Witness) -> int:
        """The verifier's margin of the witness (what the engine compares the equity with)."""
        return int(check_market(self.verifier, w).maintenance_wad)

    def apply_leaf(self, trees: EpochTrees, account: str, sender: str) -> CallResult:
        leaf, proof = trees.account_proof(account)
        return self.call(self.engine, "apply_leaf", leaf.as_args(), proof, sender=sender)

    def give_margin(self, account: str, im_wad: int, mm_wad: int, **leaf_overrides) -> CallResult:
        """Margin one account as the keeper does: a root holding a leaf for its current book,
        posted now, and the leaf applied (by the keeper). The first failure is returned."""
        res, trees = self.post_root([self.leaf(account, im_wad, mm_wad, **leaf_overrides)])
        return self.apply_leaf(trees, account, sender=self.keeper) if res.ok else res

    def post_settlement(self, instrument_id: int, price_wad: int) -> CallResult:
        ts = self.now()
        data = SettlementPrice(instrument_id=instrument_id, price_wad=price_wad, timestamp=ts, deadline=ts + 300)
        sigs = sign_multi(data, self.oracle_domain, self.signers[:SIGNER_THRESHOLD])
        return self.call(self.oracle, "post_settlement_price", data.as_args(), sigs, sender=self.keeper)

    # ------------------------------------------------------------------ engine actions

    def deposit(self, who: str, amount: int) -> CallResult:
        self.token.mint(who, amount)
        return self.call(self.engine, "deposit", amount, sender=who)

    def fill(self, maker: str, taker: str, instrument_id: int, maker_is_buy: bool, size_wad: int,
             price_wad: int, fill_wad: int | None = None) -> CallResult:
        """The maker signs an order (fresh salt); the taker fills `fill_wad` (default all)."""
        self.order_nonce += 1
        order = Order(
            account=maker,
            instrument_id=instrument_id,
            is_buy=maker_is_buy,
            size_wad=size_wad,
            limit_price_wad=price_wad,
            order_nonce=self.order_nonce,
            deadline=self.now() + HOUR,
        )
        sig = sign_order(order, self.engine_domain, self.key_of(maker))
        return self.call(self.engine, "fill", order.as_args(), sig, size_wad if fill_wad is None else fill_wad,
                         sender=taker)

    def key_of(self, address: str) -> LocalAccount:
        for k in self.keys.values():
            if k.address == address:
                return k
        raise KeyError(address)

    # ------------------------------------------------------------------ views

    def health(self, who: str) -> tuple[int, int, int, bool]:
        """(equity, IM, MM, liquidatable) as the engine computes them now."""
        h = self.engine.health(who)
        return int(h.equity_wad), int(h.im_wad), int(h.mm_wad), bool(h.liquidatable)

    def account(self, who: str):
        return self.engine.account(who)

    def floor_raised(self, who: str) -> bool:
        """Whether the account's header carries FLOOR_RAISED (bit 111): its margins were last
        raised by a leaf below its floor, so new risk keeps at most the isolated bound."""
        key = keccak(HEADER_SLOT.to_bytes(32, "big") + bytes.fromhex(who[2:].rjust(64, "0")))
        return boa.env.get_storage(self.engine.address, int.from_bytes(key, "big")) >> 111 & 1 == 1

    def margins(self, who: str) -> tuple[int, int, int]:
        """(IM, MM, basis timestamp) the engine stores for the account: the last leaf plus
        the pending bounds since (health() applies the escape hatch on top)."""
        v = self.engine.account(who)
        return int(v.initial_margin_wad), int(v.maintenance_margin_wad), int(v.margin_basis_timestamp)

    def positions(self, who: str) -> dict[int, int]:
        return {int(p.instrument_id): int(p.size_wad) for p in self.engine.account(who).positions}


# ---------------------------------------------------------------------- a market model


def market_rows(spot_wad: int, funding_wad: int, seconds_to_expiry: int) -> dict[int, tuple]:
    """Marks and per-unit margin rates of the four BTC instruments at `spot_wad`: futures at
    spot plus a small basis, options intrinsic plus a sqrt-time value; standalone rates 10% /
    5% of spot for linear legs, premium / half premium for long options, 15% / 7.5% for
    short options (rates are signer-trusted inputs; only im >= mm matters on-chain)."""
    spot = spot_wad
    tau = max(seconds_to_expiry, 0) / (30 * DAY)
    time_value = int(spot * 0.04 * math.sqrt(tau))
    call = max(spot - STRIKE_WAD, 0) + time_value
    put = max(STRIKE_WAD - spot, 0) + time_value
    linear = (spot // 10, spot // 10, spot // 20, spot // 20)
    option = lambda mark: (mark, spot * 15 // 100, mark // 2, spot * 75 // 1000)  # noqa: E731
    return {
        PERP: (spot, funding_wad, *linear),
        FUTURE: (spot + spot // 200, 0, *linear),
        CALL: (call, 0, *option(call)),
        PUT: (put, 0, *option(put)),
    }


_SYSTEM: System | None = None


def system() -> System:
    """The session's deployment (compiled and deployed on first use)."""
    global _SYSTEM
    if _SYSTEM is None:
        _SYSTEM = System()
        _SYSTEM.post_market(market_rows(60_000 * WAD, 0, EXPIRY_AFTER))
    return _SYSTEM

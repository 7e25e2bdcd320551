"""The keeper loop: one `cycle()` per new block.

read (events -> touched accounts -> re-read their books at the state block) -> prices
(source -> marks, vols) -> compute (market leaves -> the epoch's risk engine -> vectorised
risk over every account) -> decide (strategy.plan, pure) -> act (post market data; when due,
one signed epoch root for every account plus its public data; apply the newest leaf and
liquidate; settle; push forfeited signer bonds to the insurance fund) -> metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from offchain.chain import eip712
from offchain.chain.contracts import (
    WAD,
    Deployment,
    InstrumentTable,
    batch_call,
    call_named,
    check_account_view,
    read_account_list,
    read_books,
    read_instruments,
)
from offchain.chain.epoch_leaves import (
    epoch_account_leaves,
    finish_market_leaves,
    market_input_leaves,
    positions_hash_fast,
)
from offchain.chain.risk_inputs import live_instruments, risk_engine
from offchain.chain.roots import EpochTrees
from offchain.chain.wad import Rounding, to_wad, to_wad_list
from offchain.chain.witness import MAX_LEGS, MAX_UNITS, WitnessError, liquidation_witness
from offchain.errors import UserError
from offchain.keeper.book import KeeperBook
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Encoder, Executor, TxResult
from offchain.keeper.forfeits import ForfeitPusher
from offchain.keeper.indexer import Indexer
from offchain.keeper.metrics import KeeperMetrics
from offchain.keeper.price_guard import PriceCheck, PriceGuard
from offchain.keeper.prices import PriceSource, instrument_marks
from offchain.keeper.roots import EpochStore, proof_for
from offchain.keeper.signing import (
    Signers,
    index_prices_struct_hash,
    market_data_struct_hash,
    oracle_domain,
    settlement_price_struct_hash,
    typed_digest,
)
from offchain.keeper.store import StateStore
from offchain.keeper.strategy import (
    AccountsView,
    Plan,
    Policy,
    assign_liquidators,
    clamp_moves,
    plan,
    prices_due,
)
from offchain.risk import Params, RiskEngine
from offchain.risk.pricing import CALL, PERPETUAL, PUT

log = logging.getLogger("netmargin.keeper")


def _posts_marks(batch) -> bool:
    """Whether a batch of (label, call[, on_result]) carries a market-data post."""
    return any(item[0] == "post_market_data" for item in batch)

# Gas limits of calls sent in the same batch as the root they depend on (their estimate
# would revert before it is mined): publish_epoch_data grows with the market leaves
# (calldata, hashing, log data), a leaf application with the proof depth, a liquidation
# measured at ~0.3M (tests/e2e/test_keeper_roots.py); Anvil and mainnet refund the unused part.
PUBLISH_GAS_BASE, PUBLISH_GAS_PER_LEAF = 300_000, 12_000
APPLY_LEAF_GAS = 400_000
LIQUIDATE_GAS = 1_200_000
# with a witness the verifier re-prices the book: ~1.5M for 16 positions (benchmarks/bench_gas.py)
WITNESS_LIQUIDATE_GAS = 3_000_000
# the engine's refusals of a slice for the liquidator's own state, not the victim's
LIQUIDATOR_REFUSALS = ("liquidator below initial margin", "too many positions", "book on more than")


@dataclass(frozen=True)
class Refusal:
    """The engine's refusals of one victim's liquidation since its book last changed."""

    nonce: int            # the victim's state nonce they were refused at
    count: int            # refusals in a row
    retry_at: int         # the block before which it is not tried again
    alarm: bool           # counted by the alarm while the victim stays liquidatable
    barred: frozenset[int] = frozenset()   # liquidator accounts refused for their own state


@dataclass
class CycleReport:
    block: int
    timestamp: int
    accounts: int
    unhealthy: int
    epoch: int = 0           # epoch of the root posted this cycle (0: none)
    epoch_reason: str = ""   # why it was due
    leaves: int = 0          # account leaves in it
    state_block: int = 0     # the block its leaves were built on
    liquidated: list[dict] = field(default_factory=list)
    settled: int = 0
    posted_prices: bool = False
    held: str = ""  # why nothing was signed this cycle (untrusted prices), "" normally
    forfeited: int = 0         # the signer bond's forfeited balance read (token units)
    forfeited_pushed: int = 0  # of it, moved to the insurance fund this cycle
    seconds: dict[str, float] = field(default_factory=dict)
    results: list[TxResult] = field(default_factory=list)


class Keeper:
    def __init__(self, cfg: KeeperConfig, dep: Deployment, signers: Signers, executor: Executor,
                 store: StateStore, params: Params, source: PriceSource | None,
                 metrics: KeeperMetrics | None = None, liquidators: list[Executor] | None = None):
        self.cfg = cfg
        self.dep = dep
        self.w3 = dep.w3
        self.signers = signers
        self.executor = executor
        # the accounts liquidations are sent from: the gas key's first, then spares for a
        # book the first has no room or margin for (`assign_liquidators`)
        self.liquidators = [executor, *(liquidators or [])]
        self.store = store
        self.params = params
        self.params_hash = bytes.fromhex(params.hash.removeprefix("0x"))
        self.source = source
        self.metrics = metrics or KeeperMetrics()
        self.indexer = Indexer(dep, store, cfg.start_block, cfg.confirmations, cfg.reorg_depth)
        self.domain = oracle_domain(self.w3.eth.chain_id, dep.oracle.address)
        self.engine_calls = Encoder(dep.engine)
        self.oracle_calls = Encoder(dep.oracle)
        self.forfeits = ForfeitPusher(dep, executor, self.metrics, cfg.forfeited_push_min,
                                      cfg.signer_bond_address, cfg.start_block)
        self.policy = Policy(leaf_move_frac=cfg.leaf_move_frac, leaf_move_abs=cfg.leaf_move_abs,
                             root_max_age_s=cfg.root_max_age_s, liquidate=cfg.liquidate,
                             settle=cfg.settle)
        # epoch roots: one signed root per epoch for every account, files under data_dir
        self.epochs = EpochStore(Path(cfg.data_dir) / "roots")
        self.epoch = 0          # the engine's current epoch on the oracle
        self.root_ts = 0        # its signed time (0: none, or signed under older params)
        self.listed: list[str] = []  # the engine's account list (every leaf's account)
        self.underlyings: list[str] = list(source.underlyings) if source else []
        self.table: InstrumentTable | None = None
        self.book = KeeperBook(0)
        self.posted_marks = np.zeros(0)
        self.posted_rates = np.zeros(0)   # the 4 per-unit rate columns of the last post, flattened
        self.posted_at = 0
        self._verifier_registered = False   # registration is one-way: cached once seen
        self.index_posted_at = 0
        self.settlement = np.zeros(0)  # settlement price per instrument (0 = not yet)
        self.inflight: dict[str, int] = {}  # account -> state nonce of a liquidation attempt
        # a refused liquidation is retried with backoff, from another account when the engine
        # refused the liquidator's own state, until the victim's book changes; one the
        # keeper's accounts cannot take raises the alarm
        self.refused: dict[str, Refusal] = {}
        self.blocked: set[str] = set()   # this cycle's victims no liquidator account could take
        self.taken_by: dict[str, int] = {}   # victim -> the liquidator account sent for it
        self.head = 0
        self.last_report: CycleReport | None = None
        self.last_spot = np.zeros(0)
        self.last_vol = np.zeros(0)
        self.guard = PriceGuard(self.underlyings, cfg.price_max_jump_frac, cfg.price_confirm_cycles)
        self.last_equity = np.zeros(0)
        self.last_mm = np.zeros(0)
        self.trees: EpochTrees | None = None
        self.sending_marks: np.ndarray | None = None   # marks in this cycle's batch
        # the exact WAD marks by instrument id: the oracle's as this keeper last posted or read
        # them (None: not known yet), and this cycle's post. A witness counts only when its
        # leaves' marks are the oracle's to the wei.
        self.posted_marks_wad: dict[int, int] | None = None
        self.posted_spot: np.ndarray | None = None   # the spot the posted marks were priced at
        self.sending_marks_wad: dict[int, int] | None = None
        self._positions_hashes: dict[tuple, bytes] = {}   # (row, book) -> positions hash
        self._writer: threading.Thread | None = None      # the last epoch file being written

    # ---- startup: resume from the store, re-read every book once ----
    def startup(self) -> None:
        check_account_view(self.dep.engine)
        self.check_signers()
        self._refresh_instruments()
        block = max(self.w3.eth.block_number - self.cfg.confirmations, 0)
        self.listed = read_account_list(self.dep, block=block)
        self._refresh_accounts(self.listed, block)
        self._resume_epoch()
        self.max_index_move_bps = self.dep.oracle.functions.max_index_move_bps().call()
        # a restart trusts what the oracle already holds, not the first print it sees
        self.guard.seed(self._onchain_index())
        bond = self.forfeits.start()
        log.info("keeper started", extra={"accounts": len(self.book), "instruments": len(self.table),
                                          "resume_block": self.indexer.cursor(),
                                          "signers": self.signers.addresses, "epoch": self.epoch,
                                          "signer_bond": bond,
                                          "gas_key": self.executor.account.address,
                                          "liquidators": [e.account.address for e in self.liquidators],
                                          "dry_run": self.cfg.dry_run})

    def check_signers(self) -> None:
        """Refuse to start with signing keys the oracle does not accept: every post and root
        would revert, and a keeper that only logs skips looks healthy."""
        oracle = self.dep.oracle.functions
        unknown = [a for a in self.signers.addresses if not oracle.is_signer(a).call()]
        if unknown:
            raise UserError(f"config.signers: {', '.join(unknown)} "
                            f"{'is not an oracle signer' if len(unknown) == 1 else 'are not oracle signers'} "
                            f"(oracle {self.dep.oracle.address}); ask the oracle owner to add "
                            f"{'it' if len(unknown) == 1 else 'them'} or configure a signer key")
        threshold = oracle.threshold().call()
        if len(self.signers.addresses) < threshold:
            raise UserError(f"config.signers: this keeper holds {len(self.signers.addresses)} signer "
                            f"key(s), the oracle needs {threshold} signatures per message; "
                            "configure at least that many signer keys")

    def _refresh_instruments(self) -> None:
        self.table, self.underlyings = read_instruments(self.dep, self.underlyings)
        n = len(self.table)
        self.book.set_instrument_count(n)
        if len(self.posted_marks) < n:
            self.posted_marks = np.concatenate([self.posted_marks, np.zeros(n - len(self.posted_marks))])
        settled = [self.dep.oracle.functions.settlement_price(int(i)).call() / WAD
                   for i in self.table.ids[len(self.settlement):]]
        self.settlement = np.concatenate([self.settlement, np.asarray(settled, dtype=np.float64)])

    def _refresh_accounts(self, addresses, block: int | str = "latest") -> None:
        """Re-read books and pending counters, all at `block` (the state block leaves are
        built on)."""
        addresses = sorted(set(addresses))
        if addresses:
            views, totals = read_books(self.dep, addresses, block)
            self.book.apply_views(addresses, views, totals)

    def _refresh_listed(self, block: int) -> None:
        """Accounts the engine listed since (their first position): each gets a leaf."""
        count = self.dep.engine.functions.account_count().call(block_identifier=block)
        if count > len(self.listed):
            new = read_account_list(self.dep, start=len(self.listed), block=block)
            self.listed.extend(new)
            self._refresh_accounts([a for a in new if a not in self.book.index], block)

    def _resume_epoch(self) -> None:
        """The oracle's current epoch for this engine; with this keeper's file of it, the
        leaves it holds (so a restart does not post a root for nothing)."""
        oracle = self.dep.oracle.functions
        epoch, _ts, _count, accounts_root, _market = oracle.epoch_root(self.dep.engine.address).call()
        self.epoch = int(epoch)
        self.root_ts = int(oracle.root_timestamp(self.dep.engine.address).call())
        trees = self.epochs.load(self.dep.engine.address, self.epoch) if self.epoch else None
        if trees is None or trees.accounts.root != bytes(accounts_root):
            return
        idx = np.asarray(self.book.add_accounts([leaf.account for leaf in trees.account_leaves]), dtype=np.int64)
        self.book.set_leaves(idx, np.asarray([leaf.state_nonce for leaf in trees.account_leaves]),
                             np.asarray([leaf.initial_margin_wad / WAD for leaf in trees.account_leaves]),
                             np.asarray([leaf.maintenance_margin_wad / WAD for leaf in trees.account_leaves]))
        self.trees = trees

    def flush(self) -> None:
        """Wait for the last epoch file to be on disk (a stopping keeper, a test)."""
        if self._writer is not None:
            self._writer.join()

    def proof(self, account: str) -> dict | None:
        """The account's leaf and proof in the engine's current epoch, if this keeper holds
        its file (GET /proof/<account>); None otherwise. UserError for a malformed address."""
        if self.trees is None:
            proof_for(self.epochs, self.dep.engine.address, account, epoch=0)   # validates the address
            return None
        return proof_for(self.epochs, self.dep.engine.address, account, epoch=self.trees.epoch)

    # ---- the cycle ----
    def cycle(self) -> CycleReport:
        t0 = time.perf_counter()
        timing: dict[str, float] = {}
        head = self.executor.call_with_retry(lambda: self.w3.eth.block_number, "block_number")
        now = int(self.w3.eth.get_block(head)["timestamp"])
        self.metrics.head_block.set(head)

        # read
        sync = self.executor.call_with_retry(lambda: self.indexer.sync(head), "sync")
        if sync.rewound_to is not None:
            self.metrics.reorgs.inc()
        # the state every leaf of this cycle is built on: the indexed, confirmed head
        state_block = max(self.indexer.cursor(), 0)
        if any(e.name == "InstrumentListed" for e in sync.events) or self.table is None or \
                self.dep.registry.functions.instrument_count().call() != len(self.table):
            self._refresh_instruments()
        self._refresh_accounts(sync.touched, state_block)
        self._refresh_listed(state_block)
        self.head = head
        for a in sync.touched:
            self.inflight.pop(a, None)
        for a, r in list(self.refused.items()):
            # refusals hold for the book they were refused on (a leaf applied to it, or a
            # deposit, leaves the nonce; a trade, a slice or a settlement moves it)
            i = self.book.index.get(a)
            if i is None or int(self.book.state_nonce[i]) != r.nonce:
                del self.refused[a]
                self.taken_by.pop(a, None)
        timing["read"] = time.perf_counter() - t0

        # prices + risk
        t1 = time.perf_counter()
        report = CycleReport(head, now, len(self.book), 0)
        check = self._price_check(now)
        self.metrics.price_alarm.set(0 if check.ok else 1)
        self.metrics.price_alarm_reason = check.reason
        if check.ok:
            spot, vol = check.spot, check.vol
            marks = self._marks(spot, vol, now)
            if self.cfg.post_prices and self.source is not None:
                spot, marks = self._stepped(spot, vol, marks, now)
        else:
            # holding: sign and post nothing; judge liquidations at the chain's own marks
            report.held = check.reason
            log.warning("holding: untrusted prices", extra={"reason": check.reason})
            if self.guard.last is None or len(self.last_vol) == 0:
                self._push_forfeited(report, head)
                self._update_metrics(report, None, now, time.perf_counter() - t0)
                return report
            spot, vol, marks = self.guard.last, self.last_vol, self.posted_marks
        live = self._live(now)
        risk = self.compute(marks, spot, vol, now, live)
        if check.ok and self.source is not None:
            marks = risk["marks"]   # the epoch engine's marks: what the leaves carry
        self.last_spot, self.last_vol = spot, vol
        self.last_equity, self.last_mm = risk["equity"], risk["mm"]
        timing["compute"] = time.perf_counter() - t1

        # prices go first in the cycle's one batch: the root and liquidations after them are
        # judged at these marks (the engine will hold them when the liquidations run)
        price_batch: list[tuple] = []
        self.sending_marks = self.sending_marks_wad = None
        # the marks a root of this cycle's leaves carries, to the wei: posted as they are
        leaf_marks = {m.instrument_id: m.mark_wad for m in risk["market_leaves"]}
        posts_prices = self.cfg.post_prices and self.source is not None and check.ok
        if posts_prices:
            price_batch = self._price_calls(marks, risk["rates_wad"], spot, now, leaf_marks)
        elif self.source is None:
            self.posted_marks = marks  # oracle mode: what we read is what the engine uses
        chain_marks = self.sending_marks if self.sending_marks is not None else self.posted_marks

        view = self._accounts_view(risk, chain_marks)
        settleable = (self.table.expiry > 0) & (self.table.expiry <= now) & (self.settlement > 0)
        decision = plan(view, now, self.policy, self.root_ts, self.book.positions,
                        settleable_instruments=settleable)
        if decision.unhealthy and not decision.epoch:
            # a witness counts only against a root as new as the marks, at the marks: read
            # their time, and which of the root's leaves will not carry the oracle's mark
            decision = plan(view, now, self.policy, self.root_ts, self.book.positions,
                            settleable_instruments=settleable, marks_at=self._witness_marks_at(price_batch, now),
                            unbound_instruments=self._unbound_instruments(
                                self.trees, None if posts_prices else leaf_marks))
        report.unhealthy = decision.unhealthy

        # act: the root (when due) and the liquidations that apply its leaves go in one batch
        t2 = time.perf_counter()
        epoch = None
        if self.cfg.post_roots and check.ok and decision.epoch and risk["epoch"] is not None \
                and now > self.root_ts:
            epoch = self._build_epoch(risk, now, state_block, decision.epoch)
            view = self._accounts_view(risk, chain_marks, epoch)
            decision = plan(view, now, self.policy, now, self.book.positions,
                            settleable_instruments=settleable)
            if decision.unhealthy and posts_prices and not _posts_marks(price_batch):
                # a root that liquidations may need comes with its leaves' marks: a witness
                # counts only where the leaves' marks are the oracle's
                forced = self._market_data_call(marks, risk["rates_wad"], now, leaf_marks, force=True, spot=spot)
                if forced is not None:
                    price_batch.insert(0, forced)
                    chain_marks = self.sending_marks
        timing["sign"] = epoch["seconds"] if epoch else 0.0
        t3 = time.perf_counter()
        report.liquidated = self._send_batch(price_batch, epoch, decision, report, chain_marks)
        self.metrics.liquidations_blocked.set(self._blocked_count(view))
        timing["send"] = time.perf_counter() - t3
        if self.cfg.post_prices and self.source is not None and check.ok:
            self._post_settlements(now)
        report.settled = self._settle(decision)
        self._push_forfeited(report, head)
        timing["act"] = time.perf_counter() - t2
        timing["total"] = time.perf_counter() - t0
        report.seconds = timing

        self._update_metrics(report, view, now, timing["total"])
        self.last_report = report
        log.info("cycle", extra={"block": head, "accounts": report.accounts,
                                 "unhealthy": report.unhealthy, "epoch": report.epoch,
                                 "liquidated": len(report.liquidated), "settled": report.settled,
                                 "prices": report.posted_prices, "forfeited_pushed": report.forfeited_pushed,
                                 **{f"{k}_s": round(v, 4) for k, v in timing.items()}})
        return report

    def run_forever(self, stop: threading.Event) -> None:
        last_block = -1
        while not stop.is_set():
            try:
                head = self.w3.eth.block_number
                if head != last_block:
                    # the head seen when the cycle started: blocks mined meanwhile (ours
                    # included) get their own cycle, so none is skipped
                    last_block = self.cycle().block
            except Exception as exc:  # noqa: BLE001 - a keeper logs, counts and keeps going
                self.metrics.errors.labels(kind=type(exc).__name__).inc()
                log.exception("cycle failed", extra={"error": str(exc)[:300]})
            stop.wait(self.cfg.poll_interval_s)

    # ---- prices ----
    def _price_check(self, now: int) -> PriceCheck:
        """Prices this cycle may sign on: the source's, through the guard; in oracle mode
        the index prices other signers posted (already bounded on-chain), vols from config."""
        if self.source is not None:
            return self.guard.check(lambda: self.source.spot(now), lambda: self.source.vol(now))
        vols = self.cfg.prices.vols
        return PriceCheck(True, self._onchain_index(),
                          np.asarray([vols.get(u, 0.8) for u in self.underlyings]))

    def _onchain_index(self) -> np.ndarray:
        spot = []
        for u in self.underlyings:
            price, _at = self.dep.oracle.functions.index_price(u.encode().ljust(32, b"\0")).call()
            spot.append(price / WAD)
        return np.asarray(spot, dtype=np.float64)

    def _marks(self, spot, vol, now) -> np.ndarray:
        if self.source is None:
            ids = [int(i) for i in self.table.ids]
            out = []
            for k in range(0, len(ids), 32):
                m, _f, _at = self.dep.oracle.functions.marks(ids[k:k + 32]).call()
                out.extend(m)
            self.posted_marks_wad = dict(zip(ids, (int(x) for x in out), strict=True))
            return np.asarray(out, dtype=object).astype(np.float64) / WAD
        marks = instrument_marks(self.table, spot, vol, now, underlyings=self.underlyings)
        # expired and settled: the final price's payoff (what settle() will credit)
        done = self.settlement > 0
        if done.any():
            strike = self.table.strike
            kind = self.table.kind
            payoff = np.where(kind == CALL, np.maximum(self.settlement - strike, 0),
                              np.where(kind == PUT, np.maximum(strike - self.settlement, 0),
                                       self.settlement))
            marks = np.where(done, payoff, marks)
        return marks

    def _stepped(self, spot, vol, marks, now) -> tuple[np.ndarray, np.ndarray]:
        """In a gap, the spot (and its marks) one market-data update can reach: the oracle
        bounds each mark's move (`_check_mark_move`: max of max_index_move_bps of the mark and
        its per-unit MM rate), and a witness counts only where the root's leaves carry the
        oracle's marks, so marks, leaves and root are all priced at one spot that moves
        toward the source's by the largest fraction (bisected, one fraction for every
        underlying) whose marks are all within their bound; the rest next cycle."""
        n = len(self.posted_marks)
        if self.posted_spot is None or self.posted_at == 0 or len(self.posted_rates) != 4 * n \
                or len(self.posted_spot) != len(spot):
            return spot, marks
        prev_mm = np.maximum(self.posted_rates[2 * n:3 * n], self.posted_rates[3 * n:])
        fresh = self.posted_marks == 0
        # only marks the spot moves (live, unsettled instruments): an expiry's payoff jump is
        # stepped by the post's own clamp, as before; no spot would bring it within the bound
        moved_by_spot = self._live(now) & (self.settlement == 0) & ~fresh

        def within(m) -> bool:
            # a little inside the post's own margin (0.999): the oracle's marks are these
            # floats' integers, and a step bisected onto the edge must not be clamped there
            bound = clamp_moves(m, self.posted_marks, 0.998 * self.max_index_move_bps / 10_000,
                                floor=0.998 * prev_mm, fresh=fresh)
            return bool(np.all((bound == m) | ~moved_by_spot))

        if within(marks):
            return spot, marks
        lo, lo_marks = 0.0, self.posted_marks
        hi = 1.0
        for _ in range(16):
            mid = (lo + hi) / 2
            m = self._marks(self.posted_spot + mid * (spot - self.posted_spot), vol, now)
            if within(m):
                lo, lo_marks = mid, m
            else:
                hi = mid
        if lo == 0.0:
            return spot, marks   # no step fits (other keepers' marks?): the post's clamp decides
        log.info("gap: marks stepped toward the source", extra={"fraction": round(lo, 4)})
        return self.posted_spot + lo * (spot - self.posted_spot), lo_marks

    def _live(self, now: int) -> np.ndarray:
        return live_instruments(self.table, now)

    # ---- risk ----
    def compute(self, marks: np.ndarray, spot: np.ndarray, vol: np.ndarray, now: int,
                live: np.ndarray) -> dict:
        """The epoch's market leaves (the source's inputs rounded to WAD), the risk engine
        built from those leaves alone, exactly as anyone rebuilds it from the published data
        (offchain.chain.epoch_leaves), its exact rates and marks, and float margins of every
        account (screening: when a root is due, who to liquidate)."""
        n_acc = len(self.book)
        pos = self.book.positions
        im = np.zeros(n_acc)
        mm = np.zeros(n_acc)
        n_inst = len(self.table)
        rates_wad = [[0] * n_inst for _ in range(4)]
        marks = np.asarray(marks, dtype=np.float64).copy()
        market, epoch = [], None
        if live.any():
            inputs = self._risk_engine(spot, vol, now, live).inputs
            # read from the oracle: futures and perpetuals priced at its marks to the wei (a
            # witness counts only where the leaves' marks are the oracle's)
            linear = self.posted_marks_wad if self.source is None else None
            market, epoch = finish_market_leaves(
                self.params, market_input_leaves(self.table, self.underlyings, live, inputs,
                                                 linear_marks_wad=linear), now)
            live_idx = np.flatnonzero(live)   # ascending ids: the leaves' order
            for k, j in enumerate(live_idx):
                m = market[k]
                rates_wad[0][j], rates_wad[1][j] = m.im_long_wad, m.im_short_wad
                rates_wad[2][j], rates_wad[3][j] = m.mm_long_wad, m.mm_short_wad
            if self.source is not None:   # oracle mode values books at the chain's marks
                marks[live_idx] = [m.mark_wad / WAD for m in market]
            if n_acc:
                im, mm, _ = epoch.engine.margins(sp.csr_matrix(pos[:, live]))
        value = pos @ marks if n_acc else np.zeros(0)
        rates = np.asarray(rates_wad, dtype=object).astype(np.float64) / WAD
        return {"value": value, "equity": self.book.view("cash") + value, "im": im, "mm": mm,
                "marks": marks, "rates": rates, "rates_wad": rates_wad, "market_leaves": market,
                "epoch": epoch, "live": live}

    def _risk_engine(self, spot, vol, now, live) -> RiskEngine:
        return risk_engine(self.params, self.table, self.underlyings, spot, vol, now, live)

    def _accounts_view(self, risk: dict, chain_marks: np.ndarray, epoch: dict | None = None) -> AccountsView:
        """Accounts as arrays. The chain's verdict is taken at the margin the engine will
        use: the newest leaf (of the root about to be posted, `epoch`, else the latest one)
        where it is newer than the account's margin basis and for its current book, since
        the keeper applies it before liquidating; the margins on chain otherwise."""
        b = self.book
        has = np.abs(b.positions).sum(axis=1) > 0
        chain_equity = b.view("cash") + (b.positions @ chain_marks if len(b) else 0.0)
        chain_mm = b.view("mm")
        if epoch is None:
            nonce, leaf_im, leaf_mm, root_ts = (b.view("leaf_nonce"), b.view("leaf_im"), b.view("leaf_mm"),
                                                self.root_ts)
        else:
            nonce, leaf_im, leaf_mm, root_ts = epoch["leaf_nonce"], epoch["leaf_im"], epoch["leaf_mm"], epoch["timestamp"]
        newer = (nonce >= 0) & (nonce == b.view("state_nonce")) & (b.view("basis_ts") < root_ts)
        mm_after = np.where(newer, leaf_mm, chain_mm)
        inflight = np.zeros(len(b), dtype=bool)
        for a, n in self.inflight.items():
            i = b.index.get(a)
            if i is not None and b.state_nonce[i] == n:
                inflight[i] = True
        for a, r in self.refused.items():
            i = b.index.get(a)
            if i is not None and r.retry_at > self.head:
                inflight[i] = True
        return AccountsView(
            state_nonce=b.view("state_nonce"), has_positions=has, equity=risk["equity"],
            im=risk["im"], mm=risk["mm"], leaf_nonce=nonce, leaf_im=leaf_im, leaf_mm=leaf_mm,
            onchain_liquidatable=has & (chain_equity < mm_after), inflight=inflight,
            basis_timestamp=b.view("basis_ts"))

    # ---- epoch roots ----
    def _build_epoch(self, risk: dict, now: int, state_block: int, reason: str) -> dict:
        """Every listed account's leaf at the state block (books and pending counters read at
        it; exact margins of all accounts in one vectorised call), both trees, and the
        signed root and epoch data."""
        t0 = time.perf_counter()
        b = self.book
        rows = np.asarray(b.add_accounts(self.listed), dtype=np.int64)
        books = [{i + 1: q for i, q in b.sizes_wad.get(int(r), {}).items()} for r in rows]
        hashes = []
        for r, book in zip(rows, books, strict=True):
            key = (int(r), tuple(book.items()))   # the book itself: a reorged book at the same nonce differs
            h = self._positions_hashes.get(key)
            if h is None:
                h = self._positions_hashes[key] = positions_hash_fast(book)
            hashes.append(h)
        if len(self._positions_hashes) > 4 * len(rows) + 1024:   # books replaced long ago
            live = {(int(r), tuple(book.items())) for r, book in zip(rows, books, strict=True)}
            self._positions_hashes = {k: v for k, v in self._positions_hashes.items() if k in live}
        leaves = epoch_account_leaves(risk["epoch"], self.listed, b.state_nonce[rows], books,
                                      [b.pending_total.get(int(r), 0) for r in rows], hashes)
        # the market tree has a slot per listed instrument (the table is the registry's, re-read
        # whenever its count changes): the oracle refuses a root over any other count
        trees = EpochTrees.build(self.dep.engine.address, self.epoch + 1, leaves, risk["market_leaves"],
                                 len(self.table))
        root = trees.root_message(timestamp=now, deadline=now + self.cfg.signature_validity_s,
                                  params_hash=self.params_hash)
        data = trees.data_message(state_block)
        sig_root, sig_data = self.signers.sign([typed_digest(self.domain, eip712.struct_hash(root)),
                                                typed_digest(self.domain, eip712.struct_hash(data))])
        n = len(b)
        nonce = np.full(n, -1, dtype=np.int64)
        leaf_im = np.zeros(n)
        leaf_mm = np.zeros(n)
        nonce[rows] = [leaf.state_nonce for leaf in leaves]
        # a book whose margin basis is not older than this root cannot apply its leaf: marked
        # (-2) so the next root, once the chain's clock has moved on, replaces it
        nonce[rows[b.basis_ts[rows] >= now]] = -2
        leaf_im[rows] = np.asarray([leaf.initial_margin_wad for leaf in leaves], dtype=object).astype(np.float64) / WAD
        leaf_mm[rows] = np.asarray([leaf.maintenance_margin_wad for leaf in leaves], dtype=object).astype(np.float64) / WAD
        return {"trees": trees, "root": root, "data": data, "sig_root": sig_root, "sig_data": sig_data,
                "rows": rows, "leaf_nonce": nonce, "leaf_im": leaf_im, "leaf_mm": leaf_mm, "timestamp": now,
                "state_block": state_block, "reason": reason, "seconds": time.perf_counter() - t0}

    def _send_batch(self, price_batch: list[tuple], epoch: dict | None, decision: Plan, report: CycleReport,
                    chain_marks: np.ndarray) -> list[dict]:
        """In order: due price posts, the root and its public data, then per victim its newest
        leaf (where newer than its margin basis) and the liquidation, so the engine judges each
        victim at the fresh marks and margin. One batch (one block when they fit), except that
        a root posted with new marks goes out only once those marks are mined: a signed root
        seen before its marks could be posted ahead of them by anyone, and a witness against
        it would price the root's newer prices against the older marks (SECURITY.md V25)."""
        prices = [(label, call) for label, call, _ in price_batch]
        calls: list[tuple[str, object]] = []
        oracle = self.oracle_calls
        if epoch is not None:
            t = epoch["trees"]
            calls.append(("root", oracle("post_root", epoch["root"].as_args(), epoch["sig_root"])))
            market = t.market_leaves_by_id()
            calls.append(("epoch_data", oracle("publish_epoch_data", epoch["data"].as_args(),
                                               [m.as_args() for m in market], epoch["sig_data"])
                          .with_gas(PUBLISH_GAS_BASE + PUBLISH_GAS_PER_LEAF * len(market))))
        trees, root_ts = (epoch["trees"], epoch["timestamp"]) if epoch else (self.trees, self.root_ts)
        # once the oracle has a verifier, every liquidation carries its witness against the root
        witnessed = len(decision.liquidate) > 0 and self._witness_needed()
        # a book holding an instrument whose leaf will not carry the oracle's mark (the oracle's
        # move bound stopped the mark short of the root's in a gap) waits for a root that does
        unbound = self._unbound_instruments(trees) if witnessed else None
        waits = np.zeros(len(self.book), dtype=bool)
        if unbound is not None and unbound.any():
            waits = (self.book.positions[:, unbound] != 0).any(axis=1)
        skipped = []
        ready = []   # (account index, witness)
        for i in decision.liquidate:
            a = self.book.addresses[i]
            if waits[i]:
                witness, why = None, "the root's marks are not yet the oracle's (a mark stepped short of it)"
            else:
                witness, why = self._witness(a, trees, root_ts) if witnessed else (b"", "")
            if witness is None:
                log.info("liquidation skipped", extra={"account": a, "reason": why})
                skipped.append({"account": a, "ok": False, "tx": None, "error": f"no witness: {why}", "block": None})
                continue
            ready.append((int(i), witness))
        # each slice goes to a liquidator account with room for every position of it and the
        # margin to hold it
        taker, fraction = self._assign_liquidators([i for i, _ in ready], trees, root_ts)
        self.blocked = set()
        pool: list[list[tuple[str, object]]] = [[] for _ in self.liquidators]
        fresh: set[int] = set()
        for (i, witness), k, f in zip(ready, taker, fraction, strict=True):
            a = self.book.addresses[i]
            if k >= 0 and k not in fresh:
                # the liquidator's own leaf first: past max_margin_basis_age the engine margins
                # new risk, a slice too, at the book's isolated bound
                fresh.add(k)
                calls.extend(self._own_leaf_call(k, trees, root_ts))
            if k < 0:
                why = (f"no liquidator account has room for its book (at most {MAX_LEGS} positions on "
                       f"{MAX_UNITS} underlyings each) and free margin: add a spare to liquidator_keys, "
                       f"fund one, or close the positions the keeper's accounts took")
                log.error("liquidation blocked", extra={"account": a, "reason": why})
                skipped.append({"account": a, "ok": False, "tx": None, "error": why, "block": None})
                self.blocked.add(a)
                continue
            # the payment limit at the marks the engine holds (this cycle's post, which the
            # oracle's move bound may have stopped short of the source's price in a gap)
            value = max(float(self.book.positions[i] @ chain_marks), 0.0) * \
                self.cfg.liquidation_max_payment_frac
            max_pay = to_wad(value, Rounding.UP, field="max_payment") + WAD  # 1 unit rounding slack
            nonce = int(self.book.state_nonce[i])
            # the part of the book the account can margin (the engine caps it, or raises it to
            # the whole book when a part would lower the margin ratio)
            f_wad = WAD if f >= 1 else max(int(f * WAD), 1)
            liquidate = self.engine_calls("liquidate", a, f_wad, max_pay, nonce, witness)
            gas = WITNESS_LIQUIDATE_GAS if witnessed else LIQUIDATE_GAS
            if prices or calls or k > 0:   # judged at the marks / root / leaf sent before it
                liquidate = liquidate.with_gas(gas)
            if trees is not None and trees.has_account(a) and self.book.basis_ts[i] < root_ts:
                leaf, proof = trees.account_proof(a)
                if leaf.state_nonce == nonce:
                    calls.append((f"apply_leaf:{a}", self.engine_calls("apply_leaf", leaf.as_args(), proof)
                                  .with_gas(APPLY_LEAF_GAS)))
                    liquidate = liquidate.with_gas(gas)
            (calls if k == 0 else pool[k]).append((f"liquidate:{a}", liquidate))
            self.inflight[a] = nonce
            self.taken_by[a] = int(k)
        if epoch is not None and _posts_marks(prices):
            price_results = self.executor.send_batch(prices)
            report.posted_prices = self._price_results(price_batch, price_results)
            results = []
            if report.posted_prices:   # ours, or the same signed marks relayed by anyone
                results = self.executor.send_batch(calls)
            else:
                # the marks did not land: the root, and the liquidations whose witnesses are
                # against it, wait for a cycle whose marks do
                log.warning("root held back: its marks were not posted", extra={"epoch": epoch["trees"].epoch})
                for label, _call in calls + [c for spare in pool for c in spare]:
                    if label.startswith("liquidate:"):
                        self.inflight.pop(label.split(":", 1)[1], None)   # not sent: retried next cycle
                pool = []
        else:
            results = self.executor.send_batch(prices + calls)
            report.posted_prices = self._price_results(price_batch, results)
        # the spares' liquidations, once the batch they are judged on (marks, root, leaf) is mined
        for k, spare in enumerate(pool):
            if spare:
                results = results + self.liquidators[k].send_batch(spare)
        out = skipped
        for res in results:
            if res.label in ("post_market_data", "post_index_prices"):
                continue
            if res.label == "root":
                self._count("root", res, epoch=epoch["trees"].epoch, accounts=len(epoch["trees"].account_leaves),
                            state_block=epoch["state_block"], reason=epoch["reason"])
                if (res.ok and not res.dry_run) or (not res.ok and self._chain_holds_root(epoch)):
                    # ours, or this very signed root relayed first by anyone: its leaves are ours
                    self._commit_epoch(epoch, report)
                elif not res.ok:
                    self._resume_epoch()   # another keeper's root, or params changed: re-read
                continue
            if res.label == "epoch_data" or res.label.startswith("apply_leaf:"):
                self._count("epoch_data" if res.label == "epoch_data" else "apply_leaf", res)
                continue
            account = res.label.split(":", 1)[1]
            entry = {"account": account, "ok": res.ok, "tx": res.tx_hash, "error": res.error,
                     "block": res.block}
            self._note_outcome(account, res)
            if res.ok:
                self.metrics.last_liquidation.set(time.time())
                for ev in self._decode_logs(res, "Liquidation"):
                    entry.update({k: ev[k] for k in ("fraction_wad", "slice_value_wad",
                                                     "discount_wad", "insurance_wad", "payment_wad")})
            details = {}
            if "fraction_wad" in entry:
                details = {"fraction": f"{entry['fraction_wad'] / WAD:.2%}",
                           "discount": round(entry["discount_wad"] / WAD, 2)}
            # a skip ("healthy", "nonce changed", "no positions": someone else got there) is
            # logged with its reason, never an error loop
            self._count("liquidation", res, **details)
            out.append(entry)
        return out

    def _note_outcome(self, account: str, res: TxResult) -> None:
        """A liquidation that went through clears the account's refusals and stays in flight
        until its event is read; a refused one is tried again after 1, 2, 4 ... 32 blocks plus
        `confirmations` (by then the event of whatever changed its book is read): not left in
        flight, which only an event naming the victim clears, and a refusal emits none. One
        refused for the liquidator's own reason (its margin, its book's room) is tried next
        from another account; it, and any refused twice in a row whatever the reason, keeps
        the alarm on while the account stays liquidatable."""
        if res.ok or res.dry_run:
            self.refused.pop(account, None)
            self.taken_by.pop(account, None)
            return
        nonce = self.inflight.pop(account, None)
        last = self.refused.get(account)
        n, barred = (last.count, last.barred) if last is not None and last.nonce == nonce else (0, frozenset())
        own = any(r in (res.error or "") for r in LIQUIDATOR_REFUSALS)
        if own and account in self.taken_by:
            barred = barred | {self.taken_by[account]}
        self.refused[account] = Refusal(nonce if nonce is not None else -1, n + 1,
                                        self.head + min(2 ** n, 32) + self.cfg.confirmations, own or n + 1 >= 2, barred)

    def _own_leaf_call(self, k: int, trees, root_ts: int) -> list[tuple[str, object]]:
        """`apply_leaf` of liquidator account `k`'s leaf in the current root, when it binds
        (its current nonce) and is newer than the account's margin basis; else nothing."""
        address = self.liquidators[k].account.address
        row = self.book.index.get(address)
        if trees is None or row is None or not trees.has_account(address) or self.book.basis_ts[row] >= root_ts:
            return []
        leaf, proof = trees.account_proof(address)
        if leaf.state_nonce != int(self.book.state_nonce[row]):
            return []
        return [(f"apply_leaf:{address}", self.engine_calls("apply_leaf", leaf.as_args(), proof).with_gas(APPLY_LEAF_GAS))]

    def _blocked_count(self, view: AccountsView) -> int:
        """Liquidatable books the keeper's accounts cannot take: none had room or margin this
        cycle, or the engine refused the last attempt for the liquidator's own reason."""
        blocked = set(self.blocked)
        for a, r in self.refused.items():
            i = self.book.index.get(a)
            if r.alarm and i is not None and view.onchain_liquidatable[i]:
                blocked.add(a)
        return len(blocked)

    def _assign_liquidators(self, victims: list[int], trees, root_ts: int) -> tuple[np.ndarray, np.ndarray]:
        """Per victim, the index in `self.liquidators` of the account its slice goes to (-1:
        none can) and the fraction to ask for (`assign_liquidators`): room at the engine's hard
        bound on a liquidator's book (not `max_positions`, which a liquidation ignores), free
        margin as the engine sees it now (equity minus IM), and each victim's IM once the leaf
        the batch applies is in (what a whole slice passes on), with 5% to spare."""
        if not victims:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = np.asarray([self.book.index.get(e.account.address, -1) for e in self.liquidators], dtype=np.int64)
        health = batch_call(self.w3, [self.dep.engine.functions.health(e.account.address) for e in self.liquidators])
        free = np.asarray([(int(h[0]) - int(h[2])) / WAD for h in health])   # equity - IM
        need = []
        for i in victims:
            im = float(self.book.im[i])
            a = self.book.addresses[i]
            if trees is not None and trees.has_account(a) and self.book.basis_ts[i] < root_ts:
                im = max(im, trees.account_proof(a)[0].initial_margin_wad / WAD)
            need.append(1.05 * im)
        barred = np.zeros((len(victims), len(self.liquidators)), dtype=bool)
        for r, i in enumerate(victims):
            refusal = self.refused.get(self.book.addresses[i])
            for k in refusal.barred if refusal is not None else ():
                barred[r, k] = True
        return assign_liquidators(self.book.positions, np.asarray(victims, dtype=np.int64), rows,
                                  np.asarray(self.table.underlying_index, dtype=np.int64),
                                  MAX_LEGS, MAX_UNITS, free=free, need=np.asarray(need), barred=barred)

    def _chain_holds_root(self, epoch: dict) -> bool:
        """Whether the engine's current epoch root is this signed one (epoch, both roots, time)."""
        t = epoch["trees"]
        oracle = self.dep.oracle.functions
        number, _ts, _count, accounts_root, market_root = oracle.epoch_root(self.dep.engine.address).call()
        return (int(number) == t.epoch and bytes(accounts_root) == t.accounts.root and bytes(market_root) == t.market.root
                and int(oracle.root_timestamp(self.dep.engine.address).call()) == epoch["timestamp"])

    def _witness_needed(self) -> bool:
        """Whether liquidations carry a witness: the oracle has a verifier (one-way)."""
        if not self._verifier_registered:
            self._verifier_registered = int(self.dep.oracle.functions.verifier().call(), 16) != 0
        return self._verifier_registered

    def _witness_marks_at(self, price_batch: list[tuple], now: int) -> int:
        """The signed time of the newest marks on chain once this cycle's batch lands (this
        cycle's post: `now`), when liquidations need a witness; 0 before a verifier is
        registered (no witness, no root needed)."""
        if not self._witness_needed():
            return 0
        if _posts_marks(price_batch):
            return now
        ids = [int(i) for i in self.table.ids]
        return max(batch_call(self.w3, [self.dep.oracle.functions.market_updated_at(i) for i in ids]), default=0)

    def _unbound_instruments(self, trees, cycle_leaf_marks: dict[int, int] | None = None) -> np.ndarray | None:
        """Per instrument (table order): whether the root's market leaf will not carry the
        oracle's mark once this cycle's posts land (the engine refuses such a witness); None
        when not known (no root, or the oracle's marks not yet read or posted). With
        `cycle_leaf_marks` (this cycle's leaves, when it posts no marks of its own): only
        where a root of this cycle would carry the oracle's mark (a new root helps there)."""
        chain = self.sending_marks_wad if self.sending_marks_wad is not None else self.posted_marks_wad
        if trees is None or chain is None:
            return None
        out = self._marks_differ({m.instrument_id: m.mark_wad for m in trees.market_leaves_by_id()}, chain)
        if cycle_leaf_marks is not None:
            out &= ~self._marks_differ(cycle_leaf_marks, chain)
        return out

    def _marks_differ(self, leaf: dict[int, int], chain: dict[int, int]) -> np.ndarray:
        return np.asarray([int(i) in leaf and int(i) in chain and leaf[int(i)] != chain[int(i)]
                           for i in self.table.ids], dtype=bool)

    def _witness(self, account: str, trees, root_ts: int) -> tuple[bytes | None, str]:
        """The account's liquidation witness against the epoch `trees` (signed at `root_ts`):
        its stored book in storage order with the binding scenarios, or (None, why) when no
        witness exists on chain (no root yet, a leg without a market leaf: expired, settle it
        first)."""
        if trees is None:
            return None, "no epoch root yet"
        view = call_named(self.dep.engine, "account", account)
        book = [(int(p[0]), int(p[1])) for p in view["positions"]]
        try:
            return liquidation_witness(self.params, self.dep.engine.address, book, trees, root_ts).encode(), ""
        except WitnessError as e:
            return None, str(e)

    def _commit_epoch(self, epoch: dict, report: CycleReport) -> None:
        """The root is mined: its file (every leaf, served as proofs) and the leaves it gives."""
        t = epoch["trees"]
        # proofs are served from memory at once; the file (~2 MB per 10,000 accounts) is
        # written off the cycle's path, one at a time
        self.epochs.remember(t)
        if self._writer is not None:
            self._writer.join()
        self._writer = threading.Thread(target=self.epochs.write, name="epoch-file", daemon=False,
                                        args=(t, epoch["root"], epoch["sig_root"]),
                                        kwargs={"state_block": epoch["state_block"]})
        self._writer.start()
        self.trees = t
        self.epoch = t.epoch
        self.root_ts = epoch["timestamp"]
        rows = epoch["rows"]
        self.book.set_leaves(rows, epoch["leaf_nonce"][rows], epoch["leaf_im"][rows], epoch["leaf_mm"][rows])
        report.epoch, report.epoch_reason = t.epoch, epoch["reason"]
        report.leaves, report.state_block = len(t.account_leaves), epoch["state_block"]

    # ---- actions ----
    def publish_prices(self, marks, rates, spot, now, live) -> bool:
        """Post marks + rates (when due), index prices and due settlement prices. `rates`:
        compute()'s `rates_wad` (4 lists of exact WAD integers per instrument)."""
        batch = self._price_calls(marks, rates, spot, now)
        results = self.executor.send_batch([(label, call) for label, call, _ in batch])
        posted = self._price_results(batch, results)
        self._post_settlements(now)
        return posted

    def _price_calls(self, marks, rates, spot, now, exact: dict[int, int] | None = None) -> list[tuple]:
        """(label, call, on_result) of the due market-data and index posts, signed, unsent:
        the cycle sends them in one batch with its root and liquidations. `exact`: the WAD
        marks by id that the cycle's market leaves carry (posted as they are)."""
        if any(not isinstance(v, int) for col in rates for v in col):
            raise TypeError("publish_prices: rates must be compute()['rates_wad'] (WAD integers)")
        return [c for c in (self._market_data_call(marks, rates, now, exact, spot=spot), self._index_call(spot, now))
                if c]

    def _price_results(self, batch: list[tuple], results: list[TxResult]) -> bool:
        """Run each price post's on_result; True when new marks were posted."""
        by_label = {r.label: r for r in results}
        posted = False
        for label, _call, on_result in batch:
            if label in by_label:
                posted |= bool(on_result(by_label[label]))
        return posted

    def _market_data_call(self, marks, rates, now, exact: dict[int, int] | None = None, force: bool = False,
                          spot=None):
        # `spot`: what the marks were priced at, where a gap's next step starts (None: not known)
        # rates count as prices: a re-priced root's leaves come with re-priced rates, and the
        # engine caps a raise-only leaf at the book's isolated bound at the posted rates, so
        # rates that lag the root would hold that leaf down
        rate_values = np.asarray([v for col in rates for v in col], dtype=np.float64) / WAD
        if not force and not prices_due(np.concatenate([np.asarray(marks, dtype=np.float64), rate_values]),
                                        np.concatenate([self.posted_marks, self.posted_rates]), self.posted_at,
                                        now, self.cfg.price_move_frac, self.cfg.price_max_age_s):
            return None
        if now <= self.posted_at:
            return None
        ids = [int(i) for i in self.table.ids]
        # the oracle bounds each mark's move (RiskOracle._check_mark_move): step toward the
        # target, the rest next cycle; a margin of 0.1% keeps rounding inside the bound
        prev_marks, prev_mm, fresh = self._onchain_marks(ids)
        target = np.asarray(marks, dtype=np.float64)
        marks = clamp_moves(target, prev_marks, 0.999 * self.max_index_move_bps / 10_000,
                            floor=0.999 * prev_mm, fresh=fresh)
        # a mark the bound did not stop is its leaf's exact integer (a float round trip of a
        # 23-digit WAD loses digits, and the engine compares them to the wei)
        exact = exact or {}
        mark_w = [exact[i] if i in exact and c == t else w
                  for i, c, t, w in zip(ids, marks, target, to_wad_list(marks, Rounding.NEAREST, field="marks"),
                                        strict=True)]
        zeros = [0] * len(ids)
        r = [list(rates[k]) for k in range(4)]   # exact WAD integers (ExactMargins)
        deadline = now + self.cfg.signature_validity_s
        sh = market_data_struct_hash(ids, mark_w, zeros, *r, self.params_hash, now, deadline)
        sigs = self.signers.sign([typed_digest(self.domain, sh)])[0]
        data = (ids, mark_w, zeros, *r, self.params_hash, now, deadline)
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.where(fresh | (prev_marks == 0), 0.0, np.abs(marks / prev_marks - 1))
        sent = np.asarray(marks, dtype=np.float64).copy()
        self.sending_marks = sent
        sent_wad = dict(zip(ids, mark_w, strict=True))
        self.sending_marks_wad = sent_wad
        priced_at = None if spot is None else np.asarray(spot, dtype=np.float64).copy()

        def on_result(res: TxResult) -> bool:
            self._count("market_data", res, instruments=len(ids),
                        max_mark_move=f"{float(moved.max()) if len(moved) else 0.0:.2%}")
            # refused because anyone may post signed data: an outsider who relays this very
            # message first has posted it for us (a victim must not stall its root that way)
            landed = res.ok or (not res.dry_run and self._chain_holds_marks(ids, mark_w, now))
            if landed and not res.dry_run:
                self.posted_marks = sent
                self.posted_marks_wad = sent_wad
                self.posted_spot = priced_at
                self.posted_rates = rate_values
                self.posted_at = now
            return landed

        return "post_market_data", self.oracle_calls("post_market_data", data, sigs), on_result

    def _chain_holds_marks(self, ids: list[int], marks_wad: list[int], signed_at: int) -> bool:
        """Whether the oracle holds exactly these marks, all signed at `signed_at`."""
        for k in range(0, len(ids), 32):
            m, _f, _oldest = self.dep.oracle.functions.marks(ids[k:k + 32]).call()
            at = batch_call(self.w3, [self.dep.oracle.functions.market_updated_at(i) for i in ids[k:k + 32]])
            if list(m) != marks_wad[k:k + 32] or any(a != signed_at for a in at):
                return False
        return True

    def _onchain_marks(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Marks, larger per-unit MM rate and never-posted flags as the oracle holds them now
        (other keepers may have posted since our last update)."""
        updated = batch_call(self.w3, [self.dep.oracle.functions.market_updated_at(i) for i in ids])
        fresh = np.asarray([u == 0 for u in updated])
        posted = [i for i, u in zip(ids, updated, strict=True) if u]
        marks = np.zeros(len(ids))
        mm = np.zeros(len(ids))
        if posted:
            # one round trip: every priced id's rates, then its marks 32 ids per call
            oracle = self.dep.oracle.functions
            chunks = [posted[k:k + 32] for k in range(0, len(posted), 32)]
            replies = batch_call(self.w3, [oracle.rates(i) for i in posted] + [oracle.marks(c) for c in chunks])
            rates = replies[:len(posted)]
            values = [m for marks_, _f, _at in replies[len(posted):] for m in marks_]
            where = ~fresh
            marks[where] = np.asarray(values, dtype=object).astype(np.float64) / WAD
            mm[where] = [max(r[0][2], r[0][3]) / WAD for r in rates]
        return marks, mm, fresh

    def _index_call(self, spot, now):
        """Post index prices when one moved by more than `price_move_frac` from what the
        oracle holds, or the oracle's are older than `price_max_age_s` (a heartbeat)."""
        if now <= self.index_posted_at:
            return None
        names = [u.encode().ljust(32, b"\0") for u in self.underlyings]
        onchain = batch_call(self.w3, [self.dep.oracle.functions.index_price(nm) for nm in names])
        current = np.asarray([p / WAD for p, _at in onchain])
        oldest = min(at for _p, at in onchain)
        with np.errstate(divide="ignore", invalid="ignore"):
            moves = np.where(current > 0, np.abs(spot / current - 1), np.inf)
        if (current == 0).any():
            reason = "first post"
        elif moves.max() > self.cfg.price_move_frac:
            reason = f"{self.underlyings[int(moves.argmax())]} moved {moves.max():.2%}"
        elif now - oldest >= self.cfg.price_max_age_s:
            reason = f"heartbeat ({now - oldest} s since the last post)"
        else:
            log.debug("index prices unchanged: not posted", extra={"max_move": round(float(moves.max()), 6)})
            return None
        # the oracle bounds each index move: step toward the target, the rest next cycle
        target = clamp_moves(spot, current, 0.999 * self.max_index_move_bps / 10_000)
        prices = to_wad_list(target, Rounding.NEAREST, field="index")
        deadline = now + self.cfg.signature_validity_s
        digest = typed_digest(self.domain, index_prices_struct_hash(names, prices, now, deadline))
        sigs = self.signers.sign([digest])[0]

        def on_result(res: TxResult) -> bool:
            self._count("index", res, reason=reason,
                        **{u: round(float(p), 2) for u, p in zip(self.underlyings, target, strict=True)})
            if res.ok:
                self.index_posted_at = now
            return False

        return "post_index_prices", self.oracle_calls("post_index_prices", (names, prices, now, deadline), sigs), on_result

    def _post_settlements(self, now) -> None:
        t = self.table
        due = np.flatnonzero((t.kind != PERPETUAL) & (t.expiry > 0) & (t.expiry <= now)
                             & (self.settlement == 0))
        for i in due:
            expiry = int(t.expiry[i])
            try:  # a live source knows only the times it was read at
                price = float(self.source.spot(expiry)[t.underlying_index[i]])
            except Exception as exc:  # noqa: BLE001 - one instrument's price, not the cycle
                log.warning("settlement price unknown: not posted",
                            extra={"instrument": int(t.ids[i]), "expiry": expiry, "reason": str(exc)[:200]})
                continue
            price_w = to_wad(price, Rounding.NEAREST, field="settlement_price")
            deadline = now + self.cfg.signature_validity_s
            digest = typed_digest(self.domain, settlement_price_struct_hash(
                int(t.ids[i]), price_w, expiry, deadline))
            sigs = self.signers.sign([digest])[0]
            res = self.executor.send(f"settlement_price:{int(t.ids[i])}",
                                     self.dep.oracle.functions.post_settlement_price(
                                         (int(t.ids[i]), price_w, expiry, deadline), sigs))
            self._count("settlement_price", res, price=round(price, 2), expiry=expiry)
            if res.ok or "already final" in res.error:
                self.settlement[i] = self.dep.oracle.functions.settlement_price(int(t.ids[i])).call() / WAD

    def _push_forfeited(self, report: CycleReport, head: int) -> None:
        """The signer bond's forfeited balance to the insurance fund, when at the minimum
        (last in the cycle: a wait for its receipt never delays a liquidation)."""
        push = self.forfeits.push(head)
        if push is None:
            return
        report.forfeited, report.forfeited_pushed = push.forfeited, push.pushed
        if push.result is not None:
            self._count("push_forfeited", push.result, forfeited=push.forfeited, amount=push.pushed)

    def _settle(self, decision: Plan) -> int:
        calls = [(f"settle:{self.book.addresses[a]}:{int(self.table.ids[k])}",
                  self.engine_calls("settle", self.book.addresses[a], int(self.table.ids[k])))
                 for a, k in decision.settle]
        results = self.executor.send_batch(calls)
        for r in results:
            self._count("settlement", r)
        return sum(r.ok for r in results)

    # ---- helpers ----
    def _decode_logs(self, res: TxResult, name: str) -> list[dict]:
        event = getattr(self.dep.engine.events, name)()
        out = []
        for raw in res.logs:
            try:
                out.append(dict(event.process_log(raw)["args"]))
            except Exception:  # noqa: BLE001 - other events in the same receipt
                continue
        return out

    def _count(self, kind: str, res: TxResult, **details) -> None:
        """Count an action's outcome and log it: one line per transaction, with the account
        (from the label `action:account[:...]`), tx hash, gas and block."""
        outcome = "dry_run" if res.dry_run else ("ok" if res.ok else "skipped" if res.error else "failed")
        self.metrics.actions.labels(kind=kind, outcome=outcome).inc()
        extra = {"action": kind, "outcome": outcome}
        for part in res.label.split(":")[1:]:  # "settle:0xabc:7", "settlement_price:7"
            extra["account" if part.startswith("0x") else "instrument"] = part
        extra.update(details)
        if res.tx_hash:
            extra.update(tx=res.tx_hash, gas=res.gas_used, block=res.block)
        elif res.dry_run:
            extra["gas"] = res.gas_used
        if res.error and not res.ok:
            extra["reason"] = res.error[:200]
        log.info(f"{kind} {outcome}", extra=extra)

    def _update_metrics(self, report: CycleReport, view: AccountsView | None, now: int, seconds: float) -> None:
        m = self.metrics
        m.processed_block.set(self.indexer.cursor())
        m.accounts.set(report.accounts)
        m.unhealthy.set(report.unhealthy)
        m.epoch.set(self.epoch)
        m.root_age.set(float(now - self.root_ts) if self.root_ts else 0.0)
        m.cycle_seconds.set(seconds)
        m.last_cycle.set(time.time())

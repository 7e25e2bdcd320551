"""The keeper loop: one `cycle()` per new block.

read (events -> touched accounts -> re-read their books) -> prices (source -> marks, vols)
-> compute (vectorised risk engine over every account) -> decide (strategy.plan, pure)
-> act (post market data, liquidate, sign + post attestations, settle) -> metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from offchain.chain.contracts import (
    WAD,
    Deployment,
    InstrumentTable,
    batch_call,
    check_account_view,
    read_account_list,
    read_accounts,
    read_instruments,
)
from offchain.chain.risk_inputs import live_instruments, risk_engine
from offchain.chain.wad import Rounding, to_wad, to_wad_list
from offchain.errors import UserError
from offchain.keeper.book import KeeperBook
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Encoder, Executor, TxResult
from offchain.keeper.indexer import Indexer
from offchain.keeper.metrics import KeeperMetrics
from offchain.keeper.price_guard import PriceCheck, PriceGuard
from offchain.keeper.prices import PriceSource, instrument_marks
from offchain.keeper.signing import (
    Attestation,
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
    attested_margins,
    clamp_moves,
    plan,
    prices_due,
)
from offchain.risk import Params, RiskEngine
from offchain.risk.exact import ExactMargins
from offchain.risk.pricing import CALL, PERPETUAL, PUT

log = logging.getLogger("netmargin.keeper")


@dataclass
class CycleReport:
    block: int
    timestamp: int
    accounts: int
    unhealthy: int
    attested: int = 0
    liquidated: list[dict] = field(default_factory=list)
    settled: int = 0
    posted_prices: bool = False
    held: str = ""  # why nothing was signed this cycle (untrusted prices), "" normally
    seconds: dict[str, float] = field(default_factory=dict)
    results: list[TxResult] = field(default_factory=list)


class Keeper:
    def __init__(self, cfg: KeeperConfig, dep: Deployment, signers: Signers, executor: Executor,
                 store: StateStore, params: Params, source: PriceSource | None,
                 metrics: KeeperMetrics | None = None):
        self.cfg = cfg
        self.dep = dep
        self.w3 = dep.w3
        self.signers = signers
        self.executor = executor
        self.store = store
        self.params = params
        self.params_hash = bytes.fromhex(params.hash.removeprefix("0x"))
        self.source = source
        self.metrics = metrics or KeeperMetrics()
        self.indexer = Indexer(dep, store, cfg.start_block, cfg.confirmations, cfg.reorg_depth)
        self.domain = oracle_domain(self.w3.eth.chain_id, dep.oracle.address)
        self.engine_calls = Encoder(dep.engine)
        self.policy = Policy(attest_move_frac=cfg.attest_move_frac, attest_move_abs=cfg.attest_move_abs,
                             attest_max_age_s=cfg.attest_max_age_s, liquidate=cfg.liquidate,
                             settle=cfg.settle)
        self.underlyings: list[str] = list(source.underlyings) if source else []
        self.table: InstrumentTable | None = None
        self.book = KeeperBook(0)
        self.posted_marks = np.zeros(0)
        self.posted_at = 0
        self.index_posted_at = 0
        self.settlement = np.zeros(0)  # settlement price per instrument (0 = not yet)
        self.inflight: dict[str, int] = {}  # account -> state nonce of a liquidation attempt
        self.last_report: CycleReport | None = None
        self.last_spot = np.zeros(0)
        self.last_vol = np.zeros(0)
        self.guard = PriceGuard(self.underlyings, cfg.price_max_jump_frac, cfg.price_confirm_cycles)
        self.last_equity = np.zeros(0)
        self.last_mm = np.zeros(0)

    # ---- startup: resume from the store, re-read every book once ----
    def startup(self) -> None:
        check_account_view(self.dep.engine)
        self.check_signers()
        self._refresh_instruments()
        accounts = read_account_list(self.dep)
        self._refresh_accounts(accounts)
        # attested state nonces come from AttestationPosted events (the view has no nonce)
        for e in self.store.events():
            if e.name == "AttestationPosted":
                self._note_attestation(e.args)
        self.max_index_move_bps = self.dep.oracle.functions.max_index_move_bps().call()
        # a restart trusts what the oracle already holds, not the first print it sees
        self.guard.seed(self._onchain_index())
        self.signers.warm_up()
        log.info("keeper started", extra={"accounts": len(self.book), "instruments": len(self.table),
                                          "resume_block": self.indexer.cursor(),
                                          "signers": self.signers.addresses,
                                          "gas_key": self.executor.account.address,
                                          "dry_run": self.cfg.dry_run})

    def check_signers(self) -> None:
        """Refuse to start with signing keys the oracle does not accept: every post and
        attestation would revert, and a keeper that only logs skips looks healthy."""
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

    def _refresh_accounts(self, addresses) -> None:
        addresses = sorted(set(addresses))
        if addresses:
            self.book.apply_views(addresses, read_accounts(self.dep, addresses))

    def _note_attestation(self, args: dict, live: bool = False) -> None:
        """An AttestationPosted event. At startup only its state nonce is taken (the book was
        just read from chain); live, its values are applied too, which is exactly what the
        engine stored (attested IM/MM/time, pending cleared), so the account needs no re-read."""
        from web3 import Web3
        i = self.book.add_accounts([Web3.to_checksum_address(args["account"])])[0]
        self.book.att_nonce[i] = int(args["state_nonce"])
        if live:
            idx = np.asarray([i])
            self.book.mark_attested(idx, self.book.att_nonce[idx],
                                    np.asarray([int(args["initial_margin_wad"]) / WAD]),
                                    np.asarray([int(args["maintenance_margin_wad"]) / WAD]),
                                    int(args["timestamp"]))

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
        for e in sync.events:
            if e.name == "AttestationPosted":
                self._note_attestation(e.args, live=True)
        if any(e.name == "InstrumentListed" for e in sync.events) or self.table is None or \
                self.dep.registry.functions.instrument_count().call() != len(self.table):
            self._refresh_instruments()
        self._refresh_accounts(sync.touched)
        for a in sync.touched:
            self.inflight.pop(a, None)
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
        else:
            # holding: sign and post nothing; judge liquidations at the chain's own marks
            report.held = check.reason
            log.warning("holding: untrusted prices", extra={"reason": check.reason})
            if self.guard.last is None or len(self.last_vol) == 0:
                self._update_metrics(report, None, now, time.perf_counter() - t0)
                return report
            spot, vol, marks = self.guard.last, self.last_vol, self.posted_marks
        live = self._live(now)
        risk = self.compute(marks, spot, vol, now, live)
        self.last_spot, self.last_vol = spot, vol
        self.last_equity, self.last_mm = risk["equity"], risk["mm"]
        timing["compute"] = time.perf_counter() - t1

        # post prices first: liquidations and attestations below are judged at these marks
        if self.cfg.post_prices and self.source is not None and check.ok:
            report.posted_prices = self.publish_prices(marks, risk["rates_wad"], spot, now, live)
        elif self.source is None:
            self.posted_marks = marks  # oracle mode: what we read is what the engine uses

        view = self._accounts_view(risk, now)
        settleable = (self.table.expiry > 0) & (self.table.expiry <= now) & (self.settlement > 0)
        decision = plan(view, now, self.policy, self.book.positions, settleable_instruments=settleable)
        report.unhealthy = decision.unhealthy

        # act
        t2 = time.perf_counter()
        report.liquidated = self._liquidate(decision, risk)
        report.attested, sign_s = self._attest(decision, risk, now) if check.ok else (0, 0.0)
        timing["sign"] = sign_s
        report.settled = self._settle(decision)
        timing["act"] = time.perf_counter() - t2 - sign_s
        timing["total"] = time.perf_counter() - t0
        report.seconds = timing

        self._update_metrics(report, view, now, timing["total"])
        self.last_report = report
        log.info("cycle", extra={"block": head, "accounts": report.accounts,
                                 "unhealthy": report.unhealthy, "attested": report.attested,
                                 "liquidated": len(report.liquidated), "settled": report.settled,
                                 "prices": report.posted_prices,
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

    def _live(self, now: int) -> np.ndarray:
        return live_instruments(self.table, now)

    # ---- risk ----
    def compute(self, marks: np.ndarray, spot: np.ndarray, vol: np.ndarray, now: int,
                live: np.ndarray) -> dict:
        n_acc = len(self.book)
        pos = self.book.positions
        value = pos @ marks if n_acc else np.zeros(0)
        im = np.zeros(n_acc)
        mm = np.zeros(n_acc)
        n_inst = len(self.table)
        rates = np.zeros((4, n_inst))
        rates_wad = [[0] * n_inst for _ in range(4)]
        exact = None
        if live.any():
            engine = self._risk_engine(spot, vol, now, live)
            if n_acc:
                sub = sp.csr_matrix(pos[:, live])
                im, mm, _ = engine.margins(sub)   # float32 screening of every account
            # what is signed (rates here, attested margins in _attest) is exact integer maths
            exact = ExactMargins(engine)
            live_idx = np.flatnonzero(live)
            for k, col in enumerate(exact.rates_wad()):
                for j, v in zip(live_idx, col, strict=True):
                    rates_wad[k][j] = v
            rates = np.asarray(rates_wad, dtype=object).astype(np.float64) / WAD
        return {"value": value, "equity": self.book.view("cash") + value, "im": im, "mm": mm,
                "marks": marks, "rates": rates, "rates_wad": rates_wad, "exact": exact,
                "live": live}

    def exact_margins(self, risk: dict, idx: np.ndarray) -> tuple[list[int], list[int]]:
        """(IM, MM) in WAD of the accounts `idx`, exactly as attested (see attested_margins)."""
        return attested_margins(risk["exact"], risk["live"], self.book.sizes_wad, idx)

    def _risk_engine(self, spot, vol, now, live) -> RiskEngine:
        return risk_engine(self.params, self.table, self.underlyings, spot, vol, now, live)

    def _accounts_view(self, risk: dict, now: int) -> AccountsView:
        b = self.book
        has = np.abs(b.positions).sum(axis=1) > 0
        chain_equity = b.view("cash") + (b.positions @ self.posted_marks if len(b) else 0.0)
        chain_mm = b.view("att_mm") + b.view("pend_mm")
        inflight = np.zeros(len(b), dtype=bool)
        for a, nonce in self.inflight.items():
            i = b.index.get(a)
            if i is not None and b.state_nonce[i] == nonce:
                inflight[i] = True
        return AccountsView(
            state_nonce=b.view("state_nonce"), has_positions=has, equity=risk["equity"],
            im=risk["im"], mm=risk["mm"], att_nonce=b.view("att_nonce"), att_im=b.view("att_im"),
            att_mm=b.view("att_mm"), att_timestamp=b.view("att_ts"),
            onchain_liquidatable=has & (chain_equity < chain_mm), inflight=inflight)

    # ---- actions ----
    def publish_prices(self, marks, rates, spot, now, live) -> bool:
        """Post marks + rates (when due), index prices and due settlement prices. `rates`:
        compute()'s `rates_wad` (4 lists of exact WAD integers per instrument)."""
        if any(not isinstance(v, int) for col in rates for v in col):
            raise TypeError("publish_prices: rates must be compute()['rates_wad'] (WAD integers)")
        posted = self._post_market_data(marks, rates, now, live)
        self._post_index(spot, now)
        self._post_settlements(now)
        return posted

    def _post_market_data(self, marks, rates, now, live) -> bool:
        if not prices_due(marks, self.posted_marks, self.posted_at, now,
                          self.cfg.price_move_frac, self.cfg.price_max_age_s):
            return False
        if now <= self.posted_at:
            return False
        ids = [int(i) for i in self.table.ids]
        # the oracle bounds each mark's move (RiskOracle._check_mark_move): step toward the
        # target, the rest next cycle; a margin of 0.1% keeps rounding inside the bound
        prev_marks, prev_mm, fresh = self._onchain_marks(ids)
        marks = clamp_moves(np.asarray(marks, dtype=np.float64), prev_marks,
                            0.999 * self.max_index_move_bps / 10_000, floor=0.999 * prev_mm, fresh=fresh)
        mark_w = to_wad_list(marks, Rounding.NEAREST, field="marks")
        zeros = [0] * len(ids)
        r = [list(rates[k]) for k in range(4)]   # exact WAD integers (ExactMargins)
        deadline = now + self.cfg.attest_validity_s
        sh = market_data_struct_hash(ids, mark_w, zeros, *r, self.params_hash, now, deadline)
        sigs = self.signers.sign([typed_digest(self.domain, sh)])[0]
        data = (ids, mark_w, zeros, *r, self.params_hash, now, deadline)
        res = self.executor.send("post_market_data", self.dep.oracle.functions.post_market_data(data, sigs))
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.where(fresh | (prev_marks == 0), 0.0, np.abs(marks / prev_marks - 1))
        self._count("market_data", res, instruments=len(ids),
                    max_mark_move=f"{float(moved.max()) if len(moved) else 0.0:.2%}")
        if res.ok and not res.dry_run:
            self.posted_marks = np.asarray(marks, dtype=np.float64).copy()
            self.posted_at = now
        return res.ok

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

    def _post_index(self, spot, now) -> None:
        """Post index prices when one moved by more than `price_move_frac` from what the
        oracle holds, or the oracle's are older than `price_max_age_s` (a heartbeat)."""
        if now <= self.index_posted_at:
            return
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
            return
        # the oracle bounds each index move: step toward the target, the rest next cycle
        target = clamp_moves(spot, current, 0.999 * self.max_index_move_bps / 10_000)
        prices = to_wad_list(target, Rounding.NEAREST, field="index")
        deadline = now + self.cfg.attest_validity_s
        digest = typed_digest(self.domain, index_prices_struct_hash(names, prices, now, deadline))
        sigs = self.signers.sign([digest])[0]
        res = self.executor.send("post_index_prices", self.dep.oracle.functions.post_index_prices(
            (names, prices, now, deadline), sigs))
        self._count("index", res, reason=reason,
                    **{u: round(float(p), 2) for u, p in zip(self.underlyings, target, strict=True)})
        if res.ok:
            self.index_posted_at = now

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
            deadline = now + self.cfg.attest_validity_s
            digest = typed_digest(self.domain, settlement_price_struct_hash(
                int(t.ids[i]), price_w, expiry, deadline))
            sigs = self.signers.sign([digest])[0]
            res = self.executor.send(f"settlement_price:{int(t.ids[i])}",
                                     self.dep.oracle.functions.post_settlement_price(
                                         (int(t.ids[i]), price_w, expiry, deadline), sigs))
            self._count("settlement_price", res, price=round(price, 2), expiry=expiry)
            if res.ok or "already final" in res.error:
                self.settlement[i] = self.dep.oracle.functions.settlement_price(int(t.ids[i])).call() / WAD

    def _liquidate(self, decision: Plan, risk: dict) -> list[dict]:
        calls = []
        for i in decision.liquidate:
            a = self.book.addresses[i]
            # the payment limit at the marks the engine holds (this cycle's post, which the
            # oracle's move bound may have stopped short of the source's price in a gap)
            value = max(float(self.book.positions[i] @ self.posted_marks), 0.0) * \
                self.cfg.liquidation_max_payment_frac
            max_pay = to_wad(value, Rounding.UP, field="max_payment") + WAD  # 1 unit rounding slack
            nonce = int(self.book.state_nonce[i])
            calls.append((f"liquidate:{a}", self.engine_calls("liquidate", a, WAD, max_pay, nonce)))
            self.inflight[a] = nonce
        out = []
        for res in self.executor.send_batch(calls):
            account = res.label.split(":", 1)[1]
            entry = {"account": account, "ok": res.ok, "tx": res.tx_hash, "error": res.error,
                     "block": res.block}
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

    def _attest(self, decision: Plan, risk: dict, now: int) -> tuple[int, float]:
        b = self.book
        idx = decision.attest[b.att_ts[decision.attest] < now]  # timestamps strictly increase
        if len(idx) == 0:
            return 0, 0.0
        deadline = now + self.cfg.attest_validity_s
        t0 = time.perf_counter()
        im_wad, mm_wad = self.exact_margins(risk, idx)
        atts = []
        for k, i in enumerate(idx):
            atts.append(Attestation(
                engine=self.dep.engine.address, account=b.addresses[i], state_nonce=int(b.state_nonce[i]),
                position_value_wad=to_wad(float(risk["value"][i]), Rounding.DOWN, field="position_value"),
                initial_margin_wad=im_wad[k], maintenance_margin_wad=mm_wad[k],
                params_hash=self.params_hash, timestamp=now, deadline=deadline))
        sigs = self.signers.sign([typed_digest(self.domain, a.struct_hash()) for a in atts])
        sign_s = time.perf_counter() - t0
        calls = [(f"attest:{a.account}", self.engine_calls("post_attestation", a.as_tuple(), s))
                 for a, s in zip(atts, sigs, strict=True)]
        results = self.executor.send_batch(calls)
        ok = np.asarray([r.ok and not r.dry_run for r in results])
        for r in results:
            self._count("attestation", r)
        done = idx[ok]
        b.mark_attested(done, b.state_nonce[done], np.asarray(im_wad, dtype=object)[ok].astype(float) / WAD,
                        np.asarray(mm_wad, dtype=object)[ok].astype(float) / WAD, now)
        return int(ok.sum()), sign_s

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
        if view is not None:
            ages = now - view.att_timestamp[view.has_positions]
            m.attestation_age_max.set(float(ages.max()) if len(ages) else 0.0)
        m.cycle_seconds.set(seconds)
        m.last_cycle.set(time.time())

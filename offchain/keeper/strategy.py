"""What the keeper should do this cycle: pure functions over numpy arrays, no I/O.

Inputs are arrays over accounts (index i = the book's i-th account) and instruments; the
output is a `Plan` of indices. The bot turns a plan into transactions. Keeping this pure is
what lets tests/keeper check every rule without a chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Policy:
    attest_move_frac: float = 0.05
    attest_move_abs: float = 1.0
    attest_max_age_s: int = 3600
    # re-sign this long before the age limit so an attestation never lapses between cycles
    attest_refresh_margin_s: int = 60
    # each attestation is a ~57k-gas transaction: cap per cycle (about a block's worth), most urgent first
    max_attestations_per_cycle: int = 2000
    max_liquidations_per_cycle: int = 200
    liquidate: bool = True
    settle: bool = True


@dataclass(frozen=True)
class AccountsView:
    """Everything known about each account, aligned by index."""

    state_nonce: np.ndarray  # int64, the engine's state_nonce per account
    has_positions: np.ndarray  # bool
    # fresh off-chain results at the keeper's current prices
    equity: np.ndarray  # float, cash + sum(size * mark)
    im: np.ndarray
    mm: np.ndarray
    # last attestation stored on chain (nonce -1 / timestamp 0 when never attested)
    att_nonce: np.ndarray
    att_im: np.ndarray
    att_mm: np.ndarray
    att_timestamp: np.ndarray
    # the engine's own verdict (equity < attested MM + pending) for each account
    onchain_liquidatable: np.ndarray
    # liquidations sent and not yet resolved: not retried until the book moves
    inflight: np.ndarray


@dataclass(frozen=True)
class Plan:
    attest: np.ndarray  # account indices to sign attestations for, most urgent first
    liquidate: np.ndarray  # account indices to liquidate, largest shortfall first
    settle: np.ndarray  # (k, 2) array of (account index, instrument index)
    post_settlement: np.ndarray  # instrument indices needing a settlement price
    unhealthy: int  # accounts with fresh equity < fresh MM

    @property
    def empty(self) -> bool:
        return not (len(self.attest) or len(self.liquidate) or len(self.settle)
                    or len(self.post_settlement))


def attestation_urgency(view: AccountsView, now: int, policy: Policy) -> np.ndarray:
    """A score per account: > 0 means an attestation is due; higher means more urgent."""
    book_changed = view.state_nonce != view.att_nonce
    never = view.att_nonce < 0
    mm_move = np.abs(view.mm - view.att_mm)
    im_move = np.abs(view.im - view.att_im)
    threshold_mm = np.maximum(policy.attest_move_frac * view.att_mm, policy.attest_move_abs)
    threshold_im = np.maximum(policy.attest_move_frac * view.att_im, policy.attest_move_abs)
    moved = (mm_move > threshold_mm) | (im_move > threshold_im)
    age = now - view.att_timestamp
    ageing = view.has_positions & (age > policy.attest_max_age_s - policy.attest_refresh_margin_s)
    unhealthy = view.equity < view.mm
    # the chain thinks it is liquidatable but fresh risk says it is not: a fresh attestation
    # rescues it; and the reverse makes a truly unhealthy account liquidatable
    disagree = view.onchain_liquidatable != unhealthy

    # a flat account that was never attested needs nothing; one that traded and closed does
    due = (book_changed & (view.has_positions | ~never)) | (view.has_positions & moved) | ageing
    due |= disagree & view.has_positions
    rel_move = mm_move / np.maximum(view.att_mm, policy.attest_move_abs)
    score = (1.0 + rel_move + 10.0 * (disagree | book_changed)
             + 100.0 * (unhealthy & ~view.onchain_liquidatable))
    return np.where(due, score, 0.0)


def plan(view: AccountsView, now: int, policy: Policy,
         positions: np.ndarray | None = None,
         settleable_instruments: np.ndarray | None = None,
         unsettled_expired: np.ndarray | None = None) -> Plan:
    """Decide this cycle's actions.

    positions: (accounts x instruments) sizes, needed for settlement; settleable_instruments:
    bool per instrument (expired and a settlement price is on chain); unsettled_expired: bool
    per instrument (expired, no settlement price yet).
    """
    unhealthy = view.equity < view.mm

    liquidate = np.empty(0, dtype=np.int64)
    if policy.liquidate:
        # both the chain (so the transaction succeeds) and fresh risk (so it is deserved)
        mask = view.onchain_liquidatable & unhealthy & ~view.inflight
        idx = np.flatnonzero(mask)
        shortfall = view.mm[idx] - view.equity[idx]
        liquidate = idx[np.argsort(-shortfall, kind="stable")][: policy.max_liquidations_per_cycle]

    score = attestation_urgency(view, now, policy)
    # an account being liquidated now changes nonce: attest it next cycle, not against a stale book
    score[liquidate] = 0.0
    due = np.flatnonzero(score > 0)
    attest = due[np.argsort(-score[due], kind="stable")][: policy.max_attestations_per_cycle]

    settle = np.empty((0, 2), dtype=np.int64)
    if policy.settle and positions is not None and settleable_instruments is not None:
        held = (positions != 0) & settleable_instruments[None, :]
        settle = np.argwhere(held).astype(np.int64)
    post_settlement = (np.flatnonzero(unsettled_expired) if unsettled_expired is not None
                       else np.empty(0, dtype=np.int64))
    return Plan(attest=attest, liquidate=liquidate, settle=settle,
                post_settlement=post_settlement, unhealthy=int(unhealthy.sum()))


def prices_due(new_marks: np.ndarray, posted_marks: np.ndarray, posted_at: int, now: int,
               move_frac: float, max_age_s: int) -> bool:
    """Post marks when any moved by more than `move_frac` or the posted set is ageing."""
    if posted_at == 0 or len(posted_marks) != len(new_marks):
        return True
    moved = np.abs(new_marks - posted_marks) > move_frac * np.maximum(np.abs(posted_marks), 1e-12)
    return bool(moved.any()) or (now - posted_at) >= max_age_s


def clamp_moves(target: np.ndarray, current: np.ndarray, max_move_frac: float,
                floor: np.ndarray | float = 0.0, fresh: np.ndarray | None = None) -> np.ndarray:
    """The oracle bounds each update's move: step toward `target` by at most
    max(`max_move_frac` * |current|, `floor`) (marks: floor = the previous per-unit
    maintenance rate). `fresh` marks values never posted (unbounded; default: current <= 0).

    A crash bigger than the bound is posted over several updates (one per block).
    """
    band = np.maximum(np.abs(current) * max_move_frac, floor)
    if fresh is None:
        fresh = current <= 0
    return np.where(fresh, target, np.clip(target, current - band, current + band))


def attested_margins(exact, live: np.ndarray, sizes_wad: dict[int, dict[int, int]],
                     idx) -> tuple[list[int], list[int]]:
    """(IM, MM) in WAD that the keeper signs for accounts `idx`: the exact integer margins
    (offchain.risk.exact.ExactMargins over this epoch's engine, whose instruments are the
    `live` ones) of the chain's own WAD sizes. Exact maths makes the per-trade bound
    MM(after) <= MM(before) + ceil(|q| * rate / WAD) hold with no tolerance whatever the
    batch; the float32 margins only screen which accounts are due."""
    if exact is None:
        return [0] * len(idx), [0] * len(idx)
    pos_in_engine = np.cumsum(live) - 1
    books = [{int(pos_in_engine[j]): q for j, q in sizes_wad.get(int(i), {}).items()
              if j < len(live) and live[j]} for i in idx]
    return exact.margins_wad(books)

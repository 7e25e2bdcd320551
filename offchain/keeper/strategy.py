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
    # a new epoch root is due when an account's fresh MM or IM moved by more than this
    # fraction of its leaf's (and more than leaf_move_abs), a book changed, or the root
    # is older than root_max_age_s minus the refresh margin (a heartbeat)
    leaf_move_frac: float = 0.05
    leaf_move_abs: float = 1.0
    root_max_age_s: int = 3600
    # re-sign this long before the age limit so a root never lapses between cycles
    root_refresh_margin_s: int = 60
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
    # the account's leaf in the keeper's latest root (nonce -1 when it has none)
    leaf_nonce: np.ndarray
    leaf_im: np.ndarray
    leaf_mm: np.ndarray
    # the engine's verdict (equity below MM), once the newest leaf is applied where it is
    # newer than the account's margin basis
    onchain_liquidatable: np.ndarray
    # liquidations sent and not yet resolved: not retried until the book moves
    inflight: np.ndarray
    # the account's margin basis time on chain (its first pending trade, or the root of the
    # leaf applied); None: unknown (every book change counts at once)
    basis_timestamp: np.ndarray | None = None


@dataclass(frozen=True)
class Plan:
    liquidate: np.ndarray  # account indices to liquidate, largest shortfall first
    settle: np.ndarray  # (k, 2) array of (account index, instrument index)
    post_settlement: np.ndarray  # instrument indices needing a settlement price
    unhealthy: int  # accounts with fresh equity < fresh MM
    epoch: str = ""  # why a new root is due ("" = not due)

    @property
    def empty(self) -> bool:
        return not (self.epoch or len(self.liquidate) or len(self.settle) or len(self.post_settlement))


def epoch_due(view: AccountsView, now: int, policy: Policy, root_timestamp: int) -> str:
    """Why a new epoch root is due, or "" when the current one still holds. One root
    re-margins every account, so any account's reason is the epoch's."""
    has = view.has_positions
    # a leaf applies only under a root signed after the account's margin basis: a book first
    # traded in a block of the current second waits for a later one (a root now would give
    # it a leaf it cannot use)
    ready = np.ones(len(has), dtype=bool) if view.basis_timestamp is None else view.basis_timestamp < now
    if root_timestamp == 0:
        return "first root" if (has & ready).any() else ""
    # a flat account that never had a leaf needs none; one that traded and closed does
    # (leaf nonce -1: no leaf; -2: a leaf not newer than its basis, to be replaced)
    changed = (view.state_nonce != view.leaf_nonce) & (has | (view.leaf_nonce != -1)) & ready
    if changed.any():
        return f"{int(changed.sum())} book(s) changed"
    moved = has & ((np.abs(view.mm - view.leaf_mm)
                    > np.maximum(policy.leaf_move_frac * view.leaf_mm, policy.leaf_move_abs))
                   | (np.abs(view.im - view.leaf_im)
                      > np.maximum(policy.leaf_move_frac * view.leaf_im, policy.leaf_move_abs)))
    if moved.any():
        return f"margins moved ({int(moved.sum())} account(s))"
    age = now - root_timestamp
    if has.any() and age > policy.root_max_age_s - policy.root_refresh_margin_s:
        return f"heartbeat ({age} s since the last root)"
    return ""


def plan(view: AccountsView, now: int, policy: Policy, root_timestamp: int = 0,
         positions: np.ndarray | None = None,
         settleable_instruments: np.ndarray | None = None,
         unsettled_expired: np.ndarray | None = None,
         marks_at: int = 0, unbound_instruments: np.ndarray | None = None) -> Plan:
    """Decide this cycle's actions.

    root_timestamp: signed time of the keeper's latest root (0: none valid); positions:
    (accounts x instruments) sizes, needed for settlement; settleable_instruments: bool per
    instrument (expired and a settlement price is on chain); unsettled_expired: bool per
    instrument (expired, no settlement price yet); marks_at: signed time of the newest marks
    on chain once this cycle's post lands (0: not known or no witness needed);
    unbound_instruments: bool per instrument, the root's leaf will not carry the oracle's
    mark then (None: not known). The engine judges a liquidation's witness only against a
    root at least as new as the book's marks whose leaves carry those very marks, so a
    liquidatable account makes a root due when the marks are newer or not the root's,
    whether this keeper liquidates it or another liquidator does.
    """
    unhealthy = view.equity < view.mm
    # both the chain (so the transaction succeeds) and fresh risk (so it is deserved)
    liquidatable = view.onchain_liquidatable & unhealthy

    liquidate = np.empty(0, dtype=np.int64)
    if policy.liquidate:
        idx = np.flatnonzero(liquidatable & ~view.inflight)
        shortfall = view.mm[idx] - view.equity[idx]
        liquidate = idx[np.argsort(-shortfall, kind="stable")][: policy.max_liquidations_per_cycle]

    settle = np.empty((0, 2), dtype=np.int64)
    if policy.settle and positions is not None and settleable_instruments is not None:
        held = (positions != 0) & settleable_instruments[None, :]
        settle = np.argwhere(held).astype(np.int64)
    post_settlement = (np.flatnonzero(unsettled_expired) if unsettled_expired is not None
                       else np.empty(0, dtype=np.int64))
    epoch = epoch_due(view, now, policy, root_timestamp)
    # for any liquidator, this keeper's or another's: without a root as new as the marks no
    # witness is accepted
    if not epoch and liquidatable.any():
        if marks_at > root_timestamp:
            epoch = f"{int(liquidatable.sum())} liquidatable account(s): marks newer than the root"
        elif unbound_instruments is not None and positions is not None and unbound_instruments.any():
            off = liquidatable & (positions[:, unbound_instruments] != 0).any(axis=1)
            if off.any():
                epoch = f"{int(off.sum())} liquidatable account(s): the root's marks are not the oracle's"
    return Plan(liquidate=liquidate, settle=settle, post_settlement=post_settlement,
                unhealthy=int(unhealthy.sum()), epoch=epoch)


def prices_due(new_values: np.ndarray, posted_values: np.ndarray, posted_at: int, now: int,
               move_frac: float, max_age_s: int) -> bool:
    """Post market data when any value (a mark or a per-unit rate) moved by more than
    `move_frac` or the posted set is ageing."""
    if posted_at == 0 or len(posted_values) != len(new_values):
        return True
    moved = np.abs(new_values - posted_values) > move_frac * np.maximum(np.abs(posted_values), 1e-12)
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


def assign_liquidators(positions: np.ndarray, victims: np.ndarray, liquidator_rows: np.ndarray,
                       unit_of: np.ndarray, max_positions: int, max_units: int,
                       free: np.ndarray | None = None, need: np.ndarray | None = None,
                       barred: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which of the keeper's liquidator accounts takes each victim's slice (-1: none can), and
    the fraction of the book to ask for.

    A slice gives the liquidator a part of every position of the victim, and the engine
    refuses one that takes the liquidator's book past `max_positions` instruments or
    `max_units` underlyings, or leaves it below its initial margin. The keeper keeps what it
    takes, so an outsider can fill one account's book with dust (a thin account of 32 dust
    positions, liquidated once): each victim goes to the first account whose book, with the
    slices given to it earlier in the cycle, still has room for every instrument of the
    victim's and whose free margin covers the whole book's IM (fraction 1); failing that, to
    the account with room and the most free margin, for the part of the book it covers (the
    engine may still raise a slice to the whole book, and then refuses it: the keeper counts
    that as blocked).

    positions: (accounts x instruments) sizes; victims: account indices in liquidation
    order; liquidator_rows: each liquidator account's index in `positions` (-1: not listed,
    an empty book); unit_of: each instrument's underlying index; free: each liquidator
    account's equity minus its IM (None: margin not checked); need: the IM each victim's
    whole book brings its liquidator; barred: (victims x liquidators) True where the engine
    refused that account for that victim for its own state (the slice goes to another).
    """
    n_units = int(unit_of.max()) + 1 if len(unit_of) else 0
    onehot = np.zeros((len(unit_of), max(n_units, 1)), dtype=bool)
    onehot[np.arange(len(unit_of)), unit_of] = True
    rows = np.asarray(liquidator_rows, dtype=np.int64)
    held = np.where(rows[:, None] >= 0, positions[np.maximum(rows, 0)] != 0, False)
    left = np.full(len(rows), np.inf) if free is None else np.asarray(free, dtype=np.float64).copy()
    want = np.zeros(len(victims)) if need is None else np.asarray(need, dtype=np.float64)
    taker = np.full(len(victims), -1, dtype=np.int64)
    fraction = np.zeros(len(victims))
    for k, v in enumerate(victims):   # the cycle's victims: a handful, each against every account at once
        after = held | (positions[v] != 0)[None, :]
        units = (after.astype(np.int64) @ onehot.astype(np.int64) > 0).sum(axis=1)
        # nobody liquidates its own book
        room = (after.sum(axis=1) <= max_positions) & (units <= max_units) & (rows != v)
        if barred is not None:
            room &= ~barred[k]
        whole = np.flatnonzero(room & (left >= want[k]))
        if len(whole):
            j, f = whole[0], 1.0
        else:
            part = np.flatnonzero(room & (left > 0))
            if not len(part):
                continue
            j = part[np.argmax(left[part])]
            f = float(left[j] / want[k])
        taker[k], fraction[k] = j, f
        held[j] = after[j]
        left[j] -= want[k] * f
    return taker, fraction

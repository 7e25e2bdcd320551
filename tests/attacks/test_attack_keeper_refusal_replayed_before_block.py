"""V29 (found by the attacker pass on V28's fix; fixed): a liquidation refused for the keeper's
own margin read as the victim's fault once the keeper's root shared a block with other
transactions, and /health stayed green.

Fixed: the executor takes a reverted transaction's reason from its own trace
(`debug_traceTransaction`, call tracer), falling back to the replay on nodes that do not
trace; and a victim refused twice in a row keeps the alarm on whatever the reason.
What it was:

V28's fix keeps /health red while a liquidation is refused "for the liquidator's own reason"
(`LIQUIDATOR_REFUSALS` in `Keeper._note_outcome`). The reason is the executor's: a reverted
transaction is replayed with `eth_call` at `block - 1` (`Executor._replay_reason`), i.e. on
the state BEFORE the whole block it was mined in, not before the transaction. On Anvil's
automine every transaction has its own block, so the replay sees the keeper's root and leaf;
on a chain that packs transactions into blocks (mainnet, any L2, Anvil with interval mining)
the keeper's `post_root`, `publish_epoch_data`, `apply_leaf` and `liquidate` (sent as one
batch after the marks) land in one block, and the replay runs the liquidation against the
previous root: "ScenarioVerifier: invalid market multiproof". That string is none of
`LIQUIDATOR_REFUSALS`, so the refusal counts as the victim's (`own=False`):
`keeper_liquidations_blocked` stays 0 and /health 200, and the keeper keeps sending a
liquidation that reverts, every cycle the price moves.

Sequence (BTC 30,000 / ETH 2,000 perps; the keeper's gas key account and its spare funded
1,000,000 each, as in test_attack_keeper_slice_unmargined): the attacker's `whale` long
10,500 ETH perps on 1.05x IM, its own `hedge` short them; ETH gaps -26%, then -3% a cycle.
The whale is bankrupt at the first mark, so the engine raises any partial request to the
whole book (`_slice_fraction`), which neither account can margin; the keeper asks the
richest account for a part (free / need) and the engine refuses it: "engine: liquidator
below initial margin".

Measured, 12 cycles, ETH 1,480 -> 1,059, whale equity -362,517 -> -5,007,262 (MM 3.18M ->
2.21M), one attempt a cycle, each reverted on chain (~288k gas):
- automine (one tx per block): every refusal read "engine: liquidator below initial
  margin", keeper_liquidations_blocked 1, /health red in all 12 cycles;
- blocks every 2 s: every refusal read "ScenarioVerifier: invalid market multiproof",
  keeper_liquidations_blocked 0, /health green in all 12 cycles (the same tx replayed on
  the state of its own block gives "engine: liquidator below initial margin").

Root cause: offchain/keeper/executor.py `Executor._replay_reason` (`eth_call` at
`block - 1`), trusted by offchain/keeper/bot.py `Keeper._note_outcome`. Suggested fix:
classify a refused liquidation by re-running it on the state it was refused on (`eth_call`
at `block`: the liquidation reverted, so that state is the one it saw, give or take later
transactions of the block; or a `debug_traceTransaction` revert reason), and/or judge the
liquidator's side directly (read the account's `health` after the batch and compare free
margin to the slice's IM), never from the replay string alone; an unknown reason for a
victim that stays liquidatable should raise the alarm after a few attempts rather than
never.

Real Anvil, real contracts and signatures (2 of 2), the real keeper's cycles.
"""

from __future__ import annotations

import time

import pytest

from attacks.test_attack_keeper_book_full import _health, _next, _world
from attacks.test_attack_keeper_slice_unmargined import ETH, SPECS, _whale, two_source

CYCLES = 12


@pytest.fixture
def world(tmp_path):
    with _world(tmp_path, two_source(), SPECS, spare=True) as w:
        yield w


def _gap_and_fall(w, whale, block_interval_s):
    """ETH -26%, then -3% a cycle: per cycle (ETH, whale equity, the keeper's attempts (ok,
    recorded reason, reason on the state of the tx's own block, gas), /health ok)."""
    w3 = w["dev"].w3
    w["source"].prices[ETH - 1] *= 0.74
    if block_interval_s:
        w["dev"].interval_mining(block_interval_s)
    seen = []
    for _ in range(CYCLES):
        if block_interval_s:
            time.sleep(block_interval_s)
        else:
            _next(w, 60)
        report = w["keeper"].cycle()
        attempts = []
        for x in report.liquidated:
            if x["account"] != whale.address or not x["tx"]:
                continue
            tx = w3.eth.get_transaction(x["tx"])
            receipt = w3.eth.get_transaction_receipt(x["tx"])
            try:   # the same call on the state it was refused on (the block's, the root in)
                w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"]}, receipt["blockNumber"])
                actual = "would succeed"
            except Exception as exc:  # noqa: BLE001
                actual = str(exc)
            attempts.append((x["ok"], (x["error"] or "")[:60], actual[:80], receipt["gasUsed"]))
        ok = w["metrics"].health(max_lag_blocks=10**9, max_cycle_age_s=float("inf"))[0]
        seen.append((round(float(w["source"].prices[ETH - 1])), round(_health(w, whale)[0]), attempts, ok))
        w["source"].prices[ETH - 1] *= 0.97
    return seen


def _green_after_first_refusal(seen):
    """The cycles from the first refused attempt on whose /health was green (before it, a
    cycle may only post the gap's first step and its root)."""
    first = next(i for i, (_e, _q, atts, _ok) in enumerate(seen) if atts)
    return [i for i, (_e, _q, _atts, ok) in enumerate(seen) if ok and i >= first]


def test_keeper__own_margin_refusal_in_a_packed_block__health_goes_red(world):
    w = world
    whale = _whale(w)
    seen = _gap_and_fall(w, whale, block_interval_s=2)
    for row in seen:
        print("packed blocks: (ETH, whale equity, attempts, health ok)", row)
    attempts = [a for _e, _q, atts, _ok in seen for a in atts]
    assert attempts and not any(ok for ok, *_ in attempts), attempts
    # every refusal was for the liquidator's own margin, on the state it was refused on
    assert all("liquidator below initial margin" in actual for _ok, _rec, actual, _g in attempts), attempts
    # ...and the keeper records that reason, from the transaction's own trace
    assert all("liquidator below initial margin" in rec for _ok, rec, _a, _g in attempts), attempts
    assert seen[-1][1] < -4_000_000                      # the whale bankrupt, deeper each cycle
    # the rule: a liquidation refused for the liquidator's own reason keeps /health red
    green = _green_after_first_refusal(seen)
    assert not green, (f"/health green in {len(green)}/{CYCLES} cycles while every attempt was refused "
                       f"for the keeper's own margin; recorded reasons: {sorted({r for _o, r, _a, _g in attempts})}")


def test_keeper__own_margin_refusal_one_tx_per_block__health_red_control(world):
    """Control: the same sequence on automine (one transaction a block) is classified right."""
    w = world
    whale = _whale(w)
    seen = _gap_and_fall(w, whale, block_interval_s=0)
    attempts = [a for _e, _q, atts, _ok in seen for a in atts]
    assert attempts and all("liquidator below initial margin" in rec for _o, rec, _a, _g in attempts)
    assert not _green_after_first_refusal(seen)

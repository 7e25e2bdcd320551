"""Executor rules that do not need a node: backoff, fee bumps, which errors are retried."""

from web3.exceptions import ContractLogicError

from offchain.keeper.config import GasConfig
from offchain.keeper.executor import GWEI, backoff_delays, bumped_fees, is_transient


def test_backoff_delays__doubles_then_caps():
    cfg = GasConfig(max_retries=6, backoff_base_s=0.5, backoff_max_s=3.0)
    assert backoff_delays(cfg) == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_bumped_fees__raises_both_by_bump_pct_rounding_up():
    fee, tip = bumped_fees(100 * GWEI + 1, 3 * GWEI, GasConfig(bump_pct=15))
    assert fee == -(-(100 * GWEI + 1) * 115 // 100) and tip == 3 * GWEI * 115 // 100


def test_bumped_fees__above_cap__capped():
    fee, tip = bumped_fees(480 * GWEI, 480 * GWEI, GasConfig(bump_pct=15, max_fee_gwei=500))
    assert fee == 500 * GWEI and tip == 500 * GWEI


def test_is_transient__revert__not_retried():
    assert not is_transient(ContractLogicError("execution reverted: engine: account is healthy"))
    assert not is_transient(ValueError("execution reverted: engine: state nonce changed"))


def test_is_transient__connection_error__retried():
    assert is_transient(ConnectionError("connection refused"))
    assert is_transient(TimeoutError("read timed out"))


def test_is_transient__programming_error__not_retried():
    assert not is_transient(KeyError("account"))
    assert not is_transient(TypeError("bad argument"))

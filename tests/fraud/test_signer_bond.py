"""SignerBond on titanoboa with a real RiskOracle: a signer below its bond stops counting
toward the threshold at once (a withdrawal request counts as gone), the withdrawal delay is
enforced and longer than the challenge window, only the fraud-proofs contract slashes, every
step logs, and the token balance always equals stakes + pending."""

from __future__ import annotations

from pathlib import Path

import boa
import pytest
from eth_account import Account
from eth_utils import keccak

from offchain.chain.eip712 import Domain, IndexPrices, sign_multi, symbol_to_bytes32

ROOT = Path(__file__).resolve().parents[2]
USDC = 10**6
BOND = 1_000 * USDC
WINDOW, DELAY = 3_600, 7_200
SIGNERS = sorted((Account.from_key(keccak(text=f"netmargin bond signer {i}")) for i in range(3)),
                 key=lambda a: int(a.address, 16))
OPERATOR = "0x" + "0f" * 20


def _contract(name):
    return str(ROOT / "contracts" / f"{name}.vy")


@pytest.fixture
def system():
    with boa.env.anchor():
        token = boa.load(_contract("mocks/MockERC20"), "USD Coin", "USDC", 6)
        registry = boa.load(_contract("InstrumentRegistry"))
        oracle = boa.load(_contract("RiskOracle"), registry.address, [s.address for s in SIGNERS], 2,
                          b"\x01" * 32, 2_000)
        bond = boa.load(_contract("SignerBond"), token.address, BOND, WINDOW, DELAY)
        oracle.set_fraud_contracts(bond.address, "0x" + "00" * 20)
        token.mint(OPERATOR, 10 * BOND)
        with boa.env.prank(OPERATOR):
            token.approve(bond.address, 10 * BOND)
            for s in SIGNERS:
                bond.bond(s.address, BOND)
        domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
        yield token, oracle, bond, domain


def _post_index(oracle, domain, by, price=100):
    boa.env.time_travel(seconds=10)
    ts = boa.env.evm.patch.timestamp
    msg = IndexPrices(underlyings=[symbol_to_bytes32("BTC")], prices_wad=[price * 10**18], timestamp=ts,
                      deadline=ts + 60)
    oracle.post_index_prices(msg.as_args(), sign_multi(msg, domain, by))


def _adds_up(token, bond):
    staked = sum(bond.stake(s.address) + bond.pending(s.address) for s in SIGNERS)
    assert bond.total_bonded() == staked
    assert token.balanceOf(bond.address) == staked + bond.forfeited()


def test_signer_below_bond__stops_counting(system):
    token, oracle, bond, domain = system
    _post_index(oracle, domain, SIGNERS[:2])
    with boa.env.prank(SIGNERS[0].address):
        bond.request_withdrawal(1)           # 1 unit below the bond: no longer counts
    assert not bond.is_bonded(SIGNERS[0].address)
    with boa.reverts("oracle: below threshold of bonded signers"):
        _post_index(oracle, domain, SIGNERS[:2], 101)
    # with the third (bonded) signer the threshold is met again; the unbonded one is ignored
    _post_index(oracle, domain, SIGNERS, 101)
    # topping up restores it
    with boa.env.prank(OPERATOR):
        bond.bond(SIGNERS[0].address, 1)
    _post_index(oracle, domain, SIGNERS[:2], 102)
    _adds_up(token, bond)


def test_withdrawal__delay_enforced__pending_slashable_until_paid(system):
    token, oracle, bond, domain = system
    s = SIGNERS[1].address
    assert bond.withdrawal_delay() > bond.challenge_window()
    with boa.env.prank(s):
        bond.request_withdrawal(400 * USDC)
        [log] = [e for e in bond.get_logs() if type(e).__name__ == "WithdrawalRequested"]
        assert (log.amount, log.pending) == (400 * USDC, 400 * USDC)
        boa.env.time_travel(seconds=DELAY - 1)
        with boa.reverts("bond: withdrawal delay not over"):
            bond.withdraw()
        boa.env.time_travel(seconds=1)
        bond.withdraw()
        with boa.reverts("bond: nothing pending"):
            bond.withdraw()
        with boa.reverts("bond: amount above stake"):
            bond.request_withdrawal(601 * USDC)
    assert token.balanceOf(s) == 400 * USDC and bond.stake(s) == 600 * USDC
    _adds_up(token, bond)


def test_slash__only_the_slasher__pays_stake_and_pending(system):
    token, oracle, bond, domain = system
    s = SIGNERS[2].address
    with boa.reverts("bond: only the fraud proofs contract slashes"):
        bond.slash([s], OPERATOR)           # no slasher set yet: nobody
    with boa.env.prank(OPERATOR), boa.reverts("bond: only the deployer sets the slasher"):
        bond.set_slasher(OPERATOR)
    slasher = "0x" + "5a" * 20
    bond.set_slasher(slasher)
    with boa.reverts("bond: slasher already set"):
        bond.set_slasher(OPERATOR)
    with boa.env.prank(s):
        bond.request_withdrawal(300 * USDC)
    with boa.env.prank(OPERATOR), boa.reverts("bond: only the fraud proofs contract slashes"):
        bond.slash([s], OPERATOR)
    challenger = "0x" + "cc" * 20
    with boa.env.prank(slasher):
        assert bond.slash([s], challenger) == BOND // 5     # the challenger's 20%
    assert token.balanceOf(challenger) == BOND // 5
    assert bond.stake(s) == bond.pending(s) == 0
    assert bond.forfeited() == BOND - BOND // 5
    _adds_up(token, bond)
    assert token.balanceOf(bond.address) + token.balanceOf(challenger) == 3 * BOND


def test_slash__signer_challenges_its_own_root__keeps_only_the_challenger_share(system):
    """The signers of a false root know first: challenging it themselves must not hand their
    bond back. The challenger's share is 20%; the signer loses the other 80% for good."""
    token, oracle, bond, domain = system
    slasher = "0x" + "5a" * 20
    bond.set_slasher(slasher)
    s = SIGNERS[0].address
    before = token.balanceOf(s)
    with boa.env.prank(slasher):
        paid = bond.slash([s], s)                 # the slashed signer is the challenger
    assert paid == BOND * bond.CHALLENGER_SHARE_BPS() // 10_000 == BOND // 5
    assert token.balanceOf(s) - before == BOND // 5
    assert bond.stake(s) == bond.pending(s) == 0 and not bond.is_bonded(s)
    with boa.env.prank(s), boa.reverts("bond: nothing pending"):
        bond.withdraw()                           # the forfeited 80% is nobody's to withdraw
    _adds_up(token, bond)


def test_deploy__delay_not_above_window__refused():
    token = boa.load(_contract("mocks/MockERC20"), "USD Coin", "USDC", 6)
    with boa.reverts("bond: withdrawal delay must exceed the challenge window"):
        boa.load(_contract("SignerBond"), token.address, BOND, WINDOW, WINDOW)

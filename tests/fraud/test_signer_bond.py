"""SignerBond on titanoboa with a real RiskOracle and MarginEngine: a signer below its bond
stops counting toward the threshold at once (a withdrawal request counts as gone), the
withdrawal delay is enforced and longer than the challenge window, only the fraud-proofs
contract slashes, the forfeited part goes to the engine's insurance fund (anyone pushes it),
every step logs, and the funds add up: token balance = stakes + pending + forfeited, and
everything bonded = that + withdrawn + paid to challengers + pushed to the insurance fund."""

from __future__ import annotations

import boa
import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from support.boa_contracts import deploy
from support.boa_engine import load_engine

from offchain.chain.eip712 import Domain, IndexPrices, sign_multi, symbol_to_bytes32

USDC = 10**6
BOND = 1_000 * USDC
WINDOW, DELAY = 3_600, 7_200
SIGNERS = sorted((Account.from_key(keccak(text=f"netmargin bond signer {i}")) for i in range(3)),
                 key=lambda a: int(a.address, 16))
OPERATOR = "0x" + "0f" * 20
SCALE = 10**12                      # token units (6 decimals) -> WAD


@pytest.fixture(scope="module")
def deployed():
    """Token, oracle and the engine whose insurance fund receives forfeited bonds (loaded once)."""
    token = deploy("mocks/MockERC20", "USD Coin", "USDC", 6)
    registry = deploy("InstrumentRegistry")
    oracle = deploy("RiskOracle", registry.address, [s.address for s in SIGNERS], 2,
                    b"\x01" * 32, 2_000)
    return token, oracle, load_engine(token, oracle, registry)


@pytest.fixture
def system(deployed):
    token, oracle, engine = deployed
    with boa.env.anchor():
        bond = deploy("SignerBond", token.address, BOND, WINDOW, DELAY, engine.address)
        oracle.set_fraud_contracts(bond.address, "0x" + "00" * 20)
        token.mint(OPERATOR, 10 * BOND)
        with boa.env.prank(OPERATOR):
            token.approve(bond.address, 10 * BOND)
            for s in SIGNERS:
                bond.bond(s.address, BOND)
        domain = Domain(chain_id=boa.env.evm.patch.chain_id, verifying_contract=oracle.address)
        yield token, oracle, bond, domain, engine


def _post_index(oracle, domain, by, price=100):
    boa.env.time_travel(seconds=10)
    ts = boa.env.evm.patch.timestamp
    msg = IndexPrices(underlyings=[symbol_to_bytes32("BTC")], prices_wad=[price * 10**18], timestamp=ts,
                      deadline=ts + 60)
    oracle.post_index_prices(msg.as_args(), sign_multi(msg, domain, by))


def _adds_up(token, bond, engine, withdrawn=0, paid=0, bonded=3 * BOND):
    """The bond's identity now and over its life (`bonded`: everything staked), and the
    engine's: its token balance is what the bond pushed, all of it in the insurance fund."""
    staked = sum(bond.stake(s.address) + bond.pending(s.address) for s in SIGNERS)
    assert bond.total_bonded() == staked
    assert token.balanceOf(bond.address) == staked + bond.forfeited()
    assert bonded == staked + bond.forfeited() + withdrawn + paid + bond.to_insurance()
    assert bond.insurance_fund() == engine.address
    assert token.balanceOf(engine.address) == bond.to_insurance()
    assert engine.insurance_wad() == bond.to_insurance() * SCALE


def test_signer_below_bond__stops_counting(system):
    token, oracle, bond, domain, engine = system
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
    _adds_up(token, bond, engine, bonded=3 * BOND + 1)


def test_withdrawal__delay_enforced__pending_slashable_until_paid(system):
    token, oracle, bond, domain, engine = system
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
    _adds_up(token, bond, engine, withdrawn=400 * USDC)


def test_slash__only_the_slasher__pays_stake_and_pending(system):
    token, oracle, bond, domain, engine = system
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
    _adds_up(token, bond, engine, paid=BOND // 5)
    assert token.balanceOf(bond.address) + token.balanceOf(challenger) == 3 * BOND


def test_push_forfeited__anyone__moves_it_into_the_engines_insurance_fund(system):
    token, oracle, bond, domain, engine = system
    with boa.reverts("bond: nothing forfeited"):
        bond.push_forfeited()
    slasher = "0x" + "5a" * 20
    bond.set_slasher(slasher)
    with boa.env.prank(slasher):
        bond.slash([SIGNERS[1].address, SIGNERS[2].address], OPERATOR)
    forfeited = 2 * BOND - 2 * BOND // 5
    assert bond.forfeited() == forfeited and engine.insurance_wad() == 0
    stranger = to_checksum_address("0x" + "5e" * 20)
    with boa.env.prank(stranger):
        assert bond.push_forfeited() == forfeited
        [log] = [e for e in bond.get_logs() if type(e).__name__ == "ForfeitedToInsurance"]
    assert (log.engine, log.sender, log.amount) == (engine.address, stranger, forfeited)
    assert engine.insurance_wad() == forfeited * SCALE and token.balanceOf(engine.address) == forfeited
    assert bond.forfeited() == 0 and bond.to_insurance() == forfeited
    assert token.allowance(bond.address, engine.address) == 0
    _adds_up(token, bond, engine, paid=2 * BOND // 5)
    with boa.reverts("bond: nothing forfeited"):
        bond.push_forfeited()                     # and nothing changed
    _adds_up(token, bond, engine, paid=2 * BOND // 5)
    # a later slash forfeits again; the next push adds it
    with boa.env.prank(slasher):
        bond.slash([SIGNERS[0].address], OPERATOR)
    bond.push_forfeited()
    assert bond.to_insurance() == 3 * BOND - 3 * BOND // 5
    _adds_up(token, bond, engine, paid=3 * BOND // 5)


def test_slash__signer_challenges_its_own_root__keeps_only_the_challenger_share(system):
    """The signers of a false root know first: challenging it themselves must not hand their
    bond back. The challenger's share is 20%; the signer loses the other 80% for good."""
    token, oracle, bond, domain, engine = system
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
    # pushing it (by the signer itself, say) sends it to the insurance fund, not back
    with boa.env.prank(s):
        bond.push_forfeited()
    assert token.balanceOf(s) - before == BOND // 5
    assert engine.insurance_wad() == (BOND - BOND // 5) * SCALE
    _adds_up(token, bond, engine, paid=BOND // 5)


def test_deploy__delay_not_above_window__refused(system):
    token, oracle, bond, domain, engine = system
    with boa.reverts("bond: withdrawal delay must exceed the challenge window"):
        deploy("SignerBond", token.address, BOND, WINDOW, WINDOW, engine.address)


def test_deploy__insurance_fund_in_another_token__refused(system):
    token, oracle, bond, domain, engine = system
    other = deploy("mocks/MockERC20", "Other", "OTH", 6)
    with boa.reverts("bond: insurance fund settles in another token"):
        deploy("SignerBond", other.address, BOND, WINDOW, DELAY, engine.address)

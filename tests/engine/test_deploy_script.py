"""`scripts/deploy.py` (`ape run deploy`) on Anvil: the SignerBond and FraudProofs deployed,
wired to each other and to the oracle, every signer bonded with the deployer's tokens; bad
bond settings refused naming the option; `--no-bonds` leaves every signer counting unbonded."""

from __future__ import annotations

import pytest

from offchain.devnet.deploy import BondSettings
from offchain.errors import UserError
from offchain.risk import load_params
from scripts.deploy import deploy_system, parse_bonds


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def test_deploy_script__default__bond_and_fraud_proofs_wired_every_signer_bonded(project, accounts, chain):
    deployer, signers = accounts[0], [accounts[1].address, accounts[2].address]
    params = load_params()
    out = deploy_system(deployer, None, signers, 2, params, bonds=parse_bonds("2500", "3600", "7200"))
    bond, fraud = project.SignerBond.at(out["signer_bond"]), project.FraudProofs.at(out["fraud_proofs"])
    oracle, token = project.RiskOracle.at(out["oracle"]), project.MockERC20.at(out["token"])
    stake = 2_500 * 10**6
    assert bond.required_bond() == stake and bond.challenge_window() == 3_600 and bond.withdrawal_delay() == 7_200
    assert bond.slasher() == fraud.address and fraud.BOND() == bond.address and fraud.ORACLE() == oracle.address
    assert bond.insurance_fund() == out["engine"]      # forfeited bonds go to its insurance fund
    assert fraud.verifiers(oracle.params_hash()).verifier == out["verifier"]
    (wired,) = list(oracle.FraudContractsSet.range(0, chain.blocks.height + 1))
    assert (wired.signer_bond, wired.fraud_proofs) == (bond.address, fraud.address)
    assert all(bond.is_bonded(s) and bond.stake(s) == stake for s in signers)
    assert token.balanceOf(bond) == bond.total_bonded() == 2 * stake and token.balanceOf(deployer) == 0
    assert oracle.verifier() == "0x" + "00" * 20            # --witness not given


def test_deploy_script__bad_bond_settings__refused_naming_the_option():
    with pytest.raises(UserError, match="bond: expected a number, got 'lots'"):
        parse_bonds("lots", "3600", "7200")
    with pytest.raises(UserError, match=r"bond.withdrawal_delay_s: must exceed the challenge window \(3600 s\), got 3600"):
        parse_bonds("10", "3600", "3600")
    with pytest.raises(UserError, match="bond.required_bond: must be > 0 tokens, got 0.0"):
        parse_bonds("0", "3600", "7200")
    assert parse_bonds("100000", "86400", "259200") == BondSettings()


def test_deploy_script__existing_token_short_of_the_stakes__refused_before_deploying(project, accounts):
    deployer = accounts[0]
    token = project.MockERC20.deploy("other", "OTH", 6, sender=deployer)
    token.mint(deployer, 10 * 10**6, sender=deployer)
    with pytest.raises(UserError, match="the 2 signers' stakes need 20000000"):
        deploy_system(deployer, token.address, [accounts[1].address, accounts[2].address], 2, load_params(),
                      bonds=BondSettings(required_bond=10))


def test_deploy_script__no_bonds__no_bond_contracts(accounts):
    out = deploy_system(accounts[0], None, [accounts[1].address], 1, load_params(), bonds=None)
    assert "signer_bond" not in out and "fraud_proofs" not in out and "verifier" in out

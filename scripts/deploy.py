"""Deploy a netmargin system: settlement token, InstrumentRegistry, RiskOracle, the parameter
set's ScenarioVerifier, MarginEngineExtension, MarginEngineGovernance and MarginEngine (the
engine delegatecalls the other two; all three must be deployed with the same token, oracle and
registry), and the signers'
SignerBond with the FraudProofs that slash it: every signer's stake is funded by the deployer
(SignerBond credits a stake to the signer it names; only the signer can withdraw it), then
the oracle is wired to both, so from the first root on only bonded signers count.

    ape run deploy                                   # local Anvil, dev account 0, a fresh 6-dec test token
    ape run deploy --network ethereum:local:foundry --signers 0xA,0xB,0xC --threshold 2

Options (environment variables in brackets are used when the option is not given):
  --deployer ALIAS      ape account alias [NETMARGIN_DEPLOYER]; default: the first test account
  --token ADDRESS       existing settlement ERC20 (6, 8 or 18 decimals); default: deploy MockERC20
  --signers A,B,...     oracle signer addresses [NETMARGIN_SIGNERS]; default: the deployer
  --threshold M         signatures required [NETMARGIN_THRESHOLD]; default 1
  --params NAME|PATH    risk parameter set whose hash the oracle accepts; default the bundled default (default-v2)
  --witness             also register the set's ScenarioVerifier with the oracle: from then on
                        every liquidation needs a witness (docs/contracts.md)
  --bond TOKENS         stake each signer needs to count, in settlement tokens [NETMARGIN_BOND];
                        default 100000. The deployer pays signers x TOKENS (minted when the
                        token is the fresh MockERC20; an existing token must be held)
  --challenge-window S  seconds a posted root can be challenged; default 86400 (a day)
  --withdrawal-delay S  seconds from a signer's withdrawal request to its payout (> the
                        window); default 259200 (three days)
  --no-bonds            no SignerBond / FraudProofs: every signer counts unbonded
Prints the addresses as JSON (the keeper's config reads `engine`; a challenger `fraud_proofs`).
"""

from __future__ import annotations

import json
import os

import click
from ape import accounts, project
from ape.cli import ConnectedProviderCommand, network_option
from eth_utils import is_address, to_checksum_address

from offchain.chain.verifier import verifier_config
from offchain.devnet.deploy import BondSettings
from offchain.errors import UserError
from offchain.risk import Params, load_params
from offchain.risk.params import DEFAULT_PARAMS

WAD = 10**18
MAX_INDEX_MOVE_BPS = 2_500
# (max_positions, taker_fee_bps, max_price_age, max_margin_basis_age, max_liquidation_price_age)
TRADING = (32, 2, 6 * 3_600, 2 * 86_400, 12 * 3_600)
# (discount_base_bps, slope_bps_per_hour, discount_max_bps, insurance_share_bps, buffer_bps, dust_mm_wad)
LIQUIDATION = (200, 100, 2_000, 5_000, 1_000, 50 * WAD)
DEFAULT_BONDS = BondSettings()


def parse_signers(raw: str, default: str) -> list[str]:
    """Comma-separated addresses -> checksummed, ascending (the oracle's order)."""
    items = [s.strip() for s in (raw or default).split(",") if s.strip()]
    for i, item in enumerate(items):
        if not is_address(item):
            raise UserError(f"signers[{i}]: expected a 20-byte hex address, got {item!r}")
    signers = sorted({to_checksum_address(s) for s in items}, key=lambda a: int(a, 16))
    if len(signers) != len(items):
        raise UserError(f"signers: expected distinct addresses, got {items}")
    return signers


def parse_threshold(raw: str | int, n_signers: int) -> int:
    try:
        threshold = int(raw)
    except (TypeError, ValueError):
        raise UserError(f"threshold: expected an integer 1..{n_signers}, got {raw!r}") from None
    if not 1 <= threshold <= n_signers:
        raise UserError(f"threshold: expected 1..{n_signers} (number of signers), got {threshold}")
    return threshold


def parse_bonds(bond: str, window: str, delay: str) -> BondSettings:
    values = {}
    for name, raw, kind in (("bond", bond, float), ("challenge-window", window, int),
                            ("withdrawal-delay", delay, int)):
        try:
            values[name] = kind(raw)
        except (TypeError, ValueError):
            raise UserError(f"{name}: expected a {'number' if kind is float else 'whole number'}, "
                            f"got {raw!r}") from None
    settings = BondSettings(values["bond"], values["challenge-window"], values["withdrawal-delay"])
    settings.check()
    return settings


def deploy_system(deployer, token_address: str | None, signers: list[str], threshold: int,
                  params: Params, witness: bool = False,
                  bonds: BondSettings | None = DEFAULT_BONDS) -> dict[str, str]:
    """Deploy everything from `deployer`; returns {name: address}."""
    if token_address:
        token = project.MockERC20.at(token_address)  # any ERC20 works; the ABI subset is the same
    else:
        token = project.MockERC20.deploy("netmargin USD", "nUSD", 6, sender=deployer)
    stake = 0
    if bonds is not None:
        bonds.check()
        stake = bonds.stake_units(token.decimals())
        needed = stake * len(signers)
        if token_address and token.balanceOf(deployer) < needed:
            raise UserError(f"bond: the deployer holds {token.balanceOf(deployer)} token units, the "
                            f"{len(signers)} signers' stakes need {needed}")
    registry = project.InstrumentRegistry.deploy(sender=deployer)
    params_hash = bytes.fromhex(params.hash.removeprefix("0x"))
    oracle = project.RiskOracle.deploy(registry, signers, threshold, params_hash, MAX_INDEX_MOVE_BPS,
                                       sender=deployer)
    # the parameter set's model: fraud proofs re-price a challenged leaf with it; once
    # registered with the oracle (--witness), every liquidation needs a witness against the
    # epoch market root too, so only with a keeper that posts market roots
    generator, rows = verifier_config(params)
    verifier = project.ScenarioVerifier.deploy(oracle, params_hash, generator, rows, sender=deployer)
    if witness:
        oracle.set_verifier(verifier, sender=deployer)
    extension = project.MarginEngineExtension.deploy(token, oracle, registry, sender=deployer)
    governance = project.MarginEngineGovernance.deploy(token, oracle, registry, sender=deployer)
    engine = project.MarginEngine.deploy(token, oracle, registry, extension, governance, TRADING, LIQUIDATION,
                                         sender=deployer)
    out = {"token": token.address, "registry": registry.address, "oracle": oracle.address,
           "extension": extension.address, "governance": governance.address, "engine": engine.address,
           "verifier": verifier.address}
    if bonds is not None:
        # bond first, wire last: no root is ever refused for want of bonded signers
        # forfeited bonds go to this engine's insurance fund (SignerBond.push_forfeited)
        bond = project.SignerBond.deploy(token, stake, bonds.challenge_window_s, bonds.withdrawal_delay_s,
                                         engine, sender=deployer)
        fraud = project.FraudProofs.deploy(oracle, bond, sender=deployer)
        fraud.register_verifier(verifier, sender=deployer)
        bond.set_slasher(fraud, sender=deployer)
        if not token_address:
            token.mint(deployer, stake * len(signers), sender=deployer)
        token.approve(bond, stake * len(signers), sender=deployer)
        for i, signer in enumerate(signers):
            bond.bond(signer, stake, sender=deployer)
            if not bond.is_bonded(signer):
                raise UserError(f"signers[{i}]: {signer} is not bonded after staking {stake} token units "
                                "(a token that takes a fee on transfer?)")
        oracle.set_fraud_contracts(bond, fraud, sender=deployer)
        out |= {"signer_bond": bond.address, "fraud_proofs": fraud.address}
    return out


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--deployer", default=lambda: os.environ.get("NETMARGIN_DEPLOYER", ""))
@click.option("--token", "token_address", default="")
@click.option("--signers", default=lambda: os.environ.get("NETMARGIN_SIGNERS", ""))
@click.option("--threshold", default=lambda: os.environ.get("NETMARGIN_THRESHOLD", "1"))
@click.option("--params", "params_name", default=DEFAULT_PARAMS)
@click.option("--witness/--no-witness", default=False,
              help="register the params file's ScenarioVerifier with the oracle: witness-verified liquidation")
@click.option("--bond", "bond_tokens", default=lambda: os.environ.get("NETMARGIN_BOND", "100000"),
              help="stake each signer needs, in settlement tokens (the deployer funds it)")
@click.option("--challenge-window", default="86400", help="seconds a posted root can be challenged")
@click.option("--withdrawal-delay", default="259200", help="seconds from a withdrawal request to its payout")
@click.option("--no-bonds", is_flag=True, default=False, help="no SignerBond / FraudProofs")
def cli(deployer, token_address, signers, threshold, params_name, witness, bond_tokens, challenge_window,
        withdrawal_delay, no_bonds):
    try:
        account = accounts.load(deployer) if deployer else accounts.test_accounts[0]
        if token_address and not is_address(token_address):
            raise UserError(f"token: expected a 20-byte hex address, got {token_address!r}")
        signer_list = parse_signers(signers, account.address)
        params = load_params(params_name)
        bonds = None if no_bonds else parse_bonds(bond_tokens, challenge_window, withdrawal_delay)
        addresses = deploy_system(account, token_address or None, signer_list,
                                  parse_threshold(threshold, len(signer_list)), params, witness, bonds)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({**addresses, "signers": signer_list, "params_hash": params.hash}, indent=2))

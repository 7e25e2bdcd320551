"""Deploy a netmargin system: settlement token, InstrumentRegistry, RiskOracle,
MarginEngineExtension and MarginEngine (the engine delegatecalls the extension; both must be
deployed with the same token, oracle and registry).

    ape run deploy                                   # local Anvil, dev account 0, a fresh 6-dec test token
    ape run deploy --network ethereum:local:foundry --signers 0xA,0xB,0xC --threshold 2

Options (environment variables in brackets are used when the option is not given):
  --deployer ALIAS      ape account alias [NETMARGIN_DEPLOYER]; default: the first test account
  --token ADDRESS       existing settlement ERC20 (6, 8 or 18 decimals); default: deploy MockERC20
  --signers A,B,...     oracle signer addresses [NETMARGIN_SIGNERS]; default: the deployer
  --threshold M         signatures required [NETMARGIN_THRESHOLD]; default 1
  --params NAME|PATH    risk parameter set whose hash the oracle accepts; default the bundled default (default-v2)
  --witness             also deploy that set's ScenarioVerifier and register it with the oracle:
                        from then on every liquidation needs a witness (docs/contracts.md)
Prints the addresses as JSON (the keeper's config reads `engine`).
"""

from __future__ import annotations

import json
import os

import click
from ape import accounts, project
from ape.cli import ConnectedProviderCommand, network_option
from eth_utils import is_address, to_checksum_address

from offchain.chain.verifier import verifier_config
from offchain.errors import UserError
from offchain.risk import Params, load_params
from offchain.risk.params import DEFAULT_PARAMS

WAD = 10**18
MAX_INDEX_MOVE_BPS = 2_500
# (max_positions, taker_fee_bps, max_price_age, max_margin_basis_age, max_liquidation_price_age)
TRADING = (32, 2, 6 * 3_600, 2 * 86_400, 12 * 3_600)
# (discount_base_bps, slope_bps_per_hour, discount_max_bps, insurance_share_bps, buffer_bps, dust_mm_wad)
LIQUIDATION = (200, 100, 2_000, 5_000, 1_000, 50 * WAD)


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


def deploy_system(deployer, token_address: str | None, signers: list[str], threshold: int,
                  params: Params, witness: bool = False) -> dict[str, str]:
    """Deploy everything from `deployer`; returns {name: address}."""
    if token_address:
        token = project.MockERC20.at(token_address)  # any ERC20 works; the ABI subset is the same
    else:
        token = project.MockERC20.deploy("netmargin USD", "nUSD", 6, sender=deployer)
    registry = project.InstrumentRegistry.deploy(sender=deployer)
    params_hash = bytes.fromhex(params.hash.removeprefix("0x"))
    oracle = project.RiskOracle.deploy(registry, signers, threshold, params_hash, MAX_INDEX_MOVE_BPS,
                                       sender=deployer)
    # the model liquidations are checked against (one verifier per parameter file); once
    # registered, every liquidation needs a witness against the epoch market root, so only
    # with a keeper that posts market roots
    verifier = None
    if witness:
        generator, rows = verifier_config(params)
        verifier = project.ScenarioVerifier.deploy(oracle, params_hash, generator, rows, sender=deployer)
        oracle.set_verifier(verifier, sender=deployer)
    extension = project.MarginEngineExtension.deploy(token, oracle, registry, sender=deployer)
    engine = project.MarginEngine.deploy(token, oracle, registry, extension, TRADING, LIQUIDATION,
                                         sender=deployer)
    return {"token": token.address, "registry": registry.address, "oracle": oracle.address,
            "extension": extension.address, "engine": engine.address,
            **({"verifier": verifier.address} if verifier else {})}


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--deployer", default=lambda: os.environ.get("NETMARGIN_DEPLOYER", ""))
@click.option("--token", "token_address", default="")
@click.option("--signers", default=lambda: os.environ.get("NETMARGIN_SIGNERS", ""))
@click.option("--threshold", default=lambda: os.environ.get("NETMARGIN_THRESHOLD", "1"))
@click.option("--params", "params_name", default=DEFAULT_PARAMS)
@click.option("--witness/--no-witness", default=False,
              help="deploy the params file's ScenarioVerifier and register it: witness-verified liquidation")
def cli(deployer, token_address, signers, threshold, params_name, witness):
    try:
        account = accounts.load(deployer) if deployer else accounts.test_accounts[0]
        if token_address and not is_address(token_address):
            raise UserError(f"token: expected a 20-byte hex address, got {token_address!r}")
        signer_list = parse_signers(signers, account.address)
        params = load_params(params_name)
        addresses = deploy_system(account, token_address or None, signer_list,
                                  parse_threshold(threshold, len(signer_list)), params, witness)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({**addresses, "signers": signer_list, "params_hash": params.hash}, indent=2))

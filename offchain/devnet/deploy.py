"""Deploy a complete netmargin system (token, registry, oracle, engine) and list instruments.

Used by `netmargin demo`, tests/e2e and the benchmarks: one place that knows constructor
arguments, so they all run the same contracts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.chain.build import compile_contracts, deploy
from offchain.chain.contracts import WAD, Deployment, engine_abi
from offchain.chain.verifier import verifier_config
from offchain.errors import UserError
from offchain.risk import Params
from offchain.risk.pricing import KIND_CODES

TOKEN_DECIMALS = 6


@dataclass(frozen=True)
class EngineSettings:
    max_positions: int = 32
    taker_fee_bps: int = 2
    max_price_age_s: int = 6 * 3600
    max_margin_basis_age_s: int = 2 * 86_400
    max_liquidation_price_age_s: int = 6 * 3600
    discount_base_bps: int = 200
    discount_slope_bps_per_hour: int = 100
    discount_max_bps: int = 2_000
    insurance_share_bps: int = 5_000
    buffer_bps: int = 1_000
    dust_mm: float = 50.0
    max_index_move_bps: int = 2_500

    def trading(self) -> tuple:
        return (self.max_positions, self.taker_fee_bps, self.max_price_age_s,
                self.max_margin_basis_age_s, self.max_liquidation_price_age_s)

    def liquidation(self) -> tuple:
        return (self.discount_base_bps, self.discount_slope_bps_per_hour, self.discount_max_bps,
                self.insurance_share_bps, self.buffer_bps, int(self.dust_mm * WAD))


def send(w3: Web3, sender: LocalAccount, call, what: str):
    """Sign and send one call from a dev account; raises UserError with the revert reason."""
    try:
        tx = call.build_transaction({"from": sender.address, "chainId": w3.eth.chain_id,
                                     "nonce": w3.eth.get_transaction_count(sender.address, "pending")})
    except Exception as exc:  # noqa: BLE001 - estimation reverted: say why
        raise UserError(f"{what}: would revert: {getattr(exc, 'message', None) or exc}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    if receipt["status"] != 1:
        raise UserError(f"{what}: transaction reverted ({receipt['transactionHash'].to_0x_hex()})")
    return receipt


def deploy_system(w3: Web3, owner: LocalAccount, signers: list[str], threshold: int,
                  params: Params, settings: EngineSettings = EngineSettings()) -> Deployment:
    builds = compile_contracts(["MockERC20", "InstrumentRegistry", "RiskOracle", "MarginEngine",
                                "MarginEngineExtension", "ScenarioVerifier"])
    token = deploy(w3, builds["MockERC20"], owner, "netmargin USD", "nUSD", TOKEN_DECIMALS)
    registry = deploy(w3, builds["InstrumentRegistry"], owner)
    params_hash = bytes.fromhex(params.hash.removeprefix("0x"))
    oracle = deploy(w3, builds["RiskOracle"], owner, registry.address,
                    sorted(signers, key=lambda a: int(a, 16)), threshold, params_hash,
                    settings.max_index_move_bps)
    # the model every liquidation is checked against (one verifier per parameter file): the
    # keeper sends each liquidation with its witness against the epoch root it posts
    generator, rows = verifier_config(params)
    verifier = deploy(w3, builds["ScenarioVerifier"], owner, oracle.address, params_hash, generator, rows)
    send(w3, owner, oracle.functions.set_verifier(verifier.address), "set_verifier")
    extension = deploy(w3, builds["MarginEngineExtension"], owner, token.address, oracle.address,
                       registry.address)
    engine = deploy(w3, builds["MarginEngine"], owner, token.address, oracle.address,
                    registry.address, extension.address, settings.trading(), settings.liquidation())
    engine = w3.eth.contract(address=engine.address, abi=engine_abi(
        builds["MarginEngine"]["abi"], builds["MarginEngineExtension"]["abi"]))
    return Deployment(w3=w3, engine=engine, oracle=oracle, registry=registry, token=token)


def list_instruments(dep: Deployment, owner: LocalAccount, specs: list[dict]) -> list[int]:
    """specs: {underlying, kind ('future'|'perpetual'|'call'|'put'), strike?, expiry?} -> ids."""
    ids = []
    for i, s in enumerate(specs):
        kind = KIND_CODES[s["kind"]]
        # exact decimal: float(7250) * 1e18 is not an integer number of wei
        strike = int(Decimal(repr(float(s.get("strike", 0)))) * WAD)
        call = dep.registry.functions.list_instrument(
            s["underlying"].encode().ljust(32, b"\0"), kind, strike, int(s.get("expiry", 0)))
        send(dep.w3, owner, call, f"instruments[{i}]")
        ids.append(dep.registry.functions.instrument_count().call())
    return ids


def fund(dep: Deployment, owner: LocalAccount, account: LocalAccount, amount: float,
         deposit: bool = True) -> None:
    """Mint `amount` tokens to `account` and (optionally) deposit them into the engine."""
    units = int(round(amount * 10**TOKEN_DECIMALS))
    send(dep.w3, owner, dep.token.functions.mint(account.address, units), "mint")
    if deposit:
        send(dep.w3, account, dep.token.functions.approve(dep.engine.address, units), "approve")
        send(dep.w3, account, dep.engine.functions.deposit(units), "deposit")

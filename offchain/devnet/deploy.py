"""Deploy a complete netmargin system (token, registry, oracle, engine, and the signers' bonds
with the fraud proofs that slash them) and list instruments.

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
# a signer's stake in whole tokens stays below this (x 10**18 x the signers fits a uint256)
MAX_BOND_TOKENS = 1e30


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


@dataclass(frozen=True)
class BondSettings:
    """SignerBond's constructor arguments (token units and seconds of chain time). Every oracle
    signer stakes `required_bond` before the oracle is wired to the bond: from then on only
    bonded signers count toward the threshold."""

    required_bond: float = 100_000.0    # settlement tokens per signer
    challenge_window_s: int = 86_400     # a posted root can be challenged for a day
    withdrawal_delay_s: int = 3 * 86_400  # > the window: a leaving signer stays slashable

    def check(self) -> None:
        if not self.required_bond > 0:
            raise UserError(f"bond.required_bond: must be > 0 tokens, got {self.required_bond}")
        # finite, and the stake times the signers must fit the token's uint256
        if not self.required_bond < MAX_BOND_TOKENS:
            raise UserError(f"bond.required_bond: must be below {MAX_BOND_TOKENS:.0e} tokens, got {self.required_bond}")
        if self.challenge_window_s <= 0:
            raise UserError(f"bond.challenge_window_s: must be > 0 seconds, got {self.challenge_window_s}")
        if self.withdrawal_delay_s <= self.challenge_window_s:
            raise UserError(f"bond.withdrawal_delay_s: must exceed the challenge window "
                            f"({self.challenge_window_s} s), got {self.withdrawal_delay_s}")
        if self.withdrawal_delay_s >= 2**64:
            raise UserError(f"bond.withdrawal_delay_s: must be below 2**64 seconds, got {self.withdrawal_delay_s}")

    def stake_units(self, decimals: int) -> int:
        """The stake in token units; refused when it rounds to nothing (SignerBond needs > 0)."""
        units = int(Decimal(repr(float(self.required_bond))) * 10**decimals)
        if units == 0:
            raise UserError(f"bond.required_bond: {self.required_bond} tokens is less than one unit of a "
                            f"{decimals}-decimal token")
        return units

    def units(self) -> int:
        return self.stake_units(TOKEN_DECIMALS)


def _build(w3: Web3, sender: LocalAccount, call, what: str, nonce: int, gas: int | None = None) -> dict:
    """The signed-to-be transaction; estimated unless `gas` is given (estimation reverted:
    UserError with the reason)."""
    fields = {"from": sender.address, "chainId": w3.eth.chain_id, "nonce": nonce}
    if gas is not None:
        fields["gas"] = gas
    try:
        return call.build_transaction(fields)
    except Exception as exc:  # noqa: BLE001 - estimation reverted: say why
        raise UserError(f"{what}: would revert: {getattr(exc, 'message', None) or exc}") from exc


def _mined(w3: Web3, tx_hash, what: str) -> dict:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise UserError(f"{what}: transaction reverted ({receipt['transactionHash'].to_0x_hex()})")
    return receipt


def send(w3: Web3, sender: LocalAccount, call, what: str):
    """Sign and send one call from a dev account; raises UserError with the revert reason."""
    tx = _build(w3, sender, call, what, w3.eth.get_transaction_count(sender.address, "pending"))
    return _mined(w3, w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction), what)


# gas of a call sent without estimation (its estimate would run before the calls ahead of it
# in the block): far above publish_epoch_data over hundreds of market leaves, far below the
# devnet's 100M block gas limit
UNESTIMATED_GAS = 20_000_000


def send_in_one_block(w3: Web3, sender: LocalAccount, calls) -> list[dict]:
    """Send `calls` ((contract call, what) pairs) from `sender` and mine them in one block, in
    order, as a keeper's batch lands: a watcher polling between a root and its public data
    would otherwise challenge (and void) the root before its data is published. The first call
    is estimated, the rest sent with UNESTIMATED_GAS; returns the receipts."""
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    txs = [_build(w3, sender, call, what, nonce + i, None if i == 0 else UNESTIMATED_GAS)
           for i, (call, what) in enumerate(calls)]
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        hashes = [w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction) for tx in txs]
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    return [_mined(w3, h, what) for h, (_call, what) in zip(hashes, calls, strict=True)]


def deploy_system(w3: Web3, owner: LocalAccount, signers: list[str], threshold: int,
                  params: Params, settings: EngineSettings = EngineSettings(),
                  bonds: BondSettings | None = BondSettings(),
                  signer_keys: list[LocalAccount] = (), token_contract: str = "MockERC20") -> Deployment:
    """Everything, owned by `owner`, settling in `token_contract` (a token of contracts/mocks:
    MockERC20, or BlocklistToken, whose owner blocks addresses as a stablecoin's issuer can).
    With `bonds` (the default) the SignerBond and FraudProofs are deployed and wired, and every
    signer is bonded: a signer whose key is in `signer_keys` gets the stake from the token's
    faucet and bonds it itself, another is funded by the owner (SignerBond credits a stake to
    whoever it names). `bonds=None`: no bonds, every signer
    counts (the oracle as before fraud proofs)."""
    if bonds is not None:
        bonds.check()
    builds = compile_contracts([token_contract, "InstrumentRegistry", "RiskOracle", "MarginEngine",
                                "MarginEngineExtension", "MarginEngineGovernance", "ScenarioVerifier", "SignerBond",
                                "FraudProofs"])
    token = deploy(w3, builds[token_contract], owner, "netmargin USD", "nUSD", TOKEN_DECIMALS)
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
    extension, governance = (deploy(w3, builds[name], owner, token.address, oracle.address, registry.address)
                             for name in ("MarginEngineExtension", "MarginEngineGovernance"))
    engine = deploy(w3, builds["MarginEngine"], owner, token.address, oracle.address, registry.address,
                    extension.address, governance.address, settings.trading(), settings.liquidation())
    engine = w3.eth.contract(address=engine.address, abi=engine_abi(
        builds["MarginEngine"]["abi"], builds["MarginEngineExtension"]["abi"]))
    dep = Deployment(w3=w3, engine=engine, oracle=oracle, registry=registry, token=token, verifier=verifier)
    if bonds is not None:
        deploy_bonds(dep, builds, owner, signers, signer_keys, bonds)
    return dep


def deploy_bonds(dep: Deployment, builds: dict, owner: LocalAccount, signers: list[str],
                 signer_keys: list[LocalAccount], bonds: BondSettings) -> None:
    """SignerBond and FraudProofs (the verifier registered for the oracle's parameter set, the
    proofs the bond's only slasher), every signer bonded, then the oracle wired to both: in
    that order, so no root is ever refused for want of bonded signers."""
    w3 = dep.w3
    # forfeited bonds go to this engine's insurance fund (SignerBond.push_forfeited)
    bond = deploy(w3, builds["SignerBond"], owner, dep.token.address, bonds.units(),
                  bonds.challenge_window_s, bonds.withdrawal_delay_s, dep.engine.address)
    fraud = deploy(w3, builds["FraudProofs"], owner, dep.oracle.address, bond.address)
    send(w3, owner, fraud.functions.register_verifier(dep.verifier.address), "register_verifier")
    send(w3, owner, bond.functions.set_slasher(fraud.address), "set_slasher")
    amount = bonds.units()
    keys = {k.address: k for k in signer_keys}
    for i, signer in enumerate(signers):
        funder = keys.get(Web3.to_checksum_address(signer), owner)
        send(w3, owner, dep.token.functions.mint(funder.address, amount), f"signers[{i}]: mint the bond")
        send(w3, funder, dep.token.functions.approve(bond.address, amount), f"signers[{i}]: approve the bond")
        send(w3, funder, bond.functions.bond(signer, amount), f"signers[{i}]: bond")
        if not bond.functions.is_bonded(signer).call():
            raise UserError(f"signers[{i}]: {signer} is not bonded after staking {bonds.required_bond:g} tokens "
                            "(a token that takes a fee on transfer?)")
    send(w3, owner, dep.oracle.functions.set_fraud_contracts(bond.address, fraud.address), "set_fraud_contracts")
    dep.signer_bond, dep.fraud_proofs = bond, fraud


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

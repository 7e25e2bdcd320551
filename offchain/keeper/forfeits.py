"""Forfeited signer bonds to the insurance fund, every cycle, without anyone remembering.

A proven fraud proof slashes the signers: SignerBond pays the challenger its share and keeps
the rest as `forfeited` until someone calls `push_forfeited()`, which moves the whole balance
into the insurance fund of the engine fixed at the bond's deployment. The keeper is that
someone: each cycle it reads the balance and, at `forfeited_push_min` tokens or more, sends
the push through its own executor (estimate, gas, retries, nonce, as every keeper action).

The push needs no oracle and no unpaused engine (`fund_insurance` has no pause check), so
nothing waits for either. A push that would revert is estimated, never sent: its reason is
logged once, and it is tried again only when the balance changes or RETRY_BLOCKS later, so a
refusing bond never costs a call per block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_utils import to_checksum_address
from web3.contract import Contract

from offchain.chain.build import compile_contracts
from offchain.chain.contracts import Deployment
from offchain.chain.events import event_logs
from offchain.errors import UserError
from offchain.keeper.executor import Encoder, Executor, TxResult
from offchain.keeper.metrics import KeeperMetrics

log = logging.getLogger("netmargin.keeper")

# blocks before a refused push (same balance) is estimated again
RETRY_BLOCKS = 100
ZERO = "0x" + "00" * 20


@dataclass
class Push:
    """One cycle's attempt: the balance read, and the transaction when one was estimated."""

    forfeited: int
    result: TxResult | None = None
    pushed: int = 0   # token units that reached the insurance fund


def find_bond(dep: Deployment, address: str = "", from_block: int = 0) -> Contract | None:
    """The SignerBond whose forfeits this keeper pushes: `address` (checked to pay this
    engine's insurance fund), else the deployment's, else the one the oracle last named
    (FraudContractsSet, searched from `from_block`: the oracle names it after the engine's
    deployment, since the bond needs the engine's address). None on a deployment without
    bonds."""
    abi = compile_contracts(["SignerBond"])["SignerBond"]["abi"]
    if address:
        bond = dep.w3.eth.contract(address=to_checksum_address(address), abi=abi)
        try:
            fund = to_checksum_address(bond.functions.insurance_fund().call())
        except Exception as exc:  # noqa: BLE001 - any failure: not a SignerBond
            raise UserError(f"config.signer_bond_address: {address} does not answer as a SignerBond: "
                            f"{str(exc)[:120]}") from exc
        if fund != dep.engine.address:
            raise UserError(f"config.signer_bond_address: {address} pays forfeited bonds into engine {fund}, "
                            f"not this keeper's engine {dep.engine.address}; set the bond of this deployment "
                            "(deployment.json signer_bond) or leave it empty")
        return bond
    if dep.signer_bond is not None:
        return dep.w3.eth.contract(address=dep.signer_bond.address, abi=abi)
    logs = event_logs(dep.oracle, "FraudContractsSet", [], from_block=from_block)
    if not logs:
        return None
    named = to_checksum_address("0x" + bytes(logs[-1][0]["topics"][1])[-20:].hex())
    if named == to_checksum_address(ZERO):
        return None
    bond = dep.w3.eth.contract(address=named, abi=abi)
    if to_checksum_address(bond.functions.insurance_fund().call()) != dep.engine.address:
        log.info("signer bond funds another engine: its forfeits are not pushed by this keeper",
                 extra={"signer_bond": named})
        return None
    return bond


class ForfeitPusher:
    def __init__(self, dep: Deployment, executor: Executor, metrics: KeeperMetrics, min_tokens: float,
                 address: str = "", from_block: int = 0):
        self.dep = dep
        self.executor = executor
        self.metrics = metrics
        self.min_tokens = min_tokens
        self.address = address
        self.from_block = from_block
        self.bond: Contract | None = None
        self.min_units = 0
        self._calls: Encoder | None = None
        self._refused: tuple[int, int, str] | None = None   # (balance, block, reason) of the last refusal

    def start(self) -> str | None:
        """Find the bond (None: nothing to push, ever); returns its address."""
        self.bond = find_bond(self.dep, self.address, self.from_block)
        if self.bond is None:
            return None
        decimals = int(self.dep.token.functions.decimals().call())
        self.min_units = int(round(self.min_tokens * 10**decimals))
        self._calls = Encoder(self.bond)
        self._status(0)
        return self.bond.address

    def push(self, head: int) -> Push | None:
        """Push the forfeited balance when it is at least the minimum; None without a bond."""
        if self.bond is None:
            return None
        forfeited = int(self.executor.call_with_retry(lambda: self.bond.functions.forfeited().call(), "forfeited"))
        self.metrics.forfeited_pending.set(forfeited)
        out = Push(forfeited)
        if forfeited == 0 or forfeited < self.min_units:
            self._status(forfeited)
            return out
        if self._refused and self._refused[0] == forfeited and head < self._refused[1] + RETRY_BLOCKS:
            self._status(forfeited)
            return out
        res = self.executor.send("push_forfeited", self._calls("push_forfeited"))
        out.result = res
        if res.ok and not res.dry_run:
            out.pushed = self._moved(res)
            self._refused = None
            self.metrics.forfeited_pushes.inc()
            self.metrics.forfeited_pushed.inc(out.pushed)
            self.metrics.forfeited_push_gas.set(res.gas_used)
            self.metrics.forfeited_pending.set(forfeited - out.pushed)
        elif not res.ok:
            if self._refused is None or self._refused[2] != res.error:
                log.warning("push_forfeited refused: not retried until the balance changes",
                            extra={"signer_bond": self.bond.address, "forfeited": forfeited,
                                   "reason": res.error[:200], "retry_after_blocks": RETRY_BLOCKS})
            self._refused = (forfeited, head, res.error)
        self._status(forfeited - out.pushed)
        return out

    def _moved(self, res: TxResult) -> int:
        """The amount the bond's ForfeitedToInsurance log says reached the fund."""
        event = self.bond.events.ForfeitedToInsurance()
        for raw in res.logs:
            if to_checksum_address(raw["address"]) != self.bond.address:
                continue
            try:
                return int(event.process_log(raw)["args"]["amount"])
            except Exception:  # noqa: BLE001 - the engine's own log in the same receipt
                continue
        return 0

    def _status(self, pending: int) -> None:
        self.metrics.forfeited_status = {
            "signer_bond": self.bond.address, "pending_units": pending, "min_units": self.min_units,
            "pushed_units": int(self.metrics.forfeited_pushed._value.get()),
            **({"refused": self._refused[2][:200]} if self._refused else {})}

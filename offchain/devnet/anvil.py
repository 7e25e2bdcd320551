"""A local Anvil chain for the devnet, the demo, the e2e tests and the benchmarks.

Anvil is the project's pinned npm binary; it is started on a free port, on automine, with the
chain clock set where the caller wants it (the demo starts it on the replay's first day), and
stopped with the context manager.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from offchain.errors import UserError
from offchain.paths import REPO_ROOT as ROOT

ANVIL_REL = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil() -> str:
    local = ROOT / ANVIL_REL
    if local.is_file():
        return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise UserError(f"anvil: not found at {local} nor on PATH; run `make install` first")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Devnet:
    """A running Anvil; `accounts` are its funded dev accounts (from the well-known test mnemonic)."""

    process: subprocess.Popen
    url: str
    w3: Web3
    accounts: list[LocalAccount]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- clock and mining (anvil cheatcodes) ----
    def _rpc(self, method: str, params: list):
        # make_request returns JSON-RPC errors instead of raising: a refused time jump
        # would otherwise pass silently and the chain clock would be wrong
        reply = self.w3.provider.make_request(method, params)
        if "error" in reply:
            raise UserError(f"anvil {method}{params}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    def set_next_timestamp(self, ts: int) -> None:
        self._rpc("evm_setNextBlockTimestamp", [int(ts)])

    def mine(self, timestamp: int | None = None) -> None:
        if timestamp is not None:
            self.set_next_timestamp(timestamp)
        self._rpc("evm_mine", [])

    def interval_mining(self, seconds: int) -> None:
        """0 = back to automine."""
        if seconds == 0:
            self._rpc("evm_setAutomine", [True])
        else:
            self._rpc("evm_setIntervalMining", [int(seconds)])


def start_anvil(accounts: int = 10, timestamp: int | None = None, port: int | None = None,
                balance_eth: int = 1_000_000, log_path: Path | None = None,
                extra_args: tuple[str, ...] = ()) -> Devnet:
    port = port or free_port()
    cmd = [find_anvil(), "--port", str(port), "--accounts", str(accounts), "--mnemonic", MNEMONIC,
           "--balance", str(balance_eth), "--silent", "--gas-limit", "100000000",
           "--code-size-limit", "100000"]
    if timestamp is not None:
        cmd += ["--timestamp", str(int(timestamp))]
    cmd += list(extra_args)
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 60}))
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise UserError(f"anvil: exited with status {proc.returncode} on port {port}")
        try:
            _ = w3.eth.chain_id
            break
        except Exception:  # noqa: BLE001 - not listening yet
            if time.monotonic() > deadline:
                proc.kill()
                raise UserError(f"anvil: did not answer on {url} within 20 s") from None
            time.sleep(0.05)
    Account.enable_unaudited_hdwallet_features()
    keys = [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(accounts)]
    return Devnet(proc, url, w3, keys)

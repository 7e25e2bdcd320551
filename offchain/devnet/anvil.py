"""A local Anvil chain for the demo, the e2e tests and the benchmarks, plus contract builds.

Anvil is the project's pinned npm binary; it is started on a free port, on automine, with the
chain clock set where the caller wants it (the demo starts it on the replay's first day), and
stopped with the context manager. Contracts are compiled with the venv's vyper 0.4.3 (the
same compiler ape uses) and cached by source hash in .build/.
"""

from __future__ import annotations

import hashlib
import json
import os
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

ROOT = Path(__file__).resolve().parents[2]
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


def find_vyper() -> str:
    venv = ROOT / ".venv/bin/vyper"
    if venv.is_file():
        return str(venv)
    found = shutil.which("vyper")
    if found:
        return found
    raise UserError("vyper: compiler not found; run `make install` (it installs vyper 0.4.3 into .venv)")


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


# ---- contract builds ----

def _sources_digest(contracts_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(contracts_dir.rglob("*.vy*")):
        h.update(str(p.relative_to(contracts_dir)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def compile_contracts(names: list[str], contracts_dir: Path | None = None) -> dict[str, dict]:
    """{name: {"abi": [...], "bytecode": "0x..."}} for contracts/<name>.vy, cached in .build/."""
    contracts_dir = contracts_dir or ROOT / "contracts"
    cache_dir = ROOT / ".build" / "netmargin-keeper"
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = _sources_digest(contracts_dir)
    out: dict[str, dict] = {}
    for name in names:
        cached = cache_dir / f"{name}-{digest}.json"
        if cached.is_file():
            out[name] = json.loads(cached.read_text())
            continue
        src = _find_source(contracts_dir, name)
        env = dict(os.environ, PATH=f"{Path(find_vyper()).parent}:{os.environ.get('PATH', '')}")
        res = subprocess.run([find_vyper(), "-f", "abi,bytecode", "-p", str(contracts_dir), str(src)],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode != 0:
            raise UserError(f"compile {src.relative_to(ROOT)}: vyper failed:\n{res.stderr[-2000:]}")
        abi_line, bytecode = res.stdout.strip().splitlines()[:2]
        out[name] = {"abi": json.loads(abi_line), "bytecode": bytecode.strip()}
        cached.write_text(json.dumps(out[name]))
    return out


def _find_source(contracts_dir: Path, name: str) -> Path:
    for p in (contracts_dir / f"{name}.vy", contracts_dir / "mocks" / f"{name}.vy"):
        if p.is_file():
            return p
    raise UserError(f"contract {name}: no {name}.vy under {contracts_dir}")


def deploy(w3: Web3, build: dict, sender: LocalAccount, *args):
    """Deploy and return a web3 contract bound to the new address."""
    factory = w3.eth.contract(abi=build["abi"], bytecode=build["bytecode"])
    tx = factory.constructor(*args).build_transaction({
        "from": sender.address,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": w3.eth.chain_id,
    })
    signed = sender.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    if receipt["status"] != 1:
        raise UserError(f"deploy: constructor reverted ({len(args)} args)")
    return w3.eth.contract(address=receipt["contractAddress"], abi=build["abi"])

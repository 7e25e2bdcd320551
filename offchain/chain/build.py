"""Contract builds for everything that talks to a node: compile with the venv's vyper 0.4.3
(the same compiler ape uses), cache by source hash in .build/, deploy a build with web3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.errors import UserError
from offchain.paths import REPO_ROOT as ROOT


def find_vyper() -> str:
    venv = ROOT / ".venv/bin/vyper"
    if venv.is_file():
        return str(venv)
    found = shutil.which("vyper")
    if found:
        return found
    raise UserError("vyper: compiler not found; run `make install` (it installs vyper 0.4.3 into .venv)")

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
        # write-then-rename: parallel test workers (and a keeper beside a watcher) share the cache
        part = cached.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps(out[name]))
        os.replace(part, cached)
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

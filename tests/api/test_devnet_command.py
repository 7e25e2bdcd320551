"""`netmargin devnet` as a user runs it: up, deployment.json written, the API and the web app
answering, the chain clock moving; Ctrl-C stops everything with exit 0 and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from web3 import Web3

from offchain.paths import REPO_ROOT


def test_devnet__started_then_ctrl_c__serves_writes_deployment_and_stops_cleanly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "offchain.cli", "devnet", "--rpc-port", "0", "--api-port", "0", "--out",
         str(tmp_path), "--wallets", "2", "--speed", "3600", "--block-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        out = "".join(lines)
        assert "netmargin devnet is up" in out, out + proc.stderr.read() if proc.poll() is not None else out
        d = json.loads((tmp_path / "deployment.json").read_text())
        assert d["chain_id"] == 31337 and len(d["instruments"]) == 28 and len(d["test_wallets"]) == 2
        assert d["contracts"]["engine"]["abi"] and d["order_eip712"]["primaryType"] == "Order"
        assert_bonds_wired(d)
        api = d["api_url"]
        first = json.load(urllib.request.urlopen(f"{api}/api/health", timeout=10))  # noqa: S310
        assert first["prices_posted"]
        time.sleep(3)
        later = json.load(urllib.request.urlopen(f"{api}/api/health", timeout=10))  # noqa: S310
        assert later["timestamp"] >= first["timestamp"] + 3600  # the accelerated clock runs
        page = urllib.request.urlopen(f"{api}/", timeout=10).read().decode()  # noqa: S310
        assert "<title>netmargin</title>" in page or "make install" in page
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped." in rest and "Traceback" not in err, err


def assert_bonds_wired(d: dict) -> None:
    """deployment.json names the signer bond, the fraud proofs and the verifier (with ABIs), and
    on chain they are wired to each other and to the oracle, every signer bonded."""
    w3 = Web3(Web3.HTTPProvider(d["rpc_url"]))
    c = {name: w3.eth.contract(address=x["address"], abi=x["abi"]) for name, x in d["contracts"].items()}
    bond, fraud, oracle = c["signer_bond"], c["fraud_proofs"], c["oracle"]
    assert bond.functions.slasher().call() == fraud.address
    assert bond.functions.insurance_fund().call() == c["engine"].address
    assert fraud.functions.BOND().call() == bond.address and fraud.functions.ORACLE().call() == oracle.address
    assert fraud.functions.verifiers(oracle.functions.params_hash().call()).call()[0] == c["verifier"].address
    (wired,) = oracle.events.FraudContractsSet().get_logs(from_block=d["deploy_block"])
    assert (wired["args"]["signer_bond"], wired["args"]["fraud_proofs"]) == (bond.address, fraud.address)
    assert len(d["roles"]["signers"]) == 2
    for s in d["roles"]["signers"]:
        assert oracle.functions.is_signer(s).call() and bond.functions.is_bonded(s).call()
        # each signer staked its own tokens (from the faucet), not the owner's
        (bonded,) = bond.events.Bonded().get_logs(from_block=d["deploy_block"], argument_filters={"signer": s})
        assert bonded["args"]["funder"] == s and bonded["args"]["amount"] == bond.functions.required_bond().call()

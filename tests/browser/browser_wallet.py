"""A test EIP-1193 wallet for the browser (as headless-web3-provider does): `window.ethereum`
is injected before the page loads; its requests come to Python, which answers account and
chain questions, signs transactions and typed data with an Anvil test key (eth-account), and
forwards every other JSON-RPC call to Anvil unchanged (errors included, revert data and all).
"""

from __future__ import annotations

import json
import urllib.request

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

INIT_SCRIPT = """
(() => {
  const listeners = {};
  window.ethereum = {
    isNetmarginTestWallet: true,
    async request({ method, params }) {
      const reply = await window.__walletRpc(method, params || []);
      if (reply.error) {
        const err = new Error(reply.error.message);
        err.code = reply.error.code;
        err.data = reply.error.data;
        throw err;
      }
      return reply.result;
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); return this; },
    removeListener(event, fn) { listeners[event] = (listeners[event] || []).filter((f) => f !== fn); return this; },
  };
})();
"""


class BrowserWallet:
    def __init__(self, account: LocalAccount, rpc_url: str):
        self.account = account
        self.rpc_url = rpc_url
        self.calls: list[str] = []
        self._id = 0

    def install(self, context) -> None:
        """Before any page loads: the provider object and the Python side of its requests."""
        context.expose_function("__walletRpc", self.handle)
        context.add_init_script(INIT_SCRIPT)

    def rpc(self, method: str, params: list) -> dict:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}).encode()
        req = urllib.request.Request(self.rpc_url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - the local Anvil
            reply = json.loads(r.read())
        return {"error": reply["error"]} if "error" in reply else {"result": reply.get("result")}

    def handle(self, method: str, params: list) -> dict:
        self.calls.append(method)
        me = self.account.address
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [me]}
        if method in ("wallet_switchEthereumChain", "wallet_addEthereumChain"):
            return {"result": None}
        if method == "eth_sendTransaction":
            return self._send(params[0])
        if method == "eth_signTypedData_v4":
            address, data = params
            if address.lower() != me.lower():
                return {"error": {"code": 4100, "message": f"unknown account {address}"}}
            message = json.loads(data) if isinstance(data, str) else data
            signed = self.account.sign_message(encode_typed_data(full_message=message))
            return {"result": "0x" + bytes(signed.signature).hex()}
        if method == "personal_sign":
            from eth_account.messages import encode_defunct
            signed = self.account.sign_message(encode_defunct(hexstr=params[0]))
            return {"result": "0x" + bytes(signed.signature).hex()}
        return self.rpc(method, params)

    def _send(self, tx: dict) -> dict:
        if tx.get("from", "").lower() != self.account.address.lower():
            return {"error": {"code": 4100, "message": f"unknown account {tx.get('from')}"}}
        call = {k: tx[k] for k in ("from", "to", "data", "value") if tx.get(k) is not None}
        gas = self.rpc("eth_estimateGas", [call])
        if "error" in gas:
            return gas  # the revert reason goes back to the page
        nonce = self.rpc("eth_getTransactionCount", [self.account.address, "pending"])["result"]
        chain = self.rpc("eth_chainId", [])["result"]
        base = int(self.rpc("eth_gasPrice", [])["result"], 16)
        signed = Account.sign_transaction({
            "to": tx.get("to"), "data": tx.get("data", "0x"), "value": int(tx.get("value", "0x0"), 16),
            "gas": int(int(gas["result"], 16) * 1.2) + 10_000, "nonce": int(nonce, 16), "chainId": int(chain, 16),
            "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9, "type": 2,
        }, self.account.key)
        return self.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])

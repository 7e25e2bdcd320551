"""One devnet for the API tests: real Anvil, the deployed system, the standard chain, the
keeper (driven cycle by cycle here, so each test sees a settled state), the dealer's quotes,
and the FastAPI app over it through Starlette's test client (no sockets needed)."""

from __future__ import annotations

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from offchain.api.app import create_app
from offchain.devnet.deploy import fund
from offchain.devnet.run import DevnetOptions, start_devnet

# the replay starts two days before the March 2020 crash (the liquidation test needs it)
START = "2020-03-10"


@pytest.fixture(scope="session")
def net(tmp_path_factory):
    out = tmp_path_factory.mktemp("devnet")
    net = start_devnet(DevnetOptions(start=START, rpc_port=0, api_port=0, out=out, serve=False,
                                     clock=False, wallets=3), progress=lambda *_: None)
    net.ctx.market.refresh_s = 0.0  # every request sees the latest block (tests move it)
    yield net
    net.stop()


@pytest.fixture(scope="session")
def client(net):
    with TestClient(create_app(net.ctx), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def settle(net):
    """Mine a block and run one keeper cycle: what a live devnet does every block."""
    def run(seconds: int = 60):
        last = int(net.anvil.w3.eth.get_block("latest")["timestamp"])
        net.anvil.mine(last + seconds)
        return net.keeper.cycle()
    return run


def new_key(net, deposit: float):
    """A fresh key with gas and `deposit` tokens deposited in the engine (a maker nobody else
    holds: order-book tests list and withdraw as it)."""
    key = Account.create()
    w3 = net.anvil.w3
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
        {"from": net.anvil.accounts[0].address, "to": key.address, "value": 10**18}))
    fund(net.dep, net.anvil.accounts[0], key, deposit)
    return key

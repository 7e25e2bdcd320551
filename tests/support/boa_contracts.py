"""The project's contracts on titanoboa, each compiled once per test session.

`boa.load(path, ...)` compiles its file on every call: even with boa's disk cache it parses
and analyses the contract and every module it imports again (seconds for the engine or the
verifier on a 2-core machine), so a fixture that deployed per test, or a suite that loaded
the same contract as another, paid a compile each time. `deploy` keeps one deployer per
file (the bytecode and ABI do not change within a session; `make test` compiles first) and
deploys into whatever boa environment and anchor is current."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import boa

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@cache
def deployer(name: str):
    """The compiled contracts/<name>.vy (name may hold a folder: "mocks/MockERC20")."""
    return boa.load_partial(str(CONTRACTS / f"{name}.vy"))


def deploy(name: str, *args, **kwargs):
    """A fresh deployment of contracts/<name>.vy with its constructor `args`."""
    return deployer(name).deploy(*args, **kwargs)

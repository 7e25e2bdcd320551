"""The pricer module on titanoboa, through a harness contract that exposes its internal
functions (compiled with contracts/ as its import root)."""

from pathlib import Path

import boa
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pricer():
    source = (Path(__file__).parent / "PricerHarness.vy").read_text()
    return boa.loads(source, filename=str(ROOT / "contracts" / "PricerHarness.vy"))

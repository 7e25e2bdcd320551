"""Gas of RiskOracle's hot paths: a 200-instrument market-data batch (first write and
update) and index/settlement posts. Prints the figures docs/oracle.md quotes."""

import pytest
from conftest import BTC, ETH, KIND_PERPETUAL, PARAMS_HASH, WAD

from offchain.chain.eip712 import MarketData, symbol_to_bytes32

BATCH = 200
BLOCK_GAS_LIMIT = 30_000_000


@pytest.fixture(scope="module")
def wide_registry(registry, admin):
    """The fixture registry plus perpetuals up to BATCH instruments."""
    for i in range(registry.instrument_count(), BATCH):
        registry.list_instrument(symbol_to_bytes32(f"X{i}"), KIND_PERPETUAL, 0, 0, sender=admin)
    assert registry.instrument_count() == BATCH
    return registry


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(wide_registry, oracle):
    """Module-scoped setup before the first test's snapshot (ape isolation)."""


def _batch(timestamp: int, mark_wad: int) -> MarketData:
    ids = list(range(1, BATCH + 1))
    return MarketData(
        ids=ids,
        marks_wad=[mark_wad + i for i in ids],
        funding_indices_wad=[-i * WAD // 1_000 for i in ids],
        im_long_wad=[6_000 * WAD] * BATCH,
        im_short_wad=[6_500 * WAD] * BATCH,
        mm_long_wad=[3_000 * WAD] * BATCH,
        mm_short_wad=[3_250 * WAD] * BATCH,
        params_hash=PARAMS_HASH,
        timestamp=timestamp,
        deadline=timestamp + 600,
    )


def test_post_market_data__200_instruments__fits_a_block(wide_registry, oracle, keeper, sign, now):
    t = now()
    first = _batch(t - 10, 60_000 * WAD)
    tx_first = oracle.post_market_data(first.as_args(), sign(first), sender=keeper)
    second = _batch(t - 9, 61_000 * WAD)
    tx_update = oracle.post_market_data(second.as_args(), sign(second), sender=keeper)
    marks, funding, oldest = oracle.marks(list(range(169, 201)))
    assert list(marks) == list(second.marks_wad[168:]) and oldest == t - 9
    print(f"\npost_market_data {BATCH} instruments, 2 signatures: first write {tx_first.gas_used:,} gas, "
          f"update {tx_update.gas_used:,} gas ({tx_update.gas_used // BATCH:,}/instrument)")
    assert tx_first.gas_used < BLOCK_GAS_LIMIT // 2
    assert tx_update.gas_used < 4_000_000


def test_post_index_and_settlement__gas(oracle, post_index, post_settlement, expire_instruments):
    tx_index, _ = post_index({BTC: 60_000 * WAD, ETH: 3_000 * WAD})
    expire_instruments()
    tx_settle, _ = post_settlement(2, 61_000 * WAD)
    print(f"\npost_index_prices 2 underlyings: {tx_index.gas_used:,} gas; "
          f"post_settlement_price: {tx_settle.gas_used:,} gas")
    assert tx_index.gas_used < 150_000 and tx_settle.gas_used < 120_000

"""Attacks on the governance facet: the owner's functions (trading and liquidation parameters,
fee withdrawal) run in MarginEngineGovernance through the engine's delegatecall, in the
engine's storage. What holds: direct calls touch nothing, the owner check reads the engine's
owner (two-step transfers included; direct calls: `test_token_attacks.py::test_governance__called_directly_even_by_the_owner__*`), the bits the trading word shares with the parameters
(the void flag, the pause mirror, the fees) survive every owner write, and every event the
facet logs from the engine's address decodes with the engine's ABI (the keeper's too). Real
Anvil chain; names say the attack and what holds."""

import ape
import pytest
from conftest import WAD

from offchain.chain.contracts import abis

from .conftest import LIQUIDATION, PERP, TRADING

USDC = 10**6
PRICE = 60_000 * WAD
TRADING_SLOT = 11      # core._trading (tests/engine/test_governance.py checks the layouts agree)
VOID_SEEN, PAUSED_BIT = 1 << 120, 1 << 121


@pytest.fixture(scope="module", autouse=True)
def _deploy_first(engine, extension, governance, oracle, verifier, set_market, fund, trade):
    """Session deployments before the first test's snapshot (ape isolation)."""


@pytest.fixture(autouse=True)
def _isolated(chain):
    with chain.isolate():
        yield


def _trading_word(chain, engine) -> int:
    return int.from_bytes(bytes(chain.provider.get_storage(engine.address, TRADING_SLOT)), "big")


def test_governance__ownership_transferred_in_two_steps__facet_follows_the_engines_owner(
        engine, admin, keeper, attacker, fund, set_market, trade, maker, trader):
    """The facet's owner check reads the engine's `owner` slot (same layout prefix): after a
    two-step transfer the new owner sets parameters and withdraws fees through the engine, the
    old one and a stranger are refused, and a pending (unaccepted) owner has no power yet."""
    fund(maker, 500_000 * USDC)
    fund(trader, 20_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, PRICE)                    # a taker fee of 60
    engine.transfer_ownership(keeper, sender=admin)
    with ape.reverts("ownable: caller is not the owner"):
        engine.set_trading_params(TRADING, sender=keeper)      # pending only
    engine.accept_ownership(sender=keeper)
    for who in (admin, attacker):
        with ape.reverts("ownable: caller is not the owner"):
            engine.withdraw_fees(1, who, sender=who)
        with ape.reverts("ownable: caller is not the owner"):
            engine.set_liquidation_params(LIQUIDATION, sender=who)
    engine.set_trading_params((16, 5, 600, 3_600, 1_200), sender=keeper)
    engine.withdraw_fees(10 * USDC, keeper, sender=keeper)
    assert engine.fees_wad() == 50 * WAD
    assert tuple(engine.trading_params()) == (16, 5, 600, 3_600, 1_200)


def test_governance__owner_writes_after_a_void_and_a_pause__keep_void_seen_and_the_pause_mirror(
        engine, oracle, admin, keeper, chain, fund, set_market, trade, maker, trader):
    """The trading word packs the parameters with the void flag (VOID_SEEN: new risk asks the
    oracle whether a basis is void), the pause mirror and the fees collected. New trading
    parameters, new liquidation parameters and a fee withdrawal, each through the facet, keep
    both bits and move the fees only by what left."""
    fund(maker, 500_000 * USDC)
    fund(trader, 20_000 * USDC)
    set_market()
    trade(maker, trader, PERP, -WAD, PRICE)
    the_oracle = ape.accounts[oracle.address]                   # impersonated: only it notes a void
    the_oracle.balance = 10**18
    engine.note_void(sender=the_oracle)
    engine.pause(sender=admin)
    word = _trading_word(chain, engine)
    assert word & VOID_SEEN and word & PAUSED_BIT
    engine.set_trading_params((16, 5, 600, 3_600, 1_200), sender=admin)
    engine.set_liquidation_params(LIQUIDATION, sender=admin)
    engine.withdraw_fees(10 * USDC, keeper, sender=admin)
    word = _trading_word(chain, engine)
    assert word & VOID_SEEN and word & PAUSED_BIT
    assert word >> 128 == 50 * WAD
    engine.unpause(sender=admin)
    engine.set_trading_params(TRADING, sender=admin)
    word = _trading_word(chain, engine)
    assert word & VOID_SEEN and not word & PAUSED_BIT


def test_governance__events_logged_from_the_engine__declared_identically_in_its_abi_and_the_keepers(
        engine, governance):
    """The facet logs from the engine's address (delegatecall): each of its events must be in
    the engine's ABI with the same fields, or no client could decode them; the off-chain ABI
    (`offchain.chain.contracts.abis`, the keeper's and the API's) too."""
    def events(items):
        return {e["name"]: [(i["name"], i["type"], i.get("indexed", False)) for i in e["inputs"]]
                for e in items if e.get("type") == "event"}

    ours = events([e.model_dump(mode="json", by_alias=True) for e in engine.contract_type.abi])
    theirs = events([e.model_dump(mode="json", by_alias=True) for e in governance.contract_type.abi])
    offchain = events(abis()["MarginEngine"])
    assert set(theirs) >= {"FeesWithdrawn", "SocialisedLossRepaid", "TradingParamsSet", "LiquidationParamsSet"}
    for name, inputs in theirs.items():
        assert ours[name] == inputs and offchain[name] == inputs, name

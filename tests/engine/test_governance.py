"""Ownership, pause, parameter setters (every validation), signer changes, and the engine /
extension split (shared storage layout, events in the engine's ABI)."""

import ape
import pytest
from conftest import WAD

from .conftest import LIQUIDATION, PERP, ROOT, TRADING, storage_layout


def test_pause_unpause__owner__toggles_and_logs(engine, admin):
    tx = engine.pause(sender=admin)
    assert engine.paused() and tx.decode_logs(engine.Paused)
    with ape.reverts("pausable: contract is paused"):
        engine.pause(sender=admin)
    engine.unpause(sender=admin)
    assert not engine.paused()
    with ape.reverts("pausable: contract is not paused"):
        engine.unpause(sender=admin)


@pytest.mark.parametrize("call", ["pause", "unpause", "set_trading_params", "set_liquidation_params"])
def test_owner_functions__attacker__revert(engine, attacker, call):
    args = {"set_trading_params": [TRADING], "set_liquidation_params": [LIQUIDATION]}.get(call, [])
    with ape.reverts("ownable: caller is not the owner"):
        getattr(engine, call)(*args, sender=attacker)


def test_ownership__two_step__new_owner_must_accept(engine, admin, keeper, attacker):
    engine.transfer_ownership(keeper, sender=admin)
    assert engine.owner() == admin.address and engine.pending_owner() == keeper.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        engine.accept_ownership(sender=attacker)
    engine.accept_ownership(sender=keeper)
    assert engine.owner() == keeper.address
    with ape.reverts("ownable: caller is not the owner"):
        engine.pause(sender=admin)
    engine.pause(sender=keeper)


def test_set_trading_params__valid__stored_and_logged(engine, admin):
    params = (16, 5, 600, 3_600, 1_200)
    tx = engine.set_trading_params(params, sender=admin)
    assert tuple(engine.trading_params()) == params
    assert tuple(tx.decode_logs(engine.TradingParamsSet)[0].params) == params


@pytest.mark.parametrize("index, value, reason", [
    (0, 0, "max_positions out of range"),
    (0, 33, "max_positions out of range"),
    (1, 101, "taker_fee_bps above 100"),
    (2, 0, "max_price_age out of range"),
    (3, 0, "max_margin_basis_age out of range"),
    (4, 3_599, "max_liquidation_price_age out of range"),
])
def test_set_trading_params__invalid__reverts_naming_field(engine, admin, index, value, reason):
    params = list(TRADING)
    params[index] = value
    with ape.reverts(f"engine: {reason}"):
        engine.set_trading_params(tuple(params), sender=admin)
    assert tuple(engine.trading_params()) == TRADING


def test_set_liquidation_params__valid__stored_and_logged(engine, admin):
    params = (500, 100, 3_000, 5_000, 500, 10 * WAD)
    tx = engine.set_liquidation_params(params, sender=admin)
    assert tuple(engine.liquidation_params()) == params
    assert tuple(tx.decode_logs(engine.LiquidationParamsSet)[0].params) == params


@pytest.mark.parametrize("index, value, reason", [
    (0, 5_001, "discount_base_bps above max"),
    (2, 10_000, "discount_max_bps out of range"),
    (1, 2**16, "discount_slope out of range"),
    (3, 10_001, "insurance_share_bps out of range"),
    (4, 10_001, "buffer_bps out of range"),
    (5, 2**112, "dust_mm_wad out of range"),
])
def test_set_liquidation_params__invalid__reverts_naming_field(engine, admin, index, value, reason):
    params = list(LIQUIDATION)
    params[index] = value
    if index == 2:
        params[0] = 0  # keep base <= max so the max check is the one that fires
    with ape.reverts(f"engine: {reason}"):
        engine.set_liquidation_params(tuple(params), sender=admin)
    assert tuple(engine.liquidation_params()) == LIQUIDATION


def test_eip712_domain__engine__name_version_chain_address(engine, chain):
    _, name, version, chain_id, contract, _, _ = engine.eip712Domain()
    assert (name, version, chain_id, contract) == ("netmargin MarginEngine", "1", chain.chain_id, engine.address)


def test_apply_leaf__root_of_removed_signer__rejected_at_once(engine, oracle, admin, fund, set_market, trade, trader,
                                                              maker, keeper, signers, leaf_for, post_root):
    """A signer removed by governance signs no further root: the keeper's next root needs the
    remaining signers, and the book is margined by it."""
    fund(trader, 20_000 * 10**6)
    fund(maker, 100_000 * 10**6)
    set_market()
    trade(maker, trader, PERP, -WAD, 60_000 * WAD)
    oracle.remove_signer(signers[0].address, sender=admin)
    leaf = leaf_for(trader, WAD, WAD)
    with ape.reverts("oracle: not a signer"):
        post_root([leaf], by=signers[:2])
    trees = post_root([leaf], by=signers[1:])
    engine.apply_leaf(*_leaf_args(trees, trader), sender=keeper)
    assert engine.health(trader).im_wad == WAD


def _leaf_args(trees, account):
    leaf, proof = trees.account_proof(account.address)
    return leaf.as_args(), proof


@pytest.mark.parametrize("delegate", ["MarginEngineExtension", "MarginEngineGovernance"])
def test_delegate__storage_layout__is_a_prefix_of_the_engine(delegate):
    engine = storage_layout(ROOT / "contracts/MarginEngine.vy")
    theirs = storage_layout(ROOT / f"contracts/{delegate}.vy")
    assert theirs and all(engine[k] == v for k, v in theirs.items())


@pytest.mark.parametrize("delegate", ["MarginEngineExtension", "MarginEngineGovernance"])
def test_engine_abi__every_delegate_event__declared_identically(engine, delegate):
    """A delegate logs from the engine's address: every event it logs must decode there."""
    def events(contract_type):
        return {e.name: [(i.name, i.type, i.indexed) for i in e.inputs] for e in contract_type.events}

    ours, theirs = events(engine.contract_type), events(getattr(ape.project, delegate).contract_type)
    assert theirs and all(ours.get(name) == inputs for name, inputs in theirs.items())

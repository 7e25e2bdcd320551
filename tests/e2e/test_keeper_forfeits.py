"""The keeper moves forfeited signer bonds into the insurance fund: a real Anvil chain with the
engine, oracle, SignerBond and FraudProofs (the signer bonded in the real token: one whose
issuer can block addresses, as a stablecoin's can), the real
keeper posting honest roots, and a slash produced by a real proven fraud proof (a root the
bonded signer posts with one account's margin understated, challenged by the in-process
watcher, commit then reveal).

- below `forfeited_push_min`: read, reported, nothing sent;
- one keeper cycle: the whole forfeited balance in the insurance fund, the bond's and the
  engine's funds identities hold, metrics, /health and the log line say so;
- while the engine is paused: still pushed (`fund_insurance` has no pause check);
- while the token blocks the engine: the push is estimated, refused, logged once and not
  estimated again every block; RETRY_BLOCKS after the refusal, unblocked, it lands;
- the keeper process (`netmargin keeper --config --once`, keys from keyfiles, the bond from
  the config's `signer_bond_address`): pushes, one JSON log line with the amount and gas;
- a deployment without bonds: no bond found, the cycle runs, nothing about forfeits; a
  configured bond of another engine: refused at startup, naming the key.

Tests run in file order on one chain (one story)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from support.e2e import fill_at_marks, keeper_epoch

from offchain.chain.contracts import WAD, connect
from offchain.devnet.anvil import start_anvil
from offchain.devnet.demo import reconcile
from offchain.devnet.deploy import (
    BondSettings,
    EngineSettings,
    deploy_system,
    fund,
    list_instruments,
    send,
)
from offchain.devnet.rogue import next_second, post_rogue_root
from offchain.errors import UserError
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.forfeits import RETRY_BLOCKS
from offchain.keeper.keys import write_keyfile
from offchain.keeper.metrics import KeeperMetrics
from offchain.keeper.prices import ReplaySource, parse_date
from offchain.keeper.signing import Signers
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR, REPO_ROOT
from offchain.risk import load_params
from offchain.watcher.challenge import Challenger
from offchain.watcher.config import WatchConfig
from offchain.watcher.watch import Watcher, WatchMetrics

T0 = parse_date("2021-05-12", "t0")
PERP = 1
USD = 10**6                       # the devnet token's 6 decimals
BOND = 100_000 * USD
FORFEITED = BOND - BOND * 2_000 // 10_000   # the 80% a slash leaves in the bond
WINDOW, DELAY = 3_600, 7_200


def make_keeper(w, dep, gas, tmp, **cfg) -> Keeper:
    """A keeper bound as `netmargin keeper` binds it when `dep` is an address (connect: the
    engine alone; the bond found from the oracle's log), else to the deployment given."""
    if isinstance(dep, str):
        dep = connect(w["dev"].w3, dep)
    config = KeeperConfig(rpc_url=w["dev"].url, engine_address=dep.engine.address, price_max_age_s=3600,
                          data_dir=str(tmp), **cfg)
    keeper = Keeper(config, dep, Signers([w["signer"]]), Executor(w["dev"].w3, gas, config.gas),
                    StateStore(":memory:"), w["params"], w["source"], KeeperMetrics())
    keeper.startup()
    return keeper


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forfeits")
    dev = start_anvil(accounts=10, timestamp=T0)
    a = dev.accounts
    admin, keeper_gas, signer, challenger = a[0], a[1], a[4], a[6]
    traders = [a[2], a[3]]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [signer.address], 1, params, EngineSettings(),
                        BondSettings(BOND / USD, WINDOW, DELAY), signer_keys=[signer],
                        token_contract="BlocklistToken")
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"}])
    source = ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})
    w = dict(dev=dev, dep=dep, params=params, signer=signer, admin=admin, gas=keeper_gas, source=source,
             bond=dep.signer_bond, challenger=challenger, tmp=tmp, victim=traders[1].address)
    keeper = make_keeper(w, dep, keeper_gas, tmp / "keeper")
    keeper.cycle()
    for t in traders:
        fund(dep, admin, t, 200_000)
    fill_at_marks(dev, dep, keeper, [(traders[0], traders[1], PERP, 2 * WAD)])
    w["keeper"] = keeper
    keeper_epoch(dep, keeper)   # an honest root over the book: the false ones reuse its market leaves
    yield w
    dev.stop()


def slash(w) -> None:
    """A false root by the bonded signer (the victim's MM and IM a twentieth of the truth),
    proven by the watcher's challenge: the signer's whole bond taken, 80% forfeited."""
    dep = w["dep"]
    epoch = dep.oracle.functions.epoch_root(dep.engine.address).call()[0] + 1
    post_rogue_root(w["dep"], w["gas"], [w["signer"]], w["params"], w["keeper"].trees.market_leaves,
                    w["keeper"].listed, epoch, w["victim"],
                    lambda x: replace(x, initial_margin_wad=x.initial_margin_wad // 20,
                                      maintenance_margin_wad=x.maintenance_margin_wad // 20),
                    w["tmp"] / "signer")
    cfg = WatchConfig(rpc_url=w["dev"].url, engine_address=w["dep"].engine.address, start_epoch=epoch,
                      epoch_dir=str(w["tmp"] / "signer"), data_dir=str(w["tmp"] / f"watch-{epoch}"))
    metrics = WatchMetrics()
    watcher = Watcher(cfg, w["dep"], metrics, Challenger(cfg, w["dep"], w["challenger"], metrics))
    watcher.start()
    [finding] = watcher.poll()
    assert finding.challenge.status == "proven", finding.challenge


def bond_identity(w) -> bool:
    """SignerBond's own invariant: its token balance is every signer's stake and pending
    withdrawal plus the forfeited balance."""
    b = w["bond"].functions
    return w["dep"].token.functions.balanceOf(w["bond"].address).call() == b.total_bonded().call() + b.forfeited().call()


def test_below_minimum__read_and_reported__nothing_sent(world):
    slash(world)
    bond = world["bond"].functions
    assert bond.forfeited().call() == FORFEITED
    # a keeper that only pushes, with its minimum one token above the balance, bound like the
    # keeper command (no deployment file): the bond found from the oracle's FraudContractsSet
    gas = world["dev"].accounts[7]
    keeper = make_keeper(world, world["dep"].engine.address, gas, world["tmp"] / "below", post_prices=False, post_roots=False,
                         forfeited_push_min=FORFEITED / USD + 1)
    nonce = world["dev"].w3.eth.get_transaction_count(gas.address)
    report = keeper.cycle()
    assert keeper.forfeits.bond.address == world["bond"].address
    assert (report.forfeited, report.forfeited_pushed) == (FORFEITED, 0)
    assert bond.forfeited().call() == FORFEITED and bond.to_insurance().call() == 0
    assert world["dev"].w3.eth.get_transaction_count(gas.address) == nonce
    _ok, status = keeper.metrics.health(5, 60)
    assert status["forfeited"] == {"signer_bond": world["bond"].address, "pending_units": FORFEITED,
                                   "min_units": FORFEITED + USD, "pushed_units": 0}
    assert keeper.metrics.forfeited_pushes._value.get() == 0
    assert keeper.metrics.forfeited_pending._value.get() == FORFEITED


def test_one_cycle__forfeited_bond_in_insurance_fund__funds_identities_hold(world, caplog):
    dep, keeper = world["dep"], world["keeper"]
    engine, token, bond = dep.engine.functions, dep.token.functions, world["bond"].functions
    scale = engine.SCALE().call()
    insurance = engine.insurance_wad().call()
    engine_balance = token.balanceOf(dep.engine.address).call()
    assert reconcile(dep)["reconciled"] and bond_identity(world)
    next_second(dep)
    with caplog.at_level(logging.INFO, logger="netmargin.keeper"):
        report = keeper.cycle()
    assert (report.forfeited, report.forfeited_pushed) == (FORFEITED, FORFEITED)
    assert engine.insurance_wad().call() - insurance == FORFEITED * scale
    assert token.balanceOf(dep.engine.address).call() - engine_balance == FORFEITED
    assert bond.forfeited().call() == 0 and bond.to_insurance().call() == FORFEITED
    assert token.balanceOf(world["bond"].address).call() == bond.total_bonded().call() == 0
    assert token.allowance(world["bond"].address, dep.engine.address).call() == 0
    funds = reconcile(dep)
    assert funds["reconciled"] and funds["difference_wad"] == 0, funds
    assert bond_identity(world)
    [line] = [r for r in caplog.records if r.getMessage() == "push_forfeited ok"]
    assert line.amount == FORFEITED and line.gas > 0 and line.tx
    receipt = dep.w3.eth.get_transaction_receipt(line.tx)
    m = keeper.metrics
    assert m.forfeited_pushes._value.get() == 1 and m.forfeited_pushed._value.get() == FORFEITED
    assert m.forfeited_push_gas._value.get() == receipt["gasUsed"] == line.gas
    assert m.forfeited_pending._value.get() == 0
    assert m.health(5, 60)[1]["forfeited"]["pushed_units"] == FORFEITED
    print(f"\npush_forfeited gas {receipt['gasUsed']}, {FORFEITED / USD:,.0f} tokens moved")
    # nothing left: the next cycle reads 0 and sends nothing more
    next_second(dep)
    report = keeper.cycle()
    assert (report.forfeited, report.forfeited_pushed) == (0, 0) and m.forfeited_pushes._value.get() == 1


def rebond(w) -> None:
    admin, token = w["admin"], w["dep"].token
    send(w["dev"].w3, admin, token.functions.mint(admin.address, BOND), "mint")
    send(w["dev"].w3, admin, token.functions.approve(w["bond"].address, BOND), "approve")
    send(w["dev"].w3, admin, w["bond"].functions.bond(w["signer"].address, BOND), "bond")


def test_engine_paused__push_still_lands(world):
    """fund_insurance has no pause check: the insurance fund takes forfeits while the engine
    is paused, so the keeper does not wait for the unpause."""
    dep, keeper = world["dep"], world["keeper"]
    rebond(world)
    slash(world)
    insurance = dep.engine.functions.insurance_wad().call()
    send(dep.w3, world["admin"], dep.engine.functions.pause(), "pause")
    try:
        assert dep.engine.functions.paused().call()
        next_second(dep)
        report = keeper.cycle()
    finally:
        send(dep.w3, world["admin"], dep.engine.functions.unpause(), "unpause")
    assert report.forfeited_pushed == FORFEITED
    assert dep.engine.functions.insurance_wad().call() - insurance == FORFEITED * dep.engine.functions.SCALE().call()
    assert world["bond"].functions.to_insurance().call() == 2 * FORFEITED
    assert reconcile(dep)["reconciled"] and bond_identity(world)


def test_token_blocks_the_engine__refused_once__not_estimated_every_block__lands_once_unblocked(world, caplog):
    dep, keeper, w3 = world["dep"], world["keeper"], world["dev"].w3
    bond = world["bond"].functions
    rebond(world)
    slash(world)
    send(w3, world["admin"], dep.token.functions.set_blocked(dep.engine.address, True), "block the engine")
    try:
        with caplog.at_level(logging.INFO, logger="netmargin.keeper"):
            reports = []
            for _ in range(3):
                next_second(dep)
                reports.append(keeper.cycle())
    finally:
        send(w3, world["admin"], dep.token.functions.set_blocked(dep.engine.address, False), "unblock")
    assert [(r.forfeited, r.forfeited_pushed) for r in reports] == [(FORFEITED, 0)] * 3
    estimated = [r for r in caplog.records if r.getMessage() == "skip: would revert" and r.label == "push_forfeited"]
    assert len(estimated) == 1 and "receiver blocked" in estimated[0].reason
    [warning] = [r for r in caplog.records if r.getMessage().startswith("push_forfeited refused")]
    assert warning.levelno == logging.WARNING and warning.forfeited == FORFEITED
    assert bond.forfeited().call() == FORFEITED and bond.to_insurance().call() == 2 * FORFEITED
    assert "receiver blocked" in keeper.metrics.health(5, 60)[1]["forfeited"]["refused"]
    assert keeper.metrics.forfeited_pushes._value.get() == 2
    # unblocked: the same balance is tried again RETRY_BLOCKS after the refusal, and lands
    w3.provider.make_request("anvil_mine", [hex(RETRY_BLOCKS)])
    next_second(dep)
    report = keeper.cycle()
    assert report.forfeited_pushed == FORFEITED and bond.to_insurance().call() == 3 * FORFEITED
    assert "refused" not in keeper.metrics.health(5, 60)[1]["forfeited"]
    assert reconcile(dep)["reconciled"] and bond_identity(world)


def test_keeper_process_once__pushes__json_log_line_with_amount_and_gas(world):
    dep, w3, tmp = world["dep"], world["dev"].w3, world["tmp"]
    rebond(world)
    slash(world)
    signer = write_keyfile(world["signer"], tmp / "signer.json", "pw")
    gas = write_keyfile(world["dev"].accounts[8], tmp / "gas.json", "pw")
    config = tmp / "keeper-once.json"
    config.write_text(json.dumps({
        "rpc_url": world["dev"].url, "engine_address": dep.engine.address, "data_dir": str(tmp / "once"),
        "signer_bond_address": world["bond"].address, "forfeited_push_min": 1000,
        "post_roots": False, "signers": [{"source": f"keyfile:{signer}", "passphrase_env": "OPS_PW"}],
        "gas_key": {"source": f"keyfile:{gas}", "passphrase_env": "OPS_PW"}, "prices": {"kind": "oracle"}}))
    insurance = dep.engine.functions.insurance_wad().call()
    next_second(dep)
    proc = subprocess.run([sys.executable, "-m", "offchain.cli", "keeper", "--config", str(config), "--once"],
                          env={**os.environ, "OPS_PW": "pw", "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    [start] = [x for x in lines if x["msg"] == "keeper started"]
    assert start["signer_bond"] == world["bond"].address
    [push] = [x for x in lines if x["msg"] == "push_forfeited ok"]
    assert push["level"] == "info" and push["amount"] == push["forfeited"] == FORFEITED and push["gas"] > 0
    assert w3.eth.get_transaction(push["tx"])["from"] == world["dev"].accounts[8].address
    [cycle] = [x for x in lines if x["msg"] == "cycle"]
    assert cycle["forfeited_pushed"] == FORFEITED
    assert dep.engine.functions.insurance_wad().call() - insurance == FORFEITED * dep.engine.functions.SCALE().call()
    assert world["bond"].functions.to_insurance().call() == 4 * FORFEITED
    assert reconcile(dep)["reconciled"] and bond_identity(world)


def test_deployment_without_bonds__no_bond__cycle_runs__configured_bond_of_another_engine_refused(world):
    dev = world["dev"]
    dep = deploy_system(dev.w3, world["admin"], [world["signer"].address], 1, world["params"], EngineSettings(),
                        bonds=None)
    list_instruments(dep, world["admin"], [{"underlying": "BTC", "kind": "perpetual"}])
    keeper = make_keeper(world, dep.engine.address, world["gas"], world["tmp"] / "nobond")
    next_second(dep)
    report = keeper.cycle()
    assert keeper.forfeits.bond is None and (report.forfeited, report.forfeited_pushed) == (0, 0)
    assert report.posted_prices and "forfeited" not in keeper.metrics.health(5, 60)[1]
    with pytest.raises(UserError, match="config.signer_bond_address: .* pays forfeited bonds into engine "
                                        f"{world['dep'].engine.address}, not this keeper's engine"):
        make_keeper(world, dep, world["gas"], world["tmp"] / "other",
                    signer_bond_address=world["bond"].address)

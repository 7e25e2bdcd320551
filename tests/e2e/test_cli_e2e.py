"""The user commands against a real Anvil deployment, wallets as ape keyfiles."""

from __future__ import annotations

import json

import pytest

from offchain.chain.contracts import WAD, call_named
from offchain.cli import main
from offchain.devnet.anvil import start_anvil
from offchain.devnet.deploy import EngineSettings, deploy_system, fund, list_instruments
from offchain.keeper.bot import Keeper
from offchain.keeper.config import KeeperConfig
from offchain.keeper.executor import Executor
from offchain.keeper.keys import write_keyfile
from offchain.keeper.prices import DAY, ReplaySource, parse_date
from offchain.keeper.signing import Signers
from offchain.keeper.store import StateStore
from offchain.paths import DATA_DIR
from offchain.risk import load_params

T0 = parse_date("2021-05-12", "t0")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    dev = start_anvil(accounts=6, timestamp=T0)
    a = dev.accounts
    admin, keeper_gas, trader, maker = a[0], a[1], a[2], a[3]
    params = load_params()
    dep = deploy_system(dev.w3, admin, [a[4].address], 1, params, EngineSettings())
    list_instruments(dep, admin, [{"underlying": "BTC", "kind": "perpetual"},
                                  {"underlying": "BTC", "kind": "call", "strike": 60000,
                                   "expiry": T0 + 20 * DAY}])
    source = ReplaySource(DATA_DIR, ["BTC", "ETH"], {"BTC": 0.8, "ETH": 0.95})
    cfg = KeeperConfig(rpc_url=dev.url, engine_address=dep.engine.address, price_max_age_s=3600)
    signers = Signers([a[4]], workers=1)
    keeper = Keeper(cfg, dep, signers, Executor(dev.w3, keeper_gas, cfg.gas), StateStore(":memory:"),
                    params, source)
    keeper.startup()
    keeper.cycle()
    fund(dep, admin, trader, 50_000, deposit=False)
    fund(dep, admin, maker, 50_000)
    for alias, acct in (("trader", trader), ("maker", maker)):
        write_keyfile(acct, tmp / "ape" / "accounts" / f"{alias}.json", "pw")
    mp = pytest.MonkeyPatch()
    mp.setenv("APE_DATA_FOLDER", str(tmp / "ape"))
    mp.setenv("NETMARGIN_PASSPHRASE", "pw")
    mp.setenv("NETMARGIN_RPC", dev.url)
    mp.setenv("NETMARGIN_ENGINE", dep.engine.address)
    yield dict(dev=dev, dep=dep, keeper=keeper, trader=trader, maker=maker, tmp=tmp)
    mp.undo()
    signers.close()
    dev.stop()


def test_deposit__with_ape_account__cash_credited(chain, capsys):
    assert main(["deposit", "--account", "trader", "--amount", "20000"]) == 0
    assert chain["dep"].engine.functions.cash_wad(chain["trader"].address).call() == 20_000 * WAD
    assert "deposited 20000" in capsys.readouterr().out


def test_deposit__more_than_held__plain_error(chain, capsys):
    assert main(["deposit", "--account", "trader", "--amount", "1e9"]) == 2
    assert "--amount" in capsys.readouterr().err


def test_order_then_fill__maker_signs_taker_fills__positions_on_both_sides(chain, capsys):
    path = chain["tmp"] / "order.json"
    price = f"{chain['keeper'].posted_marks[0]:.2f}"
    assert main(["order", "--account", "maker", "--instrument", "1", "--side", "sell",
                 "--size", "0.5", "--price", price, "--out", str(path)]) == 0
    assert json.loads(path.read_text())["order"]["is_buy"] is False
    assert main(["fill", "--account", "trader", "--order", str(path)]) == 0
    assert chain["dep"].engine.functions.position(chain["trader"].address, 1).call() == WAD // 2
    assert main(["fill", "--account", "trader", "--order", str(path)]) == 2  # nothing left
    assert "--size" in capsys.readouterr().err


def test_withdraw__everything_with_positions__refused_in_plain_words(chain, capsys):
    assert main(["withdraw", "--account", "trader", "--amount", "20000"]) == 2
    err = capsys.readouterr().err
    assert "below initial margin" in err and "add collateral" in err


def test_withdraw__max__leaves_initial_margin(chain):
    chain["dev"].mine()
    chain["keeper"].cycle()  # attests the new book (smaller than the standalone pending)
    assert main(["withdraw", "--account", "trader", "--amount", "max"]) == 0
    h = call_named(chain["dep"].engine, "health", chain["trader"].address)
    assert h["equity_wad"] >= h["im_wad"] > 0


def test_positions__json__book_from_chain(chain, capsys):
    assert main(["positions", "--address", chain["trader"].address, "--json"]) == 0
    book = json.loads(capsys.readouterr().out)
    assert book["positions"][0]["size"] == 0.5 and book["im"] > 0


def test_report__account_with_perp__margins_binding_and_png(chain, capsys):
    png = chain["tmp"] / "pnl.png"
    assert main(["report", "--account", "trader", "--png", str(png), "--vol", "BTC=0.9"]) == 0
    out = capsys.readouterr().out
    assert "isolated" in out and "binding scenario" in out and "share" in out
    assert png.stat().st_size > 1000


def test_report__bad_vol__error_names_flag(chain, capsys):
    assert main(["report", "--account", "trader", "--vol", "BTC:high"]) == 2
    assert "--vol" in capsys.readouterr().err

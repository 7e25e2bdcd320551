"""The user commands against a real Anvil deployment, wallets as ape keyfiles. Tests run in
file order on one chain (one story): deposit, orders by instrument name, fills checked
before sending, cancel, positions and history without a passphrase, withdraw, report."""

from __future__ import annotations

import io
import json
import subprocess
import sys

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
CALL_NAME = "BTC-20210601-60000-C"


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
    signers = Signers([a[4]])
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
    yield dict(dev=dev, dep=dep, keeper=keeper, trader=trader, maker=maker, tmp=tmp, mp=mp)
    mp.undo()
    dev.stop()


def test_deposit__with_ape_account__cash_credited(chain, capsys):
    assert main(["deposit", "--account", "trader", "--amount", "20000"]) == 0
    assert chain["dep"].engine.functions.cash_wad(chain["trader"].address).call() == 20_000 * WAD
    assert "deposited 20,000.00" in capsys.readouterr().out


def test_deposit__more_than_held__plain_error(chain, capsys):
    assert main(["deposit", "--account", "trader", "--amount", "1e9"]) == 2
    assert "amount: " in capsys.readouterr().err


def test_instruments__listed__names_and_marks(chain, capsys):
    assert main(["instruments"]) == 0
    out = capsys.readouterr().out
    assert "BTC-PERP" in out and CALL_NAME in out
    assert f"{chain['keeper'].posted_marks[0]:,.2f}" in out
    assert main(["instruments", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["BTC-PERP", CALL_NAME] and rows[1]["strike"] == 60000


def test_order__instrument_by_name__same_order_as_by_id(chain, capsys):
    args = ["order", "--account", "maker", "--side", "sell", "--size", "1", "--price", "100",
            "--nonce", "7"]
    assert main([*args, "--instrument", CALL_NAME.lower()]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main([*args, "--instrument", "2"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert by_name["order"]["instrument_id"] == 2
    assert by_name["order"]["size_wad"] == by_id["order"]["size_wad"]


def test_order__unknown_instrument_name__names_the_list_command(chain, capsys):
    assert main(["order", "--account", "maker", "--instrument", "BTC-20990101-1-C", "--side",
                 "buy", "--size", "1", "--price", "1"]) == 2
    assert "no instrument named 'BTC-20990101-1-C'" in capsys.readouterr().err


def test_order_then_fill__maker_signs_taker_fills__positions_on_both_sides(chain, capsys):
    path = chain["tmp"] / "order.json"
    price = f"{chain['keeper'].posted_marks[0]:.2f}"
    assert main(["order", "--account", "maker", "--instrument", "BTC-PERP", "--side", "sell",
                 "--size", "0.5", "--price", price, "--out", str(path)]) == 0
    assert json.loads(path.read_text())["order"]["is_buy"] is False
    assert main(["fill", "--account", "trader", "--order", str(path)]) == 0
    assert "bought 0.5 BTC-PERP" in capsys.readouterr().out
    assert chain["dep"].engine.functions.position(chain["trader"].address, 1).call() == WAD // 2


def test_fill__fully_filled_order__plain_sentence_no_gas(chain, capsys):
    nonce = chain["dev"].w3.eth.get_transaction_count(chain["trader"].address)
    assert main(["fill", "--account", "trader", "--order", str(chain["tmp"] / "order.json")]) == 2
    err = capsys.readouterr().err
    assert "already fully filled (0.5 of 0.5)" in err and "--size" not in err
    assert chain["dev"].w3.eth.get_transaction_count(chain["trader"].address) == nonce


def test_fill__price_far_from_mark__needs_yes(chain, capsys, monkeypatch):
    mark = chain["keeper"].posted_marks[1]
    assert main(["order", "--account", "maker", "--instrument", CALL_NAME, "--side", "buy",
                 "--size", "0.1", "--price", "10"]) == 0
    doc = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO(doc))
    assert main(["fill", "--account", "trader", "--order", "-"]) == 2
    err = capsys.readouterr().err
    assert f"you would sell {CALL_NAME} at 10.00" in err and f"its mark {mark:,.2f}" in err
    assert "--yes" in err
    assert chain["dep"].engine.functions.position(chain["trader"].address, 2).call() == 0


def test_cancel__own_order__then_fill_refused_in_words(chain, capsys):
    path = chain["tmp"] / "to-cancel.json"
    assert main(["order", "--account", "maker", "--instrument", "1", "--side", "sell", "--size", "2",
                 "--price", f"{chain['keeper'].posted_marks[0]:.2f}", "--out", str(path)]) == 0
    assert main(["cancel", "--account", "trader", "--order", str(path)]) == 2
    assert "only that account can cancel it" in capsys.readouterr().err
    assert main(["cancel", "--account", "maker", "--order", str(path)]) == 0
    assert "cancelled: 2 of 2 were still open" in capsys.readouterr().out
    assert main(["fill", "--account", "trader", "--order", str(path)]) == 2
    assert "the maker cancelled this order" in capsys.readouterr().err


def test_fill__expired_order__plain_sentence(chain, capsys):
    path = chain["tmp"] / "short-lived.json"
    assert main(["order", "--account", "maker", "--instrument", "1", "--side", "sell", "--size", "1",
                 "--price", "1", "--valid-minutes", "1", "--out", str(path)]) == 0
    now = chain["dev"].w3.eth.get_block("latest")["timestamp"]
    chain["dev"].mine(now + 120)
    chain["keeper"].cycle()
    assert main(["fill", "--account", "trader", "--order", str(path)]) == 2
    assert "order: expired at " in capsys.readouterr().err


def test_positions__no_passphrase__available_to_withdraw_shown(chain, capsys, monkeypatch):
    monkeypatch.setenv("NETMARGIN_PASSPHRASE", "wrong: a read must not decrypt the key")
    assert main(["positions", "--account", "trader"]) == 0
    out = capsys.readouterr().out
    assert "BTC-PERP" in out and "available to withdraw" in out
    assert main(["positions", "--address", chain["trader"].address, "--json"]) == 0
    book = json.loads(capsys.readouterr().out)
    assert book["positions"][0]["size"] == 0.5 and book["initial_margin"] > 0
    assert 0 < book["available_to_withdraw"] < book["equity"] - book["initial_margin"] + 1e-6


def test_history__trader__deposit_and_fill_in_order(chain, capsys, monkeypatch):
    monkeypatch.setenv("NETMARGIN_PASSPHRASE", "wrong")
    assert main(["history", "--account", "trader"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "deposit 20,000.00" in out[1] and "bought 0.5 BTC-PERP at" in out[2] and "as taker" in out[2]
    assert main(["history", "--account", "maker", "--json"]) == 0
    kinds = [e["kind"] for e in json.loads(capsys.readouterr().out)]
    assert kinds == ["deposit", "fill", "cancel"]


def test_withdraw__everything_with_positions__refused_in_plain_words(chain, capsys):
    assert main(["withdraw", "--account", "trader", "--amount", "20000"]) == 2
    err = capsys.readouterr().err
    assert "below initial margin" in err and "add collateral" in err


def test_withdraw__max__leaves_initial_margin(chain, capsys):
    chain["dev"].mine()
    chain["keeper"].cycle()  # a root with the new book's leaf (smaller than the standalone pending)
    assert main(["withdraw", "--account", "trader", "--amount", "max"]) == 0
    h = call_named(chain["dep"].engine, "health", chain["trader"].address)
    assert h["equity_wad"] >= h["im_wad"] > 0
    capsys.readouterr()
    assert main(["withdraw", "--account", "trader", "--amount", "max"]) == 2
    err = capsys.readouterr().err
    assert "nothing is free to withdraw" in err and "engine: zero amount" not in err


def test_report__account_with_perp__binding_in_words_and_png(chain, capsys, monkeypatch):
    monkeypatch.setenv("NETMARGIN_PASSPHRASE", "wrong")
    png = chain["tmp"] / "pnl.png"
    assert main(["report", "--account", "trader", "--png", str(png), "--vol", "BTC=0.9"]) == 0
    out = capsys.readouterr().out
    assert "isolated" in out and "share" in out
    binding = next(line for line in out.splitlines() if "binding scenario:" in line)
    assert "BTC falls" in binding and "the book would lose" in binding and "{" not in binding
    assert png.stat().st_size > 1000


def test_report__png_into_missing_folder__clear_error(chain, capsys):
    missing = chain["tmp"] / "no-such-dir" / "pnl.png"
    assert main(["report", "--account", "trader", "--png", str(missing)]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def test_report__bad_vol__error_names_flag(chain, capsys):
    assert main(["report", "--account", "trader", "--vol", "BTC:high"]) == 2
    assert "--vol" in capsys.readouterr().err


def test_cli__version__prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("netmargin 0.")


def test_cli__stdout_closed_early__no_broken_pipe_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader (`| head`) is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_client__the_documented_session__orders_by_name_fill_cancel_history(chain, tmp_path):
    """docs/client.md's session, through the Python client an integrator uses."""
    from offchain.chain.client import Client, SignedOrder
    from offchain.errors import UserError

    url, engine = chain["dev"].url, chain["dep"].engine.address
    maker = Client.connect(url, engine, account=chain["maker"])
    taker = Client.connect(url, engine, account=chain["trader"])
    perp = maker.instrument("btc-perp")
    assert perp.id == 1 and perp.name == "BTC-PERP" and perp.mark > 0
    order = maker.make_order("BTC-PERP", "buy", size=0.2, price=round(perp.mark, 2), valid_s=600)
    order.save(tmp_path / "o.json")
    signed = SignedOrder.load(tmp_path / "o.json")
    size_wad, warning = taker.check_fill(signed, 0.1)
    assert size_wad == 10**17 and warning == ""
    before = taker.account().positions[0].size
    taker.fill(signed, size=0.1)
    assert taker.account().positions[0].size == pytest.approx(before - 0.1)
    maker.cancel(signed)
    status = maker.order_status(signed)
    assert status.cancelled and status.filled == pytest.approx(0.1) and not status.fillable
    with pytest.raises(UserError, match="the maker cancelled this order"):
        taker.check_fill(signed)
    kinds = [e["kind"] for e in maker.history()]
    assert kinds[-2:] == ["fill", "cancel"]
    report = taker.report(vols={"BTC": 0.7})
    assert report["instrument_names"] == ["BTC-PERP"] and report["portfolio_margin"] > 0

"""The web app in headless Chromium (Debian's /usr/bin/chromium through Playwright, empty
profile, background networking off) against a served devnet with the keeper running, driven
as a person would: connect, deposit, fill a dealer quote after reading the what-if, see the
grid, place a maker order that the dealer then fills, withdrawal refused then allowed, the
crash and the liquidation in history. Screenshots go to out/browser/. One flow, one devnet."""

from __future__ import annotations

import collections
import logging
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_wallet import BrowserWallet

from offchain.chain.contracts import WAD
from offchain.devnet.deploy import send
from offchain.devnet.run import DevnetOptions, start_devnet
from offchain.keeper.logs import TextFormatter
from offchain.keeper.prices import parse_date
from offchain.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
STATIC = REPO_ROOT / "offchain" / "api" / "static" / "index.html"
SHOTS = REPO_ROOT / "out" / "browser"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-gpu", "--disable-sync"]



@pytest.fixture(scope="module", autouse=True)
def browser_installed():
    """`make install` installs both; a missing one fails loudly instead of skipping the suite."""
    missing = [str(p) for p in (Path(CHROMIUM), STATIC) if not p.is_file()]
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: run `make install`")


class KeeperLog(logging.Handler):
    """The served keeper's log lines (with their extras: action, outcome, reason), the last
    few hundred kept: a wait that times out shows what the keeper did and why."""

    def __init__(self, keep: int = 400):
        super().__init__(logging.INFO)
        self.setFormatter(TextFormatter())
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def tail(self, n: int = 40) -> str:
        # the per-cycle summaries crowd out the actions: keep the last few of them only
        lines = list(self.lines)
        actions = [ln for ln in lines if " cycle " not in ln]
        return "\n".join(actions[-n:] + lines[-3:])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    logger = logging.getLogger("netmargin")
    handler, level = KeeperLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    served = start_devnet(DevnetOptions(start="2020-03-10", rpc_port=0, api_port=0, out=tmp_path_factory.mktemp("devnet"),
                                     clock=False, wallets=1, keeper_poll_s=0.1), progress=lambda *_: None)
    served.keeper_log = handler
    served.start_keeper()
    yield served
    served.stop()
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def app_page(served, tmp_path_factory):
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=ARGS, viewport={"width": 1400, "height": 1000})
        wallet = BrowserWallet(served.wallets[0], served.rpc_url)
        wallet.install(context)
        app_page = context.new_page()
        app_page.wallet = wallet
        yield app_page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def mine_until(served, app_page, predicate, what: str, timeout: float = 60.0, step_s: int = 60):
    """Advance the chain a block at a time until `predicate()`, each block once the keeper has
    acted on the previous one: this test is the devnet's clock, and a clock that outruns the
    keeper (a loaded machine) lets its signed messages lapse before they are sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        last = int(served.anvil.w3.eth.get_block("latest")["timestamp"])
        served.anvil.mine(last + step_s)
        mined = served.anvil.w3.eth.block_number
        while (served.keeper.last_report is None or served.keeper.last_report.block < mined) \
                and time.monotonic() < deadline:
            app_page.wait_for_timeout(50)   # lets the page's wallet calls through meanwhile
        app_page.wait_for_timeout(300)  # and the page's own refresh
    raise AssertionError(f"timed out waiting for {what}; the keeper's last actions:\n{served.keeper_log.tail()}")


def status(app_page) -> str:
    return app_page.locator("#status").inner_text()


def wait_status(app_page, pattern: str, timeout: float = 30_000) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        app_page.wait_for_function("re => new RegExp(re).test(document.getElementById('status').textContent)",
                                   arg=pattern, timeout=timeout)
    except PlaywrightTimeout:
        # what the page said instead, and the wallet's last requests: a failure explains itself
        raise AssertionError(f"status {status(app_page)!r} after {timeout / 1000:.0f} s, expected /{pattern}/; "
                             f"the wallet's last calls: {app_page.wallet.calls[-8:]}") from None
    return status(app_page)


def number(app_page, selector: str) -> float:
    return float(app_page.locator(selector).inner_text().replace(",", ""))


def first_paint_ms(app_page) -> float:
    app_page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    return app_page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")


def test_first_paint__served_app_no_cache__under_one_second(served, app_page):
    # the browser itself is warm (a user's is already running); the app_page's files are not cached
    cdp = app_page.context.new_cdp_session(app_page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    app_page.goto(served.api_url + "/")
    cold = first_paint_ms(app_page)
    app_page.reload()
    fcp = first_paint_ms(app_page)
    print(f"first contentful paint: {cold:.0f} ms on the browser's first navigation, {fcp:.0f} ms after")
    assert fcp <= 1000, f"first contentful paint {fcp:.0f} ms"
    app_page.wait_for_selector("#instruments tr[data-id]")
    app_page.screenshot(path=str(SHOTS / "01-loaded.png"), full_page=True)


def test_connect__injected_wallet__address_balance_and_faucet(served, app_page):
    app_page.click("#connect")
    app_page.wait_for_function("document.getElementById('address').textContent.startsWith('0x')")
    assert app_page.locator("#address").inner_text() == served.wallets[0].address
    app_page.wait_for_selector("#wallet-balance")
    assert number(app_page, "#wallet-balance") == 1_000_000
    app_page.click("#faucet")  # the devnet's test token mints to anyone
    wait_status(app_page, "faucet: minted 100,000")
    app_page.wait_for_function("document.getElementById('wallet-balance').textContent === '1,100,000.00'")


def test_deposit__approve_then_deposit__cash_credited(served, app_page):
    app_page.fill("#deposit-amount", "20000")
    app_page.click("#deposit")
    app_page.wait_for_selector("#review:not([hidden])")
    app_page.click("#confirm")
    wait_status(app_page, "deposited 20000")
    assert {"eth_sendTransaction"} <= set(app_page.wallet.calls)
    app_page.wait_for_function("document.getElementById('cash').textContent === '20,000.00'")


def test_fill__dealer_ask_after_what_if__position_margined(served, app_page):
    ask = app_page.locator("#orders tr[data-instrument='1'][data-side='ask']").first
    ask.locator("input.fill-size").fill("4")
    ask.locator("button.fill").click()
    app_page.wait_for_selector("#review:not([hidden])")
    assert "would be accepted" in app_page.locator("#review-text").inner_text()
    app_page.click("#confirm")
    wait_status(app_page, "filled 4 BTC-PERP")
    mine_until(served, app_page, lambda: number(app_page, "#im") > 0 if app_page.locator("#im").count() else False,
               "the new book's margin on chain")
    app_page.wait_for_function("document.getElementById('positions').textContent.includes('BTC-PERP')")


def test_grid__long_perp__heatmap_with_binding_scenario_marked(served, app_page):
    app_page.wait_for_selector("#grid table.heatmap[data-underlying='BTC'] td.cell")
    assert app_page.locator("#grid td.binding").count() == 1
    assert app_page.locator("#pnl canvas").count() >= 1
    app_page.screenshot(path=str(SHOTS / "02-position-grid.png"), full_page=True)


def test_place_order__signed_typed_data__listed_then_filled_by_dealer(served, app_page):
    app_page.select_option("#order-instrument", "1")
    app_page.select_option("#order-side", "sell")
    app_page.fill("#order-size", "1")
    mark = float(app_page.locator("#instruments tr[data-id='1'] td").nth(1).inner_text().replace(",", ""))
    app_page.fill("#order-price", f"{mark * 1.002:.2f}")
    app_page.click("#place-order")
    app_page.wait_for_selector("#review:not([hidden])")
    app_page.click("#confirm")
    wait_status(app_page, "listed: sell 1 BTC-PERP")
    assert "eth_signTypedData_v4" in app_page.wallet.calls
    app_page.wait_for_selector("#orders tr:has(button:disabled)")
    listed = served.ctx.orders.list(served.ctx.market.get(), account=served.wallets[0].address)
    assert len(listed) == 1
    o = listed[0]
    order = tuple(o["order"][k] for k in ("account", "instrument_id", "is_buy")) + tuple(
        int(o["order"][k]) for k in ("size_wad", "limit_price_wad", "order_nonce")) + (o["order"]["deadline"],)
    # the browser's signature is good on chain: the dealer fills the user's order with it
    send(served.anvil.w3, served.dealer, served.dep.engine.functions.fill(order, bytes.fromhex(o["signature"][2:]), WAD), "fill")
    mine_until(served, app_page, lambda: app_page.locator("#orders tr:has(button:disabled)").count() == 0,
               "the filled order to drop off the book")
    mine_until(served, app_page, lambda: "maker sell 1 of BTC-PERP" in app_page.locator("#history").inner_text(),
               "the maker fill in history")


def test_withdraw__too_much_refused_with_reason__then_available_allowed(served, app_page):
    mine_until(served, app_page, lambda: number(app_page, "#available") > 0, "margin to free up")
    available = number(app_page, "#available")
    app_page.fill("#withdraw-amount", f"{available + 1000:.2f}")
    app_page.click("#withdraw")
    app_page.wait_for_selector("#review:not([hidden])")
    assert "will refuse" in app_page.locator("#review-text").inner_text()
    app_page.click("#confirm")
    refused = wait_status(app_page, "withdraw refused")
    assert "below initial margin" in refused
    app_page.screenshot(path=str(SHOTS / "03-withdraw-refused.png"), full_page=True)
    amount = int(available * 0.98)
    app_page.fill("#withdraw-amount", str(amount))
    app_page.click("#withdraw")
    app_page.click("#confirm")
    wait_status(app_page, f"withdrew {amount}")


def test_crash__keeper_liquidates__warning_and_liquidation_in_history(served, app_page):
    served.anvil.mine(parse_date("2020-03-12", "crash") + 16 * 3600)
    mine_until(served, app_page, lambda: "liquidat" in app_page.locator("#history").inner_text(),
               "the liquidation in the app_page's history", timeout=120, step_s=600)
    row = app_page.locator("#history tr.event-liquidation").first.inner_text()
    assert re.search(r"liquidated: \d", row), row
    app_page.screenshot(path=str(SHOTS / "04-liquidated.png"), full_page=True)

"""The web app in headless Chromium (Debian's /usr/bin/chromium through Playwright, empty
profile, background networking off) against a served devnet with the keeper running, driven
as a person would: connect, deposit, fill a dealer quote after reading the what-if, see the
grid, place a maker order that the dealer then fills, withdrawal refused then allowed, the
crash and the liquidation in history. Screenshots go to out/browser/. One flow, one devnet."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from browser_wallet import BrowserWallet

from offchain.chain.contracts import WAD
from offchain.devnet.deploy import send
from offchain.devnet.run import DevnetOptions, start_devnet
from offchain.keeper.prices import parse_date
from offchain.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
STATIC = REPO_ROOT / "offchain" / "api" / "static" / "index.html"
SHOTS = REPO_ROOT / "out" / "browser"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-gpu", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() or not STATIC.is_file(),
    reason="needs Debian's chromium and the built web app: run `make install`")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = start_devnet(DevnetOptions(start="2020-03-10", rpc_port=0, api_port=0, out=tmp_path_factory.mktemp("devnet"),
                                     clock=False, wallets=1, keeper_poll_s=0.1), progress=lambda *_: None)
    net.start_keeper()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def page(net, tmp_path_factory):
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=ARGS, viewport={"width": 1400, "height": 1000})
        wallet = BrowserWallet(net.wallets[0], net.rpc_url)
        wallet.install(context)
        page = context.new_page()
        page.wallet = wallet
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def mine_until(net, page, predicate, what: str, timeout: float = 60.0, step_s: int = 60):
    """Advance the chain a block at a time (the keeper acts once per block) until `predicate()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        last = int(net.anvil.w3.eth.get_block("latest")["timestamp"])
        net.anvil.mine(last + step_s)
        page.wait_for_timeout(300)  # lets the page's wallet calls through meanwhile
    raise AssertionError(f"timed out waiting for {what}")


def status(page) -> str:
    return page.locator("#status").inner_text()


def wait_status(page, pattern: str, timeout: float = 30_000) -> str:
    page.wait_for_function("re => new RegExp(re).test(document.getElementById('status').textContent)",
                           arg=pattern, timeout=timeout)
    return status(page)


def number(page, selector: str) -> float:
    return float(page.locator(selector).inner_text().replace(",", ""))


def first_paint_ms(page) -> float:
    page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    return page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")


def test_first_paint__served_app_no_cache__under_one_second(net, page):
    # the browser itself is warm (a user's is already running); the page's files are not cached
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    page.goto(net.api_url + "/")
    cold = first_paint_ms(page)
    page.reload()
    fcp = first_paint_ms(page)
    print(f"first contentful paint: {cold:.0f} ms on the browser's first navigation, {fcp:.0f} ms after")
    assert fcp <= 1000, f"first contentful paint {fcp:.0f} ms"
    page.wait_for_selector("#instruments tr[data-id]")
    page.screenshot(path=str(SHOTS / "01-loaded.png"), full_page=True)


def test_connect__injected_wallet__address_and_faucet_balance_shown(net, page):
    page.click("#connect")
    page.wait_for_function("document.getElementById('address').textContent.startsWith('0x')")
    assert page.locator("#address").inner_text() == net.wallets[0].address
    page.wait_for_selector("#wallet-balance")
    assert number(page, "#wallet-balance") == 1_000_000


def test_deposit__approve_then_deposit__cash_credited(net, page):
    page.fill("#deposit-amount", "20000")
    page.click("#deposit")
    page.wait_for_selector("#review:not([hidden])")
    page.click("#confirm")
    wait_status(page, "deposited 20000")
    assert {"eth_sendTransaction"} <= set(page.wallet.calls)
    page.wait_for_function("document.getElementById('cash').textContent === '20,000.00'")


def test_fill__dealer_ask_after_what_if__position_attested(net, page):
    ask = page.locator("#orders tr[data-instrument='1'][data-side='ask']").first
    ask.locator("input.fill-size").fill("4")
    ask.locator("button.fill").click()
    page.wait_for_selector("#review:not([hidden])")
    assert "would be accepted" in page.locator("#review-text").inner_text()
    page.click("#confirm")
    wait_status(page, "filled 4 BTC-PERP")
    mine_until(net, page, lambda: number(page, "#im") > 0 if page.locator("#im").count() else False,
               "the keeper's attestation of the new book")
    page.wait_for_function("document.getElementById('positions').textContent.includes('BTC-PERP')")


def test_grid__long_perp__heatmap_with_binding_scenario_marked(net, page):
    page.wait_for_selector("#grid table.heatmap[data-underlying='BTC'] td.cell")
    assert page.locator("#grid td.binding").count() == 1
    assert page.locator("#pnl canvas").count() >= 1
    page.screenshot(path=str(SHOTS / "02-position-grid.png"), full_page=True)


def test_place_order__signed_typed_data__listed_then_filled_by_dealer(net, page):
    page.select_option("#order-instrument", "1")
    page.select_option("#order-side", "sell")
    page.fill("#order-size", "1")
    mark = float(page.locator("#instruments tr[data-id='1'] td").nth(1).inner_text().replace(",", ""))
    page.fill("#order-price", f"{mark * 1.002:.2f}")
    page.click("#place-order")
    page.wait_for_selector("#review:not([hidden])")
    page.click("#confirm")
    wait_status(page, "listed: sell 1 BTC-PERP")
    assert "eth_signTypedData_v4" in page.wallet.calls
    page.wait_for_selector("#orders tr:has(button:disabled)")
    listed = net.ctx.orders.list(net.ctx.market.get(), account=net.wallets[0].address)
    assert len(listed) == 1
    o = listed[0]
    order = tuple(o["order"][k] for k in ("account", "instrument_id", "is_buy")) + tuple(
        int(o["order"][k]) for k in ("size_wad", "limit_price_wad", "order_nonce")) + (o["order"]["deadline"],)
    # the browser's signature is good on chain: the dealer fills the user's order with it
    send(net.anvil.w3, net.dealer, net.dep.engine.functions.fill(order, bytes.fromhex(o["signature"][2:]), WAD), "fill")
    mine_until(net, page, lambda: page.locator("#orders tr:has(button:disabled)").count() == 0,
               "the filled order to drop off the book")
    mine_until(net, page, lambda: "maker sell 1" in page.locator("#history").inner_text(),
               "the maker fill in history")


def test_withdraw__too_much_refused_with_reason__then_available_allowed(net, page):
    mine_until(net, page, lambda: number(page, "#available") > 0, "margin to free up")
    available = number(page, "#available")
    page.fill("#withdraw-amount", f"{available + 1000:.2f}")
    page.click("#withdraw")
    page.wait_for_selector("#review:not([hidden])")
    assert "will refuse" in page.locator("#review-text").inner_text()
    page.click("#confirm")
    refused = wait_status(page, "withdraw refused")
    assert "below initial margin" in refused
    page.screenshot(path=str(SHOTS / "03-withdraw-refused.png"), full_page=True)
    amount = int(available * 0.98)
    page.fill("#withdraw-amount", str(amount))
    page.click("#withdraw")
    page.click("#confirm")
    wait_status(page, f"withdrew {amount}")


def test_crash__keeper_liquidates__warning_and_liquidation_in_history(net, page):
    net.anvil.mine(parse_date("2020-03-12", "crash") + 16 * 3600)
    mine_until(net, page, lambda: "liquidat" in page.locator("#history").inner_text(),
               "the liquidation in the page's history", timeout=120, step_s=600)
    row = page.locator("#history tr.event-liquidation").first.inner_text()
    assert re.search(r"liquidated: \d", row), row
    page.screenshot(path=str(SHOTS / "04-liquidated.png"), full_page=True)

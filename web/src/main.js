// netmargin web app: connect an injected wallet; the panels refresh from the API every 2 s.
import "./style.css";
import { api } from "./api.js";
import { Wallet, reason } from "./wallet.js";
import { renderAccount, wireCollateral } from "./panels/account.js";
import { renderInstruments } from "./panels/instruments.js";
import { renderOrders, wirePlaceOrder } from "./panels/orders.js";
import { renderReport } from "./panels/grid.js";
import { renderPnl } from "./panels/pnl.js";
import { renderHistory } from "./panels/history.js";

const REFRESH_MS = 2000;
const ctx = { deployment: null, wallet: null, instruments: null, account: null, busy: false };

function status(text, kind = "") {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = kind;
}

// every user action: one at a time, its outcome (or refusal reason) in the status line
ctx.run = async (what, action) => {
  if (!ctx.wallet || !ctx.wallet.address) return status("connect a wallet first", "error");
  if (ctx.busy) return status("busy: wait for the previous action", "error");
  ctx.busy = true;
  status(`${what}: working…`);
  try {
    const done = await action();
    status(done === "cancelled" ? `${what}: cancelled` : done, done === "cancelled" ? "" : "ok");
  } catch (err) {
    status(`${what} refused: ${reason(err)}`, "error");
  } finally {
    ctx.busy = false;
    refresh();
  }
};

async function refresh() {
  try {
    ctx.instruments = await api("/instruments");
    renderInstruments(ctx.instruments);
    renderOrders(ctx, await api("/orders"));
    if (ctx.wallet && ctx.wallet.address) {
      const a = ctx.wallet.address;
      const [account, report, history] = await Promise.all([api(`/accounts/${a}`), api(`/accounts/${a}/report`), api(`/accounts/${a}/history`)]);
      ctx.account = account;
      renderAccount(account);
      renderReport(report);
      renderPnl(report);
      renderHistory(history, Object.fromEntries(ctx.instruments.instruments.map((i) => [i.instrument_id, i.name])));
    }
  } catch (err) {
    document.getElementById("chain").textContent = `API: ${err.message}`;
  }
}

async function start() {
  ctx.deployment = await api("/deployment");
  ctx.wallet = new Wallet(ctx.deployment);
  document.getElementById("connect").onclick = async () => {
    try {
      const address = await ctx.wallet.connect();
      document.getElementById("address").textContent = address;
      document.getElementById("connect").textContent = "Connected";
      status("wallet connected", "ok");
      refresh();
    } catch (err) {
      status(`connect refused: ${reason(err)}`, "error");
    }
  };
  wireCollateral(ctx);
  wirePlaceOrder(ctx);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();

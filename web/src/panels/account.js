// Account: balances, margins, positions, liquidation prices, the warning near MM; deposit and withdraw.
import { parseUnits } from "viem";
import { el, table, usd, instrumentName } from "../api.js";
import { review } from "./review.js";

export function renderAccount(a) {
  const rows = [
    ["wallet balance", usd(a.wallet_balance), "wallet-balance"],
    ["cash", usd(a.cash), "cash"],
    ["position value", usd(a.position_value), "position-value"],
    ["equity", usd(a.equity), "equity"],
    ["initial margin", usd(a.initial_margin), "im"],
    ["maintenance margin", usd(a.maintenance_margin), "mm"],
    ["available to withdraw", usd(a.available_to_withdraw), "available"],
  ];
  document.getElementById("account").replaceChildren(...rows.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", { id }, v)]));
  const warn = document.getElementById("warning");
  warn.hidden = !(a.liquidatable || a.near_liquidation);
  warn.className = a.liquidatable ? "danger" : "";
  warn.textContent = a.liquidatable
    ? `Liquidatable: equity ${usd(a.equity)} is below maintenance margin ${usd(a.maintenance_margin)}`
    : `Warning: equity ${usd(a.equity)} is within 20% of maintenance margin ${usd(a.maintenance_margin)}`;
  table(document.getElementById("positions"), ["instrument", "size", "mark", "value"],
    a.positions.map((p) => el("tr", {}, el("td", {}, instrumentName(p)), el("td", {}, p.size), el("td", {}, usd(p.mark)), el("td", {}, usd(p.value)))));
  table(document.getElementById("liquidation"), ["underlying", "spot", "below", "above"],
    a.liquidation_prices.map((l) => el("tr", {}, el("td", {}, l.underlying), el("td", {}, usd(l.spot)), el("td", {}, usd(l.below)), el("td", {}, usd(l.above)))));
}

export function wireCollateral(ctx) {
  document.getElementById("faucet").onclick = () => ctx.run("faucet", async () => {
    const units = parseUnits("100000", ctx.deployment.token.decimals);
    await ctx.wallet.write("token", "mint", [ctx.wallet.address, units]);
    return "faucet: minted 100,000 nUSD to your wallet";
  });
  document.getElementById("deposit").onclick = () => ctx.run("deposit", async () => {
    const amount = document.getElementById("deposit-amount").value;
    const units = parseUnits(amount || "0", ctx.deployment.token.decimals);
    if (units <= 0n) throw new Error("deposit amount: must be > 0");
    if (!(await review([`deposit ${amount} nUSD from your wallet (approve first if needed)`]))) return "cancelled";
    const engine = ctx.deployment.contracts.engine.address;
    const allowance = await ctx.wallet.read("token", "allowance", [ctx.wallet.address, engine]);
    if (allowance < units) await ctx.wallet.write("token", "approve", [engine, units]);
    await ctx.wallet.write("engine", "deposit", [units]);
    return `deposited ${amount} nUSD`;
  });
  document.getElementById("withdraw").onclick = () => ctx.run("withdraw", async () => {
    const amount = document.getElementById("withdraw-amount").value;
    const units = parseUnits(amount || "0", ctx.deployment.token.decimals);
    if (units <= 0n) throw new Error("withdraw amount: must be > 0");
    const a = ctx.account;
    const lines = [`withdraw ${amount} nUSD`];
    if (a) lines.push(`available to withdraw now: ${usd(a.available_to_withdraw)}` +
      (Number(amount) > a.available_to_withdraw ? " — the engine will refuse more than that" : ""));
    if (!(await review(lines))) return "cancelled";
    await ctx.wallet.write("engine", "withdraw", [units]);
    return `withdrew ${amount} nUSD`;
  });
}

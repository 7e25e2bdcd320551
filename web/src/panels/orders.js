// The order book: listed maker orders with a fill button, and placing a signed maker order.
import { parseUnits } from "viem";
import { api, el, table, usd, instrumentName } from "../api.js";
import { review, whatIfLines } from "./review.js";

function orderArgs(o) {
  return {
    account: o.account, instrument_id: BigInt(o.instrument_id), is_buy: o.is_buy, size_wad: BigInt(o.size_wad),
    limit_price_wad: BigInt(o.limit_price_wad), order_nonce: BigInt(o.order_nonce), deadline: BigInt(o.deadline),
  };
}

export function renderOrders(ctx, book) {
  const mine = (o) => ctx.wallet && ctx.wallet.address && o.order.account.toLowerCase() === ctx.wallet.address.toLowerCase();
  const rows = book.orders.map((o) => {
    const size = el("input", { type: "number", min: "0", step: "any", value: Math.min(1, o.remaining), class: "fill-size" });
    const button = el("button", { class: "fill" }, mine(o) ? "yours" : "Fill");
    if (mine(o)) button.disabled = true;
    button.onclick = () => ctx.run("fill", () => fill(ctx, o, size.value));
    return el("tr", { "data-hash": o.hash, "data-instrument": o.order.instrument_id, "data-side": o.order.is_buy ? "bid" : "ask" },
      el("td", {}, instrumentName(o.instrument)), el("td", { class: o.order.is_buy ? "buy" : "sell" }, o.order.is_buy ? "bid" : "ask"),
      el("td", {}, usd(o.price)), el("td", {}, o.remaining), el("td", {}, mine(o) ? "you" : o.order.account.slice(0, 8)),
      el("td", {}, size), el("td", {}, button));
  });
  table(document.getElementById("orders"), ["instrument", "side", "price", "remaining", "maker", "size", ""], rows);
}

async function fill(ctx, o, sizeText) {
  const size = Number(sizeText);
  if (!(size > 0) || size > o.remaining) throw new Error(`fill size: must be in (0, ${o.remaining}], got ${sizeText}`);
  // the taker takes the other side of the maker's order
  const signed = o.order.is_buy ? -size : size;
  const w = await api(`/accounts/${ctx.wallet.address}/what-if`, { method: "POST", body: { trades: [{ instrument_id: o.order.instrument_id, size: signed }] } });
  const head = `fill: ${signed > 0 ? "buy" : "sell"} ${size} ${instrumentName(o.instrument)} at ${usd(o.price)}`;
  if (!(await review([head, ...whatIfLines(w)]))) return "cancelled";
  await ctx.wallet.write("engine", "fill", [orderArgs(o.order), o.signature, parseUnits(String(size), 18)]);
  return `filled ${size} ${instrumentName(o.instrument)}`;
}

export function wirePlaceOrder(ctx) {
  document.getElementById("place-order").onclick = () => ctx.run("order", async () => {
    const id = Number(document.getElementById("order-instrument").value);
    const isBuy = document.getElementById("order-side").value === "buy";
    const size = Number(document.getElementById("order-size").value);
    const price = Number(document.getElementById("order-price").value);
    if (!(size > 0)) throw new Error("order size: must be > 0");
    if (!(price > 0)) throw new Error("order price: must be > 0");
    const inst = ctx.instruments.instruments.find((i) => i.instrument_id === id);
    const w = await api(`/accounts/${ctx.wallet.address}/what-if`, { method: "POST", body: { trades: [{ instrument_id: id, size: isBuy ? size : -size }] } });
    const head = `maker order: ${isBuy ? "buy" : "sell"} ${size} ${instrumentName(inst)} at ${usd(price)} (checked again when filled)`;
    if (!(await review([head, ...whatIfLines(w)]))) return "cancelled";
    const order = {
      account: ctx.wallet.address, instrument_id: BigInt(id), is_buy: isBuy,
      size_wad: parseUnits(size.toString(), 18), limit_price_wad: parseUnits(price.toFixed(6), 18),
      order_nonce: BigInt(Date.now()), deadline: BigInt(ctx.instruments.timestamp + 7 * 86400),
    };
    const signature = await ctx.wallet.signOrder(order);
    const body = Object.fromEntries(Object.entries(order).map(([k, v]) => [k, typeof v === "bigint" && k !== "instrument_id" && k !== "deadline" ? v.toString() : typeof v === "bigint" ? Number(v) : v]));
    await api("/orders", { method: "POST", body: { order: body, signature } });
    return `listed: ${isBuy ? "buy" : "sell"} ${size} ${instrumentName(inst)} at ${usd(price)}`;
  });
}

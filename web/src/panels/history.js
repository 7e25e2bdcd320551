// History: fills, liquidations, settlements, funding, deposits, withdrawals.
import { el, table, usd } from "../api.js";

function summary(e, names) {
  const d = e.details;
  const inst = (id) => names[id] || `#${id}`;
  switch (e.kind) {
    case "fill": return `${d.side} ${d.direction} ${d.size} of ${inst(d.instrument_id)} at ${usd(d.price)}`;
    case "liquidation": return `${d.role}: ${(d.fraction * 100).toFixed(1)}% slice worth ${usd(d.slice_value)}, discount ${usd(d.discount)}, by ${d.liquidator.slice(0, 8)}`;
    case "settlement": return `${inst(d.instrument_id)} size ${d.size} at ${usd(d.settlement_price)}: ${usd(d.payoff)}`;
    case "funding": return `${inst(d.instrument_id)}: ${usd(d.amount)}`;
    default: return `${usd(d.amount)} nUSD`;
  }
}

// names: instrument id -> name (from /api/instruments)
export function renderHistory(h, names = {}) {
  table(document.getElementById("history"), ["time (UTC)", "event", "details"], h.events.map((e) =>
    el("tr", { class: `event-${e.kind}` }, el("td", {}, e.timestamp ? new Date(e.timestamp * 1000).toISOString().slice(0, 16).replace("T", " ") : ""),
      el("td", {}, e.kind), el("td", {}, summary(e, names)))));
}

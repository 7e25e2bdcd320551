// The instruments table: marks, greeks, per-unit margin rates.
import { el, table, usd, instrumentName } from "../api.js";

export function renderInstruments(data) {
  const rows = data.instruments.filter((i) => i.live).map((i) => el("tr", { "data-id": i.instrument_id },
    el("td", {}, instrumentName(i)), el("td", {}, usd(i.mark)),
    el("td", {}, i.greeks ? i.greeks.delta.toFixed(3) : "–"), el("td", {}, i.greeks ? i.greeks.vega.toFixed(2) : "–"),
    el("td", {}, i.rates ? usd(i.rates.im_long) : "–"), el("td", {}, i.rates ? usd(i.rates.im_short) : "–")));
  table(document.getElementById("instruments"), ["instrument", "mark", "delta", "vega", "IM long/unit", "IM short/unit"], rows);
  const select = document.getElementById("order-instrument");
  const current = select.value;
  select.replaceChildren(...data.instruments.filter((i) => i.live && i.active)
    .map((i) => el("option", { value: i.instrument_id }, instrumentName(i))));
  if (current) select.value = current;
  const u = data.underlyings.map((x) => `${x.name} ${usd(x.index_price)}`).join("  ·  ");
  document.getElementById("chain").textContent = `${new Date(data.timestamp * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC · block ${data.block} · ${u}`;
}

// The margin report: a heatmap of each underlying's price x vol grid (book P&L), the binding
// scenario outlined, tail moves apart; isolated vs cross vs portfolio margin.
import { el, usd } from "../api.js";

function colour(v, scale) {
  if (v === null) return "#eee";
  const t = Math.min(1, Math.abs(v) / (scale || 1));
  return v < 0 ? `rgba(214, 39, 40, ${0.1 + 0.8 * t})` : `rgba(44, 160, 44, ${0.1 + 0.6 * t})`;
}

export function renderReport(report) {
  document.getElementById("margins").replaceChildren(el("p", {},
    `portfolio ${usd(report.portfolio_margin)} · cross ${usd(report.cross_margin)} · isolated ${usd(report.isolated_margin)} · binding: ${report.binding_scenario.label || ""}`));
  const out = [];
  for (const g of report.grids) {
    const scale = Math.max(1, ...g.pnl.flat().filter((x) => x !== null).map(Math.abs), ...g.tails.map((t) => Math.abs(t.pnl * t.weight)));
    const head = el("tr", {}, el("th", {}, g.underlying), ...g.price_moves.map((m) => el("th", {}, `${(m * 100).toFixed(0)}%`)));
    const rows = g.vols.map((v, r) => el("tr", {}, el("th", {}, v), ...g.pnl[r].map((x, c) => {
      const binding = g.binding && g.binding.vol === r && g.binding.price === c;
      const td = el("td", { class: binding ? "cell binding" : "cell", title: binding ? "binding scenario" : "" }, x === null ? "" : usd(x, 0));
      td.style.background = colour(x, scale);
      return td;
    })));
    const tails = g.tails.map((t) => {
      const td = el("td", { class: t.binding ? "cell binding" : "cell", title: `weight ${t.weight.toFixed(2)}` },
        `${(t.price_move * 100).toFixed(0)}%: ${usd(t.pnl * t.weight, 0)}`);
      td.style.background = colour(t.pnl * t.weight, scale);
      return td;
    });
    out.push(el("table", { class: "heatmap", "data-underlying": g.underlying }, head, ...rows));
    if (tails.length) out.push(el("table", { class: "tails" }, el("tr", {}, el("th", {}, "tails (weighted)"), ...tails)));
  }
  document.getElementById("grid").replaceChildren(...out);
}

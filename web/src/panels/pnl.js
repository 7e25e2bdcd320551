// P&L of the book against each underlying's price (uPlot).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

let charts = [];

export function renderPnl(report) {
  const node = document.getElementById("pnl");
  charts.forEach((c) => c.destroy());
  charts = [];
  node.replaceChildren();
  for (const [name, curve] of Object.entries(report.pnl_curve)) {
    const div = document.createElement("div");
    div.dataset.underlying = name;
    node.append(div);
    const data = [curve.map((p) => p[0]), curve.map((p) => p[1])];
    charts.push(new uPlot({
      width: Math.max(320, node.clientWidth - 10), height: 220, title: `${name}: book value change`,
      scales: { x: { time: false } },
      axes: [{}, { size: 70 }],
      series: [{ label: `${name} price` }, { label: "P&L (USD)", stroke: "#12263a", width: 2 }],
    }, data, div));
  }
}

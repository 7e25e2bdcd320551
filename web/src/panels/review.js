// "Before you send": the what-if (or the check) shown before every transaction; resolves
// true on Confirm, false on Cancel.
const box = () => document.getElementById("review");

export function review(lines) {
  const b = box();
  document.getElementById("review-text").replaceChildren(...lines.map((l) => {
    const p = document.createElement("p");
    p.textContent = l;
    return p;
  }));
  b.hidden = false;
  return new Promise((resolve) => {
    const done = (ok) => () => { b.hidden = true; resolve(ok); };
    document.getElementById("confirm").onclick = done(true);
    document.getElementById("cancel").onclick = done(false);
  });
}

export function whatIfLines(w) {
  const fmt = (x) => x.toLocaleString("en-US", { maximumFractionDigits: 2 });
  return [
    `initial margin: ${fmt(w.initial_margin_before)} → ${fmt(w.initial_margin_after)} (model)`,
    `maintenance margin: ${fmt(w.maintenance_margin_before)} → ${fmt(w.maintenance_margin_after)}`,
    `engine's initial margin right after: ${fmt(w.engine_initial_margin_after)} against equity ${fmt(w.equity)}`,
    w.accepted ? `would be accepted: ${w.reason}` : `would be REFUSED: ${w.reason}`,
  ];
}

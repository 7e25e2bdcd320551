// The netmargin HTTP API (same origin). Errors carry the API's message and field.
export async function api(path, options = {}) {
  const init = { ...options, headers: { "content-type": "application/json", ...(options.headers || {}) } };
  if (init.body && typeof init.body !== "string") init.body = JSON.stringify(init.body);
  const r = await fetch(`/api${path}`, init);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = (body.detail && body.detail[0]) || {};
    const field = (d.loc || []).filter((x) => x !== "body").join(".");
    throw new Error(`${field ? field + ": " : ""}${d.msg || r.statusText}`);
  }
  return body;
}

export const usd = (x, digits = 2) =>
  x === null || x === undefined || Number.isNaN(x) ? "–"
    : Number(x).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

export function instrumentName(i) {
  if (i.name) return i.name;
  if (i.kind === "perpetual") return `${i.underlying}-PERP`;
  const day = new Date(i.expiry * 1000).toISOString().slice(0, 10).replaceAll("-", "");
  if (i.kind === "future") return `${i.underlying}-${day}`;
  return `${i.underlying}-${day}-${i.strike}-${i.kind === "call" ? "C" : "P"}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

export function table(node, head, rows) {
  node.replaceChildren(el("tr", {}, ...head.map((h) => el("th", {}, h))), ...rows);
}

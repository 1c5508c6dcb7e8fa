// DOM helpers. Data is only ever put into the page as text nodes, attributes set with setAttribute
// on elements we create, or SVG built with createElementNS: never parsed as HTML markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  return node;
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function el(tag, props, ...children) {
  return append(apply(document.createElement(tag), props), children);
}

// Like Element.append, but skipping null/undefined/false children (conditional parts of a page).
export function put(node, ...children) {
  return append(node, children);
}

export function svg(tag, props, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), props), children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// ---- formatting ----------------------------------------------------------------------------------

export function num(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}
export const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
export const usd = (v) => (v === null || v === undefined ? "–" : `$${Number(v).toFixed(4)}`);
export const ms = (v) => (v === null || v === undefined ? "–" : `${num(v, v < 10 ? 2 : 1)} ms`);

export function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function elapsed(msValue) {
  const s = msValue / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}

// Spans in progress (live spans). What a waterfall bar of a span in progress says: "running 40.2 s" / "abandoned after 15 m 0 s".
export function stateLabel(s) {
  return s.state === "abandoned" ? `abandoned after ${elapsed(s.elapsed_ms)}` : `running ${elapsed(s.elapsed_ms)}`;
}

export const shortTime = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "–");

export function bucketLabel(ns, bucketNs) {
  const d = new Date(ns / 1e6);
  const iso = d.toISOString();
  return bucketNs >= 86400e9 ? iso.slice(5, 10) : iso.slice(5, 16).replace("T", " ");
}

// ---- small components ----------------------------------------------------------------------------

export function card(label, value, key, bad = false) {
  return el("div", { class: bad ? "card bad" : "card", "data-k": key },
    el("div", { class: "label", text: label }), el("div", { class: "value", "data-value": key, text: value }));
}

export function panel(title, ...children) {
  return el("section", { class: "panel" }, el("h3", { text: title }), ...children);
}

// columns: [{key, label, fmt?, num?, cls?(row)}]; onClick(row) makes rows clickable.
export function table(columns, rows, onClick, testId) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.label })));
  const body = rows.map((r) => {
    const tr = el("tr", { class: onClick ? "click" : null },
      columns.map((c) => {
        const v = c.fmt ? c.fmt(r[c.key], r) : r[c.key];
        const cls = [c.num ? "num" : "", c.cls ? c.cls(r) : ""].join(" ").trim();
        return el("td", { class: cls || null, text: v === null || v === undefined ? "" : v });
      }));
    if (onClick) tr.addEventListener("click", () => onClick(r, tr));
    return tr;
  });
  return el("table", { "data-testid": testId || null }, el("thead", {}, head), el("tbody", {}, body));
}

export function errorBox(err) {
  return el("div", { class: "error-box", role: "alert", text: String(err && err.message ? err.message : err) });
}

// Key/value list of arbitrary JSON: values are shown as JSON text, never interpreted.
export function kvTable(obj, testId) {
  const rows = Object.entries(obj || {}).map(([k, v]) => ({ k, v: typeof v === "string" ? v : JSON.stringify(v) }));
  return table([{ key: "k", label: "key" }, { key: "v", label: "value" }], rows, null, testId);
}

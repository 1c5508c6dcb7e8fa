// Hand-written SVG charts (no libraries, no network): line chart, heat map, waterfall, timeline.
// Everything is built with createElementNS; labels are text nodes.
import { bucketLabel, el, stateLabel, svg } from "./dom.js";

export const PALETTE = ["#2f6fde", "#d9822b", "#2f855a", "#c62e2e", "#805ad5", "#319795", "#718096", "#b83280"];

function legend(names) {
  return el("div", { class: "legend" },
    names.map((n, i) => el("span", {}, el("span", { class: `sw sw${i % PALETTE.length}` }), n)));
}

// series: [{name, values}] aligned with buckets (null = no data).
export function lineChart({ buckets, bucketNs, series, fmt = String, height = 170, testId }) {
  const W = 640, H = height, L = 62, R = 10, T = 8, B = 20;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...all);
  const n = Math.max(1, buckets.length - 1);
  const x = (i) => L + ((W - L - R) * i) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-testid": testId || null });
  root.appendChild(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    root.appendChild(svg("line", { class: "axis", x1: L, y1: yy, x2: W - R, y2: yy, "stroke-dasharray": "2 3" }));
    root.appendChild(svg("text", { x: L - 4, y: yy + 3, "text-anchor": "end" }, fmt(max * f)));
  }
  if (buckets.length) {
    for (const i of [0, Math.floor(buckets.length / 2), buckets.length - 1]) {
      root.appendChild(svg("text", { x: x(i), y: H - 5, "text-anchor": i === 0 ? "start" : i === buckets.length - 1 ? "end" : "middle" },
        bucketLabel(buckets[i], bucketNs)));
    }
  }
  series.forEach((s, k) => {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (!d) return;
    const color = PALETTE[k % PALETTE.length];
    const path = svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.6 }, svg("title", {}, s.name));
    root.appendChild(path);
    if (s.values.filter((v) => v !== null && v !== undefined).length === 1) {
      const i = s.values.findIndex((v) => v !== null && v !== undefined);
      root.appendChild(svg("circle", { cx: x(i), cy: y(s.values[i]), r: 2.5, fill: color }));
    }
  });
  if (!all.length) root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data in this window"));
  return el("div", { class: "chart" }, root, series.length > 1 ? legend(series.map((s) => s.name)) : null);
}

function heatColor(f) {
  if (f <= 0) return "#f1f3f6";
  const a = [253, 226, 204], b = [198, 46, 46];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * Math.min(1, 0.15 + 0.85 * f)));
  return `rgb(${c.join(",")})`;
}

export function heatmap({ rows, buckets, bucketNs, cells, testId }) {
  const L = 150, T = 4, cw = Math.max(4, Math.min(28, 880 / Math.max(1, buckets.length))), ch = 18;
  const W = L + cw * buckets.length + 10, H = T + ch * rows.length + 22;
  const max = Math.max(1, ...cells.flat());
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-testid": testId || null });
  rows.forEach((name, r) => {
    const label = name.length > 24 ? `${name.slice(0, 23)}…` : name;
    root.appendChild(svg("text", { x: L - 6, y: T + r * ch + 13, "text-anchor": "end" }, label, svg("title", {}, name)));
    cells[r].forEach((v, c) => {
      root.appendChild(svg("rect", {
        x: L + c * cw, y: T + r * ch, width: cw - 1, height: ch - 1, fill: heatColor(v / max),
        "data-count": v,
      }, svg("title", {}, `${name} @ ${bucketLabel(buckets[c], bucketNs)}: ${v}`)));
    });
  });
  if (buckets.length) {
    for (const i of [0, Math.floor(buckets.length / 2), buckets.length - 1]) {
      root.appendChild(svg("text", { x: L + i * cw, y: H - 6 }, bucketLabel(buckets[i], bucketNs)));
    }
  }
  if (!rows.length) root.appendChild(svg("text", { x: 10, y: 20 }, "no error_patterns records in this window"));
  return el("div", { class: "chart heat" }, root);
}

// spans: waterfall order with depth and offset_ms; onSelect(span, rowNode).
export function waterfall(spans, totalMs, onSelect) {
  const W = 1000, L = 340, R = 70, rh = 20;
  const total = Math.max(totalMs, 1e-6);
  const root = svg("svg", { viewBox: `0 0 ${W} ${rh * spans.length + 4}`, class: "waterfall", "data-testid": "waterfall" });
  spans.forEach((s, i) => {
    const y = i * rh + 2;
    const x0 = L + ((W - L - R) * s.offset_ms) / total;
    // A span in progress (live spans) is drawn up to now: s.state "running" or "abandoned".
    const shownMs = s.state ? s.elapsed_ms : s.duration_ms;
    const w = Math.max(2, ((W - L - R) * (shownMs || 0)) / total);
    const name = s.name || s.event || "(span)";
    const label = s.state ? stateLabel(s) : `${(s.duration_ms || 0).toFixed(2)} ms`;
    const cls = s.state ? `bar ${s.state}` : s.status === "error" ? "bar error" : "bar";
    const g = svg("g", { class: "row", "data-span-id": s.span_id, "data-depth": s.depth, "data-state": s.state || null },
      svg("rect", { class: "bg", x: 0, y, width: W, height: rh }),
      svg("text", { class: "name", x: 6 + s.depth * 14, y: y + 14 }, name.length > 40 ? `${name.slice(0, 39)}…` : name),
      svg("rect", { class: cls, x: x0, y: y + 4, width: w, height: rh - 8 }),
      svg("text", { class: "label", x: Math.min(x0 + w + 4, W - R + 4), y: y + 14 }, label),
      svg("title", {}, `${name} (${s.component || ""}) ${s.state ? label : `${(s.duration_ms || 0).toFixed(3)} ms`}`));
    g.addEventListener("click", () => onSelect(s, g));
    root.appendChild(g);
  });
  return el("div", { class: "chart" }, root);
}

// alerts: [{rule, fired, resolved, severity, state}] over [since, until] (ns).
export function timeline(alerts, sinceNs, untilNs) {
  const rules = [...new Set(alerts.map((a) => a.rule))];
  const W = 1000, L = 180, rh = 20, H = rules.length * rh + 24;
  const span = Math.max(1, untilNs - sinceNs);
  const x = (ns) => L + ((W - L - 10) * Math.min(Math.max(ns - sinceNs, 0), span)) / span;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", "data-testid": "alert-timeline" });
  rules.forEach((rule, r) => root.appendChild(svg("text", { x: L - 6, y: r * rh + 14, "text-anchor": "end" }, rule)));
  for (const a of alerts) {
    const r = rules.indexOf(a.rule);
    const start = Date.parse(a.fired) * 1e6;
    const end = a.resolved ? Date.parse(a.resolved) * 1e6 : untilNs;
    if (end < sinceNs) continue;
    const color = a.severity === "critical" ? "#c62e2e" : a.severity === "warning" ? "#d9822b" : "#2f6fde";
    root.appendChild(svg("rect", { x: x(start), y: r * rh + 4, width: Math.max(3, x(end) - x(start)), height: rh - 8, fill: color },
      svg("title", {}, `${a.rule} [${a.severity}] ${a.fired} → ${a.resolved || "firing"}`)));
  }
  root.appendChild(svg("text", { x: L, y: H - 4 }, bucketLabel(sinceNs, 3600e9)));
  root.appendChild(svg("text", { x: W - 10, y: H - 4, "text-anchor": "end" }, bucketLabel(untilNs, 3600e9)));
  if (!rules.length) root.appendChild(svg("text", { x: 10, y: 16 }, "no alerts in this window"));
  return el("div", { class: "chart" }, root);
}

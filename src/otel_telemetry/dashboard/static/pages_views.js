// Services page (`otel-telemetry services`) and metrics explorer (`otel-telemetry metrics`).
// Cells carry their raw number in data-v, so tests compare them with the CLI's JSON exactly.
import { get } from "./api.js";
import { lineChart } from "./charts.js";
import { el, ms, num, panel, pct, put } from "./dom.js";

export const CATEGORIES = ["system_performance", "ai_behavior", "user_interaction", "component_interactions",
  "error_patterns", "ai_research"];

export function catSelect(value, testId) {
  return el("select", { "data-testid": testId },
    el("option", { value: "", text: "(all)" }),
    CATEGORIES.map((c) => el("option", { value: c, text: c, selected: c === value })));
}

// columns: [{key, label, fmt?, num?}]; every cell gets data-k=<key> and data-v=<raw value>.
function rawTable(columns, rows, testId, rowKey) {
  return el("table", { "data-testid": testId },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.label })))),
    el("tbody", {}, rows.map((r) => el("tr", { "data-row": r[rowKey] },
      columns.map((c) => el("td", { class: c.num ? "num" : null, "data-k": c.key,
        "data-v": r[c.key] === null || r[c.key] === undefined ? "" : String(r[c.key]),
        text: c.fmt ? c.fmt(r[c.key]) : (r[c.key] ?? "") }))))));
}

const rate = (v) => (v === null || v === undefined ? "–" : `${num(v, v < 1 ? 4 : 2)}/s`);

export async function services(ctx) {
  const d = await get("services", { last: ctx.last });
  const bucketS = d.bucket_ns / 1e9;
  const series = (key, scale = 1) => d.services.slice(0, 8).map((s) => ({
    name: s.service, values: s.series[key].map((v) => (v === null ? null : v * scale)) }));
  put(ctx.main,
    el("h2", { text: "Services" }),
    el("p", { class: "muted", text: "Entry spans per service (server and consumer spans, roots, spans called from another "
      + "service): rate, errors and duration. Percentiles from log-scale buckets (within 2 %)." }),
    panel("Services", rawTable([
      { key: "service", label: "service" },
      { key: "rate_per_s", label: "rate", num: true, fmt: rate },
      { key: "calls", label: "calls", num: true, fmt: (v) => num(v) },
      { key: "errors", label: "errors", num: true, fmt: (v) => num(v) },
      { key: "error_rate", label: "error rate", num: true, fmt: pct },
      { key: "p50_ms", label: "p50", num: true, fmt: ms },
      { key: "p95_ms", label: "p95", num: true, fmt: ms },
    ], d.services, "table-services", "service")),
    el("div", { class: "grid2" },
      panel(`Rate (per second, per ${bucketS >= 86400 ? "day" : "hour"})`, lineChart({ buckets: d.buckets,
        bucketNs: d.bucket_ns, series: series("calls", 1 / bucketS), fmt: rate, testId: "chart-svc-rate" })),
      panel("Errors", lineChart({ buckets: d.buckets, bucketNs: d.bucket_ns, series: series("errors"),
        fmt: (v) => num(v), testId: "chart-svc-errors" })),
      panel("p50 duration", lineChart({ buckets: d.buckets, bucketNs: d.bucket_ns, series: series("p50_ms"), fmt: ms,
        testId: "chart-svc-p50" })),
      panel("p95 duration", lineChart({ buckets: d.buckets, bucketNs: d.bucket_ns, series: series("p95_ms"), fmt: ms,
        testId: "chart-svc-p95" }))));
}

export async function metrics(ctx) {
  const { metrics: names } = await get("metric_names", { last: ctx.last });
  const name = ctx.params.get("name") || (names[0] && names[0].name) || "";
  const agg = ctx.params.get("agg") || "";
  const groupBy = ctx.params.get("group_by") || "";
  const nameBox = el("select", { "data-testid": "metric-name" }, names.map((n) =>
    el("option", { value: n.name, text: `${n.name} (${n.type}${n.unit ? `, ${n.unit}` : ""})`, selected: n.name === name })));
  const groupBox = el("input", { "data-testid": "metric-group-by", value: groupBy, placeholder: "attribute or service" });
  put(ctx.main, el("h2", { text: "Metrics" }));
  if (!names.length) {
    put(ctx.main, el("p", { class: "muted", text: "No metrics in this window." }));
    return;
  }
  const d = await get("metric", { last: ctx.last, name, agg, group_by: groupBy });
  const aggBox = el("select", { "data-testid": "metric-agg" }, d.aggs.map((a) =>
    el("option", { value: a, text: a, selected: a === d.agg })));
  const apply = (e) => {
    if (e) e.preventDefault();
    const q = { name: nameBox.value, ...(aggBox.value && nameBox.value === name ? { agg: aggBox.value } : {}),
      ...(groupBox.value.trim() ? { group_by: groupBox.value.trim() } : {}) };
    ctx.navigate("metrics", q);
  };
  nameBox.addEventListener("change", apply);
  aggBox.addEventListener("change", apply);
  const fmt = (v) => (v === null || v === undefined ? "–" : num(v, Math.abs(v) < 10 ? 4 : 2));
  put(ctx.main,
    el("form", { class: "filters", onsubmit: apply },
      el("label", {}, "metric", nameBox), el("label", {}, "aggregation", aggBox),
      el("label", {}, "group by", groupBox), el("button", { type: "submit", text: "Apply" })),
    el("p", { class: "muted", text: `${d.name}: ${d.kind}, ${d.agg} per ${num(d.bucket_ns / 60e9)} min`
      + `${d.group_by ? `, by ${d.group_by}` : ""}${d.truncated ? " (largest groups only)" : ""}.` }),
    el("div", { class: "grid2" },
      panel(`${d.name} — ${d.agg}`, lineChart({ buckets: d.buckets, bucketNs: d.bucket_ns,
        series: d.groups.map((g) => ({ name: g.group, values: g.series })), fmt, testId: "chart-metric" })),
      panel("Over the window", rawTable([
        { key: "group", label: d.group_by || "group" },
        { key: "value", label: d.agg, num: true, fmt },
        { key: "points", label: "points", num: true, fmt: (v) => num(v) },
      ], d.groups, "table-metric", "group"))));
}

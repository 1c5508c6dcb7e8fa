// Overview, AI and Errors pages.
import { get } from "./api.js";
import { heatmap, lineChart } from "./charts.js";
import { bytes, card, duration, el, ms, num, panel, pct, put, shortTime, table, usd } from "./dom.js";

function seriesOf(obj) {
  return Object.entries(obj || {}).map(([name, values]) => ({ name, values }));
}

export async function overview(ctx) {
  const [ov, sys] = await Promise.all([get("overview", { last: ctx.last }), get("system", { last: ctx.last })]);
  const c = ov.counters || {};
  const status = document.getElementById("status-line");
  status.textContent = ov.status ? `collector status ${duration(ov.status.age_s)} old` : "no collector status";
  put(ctx.main, 
    el("h2", { text: "Overview" }),
    ov.status ? null : el("p", { class: "muted", text: "No collector has written status to this database yet." }),
    el("div", { class: "cards" },
      card("ingest / s (last min)", num(ov.ingest_per_s, 1), "ingest_per_s"),
      card("records in window", num(ov.total), "total"),
      card("errors in window", num(ov.errors), "window_errors", ov.errors > 0),
      card("stored", num(c.stored), "stored"),
      card("received", num(c.received), "received"),
      card("dropped", num(c.dropped), "dropped", c.dropped > 0),
      card("gaps", num(c.gaps), "gaps", c.gaps > 0),
      card("rejected", num(c.rejected), "rejected", c.rejected > 0),
      card("queue depth", num(c.queue_depth), "queue_depth"),
      card("collector uptime", duration(c.uptime_s), "uptime")),
    el("div", { class: "grid2" },
      panel(`Records per ${duration(ov.records.bucket_ns / 1e9)} (${ov.records.source})`,
        lineChart({ buckets: ov.records.buckets, bucketNs: ov.records.bucket_ns, testId: "chart-records",
          series: [{ name: "records", values: ov.records.count }, { name: "errors", values: ov.records.errors }],
          fmt: (v) => num(v) })),
      panel("CPU busy", lineChart({ buckets: sys.buckets, bucketNs: sys.bucket_ns, testId: "chart-cpu",
        series: [{ name: "cpu", values: sys.cpu_busy }], fmt: pct })),
      panel("Memory used", lineChart({ buckets: sys.buckets, bucketNs: sys.bucket_ns, testId: "chart-memory",
        series: [{ name: "memory", values: sys.memory_used }], fmt: pct })),
      panel("Disk and network (bytes/s)", lineChart({ buckets: sys.buckets, bucketNs: sys.bucket_ns,
        testId: "chart-io", series: seriesOf(sys.bytes_per_s), fmt: bytes }))),
    // On a central server (several collectors ship to it): records per instance in the window.
    ov.by_instance && ov.by_instance.length ? panel(`By instance (records since ${ov.by_instance[0].since})`, table(
      [{ key: "instance", label: "instance" }, { key: "records", label: "records", num: true }],
      ov.by_instance, null, "table-instances")) : null);
}

export async function ai(ctx) {
  const filters = { agent: ctx.params.get("agent") || "", model: ctx.params.get("model") || "" };
  const d = await get("ai", { last: ctx.last, ...filters });
  const r = d.report;
  const s = d.series;
  const lat = r.latency_ms;
  const chart = (title, values, fmt, testId) => panel(title, lineChart({ buckets: s.buckets, bucketNs: s.bucket_ns,
    series: seriesOf(values), fmt, testId }));
  const filterNote = Object.entries(filters).filter(([, v]) => v).map(([k, v]) => `${k} = ${v}`).join(", ");
  put(ctx.main, 
    el("h2", { text: "AI" }),
    filterNote ? el("p", {}, `Filtered: ${filterNote} `, el("a", { href: "#/ai", text: "(clear)" })) : null,
    el("div", { class: "cards" },
      card("calls", num(r.calls.total), "calls"),
      card("success rate", pct(r.calls.success_rate), "success_rate"),
      card("failed calls", num(r.failed_calls.total), "failed", r.failed_calls.total > 0),
      card("latency p50", ms(lat.p50), "p50"),
      card("latency p95", ms(lat.p95), "p95"),
      card("latency p99", ms(lat.p99), "p99"),
      card("cost", usd(r.cost_usd.total), "cost"),
      card("tokens", num(r.tokens.total), "tokens"),
      card("top agent", r.top_agent ? `${r.top_agent.agent} (${r.top_agent.calls})` : "–", "top_agent")),
    el("p", { class: "muted", text: `Source: ${r.source}${lat.exact ? " (exact percentiles)" : " (percentiles within 2 %)"}; `
      + `series per ${duration(s.bucket_ns / 1e9)} from ${s.source}.` }),
    el("div", { class: "grid2" },
      chart("Tokens per model", s.tokens.model, num, "chart-tokens-model"),
      chart("Cost per model (USD)", s.cost_usd.model, usd, "chart-cost-model"),
      chart("Tokens per agent", s.tokens.agent, num, "chart-tokens-agent"),
      chart("Cost per agent (USD)", s.cost_usd.agent, usd, "chart-cost-agent"),
      chart("Model latency p50 / p95", s.latency_ms, ms, "chart-latency"),
      panel("Calls and failures", lineChart({ buckets: s.buckets, bucketNs: s.bucket_ns, testId: "chart-calls",
        series: [{ name: "calls", values: s.calls }, { name: "failed", values: s.failed }], fmt: num }))),
    el("div", { class: "grid2" },
      panel("By model", byTable(r.by_model, "model", (name) => ctx.navigate("ai", { model: name }), "table-models")),
      panel("By agent (top agents)", byTable(r.by_agent, "agent", (name) => ctx.navigate("ai", { agent: name }),
        "table-agents"))),
    panel("Failed calls by error type", table([{ key: "type", label: "error type" }, { key: "n", label: "failed", num: true }],
      Object.entries(r.failed_calls.by_error_type).map(([type, n]) => ({ type, n })), null, "table-failed")));
}

function byTable(groups, label, onClick, testId) {
  const rows = Object.entries(groups || {}).map(([name, g]) => ({ name, ...g }));
  return table([
    { key: "name", label },
    { key: "calls", label: "calls", num: true, fmt: (v) => num(v) },
    { key: "failed", label: "failed", num: true, fmt: (v) => num(v) },
    { key: "cost_usd", label: "cost", num: true, fmt: usd },
    { key: "total_tokens", label: "tokens", num: true, fmt: (v) => num(v) },
    { key: "p95_ms", label: "p95", num: true, fmt: ms },
  ], rows, (row) => onClick(row.name), testId);
}

export async function errors(ctx) {
  const d = await get("errors", { last: ctx.last });
  put(ctx.main, 
    el("h2", { text: "Errors" }),
    el("div", { class: "cards" },
      card("error_patterns records", num(d.total), "error_total", d.total > 0),
      card("components", num(d.components.length), "components"),
      card("latest shown", num(d.latest.length), "latest")),
    panel(`Error patterns per component × ${d.bucket_ns >= 86400e9 ? "day" : "hour"}`,
      heatmap({ rows: d.components, buckets: d.buckets, bucketNs: d.bucket_ns, cells: d.cells, testId: "heatmap" })),
    panel("Latest exceptions", el("div", { class: "scroll" }, table([
      { key: "time", label: "time", fmt: shortTime },
      { key: "component", label: "component" },
      { key: "level", label: "level", cls: (r) => `lvl-${r.level}` },
      { key: "name", label: "name" },
      { key: "exception", label: "exception", fmt: (e) => e.type || "" },
      { key: "exception", label: "message", fmt: (e) => e.message || "" },
      { key: "trace_id", label: "trace", fmt: (t) => (t ? `${t.slice(0, 8)}…` : "") },
    ], d.latest, (row) => row.trace_id && ctx.navigate("traces", { trace_id: row.trace_id }), "table-exceptions"))));
}

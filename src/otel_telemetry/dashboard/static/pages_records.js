// Traces (search + waterfall), Live tail, Sessions, Alerts & retention pages.
import { get, post } from "./api.js";
import { lineChart, timeline, waterfall } from "./charts.js";
import { card, clear, el, errorBox, kvTable, ms, num, panel, put, shortTime, table } from "./dom.js";
import { conversationPanels } from "./pages_conversation.js";
import { attrInputs, formParams } from "./pages_explore.js";
import { followTrace, inProgressPanel } from "./pages_live.js";

const CATEGORIES = ["system_performance", "ai_behavior", "user_interaction", "component_interactions",
  "error_patterns", "ai_research"];
const LEVELS = ["debug", "info", "warning", "error", "critical"];
const WINDOW_S = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };

const lvl = (r) => `lvl-${r.level}`;

function select(name, options, value) {
  return el("select", { name }, el("option", { value: "", text: "any" }),
    options.map((o) => el("option", { value: o, text: o, selected: o === value })));
}

// ---- traces ----------------------------------------------------------------------------------------

export async function traces(ctx) {
  if (ctx.params.get("trace_id")) return traceView(ctx, ctx.params.get("trace_id"));
  const p = Object.fromEntries(ctx.params.entries());
  p.attr = ctx.params.getAll("attr");
  const input = (name, label, type = "text") => el("label", {}, label, el("input", { name, type, value: p[name] || "" }));
  const form = el("form", { class: "filters", "data-testid": "trace-search" },
    input("service", "service"),
    el("label", {}, "category", select("category", CATEGORIES, p.category)),
    input("component", "component"),
    input("event", "name / event"),
    el("label", {}, "status", select("status", ["unset", "ok", "error"], p.status)),
    input("min_duration_ms", "min duration ms", "number"),
    attrInputs(p.attr),
    el("button", { type: "submit", class: "primary", text: "Search" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.navigate("traces", formParams(form));
  });
  const d = await get("traces", { last: ctx.last, limit: 50, ...p });
  put(ctx.main, el("h2", { text: "Traces" }), form, panel(`Spans (newest first, ${d.spans.length} shown)`,
    table([
      { key: "time", label: "time", fmt: shortTime },
      { key: "service", label: "service" },
      { key: "category", label: "category" },
      { key: "component", label: "component" },
      { key: "name", label: "name" },
      { key: "status", label: "status", cls: (r) => `st-${r.status}` },
      { key: "duration_ms", label: "duration", num: true, fmt: ms },
      { key: "trace_id", label: "trace", fmt: (t) => (t ? `${t.slice(0, 12)}…` : "") },
    ], d.spans, (row) => ctx.navigate("traces", { trace_id: row.trace_id }), "table-spans"),
    d.next ? el("p", {}, el("button", { type: "button", text: "Next page →", "data-testid": "next-page",
      onclick: () => ctx.navigate("traces", { ...p, cursor: d.next }) })) : null));
}

async function traceView(ctx, traceId) {
  const d = await get("trace", { trace_id: traceId });
  const detail = el("section", { class: "panel detail", "data-testid": "span-detail" },
    el("p", { class: "muted", text: "Click a span for its attributes, events and links." }));
  let selected = null;
  let selectedSpan = null;
  const onSelect = async (span, row) => {
    if (selected) selected.classList.remove("selected");
    selected = row;
    selectedSpan = span.span_id;
    row.classList.add("selected");
    clear(detail);
    if (span.state) { renderSpan(detail, span); return; }  // in progress: not a stored record yet
    try {
      const { record } = await get("record", { id: span.id });
      renderSpan(detail, record);
    } catch (err) { detail.appendChild(errorBox(err)); }
  };
  const head = el("p");
  const wf = el("div");
  const others = el("div");
  const draw = (t) => {
    put(clear(head), el("a", { href: "#/traces", text: "← back to search" }),
      ` · ${t.spans.length} spans · ${ms(t.duration_ms)} · started ${shortTime(t.start)}`,
      t.truncated ? " · truncated" : "",
      t.in_progress ? el("span", { class: "pill st-running", "data-testid": "trace-in-progress",
        text: ` ${t.in_progress} in progress` }) : null);
    put(clear(wf), t.spans.length ? panel("Waterfall", waterfall(t.spans, t.duration_ms, onSelect))
      : el("p", { text: "No spans for this trace id." }));
    selected = selectedSpan ? wf.querySelector(`[data-span-id="${CSS.escape(selectedSpan)}"]`) : null;
    if (selected) selected.classList.add("selected");
    put(clear(others), t.others.length ? panel("Logs and events in this trace", table([
      { key: "time", label: "time", fmt: shortTime }, { key: "type", label: "type" },
      { key: "level", label: "level", cls: lvl }, { key: "name", label: "name" }, { key: "span_id", label: "span" },
    ], t.others)) : null);
  };
  draw(d);
  // GenAI spans: agent steps and conversations (a step row selects its span in the waterfall).
  const genai = el("div", { "data-testid": "genai" });
  const conversation = () => conversationPanels(clear(genai), traceId, (step) => {
    const row = ctx.main.querySelector(`[data-span-id="${CSS.escape(step.span_id || "")}"]`);
    if (row) row.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  });
  put(ctx.main, el("h2", {}, "Trace ", el("code", { text: d.trace_id })), head, wf, genai, detail, others);
  await conversation();
  // Spans still running (live spans): follow the trace until they end, then show it whole.
  // A refresh while a button is held on the waterfall would replace the span under the pointer and
  // swallow the click (mousedown and mouseup on two different elements): it waits for the release.
  let downAt = 0;
  let later = null;
  const refresh = (t) => {
    draw(t);
    if (!t.in_progress) conversation();
  };
  wf.addEventListener("pointerdown", () => { downAt = Date.now(); });
  const released = () => {
    downAt = 0;
    const t = later;
    later = null;
    if (t) setTimeout(() => refresh(t)); // after this release's click
  };
  wf.addEventListener("pointerup", released);
  wf.addEventListener("pointerleave", released);
  return followTrace(ctx, traceId, d, (t) => {
    if (downAt && Date.now() - downAt < 10000) later = t;
    else refresh(t);
  });
}

function renderSpan(node, rec) {
  const data = rec.data && typeof rec.data === "object" ? rec.data : { raw: rec.data };
  const meta = rec.metadata && typeof rec.metadata === "object" ? rec.metadata : {};
  const summary = {};
  for (const k of ["name", "state", "elapsed_ms", "service", "component", "category", "kind", "status", "status_message", "duration_ms",
    "span_id", "parent_span_id", "session_id", "model", "agent", "input_tokens", "output_tokens", "cost_usd", "time"]) {
    if (rec[k] !== null && rec[k] !== undefined) summary[k] = rec[k];
  }
  put(node, el("h3", { text: `Span ${rec.name || ""}` }), kvTable(summary, "span-summary"),
    el("h3", { text: "Attributes" }), kvTable(data.attributes || {}, "span-attributes"));
  (data.events || []).forEach((ev, i) => put(node, el("h3", { text: `Event ${i + 1}: ${ev.name}` }),
    kvTable(ev.attributes || {}, "span-event")));
  if ((data.links || []).length) {
    put(node, el("h3", { text: "Links" }), table([{ key: "trace_id", label: "trace" }, { key: "span_id", label: "span" },
      { key: "attributes", label: "attributes", fmt: (a) => JSON.stringify(a || {}) }], data.links, null, "span-links"));
  }
  put(node, el("h3", { text: "Resource" }), kvTable(meta.resource || {}, "span-resource"));
}

// ---- live tail -------------------------------------------------------------------------------------

export async function tail(ctx) {
  const chosen = { category: (ctx.params.get("category") || "").split(",").filter(Boolean),
    level: (ctx.params.get("level") || "").split(",").filter(Boolean) };
  const checks = (name, options) => el("div", { class: "checks", "data-testid": `tail-${name}` }, options.map((o) =>
    el("label", {}, el("input", { type: "checkbox", value: o, checked: chosen[name].includes(o),
      onchange: (ev) => {
        const set = new Set(chosen[name]);
        if (ev.target.checked) set.add(o); else set.delete(o);
        ctx.navigate("tail", { ...Object.fromEntries(Object.entries({ ...chosen, [name]: [...set] })
          .filter(([, v]) => v.length).map(([k, v]) => [k, v.join(",")])) });
      } }), o)));
  const state = el("span", { class: "pill", "data-testid": "tail-state", text: "connecting" });
  const dropped = el("span", { "data-testid": "tail-dropped", text: "0" });
  const body = el("tbody");
  const instance = (document.getElementById("instance") || {}).value;  // the header's filter
  const running = inProgressPanel(ctx, instance && instance.trim());
  put(ctx.main, el("h2", { text: "Live tail" }),
    el("div", { class: "filters" }, el("label", {}, "categories", checks("category", CATEGORIES)),
      el("label", {}, "levels", checks("level", LEVELS))),
    running.node,
    el("p", {}, state, " · dropped (slow browser): ", dropped),
    panel("Newest first (at most 500 kept)", el("div", { class: "scroll" }, el("table", { "data-testid": "tail-table" },
      el("thead", {}, el("tr", {}, ["time", "type", "category", "component", "level", "name", "duration", "trace"]
        .map((h) => el("th", { text: h })))), body))));
  const qs = new URLSearchParams({ backlog: "50" });
  chosen.category.forEach((c) => qs.append("category", c));
  chosen.level.forEach((l) => qs.append("level", l));
  if (instance && instance.trim()) qs.append("instance", instance.trim());
  const es = new EventSource(`/api/tail?${qs}`);
  es.addEventListener("open", () => { state.textContent = "live"; });
  es.addEventListener("error", () => { state.textContent = "reconnecting"; });
  es.addEventListener("dropped", (ev) => { dropped.textContent = String(JSON.parse(ev.data).total); });
  es.addEventListener("record", (ev) => {
    const r = JSON.parse(ev.data);
    const tr = el("tr", { class: r.trace_id ? "click" : null, "data-id": r.id },
      [shortTime(r.time), r.type, r.category, r.component, r.level, r.name || r.event,
        r.duration_ms === null ? "" : ms(r.duration_ms), r.trace_id ? `${r.trace_id.slice(0, 8)}…` : ""]
        .map((v, i) => el("td", { class: i === 4 ? `lvl-${r.level}` : null, text: v ?? "" })));
    if (r.trace_id) tr.addEventListener("click", () => ctx.navigate("traces", { trace_id: r.trace_id }));
    body.insertBefore(tr, body.firstChild);
    while (body.childNodes.length > 500) body.removeChild(body.lastChild);
  });
  return () => { es.close(); running.stop(); };
}

// ---- sessions --------------------------------------------------------------------------------------

export async function sessions(ctx) {
  const sid = ctx.params.get("session_id");
  const open = el("form", { class: "filters" }, el("label", {}, "session id", el("input", { name: "session_id", value: sid || "" })),
    el("button", { type: "submit", text: "Open" }));
  open.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = new FormData(open).get("session_id");
    if (v) ctx.navigate("sessions", { session_id: v });
  });
  put(ctx.main, el("h2", { text: "Sessions" }), open);
  if (!sid) {
    const d = await get("sessions", { last: ctx.last });
    put(ctx.main, panel("Recently active sessions", table([
      { key: "session_id", label: "session" }, { key: "records", label: "records", num: true },
      { key: "errors", label: "errors", num: true }, { key: "warnings", label: "warnings", num: true },
      { key: "first", label: "first", fmt: shortTime }, { key: "last", label: "last", fmt: shortTime },
    ], d.sessions, (row) => ctx.navigate("sessions", { session_id: row.session_id }), "table-sessions")));
    return;
  }
  const d = await get("session", { session_id: sid });
  const h = d.health;
  const hist = d.health_history;
  put(ctx.main, 
    el("div", { class: "cards" }, card("records", num(d.counts.records), "records"),
      card("errors", num(d.counts.errors), "errors", d.counts.errors > 0),
      card("warnings", num(d.counts.warnings), "warnings"),
      card("health records", num(hist.length), "health_records")),
    h ? healthPanel(h) : el("p", { class: "muted", text: "No per-session health record in this session." }),
    hist.length > 1 ? el("div", { class: "grid2" },
      panel("Latency (ms)", lineChart({ buckets: hist.map((x) => x.timestamp), bucketNs: 60e9, fmt: (v) => num(v, 1),
        series: [{ name: "latency_ms", values: hist.map((x) => x.latency_ms ?? null) }] })),
      panel("Frontend FPS", lineChart({ buckets: hist.map((x) => x.timestamp), bucketNs: 60e9, fmt: (v) => num(v, 1),
        series: [{ name: "fps", values: hist.map((x) => x.frontend_fps ?? null) }] }))) : null,
    panel(`Records (${d.records.length}${d.truncated ? ", truncated" : ""})`, el("div", { class: "scroll" }, table([
      { key: "time", label: "time", fmt: shortTime }, { key: "type", label: "type" }, { key: "category", label: "category" },
      { key: "component", label: "component" }, { key: "level", label: "level", cls: lvl }, { key: "name", label: "name" },
      { key: "duration_ms", label: "duration", num: true, fmt: (v) => (v === null ? "" : ms(v)) },
    ], d.records, (row) => row.trace_id && ctx.navigate("traces", { trace_id: row.trace_id }), "table-session-records"))));
}

// The Hi Stranger health record (000 "Field → UI Mapping"): scalars as a key/value table,
// token_usage as key/value, errors[] and warnings[] as expandable lists, event_context as a JSON
// viewer, notes as text. Every value goes into the page as text.
const HEALTH_PARTS = ["token_usage", "errors", "warnings", "event_context", "notes"];

function issueList(items, testId) {
  if (!Array.isArray(items)) return el("pre", { class: "kv", "data-testid": testId, text: JSON.stringify(items) });
  if (!items.length) return el("p", { class: "muted", "data-testid": testId, text: "none" });
  return el("ul", { class: "issues", "data-testid": testId }, items.map((it) => {
    const o = it && typeof it === "object" ? it : { message: it };
    const head = [o.code, o.message].filter((x) => x !== undefined && x !== null).map(String).join(": ");
    const rest = Object.fromEntries(Object.entries(o).filter(([k]) => k !== "code" && k !== "message"));
    return el("li", {}, Object.keys(rest).length
      ? el("details", {}, el("summary", { text: head || "(no message)" }),
        Object.entries(rest).map(([k, v]) => el("div", { class: "issue-field" }, el("span", { class: "muted", text: `${k} ` }),
          el("pre", { class: "kv", text: typeof v === "string" ? v : JSON.stringify(v, null, 2) }))))
      : head);
  }));
}

function healthPanel(h) {
  const f = h.fields;
  const scalars = Object.fromEntries(Object.entries(f).filter(([k]) => !HEALTH_PARTS.includes(k)));
  const sub = (title, node) => el("div", { class: "health-part" }, el("h4", { text: title }), node);
  const tu = f.token_usage;
  return panel(`Session health (latest, ${shortTime(h.time)})`,
    kvTable(scalars, "health"),
    tu !== undefined ? sub("token usage", tu && typeof tu === "object" && !Array.isArray(tu)
      ? kvTable(tu, "health-token-usage") : el("pre", { class: "kv", "data-testid": "health-token-usage", text: JSON.stringify(tu) })) : null,
    f.errors !== undefined ? sub(`errors (${Array.isArray(f.errors) ? f.errors.length : "?"})`, issueList(f.errors, "health-errors")) : null,
    f.warnings !== undefined ? sub(`warnings (${Array.isArray(f.warnings) ? f.warnings.length : "?"})`, issueList(f.warnings, "health-warnings")) : null,
    f.event_context !== undefined ? sub("event context", el("details", { open: true }, el("summary", { text: "JSON" }),
      el("pre", { class: "kv", "data-testid": "health-event-context", text: JSON.stringify(f.event_context, null, 2) }))) : null,
    f.notes !== undefined ? sub("notes", el("pre", { class: "kv notes", "data-testid": "health-notes", text: String(f.notes ?? "") })) : null);
}

// ---- alerts and retention --------------------------------------------------------------------------

export async function alerts(ctx) {
  const [a, rules, ret] = await Promise.all([get("alerts", { state: "all", limit: 200 }),
    get("alerts", { state: "rules", limit: 200 }), get("retention")]);
  const until = Date.now() * 1e6;
  const since = until - (WINDOW_S[ctx.last] || 86400) * 1e9;
  const retPanel = el("div");
  const dialog = el("dialog", { "data-testid": "confirm-dialog" });
  put(ctx.main, el("h2", { text: "Alerts" }),
    a.state_file ? null : el("p", { class: "muted", text: "No alert state file (no alert rules have run)." }),
    panel("Timeline", timeline(a.alerts, since, until)),
    panel("History", el("div", { class: "scroll" }, table([
      { key: "rule", label: "rule" }, { key: "severity", label: "severity" },
      { key: "state", label: "state", cls: (r) => `st-${r.state}` },
      { key: "fired", label: "fired", fmt: shortTime }, { key: "resolved", label: "resolved", fmt: shortTime },
      { key: "value", label: "value", num: true, fmt: (v) => num(v, 3) },
      { key: "acked", label: "acknowledged", fmt: (v) => (v ? shortTime(v) : "") },
      { key: "acked_by", label: "by" }, { key: "message", label: "message" },
    ], a.alerts, null, "table-alerts"))),
    panel("Rules", el("div", { class: "scroll" }, table([
      { key: "rule", label: "rule" }, { key: "severity", label: "severity" },
      { key: "state", label: "state", cls: (r) => `st-${r.state}` },
      { key: "value", label: "value", num: true, fmt: (v) => num(v, 3) },
      { key: "op", label: "op" }, { key: "threshold", label: "threshold", num: true },
      { key: "is_default", label: "default", fmt: (v) => (v ? "yes" : "") },
    ], rules.alerts, null, "table-alert-rules"))),
    el("h2", { text: "Retention" }), retPanel, dialog);
  const showRetention = (r) => {
    put(clear(retPanel), panel("Days kept per category", table([
      { key: "category", label: "category" }, { key: "days", label: "days", num: true },
      { key: "source", label: "source" }, { key: "expired", label: "expired now", num: true },
    ], r.categories, (row) => confirmChange(row), "table-retention"),
    el("p", { class: "muted", text: "Click a category to change its retention (applied by the collector's next purge)." })),
    panel("Effective days by category and record type (a category.type key, else the type, else the category)",
      el("div", { class: "scroll" }, table([
        { key: "category", label: "category" }, { key: "type", label: "type" },
        { key: "days", label: "days", num: true }, { key: "key", label: "set by" },
        { key: "source", label: "source" }, { key: "expired", label: "expired now", num: true },
      ], r.cells || [], null, "table-retention-cells"))));
  };
  const confirmChange = (row) => {
    const days = el("input", { type: "number", min: 1, value: row.days, "data-testid": "retention-days" });
    const confirm = el("input", { type: "text", placeholder: row.category, "data-testid": "retention-confirm" });
    const apply = el("button", { type: "button", class: "danger", text: "Apply", disabled: true, "data-testid": "retention-apply" });
    const msg = el("p", { class: "muted" });
    confirm.addEventListener("input", () => { apply.disabled = confirm.value !== row.category; });
    apply.addEventListener("click", async () => {
      try {
        await post("retention", { category: row.category, days: Number(days.value), confirm: confirm.value });
        dialog.close();
        showRetention(await get("retention"));
      } catch (err) { put(clear(msg), errorBox(err)); }
    });
    put(clear(dialog), el("h3", { text: `Change retention of ${row.category}` }),
      el("label", {}, "days to keep ", days),
      el("p", {}, "Type ", el("code", { text: row.category }), " to confirm:"), confirm, msg,
      el("div", { class: "row" }, el("button", { type: "button", text: "Cancel", onclick: () => dialog.close() }), apply));
    dialog.showModal();
  };
  showRetention(ret);
}

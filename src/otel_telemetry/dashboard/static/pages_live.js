// Spans in progress (live spans, opt-in in the app): the live tail's "In progress" panel, and the
// trace view's refresh while a trace still has running spans. The numbers are the API's
// (`otel-telemetry watch --in-progress` prints the same); between polls a running span's elapsed
// time is advanced by the browser's own clock.
import { get } from "./api.js";
import { clear, el, elapsed, panel, put, shortTime, table } from "./dom.js";

// The live tail's panel: polls /api/in_progress every second until stop() is called.
export function inProgressPanel(ctx, instance) {
  const count = el("span", { "data-testid": "in-progress-count", text: "0" });
  const box = el("div", { class: "scroll" });
  const node = panel("In progress", el("p", { class: "muted" }, "Spans started and not yet ended: ", count,
    " (apps announce spans running longer than 0.1 s when live spans are on)."), box);
  let data = null;
  let fetched = 0;
  let stopped = false;
  let drawn = ""; // what the table shows, but for the clock
  let shown = { spans: [], fetched: 0 }; // the answer the table shows
  let clocks = []; // its elapsed cells, in shown.spans order
  let downAt = 0; // a button held on the table since
  box.addEventListener("pointerdown", () => { downAt = Date.now(); });
  const released = () => { downAt = 0; setTimeout(draw); }; // after the release's click
  box.addEventListener("pointerup", released);
  box.addEventListener("pointerleave", released);
  const shownMs = (s, at) => (s.state === "running" ? s.elapsed_ms + (Date.now() - at) : s.elapsed_ms);
  // The clock runs in place: a table rebuilt every tick would swallow clicks on its rows (a click
  // whose mousedown and mouseup land on two different rows' elements is no click at all).
  const tick = () => {
    shown.spans.forEach((s, i) => { if (clocks[i]) clocks[i].textContent = elapsed(shownMs(s, shown.fetched)); });
  };
  const draw = () => {
    if (!data) return;
    const key = JSON.stringify([data.truncated, data.spans.map((s) =>
      [s.span_id, s.trace_id, s.state, s.time, s.service, s.component, s.name])]);
    // New spans while a button is held on a row: wait for the release (and its click) first.
    if (key === drawn || (downAt && Date.now() - downAt < 10000)) { tick(); return; }
    drawn = key;
    shown = { spans: data.spans, fetched };
    const rows = data.spans.map((s) => ({ ...s, shown_ms: shownMs(s, fetched) }));
    count.textContent = String(rows.length) + (data.truncated ? "+" : "");
    put(clear(box), rows.length ? table([
      { key: "time", label: "started", fmt: shortTime },
      { key: "shown_ms", label: "elapsed", num: true, fmt: (v) => elapsed(v) },
      { key: "state", label: "state", cls: (r) => `st-${r.state}` },
      { key: "service", label: "service" },
      { key: "component", label: "component" },
      { key: "name", label: "name" },
      { key: "span_id", label: "span" },
      { key: "trace_id", label: "trace", fmt: (t) => (t ? `${t.slice(0, 12)}…` : "") },
    ], rows, (row) => row.trace_id && ctx.navigate("traces", { trace_id: row.trace_id }), "table-in-progress")
      : el("p", { class: "muted", text: "Nothing in progress." }));
    clocks = Array.from(box.querySelectorAll("tbody tr > td:nth-child(2)"));
  };
  const poll = async () => {
    if (stopped) return;
    try {
      data = await get("in_progress", { instance: instance || undefined, limit: 200 });
      fetched = Date.now();
      draw();
    } catch (err) { /* the tail's own state pill says when the server is gone */ }
  };
  poll();
  const polling = setInterval(poll, 1000);
  const ticking = setInterval(tick, 250);
  return { node, stop: () => { stopped = true; clearInterval(polling); clearInterval(ticking); } };
}

// Re-fetch a trace every 2 s while it has spans in progress: `redraw(d)` gets each answer; returns
// a function that stops it.
export function followTrace(ctx, traceId, first, redraw) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped || !ctx.alive()) return;
    try {
      const d = await get("trace", { trace_id: traceId });
      if (stopped || !ctx.alive()) return;
      redraw(d);
      if (d.in_progress) timer = setTimeout(tick, 2000);
    } catch (err) { timer = setTimeout(tick, 5000); }
  };
  if (first.in_progress) timer = setTimeout(tick, 2000);
  return () => { stopped = true; clearTimeout(timer); };
}

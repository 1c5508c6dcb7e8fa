// Component map: who calls whom (`otel-telemetry map`), drawn as an SVG graph by the small layered
// layout below (no library, no network). Clicking a node shows its operations, errors and traces.
import { get } from "./api.js";
import { catSelect } from "./pages_views.js";
import { el, ms, num, panel, put, shortTime, svg, table } from "./dom.js";

const NW = 170, NH = 46, GX = 210, GY = 30, PAD = 16;

// Layers by longest path from the nodes nobody calls (cycles are cut where a node repeats).
function layout(nodes, edges) {
  const out = new Map(nodes.map((n) => [n.name, []]));
  const indeg = new Map(nodes.map((n) => [n.name, 0]));
  for (const e of edges) {
    if (e.source === e.target) continue;
    out.get(e.source).push(e.target);
    indeg.set(e.target, indeg.get(e.target) + 1);
  }
  const layer = new Map();
  const visit = (name, depth, path) => {
    if (path.has(name) || (layer.get(name) ?? -1) >= depth) return;
    layer.set(name, depth);
    path.add(name);
    for (const t of out.get(name)) visit(t, depth + 1, path);
    path.delete(name);
  };
  for (const n of nodes) if (indeg.get(n.name) === 0) visit(n.name, 0, new Set());
  for (const n of nodes) if (!layer.has(n.name)) visit(n.name, 0, new Set());
  const cols = [];
  for (const n of nodes) (cols[layer.get(n.name)] ||= []).push(n);
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((n, y) => pos.set(n.name, { x: PAD + x * (NW + GX), y: PAD + y * (NH + GY) })));
  const W = PAD * 2 + cols.length * (NW + GX) - GX;
  const H = PAD * 2 + Math.max(1, ...cols.map((c) => c.length)) * (NH + GY) - GY;
  return { pos, W: Math.max(W, 300), H: Math.max(H, 80) };
}

function graph(m, onSelect) {
  const { pos, W, H } = layout(m.nodes, m.edges);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "map", role: "img", "data-testid": "map" },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 9,
      markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, svg("path", { d: "M0,0L10,5L0,10z", class: "arrowhead" }))));
  const maxCalls = Math.max(1, ...m.edges.map((e) => e.calls));
  for (const e of m.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
    const back = x2 <= x1;  // same layer or backwards (a cycle): bend around
    const d = back ? `M${a.x + NW / 2},${a.y + NH}C${a.x + NW / 2},${a.y + NH + 40} ${b.x + NW / 2},${b.y + NH + 40} ${b.x + NW / 2},${b.y + NH}`
      : `M${x1},${y1}C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    const mx = back ? (a.x + b.x + NW) / 2 : (x1 + x2) / 2, my = back ? Math.max(a.y, b.y) + NH + 34 : Math.min(y1, y2) - 7;
    const errRate = e.calls ? e.errors / e.calls : 0;
    root.appendChild(svg("g", {
      class: errRate > 0 ? "edge bad" : "edge", "data-source": e.source, "data-target": e.target,
      "data-calls": e.calls, "data-errors": e.errors, "data-p50": e.p50_ms ?? "", "data-p95": e.p95_ms ?? "",
    },
    svg("path", { d, "marker-end": "url(#arrow)", "stroke-width": (1.2 + 3 * e.calls / maxCalls).toFixed(1) }),
    svg("text", { x: mx, y: my, "text-anchor": "middle" }, `${num(e.calls)} · ${e.errors} err · p95 ${ms(e.p95_ms)}`),
    svg("title", {}, `${e.source} → ${e.target}: ${e.calls} calls, ${e.errors} errors, p50 ${ms(e.p50_ms)}, p95 ${ms(e.p95_ms)}`)));
  }
  for (const n of m.nodes) {
    const p = pos.get(n.name);
    const label = n.name.length > 24 ? `${n.name.slice(0, 23)}…` : n.name;
    const g = svg("g", { class: n.errors ? "node bad" : "node", "data-name": n.name, "data-calls": n.calls,
      "data-errors": n.errors, transform: `translate(${p.x},${p.y})`, tabindex: 0 },
    svg("rect", { width: NW, height: NH, rx: 6 }),
    svg("text", { x: 8, y: 18, class: "name" }, label),
    svg("text", { x: 8, y: 36 }, `${num(n.calls)} spans · ${num(n.errors)} errors`),
    svg("title", {}, n.name));
    g.addEventListener("click", () => onSelect(n.name, g));
    root.appendChild(g);
  }
  if (!m.nodes.length) root.appendChild(svg("text", { x: 12, y: 24 }, "no spans in this window"));
  return el("div", { class: "chart mapbox" }, root);
}

export async function map(ctx) {
  const by = ctx.params.get("by") || "service";
  const category = ctx.params.get("category") || "";
  // since/until in the route (a link to a past window, e.g. imported traces) win over the header's window.
  const win = ctx.params.get("since") ? { since: ctx.params.get("since"), until: ctx.params.get("until") || "" }
    : { last: ctx.last };
  const m = await get("map", { ...win, by, category });
  const detail = el("div", { "data-testid": "node-detail" });
  const select = async (name, g) => {
    document.querySelectorAll("svg.map g.node.selected").forEach((x) => x.classList.remove("selected"));
    g.classList.add("selected");
    const d = await get("map_node", { ...win, by, name });
    if (!ctx.alive()) return;
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    put(detail, panel(`${by} ${name}`,
      el("p", { class: "muted", text: `${num(d.spans)} spans in the window${d.sampled ? " (the latest shown)" : ""}` }),
      el("h4", { text: "Operations" }),
      table([{ key: "name", label: "operation" }, { key: "calls", label: "calls", num: true },
        { key: "errors", label: "errors", num: true }, { key: "p50_ms", label: "p50", num: true, fmt: ms },
        { key: "p95_ms", label: "p95", num: true, fmt: ms }], d.operations, null, "node-operations"),
      el("h4", { text: "Errors" }),
      d.errors.length ? table([{ key: "time", label: "time", fmt: shortTime }, { key: "name", label: "span" },
        { key: "message", label: "message" }], d.errors, (r) => ctx.navigate("traces", { trace_id: r.trace_id }),
      "node-errors") : el("p", { class: "muted", text: "no failed spans" }),
      el("h4", { text: "Traces" }),
      table([{ key: "time", label: "time", fmt: shortTime }, { key: "name", label: "span" },
        { key: "duration_ms", label: "duration", num: true, fmt: ms }, { key: "status", label: "status" },
        { key: "trace_id", label: "trace", fmt: (t) => `${t.slice(0, 12)}…` }], d.traces,
      (r) => ctx.navigate("traces", { trace_id: r.trace_id }), "node-traces")));
  };
  const byBox = el("select", { "data-testid": "map-by" }, ["service", "component"].map((b) =>
    el("option", { value: b, text: b, selected: b === by })));
  const catBox = catSelect(category, "map-category");
  const apply = () => ctx.navigate("map", { by: byBox.value, ...(catBox.value ? { category: catBox.value } : {}),
    ...(win.since ? win : {}) });
  byBox.addEventListener("change", apply);
  catBox.addEventListener("change", apply);
  put(ctx.main,
    el("h2", { text: "Component map" }),
    el("div", { class: "filters" }, el("label", {}, "nodes", byBox), el("label", {}, "category", catBox)),
    win.since ? el("p", { "data-testid": "map-window" }, `Window ${win.since} .. ${win.until || "now"} `,
      el("a", { href: "#/map", text: "(use the header's window)" })) : null,
    el("p", { class: "muted", text: `${m.nodes.length} nodes, ${m.edges.length} edges. Edges are parent → child `
      + "spans across two nodes (calls, errors, p50/p95 of the called spans); node figures count the node's spans. "
      + "Click a node for its operations, errors and traces." }),
    panel("Map", graph(m, select)),
    detail,
    panel("Edges", table([{ key: "source", label: "from" }, { key: "target", label: "to" },
      { key: "calls", label: "calls", num: true }, { key: "errors", label: "errors", num: true },
      { key: "p50_ms", label: "p50", num: true, fmt: ms }, { key: "p95_ms", label: "p95", num: true, fmt: ms }],
    m.edges, null, "table-edges")));
}


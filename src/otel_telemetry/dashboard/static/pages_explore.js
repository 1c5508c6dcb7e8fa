// Compare page (what failing or slow spans share) and the attribute filters of the trace search.
// The numbers come from /api/compare, the same query as `otel-telemetry compare`.
import { get } from "./api.js";
import { el, num, panel, put } from "./dom.js";

// Attribute filter inputs (key=value, key!=value, key>number, …), one per filter, plus a button
// that adds another. `values`: the filters in the URL; the inputs all carry name="attr".
export function attrInputs(values) {
  const box = el("div", { class: "attr-filters", "data-testid": "attr-filters" });
  const add = (v) => box.insertBefore(el("input", { name: "attr", value: v || "", class: "attr",
    placeholder: "key=value, key>number", "data-testid": "attr-input" }), more);
  const more = el("button", { type: "button", text: "+", title: "another attribute filter", onclick: () => add("") });
  box.appendChild(more);
  (values.length ? values : [""]).forEach(add);
  return el("label", {}, "attributes (span or resource)", box);
}

// Form values as an object whose repeated names (attr) become arrays.
export function formParams(form) {
  const q = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (!v) continue;
    if (k === "attr") (q.attr = q.attr || []).push(v);
    else q[k] = v;
  }
  return q;
}

function shareBars(row) {
  return el("div", { class: "share" },
    el("span", { class: "bar sel", "data-w": row.selection_pct }),
    el("span", { class: "bar rest", "data-w": row.rest_pct }));
}

export async function compare(ctx) {
  const p = Object.fromEntries(ctx.params.entries());
  const attrs = ctx.params.getAll("attr");
  const where = p.where || "error";
  const input = (name, label, value, placeholder) => el("label", {}, label,
    el("input", { name, value: value || "", placeholder: placeholder || "" }));
  const form = el("form", { class: "filters", "data-testid": "compare-form" },
    input("where", "selection", where, "error, duration>500ms, key=value"),
    input("name", "operation (span name)", p.name),
    input("service", "service", p.service),
    attrInputs(attrs),
    el("button", { type: "submit", class: "primary", text: "Compare" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.navigate("compare", formParams(form));
  });
  const d = await get("compare", { last: ctx.last, where, name: p.name, service: p.service, attr: attrs });
  const summary = el("p", { "data-testid": "compare-summary" },
    "Selection ", el("code", { text: d.where }), ": ",
    el("b", { "data-value": "selection", text: `${d.estimated ? "~" : ""}${num(d.selection.spans)}` }),
    " spans; the rest of the window: ",
    el("b", { "data-value": "rest", text: `${d.estimated ? "~" : ""}${num(d.rest.spans)}` }), " spans.",
    d.sampled ? el("span", { class: "pill", "data-testid": "compare-sampled",
      text: d.estimated
        ? ` sampled: ${num(d.rows_read)} of the window's ${num(d.rows_in_window)} records read in spread runs; span counts estimated`
        : ` sampled: ${num(d.selection.read)} + ${num(d.rest.read)} spans read (more than ${num(d.max_spans)})` }) : null);
  const head = el("tr", {}, ["key", "value", "source", "selection", "sel %", "rest", "rest %", "", "score"]
    .map((h, i) => el("th", { class: i >= 3 && i !== 7 ? "num" : null, text: h })));
  const body = d.attributes.map((a) => {
    const tr = el("tr", { class: "click", "data-key": a.key, "data-val": a.value },
      el("td", { text: a.key }), el("td", { text: a.value }), el("td", { class: "muted", text: a.source }),
      el("td", { class: "num", text: num(a.selection) }), el("td", { class: "num", text: `${a.selection_pct} %` }),
      el("td", { class: "num", text: num(a.rest) }), el("td", { class: "num", text: `${a.rest_pct} %` }),
      el("td", {}, shareBars(a)), el("td", { class: "num", text: num(a.score, 3) }));
    // Open the spans of the selection that carry the value.
    tr.addEventListener("click", () => {
      const q = { attr: [`${a.key}=${a.value}`] };
      if (where === "error") q.status = "error";
      else if (/^duration\s*>=?\s*\d/.test(where)) q.min_duration_ms = where.match(/(\d+(?:\.\d+)?)\s*(ms|s)?\s*$/i)
        .slice(1).reduce((n, u) => Number(n) * ((u || "ms").toLowerCase() === "s" ? 1000 : 1));
      else q.attr.push(where);
      if (p.name) q.event = p.name;
      if (p.service) q.service = p.service;
      ctx.navigate("traces", q);
    });
    return tr;
  });
  const tbl = el("table", { "data-testid": "table-compare" }, el("thead", {}, head), el("tbody", {}, body));
  put(ctx.main, el("h2", { text: "Compare: what the selected spans share" }), form, summary,
    panel("Attribute values over-represented in the selection (click one for its spans)",
      d.attributes.length ? tbl : el("p", { class: "muted", text: "No attribute value is over-represented in the selection." })));
  // Bar widths are set through the CSSOM (the CSP allows no inline style attributes).
  tbl.querySelectorAll(".bar").forEach((b) => { b.style.width = `${Math.max(1, Number(b.dataset.w))}%`; });
}

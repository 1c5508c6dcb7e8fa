// The trace view's GenAI part: agent steps and each LLM call as a conversation, from
// /api/conversation (parsed in query/conversation.py; this module only renders).
import { get } from "./api.js";
import { el, ms, num, panel, put, stateLabel, table, usd } from "./dom.js";

function partNode(part) {
  if (part.type === "tool_call") {
    return el("div", { class: "part tool-call" }, el("span", { class: "pill", text: `tool call ${part.name ?? "?"}` }),
      part.id ? el("span", { class: "muted", text: ` ${part.id}` }) : null,
      el("pre", { class: "kv", text: JSON.stringify(part.arguments ?? null, null, 2) }));
  }
  if (part.type === "tool_call_response") {
    return el("div", { class: "part tool-result" }, el("span", { class: "pill", text: "tool result" }),
      part.id ? el("span", { class: "muted", text: ` ${part.id}` }) : null,
      part.response === null || part.response === undefined
        ? el("p", { class: "muted absent", text: "(content not recorded)" })
        : el("pre", { class: "kv", text: typeof part.response === "string" ? part.response : JSON.stringify(part.response, null, 2) }));
  }
  if (part.content === null || part.content === undefined) {
    return el("p", { class: "muted absent", text: "(content not recorded)" });
  }
  const text = typeof part.content === "string" ? part.content : JSON.stringify(part.content, null, 2);
  return el("div", { class: `part ${part.type}` }, part.type !== "text" ? el("span", { class: "pill", text: part.type }) : null,
    el("pre", { class: "kv msg-text", text }));
}

function turnPanel(t) {
  const facts = [t.model || "model ?", `${num(t.input_tokens)} in / ${num(t.output_tokens)} out tokens`,
    t.cost_usd === null ? "cost unknown" : usd(t.cost_usd), ms(t.duration_ms),
    t.finish_reasons.length ? `finish: ${t.finish_reasons.join(", ")}` : null, t.status === "error" ? "error" : null]
    .filter(Boolean).join(" · ");
  const body = t.messages.length
    ? t.messages.map((m) => el("div", { class: `msg role-${m.role || "unknown"} dir-${m.direction}`, "data-role": m.role || "" },
      el("div", { class: "role", text: m.role || "?" }), el("div", { class: "parts" }, m.parts.map(partNode)),
      m.finish_reason ? el("div", { class: "muted", text: `finish: ${m.finish_reason}` }) : null))
    : [el("p", { class: "muted", "data-testid": "conversation-absent", text: t.note })];
  return el("section", { class: "panel conversation", "data-testid": "conversation", "data-span-id": t.span_id },
    el("h3", { text: `Conversation: ${t.name || ""}` }), el("p", { class: "muted", "data-testid": "turn-facts", text: facts }),
    t.messages.length && t.content !== "recorded" ? el("p", { class: "muted", text: t.note }) : null,
    t.source ? el("p", { class: "muted", text: `from ${t.source}` }) : null, body);
}

// Appends the steps and conversations of the trace to `node`; nothing when it has no GenAI span.
export async function conversationPanels(node, traceId, onStep) {
  const d = await get("conversation", { trace_id: traceId });
  if (!d.steps.length) return;
  const t = d.totals;
  put(node, panel(`Agent steps (${t.steps}: ${t.llm_calls} LLM calls, ${t.tool_calls} tool calls`
    + `${t.in_progress ? `, ${t.in_progress} in progress` : ""} · `
    + `${num(t.input_tokens)} in / ${num(t.output_tokens)} out tokens · ${t.cost_usd === null ? "cost unknown" : usd(t.cost_usd)})`,
  table([
    { key: "index", label: "#", num: true },
    { key: "kind", label: "kind" },
    { key: "summary", label: "what it did", fmt: (v, r) => `${"· ".repeat(r.depth)}${v}` },
    { key: "name", label: "span" },
    { key: "offset_ms", label: "at", num: true, fmt: ms },
    { key: "duration_ms", label: "latency", num: true, fmt: (v, r) => (r.state ? stateLabel(r) : ms(v)) },
    { key: "input_tokens", label: "in", num: true, fmt: (v) => (v === null ? "" : num(v)) },
    { key: "output_tokens", label: "out", num: true, fmt: (v) => (v === null ? "" : num(v)) },
    { key: "cost_usd", label: "cost", num: true, fmt: (v) => (v === null ? "" : usd(v)) },
    { key: "status", label: "status", fmt: (v, r) => r.state || v, cls: (r) => `st-${r.state || r.status}` },
  ], d.steps, onStep, "table-steps")),
  d.turns.map(turnPanel));
}

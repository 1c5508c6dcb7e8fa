"""LLM conversations and agent steps of one trace, from whichever convention the producer used.

Messages are read from, first that a span has:

1. current OTel GenAI attributes (JSON): ``gen_ai.system_instructions``, ``gen_ai.input.messages``,
   ``gen_ai.output.messages`` — on the span, or on its ``gen_ai.client.inference.operation.details``
   event (span event or log record);
2. the older per-message events ``gen_ai.system.message``, ``gen_ai.user.message``,
   ``gen_ai.assistant.message``, ``gen_ai.tool.message``, ``gen_ai.choice`` (span events, or log
   records of the span with the message in the body), and ``gen_ai.content.prompt/completion``;
3. OpenInference's flattened ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``;
4. the flattened legacy ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` (OpenLLMetry).

Every message is ``{"role", "parts": [...], "direction": system|input|output, "finish_reason"?}``
with parts ``{"type": "text", "content"}``, ``{"type": "tool_call", "id", "name", "arguments"}``,
``{"type": "tool_call_response", "id", "response"}`` or another type as sent. A part whose content
was not recorded (content capture is opt-in at the source) has ``content: None``; a span with no
messages says ``content: "absent"``. Nothing is made up, and values are passed on as stored, so a
redacted value stays ``[REDACTED:...]``.

Steps: the GenAI spans of the trace in start order — agent (``invoke_agent``, OpenInference
AGENT), LLM call (``chat``, ``text_completion``, ``generate_content``, LLM), tool (``execute_tool``,
TOOL), and embeddings, retrievers, chains — each with its latency, tokens, cost, model, tool name
and what it asked for. Pure functions over records as ``query_records`` returns them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

_OPERATION_KIND = {"invoke_agent": "agent", "create_agent": "agent", "chat": "llm", "text_completion": "llm",
                   "generate_content": "llm", "execute_tool": "tool", "embeddings": "embedding",
                   "retrieval": "retriever"}
_OPENINFERENCE_KIND = {"AGENT": "agent", "LLM": "llm", "TOOL": "tool", "CHAIN": "chain", "RETRIEVER": "retriever",
                       "EMBEDDING": "embedding", "RERANKER": "reranker", "GUARDRAIL": "guardrail",
                       "EVALUATOR": "evaluator"}
_COSTED = ("llm", "embedding")  # agent spans may repeat their calls' usage: summed once, from the calls
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_ROLE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}
_OI_RE = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")
_LEGACY_RE = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_ABSENT_NOTE = ("message content was not recorded: content capture is opt-in at the source "
                "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)")


def _json(value: Any) -> Any:
    """An attribute holding JSON text, parsed; any other text is kept as it is (e.g. redacted)."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _attrs(rec: Mapping[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    attrs = data.get("attributes") if isinstance(data, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def _events(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    data = rec.get("data")
    events = data.get("events") if isinstance(data, dict) else None
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


# ---- parts and messages --------------------------------------------------------------------------

def _part(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {"type": "text", "content": raw}
    kind = str(raw.get("type") or "text")
    if kind == "tool_call":
        return {"type": kind, "id": raw.get("id"), "name": raw.get("name"), "arguments": _json(raw.get("arguments"))}
    if kind == "tool_call_response":
        return {"type": kind, "id": raw.get("id"), "response": _json(raw.get("response", raw.get("result")))}
    out = {"type": kind, **{k: v for k, v in raw.items() if k != "type"}}
    out.setdefault("content", None)
    return out


def _message(raw: Any, direction: str, default_role: str | None = None) -> dict[str, Any]:
    if not isinstance(raw, dict):  # not the documented shape (or redacted whole): shown as text
        return {"role": default_role, "direction": direction, "parts": [{"type": "text", "content": raw}]}
    parts = raw.get("parts")
    if isinstance(parts, list):
        out_parts = [_part(p) for p in parts]
    else:  # older {"role", "content", "tool_calls"} shape
        out_parts = [] if raw.get("content") is None and raw.get("tool_calls") else \
            [{"type": "text", "content": raw.get("content")}]
        out_parts += _tool_calls(raw.get("tool_calls"))
    msg = {"role": raw.get("role") or default_role, "direction": direction, "parts": out_parts}
    if raw.get("finish_reason") is not None:
        msg["finish_reason"] = raw["finish_reason"]
    return msg


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    raw = _json(raw)
    if not isinstance(raw, list):
        return []
    out = []
    for call in raw:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        out.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                    "arguments": _json(fn.get("arguments"))})
    return out


def _as_list(value: Any) -> list[Any]:
    value = _json(value)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _from_current(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = _as_list(attrs.get("gen_ai.system_instructions"))
    if system:
        out.append({"role": "system", "direction": "system", "parts": [_part(p) for p in system]})
    out += [_message(m, "input") for m in _as_list(attrs.get("gen_ai.input.messages"))]
    out += [_message(m, "output", "assistant") for m in _as_list(attrs.get("gen_ai.output.messages"))]
    return out


def _event_message(name: str, body: Any) -> dict[str, Any] | None:
    """One older per-message event (``body``: the span event's attributes or the log's body)."""
    body = _json(body)
    fields = body if isinstance(body, dict) else {"content": body}
    if name in _ROLE_EVENTS:
        role = _ROLE_EVENTS[name]
        msg = _message({**fields, "role": fields.get("role") or role}, "system" if role == "system" else "input")
        if name == "gen_ai.tool.message":
            msg["parts"] = [{"type": "tool_call_response", "id": fields.get("id"),
                             "response": _json(fields.get("content"))}]
        return msg
    if name == "gen_ai.choice":
        inner = _json(fields.get("message"))
        inner = inner if isinstance(inner, dict) else {"content": fields.get("content")}
        msg = _message({**inner, "role": inner.get("role") or "assistant"}, "output")
        if fields.get("finish_reason") is not None:
            msg["finish_reason"] = fields["finish_reason"]
        return msg
    if name == "gen_ai.content.prompt":
        return {"role": "user", "direction": "input", "parts": [_part(fields.get("gen_ai.prompt"))]}
    if name == "gen_ai.content.completion":
        return {"role": "assistant", "direction": "output", "parts": [_part(fields.get("gen_ai.completion"))]}
    return None


def _flattened(attrs: Mapping[str, Any], pattern: re.Pattern[str],
               directions: Mapping[str, str]) -> list[dict[str, Any]]:
    """Messages spread over indexed keys (OpenInference, legacy OpenLLMetry), in index order."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in attrs.items():
        m = pattern.match(key)
        if m:
            found.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = value
    out = []
    order = list(directions)
    for (side, _), fields in sorted(found.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        direction = directions[side]
        role = fields.get("role")
        parts: list[dict[str, Any]] = []
        texts = sorted((int(k.split(".")[1]), v) for k, v in fields.items()
                       if re.match(r"^contents\.\d+\.message_content\.text$", k))
        if "content" in fields:
            parts.append({"type": "text", "content": fields["content"]})
        parts += [{"type": "text", "content": v} for _, v in texts]
        calls: dict[str, dict[str, Any]] = {}
        for k, v in fields.items():
            cm = re.match(r"^tool_calls\.(\d+)\.(?:tool_call\.)?(.+)$", k)
            if cm:
                field = cm.group(2).removeprefix("function.")
                calls.setdefault(cm.group(1), {})[field] = v
        for _, c in sorted(calls.items(), key=lambda kv: int(kv[0])):
            parts.append({"type": "tool_call", "id": c.get("id"), "name": c.get("name"),
                          "arguments": _json(c.get("arguments"))})
        if not parts:  # a role without its content: content was not recorded
            parts.append({"type": "text", "content": None})
        if role == "tool" and fields.get("tool_call_id") is not None:
            parts = [{"type": "tool_call_response", "id": fields.get("tool_call_id"),
                      "response": _json(fields.get("content"))}]
        if role is None and direction == "output":
            role = "assistant"
        msg = {"role": role, "direction": "system" if role == "system" else direction, "parts": parts}
        if fields.get("finish_reason") is not None:
            msg["finish_reason"] = fields["finish_reason"]
        out.append(msg)
    return out


def messages(rec: Mapping[str, Any],
             logs: Sequence[Mapping[str, Any]] = ()) -> tuple[list[dict[str, Any]], str | None]:
    """The span's messages and where they came from (``None`` when there are none).

    ``logs``: the trace's log records of this span (log-based GenAI events)."""
    attrs = _attrs(rec)
    found = _from_current(attrs)
    if found:
        return found, "gen_ai attributes"
    events = [(e.get("name"), e.get("attributes")) for e in _events(rec)]
    events += [(lg.get("name"), _log_body(lg)) for lg in logs]
    for name, body in events:
        if name == _DETAILS_EVENT and isinstance(body, dict):
            found = _from_current(body)
            if found:
                return found, f"{_DETAILS_EVENT} event"
    found = [m for m in (_event_message(str(n), b) for n, b in events) if m is not None]
    if found:
        return found, "gen_ai events"
    found = _flattened(attrs, _OI_RE, {"input": "input", "output": "output"})
    if found:
        return found, "openinference"
    found = _flattened(attrs, _LEGACY_RE, {"prompt": "input", "completion": "output"})
    return (found, "gen_ai.prompt/completion attributes") if found else ([], None)


def _log_body(log: Mapping[str, Any]) -> Any:
    data = log.get("data")
    if not isinstance(data, dict):
        return None
    body = _json(data.get("body"))
    attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    if isinstance(body, dict):
        return {**attrs, **body}
    return {**attrs, "content": body} if body is not None else attrs


# ---- steps and turns -----------------------------------------------------------------------------

def step_kind(rec: Mapping[str, Any]) -> str | None:
    """agent / llm / tool / embedding / retriever / chain / ... for a GenAI span, else None."""
    attrs = _attrs(rec)
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op in _OPERATION_KIND:
        return _OPERATION_KIND[op]
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE_KIND:
        return _OPENINFERENCE_KIND[oi.upper()]
    if rec.get("model") is not None:
        return "llm"
    return None


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if attrs.get(k) is not None:
            return attrs[k]
    return None


def _finish_reasons(attrs: Mapping[str, Any], msgs: Iterable[Mapping[str, Any]]) -> list[str]:
    reasons = _as_list(attrs.get("gen_ai.response.finish_reasons"))
    if not reasons:
        reasons = [m["finish_reason"] for m in msgs if m.get("direction") == "output" and m.get("finish_reason")]
    return [str(r) for r in reasons]


def _has_content(msgs: Iterable[Mapping[str, Any]]) -> bool:
    return any(any(p.get("content") is not None or p.get("type") in ("tool_call", "tool_call_response")
                   for p in m["parts"]) for m in msgs)


def turn(rec: Mapping[str, Any], logs: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """One GenAI span as a conversation turn: its messages and the call's model, tokens, cost,
    finish reasons, latency and status."""
    attrs = _attrs(rec)
    msgs, source = messages(rec, logs)
    out = {
        "span_id": rec.get("span_id"), "name": rec.get("name"), "kind": step_kind(rec), "time": rec.get("time"),
        "model": rec.get("model"), "provider": rec.get("provider"), "agent": rec.get("agent"),
        "input_tokens": rec.get("input_tokens"), "output_tokens": rec.get("output_tokens"),
        "cost_usd": rec.get("cost_usd"), "duration_ms": rec.get("duration_ms"), "status": rec.get("status"),
        "status_message": rec.get("status_message"), "finish_reasons": _finish_reasons(attrs, msgs),
        "messages": msgs, "source": source,
        "content": "recorded" if _has_content(msgs) else ("not recorded" if msgs else "absent"),
    }
    if out["content"] != "recorded":
        out["note"] = _ABSENT_NOTE
    return out


def _summary(kind: str, rec: Mapping[str, Any], attrs: Mapping[str, Any], msgs: Sequence[Mapping[str, Any]],
             tool: Any) -> str:
    if kind == "tool":
        return f"ran tool {tool}" if tool else "ran a tool"
    if kind == "agent":
        name = rec.get("agent") or _first(attrs, "agent.name")
        return f"agent {name}" if name else "agent"
    if kind == "llm":
        calls = [p.get("name") for m in msgs if m.get("direction") == "output" for p in m["parts"]
                 if p.get("type") == "tool_call"]
        model = rec.get("model") or "model"
        if calls:
            return f"{model} asked for tool {', '.join(str(c) for c in calls)}"
        reasons = _finish_reasons(attrs, msgs)
        return f"{model} answered" + (f" ({', '.join(reasons)})" if reasons else "")
    return f"{kind} {rec.get('name') or ''}".strip()


def trace_conversation(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Turns (GenAI spans with their messages) and steps (every GenAI span, in start order, with
    latency, tokens and cost) of one trace's records, plus totals."""
    spans = sorted((r for r in records if r.get("type") == "span"), key=lambda r: (r["timestamp"], r.get("id") or 0))
    logs: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("type") == "log" and r.get("span_id") and str(r.get("name") or "").startswith("gen_ai."):
            logs.setdefault(r["span_id"], []).append(r)
    start = spans[0]["timestamp"] if spans else 0
    by_id = {s.get("span_id"): s for s in spans}
    kinds = {s.get("span_id"): step_kind(s) for s in spans}
    steps: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for s in spans:
        kind = kinds[s.get("span_id")]
        if kind is None:
            continue
        attrs = _attrs(s)
        t = turn(s, logs.get(s.get("span_id") or "", ()))
        if kind == "llm" or t["messages"]:
            turns.append(t)
        depth, parent = 0, by_id.get(s.get("parent_span_id"))
        seen = {s.get("span_id")}
        while parent is not None and parent.get("span_id") not in seen:  # a cycle cannot loop
            seen.add(parent.get("span_id"))
            depth += kinds.get(parent.get("span_id")) is not None
            parent = by_id.get(parent.get("parent_span_id"))
        tool = _first(attrs, "gen_ai.tool.name", "tool.name")
        if kind == "tool" and tool is None:
            tool = s.get("name")
        steps.append({
            "index": len(steps) + 1, "kind": kind, "name": s.get("name"), "span_id": s.get("span_id"),
            "parent_span_id": s.get("parent_span_id"), "depth": depth,
            "offset_ms": (s["timestamp"] - start) / 1e6, "duration_ms": s.get("duration_ms"),
            "status": s.get("status"), "error": s.get("status_message") if s.get("status") == "error" else None,
            "model": s.get("model"), "agent": s.get("agent") or _first(attrs, "agent.name"),
            "input_tokens": s.get("input_tokens"), "output_tokens": s.get("output_tokens"),
            "cost_usd": s.get("cost_usd"), "tool": tool if kind == "tool" else None,
            "arguments": _json(_first(attrs, "gen_ai.tool.call.arguments", "tool.parameters",
                                      *(("input.value",) if kind == "tool" else ()))),
            "result": _json(_first(attrs, "gen_ai.tool.call.result", *(("output.value",) if kind == "tool" else ()))),
            "finish_reasons": t["finish_reasons"], "summary": _summary(kind, s, attrs, t["messages"], tool),
            # A step still running (live spans): "running" or "abandoned", and for how long so far.
            "state": s.get("state"), "elapsed_ms": s.get("elapsed_ms"),
        })
    costed = [st for st in steps if st["kind"] in _COSTED]
    costs = [st["cost_usd"] for st in costed if st["cost_usd"] is not None]
    return {
        "turns": turns, "steps": steps,
        "totals": {
            "steps": len(steps), "llm_calls": sum(st["kind"] == "llm" for st in steps),
            "tool_calls": sum(st["kind"] == "tool" for st in steps),
            "input_tokens": sum(st["input_tokens"] or 0 for st in costed),
            "output_tokens": sum(st["output_tokens"] or 0 for st in costed),
            "cost_usd": sum(costs) if costs else None,
            "errors": sum(st["status"] == "error" for st in steps),
            "in_progress": sum(st["state"] is not None for st in steps),
        },
    }

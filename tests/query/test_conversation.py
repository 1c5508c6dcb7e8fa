"""Conversations and agent steps (query/conversation.py) from rows in a real database file, in
the current GenAI conventions, the older per-message events (span events and log records),
OpenInference's flattened attributes and the legacy gen_ai.prompt.N keys."""

from __future__ import annotations

import json
from typing import Any

import apsw
import orjson
import pytest

from otel_telemetry.query import conversation as qv
from otel_telemetry.query.filters import Filters, query_records
from otel_telemetry.store import schema

NS = 1_000_000_000
MS = 1_000_000
T0 = 1_767_225_600 * NS
CURRENT, OI, EVENTS, BARE = "1" * 32, "2" * 32, "3" * 32, "4" * 32


def row(trace: str, sid: str, parent: str | None, name: str, off_ms: int, dur_ms: float, attrs: dict[str, Any],
        events: list[dict[str, Any]] | None = None, rtype: str = "span", body: Any = None, **kw: Any) -> tuple:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    data: dict[str, Any] = {"attributes": attrs}
    if events:
        data["events"] = events
    if rtype == "log":
        data = {"body": body, "attributes": attrs}
    v.update(uid=bytes.fromhex(trace + sid) + (b"L" if rtype == "log" else b""), timestamp=T0 + off_ms * MS,
             type=rtype, category="ai_behavior", component="llm", event=name, name=name, service="agent",
             level="info", trace_id=trace, span_id=sid, parent_span_id=parent, kind="client",
             duration_ms=dur_ms if rtype == "span" else None, status="ok" if rtype == "span" else None,
             data=orjson.dumps(data).decode(), metadata="{}")
    v.update(kw)
    return tuple(v[c] for c in schema.COLUMNS)


WEATHER_CALL = {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
ROWS = [
    # Current GenAI conventions: invoke_agent -> chat -> execute_tool -> chat.
    row(CURRENT, "a1", None, "invoke_agent planner", 0, 900, {"gen_ai.operation.name": "invoke_agent",
                                                              "gen_ai.agent.name": "planner"}, agent="planner"),
    row(CURRENT, "a2", "a1", "chat gpt-4o", 10, 300, {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a weather bot."}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": "Weather in Paris? mail me at [REDACTED:email]"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [WEATHER_CALL],
                                               "finish_reason": "tool_call"}]),
        "gen_ai.response.finish_reasons": ["tool_call"]},
        model="gpt-4o", input_tokens=120, output_tokens=20, cost_usd=0.0005),
    row(CURRENT, "a3", "a1", "execute_tool get_weather", 320, 50, {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": '{"sky": "sunny"}'}),
    row(CURRENT, "a4", "a1", "chat gpt-4o", 380, 400, {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.input.messages": json.dumps([
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {"role": "assistant", "parts": [WEATHER_CALL]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"sky": "sunny"}}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "It is sunny in Paris."}], "finish_reason": "stop"}])},
        model="gpt-4o", input_tokens=200, output_tokens=12, cost_usd=0.0007),
    # OpenInference: AGENT -> LLM -> TOOL -> LLM.
    row(OI, "b1", None, "Agent", 0, 800, {"openinference.span.kind": "AGENT", "input.value": "find docs"}),
    row(OI, "b2", "b1", "ChatOpenAI", 5, 200, {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "find docs",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "t1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": "docs"}'},
        model="gpt-4o-mini", input_tokens=30, output_tokens=5, cost_usd=0.00001),
    row(OI, "b3", "b1", "search", 210, 40, {"openinference.span.kind": "TOOL", "tool.name": "search",
                                            "input.value": '{"q": "docs"}', "output.value": "3 hits"}),
    row(OI, "b4", "b1", "ChatOpenAI", 260, 150, {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
        "llm.input_messages.10.message.role": "tool", "llm.input_messages.10.message.tool_call_id": "t1",
        "llm.input_messages.10.message.content": "3 hits",
        "llm.input_messages.2.message.role": "user",
        "llm.input_messages.2.message.contents.0.message_content.type": "text",
        "llm.input_messages.2.message.contents.0.message_content.text": "find docs",
        "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "Found 3."},
        model="gpt-4o-mini", input_tokens=40, output_tokens=4, cost_usd=None),
    # Older per-message events: as span events on one span, as log records on another.
    row(EVENTS, "c1", None, "chat claude", 0, 100, {"gen_ai.system": "anthropic"}, events=[
        {"name": "gen_ai.system.message", "timestamp": T0, "attributes": {"content": "Be kind."}},
        {"name": "gen_ai.user.message", "timestamp": T0, "attributes": {"content": "Hi"}},
        {"name": "gen_ai.choice", "timestamp": T0, "attributes": {
            "index": 0, "finish_reason": "end_turn", "message": '{"content": "Hello!"}'}}],
        model="claude-sonnet-4", input_tokens=10, output_tokens=3, cost_usd=0.0001),
    row(EVENTS, "c2", None, "chat claude", 200, 100, {"gen_ai.system": "anthropic"},
        model="claude-sonnet-4", input_tokens=11, output_tokens=0),
    row(EVENTS, "c2", None, "gen_ai.user.message", 201, 0, {"gen_ai.system": "anthropic"}, rtype="log",
        body={"content": "Second question"}, uid=b"log-1"),
    row(EVENTS, "c2", None, "gen_ai.assistant.message", 202, 0, {}, rtype="log",
        body={"tool_calls": [{"id": "x", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        uid=b"log-2"),
    row(EVENTS, "c2", None, "gen_ai.tool.message", 203, 0, {}, rtype="log", body={"id": "x", "content": None},
        uid=b"log-3"),
    row(EVENTS, "c2", None, "gen_ai.choice", 204, 0, {}, rtype="log",
        body={"index": 0, "finish_reason": "stop", "message": {}}, uid=b"log-4"),
    # A GenAI call without content (the default at the source), and a plain span.
    row(BARE, "d1", None, "chat gpt-4o", 0, 100, {"gen_ai.operation.name": "chat",
                                                  "gen_ai.response.finish_reasons": ["stop"]},
        model="gpt-4o", input_tokens=5, output_tokens=5, cost_usd=0.00002),
    row(BARE, "d2", "d1", "SELECT", 10, 5, {"db.system.name": "sqlite"}),
    row(BARE, "d3", None, "legacy", 200, 5, {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "old",
                                             "gen_ai.completion.0.role": "assistant",
                                             "gen_ai.completion.0.content": "reply",
                                             "gen_ai.completion.0.finish_reason": "stop"}, model="m"),
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> apsw.Connection:
    path = tmp_path_factory.mktemp("conv") / "t.db"
    c = apsw.Connection(str(path))
    c.execute(schema.DDL)
    with c:
        marks = ", ".join("?" * len(schema.COLUMNS))
        c.executemany(f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES ({marks})", ROWS)
    return c


def conv(conn: apsw.Connection, trace: str) -> dict[str, Any]:
    return qv.trace_conversation(query_records(conn, Filters(trace_id=trace, limit=1000, order="asc")))


def texts(msgs: list[dict[str, Any]]) -> list[tuple[str | None, str, Any]]:
    out = []
    for m in msgs:
        for p in m["parts"]:
            value = p.get("content") if p["type"] == "text" else p.get("name") or p.get("response")
            out.append((m["role"], p["type"], value))
    return out


def test_current_conventions_agent_trace(conn: apsw.Connection) -> None:
    c = conv(conn, CURRENT)
    assert [(s["kind"], s["depth"], s["summary"]) for s in c["steps"]] == [
        ("agent", 0, "agent planner"), ("llm", 1, "gpt-4o asked for tool get_weather"),
        ("tool", 1, "ran tool get_weather"), ("llm", 1, "gpt-4o answered (stop)")]
    tool = c["steps"][2]
    assert tool["arguments"] == {"city": "Paris"} and tool["result"] == {"sky": "sunny"}
    assert [s["duration_ms"] for s in c["steps"]] == [900, 300, 50, 400]
    assert [s["offset_ms"] for s in c["steps"]] == [0, 10, 320, 380]
    assert c["totals"] == {"steps": 4, "llm_calls": 2, "tool_calls": 1, "input_tokens": 320, "output_tokens": 32,
                           "cost_usd": pytest.approx(0.0012), "errors": 0, "in_progress": 0}
    first, second = c["turns"]
    assert first["source"] == "gen_ai attributes" and first["content"] == "recorded"
    assert texts(first["messages"]) == [
        ("system", "text", "You are a weather bot."),
        ("user", "text", "Weather in Paris? mail me at [REDACTED:email]"),  # redacted stays redacted
        ("assistant", "tool_call", "get_weather")]
    assert first["messages"][-1]["parts"][0]["arguments"] == {"city": "Paris"}
    assert first["finish_reasons"] == ["tool_call"] and first["model"] == "gpt-4o" and first["input_tokens"] == 120
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert second["messages"][2]["parts"][0] == {"type": "tool_call_response", "id": "call_1",
                                                 "response": {"sky": "sunny"}}
    assert second["finish_reasons"] == ["stop"]


def test_openinference_agent_trace(conn: apsw.Connection) -> None:
    c = conv(conn, OI)
    assert [(s["kind"], s["summary"]) for s in c["steps"]] == [
        ("agent", "agent"), ("llm", "gpt-4o-mini asked for tool search"), ("tool", "ran tool search"),
        ("llm", "gpt-4o-mini answered")]
    assert c["steps"][2]["arguments"] == {"q": "docs"} and c["steps"][2]["result"] == "3 hits"
    first, second = c["turns"]
    assert first["source"] == "openinference"
    assert texts(first["messages"]) == [("system", "text", "Be brief."), ("user", "text", "find docs"),
                                        ("assistant", "tool_call", "search")]
    assert first["messages"][0]["direction"] == "system"
    # Index order is numeric (2 before 10), contents.N.message_content.text is read.
    assert texts(second["messages"]) == [("user", "text", "find docs"), ("tool", "tool_call_response", "3 hits"),
                                         ("assistant", "text", "Found 3.")]
    assert c["totals"]["cost_usd"] == pytest.approx(0.00001)  # the unpriced call adds no made-up cost


def test_older_events_span_and_log(conn: apsw.Connection) -> None:
    c = conv(conn, EVENTS)
    a, b = c["turns"]
    assert a["source"] == "gen_ai events"
    assert texts(a["messages"]) == [("system", "text", "Be kind."), ("user", "text", "Hi"),
                                    ("assistant", "text", "Hello!")]
    assert a["finish_reasons"] == ["end_turn"]
    assert texts(b["messages"]) == [("user", "text", "Second question"), ("assistant", "tool_call", "lookup"),
                                    ("tool", "tool_call_response", None), ("assistant", "text", None)]
    assert b["content"] == "recorded"  # partly: the missing contents stay None, never invented


def test_absent_content_is_said_and_legacy_keys(conn: apsw.Connection) -> None:
    c = conv(conn, BARE)
    bare, legacy = c["turns"]
    assert bare["messages"] == [] and bare["content"] == "absent" and "opt-in" in bare["note"]
    assert bare["finish_reasons"] == ["stop"] and bare["cost_usd"] == 0.00002
    assert [s["name"] for s in c["steps"]] == ["chat gpt-4o", "legacy"]  # the SELECT is no step
    assert legacy["source"] == "gen_ai.prompt/completion attributes"
    assert texts(legacy["messages"]) == [("user", "text", "old"), ("assistant", "text", "reply")]
    assert legacy["finish_reasons"] == ["stop"]


def test_non_json_and_hostile_values_pass_through() -> None:
    rec = {"type": "span", "timestamp": 1, "span_id": "x", "model": "m",
           "data": {"attributes": {"gen_ai.input.messages": "[REDACTED:api_key]",
                                   "gen_ai.output.messages": '[{"role": "assistant", "parts": "oops"}]'}}}
    t = qv.turn(rec)
    assert t["messages"][0]["parts"] == [{"type": "text", "content": "[REDACTED:api_key]"}]
    assert t["messages"][1]["role"] == "assistant"
    assert qv.trace_conversation([rec, {"type": "span", "timestamp": 2, "data": "not json"}])["totals"]["steps"] == 1


def test_cli_prints_the_same(conn: apsw.Connection) -> None:
    from click.testing import CliRunner

    from otel_telemetry.cli.commands import main

    r = CliRunner().invoke(main, ["conversation", CURRENT, "--db", conn.filename, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout) == {"trace_id": CURRENT, **conv(conn, CURRENT)}
    t = CliRunner().invoke(main, ["conversation", BARE, "--db", conn.filename])
    assert t.exit_code == 0 and "content was not recorded" in t.stdout and "user: old" in t.stdout
    e = CliRunner().invoke(main, ["conversation", "f" * 32, "--db", conn.filename])
    assert e.exit_code == 1 and e.stderr.strip().startswith("Error: no GenAI spans")

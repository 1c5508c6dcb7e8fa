"""``@traced`` and the session context through the real pipeline: an app process → ZeroMQ →
collector process → SQLite, rows read back. Plus the pure usage-shape reader. No mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import CollectorProc

from otel_telemetry.collector.genai import normalise as genai
from otel_telemetry.sdk.usage import usage_attributes

APP = r'''
import asyncio, json, sys
from types import SimpleNamespace as NS
import otel_telemetry
from opentelemetry import trace
from otel_telemetry.sdk.traced import traced
from otel_telemetry.sdk.sessions import session, set_session_id, reset_session_id

tel = otel_telemetry.configure("traced-app", metrics=False, logs=False)
tracer = trace.get_tracer("app")
out = {}

def openai_response(model="gpt-4o-2024-08-06"):
    return NS(id="chatcmpl-1", model=model, usage=NS(
        prompt_tokens=1200, completion_tokens=300, total_tokens=1500,
        prompt_tokens_details=NS(cached_tokens=1000), completion_tokens_details=NS(reasoning_tokens=100)))

@traced(agent_name="writer", event_type="model_call")
def generate(prompt, api_key):
    return openai_response()

@traced(agent_name="writer", event_type="model_call", capture_args=True)
def generate_logged(prompt, api_key):
    return {"model": "claude-3-5-sonnet-20241022", "usage": {
        "input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200}}

@traced(agent_name="writer", event_type="model_call", model="gpt-4o", provider="openai")
def generate_fails(prompt):
    raise TimeoutError("upstream timed out")

@traced(agent_name="planner", event_type="tool_call")
async def search(query):
    await asyncio.sleep(0.01)
    with tracer.start_as_current_span("inner-http"):
        pass
    return ["a", "b"]

@traced(agent_name="planner", event_type="tool_call")
async def search_fails(query):
    raise KeyError(query)

@traced(agent_name="streamer", event_type="model_call", cost_calculator=lambda chunk: 0.5)
def stream(n):
    for i in range(n):
        yield {"delta": str(i)}
    yield {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}}

@traced(agent_name="streamer", event_type="model_call")
async def astream(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

@traced(event_type="model_call", cost_calculator=lambda r: 1 / 0)
def bad_cost():
    class Weird:
        @property
        def usage(self):
            raise RuntimeError("no usage for you")
    return Weird()

@traced
def plain(x):
    return x * 2

# 1 sync model call inside a parent span and a session
with session("sess-1"), tracer.start_as_current_span("request") as parent:
    generate("very secret prompt", api_key="sk-SECRET")
    out["parent_span"] = format(parent.get_span_context().span_id, "016x")
    out["trace"] = format(parent.get_span_context().trace_id, "032x")
generate_logged("logged prompt", api_key="sk-LOGGED")
try:
    generate_fails("p")
except TimeoutError:
    out["sync_raised"] = True

async def main():
    tok = set_session_id("sess-async")
    try:
        out["search"] = await asyncio.create_task(search("q"))
    finally:
        reset_session_id(tok)
    try:
        await search_fails("missing")
    except KeyError:
        out["async_raised"] = True
    out["astream"] = [i async for i in astream(3)]
    agen = astream(100)
    async for i in agen:
        if i == 1:
            break
    await agen.aclose()
asyncio.run(main())

out["stream"] = len(list(stream(3)))
g = stream(50)
next(g); next(g)
g.close()
try:
    bad_cost()
    out["bad_cost_ok"] = True
except Exception as e:
    out["bad_cost_ok"] = repr(e)
out["plain"] = plain(21)
out["shutdown"] = tel.shutdown(10)
out["counters"] = tel.counters()
print(json.dumps(out))
'''


def _run(code: str, endpoint: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OTEL_TELEMETRY_ENDPOINT=endpoint))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


COLS = ("name", "event", "category", "status", "level", "trace_id", "span_id", "parent_span_id", "session_id",
        "duration_ms", "model", "provider", "agent", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "reasoning_tokens", "total_tokens", "cost_usd", "data")


@pytest.fixture(scope="module")
def traced_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    c = CollectorProc(tmp_path_factory.mktemp("traced")).start()
    try:
        out = _run(APP, c.endpoint)
    finally:
        assert c.stop() == 0
    rows = [dict(zip(COLS, r, strict=True)) for r in c.rows(f"SELECT {', '.join(COLS)} FROM records ORDER BY id")]
    for r in rows:
        r["attrs"] = json.loads(r.pop("data"))["attributes"]
    raw = "\n".join(str(x) for x in c.rows("SELECT * FROM records"))
    return out, rows, raw


def _by_name(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["name"] == name]


def test_app_side_never_disturbed_and_nothing_lost(traced_rows: Any) -> None:
    out, rows, _ = traced_rows
    assert out["sync_raised"] and out["async_raised"] and out["bad_cost_ok"] is True
    assert out["search"] == ["a", "b"] and out["astream"] == [0, 1, 2] and out["stream"] == 4 and out["plain"] == 42
    assert out["shutdown"] and out["counters"]["dropped"] == {}
    assert len(rows) == out["counters"]["sent"]


def test_sync_model_call_usage_cost_parent_and_session(traced_rows: Any) -> None:
    out, rows, _ = traced_rows
    [r] = [x for x in _by_name(rows, "generate")]
    assert r["trace_id"] == out["trace"] and r["parent_span_id"] == out["parent_span"]  # child of the caller
    assert r["session_id"] == "sess-1" and _by_name(rows, "request")[0]["session_id"] == "sess-1"
    assert (r["event"], r["category"], r["status"], r["agent"]) == ("model_call", "ai_behavior", "unset", "writer")
    assert r["duration_ms"] is not None and r["duration_ms"] >= 0
    # OpenAI shape → gen_ai.usage.*; cost from the table: gpt-4o $2.5 in, $1.25 cached, $10 out per MTok
    assert (r["model"], r["provider"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
            r["cache_write_tokens"], r["reasoning_tokens"], r["total_tokens"]) == (
        "gpt-4o-2024-08-06", "openai", 1200, 300, 1000, None, 100, 1500)
    assert r["cost_usd"] == pytest.approx((200 * 2.5 + 1000 * 1.25 + 300 * 10) / 1e6, rel=1e-12)
    assert r["attrs"]["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert r["attrs"]["gen_ai.usage.reasoning.output_tokens"] == 100
    assert r["attrs"]["gen_ai.operation.name"] == "chat" and r["attrs"]["gen_ai.response.id"] == "chatcmpl-1"


def test_capture_args_off_by_default_and_truncated_when_on(traced_rows: Any) -> None:
    _, rows, raw = traced_rows
    assert "very secret prompt" not in raw and "sk-SECRET" not in raw
    assert "telemetry.args" not in _by_name(rows, "generate")[0]["attrs"]
    [logged] = _by_name(rows, "generate_logged")
    assert json.loads(logged["attrs"]["telemetry.args"]) == {"prompt": "'logged prompt'", "api_key": "'sk-LOGGED'"}
    # Anthropic shape: cache tokens are reported beside input_tokens and added in (OTel semantics)
    assert (logged["input_tokens"], logged["cache_read_tokens"], logged["cache_write_tokens"]) == (1250, 1000, 200)
    assert logged["cost_usd"] == pytest.approx((50 * 3 + 1000 * 0.3 + 200 * 3.75 + 20 * 15) / 1e6, rel=1e-12)


def test_exceptions_recorded_and_reraised(traced_rows: Any) -> None:
    _, rows, _ = traced_rows
    [sync_fail] = _by_name(rows, "generate_fails")
    assert (sync_fail["status"], sync_fail["level"], sync_fail["category"]) == ("error", "error", "error_patterns")
    assert sync_fail["attrs"]["error.type"] == "TimeoutError"
    assert sync_fail["model"] == "gpt-4o" and sync_fail["cost_usd"] is None  # attributed, no usage → no cost
    [async_fail] = _by_name(rows, "search_fails")
    assert async_fail["status"] == "error" and async_fail["attrs"]["error.type"] == "KeyError"


def test_async_call_propagates_context_and_session_to_tasks(traced_rows: Any) -> None:
    _, rows, _ = traced_rows
    [s] = _by_name(rows, "search")
    [inner] = _by_name(rows, "inner-http")
    assert inner["parent_span_id"] == s["span_id"] and inner["trace_id"] == s["trace_id"]
    assert s["session_id"] == inner["session_id"] == "sess-async"
    assert (s["event"], s["attrs"]["gen_ai.tool.name"], s["attrs"]["gen_ai.operation.name"]) == (
        "tool_call", "search", "execute_tool")
    assert s["duration_ms"] >= 10 * 0.9
    assert all(r["session_id"] is None for r in _by_name(rows, "search_fails"))  # reset after the block


def test_generators_span_whole_iteration(traced_rows: Any) -> None:
    _, rows, _ = traced_rows
    full, closed = _by_name(rows, "stream")
    # usage from the last chunk; the cost calculator wins over the table
    assert (full["model"], full["input_tokens"], full["output_tokens"], full["cost_usd"]) == ("gpt-4o-mini", 10, 3, 0.5)
    assert full["status"] == "unset" and "telemetry.closed_early" not in full["attrs"]
    assert closed["attrs"]["telemetry.closed_early"] is True and closed["status"] == "unset"
    assert closed["cost_usd"] is None  # abandoned before any usage: the calculator is not asked
    agen_full, agen_closed = _by_name(rows, "astream")
    assert agen_closed["attrs"]["telemetry.closed_early"] is True
    assert "telemetry.closed_early" not in agen_full["attrs"]


def test_cost_calculator_errors_are_swallowed(traced_rows: Any) -> None:
    _, rows, _ = traced_rows
    [r] = _by_name(rows, "bad_cost")
    assert r["status"] == "unset" and r["attrs"]["telemetry.cost_error"] == "ZeroDivisionError"
    assert r["cost_usd"] is None
    [p] = _by_name(rows, "plain")
    assert p["event"] == "function_call" and p["model"] is None and p["agent"] is None


def test_usage_shapes() -> None:
    gemini = {"model_version": "gemini-2.0-flash", "usage_metadata": {
        "prompt_token_count": 100, "candidates_token_count": 40, "thoughts_token_count": 10,
        "cached_content_token_count": 60, "total_token_count": 150}}
    assert usage_attributes(gemini) == {
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 50, "gen_ai.usage.total_tokens": 150,
        "gen_ai.usage.cache_read.input_tokens": 60, "gen_ai.usage.reasoning.output_tokens": 10,
        "gen_ai.response.model": "gemini-2.0-flash"}
    responses_api = {"model": "o3", "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                                              "input_tokens_details": {"cached_tokens": 4},
                                              "output_tokens_details": {"reasoning_tokens": 3}}}
    assert usage_attributes(responses_api) == {
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5, "gen_ai.usage.total_tokens": 15,
        "gen_ai.usage.cache_read.input_tokens": 4, "gen_ai.usage.reasoning.output_tokens": 3,
        "gen_ai.response.model": "o3"}
    langchain = {"usage_metadata": {"input_tokens": 30, "output_tokens": 7, "total_tokens": 37,
                                    "input_token_details": {"cache_read": 20, "cache_creation": 5},
                                    "output_token_details": {"reasoning": 2}}}
    assert usage_attributes(langchain) == {
        "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 7, "gen_ai.usage.total_tokens": 37,
        "gen_ai.usage.cache_read.input_tokens": 20, "gen_ai.usage.cache_creation.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 2}
    assert usage_attributes(None) == {} and usage_attributes(42) == {} and usage_attributes({"usage": "x"}) == {}
    # what traced emits normalises to the same numbers in the collector
    norm = dict(zip(genai.GENAI_COLUMNS, genai.normalise(usage_attributes(responses_api)), strict=True))
    assert (norm["input_tokens"], norm["cache_read_tokens"], norm["reasoning_tokens"]) == (10, 4, 3)

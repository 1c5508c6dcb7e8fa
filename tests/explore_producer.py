"""An instrumented process for the exploring views' tests (run as a separate process).

Emits, through ``otel_telemetry.configure`` and the OTel API like an app would:
* ``POST /checkout`` spans for compare and attribute search: 20 of 200 fail; ``region=eu-west`` is
  on 18 of the 20 failures (90 %) and on 18 of the 180 successes (10 %);
* an agent trace in the current GenAI conventions: ``invoke_agent`` → ``chat`` → ``execute_tool``
  → ``chat``, with system instructions, input/output messages (a user e-mail address inside,
  which the collector redacts) and token usage;
* the same agent in OpenInference names: AGENT → LLM → TOOL → LLM;
* a chat span with the older per-message span events, and one without any content.
Prints the trace ids and what it emitted as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import otel_telemetry

USER_EMAIL = "jane.doe@example.com"


def _hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def checkout(tracer: trace.Tracer) -> int:
    regions = ["us-east", "ap-south", "us-west"]
    n = 0
    for i in range(200):
        failed = i % 10 == 0
        eu = (failed and i % 100 != 0) or (not failed and i % 10 == 5 and i % 100 != 95)
        attrs = {"region": "eu-west" if eu else regions[i % 3], "http.route": "/checkout",
                 "customer.tier": ("gold", "silver", "bronze")[i % 3], "cart.items": i % 7, "request.id": f"r-{i}"}
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=attrs) as s:
            if failed:
                s.set_status(Status(StatusCode.ERROR, "payment declined"))
        n += 1
    return n


def agent_current(tracer: trace.Tracer) -> str:
    call = {"type": "tool_call", "id": "call_7", "name": "get_weather", "arguments": {"city": "Paris"}}
    with tracer.start_as_current_span("invoke_agent travel", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "travel",
            "gen_ai.provider.name": "openai"}) as root:
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 412, "gen_ai.usage.output_tokens": 23,
                "gen_ai.response.finish_reasons": ["tool_call"],
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You plan trips."}]),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": f"Weather in Paris? Reply to {USER_EMAIL}"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [call],
                                                       "finish_reason": "tool_call"}])}):
            time.sleep(0.12)
        with tracer.start_as_current_span("execute_tool get_weather", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "call_7", "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
                "gen_ai.tool.call.result": json.dumps({"sky": "sunny", "c": 21})}):
            time.sleep(0.04)
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 480,
                "gen_ai.usage.output_tokens": 15, "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.input.messages": json.dumps([
                    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
                    {"role": "assistant", "parts": [call]},
                    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_7",
                                                "response": {"sky": "sunny", "c": 21}}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop", "parts": [
                    {"type": "text", "content": "Sunny, 21 °C in Paris."}]}])}):
            time.sleep(0.09)
        return _hex(root)


def agent_openinference(tracer: trace.Tracer) -> str:
    with tracer.start_as_current_span("research_agent", attributes={
            "openinference.span.kind": "AGENT", "input.value": "find the release notes"}) as root:
        with tracer.start_as_current_span("ChatOpenAI", attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
                "llm.token_count.prompt": 120, "llm.token_count.completion": 18,
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "You find documents.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": "find the release notes",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "t-1",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search_docs",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": "release notes"}'}):
            pass
        with tracer.start_as_current_span("search_docs", attributes={
                "openinference.span.kind": "TOOL", "tool.name": "search_docs",
                "input.value": '{"q": "release notes"}', "output.value": "2 documents"}):
            pass
        with tracer.start_as_current_span("ChatOpenAI", attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
                "llm.token_count.prompt": 160, "llm.token_count.completion": 9,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "find the release notes",
                "llm.input_messages.1.message.role": "tool", "llm.input_messages.1.message.tool_call_id": "t-1",
                "llm.input_messages.1.message.content": "2 documents",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Here are the 2 release notes."}):
            pass
        return _hex(root)


def older_events(tracer: trace.Tracer) -> tuple[str, str]:
    with tracer.start_as_current_span("chat claude", kind=SpanKind.CLIENT, attributes={
            "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 6}) as s:
        s.add_event("gen_ai.system.message", {"content": "Be brief."})
        s.add_event("gen_ai.user.message", {"content": "Hello there"})
        s.add_event("gen_ai.choice", {"index": 0, "finish_reason": "end_turn",
                                      "message": json.dumps({"role": "assistant", "content": "Hi!"})})
        events = _hex(s)
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 10}) as s:
        bare = _hex(s)
    return events, bare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    args = ap.parse_args()
    tel = otel_telemetry.configure("shop", endpoint=args.endpoint, join_timeout=5.0, export_interval=3600,
                                   resource_attributes={"deployment.environment": "prod"})
    tracer = trace.get_tracer("explore.producer")
    spans = checkout(tracer)
    current = agent_current(tracer)
    oi = agent_openinference(tracer)
    events, bare = older_events(tracer)
    ok = tel.shutdown(10)
    print(json.dumps({"checkout_spans": spans, "agent_current": current, "agent_openinference": oi,
                      "events": events, "bare": bare, "spans": spans + 4 + 4 + 2, "shutdown_ok": ok,
                      "counters": tel.counters()}))


if __name__ == "__main__":
    main()
